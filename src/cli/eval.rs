//! `patchcore eval`: scores a labelled test set and reports image AUROC, pixel AUROC (sklearn's
//! tie rule), PRO (AUPRO up to FPR 0.3) and the F1-max threshold.
use super::args::RuntimeArgs;
use super::progress::Bars;
use crate::bank::ImageScore;
use crate::data;
use crate::decide::inspected;
use crate::engine::{PatchCore, Progress};
use crate::metrics;
use crate::report::{check_writable, write_atomic, write_npy};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub bank: PathBuf,
    /// MVTec AD category folder (or parent with --category) or split.json.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub category: Option<String>,
    /// Write the metrics and per-image scores as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write each anomaly map (the model input's resolution: the whole image by default, the crop
    /// with --crop; float32 .npy, rows x columns) under this folder.
    #[arg(long)]
    pub dump_maps: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Serialize)]
pub struct ImageResult {
    pub path: PathBuf,
    pub label: u8,
    pub defect: String,
    pub score: f32,
    pub top_patch: [u32; 2],
}

#[derive(Serialize)]
pub struct Timings {
    pub load: f64,
    pub decode: f64,
    pub features: f64,
    pub search: f64,
    pub maps: f64,
    pub metrics: f64,
    pub total: f64,
    pub ms_per_image: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub bank: PathBuf,
    pub backbone: String,
    /// How images became model input (the bank's geometry).
    pub geometry: String,
    /// How each image's score came from its patch scores (the bank's `image_score`).
    pub image_score: ImageScore,
    /// `[width, height]` at which pixel AUROC and PRO are computed: the maps' resolution.
    pub pixel_resolution: [u32; 2],
    pub n_images: usize,
    pub image_auroc: f64,
    pub pixel_auroc: Option<f64>,
    pub pro: Option<f64>,
    pub f1_max: f64,
    pub f1_threshold: f32,
    pub calibrated_threshold: f32,
    pub timings_s: Timings,
    pub images: Vec<ImageResult>,
}

