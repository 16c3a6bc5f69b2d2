//! Bank settings checked by value: one check for what a bank file stores and what `fit` is
//! asked for, so every bank `fit` writes is one that loading accepts, and a crafted file is an
//! error naming the field instead of a panic deeper down.
use super::{BankMeta, CropMode};

/// Widest patch neighbourhood accepted: 5x the paper's 3 and already half the default 28-cell
/// grid; wider ones only add zero padding and unfold memory.
pub const MAX_PATCH_SIZE: i64 = 15;
/// Pyramid levels at most: a fourth would see the input at an eighth of its size, coarser than
/// any defect a patch grid can place.
pub const MAX_PYRAMID: u32 = 3;
/// Largest pooled feature dimension accepted (the paper uses 1,024; each bank row is this wide).
pub const MAX_DIM: i64 = 16_384;
/// Largest image side, crop or patch grid accepted; beyond it one input alone needs gigabytes.
pub const MAX_SIDE: i64 = 8_192;
/// Largest anomaly-map blur accepted: 16x the paper's 4. Its kernel (`8 sigma + 1` = 513 taps)
/// already spans a 512-pixel map, so a larger sigma only flattens the map further, and the
/// kernel is allocated per call, so an unbounded sigma (1e9) would abort on allocation.
pub const MAX_BLUR_SIGMA: f64 = 64.0;

/// A stored or requested setting that fails its value check: which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("field `{field}` {problem}")]
pub struct FieldError {
    pub field: &'static str,
    /// What is wrong, phrased to follow the field name, e.g. "is 0, must be >= 1".
    pub problem: String,
}

fn field_error(field: &'static str, problem: String) -> FieldError {
    FieldError { field, problem }
}

/// `min <= v <= max`, for integer settings.
fn in_range(field: &'static str, v: i64, min: i64, max: i64) -> Result<(), FieldError> {
    if v < min {
        return Err(field_error(field, format!("is {v}, must be >= {min}")));
    }
    if v > max {
        return Err(field_error(field, format!("is {v}, must be <= {max}")));
    }
    Ok(())
}

fn finite(field: &'static str, v: f64) -> Result<(), FieldError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(field_error(field, format!("is {v}, must be finite")))
    }
}

/// The settings that decide the scores, as a bank stores them or `fit` is asked for them. One
/// check serves both, so every bank `fit` writes is one that loading accepts.
pub struct ScoringSettings<'a> {
    pub stages: &'a [String],
    pub grid_stage: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop: CropMode,
    pub patch_size: i64,
    pub pretrain_dim: i64,
    pub embed_dim: i64,
    pub pyramid: u32,
    pub k: i64,
    pub blur_sigma: f64,
}

impl ScoringSettings<'_> {
    /// Checks every value the engine would otherwise trip over (a panic, an abort on a huge
    /// allocation, or NaN scores), naming the first field that fails.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.stages.is_empty() {
            return Err(field_error(
                "stages",
                "is empty, must name at least one stage".into(),
            ));
        }
        if self.grid_stage >= self.stages.len() {
            return Err(field_error(
                "grid_stage",
                format!(
                    "is {}, must be < {} (the number of stages)",
                    self.grid_stage,
                    self.stages.len()
                ),
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(field_error(
                "mean",
                format!("is {:?}, must be finite", self.mean),
            ));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(field_error(
                "std",
                format!("is {:?}, must be finite and > 0", self.std),
            ));
        }
        match self.crop {
            CropMode::Center { resize, crop } => {
                in_range("crop.resize", resize.into(), 1, MAX_SIDE)?;
                in_range("crop.crop", crop.into(), 1, MAX_SIDE)?;
            }
            CropMode::Full { size } => in_range("crop.size", size.into(), 1, MAX_SIDE)?,
            CropMode::Whole {
                width,
                height,
                long,
                native,
                snap,
            } => {
                in_range("crop.snap", snap.into(), 0, MAX_SIDE)?;
                in_range("crop.width", width.into(), 1, MAX_SIDE)?;
                in_range("crop.height", height.into(), 1, MAX_SIDE)?;
                in_range("crop.long", long.into(), 1, MAX_SIDE)?;
                in_range("crop.native", native.into(), 1, i64::from(u32::MAX))?;
            }
        }
        in_range("patch_size", self.patch_size, 1, MAX_PATCH_SIZE)?;
        if self.patch_size % 2 == 0 {
            return Err(field_error(
                "patch_size",
                format!(
                    "is {}, must be odd (a neighbourhood centred on its patch)",
                    self.patch_size
                ),
            ));
        }
        in_range("pretrain_dim", self.pretrain_dim, 1, MAX_DIM)?;
        in_range("embed_dim", self.embed_dim, 1, MAX_DIM)?;
        in_range("pyramid", self.pyramid.into(), 1, MAX_PYRAMID.into())?;
        in_range("k", self.k, 1, i64::from(u32::MAX))?;
        check_blur_sigma(self.blur_sigma)
    }
}

