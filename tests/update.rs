//! Teaching a bank (`update`, `history`, `revert`) on a synthetic category: near-duplicates add
//! nothing, added patches end up covered within r, versions revert bit for bit, bad input is refused.
mod common;

use patchcore::backbone::{self, Backbone};
use patchcore::bank::{BankFile, ImageScore, Versions};
use patchcore::data::{self, synthetic::SyntheticSpec, CropMode};
use patchcore::decide::content_cells;
use patchcore::engine::coreset::random_projection;
use patchcore::engine::update::far_score;
use patchcore::engine::{
    decode_all, update, Extractor, Method, NoProgress, PatchCore, Precision, UpdateOptions,
};
use patchcore::report::Operator;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Device, Tensor};

const BACKBONE: &str = "efficientnet_lite0";

struct Fixture {
    dir: tempfile::TempDir,
    ds: data::Dataset,
    bank: PathBuf,
}

/// One synthetic category and its fitted bank per test process.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec {
            n_train: 16,
            n_test_good: 4,
            n_test_defect_per_type: 2,
            ..Default::default()
        };
        let ds = data::synthetic::generate(dir.path(), "parts", &spec).unwrap();
        let opts = common::small_fit_options(BACKBONE, &ds.root);
        let (_, file, _) = PatchCore::fit(&ds.train, &opts, &NoProgress).unwrap();
        let bank = dir.path().join("parts.safetensors");
        file.save(&bank).unwrap();
        Fixture { dir, ds, bank }
    })
}

fn weights() -> PathBuf {
    common::real_weights(backbone::find(BACKBONE).unwrap().weights_file)
}

fn options(version: u32, force: bool) -> UpdateOptions {
    UpdateOptions {
        weights: weights(),
        device: Device::Cpu,
        precision: Precision::F32,
        batch_size: 8,
        force,
        version,
        time: "2026-12-05T00:00:00Z".into(),
        operator: Operator {
            user: "tester".into(),
            host: "bench".into(),
        },
    }
}

/// A copy of the fitted bank in its own folder, so tests do not share versions folders.
fn bank_copy(name: &str) -> PathBuf {
    let f = fixture();
    let dir = f.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("parts.safetensors");
    std::fs::copy(&f.bank, &path).unwrap();
    path
}

fn defects() -> Vec<PathBuf> {
    fixture()
        .ds
        .test
        .iter()
        .filter(|s| s.is_anomalous())
        .map(|s| s.path.clone())
        .collect()
}

#[test]
fn its_own_training_images_add_no_rows() {
    let f = fixture();
    let file = BankFile::load(&f.bank).unwrap();
    let rows = file.n_rows();
    let up = update(&f.bank, file, &f.ds.train, &options(2, false)).unwrap();
    assert_eq!(up.entry.rows_added, 0, "{:?}", up.entry.images);
    assert_eq!(up.file.n_rows(), rows);
    assert!(up.entry.images.iter().all(|i| i.rows_added == 0));
    // Nothing new to cover: the fit's calibration scores are kept, the training images join them.
    let before = BankFile::load(&f.bank).unwrap().meta.calibration.scores;
    let after = &up.file.meta.calibration.scores;
    assert_eq!(after.len(), before.len() + f.ds.train.len());
    assert_eq!(&after[..before.len()], &before[..]);
}

#[test]
fn a_map_peak_bank_scores_added_images_by_their_peak_and_keeps_the_fits_as_bounds() {
    let f = fixture();
    let mut opts = common::small_fit_options(BACKBONE, &f.ds.root);
    opts.method.image_score = ImageScore::MapPeak;
    let (_, file, _) = PatchCore::fit(&f.ds.train, &opts, &NoProgress).unwrap();
    let dir = f.dir.path().join("map_peak");
    std::fs::create_dir_all(&dir).unwrap();
    let bank = dir.join("parts.safetensors");
    file.save(&bank).unwrap();
    // Its own training images add no rows, so each one's calibration score is its score against
    // the bank as inspection gives it: the peak of its map, not its top patch.
    let add = &f.ds.train[..4];
    let up = update(&bank, file.clone(), add, &options(2, false)).unwrap();
    assert_eq!(up.entry.rows_added, 0);
    let model =
        PatchCore::load_with_weights(&bank, &weights(), Device::Cpu, Precision::F32).unwrap();
    let mut inspected = Vec::new();
    model.inspect_paths(add, 4, |_, r| {
        let i = r.unwrap();
        assert!(
            i.score < i.top_patch.score,
            "the peak of a blurred map lies below its top patch"
        );
        inspected.push(i.score);
        true
    });
    let fitted = file.meta.calibration.scores.len();
    let scores = &up.file.meta.calibration.scores;
    for ((&got, &want), image) in scores[fitted..]
        .iter()
        .zip(&inspected)
        .zip(&up.entry.images)
    {
        assert!((got - want).abs() <= 1e-4 * want, "{got} against {want}");
        assert!((image.score - want).abs() <= 1e-4 * want);
    }
    // Rows that do get added leave the fit's images at their stored scores, reported as bounds.
    let grown = update(&bank, file.clone(), &defects(), &options(2, true)).unwrap();
    assert!(grown.entry.rows_added > 0);
    assert_eq!(grown.bounded_calibration, fitted);
    assert_eq!(
        grown.file.meta.calibration.scores[..fitted],
        file.meta.calibration.scores[..]
    );
}

