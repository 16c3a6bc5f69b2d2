//! The on-disk memory bank: one safetensors file per category holding the coreset rows and
//! everything needed to score exactly as at fit time. Saved atomically, validated on load.
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::data::CropMode;

/// Bumped whenever the meaning of a stored field changes; older readers refuse newer files.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("{path}: cannot read bank file: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid bank file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// A readable safetensors file without our `patchcore` metadata key, e.g. backbone weights
    /// lying in the models folder. Listings skip these; loading one is still an error.
    #[error("{path}: a safetensors file, but not a patchcore bank (no `patchcore` metadata)")]
    NotABank { path: PathBuf },
    #[error("{path}: bank format version {found} is not supported (this build reads version {FORMAT_VERSION})")]
    Version { path: PathBuf, found: u32 },
}

/// Leave-one-image-out image scores of the training set, and the threshold derived from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Where the scores came from: "leave-one-image-out" or "validation folder <dir>".
    pub source: String,
    pub scores: Vec<f32>,
    pub min: f32,
    pub max: f32,
    /// Default accept/reject threshold (see `Calibration::from_scores` for the rule).
    pub threshold: f32,
}

/// Everything stored next to the bank rows. Serialised as JSON under the `patchcore` key of
/// the safetensors metadata, so the GUI can list banks by reading the header only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BankMeta {
    pub format_version: u32,
    pub category: String,
    pub backbone: String,
    pub weights_sha256: String,
    pub stages: Vec<String>,
    /// Index into `stages` of the stage whose grid the patch rows live on.
    pub grid_stage: u32,
    /// Normalisation mean and std per RGB channel, on 0..1 pixel values.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop: CropMode,
    /// Neighbourhood size of the local patch aggregation (3 in the paper).
    pub patch_size: u32,
    /// Dimension each stage is pooled to, and the final embedding dimension.
    pub pretrain_dim: u32,
    pub embed_dim: u32,
    /// Patch grid of one image (rows, cols).
    pub grid: [u32; 2],
    pub k: u32,
    pub reweight: bool,
    pub squared: bool,
    pub blur_sigma: f32,
    pub coreset_ratio: f32,
    pub coreset_size: u32,
    pub coreset_projection: u32,
    pub seed: u64,
    pub n_train_images: u32,
    pub n_patches: u64,
    pub train_dir: PathBuf,
    /// Test images of the category, when the fit data had them (the GUI opens these first).
    pub test_dir: Option<PathBuf>,
    pub created: String,
    pub bank_dtype: BankDtype,
    pub calibration: Calibration,
    /// The configurations `fit` tried on synthetic defects before choosing this one (empty when
    /// it did not choose, e.g. with explicit feature flags or WideResNet's paper settings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selection: Vec<SelectionTrial>,
}

/// How one candidate configuration scored on synthetic defects in held-out good images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionTrial {
    pub name: String,
    pub image_auroc: f64,
    pub pixel_auroc: f64,
    pub pro: f64,
    pub chosen: bool,
}

impl Calibration {
    /// The default threshold is the largest leave-one-out score: a new part is rejected when it
    /// looks less like the bank than every good training part did with its own patches removed.
    pub fn from_scores(source: String, scores: Vec<f32>) -> Calibration {
        let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Calibration {
            source,
            threshold: max,
            scores,
            min,
            max,
        }
    }
}

/// Widest patch neighbourhood accepted: 5x the paper's 3 and already half the default 28-cell
/// grid; wider ones only add zero padding and unfold memory.
pub const MAX_PATCH_SIZE: i64 = 15;
/// Largest pooled feature dimension accepted (the paper uses 1,024; each bank row is this wide).
pub const MAX_DIM: i64 = 16_384;
/// Largest image side, crop or patch grid accepted; beyond it one input alone needs gigabytes.
pub const MAX_SIDE: i64 = 8_192;
/// Largest anomaly-map blur accepted: 16x the paper's 4. Its kernel (`8 sigma + 1` = 513 taps)
/// already spans a 512-pixel map, so a larger sigma only flattens the map further, and the
/// kernel is allocated per call, so an unbounded sigma (1e9) would abort on allocation.
pub const MAX_BLUR_SIGMA: f64 = 64.0;

/// A stored or requested setting that fails its value check: which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("field `{field}` {problem}")]
pub struct FieldError {
    pub field: &'static str,
    /// What is wrong, phrased to follow the field name, e.g. "is 0, must be >= 1".
    pub problem: String,
}

fn field_error(field: &'static str, problem: String) -> FieldError {
    FieldError { field, problem }
}

