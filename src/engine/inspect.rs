//! Scoring: a fitted `PatchCore` loaded from its bank, and new images inspected against it
//! (patch scores, the paper's Eq. 7 reweighting, anomaly maps, the top patch's box).
use super::anomaly_map::{anomaly_maps, peak, scored_cells};
use super::extractor::Extractor;
use super::host::to_host_f32;
use super::inspection::{AnomalyMap, Inspection, PhaseTimes, TopPatch};
use super::knn::{Searcher, DEFAULT_CHUNK_BYTES};
use super::pipeline::{for_each_decoded, images_per_batch, Decoded};
use super::precision::{self, Precision, PrecisionChoice};
use super::{EngineError, Method};
use crate::backbone::{self, Backbone};
use crate::bank::{BankDtype, BankError, BankMeta, ImageScore};
use crate::data::DataError;
use crate::decide::{content_cells, find_regions, grid_mask, inspected, Roi};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, TchError, Tensor};

/// Neighbourhood size `b` of the paper's Eq. 7 reweighting (as in common reimplementations).
const REWEIGHT_NEIGHBOURS: i64 = 9;

/// A fitted model: extractor + searchable bank + metadata.
pub struct PatchCore {
    pub(super) extractor: Extractor,
    pub(super) searcher: Searcher,
    pub(super) meta: BankMeta,
    /// Pixels outside it take no part in the score, the map or the regions.
    pub(super) roi: Option<Roi>,
}

/// The bank's searcher, shortlisting in bf16 when the backbone runs in bf16.
pub(super) fn searcher_for(rows: &Tensor, precision: Precision) -> Result<Searcher, TchError> {
    in_precision(Searcher::new(rows, DEFAULT_CHUNK_BYTES)?, precision)
}

/// `searcher` with its bound GEMM in `precision`.
pub(super) fn in_precision(searcher: Searcher, precision: Precision) -> Result<Searcher, TchError> {
    match precision {
        Precision::F32 => Ok(searcher),
        Precision::Bf16 => searcher.with_bf16_bounds(),
    }
}

/// Bank rows as the bank stores them (f16 banks stay half the size in memory too).
pub(super) fn in_storage_precision(rows: Tensor, dtype: BankDtype) -> Result<Tensor, TchError> {
    match dtype {
        BankDtype::F32 => Ok(rows),
        BankDtype::F16 => rows.f_to_kind(Kind::Half),
    }
}

/// The bank's feature extractor, after checking that `weights` are the ones it was fitted with.
pub(super) fn extractor_for(
    bank: &Path,
    meta: &BankMeta,
    weights: &Path,
    device: Device,
    precision: Precision,
) -> Result<Extractor, EngineError> {
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
    Extractor::new(backbone, Method::from_meta(meta), precision)
}

impl PatchCore {
    /// Loads a bank with the weights file the registry names in `models_dir`, in the precision
    /// `auto` picks for `device` (what the GUI worker uses: bf16 only where it is faster).
    pub fn load(bank: &Path, models_dir: &Path, device: Device) -> Result<PatchCore, EngineError> {
        let meta = crate::bank::read_meta(bank)?;
        let spec = backbone::find(&meta.backbone)?;
        let (precision, _) = precision::resolve(PrecisionChoice::Auto, device, spec);
        Self::load_with_weights(bank, &spec.weights_in(models_dir), device, precision)
    }