/// Training parts of two widths share one input, the narrower padded. `update` leaves padding
/// out as inspection does: the padded training images add no rows (their padding, which the fit
/// never put in the bank, would), each is scored as `predict` scores it, an image too small to
/// fill a cell is refused, and a bank fitted before `update` left padding out (its kept
/// calibration patches may show padding) is refused.
#[test]
fn a_padded_bank_learns_its_parts_without_their_padding() {
    let f = fixture();
    let dir = f.dir.path().join("padded");
    std::fs::create_dir_all(&dir).unwrap();
    // Every other training part cut to 176 of its 256 columns: 88 of the 128-px input's at half
    // size, padded on both sides.
    let train: Vec<PathBuf> =
        f.ds.train
            .iter()
            .enumerate()
            .map(|(i, p)| match i % 2 {
                0 => p.clone(),
                _ => {
                    let out = dir.join(format!("train{i}.png"));
                    let img = data::load_rgb8(p).unwrap();
                    image::imageops::crop_imm(&img, 40, 0, 176, 256)
                        .to_image()
                        .save(&out)
                        .unwrap();
                    out
                }
            })
            .collect();
    let mut opts = common::small_fit_options(BACKBONE, &f.ds.root);
    opts.method.crop = CropMode::whole_for(&[(256, 256), (176, 256)], 128);
    opts.method.image_score = ImageScore::MapPeak;
    let (_, file, _) = PatchCore::fit(&train, &opts, &NoProgress).unwrap();
    // The fit's calibration searched no padding: its padding cells score 0.
    let [gh, gw] = file.meta.grid;
    let mut padding = 0;
    for (g, grid) in file
        .meta
        .calibration_geometry
        .iter()
        .zip(file.calibration_maps.chunks_exact((gh * gw) as usize))
    {
        for (shown, &v) in content_cells(g, gh, gw).into_iter().zip(grid) {
            assert!(shown || v == 0.0, "a padding cell scored {v}");
            padding += usize::from(!shown);
        }
    }
    assert!(padding > 0, "half the calibration images are padded");
    let bank = dir.join("parts.safetensors");
    file.save(&bank).unwrap();
    let up = update(&bank, file.clone(), &train, &options(2, false)).unwrap();
    assert_eq!(up.entry.rows_added, 0, "{:?}", up.entry.images);
    let model =
        PatchCore::load_with_weights(&bank, &weights(), Device::Cpu, Precision::F32).unwrap();
    let mut inspected = Vec::new();
    model.inspect_paths(&train, 4, |_, r| {
        inspected.push(r.unwrap().score);
        true
    });
    for (image, want) in up.entry.images.iter().zip(inspected) {
        assert!(
            (image.score - want).abs() <= 1e-4 * want,
            "{}: {} against {want}",
            image.path.display(),
            image.score
        );
    }
    // An image too small to fill a cell would teach nothing and score 0: refused, as `predict` does.
    let tiny = dir.join("tiny.png");
    image::RgbImage::new(3, 3).save(&tiny).unwrap();
    let err = update(&bank, file.clone(), &[tiny], &options(2, false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing would be inspected"), "{err}");
    let mut older = file;
    older.meta.growth.as_mut().unwrap().padding_left_out = false;
    let err = update(&bank, older, &train[..1], &options(2, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fitted before `update` left padding out"),
        "{err}"
    );
}

#[test]
fn added_patches_lie_within_r_and_adding_them_again_adds_nothing() {
    let bank = bank_copy("within_r");
    let file = BankFile::load(&bank).unwrap();
    let r = file.meta.growth.as_ref().unwrap().covering_radius;
    let add = defects();
    let up = update(&bank, file, &add, &options(2, true)).unwrap();
    assert!(up.entry.rows_added > 0, "defects must add rows");
    let grown = up.file;
    let m = &grown.meta;
    assert_eq!(grown.n_rows(), m.coreset_size as usize);
    assert_eq!(
        m.calibration.scores.len(),
        16 + add.len(),
        "calibration over the fit's images plus the added ones"
    );
    // Every patch of the added images, projected as the selection projected, within r of the
    // grown bank: checked exactly, in f64, against every row.
    let extractor = Extractor::new(
        Backbone::load(BACKBONE, &weights(), Device::Cpu).unwrap(),
        Method::from_meta(m),
        Precision::F32,
    )
    .unwrap();
    let crops: Vec<_> = decode_all(&add, m.crop)
        .into_iter()
        .map(|d| d.unwrap().crop)
        .collect();
    let refs: Vec<&image::RgbImage> = crops.iter().collect();
    let (emb, _) = extractor.embed(&refs).unwrap();
    let d = m.embed_dim as i64;
    let p = Tensor::from_slice(&random_projection(
        d as usize,
        m.coreset_projection as usize,
        m.seed,
    ))
    .view([d, m.coreset_projection as i64])
    .to_kind(tch::Kind::Double);
    let q = emb.view([-1, d]).to_kind(tch::Kind::Double).matmul(&p);
    let b = Tensor::from_slice(&grown.rows)
        .view([-1, d])
        .to_kind(tch::Kind::Double)
        .matmul(&p);
    // In blocks of queries: all at once, the differences take 22 GB.
    let n = q.size()[0];
    let nearest = (0..n)
        .step_by(64)
        .map(|s| {
            (q.narrow(0, s, 64.min(n - s)).unsqueeze(1) - b.unsqueeze(0))
                .square()
                .sum_dim_intlist(2, false, tch::Kind::Double)
                .amin(1, false)
                .max()
                .sqrt()
                .double_value(&[])
        })
        .fold(0.0f64, f64::max);
    assert!(
        nearest <= f64::from(r) * (1.0 + 1e-3),
        "a patch lies {nearest} from the grown bank, r = {r}"
    );
    // The grown bank covers them: the same images again add nothing.
    let path = bank.with_file_name("grown.safetensors");
    grown.save(&path).unwrap();
    let again = update(&path, grown, &add, &options(3, true)).unwrap();
    assert_eq!(again.entry.rows_added, 0);
}

#[test]
fn update_is_deterministic_and_revert_restores_bit_for_bit() {
    let bank = bank_copy("revert");
    let original = std::fs::read(&bank).unwrap();
    let versions = Versions::of(&bank);
    let add = defects();
    let file = BankFile::load(&bank).unwrap();
    let first = update(&bank, file.clone(), &add, &options(2, true)).unwrap();
    let second = update(&bank, file, &add, &options(2, true)).unwrap();
    assert_eq!(first.file, second.file, "identical inputs, identical banks");
    versions.commit(&first.file, 1, u64::MAX).unwrap();
    let updated = std::fs::read(&bank).unwrap();
    assert_ne!(updated, original);
    assert_eq!(std::fs::read(versions.path(1)).unwrap(), original);
    assert_eq!(std::fs::read(versions.path(2)).unwrap(), updated);
    let meta = patchcore::bank::read_meta(&bank).unwrap();
    assert_eq!(meta.version, 2);
    assert_eq!(meta.history.len(), 1);
    let h = &meta.history[0];
    assert_eq!((h.parent, h.operator.user.as_str()), (1, "tester"));
    assert_eq!(h.images.len(), add.len());
    assert_eq!(
        h.images[0].sha256,
        patchcore::report::sha256_file(&add[0]).unwrap()
    );
    assert_eq!(
        h.rows_added,
        h.images.iter().map(|i| i.rows_added).sum::<u32>()
    );

    versions.revert(2, 1).unwrap();
    assert_eq!(std::fs::read(&bank).unwrap(), original, "bit for bit");
    versions.revert(1, 2).unwrap();
    assert_eq!(std::fs::read(&bank).unwrap(), updated);
    let missing = versions.revert(2, 7).unwrap_err().to_string();
    assert!(
        missing.contains("no version 7") && missing.contains("1, 2"),
        "{missing}"
    );

    // A folder over its size limit is refused with the bank unchanged and no new version left.
    let file = BankFile::load(&bank).unwrap();
    let next = versions.next_number(2).unwrap();
    let grown = update(&bank, file, &add[..1], &options(next, true)).unwrap();
    let err = versions
        .commit(&grown.file, 2, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("over the limit") && err.contains("bank was not changed"),
        "{err}"
    );
    assert_eq!(std::fs::read(&bank).unwrap(), updated);
    assert!(!versions.path(next).exists());
}

#[test]
fn undecodable_and_far_above_threshold_images_are_refused() {
    let f = fixture();
    let bank = &f.bank;
    let file = BankFile::load(bank).unwrap();
    let broken = f.dir.path().join("broken.png");
    let good = std::fs::read(&f.ds.train[0]).unwrap();
    std::fs::write(&broken, &good[..good.len() / 3]).unwrap();
    let add = vec![f.ds.train[1].clone(), broken.clone()];
    let err = update(bank, file.clone(), &add, &options(2, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken.png") && err.contains("nothing added"),
        "{err}"
    );

    // The defect scoring highest against the bank: far above the threshold, refused by name.
    let weights = weights();
    let model = PatchCore::load_with_weights(bank, &weights, Device::Cpu, Precision::F32).unwrap();
    let mut worst = (f32::MIN, PathBuf::new());
    model.inspect_paths(&defects(), 8, |_, r| {
        let r = r.unwrap();
        if r.score > worst.0 {
            worst = (r.score, r.path);
        }
        true
    });
    assert!(
        worst.0 > far_score(&file.meta),
        "no synthetic defect is far"
    );
    let err = update(bank, file.clone(), &[worst.1.clone()], &options(2, false))
        .unwrap_err()
        .to_string();
    let name = worst.1.file_name().unwrap().to_str().unwrap();
    assert!(err.contains("far above") && err.contains(name), "{err}");

    // A bank fitted before updates existed gets told to refit, not a panic.
    let mut old = file;
    old.meta.growth = None;
    old.calibration_patches = None;
    let err = update(
        Path::new("old.safetensors"),
        old,
        &add[..1],
        &options(2, false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("refit"), "{err}");
}

#[test]
fn cli_update_history_revert() {
    let bank = bank_copy("cli");
    let b = bank.to_str().unwrap();
    let original = std::fs::read(&bank).unwrap();
    let add = defects();
    let mut args = vec!["update", "--bank", b, "--device", "cpu", "--force", "--add"];
    args.extend(add.iter().map(|p| p.to_str().unwrap()));
    let out = common::run_patchcore(&args);
    assert!(
        out.contains("rows added") && out.contains("threshold"),
        "{out}"
    );
    assert!(out.contains("version 2 (from 1)"), "{out}");
    let out = common::run_patchcore(&["history", "--bank", b]);
    assert!(
        out.contains("version 2 (from 1)") && out.contains("sha256"),
        "{out}"
    );
    assert!(out.contains("kept in") && out.contains("1, 2"), "{out}");
    common::run_patchcore(&["revert", "--bank", b, "--to", "1"]);
    assert_eq!(std::fs::read(&bank).unwrap(), original);
    let out = std::process::Command::new(common::patchcore_bin())
        .args(["revert", "--bank", b, "--to", "9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version 9"));
}

/// ROI changes are bank versions like updates (audited, reverted bit for bit); an update refuses
/// a bank with an ROI, and a bank taught by `update` refuses to be recalibrated from the fit's maps.
#[test]
fn roi_changes_are_versions_and_do_not_mix_with_updates() {
    use patchcore::engine::calibrate::set_roi;
    let bank = bank_copy("roi");
    let original = std::fs::read(&bank).unwrap();
    let versions = Versions::of(&bank);
    // Inspect the left half (a 2 x 1 mask stretched over each image).
    let roi = patchcore::decide::Roi::new(2, 1, &[1, 0]).unwrap();
    set_roi(&bank, Some(roi)).unwrap();
    let meta = patchcore::bank::read_meta(&bank).unwrap();
    assert_eq!(meta.version, 2);
    let h = meta.history.last().unwrap();
    assert!(
        h.action.starts_with("ROI set") && h.images.is_empty(),
        "{h:?}"
    );
    assert_eq!(std::fs::read(versions.path(1)).unwrap(), original);

    let err = update(
        &bank,
        BankFile::load(&bank).unwrap(),
        &defects()[..1],
        &options(3, true),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("region of interest"), "{err}");
    versions.revert(2, 1).unwrap();
    assert_eq!(std::fs::read(&bank).unwrap(), original, "bit for bit");

    // Grow the fitted version, then try to lay an ROI over its fit-only calibration maps.
    let file = BankFile::load(&bank).unwrap();
    let next = versions.next_number(1).unwrap();
    let grown = update(&bank, file, &defects()[..1], &options(next, true)).unwrap();
    versions.commit(&grown.file, 1, u64::MAX).unwrap();
    let grown_bytes = std::fs::read(&bank).unwrap();
    let roi = patchcore::decide::Roi::new(2, 1, &[1, 0]).unwrap();
    let err = set_roi(&bank, Some(roi))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("taught new images by `update`"), "{err}");
    assert_eq!(
        std::fs::read(&bank).unwrap(),
        grown_bytes,
        "the bank is unchanged"
    );
}
