//! Pillow's `Image.resize(size, BILINEAR)`, reproduced bit for bit (Pillow's `Resample.c`).
//!
//! The reference preprocessing runs on PIL images, so matching Pillow exactly is what makes our
//! model inputs identical to the official ones. Pillow's bilinear filter is antialiased: when
//! shrinking, its support grows with the scale factor. Weights are normalised per output pixel,
//! rounded to fixed point with 22 fractional bits, and applied in two passes (horizontal first
//! unless the height shrinks much more than the width) through an 8-bit intermediate, each pass
//! rounding half up and clipping to 0..=255.
use image::{GrayImage, RgbImage};
use rayon::prelude::*;

/// Pillow's `PRECISION_BITS` for 8-bit images: 32 - 8 bits of value - 2 bits of headroom.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Resizes like Pillow's `img.resize((w, h), Image.BILINEAR)` on an RGB image, bit for bit.
pub fn resize_bilinear_pil(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let out = resample::<3>(img.as_raw(), img.width(), img.height(), w, h);
    RgbImage::from_raw(w, h, out).expect("resample returns w*h*3 bytes")
}

/// Single-channel version (Pillow mode "L"), used for masks.
pub fn resize_bilinear_pil_gray(img: &GrayImage, w: u32, h: u32) -> GrayImage {
    let out = resample::<1>(img.as_raw(), img.width(), img.height(), w, h);
    GrayImage::from_raw(w, h, out).expect("resample returns w*h bytes")
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
/// with the same operation order so every weight rounds identically.
fn taps(in_size: u32, out_size: u32) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let n = out_size as usize;
    let mut taps = Taps {
        ksize,
        first: Vec::with_capacity(n),
        count: Vec::with_capacity(n),
        weights: vec![0; n * ksize],
    };
    let mut k = vec![0f64; ksize];
    for xx in 0..n {
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
        let row = &mut taps.weights[xx * ksize..(xx + 1) * ksize];
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

/// Two-pass resample of interleaved 8-bit pixels with `C` channels (`ImagingResample`). Each
/// pass rounds to 8 bits, so the pass order changes results; Pillow 13 runs the vertical pass
/// first when the height shrinks by more than twice what the width shrinks (read from its
/// binary, confirmed on 592 random size pairs), and the horizontal pass first otherwise.
fn resample<const C: usize>(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
    if dw == 0 || dh == 0 || sw == 0 || sh == 0 {
        return vec![0; dw as usize * dh as usize * C];
    }
    let (sw_, dw_) = (sw as usize, dw as usize);
    match (dw != sw, dh != sh) {
        (false, false) => src.to_vec(),
        (true, false) => horizontal::<C>(src, sw_, &taps(sw, dw)),
        (false, true) => vertical::<C>(src, sw_, &taps(sh, dh)),
        (true, true) => {
            let (hor, ver) = (taps(sw, dw), taps(sh, dh));
            if sh > dh && (sh - dh) as i64 > 2 * (sw as i64 - dw as i64) {
                horizontal::<C>(&vertical::<C>(src, sw_, &ver), sw_, &hor)
            } else {
                // Only the source rows the vertical pass reads go through the horizontal pass.
                let row0 = ver.first[0];
                let row1 = ver.first[dh as usize - 1] + ver.count[dh as usize - 1];
                let rows = &src[row0 * sw_ * C..row1 * sw_ * C];
                let shifted = Taps {
                    first: ver.first.iter().map(|f| f - row0).collect(),
                    ..ver
                };
                vertical::<C>(&horizontal::<C>(rows, sw_, &hor), dw_, &shifted)
            }
        }
    }
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
