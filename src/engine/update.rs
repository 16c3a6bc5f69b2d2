//! Growing a fitted bank with new good images, without a refit. The greedy selection left a
//! covering radius r in its projected space (every fitted patch lies within r of the bank there);
//! the new images' patches that lie farther than r are added farthest-first by the same rule
//! until none is, so the grown bank is the selection continued over the new patches and
//! near-duplicates add nothing. The leave-one-image-out calibration is then rerun over the fit's
//! calibration images (from their kept patches, without re-embedding them) plus the new images.
//!
//! Why the projected space: r is what the selection produced, known exactly and for free; an exact
//! full-width radius would need every training patch searched against the bank at fit time (about
//! a minute on bottle here). Scoring stays exact: the refusal test and the calibration use the
//! exact search.
use super::anomaly_map::image_scores;
use super::calibrate::score_images;
use super::coreset;
use super::host::to_host_f32;
use super::inspect::{
    check_inspected, extractor_for, in_precision, in_storage_precision, patch_scores,
};
use super::knn::{Searcher, DEFAULT_CHUNK_BYTES};
use super::pipeline::{decode_all, images_per_batch};
use super::{EngineError, Precision};
use crate::bank::{AddedImage, BankFile, BankMeta, Calibration, HistoryEntry, ImageScore};
use crate::decide::{content_cells, inspected, Rules};
use crate::report::Operator;
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, TchError, Tensor};

/// An image is "far" above the threshold when its score passes the threshold by more than
/// `FAR_SPANS` times the spread of the good calibration scores (max - min), i.e. a normalised
/// score above `1 + FAR_SPANS`. Drift moves a good part's score by a fraction of that spread and
/// a real defect by several (README, "Teaching the bank": measured on bottle).
pub const FAR_SPANS: f32 = 1.0;
/// Relative allowance on r: re-embedding and projecting in other batch shapes moves a distance
/// by about 1e-6 of itself, so a training image added again must not add rows for rounding alone.
const RADIUS_SLACK: f32 = 1e-3;
/// Query rows per block of the projected nearest-row GEMM (`block x bank` floats at a time).
const PROJECTED_BLOCK: i64 = 1024;

pub struct UpdateOptions {
    pub weights: PathBuf,
    pub device: Device,
    pub precision: Precision,
    pub batch_size: usize,
    /// Let in images far above the threshold.
    pub force: bool,
    /// The version number the grown bank gets (from `bank::Versions::next_number`).
    pub version: u32,
    /// When and by whom, recorded in the history: inputs, so identical inputs give identical banks.
    pub time: String,
    pub operator: Operator,
}

/// Seconds spent in each phase of an update.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct UpdateTimes {
    pub decode_s: f64,
    pub features_s: f64,
    pub search_s: f64,
    pub growth_s: f64,
    pub calibration_s: f64,
}

/// The grown bank and what changed.
#[derive(Debug)]
pub struct Updated {
    pub file: BankFile,
    pub entry: HistoryEntry,
    /// Calibration images whose rescore was bounded rather than exact (see `CalibrationPatches`).
    pub bounded_calibration: usize,
    pub times: UpdateTimes,
}

/// The score above which an image is refused without `--force`.
pub fn far_score(meta: &BankMeta) -> f32 {
    let c = &meta.calibration;
    c.threshold + FAR_SPANS * (c.max - c.min)
}