/// `min <= v <= max`, for integer settings.
fn in_range(field: &'static str, v: i64, min: i64, max: i64) -> Result<(), FieldError> {
    if v < min {
        return Err(field_error(field, format!("is {v}, must be >= {min}")));
    }
    if v > max {
        return Err(field_error(field, format!("is {v}, must be <= {max}")));
    }
    Ok(())
}

fn finite(field: &'static str, v: f64) -> Result<(), FieldError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(field_error(field, format!("is {v}, must be finite")))
    }
}

/// The settings that decide the scores, as a bank stores them or `fit` is asked for them. One
/// check serves both, so every bank `fit` writes is one that loading accepts.
pub struct ScoringSettings<'a> {
    pub stages: &'a [String],
    pub grid_stage: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop: CropMode,
    pub patch_size: i64,
    pub pretrain_dim: i64,
    pub embed_dim: i64,
    pub k: i64,
    pub blur_sigma: f64,
}

impl ScoringSettings<'_> {
    /// Checks every value the engine would otherwise trip over (a panic, an abort on a huge
    /// allocation, or NaN scores), naming the first field that fails.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.stages.is_empty() {
            return Err(field_error(
                "stages",
                "is empty, must name at least one stage".into(),
            ));
        }
        if self.grid_stage >= self.stages.len() {
            return Err(field_error(
                "grid_stage",
                format!(
                    "is {}, must be < {} (the number of stages)",
                    self.grid_stage,
                    self.stages.len()
                ),
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(field_error(
                "mean",
                format!("is {:?}, must be finite", self.mean),
            ));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(field_error(
                "std",
                format!("is {:?}, must be finite and > 0", self.std),
            ));
        }
        match self.crop {
            CropMode::Center { resize, crop } => {
                in_range("crop.resize", resize.into(), 1, MAX_SIDE)?;
                in_range("crop.crop", crop.into(), 1, MAX_SIDE)?;
            }
            CropMode::Full { size } => in_range("crop.size", size.into(), 1, MAX_SIDE)?,
        }
        in_range("patch_size", self.patch_size, 1, MAX_PATCH_SIZE)?;
        if self.patch_size % 2 == 0 {
            return Err(field_error(
                "patch_size",
                format!(
                    "is {}, must be odd (a neighbourhood centred on its patch)",
                    self.patch_size
                ),
            ));
        }
        in_range("pretrain_dim", self.pretrain_dim, 1, MAX_DIM)?;
        in_range("embed_dim", self.embed_dim, 1, MAX_DIM)?;
        in_range("k", self.k, 1, i64::from(u32::MAX))?;
        check_blur_sigma(self.blur_sigma)
    }
}

/// The anomaly-map blur: 0 (no blur) up to `MAX_BLUR_SIGMA`.
pub fn check_blur_sigma(sigma: f64) -> Result<(), FieldError> {
    if (0.0..=MAX_BLUR_SIGMA).contains(&sigma) {
        Ok(())
    } else {
        Err(field_error(
            "blur_sigma",
            format!("is {sigma}, must be between 0 (no blur) and {MAX_BLUR_SIGMA}"),
        ))
    }
}

/// The coreset's settings: the fraction of patches it keeps, in (0, 1], and the width of the
/// random projection it is chosen on (0 would choose an empty bank).
pub fn check_coreset(ratio: f64, projection: usize) -> Result<(), FieldError> {
    if !(ratio.is_finite() && ratio > 0.0 && ratio <= 1.0) {
        return Err(field_error(
            "coreset_ratio",
            format!("is {ratio}, must be > 0 and <= 1"),
        ));
    }
    in_range(
        "coreset_projection",
        i64::try_from(projection).unwrap_or(i64::MAX),
        1,
        MAX_DIM,
    )
}

