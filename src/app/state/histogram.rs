//! The score distribution of the open folder: the histogram beside the threshold slider and
//! the slider's range.
use super::{Inspector, Item};

/// Histogram of the scored images: `bins` counts over `[lo, hi)` in equal steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub lo: f32,
    pub width: f32,
    pub bins: Vec<u32>,
}

impl Inspector {
    /// Histogram of all scored images, with bins spanning the scores and the thresholds.
    pub fn histogram(&mut self, bins: usize) -> &Histogram {
        if self.hist_key != Some(self.version) {
            self.hist_key = Some(self.version);
            let scores: Vec<f32> = self.items.iter().filter_map(Item::score).collect();
            let cal = self.bank.as_ref().map(|b| b.calibrated_threshold());
            let mut lo = scores.iter().copied().fold(f32::INFINITY, f32::min);
            let mut hi = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if let Some(c) = cal {
                lo = lo.min(c);
                hi = hi.max(c);
            }
            if !lo.is_finite() || !hi.is_finite() {
                self.hist = Histogram::default();
            } else {
                let span = (hi - lo).max(1e-3);
                let lo = lo - 0.05 * span;
                let width = span * 1.1 / bins.max(1) as f32;
                let mut counts = vec![0u32; bins.max(1)];
                for s in scores {
                    let b = (((s - lo) / width) as usize).min(counts.len() - 1);
                    counts[b] += 1;
                }
                self.hist = Histogram {
                    lo,
                    width,
                    bins: counts,
                };
            }
        }
        &self.hist
    }

    /// Range for the threshold slider: covers calibration and every score seen, and does not
    /// move while the operator drags (it depends on the data, not on the threshold).
    pub fn threshold_range(&mut self) -> (f32, f32) {
        let span = self.score_span();
        let Some(bank) = &self.bank else {
            return (0.0, 1.0);
        };
        let c = &bank.meta.calibration;
        let mut lo = c.min.min(c.threshold);
        let mut hi = (2.0 * c.threshold).max(c.max);
        if let Some((s_lo, s_hi)) = span {
            lo = lo.min(s_lo);
            hi = hi.max(s_hi);
        }
        if !lo.is_finite() || !hi.is_finite() || hi <= lo {
            return (0.0, c.threshold.abs().max(1.0) * 2.0);
        }
        let pad = 0.02 * (hi - lo);
        ((lo - pad).max(0.0), hi + pad)
    }

    /// Lowest and highest score, recomputed only when the items changed (the slider asks
    /// every frame).
    fn score_span(&mut self) -> Option<(f32, f32)> {
        if self.span_key != Some(self.version) {
            self.span_key = Some(self.version);
            self.span = self
                .items
                .iter()
                .filter_map(Item::score)
                .fold(None, |acc, s| {
                    let (lo, hi) = acc.unwrap_or((s, s));
                    Some((lo.min(s), hi.max(s)))
                });
        }
        self.span
    }
}
