//! `patchcore predict`: batch inspection of images or folders with a fitted bank. Every image
//! gets a CSV row (an image that could not be inspected gets decision `error` and the reason),
//! rows are streamed as results come, and the exit status says whether every image was seen.
use super::args::RuntimeArgs;
use super::progress::Bars;
use crate::data;
use crate::engine::{PatchCore, Progress};
use crate::report::{now_rfc3339, write_npy, CsvRecord, CsvStream, Decision, Outcome};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[arg(long)]
    pub bank: PathBuf,
    /// Image files and/or folders of images (sub-folders included, `ground_truth` skipped).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write one CSV row per image, failures included (streamed to `<file>.partial`, renamed
    /// when the run completes).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write each anomaly map as a float32 .npy (the model input's resolution) under this folder, at the
    /// image's path relative to the folder it was listed from.
    #[arg(long)]
    pub heatmaps: Option<PathBuf>,
    /// One reject threshold on the raw score instead of the bank's review and reject bands
    /// (review_from = reject_from = this; the bank's min-area and regions still apply).
    #[arg(long)]
    pub threshold: Option<f32>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Exit status of a run that finished but could not inspect every image (documented in the
/// README; 1 is a run that could not start or stopped, 2 a bad command line).
pub const EXIT_UNINSPECTED: u8 = 3;

/// Returned when some images could not be inspected; `cli::main` turns it into exit status 3.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} images could not be inspected (decision `error` in the CSV)")]
pub struct Uninspected {
    pub failed: usize,
    pub total: usize,
}

/// An image to inspect and where its heatmap goes below `--heatmaps` (its path relative to the
/// folder it was listed from, or its file name when given directly).
pub(super) struct Input {
    pub(super) path: PathBuf,
    relative: PathBuf,
}

pub(super) fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            for path in data::list_images(p)? {
                let relative = path.strip_prefix(p).unwrap_or(&path).to_path_buf();
                out.push(Input { path, relative });
            }
        } else if p.is_file() {
            let relative = PathBuf::from(p.file_name().unwrap_or(p.as_os_str()));
            out.push(Input {
                path: p.clone(),
                relative,
            });
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

/// Heatmap file of each input; two inputs that would write the same file are refused up front.
fn heatmap_paths(dir: &Path, inputs: &[Input]) -> Result<Vec<PathBuf>> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    let mut out = Vec::with_capacity(inputs.len());
    for i in inputs {
        let mut name = i.relative.clone().into_os_string();
        name.push(".npy");
        let target = dir.join(name);
        if let Some(other) = seen.insert(target.clone(), &i.path) {
            bail!(
                "--heatmaps: {} and {} would both write {}; inspect them in separate runs",
                other.display(),
                i.path.display(),
                target.display()
            );
        }
        out.push(target);
    }
    Ok(out)
}

fn write_heatmap(out: &Path, i: &crate::engine::Inspection) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_npy(
        out,
        &[i.map.height as usize, i.map.width as usize],
        &i.map.values,
    )
    .with_context(|| format!("writing {}", out.display()))
}

pub fn run(a: PredictArgs) -> Result<()> {
    let inputs = collect_inputs(&a.inputs)?;
    if inputs.is_empty() {
        bail!("no images found in {:?}", a.inputs);
    }
    let heatmaps = match &a.heatmaps {
        Some(dir) => {
            // Like the CSV: an unusable heatmap folder fails before the first image is scored.
            std::fs::create_dir_all(dir)
                .and_then(|()| crate::report::check_writable(&dir.join("probe.npy")))
                .with_context(|| format!("--heatmaps {}", dir.display()))?;
            Some(heatmap_paths(dir, &inputs)?)
        }
        None => None,
    };
    let meta = crate::bank::read_meta(&a.bank)?;
    let weights = a.runtime.weights_for(&meta.backbone)?;
    let model = PatchCore::load_with_weights(
        &a.bank,
        &weights,
        a.runtime.device()?,
        a.runtime.precision(&meta.backbone)?,
    )?;
    // Before any scoring: an unwritable CSV destination fails now, not after the last image.
    let mut csv = a.csv.as_deref().map(CsvStream::create).transpose()?;
    let mut rules = model.meta().rules();
    if let Some(t) = a.threshold {
        (rules.review_from, rules.reject_from) = (t, t);
    }
    let paths: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
    let (mut rejects, mut reviews, mut failed) = (0usize, 0usize, 0usize);
    let bars = Bars::default();
    bars.start("inspecting", paths.len() as u64);
    let mut fatal = None;
    let start = std::time::Instant::now();
    model.inspect_paths(&paths, a.runtime.batch_size, |index, r| {
        bars.advance(1);
        let outcome = match r {
            Ok(i) => {
                let decision = i.decide(&rules);
                rejects += usize::from(decision == Decision::Reject);
                reviews += usize::from(decision == Decision::Review);
                let counted = i
                    .regions
                    .iter()
                    .filter(|r| r.area >= rules.min_area)
                    .count();
                println!(
                    "{}\t{:.4}\t{:.3}\t{}\ttop patch x={} y={} w={} h={}\tregions {counted}",
                    i.path.display(),
                    i.score,
                    i.normalized,
                    decision.as_str().to_uppercase(),
                    i.top_patch.box_original[0],
                    i.top_patch.box_original[1],
                    i.top_patch.box_original[2],
                    i.top_patch.box_original[3]
                );
                if let Some(out) = heatmaps.as_ref().map(|h| &h[index]) {
                    if let Err(e) = write_heatmap(out, &i) {
                        fatal = Some(e);
                        return false;
                    }
                }
                i.outcome(&rules)
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
                Outcome::Failed(e.to_string())
            }
        };
        if let Some(csv) = csv.as_mut() {
            let record = CsvRecord {
                path: paths[index].clone(),
                outcome,
                rules,
                category: meta.category.clone(),
                bank: a.bank.clone(),
                timestamp: now_rfc3339(),
            };
            if let Err(e) = csv.push(&record) {
                fatal = Some(e.into());
                return false;
            }
        }
        true
    });
    bars.finish();
    if let Some(e) = fatal {
        if let Some(csv) = &csv {
            eprintln!(
                "the rows written so far are in {}",
                csv.partial_path().display()
            );
        }
        return Err(e);
    }
    if let Some(csv) = csv {
        csv.finish()?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "predict: {} images, {reviews} to review (score above {:.4}), {rejects} rejected (above {:.4}), {failed} could not be inspected; {:.1} s ({:.0} ms per image)",
        paths.len(),
        rules.review_from,
        rules.reject_from,
        secs,
        secs * 1000.0 / paths.len().max(1) as f64
    );
    if failed > 0 {
        return Err(Uninspected {
            failed,
            total: paths.len(),
        }
        .into());
    }
    Ok(())
}
