//! Metrics against hand-computed cases and scikit-learn / the MVTec AD evaluation script.
use patchcore::metrics::{auroc, f1_max, pro_auc, MetricsError};

/// 64-bit LCG (Knuth's MMIX constants), top 31 bits; the Python reference uses the same one.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Scores in quarter steps with many ties; one third positive.
fn tied(n: usize, seed: u64) -> (Vec<f32>, Vec<bool>) {
    let mut g = Lcg(seed);
    (0..n)
        .map(|_| {
            let label = g.next().is_multiple_of(3);
            let score = ((g.next() % 20) + if label { 6 } else { 0 }) as f32 / 4.0;
            (score, label)
        })
        .unzip()
}

/// Scores on a 2^-20 grid (exact in f32), one quarter positive.
fn continuous(n: usize, seed: u64) -> (Vec<f32>, Vec<bool>) {
    let mut g = Lcg(seed);
    (0..n)
        .map(|_| {
            let label = g.next().is_multiple_of(4);
            let score =
                (g.next() % (1 << 20)) as f32 / (1 << 20) as f32 + if label { 0.25 } else { 0.0 };
            (score, label)
        })
        .unzip()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12, "{a} != {b}");
}

#[test]
fn auroc_hand_computed() {
    let l = [false, false, true, true];
    close(auroc(&[0.1, 0.2, 0.8, 0.9], &l).unwrap(), 1.0);
    close(auroc(&[0.9, 0.8, 0.2, 0.1], &l).unwrap(), 0.0);
    close(auroc(&[0.5; 4], &l).unwrap(), 0.5);
    // sklearn docs example.
    close(auroc(&[0.1, 0.4, 0.35, 0.8], &l).unwrap(), 0.75);
    // Ties across classes count half: pairs (2>1) + (2=2)/2 + (3>1) + (3>2) = 3.5 of 4.
    close(auroc(&[1.0, 2.0, 2.0, 3.0], &l).unwrap(), 0.875);
    // -0.0 and 0.0 are the same score.
    close(auroc(&[-0.0, 0.0], &[false, true]).unwrap(), 0.5);
    // Infinite scores rank like any other.
    close(
        auroc(
            &[f32::NEG_INFINITY, 0.0, f32::INFINITY],
            &[false, true, true],
        )
        .unwrap(),
        1.0,
    );
}

#[test]
fn auroc_errors() {
    assert!(matches!(
        auroc(&[0.1, 0.2], &[true, true]),
        Err(MetricsError::OneClass { .. })
    ));
    let e = auroc(&[0.1, 0.2], &[false, false]).unwrap_err();
    assert!(e.to_string().contains("only normal"), "{e}");
    assert_eq!(auroc(&[], &[]), Err(MetricsError::Empty));
    assert!(matches!(
        auroc(&[0.1], &[true, false]),
        Err(MetricsError::Length { .. })
    ));
    assert_eq!(
        auroc(&[0.1, f32::NAN], &[true, false]),
        Err(MetricsError::NaN {
            what: "score",
            index: 1
        })
    );
}

/// Reference values that scripts/metrics_reference.py computed with scikit-learn and the MVTec
/// AD evaluation script on the same LCG data (it records the library versions); rerun it when
/// the data here change.
fn reference() -> serde_json::Value {
    serde_json::from_str(include_str!("metrics_reference.json"))
        .expect("tests/metrics_reference.json is JSON")
}

fn number(case: &serde_json::Value, key: &str) -> f64 {
    case[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number `{key}` in {case}"))
}

/// `roc_auc_score(y, s)`; best F1 = max of `2pr/(p+r)` from `precision_recall_curve(y, s)`
/// (threshold: the highest score reaching it, found by an exact sweep in Python).
#[test]
fn agrees_with_sklearn() {
    let reference = reference();
    let cases = reference["sklearn"].as_array().expect("sklearn cases");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let (n, seed) = (number(case, "n") as usize, number(case, "seed") as u64);
        let (s, y) = match case["data"].as_str() {
            Some("tied") => tied(n, seed),
            Some("continuous") => continuous(n, seed),
            other => panic!("unknown data {other:?}"),
        };
        close(auroc(&s, &y).unwrap(), number(case, "auroc"));
        let (f1, t) = f1_max(&s, &y).unwrap();
        close(f1, number(case, "f1_max"));
        assert_eq!(t as f64, number(case, "f1_threshold"));
    }
}

