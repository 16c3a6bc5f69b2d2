//! `PatchCore`: one object that fits a memory bank from good images and scores new images, used
//! by every caller (`fit`, `eval`, `predict`, `bench`, the GUI worker) so a speed-up or a fix
//! lands everywhere at once.
use super::anomaly_map::anomaly_maps;
use super::coreset::{self, CoresetOptions};
use super::embed::{embed, EmbedParams};
use super::feature_store::FeatureStore;
use super::host::to_host_f32;
use super::inspection::{AnomalyMap, Inspection, PhaseTimes, TopPatch};
use super::knn::{Searcher, DEFAULT_CHUNK_BYTES};
use super::precision::{self, Precision, PrecisionChoice};
use crate::backbone::{self, Backbone, BackboneError};
use crate::bank::{
    BankDtype, BankError, BankFile, BankMeta, Calibration, CropMode, FieldError, ScoringSettings,
    FORMAT_VERSION,
};
use crate::data::{self, DataError, Geometry};
use image::RgbImage;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, TchError, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("invalid setting: {0}")]
    Setting(#[from] FieldError),
    #[error("{0}")]
    Config(String),
}

/// Neighbourhood size `b` of the paper's Eq. 7 reweighting (as in common reimplementations).
const REWEIGHT_NEIGHBOURS: i64 = 9;

/// Everything that decides which numbers come out; stored in the bank so scoring repeats fitting.
#[derive(Clone, Debug, PartialEq)]
pub struct Method {
    pub backbone: String,
    pub stages: Vec<String>,
    pub grid_stage: usize,
    pub crop: CropMode,
    /// Input normalisation (mean, std per RGB channel on 0..1 values).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub embed: EmbedParams,
    pub k: i64,
    pub reweight: bool,
    pub squared: bool,
    pub blur_sigma: f64,
}

impl Method {
    /// The paper's settings on the backbone's default stages.
    pub fn defaults_for(spec: &backbone::BackboneSpec) -> Method {
        let (mean, std) = spec.normalization.mean_std();
        Method {
            mean,
            std,
            backbone: spec.name.to_string(),
            stages: spec.default_stages.iter().map(|s| s.to_string()).collect(),
            // Patches live on the first (finest) default stage's grid, as in the paper.
            grid_stage: 0,
            crop: CropMode::Center {
                resize: 256,
                crop: 224,
            },
            embed: EmbedParams::default(),
            k: 1,
            reweight: false,
            squared: false,
            blur_sigma: 4.0,
        }
    }

    pub fn input_size(&self) -> u32 {
        self.crop.output_size()
    }

    /// The same value checks a bank's metadata gets on loading (see `ScoringSettings::check`).
    pub fn validate(&self) -> Result<(), FieldError> {
        ScoringSettings {
            stages: &self.stages,
            grid_stage: self.grid_stage,
            mean: self.mean,
            std: self.std,
            crop: self.crop,
            patch_size: self.embed.patch_size,
            pretrain_dim: self.embed.pretrain_dim,
            embed_dim: self.embed.embed_dim,
            k: self.k,
            blur_sigma: self.blur_sigma,
        }
        .check()
    }
}

