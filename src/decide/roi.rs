//! The region of interest: a mask over the original image (white = inspect, black = ignore),
//! stretched over each image whatever its size and looked up nearest-neighbour at every map
//! pixel's centre, so one mask serves images of the same framing at any resolution.
use crate::data::{load_luma8, DataError, Geometry};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest mask side accepted (the bank's limit on image sides).
pub const MAX_ROI_SIDE: u32 = 8_192;
/// How far a mask's aspect ratio may differ from the images' before stretching it would move
/// what it covers by more than 2 %: beyond that it was drawn for another camera or framing.
const ASPECT_TOLERANCE: f64 = 0.02;

/// A binary mask, row-major, 1 = inspect, 0 = ignore.
#[derive(Clone, Debug, PartialEq)]
pub struct Roi {
    pub width: u32,
    pub height: u32,
    pub mask: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RoiError {
    #[error(transparent)]
    Image(#[from] DataError),
    #[error("{}: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
}

impl Roi {
    /// A mask from raw values (`0` = ignore, anything else = inspect), checked for size.
    pub fn new(width: u32, height: u32, values: &[u8]) -> Result<Roi, String> {
        if width == 0 || height == 0 || width > MAX_ROI_SIDE || height > MAX_ROI_SIDE {
            return Err(format!(
                "mask is {width} x {height}, each side must be 1..={MAX_ROI_SIDE}"
            ));
        }
        if values.len() != width as usize * height as usize {
            return Err(format!(
                "mask holds {} values for {width} x {height} pixels",
                values.len()
            ));
        }
        let mask: Vec<u8> = values.iter().map(|&v| u8::from(v != 0)).collect();
        if !mask.contains(&1) {
            return Err("mask is all black: nothing would be inspected".into());
        }
        Ok(Roi {
            width,
            height,
            mask,
        })
    }

    /// Reads a mask image: grey values of at least 128 (half white) are inspected.
    pub fn from_image(path: &Path) -> Result<Roi, RoiError> {
        let img = load_luma8(path)?;
        let values: Vec<u8> = img.pixels().map(|p| u8::from(p.0[0] >= 128)).collect();
        Roi::new(img.width(), img.height(), &values).map_err(|reason| RoiError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The mask as a black-and-white 8-bit image (for `roi --show` and the app's editor).
    pub fn to_image(&self) -> image::GrayImage {
        let px = self.mask.iter().map(|&v| v * 255).collect();
        image::GrayImage::from_raw(self.width, self.height, px)
            .unwrap_or_else(|| image::GrayImage::new(self.width, self.height))
    }

    /// Lower-case hex sha256 of the mask values, what the bank metadata records.
    pub fn sha256(&self) -> String {
        let digest = Sha256::digest(&self.mask);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Share of the mask that is inspected, 0..=1.
    pub fn inspected_share(&self) -> f32 {
        self.mask.iter().filter(|&&v| v == 1).count() as f32 / self.mask.len().max(1) as f32
    }

    /// Refuses a mask whose aspect ratio is not the images' (`width` x `height`): stretching it
    /// would move what it covers.
    pub fn check_aspect(&self, path: &Path, width: u32, height: u32) -> Result<(), RoiError> {
        let mine = self.width as f64 / self.height as f64;
        let theirs = width as f64 / height.max(1) as f64;
        if (mine / theirs - 1.0).abs() > ASPECT_TOLERANCE {
            return Err(RoiError::Invalid {
                path: path.to_path_buf(),
                reason: format!(
                    "mask is {} x {} but the images are {width} x {height}: a different aspect ratio, so stretching it would move what it covers; draw it at the images' size",
                    self.width, self.height
                ),
            });
        }
        Ok(())
    }

    /// Whether each pixel of the model input (the anomaly map, `g.width` x `g.height`) is
    /// inspected: the map pixel's centre mapped to the original image through `g`, then to the
    /// mask stretched over the image, nearest neighbour. Padding is never inspected.
    pub fn crop_mask(&self, g: &Geometry) -> Vec<bool> {
        let axis = |n: u32, scale: f64, off: f64, orig: u32, side: u32| -> Vec<usize> {
            (0..n)
                .map(|i| {
                    let o = (i as f64 + 0.5 + off) / scale; // original pixel coordinate
                    let m = (o * side as f64 / orig.max(1) as f64).floor();
                    m.clamp(0.0, side as f64 - 1.0) as usize
                })
                .collect()
        };
        let xs = axis(g.width, g.scale_x, g.off_x, g.orig_width, self.width);
        let ys = axis(g.height, g.scale_y, g.off_y, g.orig_height, self.height);
        let w = self.width as usize;
        ys.iter()
            .flat_map(|&y| xs.iter().map(move |&x| self.mask[y * w + x] == 1))
            .zip(g.content_mask())
            .map(|(roi, content)| roi && content)
            .collect()
    }
}

/// The model-input pixels that take part in scores, regions and pixel metrics: the ROI's, and
/// only pixels of the image (not padding). None: all of them.
pub fn inspected(roi: Option<&Roi>, g: &Geometry) -> Option<Vec<bool>> {
    match roi {
        Some(r) => Some(r.crop_mask(g)),
        None => (!g.is_filled()).then(|| g.content_mask()),
    }
}

/// The cells of a `rows` x `cols` patch grid over `g`'s input that show the image (padding
/// cells false): what fit samples for the coreset and inference searches.
pub fn content_cells(g: &Geometry, rows: u32, cols: u32) -> Vec<bool> {
    match g.is_filled() {
        true => vec![true; (rows * cols) as usize],
        false => grid_mask(&g.content_mask(), (g.width, g.height), rows, cols),
    }
}

/// A `rows` x `cols` patch grid laid over a `width` x `height` input mask: a cell is inspected
/// when at least half of its pixels are.
pub fn grid_mask(crop: &[bool], (width, height): (u32, u32), rows: u32, cols: u32) -> Vec<bool> {
    let (w, h) = (width as usize, height as usize);
    let edge = |i: u32, n: u32, s: usize| (i as usize * s) / n.max(1) as usize;
    let mut out = Vec::with_capacity((rows * cols) as usize);
    for r in 0..rows {
        let (y0, y1) = (
            edge(r, rows, h),
            edge(r + 1, rows, h).max(edge(r, rows, h) + 1),
        );
        for c in 0..cols {
            let (x0, x1) = (
                edge(c, cols, w),
                edge(c + 1, cols, w).max(edge(c, cols, w) + 1),
            );
            let mut on = 0;
            let mut all = 0;
            for y in y0..y1.min(h) {
                for x in x0..x1.min(w) {
                    all += 1;
                    on += usize::from(crop.get(y * w + x) == Some(&true));
                }
            }
            out.push(2 * on >= all && all > 0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_mask_stretches_over_a_larger_image() {
        // Left half inspected, 4 x 2 mask over a 400 x 200 image shown at 8 x 8 (no crop).
        let roi = Roi::new(4, 2, &[1, 1, 0, 0, 1, 1, 0, 0]).unwrap();
        let g = Geometry {
            orig_width: 400,
            orig_height: 200,
            scale_x: 8.0 / 400.0,
            scale_y: 8.0 / 200.0,
            off_x: 0.0,
            off_y: 0.0,
            width: 8,
            height: 8,
        };
        let m = roi.crop_mask(&g);
        for y in 0..8 {
            let row: Vec<bool> = m[y * 8..y * 8 + 8].to_vec();
            assert_eq!(row, [true, true, true, true, false, false, false, false]);
        }
        let grid = grid_mask(&m, (8, 8), 2, 2);
        assert_eq!(grid, [true, false, true, false]);
        assert!(roi.check_aspect(Path::new("m.png"), 400, 200).is_ok());
        let e = roi.check_aspect(Path::new("m.png"), 300, 300).unwrap_err();
        assert!(e.to_string().contains("m.png"), "{e}");
    }

    #[test]
    fn padding_is_never_inspected() {
        // A 100 x 400 image centred in a 16 x 16 input: 4 columns of image, 6 of padding each side.
        let g = Geometry {
            orig_width: 100,
            orig_height: 400,
            scale_x: 0.04,
            scale_y: 0.04,
            off_x: -6.0,
            off_y: 0.0,
            width: 16,
            height: 16,
        };
        let m = inspected(None, &g).expect("padded input has a mask");
        let row: Vec<bool> = m[..16].to_vec();
        let want: Vec<bool> = (0..16).map(|x| (6..10).contains(&x)).collect();
        assert_eq!(row, want);
        let all = Roi::new(1, 4, &[1; 4]).unwrap();
        assert_eq!(all.crop_mask(&g), m);
        let filled = Geometry {
            off_x: 0.0,
            scale_x: 0.16,
            ..g
        };
        assert!(inspected(None, &filled).is_none());
    }

    #[test]
    fn bad_masks_are_refused() {
        assert!(Roi::new(2, 2, &[0; 4]).unwrap_err().contains("all black"));
        assert!(Roi::new(2, 2, &[1; 3]).unwrap_err().contains("3 values"));
        assert!(Roi::new(0, 2, &[]).is_err());
        assert_ne!(
            Roi::new(1, 2, &[1, 0]).unwrap().sha256(),
            Roi::new(1, 2, &[0, 1]).unwrap().sha256()
        );
    }
}
