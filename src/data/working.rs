//! The working resolution of the whole-image geometry when `fit` is given none: the training
//! images' native size, so a defect a few pixels across keeps its pixels, shrunk only as far as
//! a pixel budget per image needs (time and memory grow with the input's area).
use super::preprocess::{CropMode, WHOLE_ALIGN};

/// Model-input pixels per image at most by default: 4 MP keeps a 2048 x 2048 sensor or a
/// 1000 x 4000 strip at full size.
pub const WORKING_PIXELS: u64 = 4 << 20;

/// A working resolution (the input's longer side) and why it was chosen, as `fit` prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct Working {
    pub long: u32,
    pub reason: String,
}

/// Median longer side of `sizes` (width, height); 0 when empty.
pub fn native_long_side(sizes: &[(u32, u32)]) -> u32 {
    let mut long: Vec<u32> = sizes.iter().map(|&(w, h)| w.max(h)).collect();
    long.sort_unstable();
    long.get(long.len() / 2).copied().unwrap_or(0)
}

/// The default working resolution for training images of `sizes`: their median longer side,
/// scaled down only when the whole-image input would exceed `budget` pixels.
pub fn choose(sizes: &[(u32, u32)], budget: u64) -> Working {
    let native = native_long_side(sizes).max(WHOLE_ALIGN);
    let (w, h) = CropMode::whole_for(sizes, native).input_dims();
    let area = w as u64 * h as u64;
    if area <= budget {
        return Working {
            long: native,
            reason: format!("the training images' native size (median longer side {native} px)"),
        };
    }
    let shrink = (budget as f64 / area as f64).sqrt();
    let long = ((native as f64 * shrink) as u32 / WHOLE_ALIGN * WHOLE_ALIGN).max(WHOLE_ALIGN);
    Working {
        long,
        reason: format!(
            "native median longer side {native} px, scaled by {shrink:.2} to keep the input within {:.1} MP",
            budget as f64 / (1 << 20) as f64
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_size_unless_over_budget() {
        let strip = [(1000, 4000), (1000, 4000), (1010, 3990)];
        assert_eq!(choose(&strip, WORKING_PIXELS).long, 4000);
        let sensor = [(5472, 3648); 3];
        let w = choose(&sensor, WORKING_PIXELS);
        let (iw, ih) = CropMode::whole_for(&sensor, w.long).input_dims();
        assert!((iw as u64 * ih as u64) <= WORKING_PIXELS, "{iw} x {ih}");
        assert!(w.long > 2000 && w.reason.contains("scaled"), "{w:?}");
        // The README's two examples: a 2448 x 2048 sensor is shrunk to 2232 x 1864 (4.16 MP),
        // a 500 x 1263 part kept at its size (504 x 1264 after rounding to whole cells).
        let camera = [(2448, 2048)];
        let w = choose(&camera, WORKING_PIXELS);
        assert_eq!(w.long, 2232);
        assert_eq!(
            CropMode::whole_for(&camera, w.long).input_dims(),
            (2232, 1864)
        );
        assert_eq!(choose(&[(500, 1263)], WORKING_PIXELS).long, 1263);
        assert_eq!(native_long_side(&[(300, 200), (100, 500), (90, 90)]), 300);
    }

    #[test]
    fn the_input_keeps_the_aspect_and_mixed_orientations_share_a_square() {
        assert_eq!(
            CropMode::whole_for(&[(500, 1263)], 1263).input_dims(),
            (504, 1264)
        );
        assert_eq!(
            CropMode::whole_for(&[(200, 350), (350, 200)], 350).input_dims(),
            (352, 352)
        );
        // Bars of one height and four lengths keep one scale: the input fits the longest.
        let bars = [(1000, 1000), (2000, 1000), (3000, 1000), (4000, 1000)];
        let half = CropMode::whole_for(&bars, 1500);
        assert_eq!(half.input_dims(), (2000, 504));
        assert!(half.describe().contains("1500/3000"), "{}", half.describe());
        assert_eq!(choose(&bars, WORKING_PIXELS).long, 3000);
    }
}
