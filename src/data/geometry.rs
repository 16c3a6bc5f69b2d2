//! How a preprocessed crop maps back onto the original image.
use serde::{Deserialize, Serialize};

/// Where the crop sits in the original image, so maps and boxes can be drawn on the original.
/// A crop pixel (x, y) covers original pixels `[(x + off_x) / scale_x, (x + 1 + off_x) / scale_x)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    pub orig_width: u32,
    pub orig_height: u32,
    pub scale_x: f64,
    pub scale_y: f64,
    pub off_x: f64,
    pub off_y: f64,
    pub crop: u32,
}

impl Geometry {
    /// Box `[x, y, w, h]` in original pixels covering the crop-pixel rectangle `[x0, x1) x [y0, y1)`,
    /// clamped to the image.
    pub fn crop_rect_to_original(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> [u32; 4] {
        let ox0 = ((x0 + self.off_x) / self.scale_x).floor().max(0.0);
        let oy0 = ((y0 + self.off_y) / self.scale_y).floor().max(0.0);
        let ox1 = ((x1 + self.off_x) / self.scale_x)
            .ceil()
            .min(self.orig_width as f64);
        let oy1 = ((y1 + self.off_y) / self.scale_y)
            .ceil()
            .min(self.orig_height as f64);
        [
            ox0 as u32,
            oy0 as u32,
            (ox1 - ox0).max(1.0) as u32,
            (oy1 - oy0).max(1.0) as u32,
        ]
    }
}