impl BankMeta {
    /// The scoring settings stored in this bank.
    pub fn settings(&self) -> ScoringSettings<'_> {
        ScoringSettings {
            stages: &self.stages,
            grid_stage: self.grid_stage as usize,
            mean: self.mean,
            std: self.std,
            crop: self.crop,
            patch_size: self.patch_size.into(),
            pretrain_dim: self.pretrain_dim.into(),
            embed_dim: self.embed_dim.into(),
            k: self.k.into(),
            blur_sigma: self.blur_sigma.into(),
        }
    }

    /// Checks the metadata by value, not only by type: a hand-edited or corrupted bank fails
    /// here with the field's name instead of panicking or aborting somewhere in the engine.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.settings().check()?;
        in_range("coreset_size", self.coreset_size.into(), 1, i64::MAX)?;
        if self.k > self.coreset_size {
            return Err(field_error(
                "k",
                format!(
                    "is {}, must be <= coreset_size {} (the bank's rows)",
                    self.k, self.coreset_size
                ),
            ));
        }
        for side in self.grid {
            in_range("grid", side.into(), 1, MAX_SIDE)?;
        }
        in_range("n_train_images", self.n_train_images.into(), 1, i64::MAX)?;
        if self.n_patches < u64::from(self.coreset_size) {
            return Err(field_error(
                "n_patches",
                format!(
                    "is {}, must be >= coreset_size {} (the coreset is a subset)",
                    self.n_patches, self.coreset_size
                ),
            ));
        }
        check_coreset(self.coreset_ratio.into(), self.coreset_projection as usize)?;
        let c = &self.calibration;
        if let Some(bad) = c.scores.iter().find(|s| !s.is_finite()) {
            return Err(field_error(
                "calibration.scores",
                format!("holds {bad}, must all be finite"),
            ));
        }
        finite("calibration.min", c.min.into())?;
        finite("calibration.max", c.max.into())?;
        finite("calibration.threshold", c.threshold.into())?;
        if c.min > c.max {
            return Err(field_error(
                "calibration.min",
                format!("is {}, must be <= calibration.max {}", c.min, c.max),
            ));
        }
        Ok(())
    }

    /// `(score - min) / (max - min)` over the calibration scores; 1.0 is the worst good training image.
    pub fn normalize(&self, score: f32) -> f32 {
        let c = &self.calibration;
        let span = (c.max - c.min).max(f32::EPSILON);
        (score - c.min) / span
    }
}

/// Key of the JSON metadata inside the safetensors header.
const META_KEY: &str = "patchcore";
/// A header larger than this is not ours (guards against reading garbage as a length).
const MAX_HEADER: u64 = 64 << 20;

/// Storage precision of the bank rows (`fit --bank-dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BankDtype {
    F32,
    F16,
}

/// A bank in memory: metadata, rows `(n_rows, embed_dim)` as f32, and each row's training image.
#[derive(Clone, Debug, PartialEq)]
pub struct BankFile {
    pub meta: BankMeta,
    pub rows: Vec<f32>,
    pub source_image: Vec<i32>,
}

impl BankFile {
    pub fn n_rows(&self) -> usize {
        self.source_image.len()
    }

