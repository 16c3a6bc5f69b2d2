//! The whole method on a synthetic category (no ../shared needed): fit, save, load, evaluate,
//! plus the bank file's guarantees (bit-identical refits, validated loading, clear errors).
mod common;

use patchcore::backbone;
use patchcore::bank::{BankDtype, BankError, BankFile};
use patchcore::data::{self, synthetic::SyntheticSpec};
use patchcore::engine::NoProgress;
use patchcore::engine::{EngineError, FitOptions, PatchCore, Precision};
use patchcore::metrics;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::Device;

const BACKBONE: &str = "efficientnet_lite0";

/// One synthetic category per test process.
fn dataset() -> &'static (tempfile::TempDir, data::Dataset) {
    static DS: OnceLock<(tempfile::TempDir, data::Dataset)> = OnceLock::new();
    DS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec {
            n_train: 24,
            n_test_good: 8,
            n_test_defect_per_type: 3,
            ..Default::default()
        };
        let ds = data::synthetic::generate(dir.path(), "parts", &spec).unwrap();
        (dir, ds)
    })
}

fn options(ds: &data::Dataset) -> FitOptions {
    common::small_fit_options(BACKBONE, &ds.root)
}

fn fitted() -> &'static (PathBuf, BankFile) {
    static BANK: OnceLock<(PathBuf, BankFile)> = OnceLock::new();
    BANK.get_or_init(|| {
        let (dir, ds) = dataset();
        let (_, file, _) = PatchCore::fit(&ds.train, &options(ds), &NoProgress).unwrap();
        let path = dir.path().join("parts.safetensors");
        file.save(&path).unwrap();
        (path, file)
    })
}

#[test]
fn fit_save_load_eval_detects_synthetic_defects() {
    let (_, ds) = dataset();
    let (path, file) = fitted();
    assert_eq!(file.meta.n_train_images, 24);
    assert_eq!(file.n_rows(), file.meta.coreset_size as usize);
    assert_eq!(file.meta.calibration.scores.len(), 24);
    let weights = common::real_weights(backbone::find(BACKBONE).unwrap().weights_file);
    let model = PatchCore::load_with_weights(path, &weights, Device::Cpu, Precision::F32).unwrap();
    let paths: Vec<PathBuf> = ds.test.iter().map(|s| s.path.clone()).collect();
    let mut results = Vec::new();
    model.inspect_paths(&paths, 4, |_, r| {
        results.push(r.unwrap());
        true
    });
    let labels: Vec<bool> = ds.test.iter().map(|s| s.is_anomalous()).collect();
    let scores: Vec<f32> = results.iter().map(|r| r.score).collect();
    let image_auroc = metrics::auroc(&scores, &labels).unwrap();
    let crop = model.meta().crop;
    let mut pix_scores = Vec::new();
    let mut pix_labels = Vec::new();
    for (s, r) in ds.test.iter().zip(&results) {
        let mask = match &s.mask {
            Some(m) => data::load_mask(m, crop).unwrap(),
            None => vec![0; r.map.values.len()],
        };
        pix_labels.extend(mask.iter().map(|&v| v > 0));
        pix_scores.extend_from_slice(&r.map.values);
        // The image score is the top patch's score, and its box lies inside the image.
        assert_eq!(r.score, r.top_patch.score);
        let b = r.top_patch.box_original;
        assert!(b[0] + b[2] <= r.geometry.orig_width && b[1] + b[3] <= r.geometry.orig_height);
    }
    let pixel_auroc = metrics::auroc(&pix_scores, &pix_labels).unwrap();
    println!("synthetic: image AUROC {image_auroc:.4}, pixel AUROC {pixel_auroc:.4}");
    assert!(image_auroc > 0.95, "image AUROC {image_auroc}");
    assert!(pixel_auroc > 0.95, "pixel AUROC {pixel_auroc}");
}

