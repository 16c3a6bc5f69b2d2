//! `patchcore bench`: fit and predict timed phase by phase (decode, features, coreset,
//! calibration, search, maps), images per second and peak RSS, for any backbone, device,
//! precision and batch size, on a data folder or on generated images. Prints a table, writes JSON.
use super::args::RuntimeArgs;
use super::fit::{BankArgs, MethodArgs, Source};
use super::progress::Bars;
use crate::data::{self, synthetic, Geometry};
use crate::decide::{find_regions, Roi};
use crate::engine::pipeline::images_per_batch;
use crate::engine::{AnomalyMap, PatchCore};
use crate::report::{check_writable, write_atomic};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Dataset to fit and predict on (MVTec category, folder or split.json); default: generated parts.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub category: Option<String>,
    /// Generated training images when no --data is given.
    #[arg(long, default_value_t = 16)]
    pub synthetic: usize,
    /// Use at most this many training images (0 = all).
    #[arg(long, default_value_t = 0)]
    pub fit_images: usize,
    /// Images to predict (taken from the test set, else the training set; repeated as needed).
    #[arg(long, default_value_t = 32)]
    pub predict_images: usize,
    #[command(flatten)]
    pub bank: BankArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Geometries to bench side by side, comma-separated: `crop` (the paper's 224 crop), `squash`,
    /// or a working resolution in pixels (the whole image, longer side), e.g. `crop,512,1024`.
    /// Default: the geometry the method flags give.
    #[arg(long, value_delimiter = ',')]
    pub geometries: Vec<String>,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Serialize)]
pub struct BenchReport {
    /// How images became model input, and its size.
    pub geometry: String,
    pub patches_per_image: u32,
    pub backbone: String,
    pub device: String,
    pub precision: String,
    pub batch_size: usize,
    pub fit_images: usize,
    pub bank_rows: u32,
    pub fit_features_s: f64,
    pub fit_coreset_s: f64,
    pub fit_calibration_s: f64,
    pub fit_total_s: f64,
    pub fit_peak_rss_mb: f64,
    pub predict_images: usize,
    pub predict_decode_ms: f64,
    pub predict_features_ms: f64,
    pub predict_search_ms: f64,
    pub predict_maps_ms: f64,
    pub predict_ms_per_image: f64,
    pub predict_images_per_s: f64,
    pub peak_rss_mb: f64,
    /// Region analysis (ROI lookup, thresholding, connected regions) per image, at the map's
    /// side and at 2x and 4x that side (the maps upscaled), to show it grows with the pixels.
    pub regions_ms: Vec<(u32, u32, f64)>,
}

