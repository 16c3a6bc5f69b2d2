//! A deterministic high-resolution category of long machined bars, for judging how the whole
//! part is seen: 1 to 4 megapixels, aspect 1:1 to 1:4, defects 3 to 40 pixels across anywhere.
//!
//! Every image shows one bar cut from the same stock (height fixed, length 1 to 4 times it) on a
//! dark belt: through holes along its axis, a groove, bevelled edges, lengthwise grinding streaks,
//! curved feed marks, and small pose and lighting changes. Test folders name the defect's size
//! class and position (`small_end`, `large_centre`, ...) so eval's per-image `defect` field gives
//! the breakdown; each defect (crack, pit, dent or stain) lies wholly on the part's material, its
//! mask's bounding extent is within its class, and its pixels lie within its third of the image.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f32::consts::{PI, TAU};
use std::path::Path;

use super::dataset::Dataset;
use super::synthetic::{
    category_root, cov, lerp, plan, polyline_distance, rasterize, rotate, write_category, Dent,
    Job, Noise1, Noise2, Raster, Stain,
};
use super::DataError;

/// Size classes: name and the range `[lo, hi)` of the mask's bounding extent (the larger of its
/// width and height), in pixels.
pub const SIZE_CLASSES: [(&str, u32, u32); 3] =
    [("small", 3, 10), ("medium", 10, 20), ("large", 20, 40)];

/// Positions along the long axis: `centre` is the middle third of the image, `end` the outer two.
pub const POSITIONS: [&str; 2] = ["centre", "end"];

/// Aspect ratios (length / height), cycled over the images of each folder.
pub const ASPECTS: [u32; 4] = [1, 2, 3, 4];

/// Height of every image, in pixels; the width is `ASPECTS[i % 4]` times it.
pub const HEIGHT: u32 = 1000;

/// The test folders, `<class>_<position>`, in the order their streams are numbered.
pub fn defect_folders() -> Vec<String> {
    SIZE_CLASSES
        .iter()
        .flat_map(|(class, ..)| POSITIONS.iter().map(move |pos| format!("{class}_{pos}")))
        .collect()
}

/// The size of image `index` of a folder: `HEIGHT` high, `ASPECTS[index % 4]` times as wide.
pub fn image_size(index: usize) -> (u32, u32) {
    (HEIGHT * ASPECTS[index % ASPECTS.len()], HEIGHT)
}

/// What to generate. The same spec always produces the same bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongSpec {
    pub n_train: usize,
    pub n_test_good: usize,
    /// Test images in each of the six `<class>_<position>` folders.
    pub n_test_defect_per_folder: usize,
    pub seed: u64,
}

impl Default for LongSpec {
    /// Sized so a fit on a 2-core CPU takes minutes: 60 good training bars, 20 good and 36
    /// defective test bars.
    fn default() -> Self {
        Self {
            n_train: 60,
            n_test_good: 20,
            n_test_defect_per_folder: 6,
            seed: 0,
        }
    }
}

/// Marker content: the spec and which generator wrote the folder.
#[derive(Serialize)]
struct Marker<'a> {
    kind: &'static str,
    #[serde(flatten)]
    spec: &'a LongSpec,
}

/// Writes `<out>/<name>/{train/good, test/<class>_<position>, ground_truth/...}` and opens it,
/// with the same guarantees as [`super::synthetic::generate`] (atomic writes, unchanged files
/// left alone, foreign folders refused, stale images removed).
pub fn generate(out: &Path, name: &str, spec: &LongSpec) -> Result<Dataset, DataError> {
    let root = category_root(out, name)?;
    let folders = defect_folders();
    let folder_refs: Vec<&str> = folders.iter().map(String::as_str).collect();
    let jobs = plan(
        &root,
        spec.n_train,
        spec.n_test_good,
        &folder_refs,
        spec.n_test_defect_per_folder,
    )?;
    let marker = Marker { kind: "long", spec };
    write_category(&root, &marker, &jobs, |job| {
        let (part, defect) = scene(spec, job).map_err(|reason| DataError::Dataset {
            path: job.image.clone(),
            reason,
        })?;
        Ok(draw(&part, defect.as_ref()))
    })
}

