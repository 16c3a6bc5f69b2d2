//! Evaluation metrics: image/pixel AUROC, the MVTec AUPRO, and the best F1 over thresholds.
//! Pure Rust, counts in integers and sums in f64, so results do not depend on thread count.
//! Scores are ranked through an order-preserving `u32` key, so sorting is a plain integer sort
//! (4 bytes per sample) and tied scores always fall into one group.
use rayon::prelude::*;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("no samples")]
    Empty,
    #[error("{what}: {found} values, expected {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{what} {index} is NaN")]
    NaN { what: &'static str, index: usize },
    #[error("only {present} samples present: {metric} needs both normal and anomalous samples")]
    OneClass {
        metric: &'static str,
        present: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Order-preserving key: `a < b` as floats iff `key(a) < key(b)`; -0.0 and 0.0 share a key.
fn key(x: f32) -> u32 {
    let bits = (x + 0.0).to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

fn unkey(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7FFF_FFFF } else { !k })
}

/// Scores split by label into sorted (ascending) keys.
fn sorted_keys(scores: &[f32], labels: &[bool]) -> Result<(Vec<u32>, Vec<u32>), MetricsError> {
    if scores.len() != labels.len() {
        return Err(MetricsError::Length {
            what: "labels",
            expected: scores.len(),
            found: labels.len(),
        });
    }
    if scores.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some(index) = scores.iter().position(|s| s.is_nan()) {
        return Err(MetricsError::NaN {
            what: "score",
            index,
        });
    }
    let n_pos = labels.iter().filter(|&&l| l).count();
    let mut pos = Vec::with_capacity(n_pos);
    let mut neg = Vec::with_capacity(scores.len() - n_pos);
    for (&s, &l) in scores.iter().zip(labels) {
        if l {
            pos.push(key(s));
        } else {
            neg.push(key(s));
        }
    }
    pos.par_sort_unstable();
    neg.par_sort_unstable();
    Ok((pos, neg))
}

/// Area under the ROC curve, equal to sklearn's `roc_auc_score` (labels `true` = anomalous =
/// positive). Tied scores form one ROC step, so the area is the Mann-Whitney statistic
/// `P(pos > neg) + P(pos == neg) / 2`, computed from exact integer counts (one rounding at the
/// end). Needs both classes.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Result<f64, MetricsError> {
    let (pos, neg) = sorted_keys(scores, labels)?;
    one_class_check("AUROC", &pos, &neg)?;
    // For each distinct negative score: positives above it count 2, positives tied count 1.
    let mut twice = 0u128;
    let (mut p, mut j) = (0usize, 0usize);
    while j < neg.len() {
        let v = neg[j];
        let j_end = j + neg[j..].partition_point(|&x| x == v);
        p += pos[p..].partition_point(|&x| x < v);
        let tied = pos[p..].partition_point(|&x| x == v);
        let above = pos.len() - p - tied;
        twice += (j_end - j) as u128 * (2 * above + tied) as u128;
        p += tied;
        j = j_end;
    }
    Ok(twice as f64 / (2.0 * pos.len() as f64 * neg.len() as f64))
}

fn one_class_check(metric: &'static str, pos: &[u32], neg: &[u32]) -> Result<(), MetricsError> {
    match (pos.is_empty(), neg.is_empty()) {
        (true, _) => Err(MetricsError::OneClass {
            metric,
            present: "normal",
        }),
        (_, true) => Err(MetricsError::OneClass {
            metric,
            present: "anomalous",
        }),
        _ => Ok(()),
    }
}

