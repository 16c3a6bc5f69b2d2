//! How a preprocessed model input maps back onto the original image.
use serde::{Deserialize, Serialize};

/// Where the model input sits in the original image, so maps and boxes can be drawn on the
/// original. An input pixel (x, y) covers original pixels
/// `[(x + off_x) / scale_x, (x + 1 + off_x) / scale_x)`; a negative offset is padding.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Stored")]
pub struct Geometry {
    pub orig_width: u32,
    pub orig_height: u32,
    pub scale_x: f64,
    pub scale_y: f64,
    pub off_x: f64,
    pub off_y: f64,
    /// Model input size in pixels (the square crop's side in the paper's protocol).
    pub width: u32,
    pub height: u32,
}

/// A geometry as banks store it: banks fitted before non-square inputs wrote one `crop` side.
#[derive(Deserialize)]
struct Stored {
    orig_width: u32,
    orig_height: u32,
    scale_x: f64,
    scale_y: f64,
    off_x: f64,
    off_y: f64,
    crop: Option<u32>,
    width: Option<u32>,
    height: Option<u32>,
}

impl TryFrom<Stored> for Geometry {
    type Error = String;

    fn try_from(s: Stored) -> Result<Self, String> {
        let (width, height) = match (s.width, s.height, s.crop) {
            (Some(w), Some(h), _) => (w, h),
            (None, None, Some(c)) => (c, c),
            _ => return Err("a geometry needs `width` and `height` (or the older `crop`)".into()),
        };
        Ok(Geometry {
            orig_width: s.orig_width,
            orig_height: s.orig_height,
            scale_x: s.scale_x,
            scale_y: s.scale_y,
            off_x: s.off_x,
            off_y: s.off_y,
            width,
            height,
        })
    }
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
    /// grid laid evenly over the input: the top patch's box, for the engine and the stand-in alike.
    pub fn cell_to_original(&self, row: u32, col: u32, rows: u32, cols: u32) -> [u32; 4] {
        let cell_w = self.width as f64 / cols.max(1) as f64;
        let cell_h = self.height as f64 / rows.max(1) as f64;
        self.crop_rect_to_original(
            col as f64 * cell_w,
            row as f64 * cell_h,
            (col + 1) as f64 * cell_w,
            (row + 1) as f64 * cell_h,
        )
    }

    /// Which input pixels show the original image (false: padding), row-major: padding takes
    /// no part in scores, regions or pixel metrics.
    pub fn content_mask(&self) -> Vec<bool> {
        let span = |off: f64, scale: f64, orig: u32, n: u32| {
            let start = (-off).ceil().clamp(0.0, n as f64) as usize;
            let end = (orig as f64 * scale - off).floor().clamp(0.0, n as f64) as usize;
            (start, end.max(start))
        };
        let (x0, x1) = span(self.off_x, self.scale_x, self.orig_width, self.width);
        let (y0, y1) = span(self.off_y, self.scale_y, self.orig_height, self.height);
        let (w, h) = (self.width as usize, self.height as usize);
        let mut mask = vec![false; w * h];
        for row in mask.chunks_mut(w.max(1)).take(y1).skip(y0) {
            row[x0..x1].iter_mut().for_each(|v| *v = true);
        }
        mask
    }

    /// The same input seen at `width` x `height` (a map of another resolution over it).
    pub fn at_size(&self, width: u32, height: u32) -> Geometry {
        let (kx, ky) = (
            width as f64 / self.width.max(1) as f64,
            height as f64 / self.height.max(1) as f64,
        );
        Geometry {
            scale_x: self.scale_x * kx,
            scale_y: self.scale_y * ky,
            off_x: self.off_x * kx,
            off_y: self.off_y * ky,
            width,
            height,
            ..*self
        }
    }

    /// Whether every input pixel shows the image (no padding).
    pub fn is_filled(&self) -> bool {
        self.off_x >= 0.0
            && self.off_y >= 0.0
            && self.orig_width as f64 * self.scale_x - self.off_x >= self.width as f64
            && self.orig_height as f64 * self.scale_y - self.off_y >= self.height as f64
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
            width: 224,
            height: 224,
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
