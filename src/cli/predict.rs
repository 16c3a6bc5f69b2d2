//! `patchcore predict`: batch inspection of images or folders with a fitted bank.
use super::args::RuntimeArgs;
use super::progress::Bars;
use crate::app::{write_csv_file, CsvRecord, Decision};
use crate::data;
use crate::engine::{PatchCore, Progress};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[arg(long)]
    pub bank: PathBuf,
    /// Image files and/or folders of images.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write one CSV row per image.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write each anomaly map as a float32 .npy (crop resolution) under this folder.
    #[arg(long)]
    pub heatmaps: Option<PathBuf>,
    /// Reject threshold on the raw score (default: the bank's calibrated threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            out.extend(data::list_images(p)?);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

pub fn run(a: PredictArgs) -> Result<()> {
    let paths = collect_inputs(&a.inputs)?;
    if paths.is_empty() {
        bail!("no images found in {:?}", a.inputs);
    }
    let meta = crate::bank::read_meta(&a.bank)?;
    let weights = a.runtime.weights_for(&meta.backbone)?;
    let model = PatchCore::load_with_weights(
        &a.bank,
        &weights,
        a.runtime.device()?,
        a.runtime.precision()?,
    )?;
    let threshold = a.threshold.unwrap_or(meta.calibration.threshold);
    let stamp = crate::engine::patchcore::now_rfc3339();
    let mut rows = Vec::new();
    let (mut rejects, mut errors) = (0usize, 0usize);
    let bars = Bars::default();
    bars.start("inspecting", paths.len() as u64);
    let mut write_error = None;
    let start = std::time::Instant::now();
    model.inspect_paths(&paths, a.runtime.batch_size, |_, r| {
        bars.advance(1);
        match r {
            Ok(i) => {
                let reject = Decision::of(i.score, threshold) == Decision::Reject;
                rejects += usize::from(reject);
                println!(
                    "{}\t{:.4}\t{:.3}\t{}\ttop patch x={} y={} w={} h={}",
                    i.path.display(),
                    i.score,
                    i.normalized,
                    if reject { "REJECT" } else { "accept" },
                    i.top_patch.box_original[0],
                    i.top_patch.box_original[1],
                    i.top_patch.box_original[2],
                    i.top_patch.box_original[3]
                );
                if let Some(dir) = &a.heatmaps {
                    let name = i
                        .path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let out = dir.join(format!("{name}.npy"));
                    let res = std::fs::create_dir_all(dir).and_then(|_| {
                        super::eval::write_npy(
                            &out,
                            &[i.map.height as usize, i.map.width as usize],
                            &i.map.values,
                        )
                    });
                    if let Err(e) = res {
                        write_error = Some(anyhow::anyhow!("writing {}: {e}", out.display()));
                        return false;
                    }
                }
                rows.push(CsvRecord::new(
                    &i,
                    threshold,
                    &meta.category,
                    &a.bank,
                    &stamp,
                ));
            }
            Err(e) => {
                errors += 1;
                eprintln!("error: {e}");
            }
        }
        true
    });
    bars.finish();
    if let Some(e) = write_error {
        return Err(e);
    }
    if let Some(csv) = &a.csv {
        write_csv_file(csv, &rows).with_context(|| format!("writing {}", csv.display()))?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "predict: {} images, {rejects} rejected at threshold {threshold:.4}, {errors} unreadable; {:.1} s ({:.0} ms per image)",
        paths.len(),
        secs,
        secs * 1000.0 / paths.len().max(1) as f64
    );
    Ok(())
}