/// Best F1 over all thresholds, predicting anomalous when `score >= threshold`; every distinct
/// score is tried. Returns the F1 and its threshold (the highest one when several tie). F1 is
/// compared exactly as `2tp / (tp + fp + P)` in integers. Needs at least one anomalous sample.
pub fn f1_max(scores: &[f32], labels: &[bool]) -> Result<(f64, f32), MetricsError> {
    let (pos, neg) = sorted_keys(scores, labels)?;
    if pos.is_empty() {
        return Err(MetricsError::OneClass {
            metric: "F1",
            present: "normal",
        });
    }
    let n_pos = pos.len() as u128;
    // Walk thresholds from the highest score down; (tp, fp) count scores >= threshold.
    let (mut ip, mut ineg) = (pos.len(), neg.len());
    let mut best: Option<(u128, u128, u32)> = None;
    while ip > 0 {
        let t = match ineg {
            0 => pos[ip - 1],
            _ => pos[ip - 1].max(neg[ineg - 1]),
        };
        ip = pos[..ip].partition_point(|&x| x < t);
        ineg = neg[..ineg].partition_point(|&x| x < t);
        let tp = (pos.len() - ip) as u128;
        let fp = (neg.len() - ineg) as u128;
        // f1 = 2tp / (tp + fp + P); compare tp/(tp+fp+P) by cross-multiplying.
        let better = match best {
            None => true,
            Some((btp, bfp, _)) => tp * (btp + bfp + n_pos) > btp * (tp + fp + n_pos),
        };
        if better {
            best = Some((tp, fp, t));
        }
    }
    let (tp, fp, t) = best.expect("at least one positive, so one threshold");
    Ok((2.0 * tp as f64 / (tp + fp + n_pos) as f64, unkey(t)))
}

/// The F1-best "reject above" threshold from images an operator judged: `good` scores (the
/// bank's calibration images, images marked good) against confirmed `defects`. The cut is
/// `f1_max`'s (the highest threshold among ties, so the fewest good parts rejected), placed
/// halfway to the next lower score, so that a score at the cut is rejected under the app's
/// `score > threshold` rule and rounding does not flip a judged image. Returns the threshold and
/// its F1; `None` without a defect or a good score, or with a score that is not finite.
pub fn f1_best_threshold(good: &[f32], defects: &[f32]) -> Option<(f32, f64)> {
    if good.is_empty() || defects.is_empty() {
        return None;
    }
    let scores: Vec<f32> = defects.iter().chain(good).copied().collect();
    let labels: Vec<bool> = (0..scores.len()).map(|i| i < defects.len()).collect();
    let (f1, cut) = f1_max(&scores, &labels).ok()?;
    let below = scores
        .iter()
        .copied()
        .filter(|&s| s < cut)
        .fold(f32::NEG_INFINITY, f32::max);
    let threshold = if below.is_finite() {
        below + (cut - below) / 2.0
    } else {
        // Everything is flagged: just under the lowest score.
        cut - cut.abs().max(1.0) * 1e-4
    };
    Some((threshold, f1))
}