    /// Loads a bank and checks that `weights` are the ones it was fitted with.
    pub fn load_with_weights(
        bank: &Path,
        weights: &Path,
        device: Device,
        precision: Precision,
    ) -> Result<PatchCore, EngineError> {
        let file = super::calibrate::load_current(bank)?;
        let (meta, roi) = (file.meta, file.roi);
        let extractor = extractor_for(bank, &meta, weights, device, precision)?;
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
            roi,
        })
    }

    /// The region of interest the bank holds, if any (eval leaves the rest out of its metrics).
    pub fn roi(&self) -> Option<&Roi> {
        self.roi.as_ref()
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
        let method = self.extractor.method();
        let b = batch.len() as i64;
        let t0 = Instant::now();
        let crops: Vec<&RgbImage> = batch.iter().map(|d| &d.crop).collect();
        let (emb, (h, w)) = self.extractor.embed(&crops)?;
        let d = emb.size3()?.2;
        let flat = emb.f_view([-1, d])?;
        let t1 = Instant::now();
        let dims = method.input_dims();
        // Each image's own cells (not padding): searched, and the only ones its map is made of.
        let cells: Vec<Vec<bool>> = batch
            .iter()
            .map(|d| content_cells(&d.geometry, h as u32, w as u32))
            .collect();
        let nb = self.searcher.search_cells(
            &flat,
            method.k,
            None,
            &cells.iter().flatten().copied().collect::<Vec<_>>(),
        )?;
        let patch = patch_scores(&nb.sq_dist, method)?.f_view([b, h * w])?;
        // Map pixels and patch cells inspected (the ROI's, not padding), per image: each has
        // its own geometry.
        let crop_masks: Vec<Option<Vec<bool>>> = batch
            .iter()
            .map(|d| inspected(self.roi.as_ref(), &d.geometry))
            .collect();
        let t2 = Instant::now();
        let scored = scored_cells(&cells, (h, w), patch.device())?;
        let maps = anomaly_maps(
            &patch.f_view([b, h, w])?,
            dims,
            method.blur_sigma,
            scored.as_ref(),
        )?;
        let mut maps = to_host_f32(&maps)?;
        let px = (dims.0 * dims.1) as usize;
        for (map, mask) in maps.chunks_exact_mut(px).zip(&crop_masks) {
            if let Some(mask) = mask {
                // Ignored pixels show (and count in pixel metrics) as a perfect match.
                map.iter_mut()
                    .zip(mask)
                    .filter(|(_, &keep)| !keep)
                    .for_each(|(v, _)| *v = 0.0);
            }
        }
        let (mut image, top): (Vec<f32>, Vec<i64>) = match method.image_score {
            ImageScore::TopPatch => {
                // Patch scores are distances (>= 0): zeroing an ignored cell keeps it from the top.
                let scored = match crop_masks.iter().all(Option::is_none) {
                    true => patch.shallow_clone(),
                    false => {
                        let cells: Vec<f32> = crop_masks
                            .iter()
                            .flat_map(|m| match m {
                                Some(m) => grid_mask(m, dims, h as u32, w as u32),
                                None => vec![true; (h * w) as usize],
                            })
                            .map(f32::from)
                            .collect();
                        let keep = Tensor::f_from_slice(&cells)?
                            .f_view([b, h * w])?
                            .f_to_device(patch.device())?;
                        patch.f_mul(&keep)?
                    }
                };
                let (image, top) = scored.f_max_dim(1, false)?;
                (
                    to_host_f32(&image)?,
                    top.f_to_device(Device::Cpu)?.try_into()?,
                )
            }
            // The top patch is the cell under the peak's pixel.
            ImageScore::MapPeak => maps
                .chunks_exact(px)
                .map(|map| {
                    let (at, value) = peak(map, None);
                    let (y, x) = ((at / dims.0 as usize) as i64, (at % dims.0 as usize) as i64);
                    let cell = (y * h / dims.1 as i64) * w + x * w / dims.0 as i64;
                    (value, cell)
                })
                .unzip(),
        };
        let top_t = Tensor::f_from_slice(&top)?.f_to_device(patch.device())?;
        if method.reweight {
            let weight = to_host_f32(&self.reweight(
                &flat.f_view([b, h * w, d])?,
                &top_t,
                &nb.index.f_view([b, h * w, -1])?,
            )?)?;
            image.iter_mut().zip(weight).for_each(|(s, w)| *s *= w);
        }
        let top_score = to_host_f32(&patch.f_gather(1, &top_t.f_unsqueeze(1)?, false)?)?;
        let t3 = Instant::now();
        let per = |a: Instant, z: Instant| (z - a).as_secs_f32() * 1000.0 / batch.len() as f32;
        let times = PhaseTimes {
            decode_ms: 0.0,
            features_ms: per(t0, t1),
            search_ms: per(t1, t2),
            map_ms: per(t2, t3),
        };
        let rules = self.meta.rules();
        Ok(batch
            .iter()
            .zip(maps.chunks_exact(px))
            .zip(&crop_masks)
            .enumerate()
            .map(|(i, ((dec, map), mask))| {
                let (row, col) = ((top[i] / w) as u32, (top[i] % w) as u32);
                let box_original = dec.geometry.cell_to_original(row, col, h as u32, w as u32);
                let regions = find_regions(
                    map,
                    dims,
                    rules.pixel_threshold,
                    mask.as_deref(),
                    &dec.geometry,
                    0,
                    rules.mm_per_pixel,
                );
                Inspection {
                    path: dec.path.clone(),
                    score: image[i],
                    normalized: self.meta.normalize(image[i]),
                    map: AnomalyMap {
                        width: dims.0,
                        height: dims.1,
                        values: map.to_vec(),
                    },
                    regions,
                    geometry: dec.geometry,
                    top_patch: TopPatch {
                        row,
                        col,
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
        super::memory::keep_freed_memory();
        for_each_decoded(
            paths,
            images_per_batch(batch_size, self.meta.crop, self.device()),
            self.meta.crop,
            |offset, decoded, decode_ms| {
                let mut results: Vec<Option<Result<Inspection, EngineError>>> = Vec::new();
                results.resize_with(decoded.len(), || None);
                let mut ok = Vec::new();
                for (i, r) in decoded.into_iter().enumerate() {
                    match r
                        .and_then(|d| check_inspected(d, self.roi.as_ref(), &self.meta))
                        .map_err(EngineError::from)
                    {
                        Ok(d) => ok.push((i, d)),
                        Err(e) => results[i] = Some(Err(e)),
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
pub(super) fn patch_scores(sq_dist: &Tensor, method: &Method) -> Result<Tensor, TchError> {
    let d = if method.squared {
        sq_dist.shallow_clone()
    } else {
        sq_dist.f_sqrt()?
    };
    d.f_mean_dim(1, false, Kind::Float)
}

/// `d` back when at least one patch cell of it is inspected. An image that covers no cell
/// (tiny at the bank's scale, or wholly outside its ROI) would score 0 and pass unseen, so it
/// is an error naming why.
pub(super) fn check_inspected(
    d: Decoded,
    roi: Option<&Roi>,
    meta: &BankMeta,
) -> Result<Decoded, DataError> {
    let Some(mask) = inspected(roi, &d.geometry) else {
        return Ok(d);
    };
    let [rows, cols] = meta.grid;
    let dims = meta.crop.input_dims();
    if grid_mask(&mask, dims, rows, cols).contains(&true) {
        return Ok(d);
    }
    let g = &d.geometry;
    let reason = match roi {
        Some(_) if mask.contains(&true) => format!(
            "the bank's region of interest covers too little of it to fill half of any {} x {} px patch cell: nothing would be inspected",
            dims.0 / cols.max(1),
            dims.1 / rows.max(1)
        ),
        Some(_) => "none of it lies in the bank's region of interest: nothing would be inspected".into(),
        None => format!(
            "{} x {} px becomes {:.0} x {:.0} px at the bank's working resolution, too little to fill half of any {} x {} px patch cell: nothing would be inspected",
            g.orig_width,
            g.orig_height,
            g.orig_width as f64 * g.scale_x,
            g.orig_height as f64 * g.scale_y,
            dims.0 / cols.max(1),
            dims.1 / rows.max(1)
        ),
    };
    Err(DataError::Image {
        path: d.path.clone(),
        reason,
    })
}