/// The anomaly-map blur: 0 (no blur) up to `MAX_BLUR_SIGMA`.
pub fn check_blur_sigma(sigma: f64) -> Result<(), FieldError> {
    if (0.0..=MAX_BLUR_SIGMA).contains(&sigma) {
        Ok(())
    } else {
        Err(field_error(
            "blur_sigma",
            format!("is {sigma}, must be between 0 (no blur) and {MAX_BLUR_SIGMA}"),
        ))
    }
}

/// The coreset's settings: the fraction of patches it keeps, in (0, 1], and the width of the
/// random projection it is chosen on (0 would choose an empty bank).
pub fn check_coreset(ratio: f64, projection: usize) -> Result<(), FieldError> {
    if !(ratio.is_finite() && ratio > 0.0 && ratio <= 1.0) {
        return Err(field_error(
            "coreset_ratio",
            format!("is {ratio}, must be > 0 and <= 1"),
        ));
    }
    in_range(
        "coreset_projection",
        i64::try_from(projection).unwrap_or(i64::MAX),
        1,
        MAX_DIM,
    )
}

impl BankMeta {
    /// The scoring settings stored in this bank.
    pub fn settings(&self) -> ScoringSettings<'_> {
        ScoringSettings {
            stages: &self.stages,
            grid_stage: self.grid_stage as usize,
            mean: self.mean,
            std: self.std,
            crop: self.crop,
            patch_size: self.patch_size.into(),
            pretrain_dim: self.pretrain_dim.into(),
            embed_dim: self.embed_dim.into(),
            pyramid: self.pyramid,
            k: self.k.into(),
            blur_sigma: self.blur_sigma.into(),
        }
    }

    /// Checks the metadata by value, not only by type: a hand-edited or corrupted bank fails
    /// here with the field's name instead of panicking or aborting somewhere in the engine.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.settings().check()?;
        in_range("coreset_size", self.coreset_size.into(), 1, i64::MAX)?;
        if self.k > self.coreset_size {
            return Err(field_error(
                "k",
                format!(
                    "is {}, must be <= coreset_size {} (the bank's rows)",
                    self.k, self.coreset_size
                ),
            ));
        }
        for side in self.grid {
            in_range("grid", side.into(), 1, MAX_SIDE)?;
        }
        in_range("n_train_images", self.n_train_images.into(), 1, i64::MAX)?;
        if self.n_patches < u64::from(self.coreset_size) {
            return Err(field_error(
                "n_patches",
                format!(
                    "is {}, must be >= coreset_size {} (the coreset is a subset)",
                    self.n_patches, self.coreset_size
                ),
            ));
        }
        check_coreset(self.coreset_ratio.into(), self.coreset_projection as usize)?;
        if let Some(g) = &self.growth {
            finite("growth.covering_radius", g.covering_radius.into())?;
            if g.covering_radius < 0.0 {
                return Err(field_error("growth.covering_radius", "must be >= 0".into()));
            }
        }
        let c = &self.calibration;
        if let Some(bad) = c.scores.iter().find(|s| !s.is_finite()) {
            return Err(field_error(
                "calibration.scores",
                format!("holds {bad}, must all be finite"),
            ));
        }
        finite("calibration.min", c.min.into())?;
        finite("calibration.max", c.max.into())?;
        finite("calibration.threshold", c.threshold.into())?;
        if c.min > c.max {
            return Err(field_error(
                "calibration.min",
                format!("is {}, must be <= calibration.max {}", c.min, c.max),
            ));
        }
        if let Some(problem) = self.rules.as_ref().and_then(|r| r.problem()) {
            return Err(field_error("rules", problem));
        }
        if let Some(roi) = &self.roi {
            for side in [roi.width, roi.height] {
                in_range("roi", side.into(), 1, MAX_SIDE)?;
            }
        }
        Ok(())
    }
}
