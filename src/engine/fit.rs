//! Fitting (paper Alg. 1): patch features of the good images streamed to disk, the coreset
//! chosen on their projections, and the threshold calibrated leave-one-image-out.
use super::calibrate::{leave_one_out, recalibrate, CALIBRATION_KEEP};
use super::coreset::{self, CoresetOptions};
use super::extractor::Extractor;
use super::feature_store::FeatureStore;
use super::host::to_host_f32;
use super::inspect::{in_storage_precision, searcher_for};
use super::pipeline::{for_each_decoded, images_per_batch, Progress};
use super::{EngineError, Method, PatchCore, Precision};
use crate::backbone::Backbone;
use crate::bank::{BankDtype, BankFile, BankMeta, Calibration, Growth, FORMAT_VERSION};
use crate::decide::content_cells;
use image::RgbImage;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Tensor};

#[derive(Clone)]
pub struct FitOptions {
    pub method: Method,
    pub weights: PathBuf,
    pub device: Device,
    pub precision: Precision,
    pub batch_size: usize,
    /// Fraction of patches kept; `coreset_size` overrides it. 1.0 keeps every patch.
    pub coreset_ratio: f64,
    pub coreset_size: Option<usize>,
    pub projection_dim: usize,
    pub seed: u64,
    pub bank_dtype: BankDtype,
    /// Training images scored leave-one-out for calibration (evenly spread; 0 = all). `None`:
    /// `DEFAULT_CALIBRATION_IMAGES`, fewer at high resolution (`CALIBRATION_PATCHES`).
    pub calibration_images: Option<usize>,
    /// Patches entering the coreset at most (0: all): past it each image gives an equal random
    /// share, so memory and selection time stay bounded as patches per image grow.
    pub max_patches: usize,
    pub category: String,
    pub train_dir: PathBuf,
    pub test_dir: Option<PathBuf>,
}

/// Seconds spent in each phase of a fit.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FitTimes {
    pub features_s: f64,
    pub coreset_s: f64,
    pub calibration_s: f64,
}

/// Patches each of `n_images` images of `per_image` patches gives the coreset under a budget of
/// `max_patches` (0: no budget): all of them, or an equal share, at least one.
pub fn sampled_per_image(per_image: usize, n_images: usize, max_patches: usize) -> usize {
    if max_patches == 0 {
        return per_image;
    }
    (max_patches / n_images.max(1)).clamp(1, per_image.max(1))
}

/// The grid cells of image `image` that enter the coreset: those showing the image (`cells`,
/// padding left out), or a seeded random `sample` of them in grid order, so the same fit picks
/// the same patches.
fn sample_patches(cells: &[bool], sample: usize, seed: u64, image: usize) -> Vec<i64> {
    use rand::SeedableRng;
    let content: Vec<i64> = (0..cells.len() as i64)
        .filter(|&c| cells[c as usize])
        .collect();
    if content.len() <= sample {
        return content;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (image as u64).rotate_left(32));
    let mut idx: Vec<i64> = rand::seq::index::sample(&mut rng, content.len(), sample)
        .into_iter()
        .map(|i| content[i])
        .collect();
    idx.sort_unstable();
    idx
}

/// Calibration images when none are asked for.
pub const DEFAULT_CALIBRATION_IMAGES: usize = 64;
/// Patches the leave-one-out calibration scores at most by default: past it fewer images are
/// calibrated (at least `MIN_CALIBRATION_IMAGES`). Each patch is a search against the whole
/// bank, so at 1 MP (16,384 patches an image) 64 images would take most of the fit. A number
/// asked for is scored in full: the user chose the time.
pub const CALIBRATION_PATCHES: usize = 1 << 18;
const MIN_CALIBRATION_IMAGES: usize = 8;

/// Calibration images for `asked` (0: all; `None`: the budgeted default) of `n` images with
/// `per_image` patches each.
fn calibration_count(asked: Option<usize>, n: usize, per_image: usize) -> usize {
    match asked {
        Some(0) => n,
        Some(a) => a.min(n),
        None => {
            let fits = (CALIBRATION_PATCHES / per_image.max(1)).max(MIN_CALIBRATION_IMAGES);
            DEFAULT_CALIBRATION_IMAGES.min(n).min(fits)
        }
    }
}

/// Evenly spread subset of `0..n` of size `m` (all when `m` is 0 or >= n).
fn spread(n: usize, m: usize) -> Vec<usize> {
    if m == 0 || m >= n {
        return (0..n).collect();
    }
    (0..m).map(|i| i * n / m).collect()
}