/// The part and defect of one job, from its own random stream.
fn scene(spec: &LongSpec, job: &Job) -> Result<(Bar, Option<Flaw>), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(job.stream);
    let index = (job.stream & 0xFFFF_FFFF) as usize;
    let part = Bar::new(&mut rng, image_size(index));
    let defect = match job.defect {
        Some(folder) => {
            let (class, position) = (folder / POSITIONS.len(), folder % POSITIONS.len());
            Some(Flaw::place(&mut rng, &part, SIZE_CLASSES[class], position)?)
        }
        None => None,
    };
    Ok((part, defect))
}

/// Renders a bar with its defect, if any.
fn draw(part: &Bar, defect: Option<&Flaw>) -> Raster {
    rasterize(part.width, part.height, part.noise_seed, |x, y| {
        part.shade(defect, x as f32 + 0.5, y as f32 + 0.5)
    })
}

/// Bevel width of the outer edge and of the hole chamfers, and the groove's half width, in pixels.
const BEVEL: f32 = 12.0;
const HOLE_CHAMFER: f32 = 8.0;
const GROOVE: f32 = 3.0;

/// Pose, geometry, lighting and texture of one bar.
struct Bar {
    width: u32,
    height: u32,
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
    /// Half length, half height and corner radius, pixels.
    half_len: f32,
    half_h: f32,
    corner: f32,
    /// Hole centres on the axis (part-space u), their radius, and the groove's v.
    holes: Vec<f32>,
    hole_r: f32,
    groove_v: f32,
    gain: f32,
    light: [f32; 2],
    light_local: [f32; 2],
    tint: [f32; 3],
    face: Noise2,
    belt: Noise2,
    streaks: Noise1,
    noise_seed: u64,
}

impl Bar {
    fn new(rng: &mut ChaCha8Rng, (width, height): (u32, u32)) -> Self {
        let (w, h) = (width as f32, height as f32);
        let half_len = 0.5 * (w - 0.08 * h) * rng.random_range(0.99..1.0);
        let half_h = 0.27 * h * rng.random_range(0.99..1.01);
        let angle: f32 = rng.random_range(-0.004..0.004);
        let light_angle: f32 = -2.36 + rng.random_range(-0.3..0.3);
        let light = [light_angle.cos(), light_angle.sin()];
        let (cos, sin) = (angle.cos(), angle.sin());
        let n_holes = (width / height).max(1) as usize;
        let spacing = 2.0 * half_len / n_holes as f32;
        Self {
            width,
            height,
            cx: 0.5 * w + rng.random_range(-0.01..0.01) * h,
            cy: h * (0.5 + rng.random_range(-0.02..0.02)),
            cos,
            sin,
            half_len,
            half_h,
            corner: 0.06 * h,
            holes: (0..n_holes)
                .map(|k| -half_len + (k as f32 + 0.5) * spacing)
                .collect(),
            hole_r: 0.055 * h,
            groove_v: 0.6 * half_h,
            gain: rng.random_range(0.92..1.08),
            light,
            light_local: rotate(light, cos, -sin),
            tint: std::array::from_fn(|_| rng.random_range(0.985..1.015)),
            face: Noise2::new(rng),
            belt: Noise2::new(rng),
            streaks: Noise1::new(rng),
            noise_seed: rng.random(),
        }
    }

    /// Part-space coordinates (u along the bar, v across) of an image point.
    fn local(&self, x: f32, y: f32) -> [f32; 2] {
        rotate([x - self.cx, y - self.cy], self.cos, -self.sin)
    }

    /// Signed distance to the rounded outline (positive inside) and the outward normal there.
    fn outline(&self, u: f32, v: f32) -> (f32, [f32; 2]) {
        let q = [
            u.abs() - (self.half_len - self.corner),
            v.abs() - (self.half_h - self.corner),
        ];
        let (qx, qy) = (q[0].max(0.0), q[1].max(0.0));
        let out = qx.hypot(qy);
        let n = if out > 1e-3 {
            [qx / out, qy / out]
        } else if q[0] > q[1] {
            [1.0, 0.0]
        } else {
            [0.0, 1.0]
        };
        let sd = self.corner - out - q[0].max(q[1]).min(0.0);
        (sd, [n[0] * u.signum(), n[1] * v.signum()])
    }