#[test]
fn auroc_large_input() {
    // Scores 0..n, odd ones positive: positive 2k+1 beats k+1 negatives, so AUROC = (m+1)/(2m).
    let n = 2_000_000usize;
    let s: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let y: Vec<bool> = (0..n).map(|i| i % 2 == 1).collect();
    let m = (n / 2) as f64;
    let t = std::time::Instant::now();
    close(auroc(&s, &y).unwrap(), (m + 1.0) / (2.0 * m));
    println!("AUROC over {n} samples: {:?}", t.elapsed());
}

#[test]
fn f1_hand_computed() {
    let l = [false, false, true, true];
    assert_eq!(f1_max(&[0.1, 0.2, 0.8, 0.9], &l).unwrap(), (1.0, 0.8));
    // One threshold only: everything predicted anomalous, tp 2, fp 2: F1 = 4 / 6.
    let (f1, t) = f1_max(&[0.5; 4], &l).unwrap();
    close(f1, 4.0 / 6.0);
    assert_eq!(t, 0.5);
    // Inverted ranking: best is to flag everything (F1 2/3 at the lowest score).
    assert_eq!(f1_max(&[0.9, 0.8, 0.2, 0.1], &l).unwrap().1, 0.1);
    assert!(matches!(
        f1_max(&[0.1, 0.2], &[false, false]),
        Err(MetricsError::OneClass { .. })
    ));
    // Positives only is fine: F1 = 1 at the lowest score.
    assert_eq!(f1_max(&[0.3, 0.2], &[true, true]).unwrap(), (1.0, 0.2));
}

/// Mask (4x4) with two 8-connected regions: {(0,0), (1,0), (2,1)} (the last joins diagonally)
/// and {(3,3)}. Sweep (FPR, PRO): (0,0) (0,1/6) (1/12,1/6) (1/12,2/3) (1/6,2/3) (1/6,5/6) (1/6,1) (1,1).
#[test]
fn pro_hand_computed() {
    #[rustfmt::skip]
    let mask: [u8; 16] = [
        1, 1, 0, 0,
        0, 0, 1, 0,
        0, 0, 0, 0,
        0, 0, 0, 1,
    ];
    #[rustfmt::skip]
    let map: [f32; 16] = [
        0.9, 0.5, 0.1, 0.1,
        0.8, 0.1, 0.2, 0.1,
        0.1, 0.6, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.7,
    ];
    // Full range: 1/72 + 4/72 + 60/72.
    close(pro_auc(&[&map], &[&mask], 4, 4, 1.0).unwrap(), 65.0 / 72.0);
    // Cut at 1.5/12 (PRO is 2/3 there): (1/72 + 1/36) / 0.125 = 1/3.
    close(pro_auc(&[&map], &[&mask], 4, 4, 0.125).unwrap(), 1.0 / 3.0);
    // A perfect map scores 1 at any limit; an empty image adds normal pixels only.
    let perfect: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
    let empty = [0u8; 16];
    let zeros = [0f32; 16];
    close(
        pro_auc(&[&perfect, &zeros], &[&mask, &empty], 4, 4, 0.3).unwrap(),
        1.0,
    );
}

