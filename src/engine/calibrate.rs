//! Leave-one-image-out calibration scoring, the one place `fit` and `update` score calibration
//! images: an image's score is its highest patch score with its own bank rows masked out, and its
//! highest patches are kept (with their neighbour distances) so that a later update can rescore
//! the image against new rows exactly, without the image.
use super::inspect::patch_scores;
use super::Method;
use crate::bank::CalibrationPatches;
use tch::{Device, Kind, TchError, Tensor};

/// Patches kept per calibration image: 32 x 1,024 floats, 128 KB per image. A rescore is exact
/// while the best rescored kept patch still beats the next, unkept one (`CalibrationPatches::next`).
pub const CALIBRATION_KEEP: i64 = 32;

/// Scores the images of `features` `(b * per_image, D)` from their patches' leave-one-out
/// neighbour distances `sq_dist` `(b * per_image, k)`, and appends each image's `keep` highest
/// patches to `kept`. Ties keep patch order, so the same input keeps the same patches.
pub(super) fn score_images(
    features: &Tensor,
    sq_dist: &Tensor,
    per_image: i64,
    keep: i64,
    method: &Method,
    kept: &mut CalibrationPatches,
) -> Result<Vec<f32>, TchError> {
    let b = sq_dist.size()[0] / per_image.max(1);
    let patch = patch_scores(sq_dist, method)?.f_view([b, per_image])?;
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
