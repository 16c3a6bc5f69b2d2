//! The result of scoring one image: plain values only, so it can cross threads, go to CSV/JSON,
//! and be shown by the GUI without anyone touching libtorch.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use crate::data::Geometry;
use crate::decide::{Region, RegionSummary, Rules};
use crate::report::Decision;

/// Anomaly map at the model's input (crop) resolution, raw patch-score units, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyMap {
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}

/// The grid cell with the highest patch score: the patch that drove the image score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopPatch {
    pub row: u32,
    pub col: u32,
    pub score: f32,
    /// `[x, y, w, h]` in original-image pixels.
    pub box_original: [u32; 4],
}

/// Wall-clock time of each phase for one image (batch phases are shared out evenly).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    pub decode_ms: f32,
    pub features_ms: f32,
    pub search_ms: f32,
    pub map_ms: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    pub path: PathBuf,
    /// Image score = max patch score (L2 distance, or squared when the bank says so).
    pub score: f32,
    /// `(score - calibration min) / (calibration max - calibration min)`; not clipped.
    pub normalized: f32,
    pub map: AnomalyMap,
    pub geometry: Geometry,
    pub top_patch: TopPatch,
    /// Connected regions of the map above the bank's pixel threshold (inside the ROI), largest
    /// first, all sizes: `min_area` is applied when deciding, so it can change without rescoring.
    #[serde(default)]
    pub regions: Vec<Region>,
    pub times: PhaseTimes,
}

impl Inspection {
    /// Accept, review or reject under `rules`.
    pub fn decide(&self, rules: &Rules) -> Decision {
        rules.decide(self.score, &self.regions)
    }

    /// What goes into the inspection CSV for this image under `rules`.
    pub fn outcome(&self, rules: &Rules) -> crate::report::Outcome {
        crate::report::Outcome::Scored {
            score: self.score,
            normalized: self.normalized,
            top_box: self.top_patch.box_original,
            decision: self.decide(rules),
            regions: RegionSummary::of(&self.regions, rules.min_area),
        }
    }
}