#[test]
fn pro_errors() {
    let map = [0.5f32; 4];
    let none = [0u8; 4];
    let all = [1u8; 4];
    let e = pro_auc(&[&map], &[&none], 2, 2, 0.3).unwrap_err();
    assert!(matches!(e, MetricsError::OneClass { .. }), "{e}");
    let e = pro_auc(&[&map], &[&all], 2, 2, 0.3).unwrap_err();
    assert!(matches!(e, MetricsError::OneClass { .. }), "{e}");
    let mixed = [1u8, 0, 0, 0];
    assert!(matches!(
        pro_auc(&[&map], &[&mixed], 2, 2, 0.0),
        Err(MetricsError::Invalid(_))
    ));
    assert!(matches!(
        pro_auc(&[&map], &[&mixed], 3, 2, 0.3),
        Err(MetricsError::Invalid(_))
    ));
    assert!(matches!(
        pro_auc(&[&map], &[], 2, 2, 0.3),
        Err(MetricsError::Length { .. })
    ));
    let nan = [0.5, f32::NAN, 0.1, 0.2];
    assert!(matches!(
        pro_auc(&[&nan], &[&mixed], 2, 2, 0.3),
        Err(MetricsError::NaN { index: 1, .. })
    ));
}

/// Five 32x24 images with up to two rectangles each (rectangles may touch and merge) and
/// quantised scores (many ties). Reference: the MVTec AD evaluation script's `compute_pro` +
/// `trapezoid` (scipy.ndimage.label with a 3x3 structure) on the same LCG data, from
/// scripts/metrics_reference.py.
#[test]
fn pro_agrees_with_mvtec_script() {
    let (w, h) = (32usize, 24usize);
    let mut g = Lcg(3);
    let mut maps = Vec::new();
    let mut masks = Vec::new();
    for _ in 0..5 {
        let mut m = vec![0u8; w * h];
        for _ in 0..g.next() % 3 {
            let (x0, y0) = (
                (g.next() % w as u64) as usize,
                (g.next() % h as u64) as usize,
            );
            let (rw, rh) = (1 + (g.next() % 7) as usize, 1 + (g.next() % 5) as usize);
            for y in y0..(y0 + rh).min(h) {
                for x in x0..(x0 + rw).min(w) {
                    m[y * w + x] = 1;
                }
            }
        }
        let a: Vec<f32> = m
            .iter()
            .map(|&v| (g.next() % 64) as f32 / 16.0 + if v != 0 { 2.0 } else { 0.0 })
            .collect();
        maps.push(a);
        masks.push(m);
    }
    let maps: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
    let masks: Vec<&[u8]> = masks.iter().map(|m| m.as_slice()).collect();
    let reference = reference();
    let cases = reference["pro"].as_array().expect("pro cases");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let limit = number(case, "limit");
        close(
            pro_auc(&maps, &masks, w, h, limit).unwrap(),
            number(case, "pro_auc"),
        );
    }
}

/// Pixels outside the region of interest count neither way: a hot ignored normal pixel no longer
/// costs pixel AUROC or PRO, and a defect region that is wholly ignored is no region.
#[test]
fn pixel_metrics_leave_ignored_pixels_out() {
    // One 4 x 1 image: defect at x=0 (score 0.9), normal pixels at 0.1, 0.2 and a hot 1.0 at x=3;
    // a second image whose only defect (x=3) lies outside the ROI.
    let map_a = [0.9f32, 0.1, 0.2, 1.0];
    let mask_a = [1u8, 0, 0, 0];
    let map_b = [0.3f32, 0.2, 0.1, 0.0];
    let mask_b = [0u8, 0, 0, 1];
    let maps: [&[f32]; 2] = [&map_a, &map_b];
    let masks: [&[u8]; 2] = [&mask_a, &mask_b];
    let (auroc_all, pro_all) =
        patchcore::metrics::pixel_metrics(&maps, &masks, None, 4, 1).unwrap();
    assert!(auroc_all < 1.0 && pro_all < 1.0, "{auroc_all} {pro_all}");
    let inspect = vec![vec![true, true, true, false], vec![true, true, true, false]];
    let (auroc_roi, pro_roi) =
        patchcore::metrics::pixel_metrics(&maps, &masks, Some(&inspect), 4, 1).unwrap();
    assert_eq!(auroc_roi, 1.0);
    assert_eq!(pro_roi, 1.0);
}