#[test]
fn calibration_leaves_each_image_out() {
    let (_, ds) = dataset();
    let (path, file) = fitted();
    assert!(file.source_image.iter().all(|&s| (0..24).contains(&s)));
    let weights = common::real_weights(backbone::find(BACKBONE).unwrap().weights_file);
    let model = PatchCore::load_with_weights(path, &weights, Device::Cpu, Precision::F32).unwrap();
    let mut plain = Vec::new();
    model.inspect_paths(&ds.train, 8, |_, r| {
        plain.push(r.unwrap().score);
        true
    });
    // With its own rows masked out, every training image scores at least as high as when it can
    // match itself, and strictly higher when some of its rows made it into the bank.
    let loo = &file.meta.calibration.scores;
    for (img, (l, p)) in loo.iter().zip(&plain).enumerate() {
        assert!(l >= p, "image {img}: leave-one-out {l} < plain {p}");
        if file.source_image.contains(&(img as i32)) {
            assert!(l > p, "image {img}: its own bank rows were not masked out");
        }
    }
    assert_eq!(
        file.meta.calibration.threshold,
        loo.iter().cloned().fold(f32::MIN, f32::max)
    );
}

#[test]
fn same_data_and_seed_give_the_same_bank_bit_for_bit() {
    let (_, ds) = dataset();
    let (_, first) = fitted();
    let (_, again, _) = PatchCore::fit(&ds.train, &options(ds), &NoProgress).unwrap();
    let mut a = first.clone();
    a.meta.created = again.meta.created.clone();
    assert!(a
        .rows
        .iter()
        .zip(&again.rows)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(a, again);
    let other_seed = PatchCore::fit(
        &ds.train,
        &FitOptions {
            seed: 1,
            ..options(ds)
        },
        &NoProgress,
    )
    .unwrap()
    .1;
    assert_ne!(
        other_seed.source_image, first.source_image,
        "the seed should change the coreset"
    );
}

#[test]
fn bank_round_trips_and_f16_halves_it() {
    let (dir, _) = dataset();
    let (path, file) = fitted();
    let loaded = BankFile::load(path).unwrap();
    assert_eq!(&loaded, file);
    assert_eq!(patchcore::bank::read_meta(path).unwrap(), file.meta);
    let mut half = file.clone();
    half.meta.bank_dtype = BankDtype::F16;
    let half_path = dir.path().join("half.safetensors");
    half.save(&half_path).unwrap();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    // The rows take half the bytes (the kept calibration patches stay f32, so the file is a
    // little more than half); headers differ by a few bytes of offsets.
    let saved = size(path) - size(&half_path);
    let half_rows = (file.rows.len() * 2) as f64;
    assert!(
        (saved - half_rows).abs() < 64.0,
        "saved {saved} bytes, rows {half_rows}"
    );
    let back = BankFile::load(&half_path).unwrap();
    let max_rel = back
        .rows
        .iter()
        .zip(&file.rows)
        .map(|(a, b)| ((a - b) / b.abs().max(1e-3)).abs())
        .fold(0.0, f32::max);
    assert!(max_rel < 1e-3, "f16 round trip error {max_rel}");
}

#[test]
fn broken_bank_files_give_clear_errors_and_leave_the_old_file() {
    let (dir, _) = dataset();
    let (path, file) = fitted();
    let bytes = std::fs::read(path).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = BankFile::load(&truncated).unwrap_err().to_string();
    assert!(
        e.contains("truncated.safetensors") && e.contains("truncated"),
        "{e}"
    );

    let mut newer = file.clone();
    newer.meta.format_version = 99;
    let newer_path = dir.path().join("newer.safetensors");
    newer.save(&newer_path).unwrap();
    assert!(matches!(
        BankFile::load(&newer_path),
        Err(BankError::Version { found: 99, .. })
    ));

    let not_bank = dir.path().join("weights_not_bank.safetensors");
    std::fs::copy(
        common::real_weights("efficientnet_lite0.safetensors"),
        &not_bank,
    )
    .unwrap();
    let e = patchcore::bank::read_meta(&not_bank)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a patchcore bank"), "{e}");

    // Loading with other weights than the bank was fitted with names both files.
    let wrong = common::real_weights("efficientnet_lite1.safetensors");
    let e = match PatchCore::load_with_weights(path, &wrong, Device::Cpu, Precision::F32) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loading with the wrong weights must fail"),
    };
    assert!(e.contains("efficientnet_lite1.safetensors"), "{e}");

    // A failed save (folder missing) leaves no partial file behind.
    let target = dir.path().join("missing/dir/bank.safetensors");
    assert!(file.save(&target).is_err());
    assert!(!target.exists());
}

