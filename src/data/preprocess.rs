//! The model-input pipeline of the reference implementation (torchvision on PIL images):
//! `Resize` + `CenterCrop` (or a plain square resize, or the whole image with its aspect kept),
//! then `ToTensor` + `Normalize`.
use image::{ImageBuffer, Pixel, RgbImage};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::resize::{resize_window, Window};
use super::{load_luma8, DataError, Geometry};

/// How the image is turned into the model input. Sizes of 0 are treated as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropMode {
    /// torchvision `Resize(resize)` (shorter side to `resize`) then `CenterCrop(crop)`: the paper's
    /// preprocessing. Parts near the border of elongated images are cut off.
    Center { resize: u32, crop: u32 },
    /// Resize the whole image to `size` x `size`, ignoring the aspect ratio (`--squash`).
    Full { size: u32 },
    /// The whole image, aspect ratio kept, every image scaled by the same `long / native` (the
    /// working resolution over the training images' native longer side, so a part keeps its
    /// size in pixels whatever its length), centred in a `width` x `height` input that `fit`
    /// made just large enough for its training images (`whole_for`), black padding around. An
    /// image within one `WHOLE_ALIGN` cell of the input fills it; a larger one is shrunk to fit.
    Whole {
        width: u32,
        height: u32,
        long: u32,
        native: u32,
        /// A padded part is placed on this grid (0: centred as it comes, banks fitted before
        /// session 13): its size rounded to whole cells and its offset a multiple of one, so
        /// every part's outline falls on a cell border and its outline patches look alike from
        /// part to part (`fit` sets `WHOLE_ALIGN`).
        #[serde(default)]
        snap: u32,
    },
}

/// Whole-image inputs are multiples of this (the patch grid's stride): any rounding is under one
/// feature cell.
pub const WHOLE_ALIGN: u32 = 8;

impl CropMode {
    /// Model input `(width, height)` this mode produces.
    pub fn input_dims(&self) -> (u32, u32) {
        match *self {
            CropMode::Center { crop, .. } => (crop.max(1), crop.max(1)),
            CropMode::Full { size } => (size.max(1), size.max(1)),
            CropMode::Whole { width, height, .. } => (width.max(1), height.max(1)),
        }
    }

    /// The geometry's name, as `fit` prints it and the bank's metadata shows it.
    pub fn describe(&self) -> String {
        let (w, h) = self.input_dims();
        match *self {
            CropMode::Center { resize, crop } => {
                format!("crop (shorter side to {resize}, centre {crop} x {crop})")
            }
            CropMode::Full { size } => format!("squash ({size} x {size}, aspect not kept)"),
            CropMode::Whole {
                long, native, snap, ..
            } => format!(
                "whole ({w} x {h} input, aspect kept, images scaled by {long}/{native} = {:.3}{})",
                long as f64 / native.max(1) as f64,
                match snap {
                    0 => String::new(),
                    g => format!(", padded parts on the {g}-px grid"),
                }
            ),
        }
    }

    /// The whole-image input for training images of `sizes` (width, height) at working
    /// resolution `long`: all scaled by `long` over their median longer side (`native`), the
    /// input just large enough for every one of them, rounded to `WHOLE_ALIGN`. One size (a line
    /// camera) gives that size's aspect and no padding; parts of several lengths share the
    /// longest one's input; mixed orientations share a box around both.
    pub fn whole_for(sizes: &[(u32, u32)], long: u32) -> CropMode {
        let long = long.max(WHOLE_ALIGN);
        let native = super::working::native_long_side(sizes).max(1);
        let s = long as f64 / native as f64;
        let align = |v: f64| {
            let a = WHOLE_ALIGN as f64;
            ((v / a).round() * a).max(a)
        };
        let (mut width, mut height) = (0.0f64, 0.0f64);
        for &(w, h) in sizes {
            width = width.max(align(w.max(1) as f64 * s));
            height = height.max(align(h.max(1) as f64 * s));
        }
        if sizes.is_empty() {
            (width, height) = (align(long as f64), align(long as f64));
        }
        CropMode::Whole {
            width: width as u32,
            height: height as u32,
            long,
            native,
            snap: WHOLE_ALIGN,
        }
    }
}

