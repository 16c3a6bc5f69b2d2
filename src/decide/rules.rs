//! Accept, review or reject: two thresholds on the image score, and a minimum defect area that a
//! hot spot must reach before it can count against the part.
use super::Region;
use crate::report::Decision;
use serde::{Deserialize, Serialize};

/// The decision rules a bank holds (and the app or `patchcore rules` change).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    /// Image scores strictly above this are reviewed (at least).
    pub review_from: f32,
    /// Image scores strictly above this are rejected; `>= review_from`.
    pub reject_from: f32,
    /// Regions smaller than this many original pixels do not count; when it is above 0, an
    /// image without a region this large is accepted whatever its score.
    #[serde(default)]
    pub min_area: u64,
    /// Anomaly-map value above which a pixel belongs to a defect region.
    pub pixel_threshold: f32,
    /// Size of one original pixel in mm, when known: areas are then also given in mm².
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mm_per_pixel: Option<f32>,
}

impl Rules {
    /// Defaults from the good images' leave-one-out scores: review from the worst good score
    /// (today's calibrated threshold), reject from one more step as large as the distance from
    /// the median good score to the worst one. A part is rejected outright only when it is as
    /// far beyond the worst good part as that part is beyond a typical one; between the two it
    /// goes to a person.
    pub fn defaults(scores: &[f32], threshold: f32, pixel_threshold: f32) -> Rules {
        let mut sorted: Vec<f32> = scores.iter().copied().filter(|s| s.is_finite()).collect();
        sorted.sort_by(f32::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(threshold);
        Rules {
            review_from: threshold,
            reject_from: threshold + (threshold - median).max(0.0),
            min_area: 0,
            pixel_threshold,
            mm_per_pixel: None,
        }
    }

    /// These rules with the operator's own settings (minimum area, pixel size) taken from `old`:
    /// a recalibration moves the thresholds, not what the operator chose.
    pub fn keeping_settings_of(self, old: Option<Rules>) -> Rules {
        match old {
            Some(old) => Rules {
                min_area: old.min_area,
                mm_per_pixel: old.mm_per_pixel,
                ..self
            },
            None => self,
        }
    }

    /// One line for a bank's history: the thresholds and minimum area.
    pub fn summary(&self) -> String {
        format!(
            "review from {:.4}, reject from {:.4}, min area {}",
            self.review_from, self.reject_from, self.min_area
        )
    }

    /// The decision for an image score and its regions (those under `min_area` do not count).
    pub fn decide(&self, score: f32, regions: &[Region]) -> Decision {
        if self.min_area > 0 && !regions.iter().any(|r| r.area >= self.min_area) {
            Decision::Accept
        } else if score > self.reject_from {
            Decision::Reject
        } else if score > self.review_from {
            Decision::Review
        } else {
            Decision::Accept
        }
    }

    /// What is wrong with these rules, if anything (a crafted bank or a bad command line).
    pub fn problem(&self) -> Option<String> {
        let finite = [self.review_from, self.reject_from, self.pixel_threshold];
        if finite.iter().any(|v| !v.is_finite()) {
            return Some(format!(
                "thresholds must be finite (review_from {}, reject_from {}, pixel_threshold {})",
                self.review_from, self.reject_from, self.pixel_threshold
            ));
        }
        if self.reject_from < self.review_from {
            return Some(format!(
                "reject_from {} is below review_from {}",
                self.reject_from, self.review_from
            ));
        }
        match self.mm_per_pixel {
            Some(mm) if !(mm.is_finite() && mm > 0.0) => {
                Some(format!("mm_per_pixel is {mm}, must be > 0"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(area: u64) -> Region {
        Region {
            map_pixels: area,
            area,
            area_mm2: None,
            box_original: [0, 0, 1, 1],
            peak: 1.0,
        }
    }

    #[test]
    fn bands_decide_as_set() {
        let r = Rules {
            review_from: 1.0,
            reject_from: 2.0,
            min_area: 0,
            pixel_threshold: 0.5,
            mm_per_pixel: None,
        };
        let one = [region(5)];
        assert_eq!(r.decide(1.0, &one), Decision::Accept);
        assert_eq!(r.decide(1.5, &one), Decision::Review);
        assert_eq!(r.decide(2.0, &one), Decision::Review);
        assert_eq!(r.decide(2.1, &one), Decision::Reject);
        // min_area 0: the bands alone decide, with or without regions.
        assert_eq!(r.decide(2.1, &[]), Decision::Reject);
        let strict = Rules { min_area: 5, ..r };
        assert_eq!(strict.decide(9.0, &[]), Decision::Accept);
        assert_eq!(strict.decide(9.0, &[region(4)]), Decision::Accept);
        assert_eq!(
            strict.decide(9.0, &[region(4), region(5)]),
            Decision::Reject
        );
    }

    #[test]
    fn defaults_put_reject_one_good_spread_above_review() {
        let r = Rules::defaults(&[1.0, 2.0, 3.0, 4.0, 6.0], 6.0, 0.7);
        assert_eq!((r.review_from, r.reject_from), (6.0, 9.0));
        assert!(r.problem().is_none());
        assert!(Rules {
            reject_from: 5.0,
            ..r
        }
        .problem()
        .is_some());
        assert!(Rules {
            pixel_threshold: f32::NAN,
            ..r
        }
        .problem()
        .is_some());
    }
}
