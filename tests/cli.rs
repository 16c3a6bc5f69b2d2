//! The binary as a user runs it: demo (fit + eval on the synthetic category), predict with a CSV,
//! and a tiny bench (benchmarks are not timed here; this only proves the subcommand works).
mod common;

use common::run_patchcore as run;

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
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("path,score,normalized_score,threshold,decision"),
        "{header}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 30);
    // Every defect folder's parts are rejected more often than the good ones at the calibrated threshold.
    let rejected = |folder: &str| {
        rows.iter()
            .filter(|r| r.contains(&format!("/{folder}/")) && r.contains(",reject,"))
            .count()
    };
    assert!(rejected("good") <= 2, "{text}");
    assert!(
        rejected("scratch") + rejected("dent") + rejected("stain") + rejected("missing") >= 15,
        "{text}"
    );
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
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.contains("| efficientnet_lite0 |"), "{out}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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

#[test]
fn fit_refuses_impossible_settings_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out_bank = tmp.path().join("bank.safetensors");
    let good = tmp.path().join("good");
    std::fs::create_dir(&good).unwrap();
    image::RgbImage::new(64, 64)
        .save(good.join("000.png"))
        .unwrap();
    for (flags, named) in [
        (&["--k", "0"][..], "--k is 0"),
        (&["--patch-size", "2"][..], "--patch-size is 2, must be odd"),
        (&["--blur-sigma", "1e9"][..], "--blur-sigma"),
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
}