    /// The nearest hole's centre (part space) and the distance to it.
    fn nearest_hole(&self, u: f32, v: f32) -> ([f32; 2], f32) {
        let spacing = 2.0 * self.half_len / self.holes.len() as f32;
        let k = ((u - self.holes[0]) / spacing).round();
        let hu = self.holes[(k.max(0.0) as usize).min(self.holes.len() - 1)];
        ([hu, 0.0], (u - hu).hypot(v))
    }

    /// How much of the pixel at image point (x, y) is the bar's material (0 to 1).
    fn material(&self, x: f32, y: f32) -> f32 {
        let [u, v] = self.local(x, y);
        let (_, d) = self.nearest_hole(u, v);
        cov(self.outline(u, v).0) * (1.0 - cov(self.hole_r - d))
    }

    /// Colour of the pixel centred at (x, y) and whether it belongs to the defect mask.
    fn shade(&self, defect: Option<&Flaw>, x: f32, y: f32) -> ([f32; 3], bool) {
        let (w, h) = (self.width as f32, self.height as f32);
        // The belt: dark, mottled, with the bar's soft shadow away from the light.
        let mottle = self.belt.at(x / (0.08 * h), y / (0.08 * h))
            + 0.5 * self.belt.at(x / (0.015 * h) + 7.0, y / (0.015 * h));
        let [su, sv] = self.local(x + self.light[0] * 0.02 * h, y + self.light[1] * 0.02 * h);
        let shadow = 1.0 - 0.45 * cov((self.outline(su, sv).0 + 0.01 * h) / (0.04 * h) * 8.0);
        let belt = [38.0, 40.0, 45.0].map(|c| c * (1.0 + 0.07 * mottle) * shadow);

        let [u, v] = self.local(x, y);
        let (sd, normal) = self.outline(u, v);
        let outer = cov(sd);
        if outer <= 0.0 {
            return (belt, false);
        }
        let (hole_c, hole_d) = self.nearest_hole(u, v);
        let hole = cov(self.hole_r - hole_d);
        let alpha = outer * (1.0 - hole);
        let ll = self.light_local;

        // Ground face: streaks along the bar, curved feed marks across it, broad mottling and a
        // gentle falloff of the line light towards the far edge.
        let streaks = 0.035 * self.streaks.at(v * 0.9) + 0.025 * self.streaks.at(v * 0.08 + 1000.0);
        let feed = 0.018 * (TAU * (u + 0.0004 * v * v) / 37.0).sin();
        let mottle = 0.04 * self.face.at(u / (0.3 * h), v / (0.3 * h));
        let falloff = 0.08 * (v / self.half_h) * ll[1] + 0.04 * (x / w - 0.5);
        let mut b = 0.74 + streaks + feed + mottle + falloff;
        // The groove: a dark line with a lit lip.
        if u.abs() < self.half_len - 0.1 * h {
            let gd = (v - self.groove_v).abs();
            b *= 1.0 - 0.5 * cov(GROOVE - gd) + 0.12 * cov(GROOVE + 1.5 - gd) * cov(gd - GROOVE);
        }
        // Bevels: the outer edge faces outwards, the hole chamfers inwards.
        let nl = normal[0] * ll[0] + normal[1] * ll[1];
        b = lerp(b, 0.76 + 0.45 * nl, cov(BEVEL - sd));
        if hole_d > 1e-3 {
            let ml = ((u - hole_c[0]) * ll[0] + (v - hole_c[1]) * ll[1]) / hole_d;
            b = lerp(
                b,
                0.76 - 0.45 * ml,
                cov(self.hole_r + HOLE_CHAMFER - hole_d),
            );
        }
        let mut color = [176.0, 180.0, 186.0].map(|c| c * b * self.gain);
        for (c, t) in color.iter_mut().zip(self.tint) {
            *c *= t;
        }

        let mut in_mask = false;
        if let Some(flaw) = defect {
            let sd = flaw.sd(x, y);
            if sd > -0.5 {
                let texture = self.face.at(x / (0.02 * h), y / (0.02 * h));
                color = flaw.paint(color, sd, b, texture, self.light, [x, y]);
                in_mask = sd >= 0.0 && alpha >= 0.5;
            }
        }
        let through = belt.map(|c| c * (1.0 - 0.6 * hole * outer));
        (
            [0, 1, 2].map(|i| lerp(through[i], color[i], alpha)),
            in_mask,
        )
    }
}

