//! `patchcore update`: teaches a fitted bank new good images without a refit, keeping the
//! previous version (README, "Teaching the bank").
use super::args::RuntimeArgs;
use crate::bank::{BankFile, ImageScore, Versions, DEFAULT_VERSIONS_LIMIT_MB};
use crate::engine::{self, UpdateOptions};
use crate::report::{now_rfc3339, Operator};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[arg(long)]
    pub bank: PathBuf,
    /// Good images to add: files and/or folders (sub-folders included).
    #[arg(long, required = true, num_args = 1..)]
    pub add: Vec<PathBuf>,
    /// Add images even when they score far above the threshold (see README: "far").
    #[arg(long)]
    pub force: bool,
    /// Largest size of the bank's versions folder (`<bank>.versions/`), in MB.
    #[arg(long, default_value_t = DEFAULT_VERSIONS_LIMIT_MB)]
    pub versions_limit_mb: u64,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn run(args: UpdateArgs) -> Result<()> {
    let start = Instant::now();
    let paths: Vec<PathBuf> = super::predict::collect_inputs(&args.add)?
        .into_iter()
        .map(|i| i.path)
        .collect();
    if paths.is_empty() {
        bail!("no images in {:?}", args.add);
    }
    let file = BankFile::load(&args.bank)?;
    let current = file.meta.version;
    let opts = UpdateOptions {
        weights: args.runtime.weights_for(&file.meta.backbone)?,
        device: args.runtime.device()?,
        precision: args.runtime.precision(&file.meta.backbone)?,
        batch_size: args.runtime.batch_size,
        force: args.force,
        version: current,
        time: now_rfc3339(),
        operator: Operator::current(),
    };
    let limit = args.versions_limit_mb.saturating_mul(1 << 20);
    let (up, save_s) = engine::update_and_commit(&args.bank, file, &paths, opts, limit)?;
    let versions = Versions::of(&args.bank);
    let e = &up.entry;
    for img in &e.images {
        println!(
            "{}: score {:.4}, {} rows added",
            img.path.display(),
            img.score,
            img.rows_added
        );
    }
    if e.forced {
        println!("--force: images far above the threshold were added");
    }
    let m = &up.file.meta;
    println!(
        "bank: version {} (from {}), {} rows (+{}), threshold {:.4} -> {:.4}",
        e.version, e.parent, m.coreset_size, e.rows_added, e.threshold_before, e.threshold_after
    );
    if up.bounded_calibration > 0 {
        println!(
            "note: {} calibration image(s) rescored to an upper bound ({})",
            up.bounded_calibration,
            match m.image_score {
                ImageScore::TopPatch => "their kept patches were not enough for an exact score",
                ImageScore::MapPeak =>
                    "a map-peak bank keeps each image's score from before: added rows only lower it",
            }
        );
    }
    let tm = &up.times;
    println!(
        "time: {:.2} s (decode {:.2}, features {:.2}, search {:.2}, growth {:.2}, calibration {:.2}, save {:.2}); \
         version {current} kept in {}",
        start.elapsed().as_secs_f64(),
        tm.decode_s,
        tm.features_s,
        tm.search_s,
        tm.growth_s,
        tm.calibration_s,
        save_s,
        versions.dir().display()
    );
    Ok(())
}
