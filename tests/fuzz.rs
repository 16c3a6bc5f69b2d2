//! A short, seeded fuzz pass for CI: each fuzz target (tests/fuzz_targets/mod.rs) reads every
//! file of its corpus in `tests/fuzz_corpus/<target>/` (seeds, and every input a fuzzer found
//! crashing, kept as `crash-*`), then the same files after seeded random mutations. The
//! coverage-guided fuzzers in `fuzz/` explore far more; this pass keeps their findings fixed
//! and catches a regression in the common shapes of damage within seconds.
mod fuzz_targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use fuzz_targets::{Scratch, Target};
use patchcore::bank::{read_meta, BankDtype, BankFile, BankMeta, Calibration, CropMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn corpus_dir(target: Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target.name())
}

/// The corpus files of `target`, sorted so that the mutations are the same on every machine.
fn corpus(target: Target) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))),
        "{} has no seed-* file",
        dir.display()
    );
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, bytes)
        })
        .collect()
}

/// Runs `target` on `data`; a panic fails the test, naming what was read and, for a mutation,
/// keeping it under `target/fuzz-failures/` to reproduce and to add to the corpus.
fn check(target: Target, scratch: &Scratch, data: &[u8], what: &str) {
    let path = scratch.write(data);
    let Err(panic) = catch_unwind(AssertUnwindSafe(|| target.run(path))) else {
        return;
    };
    let reason = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let kept = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/fuzz-failures")
        .join(format!(
            "{}-{}",
            target.name(),
            what.replace(['/', ' '], "_")
        ));
    let saved = std::fs::create_dir_all(kept.parent().expect("a parent"))
        .and_then(|()| std::fs::write(&kept, data));
    let saved = match saved {
        Ok(()) => format!("input kept as {}", kept.display()),
        Err(e) => format!("could not keep the input: {e}"),
    };
    panic!("{} target, {what}: {reason} ({saved})", target.name());
}

/// Values at the edges of integer types, which length and offset fields mishandle most.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    i64::MAX as u64,
    u64::MAX,
];

/// One to four random edits of `input`: bit flips, inserted and deleted bytes, truncation,
/// a splice from another corpus file, and interesting integers written over the bytes.
fn mutate(rng: &mut ChaCha8Rng, input: &[u8], others: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=out.len());
        match rng.random_range(0..6) {
            0 if at < out.len() => out[at] ^= 1 << rng.random_range(0..8),
            1 => {
                let n = rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                out.splice(at..at, bytes);
            }
            2 => {
                let end = (at + rng.random_range(1..=64)).min(out.len());
                out.drain(at..end);
            }
            3 => out.truncate(at),
            4 => {
                let (_, other) = &others[rng.random_range(0..others.len())];
                let from = rng.random_range(0..=other.len());
                let to = (from + rng.random_range(1..=256)).min(other.len());
                let end = (at + (to - from)).min(out.len());
                out.splice(at..end, other[from..to].iter().copied());
            }
            _ => {
                let value = INTERESTING[rng.random_range(0..INTERESTING.len())];
                let width = [1, 2, 4, 8][rng.random_range(0..4)];
                let mut bytes = value.to_le_bytes()[..width].to_vec();
                if rng.random() {
                    bytes.reverse(); // big-endian
                }
                let end = (at + width).min(out.len());
                out.splice(at..end, bytes);
            }
        }
    }
    out
}

