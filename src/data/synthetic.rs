//! A deterministic synthetic category in the MVTec AD layout, for demos and tests without data.
//!
//! Each image shows a turned metal flange (centre bore, six bolt holes, bevels, concentric
//! machining marks) on a matte tray, with small pose, lighting and brightness changes between
//! images. Test images carry one defect each (dent, missing chunk, scratch, stain) with an exact
//! mask: a mask pixel is one whose centre lies inside the defect's shape and on the part's material.
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::f32::consts::{PI, TAU};
use std::path::{Path, PathBuf};

use super::dataset::{open, Dataset, GOOD};
use super::DataError;

/// Defect types, in the (sorted) order their test folders appear.
pub const DEFECT_TYPES: [&str; 4] = ["dent", "missing", "scratch", "stain"];

/// File the generator leaves in the category folder; without it, it will not write there.
const MARKER: &str = "synthetic.json";

/// What to generate. The same spec always produces the same bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntheticSpec {
    /// Side of the square images, in pixels (32 to 4096).
    pub size: u32,
    pub n_train: usize,
    pub n_test_good: usize,
    pub n_test_defect_per_type: usize,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            size: 256,
            n_train: 40,
            n_test_good: 10,
            n_test_defect_per_type: 5,
            seed: 0,
        }
    }
}

/// One image to render: where it goes, its random stream, and its defect folder's index if any.
pub(super) struct Job {
    pub image: PathBuf,
    pub mask: Option<PathBuf>,
    pub stream: u64,
    pub defect: Option<usize>,
}

/// A rendered image: RGB bytes and its 0/255 mask (all zero for good images).
pub(super) struct Raster {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub mask: Vec<u8>,
}

/// Writes `<out>/<name>/{train/good, test/<type>, ground_truth/<type>}` and opens it.
/// Images are rendered in parallel; each file is written atomically (temp file + rename) and left
/// untouched when its bytes are already right. Refuses a non-empty folder it did not create, and
/// removes images of an earlier run that this spec no longer produces.
pub fn generate(out: &Path, name: &str, spec: &SyntheticSpec) -> Result<Dataset, DataError> {
    let root = category_root(out, name)?;
    if !(32..=4096).contains(&spec.size) {
        return Err(DataError::Dataset {
            path: root,
            reason: format!("image size {} px is outside 32..=4096", spec.size),
        });
    }
    let jobs = plan(
        &root,
        spec.n_train,
        spec.n_test_good,
        &DEFECT_TYPES,
        spec.n_test_defect_per_type,
    )?;
    write_category(&root, spec, &jobs, |job| {
        Ok(render(spec, job.stream, job.defect))
    })
}

/// `<out>/<name>`, once `name` is known to be one folder name.
pub(super) fn category_root(out: &Path, name: &str) -> Result<PathBuf, DataError> {
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(DataError::Dataset {
            path: out.join(name),
            reason: format!("\"{name}\" is not a usable category name"),
        });
    }
    Ok(out.join(name))
}

/// The images of a category: training parts, good test parts, then `n_defect` parts per defect
/// folder, each with its own random stream so any image renders alone and in any order.
pub(super) fn plan(
    root: &Path,
    n_train: usize,
    n_test_good: usize,
    defect_folders: &[&str],
    n_defect: usize,
) -> Result<Vec<Job>, DataError> {
    if n_train == 0 {
        return Err(DataError::Dataset {
            path: root.to_path_buf(),
            reason: "at least one training image is needed".into(),
        });
    }
    let mut jobs = Vec::new();
    for i in 0..n_train {
        jobs.push(Job {
            image: root.join(format!("train/{GOOD}/{i:03}.png")),
            mask: None,
            stream: i as u64,
            defect: None,
        });
    }
    for i in 0..n_test_good {
        jobs.push(Job {
            image: root.join(format!("test/{GOOD}/{i:03}.png")),
            mask: None,
            stream: (1 << 32) | i as u64,
            defect: None,
        });
    }
    for (t, folder) in defect_folders.iter().enumerate() {
        for i in 0..n_defect {
            jobs.push(Job {
                image: root.join(format!("test/{folder}/{i:03}.png")),
                mask: Some(root.join(format!("ground_truth/{folder}/{i:03}_mask.png"))),
                stream: ((2 + t as u64) << 32) | i as u64,
                defect: Some(t),
            });
        }
    }
    Ok(jobs)
}