#[test]
fn unreadable_images_fail_alone() {
    let (dir, ds) = dataset();
    let (path, _) = fitted();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let weights = common::real_weights("efficientnet_lite0.safetensors");
    let model = PatchCore::load_with_weights(path, &weights, Device::Cpu, Precision::F32).unwrap();
    let paths = vec![
        ds.test[0].path.clone(),
        bad.clone(),
        ds.test[1].path.clone(),
    ];
    let mut outcomes = Vec::new();
    model.inspect_paths(&paths, 8, |i, r| {
        outcomes.push((i, r.is_ok(), r.err().map(|e: EngineError| e.to_string())));
        true
    });
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes[0].1 && outcomes[2].1);
    let msg = outcomes[1].2.clone().unwrap();
    assert!(msg.contains("broken.png"), "{msg}");
}

/// A copy of the fitted bank whose metadata JSON has been edited by `edit`, as a user with a
/// text editor (or a corrupted copy) would hand it over; the tensors are untouched.
fn crafted_bank(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let (dir, _) = dataset();
    let (path, _) = fitted();
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta_key = &mut header["__metadata__"]["patchcore"];
    let mut meta: serde_json::Value = serde_json::from_str(meta_key.as_str().unwrap()).unwrap();
    edit(&mut meta);
    *meta_key = serde_json::Value::String(meta.to_string());
    let mut text = header.to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    let crafted = dir.path().join(name);
    std::fs::write(&crafted, out).unwrap();
    crafted
}