/// One defect, in image coordinates.
enum Flaw {
    /// A thin dark crack along a kinked polyline.
    Crack {
        pts: Vec<[f32; 2]>,
        half_w: f32,
        factor: f32,
    },
    /// A small round pit: dark floor, the rim away from the light lit.
    Pit {
        c: [f32; 2],
        r: f32,
    },
    Dent(Dent),
    Stain(Stain),
}

/// Attempts at placing a defect before giving up (each one is a few thousand pixel tests).
const ATTEMPTS: usize = 500;

impl Flaw {
    /// A defect of size class `(_, lo, hi)` in the `position` zone, wholly on the bar's material:
    /// drawn at random, rasterised in a window around it, and kept once its mask qualifies.
    fn place(
        rng: &mut ChaCha8Rng,
        part: &Bar,
        (_, lo, hi): (&str, u32, u32),
        position: usize,
    ) -> Result<Self, String> {
        let w = part.width as f32;
        let third = w / 3.0;
        for _ in 0..ATTEMPTS {
            let across = rng.random_range(lo as f32 + 0.5..hi as f32 - 0.5);
            let margin = 0.5 * across + 2.0;
            let x = if POSITIONS[position] == "centre" {
                rng.random_range(third + margin..2.0 * third - margin)
            } else {
                let near = rng.random_range(margin..third - margin);
                if rng.random_bool(0.5) {
                    near
                } else {
                    w - near
                }
            };
            let y = part.cy + rng.random_range(-1.0..1.0) * (part.half_h - margin);
            let flaw = Self::new(rng, [x, y], across);
            let Some((x0, x1, extent)) = flaw.footprint(part, [x, y]) else {
                continue;
            };
            let in_zone = if POSITIONS[position] == "centre" {
                x0 as f32 >= third && (x1 as f32) < 2.0 * third
            } else {
                (x1 as f32) < third || x0 as f32 >= 2.0 * third
            };
            if in_zone && (lo..hi).contains(&extent) {
                return Ok(flaw);
            }
        }
        Err(format!(
            "no {lo}-{hi} px defect fitted on the part in {ATTEMPTS} attempts"
        ))
    }