    /// Writes atomically: a temporary file in the same folder, flushed, then renamed over `path`.
    /// The safetensors layout is written directly, the rows streamed in blocks, so saving a large
    /// bank never holds another copy of it in memory.
    pub fn save(&self, path: &Path) -> Result<(), BankError> {
        use std::io::Write;
        let d = self.meta.embed_dim as usize;
        let n = self.n_rows();
        let invalid = |reason: String| BankError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if self.rows.len() != n * d {
            return Err(invalid(format!(
                "{} row values for {n} rows of {d}",
                self.rows.len()
            )));
        }
        let (dtype, width) = match self.meta.bank_dtype {
            BankDtype::F32 => ("F32", 4),
            BankDtype::F16 => ("F16", 2),
        };
        let bank_bytes = n * d * width;
        let meta_json = serde_json::to_string(&self.meta).map_err(|e| invalid(e.to_string()))?;
        let mut header = serde_json::json!({
            "__metadata__": { META_KEY: meta_json },
            "bank": { "dtype": dtype, "shape": [n, d], "data_offsets": [0, bank_bytes] },
            "source_image": {
                "dtype": "I32",
                "shape": [n],
                "data_offsets": [bank_bytes, bank_bytes + 4 * n]
            },
        })
        .to_string();
        // Data starts 8-byte aligned, as the safetensors writer does it.
        while !header.len().is_multiple_of(8) {
            header.push(' ');
        }
        let format = self.meta.bank_dtype;
        crate::report::write_atomic_with(path, |w| {
            w.write_all(&(header.len() as u64).to_le_bytes())?;
            w.write_all(header.as_bytes())?;
            let mut buf = Vec::with_capacity(STREAM_VALUES * 4);
            for block in self.rows.chunks(STREAM_VALUES) {
                buf.clear();
                match format {
                    BankDtype::F32 => block.iter().for_each(|v| buf.extend(v.to_le_bytes())),
                    BankDtype::F16 => block
                        .iter()
                        .for_each(|v| buf.extend(half::f16::from_f32(*v).to_le_bytes())),
                }
                w.write_all(&buf)?;
            }
            buf.clear();
            self.source_image
                .iter()
                .for_each(|v| buf.extend(v.to_le_bytes()));
            w.write_all(&buf)
        })
        .map_err(|source| BankError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads and validates a whole bank file.
    pub fn load(path: &Path) -> Result<BankFile, BankError> {
        let bytes = std::fs::read(path).map_err(|source| BankError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| BankError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let meta = parse_meta(path, &bytes)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| invalid(format!("{e} (truncated or not a safetensors file?)")))?;
        let bank = st
            .tensor("bank")
            .map_err(|_| invalid("missing tensor `bank`".into()))?;
        let src = st
            .tensor("source_image")
            .map_err(|_| invalid("missing tensor `source_image`".into()))?;
        let d = meta.embed_dim as usize;
        let n = bank.shape().first().copied().unwrap_or(0);
        if bank.shape() != [n, d] {
            return Err(invalid(format!(
                "tensor `bank` has shape {:?}, expected [rows, {d}] (embed_dim in the metadata)",
                bank.shape()
            )));
        }
        if n == 0 || n as u64 != meta.coreset_size as u64 {
            return Err(invalid(format!(
                "tensor `bank` has {n} rows but the metadata says coreset_size {}",
                meta.coreset_size
            )));
        }
        if src.shape() != [n] || src.dtype() != safetensors::Dtype::I32 {
            return Err(invalid(format!(
                "tensor `source_image` is {:?} {:?}, expected I32 [{n}]",
                src.dtype(),
                src.shape()
            )));
        }
        use safetensors::Dtype;
        let rows: Vec<f32> = match (bank.dtype(), meta.bank_dtype) {
            (Dtype::F32, BankDtype::F32) => bank
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            (Dtype::F16, BankDtype::F16) => bank
                .data()
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            (found, want) => {
                return Err(invalid(format!(
                    "tensor `bank` is {found:?} but the metadata says {want:?}"
                )))
            }
        };
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(invalid("tensor `bank` holds NaN or infinite values".into()));
        }
        let source_image = src
            .data()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(BankFile {
            meta,
            rows,
            source_image,
        })
    }
}

/// Values converted and written per block when a bank is saved.
const STREAM_VALUES: usize = 1 << 20;

fn parse_meta(path: &Path, bytes: &[u8]) -> Result<BankMeta, BankError> {
    let invalid = |reason: String| BankError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 8 {
        return Err(invalid(format!(
            "file is {} bytes long, too short for a header (truncated?)",
            bytes.len()
        )));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(len8);
    if n > MAX_HEADER || 8 + n > bytes.len() as u64 {
        return Err(invalid(format!(
            "header length {n} does not fit in the {}-byte file (truncated or not a bank file)",
            bytes.len()
        )));
    }
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n as usize])
        .map_err(|e| invalid(format!("header is not JSON: {e}")))?;
    let meta_json = header
        .get("__metadata__")
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| BankError::NotABank {
            path: path.to_path_buf(),
        })?
        .as_str()
        .ok_or_else(|| invalid(format!("`{META_KEY}` metadata is not a string")))?;
    let raw: serde_json::Value = serde_json::from_str(meta_json)
        .map_err(|e| invalid(format!("metadata is not JSON: {e}")))?;
    let found = raw
        .get("format_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0) as u32;
    if found != FORMAT_VERSION {
        return Err(BankError::Version {
            path: path.to_path_buf(),
            found,
        });
    }
    let meta: BankMeta =
        serde_json::from_value(raw).map_err(|e| invalid(format!("metadata: {e}")))?;
    meta.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(meta)
}

/// Reads only the header of a bank file (no tensors, no libtorch): what the GUI lists.
pub fn read_meta(path: &Path) -> Result<BankMeta, BankError> {
    use std::io::Read;
    let io = |source| BankError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut len8 = [0u8; 8];
    f.read_exact(&mut len8).map_err(|_| BankError::Invalid {
        path: path.to_path_buf(),
        reason: format!("file is {file_len} bytes long, too short for a header (truncated?)"),
    })?;
    let n = u64::from_le_bytes(len8)
        .min(MAX_HEADER)
        .min(file_len.saturating_sub(8));
    let mut head = len8.to_vec();
    head.resize(8 + n as usize, 0);
    f.read_exact(&mut head[8..]).map_err(io)?;
    // parse_meta re-checks the declared length against what we could read.
    let declared = u64::from_le_bytes(len8);
    if declared != n {
        return Err(BankError::Invalid {
            path: path.to_path_buf(),
            reason: format!("header length {declared} does not fit in the {file_len}-byte file (truncated or not a bank file)"),
        });
    }
    parse_meta(path, &head)
}
