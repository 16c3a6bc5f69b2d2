//! What a bank needs to grow without a refit (`patchcore update`) and the record of each growth:
//! kept in the bank's own metadata, so a copied bank carries its audit trail with it.
use crate::report::Operator;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Stored by `fit` for `update`. Banks fitted before it have none and must be refitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Growth {
    /// Covering radius the greedy selection left, in its projected space (`coreset_projection`
    /// dimensions, projection drawn from `seed`): new patches farther than this are added.
    pub covering_radius: f32,
    /// Patches kept per calibration image (the highest-scoring ones, with their neighbour
    /// distances), enough to rescore it against new rows without its image.
    pub calibration_keep: u32,
    /// The kept patches show the image only (padding never searched nor kept; fits since
    /// session 14). Absent in older banks, whose padded calibration images may keep padding.
    #[serde(default)]
    pub padding_left_out: bool,
}

/// One image an update learned from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddedImage {
    pub path: PathBuf,
    pub sha256: String,
    /// Its score against the bank before the update (the refusal test's input).
    pub score: f32,
    pub rows_added: u32,
}

/// One bank version made by `update`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u32,
    /// The version this one grew from (not always `version - 1` after a revert).
    pub parent: u32,
    pub time: String,
    pub operator: Operator,
    pub images: Vec<AddedImage>,
    pub rows_added: u32,
    pub threshold_before: f32,
    pub threshold_after: f32,
    /// Images far above the threshold were let in with `--force`.
    pub forced: bool,
    /// What made this version: "update", or an ROI or rules change (which add no images).
    #[serde(default = "update_action")]
    pub action: String,
}

fn update_action() -> String {
    "update".into()
}

/// A fitted bank is version 1.
pub fn first_version() -> u32 {
    1
}