/// Connected components (8-connectivity) of the nonzero pixels of one mask, labelled from 1;
/// returns the label image and each component's size.
fn components(mask: &[u8], width: usize, height: usize) -> (Vec<u32>, Vec<u32>) {
    let mut labels = vec![0u32; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        let mut size = 0u32;
        labels[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % width, i / width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let j = ny * width + nx;
                    if mask[j] != 0 && labels[j] == 0 {
                        labels[j] = id;
                        stack.push(j);
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// The FPR limit of MVTec AD's AUPRO, as eval reports it.
pub const PRO_MAX_FPR: f64 = 0.3;

/// Pixel AUROC over every pixel of every map, and PRO up to `PRO_MAX_FPR`: the two pixel-level
/// figures eval reports and the configuration choice ranks by. Masks: nonzero = defect.
/// `inspect` (one per map, true = inspected) leaves ignored pixels out of both figures: a region of
/// interest decides what is inspected, so pixels outside it count neither as hits nor as misses.
pub fn pixel_metrics(
    maps: &[&[f32]],
    masks: &[&[u8]],
    inspect: Option<&[Vec<bool>]>,
    width: usize,
    height: usize,
) -> Result<(f64, f64), MetricsError> {
    let kept = |i: usize, j: usize| inspect.is_none_or(|m| m[i].get(j) != Some(&false));
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for (i, (map, mask)) in maps.iter().zip(masks).enumerate() {
        for (j, (&v, &m)) in map.iter().zip(mask.iter()).enumerate() {
            if kept(i, j) {
                scores.push(v);
                labels.push(m > 0);
            }
        }
    }
    Ok((
        auroc(&scores, &labels)?,
        pro_auc_within(maps, masks, inspect, width, height, PRO_MAX_FPR)?,
    ))
}

/// Normalised area under the PRO curve up to `max_fpr` (MVTec AD's AUPRO, as in the MVTec
/// evaluation script): every 8-connected component of a ground-truth mask (nonzero = defect) is a
/// region. At threshold t, PRO = mean over all regions of the fraction of the region's pixels
/// with score >= t, and FPR = fraction of all normal pixels with score >= t. The sweep is exact,
/// not a fixed grid of thresholds: one (FPR, PRO) point per distinct score (ties merged), from
/// (0, 0); the trapezoid area is cut at `max_fpr` with linear interpolation and divided by
/// `max_fpr`. Masks: nonzero = defect. Needs at least one defect region and one normal pixel.
pub fn pro_auc(
    maps: &[&[f32]],
    masks: &[&[u8]],
    width: usize,
    height: usize,
    max_fpr: f64,
) -> Result<f64, MetricsError> {
    pro_auc_within(maps, masks, None, width, height, max_fpr)
}

/// [`pro_auc`] over the inspected pixels only: ignored normal pixels are no false positives,
/// and a defect region is only its inspected part (a region wholly ignored is no region).
fn pro_auc_within(
    maps: &[&[f32]],
    masks: &[&[u8]],
    inspect: Option<&[Vec<bool>]>,
    width: usize,
    height: usize,
    max_fpr: f64,
) -> Result<f64, MetricsError> {
    if maps.len() != masks.len() || inspect.is_some_and(|m| m.len() != maps.len()) {
        return Err(MetricsError::Length {
            what: "masks",
            expected: maps.len(),
            found: masks.len(),
        });
    }
    if maps.is_empty() || width == 0 || height == 0 {
        return Err(MetricsError::Empty);
    }
    if !(max_fpr > 0.0 && max_fpr <= 1.0) {
        return Err(MetricsError::Invalid(format!(
            "max_fpr must be in (0, 1], got {max_fpr}"
        )));
    }
    let n = width * height;
    for (i, (map, mask)) in maps.iter().zip(masks).enumerate() {
        for (what, len) in [("anomaly map", map.len()), ("mask", mask.len())] {
            if len != n {
                return Err(MetricsError::Invalid(format!(
                    "{what} {i} has {len} values, expected {width}x{height} = {n}"
                )));
            }
        }
        if let Some(p) = map.iter().position(|v| v.is_nan()) {
            return Err(MetricsError::NaN {
                what: "anomaly map value",
                index: i * n + p,
            });
        }
    }

    // Normal pixels need only their key; region pixels carry key and region id (u64: key high).
    let per_image: Vec<(Vec<u32>, Vec<u64>, Vec<u32>)> = maps
        .par_iter()
        .zip(masks.par_iter())
        .enumerate()
        .map(|(i, (map, mask))| {
            let keep = inspect.map(|m| m[i].as_slice());
            let kept = |j: usize| keep.is_none_or(|k| k.get(j) != Some(&false));
            let within: Option<Vec<u8>> = keep.map(|_| {
                mask.iter()
                    .enumerate()
                    .map(|(j, &v)| if kept(j) { v } else { 0 })
                    .collect()
            });
            let (labels, sizes) = components(within.as_deref().unwrap_or(mask), width, height);
            let mut normal = Vec::with_capacity(n);
            let mut region = Vec::new();
            for (j, (&v, &l)) in map.iter().zip(&labels).enumerate() {
                if !kept(j) {
                    continue;
                }
                if l == 0 {
                    normal.push(key(v));
                } else {
                    region.push(((key(v) as u64) << 32) | (l - 1) as u64);
                }
            }
            (normal, region, sizes)
        })
        .collect();
    let mut inv_size = Vec::new();
    let mut normal = Vec::new();
    let mut region = Vec::new();
    for (nm, rg, sizes) in per_image {
        let offset = inv_size.len() as u64;
        normal.extend(nm);
        region.extend(rg.into_iter().map(|e| e + offset));
        inv_size.extend(sizes.into_iter().map(|s| 1.0 / s as f64));
    }
    if inv_size.is_empty() {
        return Err(MetricsError::OneClass {
            metric: "AUPRO",
            present: "normal",
        });
    }
    if normal.is_empty() {
        return Err(MetricsError::OneClass {
            metric: "AUPRO",
            present: "anomalous",
        });
    }
    normal.par_sort_unstable();
    region.par_sort_unstable();

    let n_normal = normal.len() as f64;
    let n_regions = inv_size.len() as f64;
    let (mut i_n, mut i_r) = (normal.len(), region.len());
    let (mut prev_fpr, mut prev_pro) = (0.0f64, 0.0f64);
    let (mut fp, mut pro_sum, mut area) = (0usize, 0.0f64, 0.0f64);
    while i_n > 0 || i_r > 0 {
        let t = match (i_n, i_r) {
            (0, _) => (region[i_r - 1] >> 32) as u32,
            (_, 0) => normal[i_n - 1],
            _ => normal[i_n - 1].max((region[i_r - 1] >> 32) as u32),
        };
        while i_n > 0 && normal[i_n - 1] == t {
            i_n -= 1;
            fp += 1;
        }
        while i_r > 0 && (region[i_r - 1] >> 32) as u32 == t {
            i_r -= 1;
            pro_sum += inv_size[(region[i_r] & 0xFFFF_FFFF) as usize];
        }
        let fpr = fp as f64 / n_normal;
        let pro = pro_sum / n_regions;
        if fpr > max_fpr {
            // Interpolate PRO at max_fpr on the segment that crosses it.
            let pro_cut = prev_pro + (pro - prev_pro) * (max_fpr - prev_fpr) / (fpr - prev_fpr);
            area += 0.5 * (pro_cut + prev_pro) * (max_fpr - prev_fpr);
            return Ok(area / max_fpr);
        }
        area += 0.5 * (pro + prev_pro) * (fpr - prev_fpr);
        (prev_fpr, prev_pro) = (fpr, pro);
    }
    Ok(area / max_fpr)
}

#[cfg(test)]
mod tests {
    use super::f1_best_threshold;

    #[test]
    fn f1_best_threshold_separates_judged_images() {
        // Separable: halfway between the worst good part and the mildest defect.
        let (t, f1) = f1_best_threshold(&[1.0, 1.2, 1.4], &[1.8, 2.5, 3.0]).expect("defects");
        assert!((t - 1.6).abs() < 1e-6, "{t}");
        assert_eq!(f1, 1.0);
        // One defect scores among the good parts: F1 is better missing it (2 tp, 0 fp: 0.8)
        // than flagging it with two good parts (3 tp, 2 fp: 0.75).
        let (t, f1) = f1_best_threshold(&[1.0, 1.1, 1.3, 1.5], &[1.2, 2.0, 2.2]).expect("defects");
        assert!((t - 1.75).abs() < 1e-6, "{t}");
        assert!((f1 - 0.8).abs() < 1e-12, "{f1}");
        // Under `score > t`, every defect above the cut is rejected and no good part is.
        assert!([2.0f32, 2.2].iter().all(|&d| d > t) && [1.0f32, 1.5].iter().all(|&g| g <= t));
        // Everything flagged (defects below every good part): just under the lowest score.
        let (t, _) = f1_best_threshold(&[5.0], &[1.0, 2.0, 3.0]).expect("defects");
        assert!(t < 1.0 && t > 0.99, "{t}");
        assert_eq!(f1_best_threshold(&[1.0], &[]), None);
        assert_eq!(f1_best_threshold(&[], &[1.0]), None);
        assert_eq!(f1_best_threshold(&[1.0], &[f32::NAN]), None);
    }
}
