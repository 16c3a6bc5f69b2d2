//! Region of interest, defect regions and the accept / review / reject bands, end to end: a
//! synthetic category fitted once, its bank changed with `patchcore roi` and `patchcore rules`,
//! and images with a pasted defect inspected with `patchcore predict --csv`.
mod common;

use common::{patchcore_bin, run_patchcore as run};
use patchcore::bank::BankFile;
use patchcore::data::{self, synthetic::SyntheticSpec};
use patchcore::engine::{NoProgress, PatchCore};
use patchcore::report::CSV_COLUMNS;
use std::path::{Path, PathBuf};

/// A fitted synthetic category: the folder, the bank, and a good test image.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bank: PathBuf,
    good: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        n_train: 20,
        n_test_good: 4,
        n_test_defect_per_type: 1,
        ..Default::default()
    };
    let ds = data::synthetic::generate(dir.path(), "parts", &spec).unwrap();
    let opts = common::small_fit_options("efficientnet_lite0", &ds.root);
    let (_, file, _) = PatchCore::fit(&ds.train, &opts, &NoProgress).unwrap();
    assert_eq!(file.calibration_maps.len(), 20 * 28 * 28);
    let bank = dir.path().join("parts.safetensors");
    file.save(&bank).unwrap();
    let good = ds
        .test
        .iter()
        .filter(|s| !s.is_anomalous())
        .map(|s| s.path.clone())
        .collect();
    Fixture {
        root: dir.path().to_path_buf(),
        _dir: dir,
        bank,
        good,
    }
}

/// `img` with a saturated magenta square of side 40 whose top-left corner is (x, y).
fn paste_defect(img: &Path, x: u32, y: u32, out: &Path) {
    let mut im = data::load_rgb8(img).unwrap();
    for yy in y..y + 40 {
        for xx in x..x + 40 {
            im.put_pixel(xx, yy, image::Rgb([255, 0, 255]));
        }
    }
    im.save(out).unwrap();
}

/// A mask of `w` x `h` with the left `black` share of the columns ignored.
fn write_mask(path: &Path, w: u32, h: u32, black: f32) {
    image::GrayImage::from_fn(w, h, |x, _| {
        image::Luma([if (x as f32) < black * w as f32 {
            0
        } else {
            255
        }])
    })
    .save(path)
    .unwrap();
}

/// One CSV row as column name -> value.
type Row = std::collections::HashMap<String, String>;

/// Runs predict on `images` and returns the rows, checking every row has every column.
fn predict(bank: &Path, images: &[&Path], csv: &Path) -> Vec<Row> {
    let mut args = vec![
        "predict",
        "--bank",
        bank.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--device",
        "cpu",
        "--precision",
        "f32",
    ];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    let out = std::process::Command::new(patchcore_bin())
        .args(&args)
        .env("PATCHCORE_MODELS", common::repo().join("models"))
        .output()
        .unwrap();
    // Exit 0, or 3 when some image could not be inspected (it still has its row).
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv_rows(csv);
    let header = reader.remove(0);
    assert_eq!(header, CSV_COLUMNS);
    reader
        .into_iter()
        .map(|row| {
            assert_eq!(row.len(), CSV_COLUMNS.len(), "{row:?}");
            CSV_COLUMNS.iter().map(|c| c.to_string()).zip(row).collect()
        })
        .collect()
}

/// Splits the CSV into fields, honouring RFC 4180 quotes (error reasons hold commas).
fn csv_rows(csv: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .map(|line| {
            let (mut fields, mut cur, mut quoted) = (Vec::new(), String::new(), false);
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match (c, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        cur.push('"');
                        chars.next();
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => fields.push(std::mem::take(&mut cur)),
                    _ => cur.push(c),
                }
            }
            fields.push(cur);
            fields
        })
        .collect()
}

fn decision(rows: &[Row], name: &str) -> String {
    rows.iter()
        .find(|r| r["path"].ends_with(name))
        .map(|r| r["decision"].clone())
        .unwrap_or_else(|| panic!("no row for {name}"))
}

fn rules(bank: &Path, args: &[&str]) -> String {
    let mut all = vec!["rules", "--bank", bank.to_str().unwrap()];
    all.extend(args);
    run(&all)
}

