//! `patchcore revert`: puts a kept version back at the bank path, bit for bit (the version it
//! replaces stays kept, so a revert can itself be undone).
use crate::bank::{read_meta, Versions};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RevertArgs {
    #[arg(long)]
    pub bank: PathBuf,
    /// The version to restore (see `patchcore history`).
    #[arg(long)]
    pub to: u32,
}

pub fn run(args: RevertArgs) -> Result<()> {
    let current = if args.bank.exists() {
        read_meta(&args.bank)?.version
    } else {
        0
    };
    let versions = Versions::of(&args.bank);
    let meta = versions.revert(current, args.to)?;
    println!(
        "{}: now version {} ({} rows, threshold {:.4}); version {current} kept in {}",
        args.bank.display(),
        meta.version,
        meta.coreset_size,
        meta.calibration.threshold,
        versions.dir().display()
    );
    Ok(())
}
