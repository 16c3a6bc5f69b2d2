//! The binary as a user runs it: demo (fit + eval on the synthetic category), predict with a CSV,
//! and a tiny bench (benchmarks are not timed here; this only proves the subcommand works).
mod common;

use common::run_patchcore as run;

use patchcore::data;
use std::path::Path;
use std::process::Command;

#[test]
fn demo_then_predict_writes_a_csv_with_the_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    let out = run(&["demo", "--dir", d, "--no-gui", "--device", "cpu"]);
    assert!(out.contains("image AUROC"), "{out}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("eval.json")).unwrap()).unwrap();
    assert!(report["image_auroc"].as_f64().unwrap() > 0.95, "{report}");
    assert!(report["pro"].as_f64().is_some() && report["timings_s"]["total"].as_f64().is_some());

    let bank = dir.join("banks/demo_parts.safetensors");
    // EfficientNet-Lite banks record the configurations fit chose between on synthetic defects.
    let meta = patchcore::bank::read_meta(&bank).unwrap();
    if meta.backbone.starts_with("efficientnet_lite") {
        let trials = &meta.selection;
        assert_eq!(trials.len(), 2, "{trials:?}");
        assert_eq!(trials.iter().filter(|t| t.chosen).count(), 1, "{trials:?}");
        assert!(trials.iter().all(|t| t.image_auroc > 0.5), "{trials:?}");
    }
    let test = dir.join("data/demo_parts/test");
    let csv = tmp.path().join("out.csv");
    let folders: Vec<String> = ["good", "dent", "missing", "scratch", "stain"]
        .iter()
        .map(|f| test.join(f).display().to_string())
        .collect();
    let mut args = vec![
        "predict",
        "--bank",
        bank.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    args.extend(folders.iter().map(String::as_str));
    run(&args);
    // A folder without images is an error, not an empty CSV.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(common::patchcore_bin())
        .args([
            "predict",
            "--bank",
            bank.to_str().unwrap(),
            empty.to_str().unwrap(),
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no images"));
    predict_records_every_image(tmp.path(), &bank, &test.join("good"));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("path,score,normalized_score,threshold,decision"),
        "{header}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 30);
    // Defect parts are flagged (reviewed or rejected: above the calibrated threshold) far more
    // often than good ones.
    let rejected = |folder: &str| {
        rows.iter()
            .filter(|r| {
                r.contains(&format!("/{folder}/"))
                    && (r.contains(",reject,") || r.contains(",review,"))
            })
            .count()
    };
    assert!(rejected("good") <= 2, "{text}");
    assert!(
        rejected("scratch") + rejected("dent") + rejected("stain") + rejected("missing") >= 15,
        "{text}"
    );
}

/// Runs `predict` with `args` (CPU, the checkout's models) and returns (exit code, stdout, stderr).
fn predict(bank: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(common::patchcore_bin())
        .args([
            "predict",
            "--device",
            "cpu",
            "--bank",
            bank.to_str().unwrap(),
        ])
        .args(args)
        .env("PATCHCORE_MODELS", common::repo().join("models"))
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Unreadable images among good ones: each gets an `error` row with its reason, the run exits
/// 3, heatmaps keep the relative path (two `000.png` in different folders both survive), and an
/// unwritable CSV fails before anything is scored.
fn predict_records_every_image(tmp: &Path, bank: &Path, good: &Path) {
    let lot = tmp.join("lot");
    let first = data::list_images(good).unwrap()[0].clone();
    for sub in ["good", "crack"] {
        std::fs::create_dir_all(lot.join(sub)).unwrap();
        std::fs::copy(&first, lot.join(sub).join("000.png")).unwrap();
    }
    std::fs::write(lot.join("good/empty.png"), b"").unwrap();
    let bytes = std::fs::read(&first).unwrap();
    std::fs::write(lot.join("good/cut.png"), &bytes[..bytes.len() / 3]).unwrap();
    image::GrayImage::new(1, 60_000)
        .save(lot.join("good/=strip.png"))
        .unwrap();
    let (csv, maps) = (tmp.join("lot.csv"), tmp.join("maps"));
    let (code, _, err) = predict(
        bank,
        &[
            "--csv",
            csv.to_str().unwrap(),
            "--heatmaps",
            maps.to_str().unwrap(),
            lot.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("3 of 5 images could not be inspected"),
        "{err}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{text}");
    let errors: Vec<&&str> = rows.iter().filter(|r| r.contains(",error,")).collect();
    assert_eq!(errors.len(), 3, "{text}");
    assert!(errors
        .iter()
        .any(|r| r.contains("empty.png") && r.contains("empty")));
    assert!(errors.iter().any(|r| r.contains("cut.png")));
    // The strip is refused by the decode limits (its name starts with `=` but it is not the
    // cell's first character, so it stays as it is).
    assert!(
        errors
            .iter()
            .any(|r| r.contains("good/=strip.png") && r.contains("aspect ratio")),
        "{text}"
    );
    for sub in ["good", "crack"] {
        assert!(maps.join(sub).join("000.png.npy").is_file(), "{sub}");
    }
    // Over a tiny pixel budget every image is an error row.
    let (code, _, _) = predict(
        bank,
        &[
            "--max-pixels",
            "100",
            "--csv",
            csv.to_str().unwrap(),
            good.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(3));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.lines()
            .skip(1)
            .all(|r| r.contains(",error,") && r.contains("--max-pixels")),
        "{text}"
    );
    // An unwritable destination is refused before the first image is scored.
    let bad = tmp.join("no/such/folder/out.csv");
    let (code, out, err) = predict(
        bank,
        &["--csv", bad.to_str().unwrap(), good.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no/such/folder/out.csv"), "{err}");
    assert!(out.is_empty(), "nothing was scored: {out}");
    // So is an unusable heatmap folder.
    let bad = tmp.join("lot.csv").join("maps");
    let (code, out, err) = predict(
        bank,
        &["--heatmaps", bad.to_str().unwrap(), good.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--heatmaps") && err.contains("lot.csv/maps"),
        "{err}"
    );
    assert!(out.is_empty(), "nothing was scored: {out}");
}

#[test]
fn tiny_bench_reports_every_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let out = run(&[
        "bench",
        "--synthetic",
        "4",
        "--predict-images",
        "2",
        "--calibration-images",
        "2",
        "--backbone",
        "efficientnet_lite0",
        "--device",
        "cpu",
        "--geometries",
        "crop,128",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.contains("| efficientnet_lite0 |"), "{out}");
    let all: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = all.as_array().expect("one report per geometry");
    assert_eq!(rows.len(), 2, "{all}");
    for r in rows {
        for key in [
            "fit_features_s",
            "fit_coreset_s",
            "predict_features_ms",
            "predict_search_ms",
            "peak_rss_mb",
        ] {
            assert!(r[key].as_f64().is_some_and(|v| v >= 0.0), "{key} in {r}");
        }
        assert_eq!(r["fit_images"], 4);
        assert_eq!(r["predict_images"], 2);
    }
    // The paper's 224 crop (28 x 28 cells) beside the whole 128-px parts (16 x 16 cells).
    let geometry = |i: usize| rows[i]["geometry"].as_str().unwrap_or_default();
    assert!(geometry(0).starts_with("crop"), "{all}");
    assert!(geometry(1).starts_with("whole (128 x 128"), "{all}");
    assert_eq!(rows[0]["patches_per_image"], 784);
    assert_eq!(rows[1]["patches_per_image"], 256);
}

#[test]
fn fit_refuses_impossible_settings_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out_bank = tmp.path().join("bank.safetensors");
    let good = tmp.path().join("good");
    std::fs::create_dir(&good).unwrap();
    image::RgbImage::new(64, 64)
        .save(good.join("000.png"))
        .unwrap();
    let unwritable = tmp.path().join("no/such/folder/bank.safetensors");
    for (flags, named) in [
        (&["--k", "0"][..], "--k is 0"),
        (&["--patch-size", "2"][..], "--patch-size is 2, must be odd"),
        (&["--blur-sigma", "1e9"][..], "--blur-sigma"),
        (&["--pyramid", "4"][..], "--pyramid is 4"),
        (&["--pixel-std", "0"][..], "--pixel-std"),
        (&["--coreset-ratio", "0"][..], "--coreset-ratio is 0"),
        (
            &["--coreset-projection", "0"][..],
            "--coreset-projection is 0",
        ),
    ] {
        let out = Command::new(common::patchcore_bin())
            .args(["fit", "--backbone", "efficientnet_lite0", "--device", "cpu"])
            .args(["--data", good.to_str().unwrap()])
            .args(["--out", out_bank.to_str().unwrap()])
            .args(flags)
            .env("PATCHCORE_MODELS", common::repo().join("models"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
        assert!(!out_bank.exists());
    }
    // An unwritable --out is refused before the fit, not after it.
    let out = Command::new(common::patchcore_bin())
        .args(["fit", "--backbone", "efficientnet_lite0", "--device", "cpu"])
        .args(["--data", good.to_str().unwrap()])
        .args(["--out", unwritable.to_str().unwrap()])
        .env("PATCHCORE_MODELS", common::repo().join("models"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no/such/folder/bank.safetensors"),
        "{stderr}"
    );
    assert!(!stderr.contains("fit: 1 training images"), "{stderr}");
}
