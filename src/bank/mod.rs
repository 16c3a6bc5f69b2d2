//! The on-disk memory bank: one safetensors file per category holding the coreset rows and
//! everything needed to score exactly as at fit time. Saved atomically, validated on load.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use crate::data::CropMode;
use crate::data::Geometry;
use crate::decide::Rules;

mod check;
mod file;
mod history;
mod verdicts;
mod versions;

pub use check::{
    check_blur_sigma, check_coreset, FieldError, ScoringSettings, MAX_BLUR_SIGMA, MAX_DIM,
};
pub use file::{read_meta, BankFile, CalibrationPatches};
pub use history::{AddedImage, Growth, HistoryEntry};
pub use verdicts::{Verdict, VerdictEntry, Verdicts};
pub use versions::{save_change, Versions, DEFAULT_VERSIONS_LIMIT_MB};

/// Bumped whenever the meaning of a stored field changes; older readers refuse newer files.
/// Version 2 added the region of interest, the decision rules and the calibration maps: a
/// version-1 reader would silently inspect the whole image, so it must refuse these files.
/// Version 3 added `image_score`: a version-2 reader would score a map-peak bank by its top
/// patch against a threshold calibrated on map peaks. Version 4 leaves padding out of padded
/// images' maps: a version-3 reader would pull a part's border down against thresholds made
/// without that. Version 5 adds `pyramid`: a version-4 reader would embed a two-level bank's
/// queries from one level only, every distance to its rows wrong.
pub const FORMAT_VERSION: u32 = 5;
/// Versions this build reads: version-1 banks load with no ROI and the one-threshold rule,
/// versions 1 and 2 with the top patch as the image score, versions up to 3 with padded
/// calibration images recalibrated on load (`engine::calibrate::load_current`), versions up to 4
/// with one pyramid level.
pub const READABLE_VERSIONS: [u32; 5] = [1, 2, 3, 4, FORMAT_VERSION];

fn one_level() -> u32 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("{path}: cannot read bank file: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid bank file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// A readable safetensors file without our `patchcore` metadata key, e.g. backbone weights
    /// lying in the models folder. Listings skip these; loading one is still an error.
    #[error("{path}: a safetensors file, but not a patchcore bank (no `patchcore` metadata)")]
    NotABank { path: PathBuf },
    /// The versions folder refused a step (a limit, a missing or conflicting version).
    #[error("{path}: {reason}")]
    Versions { path: PathBuf, reason: String },
    #[error("{path}: bank format version {found} is not supported (this build reads versions 1 to {FORMAT_VERSION})")]
    Version { path: PathBuf, found: u32 },
}

/// Leave-one-image-out image scores of the training set, and the threshold derived from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Where the scores came from: "leave-one-image-out" or "validation folder <dir>".
    pub source: String,
    pub scores: Vec<f32>,
    pub min: f32,
    pub max: f32,
    /// Default accept/reject threshold (see `Calibration::from_scores` for the rule).
    pub threshold: f32,
}