    /// A defect of kind chosen at random, about `across` pixels across, centred at `c`.
    fn new(rng: &mut ChaCha8Rng, c: [f32; 2], across: f32) -> Self {
        match rng.random_range(0..4) {
            0 => {
                let half_w = rng.random_range(0.75..1.1);
                let span = (across - 2.0 * half_w).max(0.5);
                let mut dir: f32 = rng.random_range(0.0..TAU);
                let mut pts = vec![[0.0f32, 0.0]];
                for _ in 0..6 {
                    dir += rng.random_range(-0.5..0.5);
                    let [px, py] = pts[pts.len() - 1];
                    pts.push([px + dir.cos() * span / 6.0, py + dir.sin() * span / 6.0]);
                }
                // Centre the crack's bounding box on c.
                let (lo, hi) = pts.iter().fold(
                    ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]),
                    |(lo, hi), p| {
                        (
                            [lo[0].min(p[0]), lo[1].min(p[1])],
                            [hi[0].max(p[0]), hi[1].max(p[1])],
                        )
                    },
                );
                let shift = [c[0] - 0.5 * (lo[0] + hi[0]), c[1] - 0.5 * (lo[1] + hi[1])];
                Flaw::Crack {
                    pts: pts
                        .into_iter()
                        .map(|p| [p[0] + shift[0], p[1] + shift[1]])
                        .collect(),
                    half_w,
                    factor: rng.random_range(0.3..0.45),
                }
            }
            1 => Flaw::Pit { c, r: 0.5 * across },
            2 => {
                let a = 0.5 * across;
                let angle: f32 = rng.random_range(0.0..PI);
                Flaw::Dent(Dent::new(c, angle, a, a * rng.random_range(0.55..1.0)))
            }
            _ => Flaw::Stain(Stain::new(rng, c, 0.5 * across / 1.25, 0.25)),
        }
    }

    /// Signed distance (pixels, positive inside) from the pixel centre (x, y) to the defect's edge.
    fn sd(&self, x: f32, y: f32) -> f32 {
        match self {
            Flaw::Crack { pts, half_w, .. } => {
                let [x0, y0] = pts[0];
                if (x - x0).abs() > 48.0 || (y - y0).abs() > 48.0 {
                    return f32::NEG_INFINITY;
                }
                half_w - polyline_distance(pts, x, y)
            }
            Flaw::Pit { c, r } => r - (x - c[0]).hypot(y - c[1]),
            Flaw::Dent(dent) => dent.sd(x, y),
            Flaw::Stain(stain) => stain.blob.sd(x, y),
        }
    }

    /// The defect over `color` (face brightness `b`, stain texture `texture`) at the pixel centred
    /// at (x, y), `sd` from its edge.
    fn paint(
        &self,
        color: [f32; 3],
        sd: f32,
        b: f32,
        texture: f32,
        light: [f32; 2],
        [x, y]: [f32; 2],
    ) -> [f32; 3] {
        let k = cov(sd);
        match self {
            Flaw::Crack { factor, .. } => color.map(|v| v * lerp(1.0, *factor, k)),
            Flaw::Pit { c, r } => {
                let q = [(x - c[0]) / r, (y - c[1]) / r];
                let rim = (q[0] * light[0] + q[1] * light[1]).min(0.0);
                color.map(|v| v * lerp(1.0, 0.4 - 0.5 * rim, k))
            }
            Flaw::Dent(dent) => color.map(|v| v * lerp(1.0, dent.shade(x, y, light), k)),
            Flaw::Stain(stain) => stain.paint(color, sd, b, texture),
        }
    }

    /// Rasterises the defect in a window around `c`: `None` when any of it leaves the material
    /// or the window, else the mask's first and last column and its bounding extent.
    fn footprint(&self, part: &Bar, c: [f32; 2]) -> Option<(u32, u32, u32)> {
        const REACH: i64 = 40;
        let (cx, cy) = (c[0] as i64, c[1] as i64);
        let (mut x0, mut y0, mut x1, mut y1) = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
        for y in cy - REACH..=cy + REACH {
            for x in cx - REACH..=cx + REACH {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                if self.sd(px, py) < 0.0 {
                    continue;
                }
                let edge = (x - cx).abs() == REACH || (y - cy).abs() == REACH;
                let outside = x < 0 || y < 0 || x >= part.width as i64 || y >= part.height as i64;
                if edge || outside || part.material(px, py) < 0.5 {
                    return None;
                }
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
        (x0 <= x1).then(|| (x0 as u32, x1 as u32, (x1 - x0).max(y1 - y0) as u32 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A defect image differs from the same part drawn without its defect exactly around the
    /// mask: strongly on it, and nowhere farther than the antialiased edge (1 px) from it.
    #[test]
    fn defect_is_visible_where_its_mask_is_and_nowhere_else() {
        let spec = LongSpec::default();
        let root = Path::new("unused");
        let folders = defect_folders();
        let refs: Vec<&str> = folders.iter().map(String::as_str).collect();
        let jobs = plan(root, 1, 0, &refs, 1).expect("a valid plan");
        for job in jobs.iter().filter(|j| j.defect.is_some()) {
            let (part, flaw) = scene(&spec, job).expect("the defect is placed");
            let clean = draw(&part, None);
            let flawed = draw(&part, flaw.as_ref());
            let w = flawed.width as usize;
            let mut on_mask = (0.0f64, 0usize);
            for (i, (a, b)) in clean.rgb.chunks(3).zip(flawed.rgb.chunks(3)).enumerate() {
                let diff: i32 = a
                    .iter()
                    .zip(b)
                    .map(|(p, q)| (*p as i32 - *q as i32).abs())
                    .sum();
                let (x, y) = (i % w, i / w);
                if flawed.mask[i] == 255 {
                    on_mask = (on_mask.0 + diff as f64, on_mask.1 + 1);
                } else if diff > 0 {
                    let near = (y.saturating_sub(1)..=(y + 1).min(flawed.height as usize - 1))
                        .flat_map(|yy| {
                            (x.saturating_sub(1)..=(x + 1).min(w - 1)).map(move |xx| yy * w + xx)
                        })
                        .any(|j| flawed.mask[j] == 255);
                    assert!(
                        near,
                        "{}: pixel ({x}, {y}) changed off the mask",
                        job.image.display()
                    );
                }
            }
            assert!(on_mask.1 > 0, "{}: empty mask", job.image.display());
            let mean = on_mask.0 / on_mask.1 as f64;
            assert!(
                mean > 30.0,
                "{}: defect barely visible ({mean:.1})",
                job.image.display()
            );
        }
    }
}
