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

    /// Box `[x, y, w, h]` in original pixels of cell (`row`, `col`) of a `rows` x `cols` patch
    /// grid laid evenly over the crop: the top patch's box, for the engine and the stand-in alike.
    pub fn cell_to_original(&self, row: u32, col: u32, rows: u32, cols: u32) -> [u32; 4] {
        let cell_w = self.crop as f64 / cols.max(1) as f64;
        let cell_h = self.crop as f64 / rows.max(1) as f64;
        self.crop_rect_to_original(
            col as f64 * cell_w,
            row as f64 * cell_h,
            (col + 1) as f64 * cell_w,
            (row + 1) as f64 * cell_h,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Geometry;

    #[test]
    fn grid_cells_map_to_their_original_pixels() {
        // A 512-pixel image halved to 256 and centre-cropped to 224 (offset 16 in the resized image).
        let g = Geometry {
            orig_width: 512,
            orig_height: 512,
            scale_x: 0.5,
            scale_y: 0.5,
            off_x: 16.0,
            off_y: 16.0,
            crop: 224,
        };
        // 28 x 28 cells of 8 crop pixels, 16 original pixels each.
        assert_eq!(g.cell_to_original(0, 0, 28, 28), [32, 32, 16, 16]);
        assert_eq!(g.cell_to_original(27, 1, 28, 28), [48, 464, 16, 16]);
        assert_eq!(
            g.cell_to_original(27, 1, 28, 28),
            g.crop_rect_to_original(8.0, 216.0, 16.0, 224.0)
        );
    }
}