/// The corpus, then `mutations` mutated inputs drawn with a fixed seed.
fn fuzz(target: Target, mutations: usize) {
    let files = corpus(target);
    let scratch = Scratch::new(target.name());
    let start = std::time::Instant::now();
    for (path, bytes) in &files {
        check(target, &scratch, bytes, &path.display().to_string());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for i in 0..mutations {
        let (path, bytes) = &files[rng.random_range(0..files.len())];
        let input = mutate(&mut rng, bytes, &files);
        let name = path.file_name().expect("a file name").to_string_lossy();
        check(target, &scratch, &input, &format!("mutation {i} of {name}"));
    }
    eprintln!(
        "{}: {} corpus files and {mutations} mutations in {:.1?}",
        target.name(),
        files.len(),
        start.elapsed()
    );
}

#[test]
fn bank_survives_damage() {
    fuzz(Target::Bank, 10_000);
}

#[test]
fn pickle_survives_damage() {
    fuzz(Target::Pickle, 10_000);
}

#[test]
fn zip_survives_damage() {
    fuzz(Target::Zip, 10_000);
}

#[test]
fn image_survives_damage() {
    fuzz(Target::Image, 10_000);
}

/// The smallest bank the writer makes, with valid metadata, in either storage precision: the
/// `bank` target's seeds.
fn tiny_bank(bank_dtype: BankDtype) -> BankFile {
    let crop = CropMode::Center {
        resize: 256,
        crop: 224,
    };
    let meta = BankMeta {
        format_version: patchcore::bank::FORMAT_VERSION,
        category: "seed".into(),
        backbone: "efficientnet_lite0".into(),
        weights_sha256: "0".repeat(64),
        stages: vec!["s2".into(), "s3".into()],
        grid_stage: 0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        crop,
        patch_size: 3,
        pretrain_dim: 8,
        embed_dim: 4,
        pyramid: 1,
        grid: [28, 28],
        k: 1,
        reweight: false,
        squared: false,
        blur_sigma: 4.0,
        image_score: Default::default(),
        coreset_ratio: 0.1,
        coreset_size: 2,
        coreset_projection: 4,
        seed: 0,
        n_train_images: 2,
        n_patches: 1568,
        train_dir: "train/good".into(),
        test_dir: Some("test".into()),
        created: "2026-01-01T00:00:00Z".into(),
        bank_dtype,
        calibration: Calibration::from_scores("leave-one-image-out".into(), vec![1.5, 2.0]),
        selection: Vec::new(),
        rules: None,
        roi: None,
        calibration_geometry: vec![patchcore::data::preprocess::crop_geometry(300, 200, crop); 2],
        growth: None,
        version: 1,
        history: Vec::new(),
    };
    // A 3 x 2 ROI (the images' aspect ratio) and the two calibration maps: the seed reaches the
    // version-2 tensors' checks too.
    let roi = patchcore::decide::Roi::new(3, 2, &[1, 1, 0, 1, 1, 0]).expect("roi");
    let meta = BankMeta {
        roi: Some(patchcore::bank::RoiInfo {
            width: 3,
            height: 2,
            sha256: roi.sha256(),
        }),
        ..meta
    };
    BankFile {
        meta,
        rows: vec![0.5, -1.0, 2.0, 0.0, 1.0, 0.25, -0.5, 3.0],
        source_image: vec![0, 1],
        roi: Some(roi),
        calibration_maps: (0..2 * 28 * 28).map(|i| (i % 7) as f32 * 0.25).collect(),
        calibration_patches: None,
    }
}

/// The bank seeds load as the banks they were written from, so the fuzzer starts from files that
/// reach past every check. When the bank format changes, rewrite them with
/// `PATCHCORE_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz bank_seeds`.
#[test]
fn bank_seeds_are_valid_banks() {
    for (dtype, name) in [
        (BankDtype::F32, "seed-f32.bank"),
        (BankDtype::F16, "seed-f16.bank"),
    ] {
        let path = corpus_dir(Target::Bank).join(name);
        let bank = tiny_bank(dtype);
        if std::env::var_os("PATCHCORE_WRITE_FUZZ_SEEDS").is_some() {
            bank.save(&path).expect("writing the seed");
        }
        let loaded = BankFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded, bank, "{}", path.display());
        assert_eq!(read_meta(&path).ok(), Some(bank.meta), "{}", path.display());
    }
}