/// Claims `root` (recording `spec` in the marker), renders every job in parallel, writes each
/// image and mask atomically, removes what an earlier spec left behind, and opens the result.
pub(super) fn write_category<S: Serialize>(
    root: &Path,
    spec: &S,
    jobs: &[Job],
    render: impl Fn(&Job) -> Result<Raster, DataError> + Sync,
) -> Result<Dataset, DataError> {
    claim(root, spec)?;
    for job in jobs {
        for file in std::iter::once(&job.image).chain(&job.mask) {
            let dir = file.parent().unwrap_or(root);
            std::fs::create_dir_all(dir).map_err(|source| DataError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
    }
    jobs.par_iter().try_for_each(|job| {
        let raster = render(job)?;
        let size = (raster.width, raster.height);
        write_png(&job.image, &raster.rgb, size, ExtendedColorType::Rgb8)?;
        match &job.mask {
            Some(path) => write_png(path, &raster.mask, size, ExtendedColorType::L8),
            None => Ok(()),
        }
    })?;
    remove_stale(root, jobs)?;
    open(root, None)
}

/// Makes sure `root` is ours to write: new, empty, or carrying our marker. Writes the marker.
fn claim<S: Serialize>(root: &Path, spec: &S) -> Result<(), DataError> {
    let marker = root.join(MARKER);
    if root.is_dir() && !marker.is_file() {
        let mut entries = std::fs::read_dir(root).map_err(|source| DataError::Read {
            path: root.to_path_buf(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(DataError::Dataset {
                path: root.to_path_buf(),
                reason: format!(
                    "folder exists and was not made by the synthetic generator (no {MARKER}); \
                     refusing to write into it"
                ),
            });
        }
    }
    std::fs::create_dir_all(root).map_err(|source| DataError::Write {
        path: root.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_vec_pretty(spec).expect("the spec serialises");
    write_atomic(&marker, &json)
}

/// Deletes images in the generator's folders (`train/good`, every `test/*` and
/// `ground_truth/*`: the folder carries our marker) that the current spec did not produce, and the
/// folders that end up empty, so a smaller or different re-run does not leave old samples behind.
fn remove_stale(root: &Path, jobs: &[Job]) -> Result<(), DataError> {
    let keep: std::collections::HashSet<&Path> = jobs
        .iter()
        .flat_map(|j| std::iter::once(j.image.as_path()).chain(j.mask.as_deref()))
        .collect();
    let mut dirs = vec![root.join("train").join(GOOD)];
    for split in ["test", "ground_truth"] {
        if let Ok(entries) = std::fs::read_dir(root.join(split)) {
            dirs.extend(entries.flatten().map(|e| e.path()));
        }
    }
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        for file in super::list_images(dir)? {
            if !keep.contains(file.as_path()) {
                std::fs::remove_file(&file).map_err(|source| DataError::Write {
                    path: file.clone(),
                    source,
                })?;
            }
        }
        // Only succeeds when empty, which is the point.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

fn write_png(
    path: &Path,
    pixels: &[u8],
    (width, height): (u32, u32),
    color: ExtendedColorType,
) -> Result<(), DataError> {
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Fast, FilterType::Adaptive)
        .write_image(pixels, width, height, color)
        .map_err(|e| DataError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
    write_atomic(path, &bytes)
}

/// Rewrites `path` only when its content changes, so a re-run of the same spec touches nothing.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    crate::report::write_atomic(path, bytes).map_err(|source| DataError::Write {
        path: path.to_path_buf(),
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// Periodic 2-D value noise in [-1, 1] on a 16 x 16 lattice, smoothly interpolated.
pub(super) struct Noise2(Vec<f32>);

const NOISE2: usize = 16;
const NOISE1: usize = 4096;

impl Noise2 {
    pub(super) fn new(rng: &mut ChaCha8Rng) -> Self {
        Self(
            (0..NOISE2 * NOISE2)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
        )
    }

    pub(super) fn at(&self, x: f32, y: f32) -> f32 {
        let (xf, yf) = (x.floor(), y.floor());
        let (tx, ty) = (smooth(x - xf), smooth(y - yf));
        // Two's-complement masking wraps negative cells too (the size is a power of two).
        let wrap = |i: i64| (i & (NOISE2 as i64 - 1)) as usize;
        let (x0, y0) = (wrap(xf as i64), wrap(yf as i64));
        let (x1, y1) = (wrap(xf as i64 + 1), wrap(yf as i64 + 1));
        let v = |x: usize, y: usize| self.0[y * NOISE2 + x];
        lerp(
            lerp(v(x0, y0), v(x1, y0), tx),
            lerp(v(x0, y1), v(x1, y1), tx),
            ty,
        )
    }
}

/// Periodic 1-D value noise in [-1, 1] (machining rings as a function of radius).
pub(super) struct Noise1(Vec<f32>);

impl Noise1 {
    pub(super) fn new(rng: &mut ChaCha8Rng) -> Self {
        Self((0..NOISE1).map(|_| rng.random_range(-1.0..1.0)).collect())
    }

    pub(super) fn at(&self, x: f32) -> f32 {
        let xf = x.floor();
        let wrap = |i: i64| (i & (NOISE1 as i64 - 1)) as usize;
        lerp(
            self.0[wrap(xf as i64)],
            self.0[wrap(xf as i64 + 1)],
            smooth(x - xf),
        )
    }
}

pub(super) fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

pub(super) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Fraction of a pixel covered by a shape, from the signed distance (pixels, positive inside)
/// of the pixel centre to its edge: 0.5 exactly on the edge, so `cov >= 0.5` is "centre inside".
pub(super) fn cov(sd: f32) -> f32 {
    (sd + 0.5).clamp(0.0, 1.0)
}

pub(super) fn rotate([x, y]: [f32; 2], cos: f32, sin: f32) -> [f32; 2] {
    [cos * x - sin * y, sin * x + cos * y]
}

/// Six bolt holes on a circle of 0.68 R, hole radius 0.085 R, chamfer width 0.035 R.
const BOLT_CIRCLE: f32 = 0.68;
const BOLT_RADIUS: f32 = 0.085;
const CHAMFER: f32 = 0.035;
const BORE: f32 = 0.2;
const HUB: f32 = 0.45;

/// Pose, lighting and texture of one part.
struct Part {
    size: f32,
    cx: f32,
    cy: f32,
    r: f32,
    cos: f32,
    sin: f32,
    gain: f32,
    /// Unit vector towards the light, image space and part space.
    light: [f32; 2],
    light_local: [f32; 2],
    tint: [f32; 3],
    bolts: [[f32; 2]; 6],
    face: Noise2,
    bg: Noise2,
    rings: Noise1,
    noise_seed: u64,
}

impl Part {
    fn new(rng: &mut ChaCha8Rng, size: u32) -> Self {
        let s = size as f32;
        let cx = s * (0.5 + rng.random_range(-0.03..0.03));
        let cy = s * (0.5 + rng.random_range(-0.03..0.03));
        let r = s * 0.37 * rng.random_range(0.985..1.015);
        let angle: f32 = rng.random_range(-0.14..0.14);
        let gain = rng.random_range(0.9..1.1);
        let light_angle: f32 = -2.36 + rng.random_range(-0.3..0.3);
        let light = [light_angle.cos(), light_angle.sin()];
        let (cos, sin) = (angle.cos(), angle.sin());
        let tint = [
            rng.random_range(0.985..1.015),
            rng.random_range(0.985..1.015),
            rng.random_range(0.985..1.015),
        ];
        let bolts = std::array::from_fn(|k| {
            let a = PI / 6.0 + k as f32 * PI / 3.0;
            [BOLT_CIRCLE * r * a.cos(), BOLT_CIRCLE * r * a.sin()]
        });
        Self {
            size: s,
            cx,
            cy,
            r,
            cos,
            sin,
            gain,
            light,
            light_local: rotate(light, cos, -sin),
            tint,
            bolts,
            face: Noise2::new(rng),
            bg: Noise2::new(rng),
            rings: Noise1::new(rng),
            noise_seed: rng.random(),
        }
    }

    /// Part-space coordinates of an image point (rotation undone).
    fn local(&self, x: f32, y: f32) -> [f32; 2] {
        rotate([x - self.cx, y - self.cy], self.cos, -self.sin)
    }

    /// A random point of the flange face (between hub and outer bevel), `clear` pixels away
    /// from the bolt holes, in image coordinates.
    fn face_point(&self, rng: &mut ChaCha8Rng, clear: f32) -> [f32; 2] {
        let mut p = [0.0; 2];
        for _ in 0..32 {
            let rho = self.r * rng.random_range(HUB + 0.08..0.86);
            let phi = rng.random_range(0.0..TAU);
            p = [rho * phi.cos(), rho * phi.sin()];
            let near_bolt = self.bolts.iter().any(|b| {
                (p[0] - b[0]).hypot(p[1] - b[1]) < (BOLT_RADIUS + CHAMFER) * self.r + clear
            });
            if !near_bolt {
                break;
            }
        }
        let [x, y] = rotate(p, self.cos, self.sin);
        [x + self.cx, y + self.cy]
    }
}

/// A closed blob: radius `r0 * (1 + sum a sin(k phi + p))` around a centre.
#[derive(Clone, Copy)]
pub(super) struct Blob {
    c: [f32; 2],
    r0: f32,
    waves: [(f32, f32, f32); 3],
}

impl Blob {
    pub(super) fn new(rng: &mut ChaCha8Rng, c: [f32; 2], r0: f32, roughness: f32) -> Self {
        let waves = [3.0, 5.0, 9.0].map(|k| {
            (
                roughness * rng.random_range(0.4..1.0) * 3.0 / k,
                k,
                rng.random_range(0.0..TAU),
            )
        });
        Self { c, r0, waves }
    }

    /// Signed distance (approximately, in pixels), positive inside; exact enough within a few
    /// pixels of the edge, merely negative far outside.
    pub(super) fn sd(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.c[0], y - self.c[1]);
        let reach = self.r0 * (1.0 + self.waves.iter().map(|w| w.0.abs()).sum::<f32>()) + 4.0;
        if dx.abs() > reach || dy.abs() > reach {
            return -reach;
        }
        let phi = dy.atan2(dx);
        let wobble: f32 = self
            .waves
            .iter()
            .map(|(a, k, p)| a * (k * phi + p).sin())
            .sum();
        self.r0 * (1.0 + wobble) - dx.hypot(dy)
    }
}

/// An elliptical depression: one rim lit, the other in shadow.
pub(super) struct Dent {
    c: [f32; 2],
    cos: f32,
    sin: f32,
    a: f32,
    b: f32,
}

impl Dent {
    /// Centre `c`, major axis at `angle` (radians), semi-axes `a` and `b` (pixels).
    pub(super) fn new(c: [f32; 2], angle: f32, a: f32, b: f32) -> Self {
        let (sin, cos) = angle.sin_cos();
        Self { c, cos, sin, a, b }
    }

    /// Ellipse-space coordinates of an image point (1 on the rim).
    fn q(&self, x: f32, y: f32) -> [f32; 2] {
        let [du, dv] = rotate([x - self.c[0], y - self.c[1]], self.cos, -self.sin);
        [du / self.a, dv / self.b]
    }

    /// Signed distance to the rim, approximately in pixels, positive inside.
    pub(super) fn sd(&self, x: f32, y: f32) -> f32 {
        let q = self.q(x, y);
        (1.0 - q[0].hypot(q[1])) * self.a.min(self.b)
    }

    /// Brightness factor at (x, y) when lit from `light` (image-space unit vector).
    pub(super) fn shade(&self, x: f32, y: f32, light: [f32; 2]) -> f32 {
        let g = rotate(self.q(x, y), self.cos, self.sin);
        0.85 - 0.55 * (g[0] * light[0] + g[1] * light[1])
    }
}

/// A translucent deposit (rust or oil) with a darker rim.
pub(super) struct Stain {
    pub blob: Blob,
    color: [f32; 3],
    opacity: f32,
}

impl Stain {
    /// A rust or oil stain of radius about `r0` around `c`.
    pub(super) fn new(rng: &mut ChaCha8Rng, c: [f32; 2], r0: f32, roughness: f32) -> Self {
        let rust = rng.random_bool(0.5);
        Self {
            blob: Blob::new(rng, c, r0, roughness),
            color: if rust {
                [120.0, 70.0, 36.0]
            } else {
                [46.0, 43.0, 40.0]
            },
            opacity: rng.random_range(0.55..0.75),
        }
    }

    /// `color` (face brightness `b`) under the stain at signed distance `sd` from its edge;
    /// `texture` in [-1, 1] makes the deposit uneven.
    pub(super) fn paint(&self, color: [f32; 3], sd: f32, b: f32, texture: f32) -> [f32; 3] {
        let rim = (1.0 - sd / (0.35 * self.blob.r0)).clamp(0.0, 1.0);
        let op = (self.opacity * (0.75 + 0.25 * rim) * (1.0 + 0.2 * texture)).min(1.0) * cov(sd);
        [0, 1, 2].map(|i| lerp(color[i], self.color[i] * (0.6 + 0.4 * b), op))
    }
}

enum Defect {
    /// A polyline groove `half_w` wide that darkens (`factor` < 1) or catches the light;
    /// `bbox` (x0, y0, x1, y1) bounds the pixels it can touch.
    Scratch {
        pts: Vec<[f32; 2]>,
        bbox: [f32; 4],
        half_w: f32,
        factor: f32,
    },
    Dent(Dent),
    Stain(Stain),
    /// A chunk broken out of the rim: the tray shows through.
    Missing {
        blob: Blob,
    },
}

impl Defect {
    fn new(rng: &mut ChaCha8Rng, part: &Part, kind: usize) -> Self {
        let s = part.size / 256.0;
        match DEFECT_TYPES[kind] {
            "dent" => {
                let a = s * rng.random_range(9.0..15.0);
                let b = a * rng.random_range(0.6..1.0);
                let angle: f32 = rng.random_range(0.0..PI);
                Defect::Dent(Dent::new(part.face_point(rng, a), angle, a, b))
            }
            "missing" => {
                let phi = rng.random_range(0.0..TAU);
                let d = part.r * rng.random_range(0.98..1.04);
                let [x, y] = rotate([d * phi.cos(), d * phi.sin()], part.cos, part.sin);
                let r0 = part.r * rng.random_range(0.15..0.22);
                Defect::Missing {
                    blob: Blob::new(rng, [x + part.cx, y + part.cy], r0, 0.12),
                }
            }
            "scratch" => {
                let len = part.size * rng.random_range(0.15..0.3);
                let mid = part.face_point(rng, 0.0);
                let dir: f32 = rng.random_range(0.0..TAU);
                let (dx, dy) = (dir.cos() * len / 2.0, dir.sin() * len / 2.0);
                let bend = len * rng.random_range(-0.2..0.2);
                let (p0, p2) = ([mid[0] - dx, mid[1] - dy], [mid[0] + dx, mid[1] + dy]);
                let p1 = [mid[0] - dir.sin() * bend, mid[1] + dir.cos() * bend];
                let pts = (0..=24)
                    .map(|i| {
                        let t = i as f32 / 24.0;
                        let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
                        [
                            a * p0[0] + b * p1[0] + c * p2[0],
                            a * p0[1] + b * p1[1] + c * p2[1],
                        ]
                    })
                    .collect::<Vec<[f32; 2]>>();
                let bright = rng.random_bool(0.5);
                let half_w = s * rng.random_range(0.9..1.5);
                let factor = if bright {
                    rng.random_range(1.45..1.7)
                } else {
                    rng.random_range(0.35..0.5)
                };
                let pad = half_w + 1.0;
                let bbox = pts.iter().fold(
                    [
                        f32::INFINITY,
                        f32::INFINITY,
                        f32::NEG_INFINITY,
                        f32::NEG_INFINITY,
                    ],
                    |b, p| {
                        [
                            b[0].min(p[0] - pad),
                            b[1].min(p[1] - pad),
                            b[2].max(p[0] + pad),
                            b[3].max(p[1] + pad),
                        ]
                    },
                );
                Defect::Scratch {
                    pts,
                    bbox,
                    half_w,
                    factor,
                }
            }
            _ => {
                let r0 = s * rng.random_range(9.0..15.0);
                let c = part.face_point(rng, 0.0);
                Defect::Stain(Stain::new(rng, c, r0, 0.3))
            }
        }
    }
}

/// Distance from a point to a polyline.
pub(super) fn polyline_distance(pts: &[[f32; 2]], x: f32, y: f32) -> f32 {
    pts.windows(2)
        .map(|w| {
            let ([ax, ay], [bx, by]) = (w[0], w[1]);
            let (vx, vy) = (bx - ax, by - ay);
            let t =
                (((x - ax) * vx + (y - ay) * vy) / (vx * vx + vy * vy).max(1e-12)).clamp(0.0, 1.0);
            (x - ax - t * vx).hypot(y - ay - t * vy)
        })
        .fold(f32::INFINITY, f32::min)
}

/// SplitMix64: per-pixel sensor noise without sequential RNG state, so rows render in any order.
fn hash(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Renders one flange image and its mask.
fn render(spec: &SyntheticSpec, stream: u64, defect: Option<usize>) -> Raster {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(stream);
    let part = Part::new(&mut rng, spec.size);
    let defect = defect.map(|k| Defect::new(&mut rng, &part, k));
    rasterize(spec.size, spec.size, part.noise_seed, |x, y| {
        shade(&part, defect.as_ref(), x, y)
    })
}

/// Fills a `width` x `height` image row by row in parallel from `shade` (colour, in-mask),
/// adding sensor noise seeded by `noise_seed`.
pub(super) fn rasterize(
    width: u32,
    height: u32,
    noise_seed: u64,
    shade: impl Fn(usize, usize) -> ([f32; 3], bool) + Sync,
) -> Raster {
    let (w, h) = (width as usize, height as usize);
    let mut rgb = vec![0u8; w * h * 3];
    let mut mask = vec![0u8; w * h];
    rgb.par_chunks_mut(w * 3)
        .zip(mask.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, (rgb_row, mask_row))| {
            for x in 0..w {
                let (color, in_mask) = shade(x, y);
                let h = hash(noise_seed ^ ((y * w + x) as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                for (c, v) in color.iter().enumerate() {
                    // Sensor noise: triangular, sigma about 1.6 grey levels.
                    let bits = (h >> (c * 20)) & 0xFFFFF;
                    let u = (bits & 0x3FF) as f32 + (bits >> 10) as f32;
                    let noise = (u / 1023.0 - 1.0) * 4.0;
                    rgb_row[x * 3 + c] = (v + noise).round().clamp(0.0, 255.0) as u8;
                }
                mask_row[x] = if in_mask { 255 } else { 0 };
            }
        });
    Raster {
        width,
        height,
        rgb,
        mask,
    }
}

/// Colour of pixel (x, y) and whether it belongs to the defect mask.
fn shade(part: &Part, defect: Option<&Defect>, x: usize, y: usize) -> ([f32; 3], bool) {
    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
    let (s, r) = (part.size, part.r);
    let px_scale = s / 256.0;

    // The tray: mottled grey-blue, vignetted, with the part's soft shadow away from the light.
    let mottle = part.bg.at(px / (0.1 * s), py / (0.1 * s))
        + 0.5 * part.bg.at(px / (0.03 * s), py / (0.03 * s));
    let (vx, vy) = (px / s - 0.5, py / s - 0.5);
    let vignette = 1.0 - 0.5 * (vx * vx + vy * vy);
    let (sx, sy) = (
        part.cx - part.light[0] * 0.03 * s,
        part.cy - part.light[1] * 0.03 * s,
    );
    let shadow_d = (px - sx).hypot(py - sy) - r;
    let shadow = 1.0 - 0.5 * (1.0 - ((shadow_d + 0.01 * s) / (0.07 * s)).clamp(0.0, 1.0));
    let bg_level = (1.0 + 0.06 * mottle) * vignette * shadow;
    let bg = [60.0, 64.0, 70.0].map(|c| c * bg_level);

    let [u, v] = part.local(px, py);
    let rr = u.hypot(v);
    let outer = cov(r - rr);
    if outer <= 0.0 {
        return (bg, false);
    }
    let n = if rr > 1e-3 {
        [u / rr, v / rr]
    } else {
        [0.0, 0.0]
    };
    let ll = part.light_local;
    let nl = n[0] * ll[0] + n[1] * ll[1];

    // Holes: the bore and the nearest bolt hole.
    let (bolt_d2, bolt) = part
        .bolts
        .iter()
        .map(|b| ((u - b[0]).powi(2) + (v - b[1]).powi(2), *b))
        .fold(
            (f32::INFINITY, [0.0; 2]),
            |a, b| if b.0 < a.0 { b } else { a },
        );
    let bolt_d = bolt_d2.sqrt();
    let hole = cov(BORE * r - rr).max(cov(BOLT_RADIUS * r - bolt_d));
    let mut alpha = outer * (1.0 - hole);

    // Turned face: concentric machining marks, an anisotropic highlight along the light axis.
    let c2 = if rr > 1e-3 {
        (u * u - v * v) / (rr * rr)
    } else {
        1.0
    };
    let s2 = if rr > 1e-3 {
        2.0 * u * v / (rr * rr)
    } else {
        0.0
    };
    let (lc2, ls2) = (ll[0] * ll[0] - ll[1] * ll[1], 2.0 * ll[0] * ll[1]);
    let aniso = (0.5 + 0.5 * (c2 * lc2 + s2 * ls2)).powi(2);
    let rings = 0.035 * part.rings.at(rr * 0.7 / px_scale)
        + 0.03 * part.rings.at(rr * 0.09 / px_scale + 1000.0);
    let mottle = 0.04 * part.face.at(u / (0.25 * r), v / (0.25 * r));
    let mut b = 0.74 + 0.3 * aniso + rings + mottle;
    // Hub: finer finish, slightly brighter; a dark groove separates it from the face.
    b = lerp(b, 0.86 + 0.14 * aniso + 0.5 * rings, cov(HUB * r - rr));
    b *= 1.0 - 0.45 * cov(1.2 * px_scale - (rr - HUB * r).abs());
    // Bevels: outer edge faces outwards, bore and bolt chamfers face inwards.
    b = lerp(b, 0.78 + 0.5 * nl, cov(rr - 0.93 * r));
    b = lerp(b, 0.78 - 0.5 * nl, cov((BORE + CHAMFER * 1.5) * r - rr));
    if bolt_d > 1e-3 {
        let ml = ((u - bolt[0]) * ll[0] + (v - bolt[1]) * ll[1]) / bolt_d;
        b = lerp(
            b,
            0.78 - 0.5 * ml,
            cov((BOLT_RADIUS + CHAMFER) * r - bolt_d),
        );
    }
    let mut color = [0, 1, 2].map(|c| 182.0 * part.tint[c] * b * part.gain);

    let material = alpha >= 0.5;
    let mut in_mask = false;
    match defect {
        Some(Defect::Scratch {
            pts,
            bbox,
            half_w,
            factor,
        }) => {
            let inside = px >= bbox[0] && px <= bbox[2] && py >= bbox[1] && py <= bbox[3];
            let d = if inside {
                polyline_distance(pts, px, py)
            } else {
                f32::INFINITY
            };
            let c = cov(half_w - d);
            if c > 0.0 {
                color = color.map(|v| v * lerp(1.0, *factor, c));
                in_mask = material && d <= *half_w;
            }
        }
        Some(Defect::Dent(dent)) => {
            let sd = dent.sd(px, py);
            let k = cov(sd);
            if k > 0.0 {
                let shade = dent.shade(px, py, part.light);
                color = color.map(|v| v * lerp(1.0, shade, k));
                in_mask = material && sd >= 0.0;
            }
        }
        Some(Defect::Stain(stain)) => {
            let sd = stain.blob.sd(px, py);
            if sd > -0.5 {
                let texture = part.face.at(px / (0.02 * s), py / (0.02 * s));
                color = stain.paint(color, sd, b, texture);
                in_mask = material && sd >= 0.0;
            }
        }
        Some(Defect::Missing { blob }) => {
            let sd = blob.sd(px, py);
            let edge = 2.5 * px_scale;
            if sd > -edge {
                // Fracture face: a dark rim on the material that is left.
                let k = (1.0 + sd / edge).clamp(0.0, 1.0);
                color = color.map(|v| v * (1.0 - 0.45 * k));
                alpha *= 1.0 - cov(sd);
                in_mask = material && sd >= 0.0;
            }
        }
        None => {}
    }

    // Through the holes the tray is in deep shadow.
    let through = bg.map(|c| c * (1.0 - 0.65 * hole * outer));
    (
        [0, 1, 2].map(|i| lerp(through[i], color[i], alpha)),
        in_mask,
    )
}
