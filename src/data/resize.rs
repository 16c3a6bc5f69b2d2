//! Pillow's `Image.resize(size, BILINEAR)`, reproduced bit for bit (Pillow's `Resample.c`).
//!
//! The reference preprocessing runs on PIL images, so matching Pillow exactly is what makes our
//! model inputs identical to the official ones. Pillow's bilinear filter is antialiased: when
//! shrinking, its support grows with the scale factor. Weights are normalised per output pixel,
//! rounded to fixed point with 22 fractional bits, and applied in two passes (horizontal first
//! unless the height shrinks much more than the width) through an 8-bit intermediate, each pass
//! rounding half up and clipping to 0..=255.
use image::{GrayImage, ImageBuffer, Pixel, RgbImage};
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

/// Pillow's `PRECISION_BITS` for 8-bit images: 32 - 8 bits of value - 2 bits of headroom.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Resizes like Pillow's `img.resize((w, h), Image.BILINEAR)` on an RGB image, bit for bit.
pub fn resize_bilinear_pil(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    resize_window(img, w, h, Window::all(w, h))
}

/// Single-channel version (Pillow mode "L"), used for masks.
pub fn resize_bilinear_pil_gray(img: &GrayImage, w: u32, h: u32) -> GrayImage {
    resize_window(img, w, h, Window::all(w, h))
}

/// The part `[x0, x1) x [y0, y1)` of a `w` x `h` resize that a caller keeps: only it is computed,
/// so cropping a small square out of a huge resize never allocates the whole resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl Window {
    pub fn all(w: u32, h: u32) -> Window {
        Window {
            x0: 0,
            y0: 0,
            x1: w,
            y1: h,
        }
    }

    fn width(&self) -> u32 {
        self.x1.saturating_sub(self.x0)
    }

    fn height(&self) -> u32 {
        self.y1.saturating_sub(self.y0)
    }
}

/// The `window` of Pillow's bilinear resize of `img` to `w` x `h`, bit for bit the same pixels as
/// cropping the full resize. `window` must lie inside `w` x `h`.
pub fn resize_window<P: Pixel<Subpixel = u8>>(
    img: &ImageBuffer<P, Vec<u8>>,
    w: u32,
    h: u32,
    window: Window,
) -> ImageBuffer<P, Vec<u8>> {
    let out = match P::CHANNEL_COUNT {
        1 => resample::<1>(img.as_raw(), img.width(), img.height(), w, h, window),
        2 => resample::<2>(img.as_raw(), img.width(), img.height(), w, h, window),
        3 => resample::<3>(img.as_raw(), img.width(), img.height(), w, h, window),
        4 => resample::<4>(img.as_raw(), img.width(), img.height(), w, h, window),
        c => unreachable!("image has no {c}-channel 8-bit pixel type"),
    };
    ImageBuffer::from_raw(window.width(), window.height(), out)
        .expect("resample returns the window's pixels")
}

/// Fixed-point filter taps along one axis: output pixel `i` reads `count[i]` source pixels from
/// `first[i]` with weights `weights[i * ksize ..]`.
struct Taps {
    ksize: usize,
    first: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
}

fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` of Pillow for the bilinear filter (support 1),
/// with the same operation order so every weight rounds identically. Only the taps of
/// `outputs` are computed: each output's taps depend on nothing but its own index.
fn taps(in_size: u32, out_size: u32, outputs: Range<usize>) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let n = outputs.len();
    let mut taps = Taps {
        ksize,
        first: Vec::with_capacity(n),
        count: Vec::with_capacity(n),
        weights: vec![0; n * ksize],
    };
    let mut k = vec![0f64; ksize];
    for (i, xx) in outputs.enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` cast truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let count = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = bilinear_filter(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut taps.weights[i * ksize..(i + 1) * ksize];
        for (dst, &kx) in row.iter_mut().zip(&k[..count]) {
            let kx = if ww != 0.0 { kx / ww } else { kx };
            let scaled = kx * (1u32 << PRECISION_BITS) as f64;
            *dst = if kx < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        taps.first.push(xmin as usize);
        taps.count.push(count);
    }
    taps
}

