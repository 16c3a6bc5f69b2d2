//! Calibration from good images: their leave-one-image-out patch-score grids and highest patches
//! (one place that fit and a bank update both score them), and the thresholds derived from those
//! grids under the region of interest, so an ROI or a rule change recalibrates without the
//! training images, and an update rescores the kept patches without re-embedding the images.
use super::anomaly_map::{map_peaks, peak};
use super::inspect::patch_scores;
use super::knn::Searcher;
use super::pipeline::Progress;
use super::{EngineError, Method};
use crate::bank::{BankMeta, Calibration, CalibrationPatches, ImageScore};
use crate::decide::{content_cells, grid_mask, inspected, Roi, Rules};
use tch::{Device, Kind, TchError, Tensor};

/// Patches kept per calibration image: 32 x 1,024 floats, 128 KB per image. A rescore is exact
/// while the best rescored kept patch still beats the next, unkept one (`CalibrationPatches::next`).
pub const CALIBRATION_KEEP: i64 = 32;

/// Scores the images of `features` `(b * per_image, D)` from their patches' leave-one-out
/// neighbour distances `sq_dist` `(b * per_image, k)` and the patch scores `patch` made from
/// them, and appends each image's `keep` highest patches to `kept`. Ties keep patch order, so
/// the same input keeps the same patches.
pub(super) fn score_images(
    features: &Tensor,
    sq_dist: &Tensor,
    patch: &Tensor,
    per_image: i64,
    keep: i64,
    kept: &mut CalibrationPatches,
) -> Result<Vec<f32>, TchError> {
    let b = sq_dist.size()[0] / per_image.max(1);
    let patch = patch.f_view([b, per_image])?;
    let (sorted, order) = patch.f_sort_stable(true, 1, true)?;
    let offsets = Tensor::f_arange(b, (Kind::Int64, order.device()))?
        .f_mul_scalar(per_image)?
        .f_unsqueeze(1)?;
    let rows = order
        .f_narrow(1, 0, keep)?
        .f_add(&offsets)?
        .f_reshape([-1])?;
    let host = |t: Tensor| -> Result<Vec<f32>, TchError> {
        t.f_to_kind(Kind::Float)?
            .f_to_device(Device::Cpu)?
            .f_contiguous()?
            .f_view([-1])?
            .try_into()
    };
    kept.features
        .extend(host(features.f_index_select(0, &rows)?)?);
    kept.sq_dist
        .extend(host(sq_dist.f_index_select(0, &rows)?)?);
    if per_image > keep {
        kept.next.extend(host(sorted.f_select(1, keep)?)?);
    } else {
        kept.next.extend(std::iter::repeat_n(0.0, b as usize));
    }
    host(sorted.f_select(1, 0)?)
}

/// Leave-one-image-out results for the calibration images, in the order asked.
pub struct LeaveOneOut {
    /// Image score of each calibration image (max patch score).
    pub scores: Vec<f32>,
    /// Patch-score grid of each, `(n, grid rows, grid cols)` row-major.
    pub maps: Vec<f32>,
    /// Each image's `keep` highest patches, for `update`.
    pub kept: CalibrationPatches,
}

/// Scores `images` (indices into the training set) against the bank with each image's own bank
/// rows excluded: `read(i)` gives image `i`'s `(per_image, D)` patch rows, `bank_source` each
/// bank row's training image; each image's `keep` highest patches are kept. `cells[j]` says
/// which of `images[j]`'s patches show it: padding is not searched (it scores 0, takes no part
/// in the maps, and is never kept).
#[allow(clippy::too_many_arguments)]
pub fn leave_one_out(
    searcher: &Searcher,
    bank_source: &Tensor,
    method: &Method,
    per_image: i64,
    keep: i64,
    images: &[usize],
    cells: &[Vec<bool>],
    batch_size: usize,
    read: &mut dyn FnMut(usize) -> Result<Tensor, EngineError>,
    progress: &dyn Progress,
) -> Result<LeaveOneOut, EngineError> {
    let device = bank_source.device();
    progress.start("calibration", images.len() as u64);
    let mut out = LeaveOneOut {
        scores: Vec::with_capacity(images.len()),
        maps: Vec::with_capacity(images.len() * per_image as usize),
        kept: CalibrationPatches::default(),
    };
    let batch = batch_size.max(1);
    for (group, group_cells) in images.chunks(batch).zip(cells.chunks(batch)) {
        let mut q = Vec::with_capacity(group.len());
        let mut src = Vec::with_capacity(group.len() * per_image as usize);
        for &i in group {
            q.push(read(i)?);
            src.extend(std::iter::repeat_n(i as i64, per_image as usize));
        }
        let q = Tensor::f_cat(&q, 0)?;
        let qsrc = Tensor::f_from_slice(&src)?.f_to_device(device)?;
        let shown: Vec<bool> = group_cells.iter().flatten().copied().collect();
        let nb = searcher.search_cells(&q, method.k, Some((&qsrc, bank_source)), &shown)?;
        let patch = patch_scores(&nb.sq_dist, method)?;
        out.maps.extend(super::host::to_host_f32(&patch)?);
        out.scores.extend(score_images(
            &q,
            &nb.sq_dist,
            &patch,
            per_image,
            keep,
            &mut out.kept,
        )?);
        progress.advance(group.len() as u64);
    }
    progress.finish();
    Ok(out)
}