/// Where the resized image goes and which `out_w` x `out_h` window of it is kept (a window
/// reaching past the resized image is padded with black).
struct Plan {
    width: u32,
    height: u32,
    left: i64,
    top: i64,
    out_w: u32,
    out_h: u32,
}

impl Plan {
    /// The plan seen from the original `w` x `h` image.
    fn geometry(&self, w: u32, h: u32) -> Geometry {
        Geometry {
            orig_width: w,
            orig_height: h,
            scale_x: self.width as f64 / w.max(1) as f64,
            scale_y: self.height as f64 / h.max(1) as f64,
            off_x: self.left as f64,
            off_y: self.top as f64,
            width: self.out_w,
            height: self.out_h,
        }
    }
}

fn plan(w: u32, h: u32, mode: CropMode) -> Plan {
    match mode {
        CropMode::Center { resize, crop } => {
            let (resize, crop) = (resize.max(1), crop.max(1));
            // torchvision `_compute_resized_output_size`: the long side is
            // `int(resize * long / short)`, a float64 quotient truncated.
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let new_long = ((resize as u64 * long as u64) as f64 / short.max(1) as f64) as u32;
            let (width, height) = if w <= h {
                (resize, new_long.max(1))
            } else {
                (new_long.max(1), resize)
            };
            Plan {
                width,
                height,
                left: center_crop_offset(width, crop),
                top: center_crop_offset(height, crop),
                out_w: crop,
                out_h: crop,
            }
        }
        CropMode::Full { size } => {
            let size = size.max(1);
            Plan {
                width: size,
                height: size,
                left: 0,
                top: 0,
                out_w: size,
                out_h: size,
            }
        }
        CropMode::Whole {
            long, native, snap, ..
        } => {
            let (out_w, out_h) = mode.input_dims();
            let s = (long as f64 / native.max(1) as f64)
                .min(out_w as f64 / w.max(1) as f64)
                .min(out_h as f64 / h.max(1) as f64);
            let fit = |n: u32, out: u32| {
                let n = (n.max(1) as f64 * s).round();
                let cells = match snap {
                    0 => 0.0,
                    g => (n / g as f64).round() * g as f64,
                };
                // A part under half a cell is not stretched to one: it stays too small to inspect.
                let n = if cells > 0.0 { cells } else { n };
                (n as u32).clamp(1, out)
            };
            let (rw, rh) = (fit(w, out_w), fit(h, out_h));
            // Centred, then back onto the grid (when snapping).
            let offset = |out: u32, n: u32| -> i64 {
                let centre = ((out - n) / 2) as i64;
                match snap {
                    0 => centre,
                    g => centre / g as i64 * g as i64,
                }
            };
            if out_w - rw < WHOLE_ALIGN && out_h - rh < WHOLE_ALIGN {
                // Within one feature cell of the input's aspect: fill it, stretched by less
                // than a cell, rather than pad a sliver.
                Plan {
                    width: out_w,
                    height: out_h,
                    left: 0,
                    top: 0,
                    out_w,
                    out_h,
                }
            } else {
                Plan {
                    width: rw,
                    height: rh,
                    left: -offset(out_w, rw),
                    top: -offset(out_h, rh),
                    out_w,
                    out_h,
                }
            }
        }
    }
}

