//! Synthetic defects painted onto good images, so a configuration can be chosen from good images
//! alone: a piece of another good image (cut-paste), a darker or brighter stain, or a thin
//! scratch. Each comes with its exact mask. They are deliberately generic and mild: the point is
//! to rank configurations by how well they separate small local changes, not to mimic one part.
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::synthetic::polyline_distance;

/// The kinds, used in turn by defect number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefectKind {
    CutPaste,
    Stain,
    Scratch,
}

impl DefectKind {
    pub fn of(n: u64) -> DefectKind {
        [DefectKind::CutPaste, DefectKind::Stain, DefectKind::Scratch][(n % 3) as usize]
    }
}

/// Paints defect number `n` onto `img` (its kind is `DefectKind::of(n)`); cut-paste content comes
/// from `donor`, which must have the same size. Returns the image and its mask (row-major,
/// `true` = defective), which is never empty.
pub fn implant(img: &RgbImage, donor: &RgbImage, n: u64, seed: u64) -> (RgbImage, Vec<bool>) {
    let (w, h) = img.dimensions();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let side = w.min(h) as f32;
    // Centre inside the middle 80 %, so the defect survives a centre crop.
    let centre = [
        rng.random_range(0.1..0.9) * w as f32,
        rng.random_range(0.1..0.9) * h as f32,
    ];
    let mut out = img.clone();
    let kind = DefectKind::of(n);
    let mask = match kind {
        DefectKind::CutPaste | DefectKind::Stain => blob(&mut rng, w, h, centre, side),
        DefectKind::Scratch => scratch(&mut rng, w, h, centre, side),
    };
    match kind {
        DefectKind::CutPaste => {
            let dx = (rng.random_range(-0.3..0.3) * w as f32) as i64;
            let dy = (rng.random_range(-0.3..0.3) * h as f32) as i64;
            let gain = rng.random_range(0.8..1.2);
            paint(&mut out, &mask, |x, y, _| {
                let sx = (x as i64 + dx).rem_euclid(w as i64) as u32;
                let sy = (y as i64 + dy).rem_euclid(h as i64) as u32;
                donor.get_pixel(sx, sy).0.map(|v| v as f32 * gain)
            });
        }
        DefectKind::Stain => {
            let factor = if rng.random_bool(0.5) {
                rng.random_range(0.6..0.85)
            } else {
                rng.random_range(1.2..1.5)
            };
            paint(&mut out, &mask, |_, _, px| px.map(|v| v as f32 * factor));
        }
        DefectKind::Scratch => {
            let value = if rng.random_bool(0.5) { 20.0 } else { 230.0 };
            let alpha = rng.random_range(0.3..0.6);
            paint(&mut out, &mask, |_, _, px| {
                px.map(|v| value * alpha + v as f32 * (1.0 - alpha))
            });
        }
    }
    (out, mask)
}

/// Sets every masked pixel to `f(x, y, old)`, clamped to 0..255.
fn paint(img: &mut RgbImage, mask: &[bool], f: impl Fn(u32, u32, [u8; 3]) -> [f32; 3]) {
    let w = img.width();
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let (x, y) = (i as u32 % w, i as u32 / w);
        let px = img.get_pixel_mut(x, y);
        px.0 = f(x, y, px.0).map(|v| v.round().clamp(0.0, 255.0) as u8);
    }
}

/// An ellipse (radii 3-12 % of the side) with its edge roughened by smooth noise; the centre
/// itself is always inside.
fn blob(rng: &mut ChaCha8Rng, w: u32, h: u32, c: [f32; 2], side: f32) -> Vec<bool> {
    const GRID: usize = 8;
    let radius = [
        rng.random_range(0.03..0.12) * side,
        rng.random_range(0.03..0.12) * side,
    ];
    let noise: Vec<f32> = (0..GRID * GRID).map(|_| rng.random::<f32>()).collect();
    let at = |x: f32, y: f32| {
        // Bilinear value noise over the whole image.
        let (gx, gy) = (
            x / w as f32 * (GRID - 1) as f32,
            y / h as f32 * (GRID - 1) as f32,
        );
        let (x0, y0) = ((gx as usize).min(GRID - 2), (gy as usize).min(GRID - 2));
        let (tx, ty) = (gx - x0 as f32, gy - y0 as f32);
        let v = |i: usize, j: usize| noise[j * GRID + i];
        let top = v(x0, y0) * (1.0 - tx) + v(x0 + 1, y0) * tx;
        let bottom = v(x0, y0 + 1) * (1.0 - tx) + v(x0 + 1, y0 + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    };
    pixels(w, h, |x, y| {
        let e = ((x - c[0]) / radius[0]).powi(2) + ((y - c[1]) / radius[1]).powi(2);
        e + 0.6 * (at(x, y) - 0.5) < 1.0
    })
}

/// A thin wandering line of four segments starting at the centre.
fn scratch(rng: &mut ChaCha8Rng, w: u32, h: u32, c: [f32; 2], side: f32) -> Vec<bool> {
    let mut angle = rng.random_range(0.0..std::f32::consts::PI);
    let mut pts = vec![c];
    for _ in 0..4 {
        angle += rng.random_range(-0.6..0.6);
        let len = rng.random_range(0.04..0.1) * side;
        let [x, y] = pts[pts.len() - 1];
        pts.push([x + len * angle.cos(), y + len * angle.sin()]);
    }
    let half_width = (side * 0.008).max(2.0) / 2.0;
    pixels(w, h, |x, y| polyline_distance(&pts, x, y) <= half_width)
}

/// `inside` evaluated at every pixel centre, row-major.
fn pixels(w: u32, h: u32, inside: impl Fn(f32, f32) -> bool) -> Vec<bool> {
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| inside(x as f32 + 0.5, y as f32 + 0.5))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(size: u32, shift: u8) -> RgbImage {
        RgbImage::from_fn(size, size, |x, y| {
            image::Rgb([(x as u8).wrapping_add(shift), y as u8, 128])
        })
    }

    #[test]
    fn every_kind_changes_exactly_its_mask_and_is_deterministic() {
        let (img, donor) = (gradient(96, 0), gradient(96, 77));
        for n in 0..9 {
            let (out, mask) = implant(&img, &donor, n, 5);
            let area = mask.iter().filter(|&&m| m).count();
            assert!(area > 0, "defect {n} has an empty mask");
            assert!(area < mask.len() / 4, "defect {n} covers {area} pixels");
            for (i, (a, b)) in img.pixels().zip(out.pixels()).enumerate() {
                assert!(
                    mask[i] || a == b,
                    "defect {n} changed pixel {i} outside its mask"
                );
            }
            let changed = img
                .pixels()
                .zip(out.pixels())
                .filter(|(a, b)| a != b)
                .count();
            assert!(
                changed * 2 > area,
                "defect {n} ({:?}) changed only {changed} of {area} mask pixels",
                DefectKind::of(n)
            );
            assert_eq!(implant(&img, &donor, n, 5), (out, mask), "defect {n}");
        }
        assert_ne!(implant(&img, &donor, 0, 5).1, implant(&img, &donor, 0, 6).1);
    }
}