/// The calibration and default rules under `roi`, from the stored leave-one-out grids `maps`
/// (`meta.calibration.scores.len()` grids on `meta.grid`): each image's score is its top
/// inspected patch or its map's inspected peak (`meta.image_score`); the pixel threshold is the
/// highest value any good image's anomaly map (same upsampling and blur as inference) reaches at
/// an inspected pixel. The bank's `min_area` and pixel size are kept.
pub fn recalibrate(
    meta: &BankMeta,
    maps: &[f32],
    roi: Option<&Roi>,
) -> Result<(Calibration, Rules), EngineError> {
    if meta.history.iter().any(|h| !h.images.is_empty()) {
        // The calibration maps cover the fit's images only; recalibrating from them would drop
        // the images `update` added from the threshold.
        return Err(EngineError::Config(
            "this bank was taught new images by `update`, and its calibration maps cover the \
             fit's images only: recalibrate the fitted version (`patchcore revert`) or refit"
                .into(),
        ));
    }
    let [gh, gw] = meta.grid;
    let cells = (gh * gw) as usize;
    let n = meta.calibration_geometry.len();
    if n == 0 || maps.len() != n * cells {
        return Err(EngineError::Config(
            "this bank holds no calibration maps (fitted before version 2): refit it to use an ROI or recalibrate".into(),
        ));
    }
    let dims = meta.crop.input_dims();
    let crop_masks: Vec<Option<Vec<bool>>> = meta
        .calibration_geometry
        .iter()
        .map(|g| inspected(roi, g))
        .collect();
    // Made as inspection makes them: padding cells take no part.
    let content: Vec<Vec<bool>> = meta
        .calibration_geometry
        .iter()
        .map(|g| content_cells(g, gh, gw))
        .collect();
    let grids = Tensor::f_from_slice(maps)?.f_view([n as i64, gh as i64, gw as i64])?;
    let map_peak = map_peaks(&grids, dims, meta.blur_sigma.into(), &content, &crop_masks)?;
    let pixel_threshold = map_peak.iter().fold(0.0f32, |a, &b| a.max(b));
    let scores = match meta.image_score {
        ImageScore::TopPatch => maps
            .chunks_exact(cells)
            .zip(&crop_masks)
            .map(|(grid, mask)| {
                let inspect = mask.as_ref().map(|m| grid_mask(m, dims, gh, gw));
                peak(grid, inspect.as_deref()).1
            })
            .collect(),
        ImageScore::MapPeak => map_peak,
    };
    let base = meta
        .calibration
        .source
        .split(", under")
        .next()
        .unwrap_or("");
    let source = match roi {
        Some(r) => format!(
            "{base}, under an ROI inspecting {:.1}% of the image",
            100.0 * r.inspected_share()
        ),
        None => base.to_string(),
    };
    let calibration = Calibration::from_scores(source, scores);
    let rules = Rules::defaults(&calibration.scores, calibration.threshold, pixel_threshold)
        .keeping_settings_of(meta.rules);
    Ok((calibration, rules))
}