#[test]
fn banks_with_impossible_settings_are_refused_naming_the_field() {
    let (_, ds) = dataset();
    let (_, file) = fitted();
    let rows = file.meta.coreset_size;
    // (file name, field named in the error, edit). 1e39 does not fit an f32: it reads as inf,
    // the closest a JSON file gets to NaN.
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(&str, &str, Edit)> = vec![
        (
            "k0.safetensors",
            "`k` is 0",
            Box::new(|m| m["k"] = 0.into()),
        ),
        (
            "k_rows.safetensors",
            "`k`",
            Box::new(move |m| m["k"] = (rows + 1).into()),
        ),
        (
            "patch0.safetensors",
            "`patch_size` is 0",
            Box::new(|m| m["patch_size"] = 0.into()),
        ),
        (
            "patch2.safetensors",
            "`patch_size` is 2, must be odd",
            Box::new(|m| m["patch_size"] = 2.into()),
        ),
        (
            "pyramid0.safetensors",
            "`pyramid` is 0",
            Box::new(|m| m["pyramid"] = 0.into()),
        ),
        (
            "pyramid9.safetensors",
            "`pyramid` is 9",
            Box::new(|m| m["pyramid"] = 9.into()),
        ),
        (
            "blur.safetensors",
            "`blur_sigma`",
            Box::new(|m| m["blur_sigma"] = 1e9.into()),
        ),
        (
            "std.safetensors",
            "`std`",
            Box::new(|m| m["std"] = serde_json::json!([1e39, 0.2, 0.2])),
        ),
        (
            "std0.safetensors",
            "`std`",
            Box::new(|m| m["std"] = serde_json::json!([0.0, 0.2, 0.2])),
        ),
        (
            "calib.safetensors",
            "`calibration.scores`",
            Box::new(|m| m["calibration"]["scores"][0] = 1e39.into()),
        ),
        (
            "projection.safetensors",
            "`coreset_projection` is 0",
            Box::new(|m| m["coreset_projection"] = 0.into()),
        ),
        (
            "grid.safetensors",
            "`grid_stage`",
            Box::new(|m| m["grid_stage"] = 7.into()),
        ),
        (
            "crop.safetensors",
            "`crop.crop`",
            Box::new(|m| m["crop"]["center"]["crop"] = 0.into()),
        ),
    ];
    let weights = common::real_weights(backbone::find(BACKBONE).unwrap().weights_file);
    let image = ds.test[0].path.to_str().unwrap().to_string();
    for (name, field, edit) in cases {
        let bank = crafted_bank(name, edit);
        let want = |e: &str| {
            assert!(
                e.contains(name) && e.contains("not a valid bank file") && e.contains(field),
                "{name}: expected an error naming {field}, got: {e}"
            )
        };
        want(&patchcore::bank::read_meta(&bank).unwrap_err().to_string());
        want(&BankFile::load(&bank).unwrap_err().to_string());
        match PatchCore::load_with_weights(&bank, &weights, Device::Cpu, Precision::F32) {
            Err(e) => want(&e.to_string()),
            Ok(_) => panic!("{name}: loaded"),
        }
        let out = std::process::Command::new(common::patchcore_bin())
            .args(["predict", "--device", "cpu", "--bank"])
            .arg(&bank)
            .arg(&image)
            .env("PATCHCORE_MODELS", common::repo().join("models"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        want(&stderr);
    }
}

#[test]
fn fit_refuses_impossible_settings_before_any_work() {
    let (_, ds) = dataset();
    let base = options(ds);
    let with = |edit: &dyn Fn(&mut FitOptions)| {
        let mut o = base.clone();
        edit(&mut o);
        match PatchCore::fit(&ds.train, &o, &NoProgress) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("fit accepted impossible settings"),
        }
    };
    let e = with(&|o| o.method.k = 0);
    assert!(e.contains("`k` is 0, must be >= 1"), "{e}");
    let e = with(&|o| o.method.embed.patch_size = 4);
    assert!(e.contains("`patch_size` is 4, must be odd"), "{e}");
    let e = with(&|o| o.method.blur_sigma = f64::NAN);
    assert!(e.contains("`blur_sigma`"), "{e}");
    let e = with(&|o| o.coreset_ratio = 1.5);
    assert!(e.contains("`coreset_ratio` is 1.5"), "{e}");
    // More neighbours than the coreset keeps would write a bank that cannot be loaded.
    let e = with(&|o| {
        o.coreset_size = Some(3);
        o.method.k = 4;
    });
    assert!(e.contains("k is 4, more than the coreset's 3 rows"), "{e}");
}

/// A version-1 bank (no ROI, no rules, no calibration maps) still loads and scores, with the
/// one-threshold rule: review and reject both from its calibrated threshold.
#[test]
fn version_1_banks_load_with_the_one_threshold_rule() {
    let (dir, _) = dataset();
    let (path, file) = fitted();
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    // Version 1 had no calibration maps nor kept calibration patches: drop those tensors (the
    // maps come first of them) and their bytes.
    let maps_start = header["calibration_maps"]["data_offsets"][0]
        .as_u64()
        .unwrap() as usize;
    for name in [
        "calibration_maps",
        "calibration_patches",
        "calibration_patch_sq_dist",
        "calibration_next",
    ] {
        header.as_object_mut().unwrap().remove(name);
    }
    let meta_key = &mut header["__metadata__"]["patchcore"];
    let mut meta: serde_json::Value = serde_json::from_str(meta_key.as_str().unwrap()).unwrap();
    meta["format_version"] = 1.into();
    let m = meta.as_object_mut().unwrap();
    m.remove("rules");
    m.remove("calibration_geometry");
    m.remove("growth");
    m.remove("image_score");
    m.remove("pyramid");
    *meta_key = serde_json::Value::String(meta.to_string());
    let mut text = header.to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..8 + n + maps_start]);
    let v1 = dir.path().join("v1.safetensors");
    std::fs::write(&v1, out).unwrap();

    let loaded = BankFile::load(&v1).unwrap();
    assert_eq!(loaded.meta.format_version, 1);
    // Banks before version 3 were scored by their top patch.
    assert_eq!(
        loaded.meta.image_score,
        patchcore::bank::ImageScore::TopPatch
    );
    assert!(loaded.roi.is_none() && loaded.calibration_maps.is_empty());
    // Banks before version 5 embedded one pyramid level.
    assert_eq!(loaded.meta.pyramid, 1);
    let rules = loaded.meta.rules();
    let t = file.meta.calibration.threshold;
    assert_eq!(
        (rules.review_from, rules.reject_from, rules.min_area),
        (t, t, 0)
    );
    // Without calibration maps there is nothing to recalibrate an ROI from: a clear error.
    let e =
        patchcore::engine::calibrate::recalibrate(&loaded.meta, &[], None).expect_err("no maps");
    assert!(e.to_string().contains("refit"), "{e}");
    // Saved again, it becomes a current-version file with the rule it was read with.
    let resaved = dir.path().join("v1-resaved.safetensors");
    BankFile {
        meta: patchcore::bank::BankMeta {
            rules: Some(rules),
            ..loaded.meta.clone()
        },
        ..loaded
    }
    .save(&resaved)
    .unwrap();
    let meta = patchcore::bank::read_meta(&resaved).unwrap();
    assert_eq!(meta.format_version, patchcore::bank::FORMAT_VERSION);
    assert_eq!(meta.rules(), rules);
}