/// Times the region analysis on `maps` at 1x, 2x and 4x their side (nearest-neighbour upscaled,
/// so the regions scale with them), with a half-image ROI so the mask lookup is timed too.
fn time_regions(maps: &[(AnomalyMap, Geometry)], pixel_threshold: f32) -> Vec<(u32, u32, f64)> {
    let roi = Roi::new(2, 1, &[0, 1]).expect("a valid two-pixel mask");
    [1u32, 2, 4]
        .iter()
        .filter_map(|&k| {
            let (first, _) = maps.first()?;
            let (w, h) = (first.width * k, first.height * k);
            let scaled: Vec<(Vec<f32>, Geometry)> = maps
                .iter()
                .map(|(m, g)| {
                    let values = (0..w * h)
                        .map(|i| m.values[((i / w / k) * m.width + (i % w) / k) as usize])
                        .collect();
                    (values, g.at_size(w, h))
                })
                .collect();
            let t = Instant::now();
            let mut found = 0;
            for (values, g) in &scaled {
                let mask = roi.crop_mask(g);
                found +=
                    find_regions(values, (w, h), pixel_threshold, Some(&mask), g, 0, None).len();
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0 / scaled.len() as f64;
            std::hint::black_box(found);
            Some((w, h, ms))
        })
        .collect()
}

/// Peak resident set size of this process so far (Linux `VmHWM`), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The method flags with one `--geometries` entry applied.
fn with_geometry(method: &MethodArgs, geometry: &str) -> Result<MethodArgs> {
    let mut m = method.clone();
    (m.crop, m.squash, m.resolution, m.scale) = (false, false, None, None);
    match geometry {
        "crop" => m.crop = true,
        "squash" => m.squash = true,
        n => {
            let long = n.parse::<u32>().ok().filter(|&v| v > 0).with_context(|| {
                format!("--geometries: `{n}` is not crop, squash or a resolution in pixels")
            })?;
            m.resolution = Some(long);
        }
    }
    Ok(m)
}

/// Resets this process's peak RSS (Linux `clear_refs` 5), so each geometry's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn run(a: BenchArgs) -> Result<()> {
    if let Some(json) = &a.json {
        check_writable(json).with_context(|| format!("--json {}", json.display()))?;
    }
    let methods: Vec<MethodArgs> = match a.geometries.is_empty() {
        true => vec![a.method.clone()],
        false => a
            .geometries
            .iter()
            .map(|g| with_geometry(&a.method, g))
            .collect::<Result<_>>()?,
    };
    let tmp;
    let dataset = match &a.data {
        Some(d) => data::open(d, a.category.as_deref())?,
        None => {
            tmp = tempfile::tempdir().context("creating a temporary folder")?;
            // Parts drawn at the largest resolution benched, so no geometry upsamples them.
            let size = methods
                .iter()
                .filter_map(|m| m.resolution)
                .max()
                .unwrap_or(256);
            let spec = synthetic::SyntheticSpec {
                n_train: a.synthetic.max(1),
                size,
                ..Default::default()
            };
            synthetic::generate(tmp.path(), "bench", &spec)?
        }
    };
    let mut train = dataset.train.clone();
    if a.fit_images > 0 {
        train.truncate(a.fit_images);
    }
    let pool: Vec<PathBuf> = if dataset.test.is_empty() {
        dataset.train.clone()
    } else {
        dataset.test.iter().map(|s| s.path.clone()).collect()
    };
    if pool.is_empty() || train.is_empty() {
        bail!("bench needs at least one training and one test image");
    }
    let predict: Vec<PathBuf> = pool
        .iter()
        .cycle()
        .take(a.predict_images.max(1))
        .cloned()
        .collect();
    let mut reports = Vec::new();
    for m in &methods {
        reset_peak_rss();
        reports.push(bench_one(&a, m, &dataset, &train, &predict)?);
    }
    print_table(&reports);
    if let Some(path) = &a.json {
        write_atomic(path, serde_json::to_string_pretty(&reports)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Fits and predicts with one geometry's method flags `m`.
fn bench_one(
    a: &BenchArgs,
    m: &MethodArgs,
    dataset: &data::Dataset,
    train: &[PathBuf],
    predict: &[PathBuf],
) -> Result<BenchReport> {
    let (method, _) = m.method(&a.runtime, train)?;
    let source = Source {
        category: dataset.name.clone(),
        train_dir: dataset.root.clone(),
        test_dir: None,
    };
    let opts = a.bank.options(method, &a.runtime, source)?;
    let t = Instant::now();
    let (model, file, times) = PatchCore::fit(train, &opts, &Bars::default())?;
    // Only the metadata is reported; the file's copy of the rows goes before predicting.
    let meta = file.meta;
    let fit_total_s = t.elapsed().as_secs_f64();
    let fit_peak_rss_mb = peak_rss_mb();

    let (mut decode, mut features, mut search, mut maps) = (0.0, 0.0, 0.0, 0.0);
    let mut failure = None;
    let mut kept = Vec::new();
    let t = Instant::now();
    model.inspect_paths(predict, a.runtime.batch_size, |_, r| match r {
        Ok(i) => {
            decode += i.times.decode_ms as f64;
            features += i.times.features_ms as f64;
            search += i.times.search_ms as f64;
            maps += i.times.map_ms as f64;
            kept.push((i.map, i.geometry));
            true
        }
        Err(e) => {
            failure = Some(e);
            false
        }
    });
    if let Some(e) = failure {
        return Err(e.into());
    }
    let predict_s = t.elapsed().as_secs_f64();
    let n = predict.len() as f64;
    let [gh, gw] = meta.grid;
    Ok(BenchReport {
        geometry: meta.crop.describe(),
        patches_per_image: gh * gw,
        backbone: meta.backbone.clone(),
        device: format!("{:?}", opts.device),
        precision: opts.precision.name().to_string(),
        // What each pass held: on the CPU fewer than asked past 32 MP of input.
        batch_size: images_per_batch(a.runtime.batch_size, meta.crop, opts.device),
        fit_images: train.len(),
        bank_rows: meta.coreset_size,
        fit_features_s: times.features_s,
        fit_coreset_s: times.coreset_s,
        fit_calibration_s: times.calibration_s,
        fit_total_s,
        fit_peak_rss_mb,
        predict_images: predict.len(),
        predict_decode_ms: decode / n,
        predict_features_ms: features / n,
        predict_search_ms: search / n,
        predict_maps_ms: maps / n,
        predict_ms_per_image: predict_s * 1000.0 / n,
        predict_images_per_s: n / predict_s,
        peak_rss_mb: peak_rss_mb(),
        regions_ms: time_regions(&kept, meta.rules().pixel_threshold),
    })
}

/// One table row per geometry, then each one's region-analysis times.
fn print_table(reports: &[BenchReport]) {
    println!("| geometry | patches/image | backbone | device | precision | batch | fit images | features s | coreset s | calibration s | fit s | fit peak RSS MB | predict ms/img (decode/features/search/maps) | img/s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        println!(
        "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} ({:.1}/{:.1}/{:.1}/{:.1}) | {:.1} |",
        r.geometry,
        r.patches_per_image,
        r.backbone,
        r.device,
        r.precision,
        r.batch_size,
        r.fit_images,
        r.fit_features_s,
        r.fit_coreset_s,
        r.fit_calibration_s,
        r.fit_total_s,
        r.fit_peak_rss_mb,
        r.predict_ms_per_image,
        r.predict_decode_ms,
        r.predict_features_ms,
        r.predict_search_ms,
        r.predict_maps_ms,
        r.predict_images_per_s
    );
        let regions: Vec<String> = r
            .regions_ms
            .iter()
            .map(|(w, h, ms)| format!("{w}x{h}: {ms:.2} ms"))
            .collect();
        println!(
            "region analysis per image (ROI mask, threshold, connected regions): {}",
            regions.join(", ")
        );
    }
}