/// torchvision `center_crop`: `int(round((n - crop) / 2.0))` (Python rounds halves to even);
/// a crop larger than the image zero-pads it with `(crop - n) // 2` before.
fn center_crop_offset(n: u32, crop: u32) -> i64 {
    if crop > n {
        return -(((crop - n) / 2) as i64);
    }
    let d = (n - crop) as i64;
    let (q, odd) = (d / 2, d % 2 == 1);
    if odd && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// Copies the `out_w` x `out_h` window at (`left`, `top`), zero outside the image.
fn crop_window<P: Pixel<Subpixel = u8>>(
    img: &ImageBuffer<P, Vec<u8>>,
    left: i64,
    top: i64,
    (out_w, out_h): (u32, u32),
) -> ImageBuffer<P, Vec<u8>> {
    let c = P::CHANNEL_COUNT as usize;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let n = out_w as usize;
    let mut out = vec![0u8; n * out_h as usize * c];
    let src = img.as_raw();
    let x0 = left.max(0);
    let x1 = (left + out_w as i64).min(w);
    if x1 > x0 {
        for (y, row) in out.chunks_mut(n * c).enumerate() {
            let sy = top + y as i64;
            if sy < 0 || sy >= h {
                continue;
            }
            let s = ((sy * w + x0) as usize) * c;
            let d = ((x0 - left) as usize) * c;
            let len = ((x1 - x0) as usize) * c;
            row[d..d + len].copy_from_slice(&src[s..s + len]);
        }
    }
    ImageBuffer::from_raw(out_w, out_h, out).expect("the window buffer has out_w*out_h pixels")
}

/// Turns a decoded image into the model input and says where it sits in the original.
/// Bit-exact with torchvision `Resize` + `CenterCrop` on a PIL RGB image.
pub fn preprocess(img: &RgbImage, mode: CropMode) -> (RgbImage, Geometry) {
    let p = plan(img.width(), img.height(), mode);
    let geometry = p.geometry(img.width(), img.height());
    (resize_and_crop(img, &p), geometry)
}

/// The plan's window: only the part of the resize that the window keeps is computed.
fn resize_and_crop<P: Pixel<Subpixel = u8>>(
    img: &ImageBuffer<P, Vec<u8>>,
    p: &Plan,
) -> ImageBuffer<P, Vec<u8>> {
    let clamp = |v: i64, n: u32| v.clamp(0, n as i64) as u32;
    let window = Window {
        x0: clamp(p.left, p.width),
        y0: clamp(p.top, p.height),
        x1: clamp(p.left + p.out_w as i64, p.width),
        y1: clamp(p.top + p.out_h as i64, p.height),
    };
    let part = resize_window(img, p.width, p.height, window);
    crop_window(
        &part,
        p.left - window.x0 as i64,
        p.top - window.y0 as i64,
        (p.out_w, p.out_h),
    )
}

/// Where `preprocess` would place its crop in a `w` x `h` image, without touching pixels (the
/// GUI's stand-in scorer lays its made-up results out with it).
pub fn crop_geometry(w: u32, h: u32, mode: CropMode) -> Geometry {
    plan(w, h, mode).geometry(w, h)
}

/// Loads a ground-truth mask and maps it onto the model input exactly as `preprocess` maps its
/// image (Pillow bilinear on the 8-bit mask, as the reference dataset does), then binarises with
/// `value >= 128`. MVTec masks are 0/255; magnetic-tile masks have grey anti-aliased borders,
/// which this counts as defect when they are at least half intensity. Returns one value in
/// {0, 1} per model-input pixel, row-major. The mask is resized from its own size, which must equal the
/// image's for the two to line up (it does in MVTec AD and magnetic tile).
pub fn load_mask(path: &Path, mode: CropMode) -> Result<Vec<u8>, DataError> {
    let mask = load_luma8(path)?;
    let p = plan(mask.width(), mask.height(), mode);
    Ok(resize_and_crop(&mask, &p)
        .into_raw()
        .into_iter()
        .map(|v| u8::from(v >= 128))
        .collect())
}

/// torchvision `ToTensor` + `Normalize(mean, std)`: CHW float32 `(v / 255 - mean) / std`, with
/// each step rounded to f32 in the same order as torch so the result matches it bit for bit.
pub fn to_chw_f32(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let n = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * n];
    for (c, plane) in out.chunks_mut(n.max(1)).enumerate().take(3) {
        for (dst, px) in plane.iter_mut().zip(img.pixels()) {
            *dst = (px.0[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    out
}
