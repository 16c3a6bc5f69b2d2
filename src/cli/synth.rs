//! `patchcore synth`: writes a deterministic synthetic category (MVTec AD layout, exact masks) to
//! benchmark on: `long` bars at 1-4 megapixels and aspect 1:1 to 1:4, or the demo's `flange`.
use crate::data::synthetic::{self, SyntheticSpec};
use crate::data::synthetic_long::{self, LongSpec};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Long machined bars, 1000 px high and 1 to 4 times as long; test folders
    /// `<small|medium|large>_<centre|end>` (defects 3-10, 10-20, 20-40 px across).
    Long,
    /// The demo's turned flanges, square; test folders dent, missing, scratch, stain.
    Flange,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Folder that receives the category folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Category (folder) name.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum, default_value = "long")]
    pub kind: Kind,
    /// Good training images [long: 60, flange: 40].
    #[arg(long)]
    pub n_train: Option<usize>,
    /// Good test images [long: 20, flange: 10].
    #[arg(long)]
    pub n_test_good: Option<usize>,
    /// Test images per defect folder [long: 6, flange: 5].
    #[arg(long)]
    pub n_test_defect: Option<usize>,
    /// Side of the square flange images, pixels [256] (flange only: long bars are 1000 px high).
    #[arg(long)]
    pub size: Option<u32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let start = Instant::now();
    let dataset = match a.kind {
        Kind::Long => {
            if a.size.is_some() {
                bail!("--size applies to --kind flange only (long bars are 1000 px high, 1 to 4 times as long)");
            }
            let d = LongSpec::default();
            let spec = LongSpec {
                n_train: a.n_train.unwrap_or(d.n_train),
                n_test_good: a.n_test_good.unwrap_or(d.n_test_good),
                n_test_defect_per_folder: a.n_test_defect.unwrap_or(d.n_test_defect_per_folder),
                seed: a.seed,
            };
            synthetic_long::generate(&a.out, &a.name, &spec)?
        }
        Kind::Flange => {
            let d = SyntheticSpec::default();
            let spec = SyntheticSpec {
                size: a.size.unwrap_or(d.size),
                n_train: a.n_train.unwrap_or(d.n_train),
                n_test_good: a.n_test_good.unwrap_or(d.n_test_good),
                n_test_defect_per_type: a.n_test_defect.unwrap_or(d.n_test_defect_per_type),
                seed: a.seed,
            };
            synthetic::generate(&a.out, &a.name, &spec)?
        }
    };
    println!(
        "synth: {} training and {} test images in {} ({:.1} s)",
        dataset.train.len(),
        dataset.test.len(),
        dataset.root.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
