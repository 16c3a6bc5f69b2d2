//! The fixed heatmap colour scale and the anomaly-map textures drawn over images.
//!
//! Why fixed: with a per-image min/max stretch every image has a red spot, good ones included.
//! Here a colour means the same score on every image of a category: calm below the calibration
//! minimum, warm at the calibrated threshold, hot well above it.
use crate::bank::BankMeta;
use crate::engine::AnomalyMap;
use egui::{Color32, ColorImage};

/// Score → colour position for one category: `lo` maps to 0, `mid` to 0.5, `hi` to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorScale {
    pub lo: f32,
    pub mid: f32,
    pub hi: f32,
}

impl ColorScale {
    /// `lo` = calibration minimum (the calmest good image), `mid` = calibrated threshold,
    /// `hi` = twice the threshold (or at least as far above it as `lo` is below).
    /// Uses the calibrated threshold, not the slider, so moving the slider never recolours.
    pub fn for_bank(meta: &BankMeta) -> ColorScale {
        let c = &meta.calibration;
        Self::from_threshold(c.min, c.threshold)
    }

    pub fn from_threshold(min: f32, threshold: f32) -> ColorScale {
        let mid = if threshold.is_finite() {
            threshold
        } else {
            1.0
        };
        let lo = if min.is_finite() && min < mid {
            min
        } else {
            mid * 0.5
        };
        let hi = (2.0 * mid).max(mid + (mid - lo)).max(mid + f32::EPSILON);
        ColorScale { lo, mid, hi }
    }

    /// Position of `score` on the scale, clamped to `0..=1`.
    pub fn position(&self, score: f32) -> f32 {
        let t = if score <= self.mid {
            0.5 * (score - self.lo) / (self.mid - self.lo).max(f32::EPSILON)
        } else {
            0.5 + 0.5 * (score - self.mid) / (self.hi - self.mid).max(f32::EPSILON)
        };
        if t.is_nan() {
            0.0
        } else {
            t.clamp(0.0, 1.0)
        }
    }
}

/// Colour stops: transparent blue (calm) → green → yellow at the threshold → orange → red.
/// Alpha rises with the score so a good part stays readable under the overlay.
const STOPS: [(f32, [u8; 4]); 6] = [
    (0.0, [30, 60, 200, 0]),
    (0.25, [0, 170, 200, 60]),
    (0.42, [60, 200, 80, 110]),
    (0.5, [250, 220, 0, 170]),
    (0.75, [255, 120, 0, 210]),
    (1.0, [220, 0, 30, 235]),
];

/// Heat colour (unmultiplied RGBA) at scale position `t` in `0..=1`.
pub fn heat_rgba(t: f32) -> [u8; 4] {
    let t = t.clamp(0.0, 1.0);
    for w in STOPS.windows(2) {
        let (t0, c0) = w[0];
        let (t1, c1) = w[1];
        if t <= t1 {
            let f = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
            let mut out = [0u8; 4];
            for i in 0..4 {
                out[i] = (c0[i] as f32 + (c1[i] as f32 - c0[i] as f32) * f).round() as u8;
            }
            return out;
        }
    }
    STOPS[STOPS.len() - 1].1
}

/// Opaque version of the heat colour, for legends and badges.
pub fn heat_solid(t: f32) -> Color32 {
    let [r, g, b, _] = heat_rgba(t);
    Color32::from_rgb(r, g, b)
}

/// The map as an RGBA image on the fixed scale (same size as the map).
pub fn colorize(map: &AnomalyMap, scale: &ColorScale) -> ColorImage {
    let (w, h) = (map.width as usize, map.height as usize);
    if w == 0 || h == 0 || map.values.len() != w * h {
        return ColorImage::filled([1, 1], Color32::TRANSPARENT);
    }
    let mut rgba = Vec::with_capacity(w * h * 4);
    for &v in &map.values {
        rgba.extend_from_slice(&heat_rgba(scale.position(v)));
    }
    ColorImage::from_rgba_unmultiplied([w, h], &rgba)
}

/// Shrinks a map so neither side exceeds `max_side`, taking the maximum of each block so a
/// small defect never disappears from the overlay. Maps already small enough are copied.
pub fn reduce_map(map: &AnomalyMap, max_side: u32) -> AnomalyMap {
    let (w, h) = (map.width, map.height);
    if (w <= max_side && h <= max_side) || map.values.len() != (w as usize * h as usize) {
        return map.clone();
    }
    let factor = w.max(h).div_ceil(max_side.max(1));
    let (nw, nh) = (w.div_ceil(factor), h.div_ceil(factor));
    let mut values = vec![f32::NEG_INFINITY; (nw * nh) as usize];
    for y in 0..h {
        let row = &map.values[(y * w) as usize..((y + 1) * w) as usize];
        let ny = y / factor;
        for (x, &v) in row.iter().enumerate() {
            let i = (ny * nw + x as u32 / factor) as usize;
            if v > values[i] {
                values[i] = v;
            }
        }
    }
    AnomalyMap {
        width: nw,
        height: nh,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_fixed_and_monotone() {
        let s = ColorScale::from_threshold(2.0, 3.0);
        assert_eq!(s.position(1.0), 0.0);
        assert!((s.position(3.0) - 0.5).abs() < 1e-6);
        assert_eq!(s.position(100.0), 1.0);
        assert!(s.position(2.5) < s.position(4.0));
        assert_eq!(heat_rgba(0.0)[3], 0, "calm is transparent");
    }

    #[test]
    fn reduce_keeps_peaks() {
        let mut values = vec![0.0; 256 * 256];
        values[200 * 256 + 17] = 9.0;
        let m = AnomalyMap {
            width: 256,
            height: 256,
            values,
        };
        let r = reduce_map(&m, 100);
        assert!(r.width <= 100 && r.height <= 100);
        assert_eq!(r.values.iter().copied().fold(0.0, f32::max), 9.0);
    }
}