/// Grows `file` (loaded from `bank`) with the good images `add`. Nothing is written: the caller
/// keeps versions and saves. Refuses, naming the files, images that fail to read or decode and
/// (without `force`) images scored far above the threshold.
pub fn update(
    bank: &Path,
    mut file: BankFile,
    add: &[PathBuf],
    opts: &UpdateOptions,
) -> Result<Updated, EngineError> {
    let refit = || {
        EngineError::Config(format!(
            "{}: this bank was fitted before `update` existed (it stores no covering radius): \
             refit it with `patchcore fit` to update it",
            bank.display()
        ))
    };
    let growth = file.meta.growth.clone().ok_or_else(refit)?;
    if file.roi.is_some() {
        // The kept calibration patches were scored over the whole image; rescoring them would
        // calibrate an ROI bank as if nothing were ignored.
        return Err(EngineError::Config(format!(
            "{}: this bank has a region of interest, which `update` does not calibrate under yet: \
             clear it (`patchcore roi --clear`) to update (an updated bank takes an ROI again \
             after a refit), or refit with more good images",
            bank.display()
        )));
    }
    if !growth.padding_left_out
        && file
            .meta
            .calibration_geometry
            .iter()
            .any(|g| !g.is_filled())
    {
        // Padded calibration images of an older fit: its kept patches may show padding.
        return Err(EngineError::Config(format!(
            "{}: this bank's training images have several sizes, padded to one input, and it \
             was fitted before `update` left padding out (its kept calibration patches may \
             show padding): refit it to update it",
            bank.display()
        )));
    }
    let mut kept = file.calibration_patches.take().ok_or_else(refit)?;
    if add.is_empty() {
        return Err(EngineError::Config("no images to add".into()));
    }
    let mut times = UpdateTimes::default();
    let t = Instant::now();
    let mut problems = Vec::new();
    let mut hashes = Vec::with_capacity(add.len());
    let mut crops: Vec<RgbImage> = Vec::with_capacity(add.len());
    let mut geometry = Vec::with_capacity(add.len());
    for (path, decoded) in add.iter().zip(decode_all(add, file.meta.crop)) {
        // As inspection: an image too small to fill a cell would score 0 and teach nothing.
        let decoded = decoded.and_then(|d| check_inspected(d, None, &file.meta));
        match (crate::report::sha256_file(path), decoded) {
            (Ok(h), Ok(d)) => {
                hashes.push(h);
                crops.push(d.crop);
                geometry.push(d.geometry);
            }
            (Err(e), _) => problems.push(format!("{}: cannot read: {e}", path.display())),
            (_, Err(e)) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(EngineError::Config(format!(
            "nothing added, {} of {} images cannot be used:\n  {}",
            problems.len(),
            add.len(),
            problems.join("\n  ")
        )));
    }
    times.decode_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let meta = &file.meta;
    let extractor = extractor_for(bank, meta, &opts.weights, opts.device, opts.precision)?;
    let method = extractor.method().clone();
    let dim = meta.embed_dim as i64;
    let mut blocks = Vec::new();
    let mut per_image = 0;
    for chunk in crops.chunks(images_per_batch(opts.batch_size, meta.crop, opts.device)) {
        let refs: Vec<&RgbImage> = chunk.iter().collect();
        let (emb, (h, w)) = extractor.embed(&refs)?;
        per_image = h * w;
        blocks.push(emb.f_view([-1, dim])?.f_to_kind(Kind::Float)?);
    }
    if per_image != i64::from(meta.grid[0] * meta.grid[1]) {
        return Err(EngineError::Config(format!(
            "{}: the backbone gives a {per_image}-patch grid, the bank {:?}",
            bank.display(),
            meta.grid
        )));
    }
    let feats = Tensor::f_cat(&blocks, 0)?;
    drop(blocks);
    let [gh, gw] = meta.grid.map(i64::from);
    // The new images' own cells: padding is neither searched, scored nor added to the bank.
    let cells: Vec<Vec<bool>> = geometry
        .iter()
        .map(|g| content_cells(g, gh as u32, gw as u32))
        .collect();
    let masks: Vec<Option<Vec<bool>>> = geometry.iter().map(|g| inspected(None, g)).collect();
    let shown: Vec<bool> = cells.iter().flatten().copied().collect();
    let content: Vec<i64> = (0..shown.len() as i64)
        .filter(|&i| shown[i as usize])
        .collect();
    let content = Tensor::f_from_slice(&content)?.f_to_device(opts.device)?;
    times.features_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let rows = Tensor::f_from_slice(&file.rows)?
        .f_view([-1, dim])?
        .f_to_device(opts.device)?;
    let stored = in_storage_precision(rows.shallow_clone(), meta.bank_dtype)?;
    let old =
        dense_searcher(&stored, opts.precision)?.search_cells(&feats, method.k, None, &shown)?;
    let score_all = |patch: &Tensor| -> Result<Vec<f32>, EngineError> {
        image_scores(
            &patch.f_view([-1, gh, gw])?,
            method.image_score,
            method.input_dims(),
            method.blur_sigma,
            &cells,
            &masks,
        )
    };
    let before = score_all(&patch_scores(&old.sq_dist, &method)?)?;
    let far = far_score(meta);
    let too_far: Vec<String> = add
        .iter()
        .zip(&before)
        .filter(|(_, &s)| s > far)
        .map(|(p, &s)| {
            format!(
                "{}: score {s:.4} (normalised {:.2})",
                p.display(),
                meta.normalize(s)
            )
        })
        .collect();
    if !too_far.is_empty() && !opts.force {
        return Err(EngineError::Config(format!(
            "nothing added: {} image(s) score far above the threshold {:.4} (far: above {far:.4}, \
             the threshold plus {FAR_SPANS} x the spread of the good calibration scores), which \
             looks like a defect, not drift; check them, or pass --force if they are good:\n  {}",
            too_far.len(),
            meta.calibration.threshold,
            too_far.join("\n  ")
        )));
    }
    times.search_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let radius = growth.covering_radius * (1.0 + RADIUS_SLACK);
    let projection = Tensor::f_from_slice(&coreset::random_projection(
        dim as usize,
        meta.coreset_projection as usize,
        meta.seed,
    ))?
    .f_view([dim, i64::from(meta.coreset_projection)])?
    .f_to_device(opts.device)?;
    // The rows as stored (f16 banks: rounded), projected as the selection projected them.
    let bank_proj = stored.f_to_kind(Kind::Float)?.f_matmul(&projection)?;
    let new_proj = feats.f_index_select(0, &content)?.f_matmul(&projection)?;
    let picks = grow(&bank_proj, &new_proj, radius)?;
    let n_added = picks.len() as i64;
    let base = meta.n_train_images as i64;
    let pick_index =
        content.f_index_select(0, &Tensor::f_from_slice(&picks)?.f_to_device(opts.device)?)?;
    let added = feats.f_index_select(0, &pick_index)?;
    let added_src = pick_index.f_divide_scalar_mode(per_image, "floor")?;
    times.growth_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let k = method.k;
    let keep = i64::from(growth.calibration_keep);
    let old_images = meta.calibration.scores.len();
    let mut scores = meta.calibration.scores.clone();
    let mut bounded = 0;
    let new_sq = if n_added == 0 {
        old.sq_dist.shallow_clone()
    } else {
        let searcher = dense_searcher(
            &in_storage_precision(added.shallow_clone(), meta.bank_dtype)?,
            opts.precision,
        )?;
        // The fit's calibration images: their kept patches against the new rows (none of which
        // come from them), merged with the distances they had.
        let kept_feats = Tensor::f_from_slice(&kept.features)?
            .f_view([-1, dim])?
            .f_to_device(opts.device)?;
        let kept_sq = Tensor::f_from_slice(&kept.sq_dist)?
            .f_view([kept_feats.size()[0], -1])?
            .f_to_device(opts.device)?;
        let merged = nearest_of(&kept_sq, &searcher.search(&kept_feats, k, None)?.sq_dist, k)?;
        match method.image_score {
            // A map's peak rests on every patch around it, and only the top patches are kept:
            // each stored score stays, a bound (added rows only lower patch scores).
            ImageScore::MapPeak => bounded = old_images,
            ImageScore::TopPatch => {
                let best = to_host_f32(
                    &patch_scores(&merged, &method)?
                        .f_view([old_images as i64, keep])?
                        .f_amax(1, false)?,
                )?;
                for ((s, b), next) in scores.iter_mut().zip(best).zip(&kept.next) {
                    // Unkept patches score at most `next`: below it the exact score is unknown,
                    // so the bound is used (the threshold can only come out high, never reject a
                    // good part).
                    if b < *next {
                        bounded += 1;
                    }
                    *s = b.max(*next);
                }
            }
        }
        kept.sq_dist = to_host_f32(&merged)?;
        // The new images, each without the rows it added itself.
        let qsrc = Tensor::f_arange(add.len() as i64, (Kind::Int64, opts.device))?
            .f_repeat_interleave_self_int(per_image, 0, None)?;
        let own = searcher.search_cells(&feats, k, Some((&qsrc, &added_src)), &shown)?;
        nearest_of(&old.sq_dist, &own.sq_dist, k)?
    };
    let patch = patch_scores(&new_sq, &method)?;
    let top = score_images(&feats, &new_sq, &patch, per_image, keep, &mut kept)?;
    let new_scores = match method.image_score {
        ImageScore::TopPatch => top,
        ImageScore::MapPeak => score_all(&patch)?,
    };
    times.calibration_s = t.elapsed().as_secs_f64();

    let threshold_before = meta.calibration.threshold;
    let fit_images =
        old_images.saturating_sub(file.meta.history.iter().map(|h| h.images.len()).sum());
    scores.extend(new_scores);
    let calibration = Calibration::from_scores(
        format!(
            "leave-one-image-out over {} images: {fit_images} of the fit's training images, {} added by updates",
            scores.len(),
            scores.len() - fit_images
        ),
        scores,
    );
    let per_source: Vec<i64> = to_host_f32(&added_src.f_to_kind(Kind::Float)?)?
        .iter()
        .map(|&s| s as i64)
        .collect();
    let entry = HistoryEntry {
        version: opts.version,
        parent: file.meta.version,
        time: opts.time.clone(),
        operator: opts.operator.clone(),
        images: add
            .iter()
            .zip(hashes)
            .zip(&before)
            .enumerate()
            .map(|(i, ((path, sha256), &score))| AddedImage {
                path: path.clone(),
                sha256,
                score,
                rows_added: per_source.iter().filter(|&&s| s == i as i64).count() as u32,
            })
            .collect(),
        rows_added: n_added as u32,
        threshold_before,
        threshold_after: calibration.threshold,
        forced: !too_far.is_empty(),
        action: "update".into(),
    };
    file.rows.extend(to_host_f32(&added)?);
    file.source_image
        .extend(per_source.iter().map(|&s| (base + s) as i32));
    file.calibration_patches = Some(kept);
    let m = &mut file.meta;
    m.coreset_size += n_added as u32;
    m.n_train_images += add.len() as u32;
    m.n_patches += content.size()[0] as u64;
    m.calibration = calibration;
    // The bands follow the new calibration as fit derives them; the pixel threshold comes from
    // the fit's calibration maps (the added rows can only lower them: kept as a bound).
    m.rules = m.rules.map(|old| {
        Rules::defaults(
            &m.calibration.scores,
            m.calibration.threshold,
            old.pixel_threshold,
        )
        .keeping_settings_of(Some(old))
    });
    m.version = opts.version;
    m.history.push(entry.clone());
    Ok(Updated {
        file,
        entry,
        bounded_calibration: bounded,
        times,
    })
}

/// A searcher for the update's queries: new images of drifted parts lie far from the bank, and
/// the fit's calibration patches far from the rows the drift added (README, "Teaching the bank").
fn dense_searcher(rows: &Tensor, precision: Precision) -> Result<Searcher, TchError> {
    in_precision(Searcher::dense(rows, DEFAULT_CHUNK_BYTES)?, precision)
}

/// Grows the bank file at `bank` (loaded as `file`) with `add` and stores the result as its next
/// version, the replaced one kept in `<bank>.versions/` (at most `limit_bytes` in all): what
/// `patchcore update` and the app's "Mark as good" both run. `opts.version` is set here to the
/// next free number. Returns the update and the seconds the save took.
pub fn update_and_commit(
    bank: &Path,
    file: BankFile,
    add: &[PathBuf],
    mut opts: UpdateOptions,
    limit_bytes: u64,
) -> Result<(Updated, f64), EngineError> {
    crate::report::check_writable(bank).map_err(|e| {
        EngineError::Config(format!("{}: cannot write the bank: {e}", bank.display()))
    })?;
    let current = file.meta.version;
    let versions = crate::bank::Versions::of(bank);
    opts.version = versions.next_number(current)?;
    let up = update(bank, file, add, &opts)?;
    let t = Instant::now();
    versions.commit(&up.file, current, limit_bytes)?;
    Ok((up, t.elapsed().as_secs_f64()))
}

/// The `k` smallest of two sets of squared distances per query, nearest first.
fn nearest_of(a: &Tensor, b: &Tensor, k: i64) -> Result<Tensor, TchError> {
    let both = Tensor::f_cat(&[a, b], 1)?;
    let (sorted, _) = both.f_sort(1, false)?;
    sorted.f_narrow(1, 0, k.min(both.size()[1]))
}

/// The greedy rule continued: among the new projected rows, repeatedly takes the one farthest
/// from the bank and the rows taken so far, while it lies beyond `radius` (the selection's own
/// ball-tree greedy, started from each row's distance to the bank). Returns indices into
/// `new_proj` in the order taken (ties: the lowest index, as the selection's argmax).
pub fn grow(bank_proj: &Tensor, new_proj: &Tensor, radius: f32) -> Result<Vec<i64>, TchError> {
    let m = new_proj.size()[0];
    let mut mins = Vec::new();
    let bank_sq = bank_proj
        .f_square()?
        .f_sum_dim_intlist(1, false, Kind::Float)?;
    for start in (0..m).step_by(PROJECTED_BLOCK as usize) {
        let q = new_proj.f_narrow(0, start, PROJECTED_BLOCK.min(m - start))?;
        // The GEMM form finds the nearest row; its distance is then recomputed directly, so
        // every distance compared with r is an exact one (an upper bound of the nearest's).
        let near = bank_sq
            .f_unsqueeze(0)?
            .f_addmm(&q.f_mul_scalar(-2.0)?, &bank_proj.f_tr()?)?
            .f_argmin(1, false)?;
        mins.push(
            q.f_sub(&bank_proj.f_index_select(0, &near)?)?
                .f_square()?
                .f_sum_dim_intlist(1, false, Kind::Float)?
                .f_sqrt()?,
        );
    }
    if mins.is_empty() {
        return Ok(Vec::new());
    }
    let mins = Tensor::f_cat(&mins, 0)?;
    // Only rows beyond r can ever be taken (distances only shrink).
    let cand = mins.f_gt(f64::from(radius))?.f_nonzero()?.f_view([-1])?;
    let ids: Vec<i64> = cand.f_to_device(Device::Cpu)?.try_into()?;
    let rows = to_host_f32(&new_proj.f_index_select(0, &cand)?)?;
    let cand_mins = to_host_f32(&mins.f_index_select(0, &cand)?)?;
    let dim = new_proj.size2()?.1 as usize;
    let picks = coreset::grow_cpu(rows, dim, cand_mins, radius)
        .into_iter()
        .map(|i| ids[i as usize])
        .collect();
    Ok(picks)
}