/// Everything stored next to the bank rows. Serialised as JSON under the `patchcore` key of
/// the safetensors metadata, so the GUI can list banks by reading the header only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BankMeta {
    pub format_version: u32,
    pub category: String,
    pub backbone: String,
    pub weights_sha256: String,
    pub stages: Vec<String>,
    /// Index into `stages` of the stage whose grid the patch rows live on.
    pub grid_stage: u32,
    /// Normalisation mean and std per RGB channel, on 0..1 pixel values.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop: CropMode,
    /// Neighbourhood size of the local patch aggregation (3 in the paper).
    pub patch_size: u32,
    /// Dimension each stage is pooled to, and the final embedding dimension.
    pub pretrain_dim: u32,
    pub embed_dim: u32,
    /// Image-pyramid levels embedded per patch (`Method::pyramid`); 1 in banks before version 5.
    #[serde(default = "one_level")]
    pub pyramid: u32,
    /// Patch grid of one image (rows, cols).
    pub grid: [u32; 2],
    pub k: u32,
    pub reweight: bool,
    pub squared: bool,
    pub blur_sigma: f32,
    /// How an image's score comes from its patch scores; banks before version 3 used the top patch.
    #[serde(default)]
    pub image_score: ImageScore,
    pub coreset_ratio: f32,
    pub coreset_size: u32,
    pub coreset_projection: u32,
    pub seed: u64,
    pub n_train_images: u32,
    pub n_patches: u64,
    pub train_dir: PathBuf,
    /// Test images of the category, when the fit data had them (the GUI opens these first).
    pub test_dir: Option<PathBuf>,
    pub created: String,
    pub bank_dtype: BankDtype,
    pub calibration: Calibration,
    /// The configurations `fit` tried on synthetic defects before choosing this one (empty when
    /// it did not choose, e.g. with explicit feature flags or WideResNet's paper settings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selection: Vec<SelectionTrial>,
    /// Accept/review/reject rules; absent in version-1 banks, which get [`BankMeta::rules`]'s
    /// one-threshold rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Rules>,
    /// The region of interest stored as tensor `roi`: its size and hash, checked on load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roi: Option<RoiInfo>,
    /// Where each calibration image's crop sat (one per row of tensor `calibration_maps`), so
    /// an ROI can be laid over the calibration maps without the training images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration_geometry: Vec<Geometry>,
    /// What `update` needs; absent in banks fitted before updates existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<Growth>,
    /// 1 when fitted, then the number `update` gave it (see `history`).
    #[serde(default = "history::first_version")]
    pub version: u32,
    /// Every update that led to this version, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// What the metadata records about the stored ROI mask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoiInfo {
    pub width: u32,
    pub height: u32,
    /// sha256 of the mask values (0/1 bytes, row-major), see [`crate::decide::Roi::sha256`].
    pub sha256: String,
}

/// How one candidate configuration scored on synthetic defects in held-out good images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionTrial {
    pub name: String,
    pub image_auroc: f64,
    pub pixel_auroc: f64,
    pub pro: f64,
    pub chosen: bool,
}

impl Calibration {
    /// The default threshold is the largest leave-one-out score: a new part is rejected when it
    /// looks less like the bank than every good training part did with its own patches removed.
    pub fn from_scores(source: String, scores: Vec<f32>) -> Calibration {
        let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Calibration {
            source,
            threshold: max,
            scores,
            min,
            max,
        }
    }
}

impl BankMeta {
    /// The rules in force: the stored ones, or for a version-1 bank the one-threshold rule
    /// (review and reject both from the calibrated threshold; regions at the same value).
    pub fn rules(&self) -> Rules {
        self.rules.unwrap_or(Rules {
            review_from: self.calibration.threshold,
            reject_from: self.calibration.threshold,
            min_area: 0,
            pixel_threshold: self.calibration.threshold,
            mm_per_pixel: None,
        })
    }

    /// `(score - min) / (max - min)` over the calibration scores; 1.0 is the worst good training image.
    pub fn normalize(&self, score: f32) -> f32 {
        let c = &self.calibration;
        let span = (c.max - c.min).max(f32::EPSILON);
        (score - c.min) / span
    }
}

/// How an image's score comes from its patch scores (`fit --image-score`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ImageScore {
    /// The highest patch score (the paper's Eq. 6).
    #[default]
    TopPatch,
    /// The peak of the anomaly map the operator sees (upsampled and blurred, inspected pixels
    /// only): on an input of thousands of patches one noisy patch no longer decides alone.
    MapPeak,
}

impl ImageScore {
    /// The rule in words, as `fit` and `eval` print it.
    pub fn describe(self) -> &'static str {
        match self {
            ImageScore::TopPatch => "top patch",
            ImageScore::MapPeak => "peak of the anomaly map",
        }
    }
}

/// Storage precision of the bank rows (`fit --bank-dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BankDtype {
    F32,
    F16,
}