/// Progress of long phases; the CLI draws bars, the GUI forwards messages, tests ignore it.
pub trait Progress: Sync {
    fn start(&self, _phase: &'static str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

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
    /// Training images scored leave-one-out for calibration (evenly spread); 0 = all.
    pub calibration_images: usize,
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

/// An image decoded and preprocessed, ready for the backbone.
pub struct Decoded {
    pub path: PathBuf,
    pub crop: RgbImage,
    pub geometry: Geometry,
}

/// Decodes and preprocesses images in parallel; each failure names its file.
pub fn decode_all(paths: &[PathBuf], crop: CropMode) -> Vec<Result<Decoded, DataError>> {
    paths
        .par_iter()
        .map(|p| {
            let img = data::load_rgb8(p)?;
            let (crop, geometry) = data::preprocess(&img, crop);
            Ok(Decoded {
                path: p.clone(),
                crop,
                geometry,
            })
        })
        .collect()
}

/// Decodes `paths` in chunks of `batch`, one chunk ahead of `consume` and on another thread, so
/// decoding overlaps the forward pass. `consume` gets each chunk's offset, its results and the
/// decode time per image, and returns false to stop.
pub fn for_each_decoded(
    paths: &[PathBuf],
    batch: usize,
    crop: CropMode,
    mut consume: impl FnMut(usize, Vec<Result<Decoded, DataError>>, f32) -> bool,
) {
    let chunks: Vec<&[PathBuf]> = paths.chunks(batch.max(1)).collect();
    let decode = move |chunk: &[PathBuf]| {
        let t = Instant::now();
        let decoded = decode_all(chunk, crop);
        (
            decoded,
            t.elapsed().as_secs_f32() * 1000.0 / chunk.len() as f32,
        )
    };
    std::thread::scope(|s| {
        let mut next = chunks.first().map(|&c| s.spawn(move || decode(c)));
        let mut offset = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let Some(handle) = next.take() else { break };
            let (decoded, ms) = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            next = chunks.get(i + 1).map(|&c| s.spawn(move || decode(c)));
            if !consume(offset, decoded, ms) {
                break;
            }
            offset += chunk.len();
        }
    });
}

/// Backbone plus patch embedding: images in, `(B, h*w, D)` f32 patch rows out.
pub struct Extractor {
    backbone: Backbone,
    method: Method,
    mean: Tensor,
    std: Tensor,
    kind: Kind,
}

impl Extractor {
    pub fn new(
        mut backbone: Backbone,
        method: Method,
        precision: Precision,
    ) -> Result<Self, EngineError> {
        let spec = backbone.spec();
        for s in &method.stages {
            if !spec.stages.iter().any(|st| st.name == s.as_str()) {
                return Err(EngineError::Config(format!(
                    "backbone {} has no stage `{s}` (it has {})",
                    spec.name,
                    spec.stages
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if method.grid_stage >= method.stages.len() {
            return Err(EngineError::Config("grid stage index out of range".into()));
        }
        let (mean, std) = (method.mean, method.std);
        let device = backbone.device();
        let kind = precision.kind();
        backbone.fold_batchnorm()?;
        if kind != Kind::Float {
            backbone.set_kind(kind);
        }
        let channels = |v: &[f32; 3]| {
            Tensor::f_from_slice(v)?
                .f_view([1, 3, 1, 1])?
                .f_to_device(device)
        };
        Ok(Self {
            mean: channels(&mean)?,
            std: channels(&std)?,
            backbone,
            method,
            kind,
        })
    }

    pub fn device(&self) -> Device {
        self.backbone.device()
    }

    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// ToTensor + Normalize exactly as torchvision orders the ops: `(u8 / 255 - mean) / std`.
    /// Crops of another size than the method's input are an error (a shape mismatch).
    pub fn to_input(&self, crops: &[&RgbImage]) -> Result<Tensor, TchError> {
        let s = self.method.input_size() as i64;
        let mut bytes = Vec::with_capacity(crops.len() * (s * s * 3) as usize);
        for c in crops {
            bytes.extend_from_slice(c.as_raw());
        }
        Tensor::f_from_slice(&bytes)?
            .f_view([crops.len() as i64, s, s, 3])?
            .f_to_device(self.device())?
            .f_permute([0, 3, 1, 2])?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(255.0)?
            .f_sub(&self.mean)?
            .f_div(&self.std)?
            .f_to_kind(self.kind)
    }

    /// Patch rows `(B, h*w, D)` and the grid `(h, w)`.
    pub fn embed(&self, crops: &[&RgbImage]) -> Result<(Tensor, (i64, i64)), EngineError> {
        let x = self.to_input(crops)?;
        let maps = tch::no_grad(|| self.backbone.forward(&x, &self.method.stages))?;
        let grid = maps
            .get(self.method.grid_stage)
            .ok_or_else(|| EngineError::Config("grid stage index out of range".into()))?;
        let (_, _, h, w) = grid.size4()?;
        let p = EmbedParams {
            grid_stage: self.method.grid_stage,
            ..self.method.embed
        };
        Ok((tch::no_grad(|| embed(&maps, p))?, (h, w)))
    }
}

/// A fitted model: extractor + searchable bank + metadata.
pub struct PatchCore {
    extractor: Extractor,
    searcher: Searcher,
    meta: BankMeta,
}

fn method_from_meta(meta: &BankMeta) -> Method {
    Method {
        backbone: meta.backbone.clone(),
        stages: meta.stages.clone(),
        grid_stage: meta.grid_stage as usize,
        crop: meta.crop,
        mean: meta.mean,
        std: meta.std,
        embed: EmbedParams {
            patch_size: meta.patch_size as i64,
            pretrain_dim: meta.pretrain_dim as i64,
            embed_dim: meta.embed_dim as i64,
            grid_stage: meta.grid_stage as usize,
        },
        k: meta.k as i64,
        reweight: meta.reweight,
        squared: meta.squared,
        blur_sigma: meta.blur_sigma as f64,
    }
}

/// The bank's searcher, shortlisting in bf16 when the backbone runs in bf16.
fn searcher_for(rows: &Tensor, precision: Precision) -> Result<Searcher, TchError> {
    let searcher = Searcher::new(rows, DEFAULT_CHUNK_BYTES)?;
    match precision {
        Precision::F32 => Ok(searcher),
        Precision::Bf16 => searcher.with_bf16_bounds(),
    }
}

/// Bank rows as the bank stores them (f16 banks stay half the size in memory too).
fn in_storage_precision(rows: Tensor, dtype: BankDtype) -> Result<Tensor, TchError> {
    match dtype {
        BankDtype::F32 => Ok(rows),
        BankDtype::F16 => rows.f_to_kind(Kind::Half),
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
        crate::bank::check_coreset_ratio(opts.coreset_ratio)?;
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
        let mut grid = (0, 0);
        let mut failure = None;
        for_each_decoded(train, opts.batch_size, opts.method.crop, |_, decoded, _| {
            let step = || -> Result<(), EngineError> {
                let decoded = decoded.into_iter().collect::<Result<Vec<_>, _>>()?;
                let crops: Vec<&RgbImage> = decoded.iter().map(|d| &d.crop).collect();
                let (emb, g) = extractor.embed(&crops)?;
                grid = g;
                let rows = emb.f_view([-1, dim])?;
                reduced.push(&rows.f_matmul(&projection)?)?;
                store.append(&rows).map_err(io)?;
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
        let picks = coreset::select_projected(reduced, &coreset_opts, &|n| {
            let before = done.swap(n, std::sync::atomic::Ordering::Relaxed);
            progress.advance(n.saturating_sub(before) as u64);
        })?;
        progress.finish();
        let bank_rows = store.gather(&picks, opts.device).map_err(io)?;
        let bank_rows = in_storage_precision(bank_rows, opts.bank_dtype)?;
        let bank_source = Tensor::f_from_slice(&picks)?
            .f_to_device(opts.device)?
            .f_divide_scalar_mode(per_image, "floor")?;
        times.coreset_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let searcher = searcher_for(&bank_rows, opts.precision)?;
        let calib = spread(train.len(), opts.calibration_images);
        progress.start("calibration", calib.len() as u64);
        let mut scores = Vec::with_capacity(calib.len());
        let method = &opts.method;
        for group in calib.chunks(opts.batch_size.max(1)) {
            let mut q = Vec::with_capacity(group.len());
            let mut src = Vec::with_capacity(group.len() * per_image as usize);
            for &i in group {
                let start = i * per_image as usize;
                q.push(
                    store
                        .read_range(start, per_image as usize, opts.device)
                        .map_err(io)?,
                );
                src.extend(std::iter::repeat_n(i as i64, per_image as usize));
            }
            let q = Tensor::f_cat(&q, 0)?;
            let qsrc = Tensor::f_from_slice(&src)?.f_to_device(opts.device)?;
            let nb = searcher.search(&q, method.k, Some((&qsrc, &bank_source)))?;
            let patch = patch_scores(&nb.sq_dist, method)?;
            let img = patch
                .f_view([group.len() as i64, per_image])?
                .f_amax(1, false)?;
            let v: Vec<f32> = img.f_to_device(Device::Cpu)?.try_into()?;
            scores.extend(v);
            progress.advance(group.len() as u64);
        }
        progress.finish();
        times.calibration_s = t.elapsed().as_secs_f64();
        let calibration = Calibration::from_scores(
            format!(
                "leave-one-image-out over {} of {} training images",
                calib.len(),
                train.len()
            ),
            scores,
        );

        let meta = BankMeta {
            format_version: FORMAT_VERSION,
            category: opts.category.clone(),
            backbone: method.backbone.clone(),
            weights_sha256: extractor.backbone().weights_sha256().to_string(),
            stages: method.stages.clone(),
            grid_stage: method.grid_stage as u32,
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
            coreset_ratio: opts.coreset_ratio as f32,
            coreset_size: target as u32,
            coreset_projection: opts.projection_dim as u32,
            seed: opts.seed,
            n_train_images: train.len() as u32,
            n_patches: n as u64,
            train_dir: opts.train_dir.clone(),
            test_dir: opts.test_dir.clone(),
            created: now_rfc3339(),
            bank_dtype: opts.bank_dtype,
            calibration,
            selection: Vec::new(),
        };
        let file = BankFile {
            meta: meta.clone(),
            rows: to_host_f32(&bank_rows)?,
            source_image: Vec::<i64>::try_from(bank_source.f_to_device(Device::Cpu)?)?
                .into_iter()
                .map(|v| v as i32)
                .collect(),
        };
        Ok((
            PatchCore {
                extractor,
                searcher,
                meta,
            },
            file,
            times,
        ))
    }

    /// Loads a bank with the weights file the registry names in `models_dir`, in the precision
    /// `auto` picks for `device` (what the GUI worker uses: bf16 only where it is faster).
    pub fn load(bank: &Path, models_dir: &Path, device: Device) -> Result<PatchCore, EngineError> {
        let meta = crate::bank::read_meta(bank)?;
        let spec = backbone::find(&meta.backbone)?;
        let (precision, _) = precision::resolve(PrecisionChoice::Auto, device);
        Self::load_with_weights(bank, &spec.weights_in(models_dir), device, precision)
    }

    /// Loads a bank and checks that `weights` are the ones it was fitted with.
    pub fn load_with_weights(
        bank: &Path,
        weights: &Path,
        device: Device,
        precision: Precision,
    ) -> Result<PatchCore, EngineError> {
        let file = BankFile::load(bank)?;
        let meta = file.meta;
        let backbone = Backbone::load(&meta.backbone, weights, device)?;
        if backbone.weights_sha256() != meta.weights_sha256 {
            return Err(EngineError::Bank(BankError::Invalid {
                path: bank.to_path_buf(),
                reason: format!(
                    "fitted with {} weights sha256 {}, but {} has sha256 {}",
                    meta.backbone,
                    meta.weights_sha256,
                    weights.display(),
                    backbone.weights_sha256()
                ),
            }));
        }
        let extractor = Extractor::new(backbone, method_from_meta(&meta), precision)?;
        let rows = Tensor::f_from_slice(&file.rows)?
            .f_view([-1, meta.embed_dim as i64])?
            .f_to_device(device)?;
        let rows = in_storage_precision(rows, meta.bank_dtype)?;
        drop(file.rows);
        let searcher = searcher_for(&rows, precision)?;
        Ok(PatchCore {
            extractor,
            searcher,
            meta,
        })
    }

    pub fn meta(&self) -> &BankMeta {
        &self.meta
    }

    pub fn device(&self) -> Device {
        self.extractor.device()
    }

    /// Scores decoded images as one batch on the device.
    pub fn inspect_decoded(&self, batch: &[Decoded]) -> Result<Vec<Inspection>, EngineError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let method = method_from_meta(&self.meta);
        let b = batch.len() as i64;
        let t0 = Instant::now();
        let crops: Vec<&RgbImage> = batch.iter().map(|d| &d.crop).collect();
        let (emb, (h, w)) = self.extractor.embed(&crops)?;
        let d = emb.size3()?.2;
        let flat = emb.f_view([-1, d])?;
        let t1 = Instant::now();
        let nb = self.searcher.search(&flat, method.k, None)?;
        let patch = patch_scores(&nb.sq_dist, &method)?.f_view([b, h * w])?;
        let (mut image, top) = patch.f_max_dim(1, false)?;
        if method.reweight {
            image = image.f_mul(&self.reweight(
                &flat.f_view([b, h * w, d])?,
                &top,
                &nb.index.f_view([b, h * w, -1])?,
            )?)?;
        }
        let t2 = Instant::now();
        let size = method.input_size() as i64;
        let maps = anomaly_maps(&patch.f_view([b, h, w])?, size, method.blur_sigma)?;
        let maps = to_host_f32(&maps)?;
        let image = to_host_f32(&image)?;
        let top_score = to_host_f32(&patch.f_gather(1, &top.f_unsqueeze(1)?, false)?)?;
        let top: Vec<i64> = top.f_to_device(Device::Cpu)?.try_into()?;
        let t3 = Instant::now();
        let per = |a: Instant, z: Instant| (z - a).as_secs_f32() * 1000.0 / batch.len() as f32;
        let times = PhaseTimes {
            decode_ms: 0.0,
            features_ms: per(t0, t1),
            search_ms: per(t1, t2),
            map_ms: per(t2, t3),
        };
        let px = (size * size) as usize;
        Ok(batch
            .iter()
            .enumerate()
            .map(|(i, dec)| {
                let (row, col) = (top[i] / w, top[i] % w);
                let cell_w = size as f64 / w as f64;
                let cell_h = size as f64 / h as f64;
                let box_original = dec.geometry.crop_rect_to_original(
                    col as f64 * cell_w,
                    row as f64 * cell_h,
                    (col + 1) as f64 * cell_w,
                    (row + 1) as f64 * cell_h,
                );
                Inspection {
                    path: dec.path.clone(),
                    score: image[i],
                    normalized: self.meta.normalize(image[i]),
                    map: AnomalyMap {
                        width: size as u32,
                        height: size as u32,
                        values: maps[i * px..(i + 1) * px].to_vec(),
                    },
                    geometry: dec.geometry,
                    top_patch: TopPatch {
                        row: row as u32,
                        col: col as u32,
                        score: top_score[i],
                        box_original,
                    },
                    times,
                }
            })
            .collect())
    }

    /// Eq. 7: down-weights the score when the nearest bank row `m*` sits in a dense region of the
    /// bank, i.e. when `m_test` is also close to `m*`'s own neighbours.
    fn reweight(&self, emb: &Tensor, top: &Tensor, nn: &Tensor) -> Result<Tensor, TchError> {
        let (b, _, d) = emb.size3()?;
        let bidx = Tensor::f_arange(b, (Kind::Int64, emb.device()))?;
        let m_test = emb.f_index(&[Some(&bidx), Some(top)])?; // (B, D)
        let star = nn.f_index(&[Some(&bidx), Some(top)])?.f_select(1, 0)?; // (B,)
        let star_rows = self.searcher.rows().f_index_select(0, &star)?;
        let support = self
            .searcher
            .search(&star_rows, REWEIGHT_NEIGHBOURS, None)?
            .index; // (B, b), includes m* itself
        let support_rows = self
            .searcher
            .rows()
            .f_index_select(0, &support.f_view([-1])?)?
            .f_to_kind(Kind::Float)?
            .f_view([b, -1, d])?;
        let dist = m_test
            .f_unsqueeze(1)?
            .f_sub(&support_rows)?
            .f_square()?
            .f_sum_dim_intlist(2, false, Kind::Float)?
            .f_sqrt()?;
        dist.f_softmax(1, Kind::Float)?
            .f_select(1, 0)?
            .f_neg()?
            .f_add_scalar(1.0)
    }

    /// Decodes and scores `paths` in batches, calling `on_each(index, result)` in order; stops
    /// early when it returns false. A bad image fails alone.
    pub fn inspect_paths(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
        mut on_each: impl FnMut(usize, Result<Inspection, EngineError>) -> bool,
    ) {
        for_each_decoded(
            paths,
            batch_size,
            self.meta.crop,
            |offset, decoded, decode_ms| {
                let mut results: Vec<Option<Result<Inspection, EngineError>>> = Vec::new();
                results.resize_with(decoded.len(), || None);
                let mut ok = Vec::new();
                for (i, r) in decoded.into_iter().enumerate() {
                    match r {
                        Ok(d) => ok.push((i, d)),
                        Err(e) => results[i] = Some(Err(e.into())),
                    }
                }
                let (idx, dec): (Vec<usize>, Vec<Decoded>) = ok.into_iter().unzip();
                match self.inspect_decoded(&dec) {
                    Ok(list) => {
                        for (i, mut ins) in idx.into_iter().zip(list) {
                            ins.times.decode_ms = decode_ms;
                            results[i] = Some(Ok(ins));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for i in idx {
                            results[i] = Some(Err(EngineError::Config(msg.clone())));
                        }
                    }
                }
                results.into_iter().enumerate().all(|(i, r)| {
                    let r = r
                        .unwrap_or_else(|| Err(EngineError::Config("image was not scored".into())));
                    on_each(offset + i, r)
                })
            },
        );
    }
}

/// Patch score from the `k` exact squared distances: mean over neighbours of the L2 distance
/// (or of the squared distance when the bank says `squared`).
fn patch_scores(sq_dist: &Tensor, method: &Method) -> Result<Tensor, TchError> {
    let d = if method.squared {
        sq_dist.shallow_clone()
    } else {
        sq_dist.f_sqrt()?
    };
    d.f_mean_dim(1, false, Kind::Float)
}

/// UTC timestamp without pulling in a date library.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