pub fn run(a: EvalArgs) -> Result<Report> {
    let t_all = Instant::now();
    if let Some(json) = &a.json {
        check_writable(json).with_context(|| format!("--json {}", json.display()))?;
    }
    let dataset = data::open(&a.data, a.category.as_deref())?;
    if dataset.test.is_empty() {
        bail!("{}: no test images found", a.data.display());
    }
    let device = a.runtime.device()?;
    let meta = crate::bank::read_meta(&a.bank)?;
    let precision = a.runtime.precision(&meta.backbone)?;
    let weights = a.runtime.weights_for(&meta.backbone)?;
    let t = Instant::now();
    let model = PatchCore::load_with_weights(&a.bank, &weights, device, precision)?;
    let load_s = t.elapsed().as_secs_f64();

    let paths: Vec<PathBuf> = dataset.test.iter().map(|s| s.path.clone()).collect();
    let bars = Bars::default();
    bars.start("scoring", paths.len() as u64);
    let mut inspections = Vec::with_capacity(paths.len());
    let mut failure = None;
    model.inspect_paths(&paths, a.runtime.batch_size, |_, r| {
        bars.advance(1);
        match r {
            Ok(i) => {
                inspections.push(i);
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    });
    bars.finish();
    if let Some(e) = failure {
        return Err(e.into());
    }

    let t = Instant::now();
    let labels: Vec<bool> = dataset.test.iter().map(|s| s.is_anomalous()).collect();
    let scores: Vec<f32> = inspections.iter().map(|i| i.score).collect();
    let image_auroc = metrics::auroc(&scores, &labels)?;
    let (f1_max, f1_threshold) = metrics::f1_max(&scores, &labels)?;
    // Pixel metrics at the model input's resolution, masks mapped onto it as the images are.
    let (width, height) = model.meta().crop.input_dims();
    let (width, height) = (width as usize, height as usize);
    let masks: Vec<Vec<u8>> = dataset
        .test
        .iter()
        .map(|s| match &s.mask {
            Some(m) => data::load_mask(m, model.meta().crop).map_err(anyhow::Error::from),
            None => Ok(vec![0u8; width * height]),
        })
        .collect::<Result<_>>()?;
    let has_defect_pixels = masks.iter().any(|m| m.iter().any(|&v| v > 0));
    let (pixel_auroc, pro) = if has_defect_pixels {
        let maps: Vec<&[f32]> = inspections
            .iter()
            .map(|i| i.map.values.as_slice())
            .collect();
        let mask_refs: Vec<&[u8]> = masks.iter().map(|m| m.as_slice()).collect();
        // The ROI's pixels of each image, and none of its padding.
        let inspect: Vec<Option<Vec<bool>>> = inspections
            .iter()
            .map(|i| inspected(model.roi(), &i.geometry))
            .collect();
        let inspect: Option<Vec<Vec<bool>>> = inspect.iter().any(Option::is_some).then(|| {
            inspect
                .into_iter()
                .map(|m| m.unwrap_or_else(|| vec![true; width * height]))
                .collect()
        });
        let (pixel_auroc, pro) =
            metrics::pixel_metrics(&maps, &mask_refs, inspect.as_deref(), width, height)?;
        (Some(pixel_auroc), Some(pro))
    } else {
        (None, None)
    };
    let metrics_s = t.elapsed().as_secs_f64();

    if let Some(dir) = &a.dump_maps {
        for (s, i) in dataset.test.iter().zip(&inspections) {
            // Named after the path relative to the data folder; paths outside it keep their
            // normal components only, so nothing is ever written outside `dir`.
            let rel = s.path.strip_prefix(&dataset.root).unwrap_or(&s.path);
            let rel: PathBuf = rel
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            let out = dir.join(rel).with_extension("npy");
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            write_npy(&out, &[height, width], &i.map.values)
                .with_context(|| format!("writing {}", out.display()))?;
        }
    }

    let n = inspections.len() as f64;
    let sum = |f: fn(&crate::engine::PhaseTimes) -> f32| {
        inspections.iter().map(|i| f(&i.times) as f64).sum::<f64>() / 1000.0
    };
    let timings = Timings {
        load: load_s,
        decode: sum(|t| t.decode_ms),
        features: sum(|t| t.features_ms),
        search: sum(|t| t.search_ms),
        maps: sum(|t| t.map_ms),
        metrics: metrics_s,
        total: t_all.elapsed().as_secs_f64(),
        ms_per_image: 0.0,
    };
    let timings = Timings {
        ms_per_image: (timings.decode + timings.features + timings.search + timings.maps) * 1000.0
            / n,
        ..timings
    };
    let report = Report {
        bank: a.bank.clone(),
        backbone: model.meta().backbone.clone(),
        geometry: model.meta().crop.describe(),
        image_score: model.meta().image_score,
        pixel_resolution: [width as u32, height as u32],
        n_images: inspections.len(),
        image_auroc,
        pixel_auroc,
        pro,
        f1_max,
        f1_threshold,
        calibrated_threshold: model.meta().calibration.threshold,
        images: dataset
            .test
            .iter()
            .zip(&inspections)
            .map(|(s, i)| ImageResult {
                path: s.path.clone(),
                label: u8::from(s.is_anomalous()),
                defect: s.label.clone(),
                score: i.score,
                top_patch: [i.top_patch.row, i.top_patch.col],
            })
            .collect(),
        timings_s: timings,
    };
    let pct = |v: Option<f64>| {
        v.map(|v| format!("{:.2}", v * 100.0))
            .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "metrics: geometry {}; image score: {}; pixel AUROC and PRO at {} x {} (the maps' resolution, masks mapped onto it as the images are)",
        report.geometry, report.image_score.describe(), report.pixel_resolution[0], report.pixel_resolution[1]
    );
    println!(
        "eval: {} images, image AUROC {:.2}, pixel AUROC {}, PRO {}, F1-max {:.3} at {:.4} (calibrated threshold {:.4})",
        report.n_images,
        image_auroc * 100.0,
        pct(pixel_auroc),
        pct(pro),
        f1_max,
        f1_threshold,
        report.calibrated_threshold
    );
    let tm = &report.timings_s;
    println!(
        "time: load {:.1} s, decode {:.1} s, features {:.1} s, search {:.1} s, maps {:.1} s, metrics {:.1} s, total {:.1} s ({:.0} ms per image)",
        tm.load, tm.decode, tm.features, tm.search, tm.maps, tm.metrics, tm.total, tm.ms_per_image
    );
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report)?;
        write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}