/// Pillow's `clip8`: drop the fraction (the half was added up front), clamp to a byte.
#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Two-pass resample of interleaved 8-bit pixels with `C` channels (`ImagingResample`), computing
/// only the output `window`. Each pass rounds to 8 bits, so the pass order changes results;
/// Pillow 13 runs the vertical pass first when the height shrinks by more than twice what the
/// width shrinks (read from its binary, confirmed on 592 random size pairs), and the horizontal
/// pass first otherwise. The order is decided on the full sizes, as Pillow does.
fn resample<const C: usize>(
    src: &[u8],
    sw: u32,
    sh: u32,
    dw: u32,
    dh: u32,
    win: Window,
) -> Vec<u8> {
    let (wx, wy) = (
        win.x0 as usize..win.x1 as usize,
        win.y0 as usize..win.y1 as usize,
    );
    if wx.is_empty() || wy.is_empty() {
        return Vec::new();
    }
    if sw == 0 || sh == 0 {
        return vec![0; wx.len() * wy.len() * C];
    }
    let sw_ = sw as usize;
    // Source rows `rows` restricted to the columns `cols` (both in source pixels): borrowed
    // when the columns are whole rows, so no pass copies its input.
    let sub = |rows: Range<usize>, cols: Range<usize>| -> Cow<'_, [u8]> {
        if cols.len() == sw_ {
            Cow::Borrowed(&src[rows.start * sw_ * C..rows.end * sw_ * C])
        } else {
            rows.flat_map(|y| &src[(y * sw_ + cols.start) * C..(y * sw_ + cols.end) * C])
                .copied()
                .collect()
        }
    };
    match (dw != sw, dh != sh) {
        (false, false) => sub(wy, wx).into_owned(),
        (true, false) => horizontal::<C>(&sub(wy, 0..sw_), sw_, &taps(sw, dw, wx)),
        (false, true) => {
            let (rows, ver) = rows_read(taps(sh, dh, wy));
            vertical::<C>(&sub(rows, wx.clone()), wx.len(), &ver)
        }
        (true, true) => {
            let hor = taps(sw, dw, wx.clone());
            let (rows, ver) = rows_read(taps(sh, dh, wy));
            let rows = sub(rows, 0..sw_);
            if sh > dh && (sh - dh) as i64 > 2 * (sw as i64 - dw as i64) {
                horizontal::<C>(&vertical::<C>(&rows, sw_, &ver), sw_, &hor)
            } else {
                vertical::<C>(&horizontal::<C>(&rows, sw_, &hor), wx.len(), &ver)
            }
        }
    }
}

/// The source rows a vertical pass with `ver` reads, and its taps counted from the first of
/// them: only those rows go through the passes.
fn rows_read(ver: Taps) -> (Range<usize>, Taps) {
    let last = ver.first.len() - 1;
    let rows = ver.first[0]..ver.first[last] + ver.count[last];
    let shifted = Taps {
        first: ver.first.iter().map(|f| f - rows.start).collect(),
        ..ver
    };
    (rows, shifted)
}

/// `ImagingResampleHorizontal_8bpc`: every row of `src` (`width` pixels) to `taps` outputs.
fn horizontal<const C: usize>(src: &[u8], width: usize, taps: &Taps) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let dw = taps.count.len();
    let mut out = vec![0u8; src.len() / (width * C) * dw * C];
    out.par_chunks_mut(dw * C)
        .zip(src.par_chunks(width * C))
        .for_each(|(out_row, in_row)| {
            for xx in 0..dw {
                let k = &taps.weights[xx * taps.ksize..][..taps.count[xx]];
                let base = taps.first[xx] * C;
                let mut ss = [half; C];
                for (x, &kx) in k.iter().enumerate() {
                    let px = &in_row[base + x * C..base + x * C + C];
                    for c in 0..C {
                        ss[c] += px[c] as i32 * kx;
                    }
                }
                for c in 0..C {
                    out_row[xx * C + c] = clip8(ss[c]);
                }
            }
        });
    out
}

/// `ImagingResampleVertical_8bpc`: output row `i` mixes rows `taps.first[i]..` of `src`.
fn vertical<const C: usize>(src: &[u8], width: usize, taps: &Taps) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let stride = width * C;
    let mut out = vec![0u8; taps.count.len() * stride];
    out.par_chunks_mut(stride)
        .enumerate()
        .for_each(|(yy, out_row)| {
            let k = &taps.weights[yy * taps.ksize..][..taps.count[yy]];
            let first = taps.first[yy];
            let mut acc = vec![half; stride];
            for (y, &ky) in k.iter().enumerate() {
                let in_row = &src[(first + y) * stride..(first + y + 1) * stride];
                for (a, &v) in acc.iter_mut().zip(in_row) {
                    *a += v as i32 * ky;
                }
            }
            for (o, &a) in out_row.iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        });
    out
}
