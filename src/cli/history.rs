//! `patchcore history`: what a bank learned since it was fitted, who taught it, and which
//! versions `revert` can bring back.
use crate::bank::{read_meta, Versions};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[arg(long)]
    pub bank: PathBuf,
}

pub fn run(args: HistoryArgs) -> Result<()> {
    let meta = read_meta(&args.bank)?;
    let fit_images = (meta.n_train_images as usize)
        .saturating_sub(meta.history.iter().map(|h| h.images.len()).sum::<usize>());
    println!(
        "version 1: fitted {} on {fit_images} images of {}",
        meta.created,
        meta.train_dir.display()
    );
    for h in &meta.history {
        if h.action != "update" {
            println!(
                "version {} (from {}): {} by {}@{}: {}, threshold {:.4} -> {:.4}",
                h.version,
                h.parent,
                h.time,
                h.operator.user,
                h.operator.host,
                h.action,
                h.threshold_before,
                h.threshold_after
            );
            continue;
        }
        println!(
            "version {} (from {}): {} by {}@{}: {} rows added from {} image(s), threshold {:.4} -> {:.4}{}",
            h.version,
            h.parent,
            h.time,
            h.operator.user,
            h.operator.host,
            h.rows_added,
            h.images.len(),
            h.threshold_before,
            h.threshold_after,
            if h.forced { " (--force)" } else { "" }
        );
        for img in &h.images {
            println!(
                "    {}  sha256 {}  score {:.4}  {} rows",
                img.path.display(),
                img.sha256,
                img.score,
                img.rows_added
            );
        }
    }
    let versions = Versions::of(&args.bank);
    let kept: Vec<String> = versions.list()?.iter().map(|v| v.0.to_string()).collect();
    println!(
        "current: version {}; kept in {}: {}",
        meta.version,
        versions.dir().display(),
        if kept.is_empty() {
            "none".to_string()
        } else {
            kept.join(", ")
        }
    );
    Ok(())
}
