//! The high-resolution synthetic category (`patchcore synth --kind long`): sizes and aspects as
//! specified, masks exact and within their size class and position, same spec same bytes.
mod common;

use patchcore::data::synthetic_long::{self, LongSpec, ASPECTS, HEIGHT, POSITIONS, SIZE_CLASSES};
use patchcore::data::{load_luma8, load_rgb8};
use std::collections::BTreeMap;

#[test]
fn long_bars_follow_their_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = LongSpec {
        n_train: 1,
        n_test_good: 4,
        n_test_defect_per_folder: 2,
        seed: 3,
    };
    let t = std::time::Instant::now();
    let ds = synthetic_long::generate(dir.path(), "bars", &spec).unwrap();
    println!(
        "{} images in {:?}",
        ds.train.len() + ds.test.len(),
        t.elapsed()
    );
    assert_eq!((ds.train.len(), ds.test.len()), (1, 4 + 6 * 2));

    // Image i of a folder is HEIGHT high and ASPECTS[i % 4] times as wide: 1:1 to 1:4.
    for (i, aspect) in ASPECTS.iter().enumerate() {
        let img = load_rgb8(&ds.root.join(format!("test/good/{i:03}.png"))).unwrap();
        assert_eq!(img.dimensions(), (HEIGHT * aspect, HEIGHT));
    }

    let mut seen = BTreeMap::new();
    for sample in ds.test.iter().filter(|t| t.is_anomalous()) {
        let (class, position) = sample.label.split_once('_').unwrap();
        let (_, lo, hi) = SIZE_CLASSES.iter().find(|c| c.0 == class).unwrap();
        assert!(POSITIONS.contains(&position), "{}", sample.label);
        *seen.entry(sample.label.clone()).or_insert(0) += 1;

        let mask = load_luma8(sample.mask.as_ref().unwrap()).unwrap();
        let img = load_rgb8(&sample.path).unwrap();
        assert_eq!(mask.dimensions(), img.dimensions());
        assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
        let on: Vec<(u32, u32)> = mask
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] == 255)
            .map(|(x, y, _)| (x, y))
            .collect();
        let name = sample.path.display();
        assert!(!on.is_empty(), "{name}: empty mask");
        let (x0, x1) = (
            on.iter().map(|p| p.0).min().unwrap(),
            on.iter().map(|p| p.0).max().unwrap(),
        );
        let (y0, y1) = (
            on.iter().map(|p| p.1).min().unwrap(),
            on.iter().map(|p| p.1).max().unwrap(),
        );
        let extent = (x1 - x0).max(y1 - y0) + 1;
        assert!(
            (*lo..*hi).contains(&extent),
            "{name}: extent {extent} px is not in {lo}..{hi}"
        );
        let third = img.width() / 3;
        let in_zone = match position {
            "centre" => x0 >= third && x1 < 2 * third,
            _ => x1 < third || x0 >= img.width() - third,
        };
        assert!(
            in_zone,
            "{name}: columns {x0}..={x1} of {} are not in the {position} zone",
            img.width()
        );
        // The defect lies on the bright part, not on the dark belt or in a hole.
        let luma = |&(x, y): &(u32, u32)| {
            let [r, g, b] = img.get_pixel(x, y).0;
            (r as u32 + g as u32 + b as u32) / 3
        };
        let ring: Vec<(u32, u32)> = [
            (x0.saturating_sub(3), y0),
            (x1 + 3, y1),
            (x0, y0.saturating_sub(3)),
            (x1, y1 + 3),
        ]
        .into_iter()
        .filter(|&(x, y)| x < img.width() && y < img.height() && mask.get_pixel(x, y).0[0] == 0)
        .collect();
        assert!(
            ring.iter().any(|p| luma(p) > 90),
            "{name}: no part material around the defect"
        );
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.values().all(|&n| n == 2));

    // Same spec, same bytes; each image depends only on its own stream, so a smaller spec
    // reproduces the files it shares with a larger one.
    let other = tempfile::tempdir().unwrap();
    let smaller = LongSpec {
        n_test_good: 2,
        n_test_defect_per_folder: 1,
        ..spec.clone()
    };
    synthetic_long::generate(other.path(), "bars", &smaller).unwrap();
    let big: BTreeMap<_, _> = common::all_files(&ds.root).into_iter().collect();
    let small = common::all_files(&other.path().join("bars"));
    assert_eq!(small.len(), 1 + 2 + 6 * 2 + 1);
    for (name, bytes) in small
        .iter()
        .filter(|(n, _)| n.extension().is_some_and(|e| e == "png"))
    {
        assert!(
            big.get(name) == Some(bytes),
            "{} differs between runs",
            name.display()
        );
    }
}

#[test]
fn synth_cli_writes_and_refuses_foreign_folders() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run_patchcore(&[
        "synth",
        "--out",
        dir.path().to_str().unwrap(),
        "--name",
        "flanges",
        "--kind",
        "flange",
        "--size",
        "64",
        "--n-train",
        "2",
        "--n-test-good",
        "1",
        "--n-test-defect",
        "1",
    ]);
    assert!(out.contains("2 training and 5 test images"), "{out}");
    std::fs::create_dir(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/notes.txt"), "keep").unwrap();
    let res = std::process::Command::new(common::patchcore_bin())
        .args([
            "synth",
            "--out",
            dir.path().to_str().unwrap(),
            "--name",
            "mine",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success() && err.contains("refusing") && err.contains("mine"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mine/notes.txt")).unwrap(),
        "keep"
    );
}