fn fails(args: &[&str]) -> String {
    let out = std::process::Command::new(patchcore_bin())
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn roi_min_area_and_bands_decide_and_every_row_has_every_column() {
    let f = fixture();
    let bank = f.bank.to_str().unwrap();
    let base = &f.good[0];
    // The same defect inside the ignored left half and inside the inspected right side.
    let ignored = f.root.join("defect_ignored.png");
    let inspected = f.root.join("defect_inspected.png");
    paste_defect(base, 30, 110, &ignored);
    paste_defect(base, 170, 110, &inspected);
    let broken = f.root.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let images = [base.as_path(), &ignored, &inspected, &broken];
    let csv = f.root.join("out.csv");

    // Without an ROI both defects are rejected: the defect alone decides.
    let rows = predict(&f.bank, &images, &csv);
    assert_eq!(rows.len(), 4);
    assert_eq!(decision(&rows, "defect_ignored.png"), "reject");
    assert_eq!(decision(&rows, "defect_inspected.png"), "reject");
    assert_eq!(decision(&rows, "broken.png"), "error");

    // Left half ignored: the defect there is accepted, the other still rejected.
    let mask = f.root.join("mask.png");
    write_mask(&mask, 256, 256, 0.5);
    let shown = run(&["roi", "--bank", bank, "--set", mask.to_str().unwrap()]);
    assert!(shown.contains("50.0% inspected"), "{shown}");
    let meta = patchcore::bank::read_meta(&f.bank).unwrap();
    assert_eq!(meta.format_version, patchcore::bank::FORMAT_VERSION);
    assert!(meta.calibration.source.contains("under an ROI"), "{meta:?}");
    let rows = predict(&f.bank, &images, &csv);
    assert_eq!(decision(&rows, "defect_ignored.png"), "accept");
    assert_eq!(decision(&rows, "defect_inspected.png"), "reject");
    let base_name = base.file_name().unwrap().to_str().unwrap();
    let base_decision = decision(&rows, base_name);
    let row = |name: &str| rows.iter().find(|r| r["path"].ends_with(name)).unwrap();
    let hit = row("defect_inspected.png");
    let area: u64 = hit["largest_region_area"].parse().unwrap();
    let bx: Vec<u32> = hit["largest_region_box"]
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    // The region covers the pasted square (170..210, 110..150), in original pixels.
    assert!(area >= 1600, "{hit:?}");
    assert!(bx[0] <= 170 && bx[1] <= 110 && bx[0] + bx[2] >= 210 && bx[1] + bx[3] >= 150);
    let err = row("broken.png");
    assert!(
        !err["reason"].is_empty() && !err["review_from"].is_empty(),
        "{err:?}"
    );

    // A min-area above the defect's region: it no longer rejects.
    let above = (area + 1).to_string();
    rules(&f.bank, &["--min-area", &above]);
    let rows = predict(&f.bank, &images, &csv);
    assert_eq!(decision(&rows, "defect_inspected.png"), "accept");
    rules(&f.bank, &["--min-area", "0"]);

    // The bands decide as set, around the defect image's score.
    let score: f32 = hit["score"].parse().unwrap();
    let (lo, hi) = ((score * 0.5).to_string(), (score * 2.0).to_string());
    rules(&f.bank, &["--review-from", &lo, "--reject-from", &hi]);
    let rows = predict(&f.bank, &images, &csv);
    assert_eq!(decision(&rows, "defect_inspected.png"), "review");
    assert_eq!(row_value(&rows, "defect_inspected.png", "reject_from"), hi);
    let (lo, mid) = ((score * 0.5).to_string(), (score * 0.9).to_string());
    rules(&f.bank, &["--review-from", &lo, "--reject-from", &mid]);
    let rows = predict(&f.bank, &images, &csv);
    assert_eq!(decision(&rows, "defect_inspected.png"), "reject");
    let (high, higher) = ((score * 1.1).to_string(), (score * 1.2).to_string());
    rules(&f.bank, &["--review-from", &high, "--reject-from", &higher]);
    let rows = predict(&f.bank, &images, &csv);
    assert_eq!(decision(&rows, "defect_inspected.png"), "accept");
    // Reject below review is refused, and the bank is unchanged.
    let e = fails(&[
        "rules",
        "--bank",
        bank,
        "--review-from",
        "2",
        "--reject-from",
        "1",
    ]);
    assert!(e.contains("below review_from"), "{e}");

    // A smaller mask of the same framing is stretched: same decisions as the full-size one.
    let small = f.root.join("small.png");
    write_mask(&small, 64, 64, 0.5);
    run(&["roi", "--bank", bank, "--set", small.to_str().unwrap()]);
    rules(&f.bank, &["--defaults"]);
    let rows = predict(&f.bank, &images, &csv);
    assert_eq!(decision(&rows, "defect_ignored.png"), "accept");
    assert_eq!(decision(&rows, "defect_inspected.png"), "reject");
    assert_eq!(decision(&rows, base_name), base_decision);
}

fn row_value(rows: &[Row], name: &str, column: &str) -> String {
    rows.iter().find(|r| r["path"].ends_with(name)).unwrap()[column].clone()
}

#[test]
fn wrong_and_damaged_masks_give_clear_errors() {
    let f = fixture();
    let bank = f.bank.to_str().unwrap();
    // Another aspect ratio: stretching would move what the mask covers.
    let wide = f.root.join("wide.png");
    write_mask(&wide, 300, 100, 0.5);
    let e = fails(&["roi", "--bank", bank, "--set", wide.to_str().unwrap()]);
    assert!(e.contains("wide.png") && e.contains("aspect ratio"), "{e}");
    // A truncated mask file.
    let cut = f.root.join("cut.png");
    write_mask(&cut, 256, 256, 0.5);
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["roi", "--bank", bank, "--set", cut.to_str().unwrap()]);
    assert!(e.contains("cut.png"), "{e}");
    // An all-black mask would inspect nothing.
    let black = f.root.join("black.png");
    write_mask(&black, 256, 256, 1.0);
    let e = fails(&["roi", "--bank", bank, "--set", black.to_str().unwrap()]);
    assert!(e.contains("black.png") && e.contains("all black"), "{e}");
    assert!(
        BankFile::load(&f.bank).unwrap().roi.is_none(),
        "bank unchanged"
    );

    // A mask damaged inside the bank: the hash check names the bank file.
    let good = f.root.join("good_mask.png");
    write_mask(&good, 256, 256, 0.5);
    run(&["roi", "--bank", bank, "--set", good.to_str().unwrap()]);
    let mut bytes = std::fs::read(&f.bank).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1; // the roi tensor is last: its final value flips 1 -> 0
    std::fs::write(&f.bank, &bytes).unwrap();
    let e = BankFile::load(&f.bank).unwrap_err().to_string();
    assert!(
        e.contains("parts.safetensors") && e.contains("damaged mask"),
        "{e}"
    );
    bytes[n - 1] = 7; // not a mask value at all
    std::fs::write(&f.bank, &bytes).unwrap();
    let e = BankFile::load(&f.bank).unwrap_err().to_string();
    assert!(
        e.contains("parts.safetensors") && e.contains("damaged mask"),
        "{e}"
    );
}