impl PatchCore {
    /// Fits a bank on good images (paper Alg. 1) and calibrates its threshold leave-one-image-out.
    pub fn fit(
        train: &[PathBuf],
        opts: &FitOptions,
        progress: &dyn Progress,
    ) -> Result<(PatchCore, BankFile, FitTimes), EngineError> {
        if train.is_empty() {
            return Err(EngineError::Config("no training images".into()));
        }
        opts.method.validate()?;
        crate::bank::check_coreset(opts.coreset_ratio, opts.projection_dim)?;
        let backbone = Backbone::load(&opts.method.backbone, &opts.weights, opts.device)?;
        let extractor = Extractor::new(backbone, opts.method.clone(), opts.precision)?;
        let mut times = FitTimes::default();

        let t = Instant::now();
        progress.start("features", train.len() as u64);
        let mut coreset_opts = CoresetOptions {
            target: 0,
            projection_dim: opts.projection_dim,
            n_starts: 10,
            seed: opts.seed,
        };
        let dim = opts.method.embed.embed_dim;
        let projection = coreset::projection(dim as usize, &coreset_opts, opts.device)?;
        let io = |e: std::io::Error| EngineError::Config(format!("temporary feature file: {e}"));
        // Full rows go to disk; only their projections stay in memory for the coreset.
        let mut store = FeatureStore::new(dim as usize).map_err(io)?;
        let mut reduced = coreset::Projected::new(opts.device);
        let mut calib = Vec::new();
        // Calibration scores whole images: when the coreset sees a sample of each image's
        // patches, or no padding, the calibration images' full rows go to a store of their own.
        let mut calib_store: Option<FeatureStore> = None;
        let mut grid = (0, 0);
        let mut sample = 0;
        // The training image of each stored row.
        let mut row_source: Vec<i64> = Vec::new();
        let mut failure = None;
        // Where each training image's crop sat, for laying an ROI over its calibration map.
        let mut geometry = Vec::with_capacity(train.len());
        let batch = images_per_batch(opts.batch_size, opts.method.crop, opts.device);
        for_each_decoded(train, batch, opts.method.crop, |offset, decoded, _| {
            let step = || -> Result<(), EngineError> {
                let decoded = decoded.into_iter().collect::<Result<Vec<_>, _>>()?;
                geometry.extend(decoded.iter().map(|d| d.geometry));
                let crops: Vec<&RgbImage> = decoded.iter().map(|d| &d.crop).collect();
                let (emb, g) = extractor.embed(&crops)?;
                let per_image = (g.0 * g.1) as usize;
                if sample == 0 {
                    grid = g;
                    let n = calibration_count(opts.calibration_images, train.len(), per_image);
                    calib = spread(train.len(), n);
                    sample = sampled_per_image(per_image, train.len(), opts.max_patches);
                    let pads = matches!(opts.method.crop, crate::data::CropMode::Whole { .. });
                    if sample < per_image || pads {
                        calib_store = Some(FeatureStore::new(dim as usize).map_err(io)?);
                    }
                }
                for (j, image) in emb.f_unbind(0)?.iter().enumerate() {
                    let i = offset + j;
                    let rows = match &mut calib_store {
                        None => image.shallow_clone(),
                        Some(cs) => {
                            if calib.contains(&i) {
                                cs.append(image).map_err(io)?;
                            }
                            let geo = &decoded[j].geometry;
                            let cells = content_cells(geo, g.0 as u32, g.1 as u32);
                            let idx = sample_patches(&cells, sample, opts.seed, i);
                            let idx = Tensor::f_from_slice(&idx)?.f_to_device(image.device())?;
                            image.f_index_select(0, &idx)?
                        }
                    };
                    row_source.extend(std::iter::repeat_n(i as i64, rows.size()[0] as usize));
                    reduced.push(&rows.f_matmul(&projection)?)?;
                    store.append(&rows).map_err(io)?;
                }
                progress.advance(crops.len() as u64);
                Ok(())
            };
            step().map_err(|e| failure = Some(e)).is_ok()
        });
        if let Some(e) = failure {
            return Err(e);
        }
        progress.finish();
        let per_image = grid.0 * grid.1;
        let n = store.len();
        times.features_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        coreset_opts.target = opts
            .coreset_size
            .unwrap_or((n as f64 * opts.coreset_ratio) as usize)
            .clamp(1, n);
        let target = coreset_opts.target;
        if opts.method.k > target as i64 {
            return Err(EngineError::Config(format!(
                "k is {}, more than the coreset's {target} rows",
                opts.method.k
            )));
        }
        progress.start("coreset", target as u64);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let selection = coreset::select_projected(reduced, &coreset_opts, &|n| {
            let before = done.swap(n, std::sync::atomic::Ordering::Relaxed);
            progress.advance(n.saturating_sub(before) as u64);
        })?;
        let picks = selection.picks;
        progress.finish();
        let bank_rows = store.gather(&picks, opts.device).map_err(io)?;
        let bank_rows = in_storage_precision(bank_rows, opts.bank_dtype)?;
        let bank_source = Tensor::f_from_slice(&picks)?.f_to_device(opts.device)?;
        let bank_source = Tensor::f_from_slice(&row_source)?
            .f_to_device(opts.device)?
            .f_index_select(0, &bank_source)?;
        times.coreset_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let searcher = searcher_for(&bank_rows, opts.precision)?;
        let keep = CALIBRATION_KEEP.min(per_image);
        let loo = leave_one_out(
            &searcher,
            &bank_source,
            &opts.method,
            per_image,
            keep,
            &calib,
            &calib
                .iter()
                .map(|&i| content_cells(&geometry[i], grid.0 as u32, grid.1 as u32))
                .collect::<Vec<_>>(),
            batch,
            &mut |i| match &mut calib_store {
                // The calibration images' rows were stored in `calib`'s order.
                Some(cs) => {
                    let at = calib.iter().position(|&c| c == i).unwrap_or(0);
                    cs.read_range(at * per_image as usize, per_image as usize, opts.device)
                        .map_err(io)
                }
                None => store
                    .read_range(i * per_image as usize, per_image as usize, opts.device)
                    .map_err(io),
            },
            progress,
        )?;
        times.calibration_s = t.elapsed().as_secs_f64();
        let calibration = Calibration::from_scores(
            format!(
                "leave-one-image-out over {} of {} training images",
                calib.len(),
                train.len()
            ),
            loo.scores,
        );
        let method = &opts.method;
        let meta = BankMeta {
            format_version: FORMAT_VERSION,
            category: opts.category.clone(),
            backbone: method.backbone.clone(),
            weights_sha256: extractor.backbone().weights_sha256().to_string(),
            stages: method.stages.clone(),
            grid_stage: method.grid_stage as u32,
            pyramid: method.pyramid,
            mean: method.mean,
            std: method.std,
            crop: method.crop,
            patch_size: method.embed.patch_size as u32,
            pretrain_dim: method.embed.pretrain_dim as u32,
            embed_dim: method.embed.embed_dim as u32,
            grid: [grid.0 as u32, grid.1 as u32],
            k: method.k as u32,
            reweight: method.reweight,
            squared: method.squared,
            blur_sigma: method.blur_sigma as f32,
            image_score: method.image_score,
            coreset_ratio: opts.coreset_ratio as f32,
            coreset_size: target as u32,
            coreset_projection: opts.projection_dim as u32,
            seed: opts.seed,
            n_train_images: train.len() as u32,
            n_patches: n as u64,
            train_dir: opts.train_dir.clone(),
            test_dir: opts.test_dir.clone(),
            created: crate::report::now_rfc3339(),
            bank_dtype: opts.bank_dtype,
            calibration,
            selection: Vec::new(),
            rules: None,
            roi: None,
            calibration_geometry: calib.iter().map(|&i| geometry[i]).collect(),
            growth: Some(Growth {
                covering_radius: selection.radius,
                calibration_keep: keep as u32,
                padding_left_out: true,
            }),
            version: 1,
            history: Vec::new(),
        };
        // Scored again from the maps, so padding (not part of any image) takes no part.
        let (calibration, rules) = recalibrate(&meta, &loo.maps, None)?;
        let meta = BankMeta {
            rules: Some(rules),
            calibration,
            ..meta
        };
        let file = BankFile {
            meta: meta.clone(),
            rows: to_host_f32(&bank_rows)?,
            source_image: Vec::<i64>::try_from(bank_source.f_to_device(Device::Cpu)?)?
                .into_iter()
                .map(|v| v as i32)
                .collect(),
            roi: None,
            calibration_maps: loo.maps,
            calibration_patches: Some(loo.kept),
        };
        Ok((
            PatchCore {
                extractor,
                searcher,
                meta,
                roi: None,
            },
            file,
            times,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::calibration_count;

    #[test]
    fn the_default_calibration_keeps_to_its_patch_budget_and_a_number_asked_for_does_not() {
        // 1 MP: 262,144 / 16,384 = 16 images by default, never under 8, never over the set.
        assert_eq!(calibration_count(None, 200, 16_384), 16);
        assert_eq!(calibration_count(None, 200, 62_500), 8);
        assert_eq!(calibration_count(None, 400, 784), 64);
        assert_eq!(calibration_count(None, 5, 62_500), 5);
        assert_eq!(calibration_count(Some(32), 200, 62_500), 32);
        assert_eq!(calibration_count(Some(0), 200, 62_500), 200);
        assert_eq!(calibration_count(Some(500), 200, 784), 200);
    }
}
