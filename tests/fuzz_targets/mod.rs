//! The fuzz targets: what a user can hand the tool as a file, each run through the public entry
//! that reads it. One copy serves both drivers: the coverage-guided cargo-fuzz crate in `fuzz/`
//! (run for hours by hand) and `tests/fuzz.rs` (a seeded pass over the committed corpus and its
//! mutations, in every `cargo test`). Both include this file by path.
//!
//! A target passes an input when reading it neither panics nor aborts, whatever the result, and
//! every error it returns names the file: an operator must be able to tell which file is bad.
//! The entries take paths, so each input is written to a scratch file first (in `/dev/shm`
//! where it exists, so the fuzzer's millions of writes stay in memory).

use std::path::{Path, PathBuf};

use patchcore::backbone::Backbone;
use patchcore::bank::{read_meta, BankFile};
use patchcore::data::{load_luma8, load_mask, load_rgb8, preprocess, CropMode};

/// The corpus folders under `tests/fuzz_corpus/`, one per target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Bank files: `BankFile::load` (safetensors layout, JSON metadata, the rows) and
    /// `read_meta` (the header alone, as the app's bank list reads it).
    Bank,
    /// Legacy `torch.save` files, which are pickles from end to end: the pickle VM.
    Pickle,
    /// Zip `torch.save` files: the zip reader, then the pickle VM on `data.pkl`.
    Zip,
    /// PNG, JPEG, TIFF and BMP files through decoding and the model-input preprocessing.
    Image,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Bank => "bank",
            Target::Pickle => "pickle",
            Target::Zip => "zip",
            Target::Image => "image",
        }
    }

    /// Reads the file at `path` as this target's entries do; panics only on a finding.
    pub fn run(self, path: &Path) {
        match self {
            Target::Bank => bank(path),
            Target::Pickle | Target::Zip => pth(path),
            Target::Image => image(path),
        }
    }
}

/// Panics unless the error message names `path`.
fn names_the_file(path: &Path, error: impl std::fmt::Display) {
    let message = error.to_string();
    let shown = path.display().to_string();
    assert!(
        message.contains(&shown),
        "the error does not name the file {shown}: {message}"
    );
}

fn bank(path: &Path) {
    let loaded = BankFile::load(path);
    let meta = read_meta(path);
    if let Err(e) = &loaded {
        names_the_file(path, e);
    }
    match (&loaded, &meta) {
        (Ok(bank), Ok(meta)) => assert_eq!(&bank.meta, meta, "read_meta disagrees with load"),
        // The header alone can be fine while the tensors are not, never the other way round.
        (Ok(_), Err(e)) => panic!("load accepted the file but read_meta did not: {e}"),
        (_, Err(e)) => names_the_file(path, e),
        (Err(_), Ok(_)) => {}
    }
}

/// The smallest backbone, so that a file the reader accepts costs little to check against it.
const BACKBONE: &str = "efficientnet_lite0";

fn pth(path: &Path) {
    if let Err(e) = Backbone::load(BACKBONE, path, tch::Device::Cpu) {
        names_the_file(path, e);
    }
}

/// The engine's default preprocessing (`Method::defaults_for`): shorter side to 256, centre
/// crop 224, so the resize runs on every image.
const CROP: CropMode = CropMode::Center {
    resize: 256,
    crop: 224,
};

fn image(path: &Path) {
    match load_rgb8(path) {
        // The decode limits bound what gets here, and the crop computes only the window it
        // keeps, so every decodable image goes through the whole model-input path.
        Ok(img) => {
            let (input, _) = preprocess(&img, CROP);
            assert_eq!(input.dimensions(), (224, 224));
            match load_mask(path, CROP) {
                Ok(mask) => assert_eq!(mask.len(), 224 * 224),
                Err(e) => names_the_file(path, e),
            }
        }
        Err(e) => {
            names_the_file(path, &e);
            // The same decode: it must fail alike.
            let gray = load_luma8(path).err();
            assert_eq!(gray.map(|g| g.to_string()), Some(e.to_string()));
        }
    }
}

/// A file the targets read each input from, in a folder of its own that is removed on drop.
pub struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let shm = Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        // Named, so that folders a killed fuzzer leaves behind are easy to find and remove.
        builder.prefix("patchcore-fuzz-");
        let dir = if shm.is_dir() {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        };
        let dir = dir.expect("cannot make a scratch folder");
        let path = dir.path().join(name);
        Scratch { _dir: dir, path }
    }

    /// Writes `data` to the scratch file and returns its path.
    pub fn write(&self, data: &[u8]) -> &Path {
        std::fs::write(&self.path, data).expect("cannot write the scratch file");
        &self.path
    }
}