/// The bank file at `path`, with thresholds that fit this build's maps. Since format 4 a padded
/// image's map leaves its padding out (`anomaly_maps`); a bank fitted before, with padded
/// calibration images, got its thresholds from maps whose padding pulled the part's border down
/// in inspection but pushed it up in calibration, so they are made again from its stored
/// calibration grids (exact: the training images are not needed). Every other bank is as stored.
pub fn load_current(path: &std::path::Path) -> Result<crate::bank::BankFile, EngineError> {
    let mut file = crate::bank::BankFile::load(path)?;
    let padded = file
        .meta
        .calibration_geometry
        .iter()
        .any(|g| !g.is_filled());
    if file.meta.format_version >= PADDING_AWARE_MAPS || !padded {
        return Ok(file);
    }
    let (calibration, rules) =
        recalibrate(&file.meta, &file.calibration_maps, file.roi.as_ref())
            .map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
    file.meta.calibration = Calibration {
        source: format!(
            "{}, recalibrated on load (format {} maps leave padding out)",
            calibration.source, PADDING_AWARE_MAPS
        ),
        ..calibration
    };
    file.meta.rules = Some(rules);
    file.meta.format_version = PADDING_AWARE_MAPS;
    Ok(file)
}

/// The bank format whose padded images' maps leave padding out.
const PADDING_AWARE_MAPS: u32 = 4;

/// Sets (or with `None` removes) the ROI of the bank file at `path` and recalibrates under it
/// from the stored calibration maps; the bank is rewritten atomically as a new version. What `patchcore roi` and
/// the app's ROI editor both call.
pub fn set_roi(
    path: &std::path::Path,
    roi: Option<Roi>,
) -> Result<crate::bank::BankFile, EngineError> {
    let mut file = load_current(path)?;
    let before = file.meta.calibration.threshold;
    let action = match &roi {
        Some(r) => format!(
            "ROI set, inspecting {:.1}% of the image",
            100.0 * r.inspected_share()
        ),
        None => "ROI cleared".to_string(),
    };
    file.roi = roi;
    let (calibration, rules) =
        recalibrate(&file.meta, &file.calibration_maps, file.roi.as_ref())
            .map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
    file.meta.calibration = calibration;
    file.meta.rules = Some(rules);
    crate::bank::save_change(path, &mut file, action, before)?;
    Ok(file)
}

/// Stores `rules` in the bank file at `path` as a new version (what `patchcore rules` and the
/// app's "Save rules to bank" both call); rules that contradict themselves are refused.
pub fn save_rules(
    path: &std::path::Path,
    rules: Rules,
) -> Result<crate::bank::BankFile, EngineError> {
    if let Some(problem) = rules.problem() {
        return Err(EngineError::Config(format!(
            "{}: {problem}",
            path.display()
        )));
    }
    let mut file = load_current(path)?;
    let before = file.meta.calibration.threshold;
    file.meta.rules = Some(rules);
    let action = format!("rules: {}", rules.summary());
    crate::bank::save_change(path, &mut file, action, before)?;
    Ok(file)
}

/// A change an operator makes to a bank without refitting it.
#[derive(Clone, Debug)]
pub enum BankChange {
    /// Store this ROI (None removes it) and recalibrate under it.
    Roi(Option<Roi>),
    /// Store these decision rules.
    Rules(Rules),
    /// Put kept version `to` back (an undo), if the bank is still at version `from`.
    Revert { from: u32, to: u32 },
}

impl BankChange {
    /// Applies the change to the bank file at `path` (an ROI or rules change as a new version).
    pub fn apply(self, path: &std::path::Path) -> Result<(), EngineError> {
        match self {
            BankChange::Roi(roi) => set_roi(path, roi).map(drop),
            BankChange::Rules(rules) => save_rules(path, rules).map(drop),
            BankChange::Revert { from, to } => {
                let current = crate::bank::read_meta(path)?.version;
                if current != from {
                    return Err(changed_on_disk(path, from, current));
                }
                crate::bank::Versions::of(path).revert(current, to)?;
                Ok(())
            }
        }
    }
}

/// The error when the bank file is no longer the version the caller loaded (another app or
/// `patchcore` changed it): acting on it would undo or teach a bank nobody has looked at.
pub fn changed_on_disk(path: &std::path::Path, loaded: u32, now: u32) -> EngineError {
    EngineError::Config(format!(
        "{}: the bank changed on disk since it was loaded (version {loaded} loaded, version \
         {now} on disk); nothing was changed: choose the category again to reload it",
        path.display()
    ))
}
