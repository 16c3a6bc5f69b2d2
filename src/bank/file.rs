//! The bank file: safetensors with the rows, each row's source image, and the metadata as JSON;
//! written atomically and streamed, read back with every size and value checked.
use super::{BankDtype, BankError, BankMeta, READABLE_VERSIONS};
use crate::decide::Roi;
use std::path::Path;

/// Key of the JSON metadata inside the safetensors header.
const META_KEY: &str = "patchcore";
/// A header larger than this is not ours (guards against reading garbage as a length).
const MAX_HEADER: u64 = 64 << 20;

/// A bank in memory: metadata, rows `(n_rows, embed_dim)` as f32, each row's training image,
/// the region of interest, and the calibration images' leave-one-out patch-score grids.
#[derive(Clone, Debug, PartialEq)]
pub struct BankFile {
    pub meta: BankMeta,
    pub rows: Vec<f32>,
    pub source_image: Vec<i32>,
    /// Stored as U8 tensor `roi` (height x width); `meta.roi` records its size and hash.
    pub roi: Option<Roi>,
    /// F32 tensor `calibration_maps` (n_calibration x grid rows x grid cols); empty in
    /// version-1 banks, which therefore cannot be recalibrated under an ROI.
    pub calibration_maps: Vec<f32>,
    /// Present exactly when `meta.growth` is (banks that `update` can grow).
    pub calibration_patches: Option<CalibrationPatches>,
}

/// Each calibration image's highest-scoring patches with their leave-one-out neighbour
/// distances: what `update` rescores against new rows instead of re-embedding the images.
/// Always f32, whatever the bank's dtype, so a rescore is exact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalibrationPatches {
    /// `(images * keep, embed_dim)`, image by image, highest score first.
    pub features: Vec<f32>,
    /// `(images * keep, k)` squared distances to the nearest rows of other images, nearest first.
    pub sq_dist: Vec<f32>,
    /// Per image, the highest score among its patches not kept (0 when all are kept): an upper
    /// bound that tells whether a rescore of the kept ones is exact.
    pub next: Vec<f32>,
}

/// Names of the optional tensors of `CalibrationPatches`.
const PATCH_TENSORS: [&str; 3] = [
    "calibration_patches",
    "calibration_patch_sq_dist",
    "calibration_next",
];

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
        if self.meta.growth.is_some() != self.calibration_patches.is_some() {
            return Err(invalid(
                "growth metadata and calibration patches must come together".into(),
            ));
        }
        let (dtype, width) = match self.meta.bank_dtype {
            BankDtype::F32 => ("F32", 4),
            BankDtype::F16 => ("F16", 2),
        };
        let bank_bytes = n * d * width;
        let mut meta = self.meta.clone();
        // A version-1 bank read and saved again carries this version's fields: never write it
        // under the old number (a version-1 reader would ignore its ROI).
        meta.format_version = meta.format_version.max(super::FORMAT_VERSION);
        meta.roi = self.roi.as_ref().map(|r| super::RoiInfo {
            width: r.width,
            height: r.height,
            sha256: r.sha256(),
        });
        let meta_json = serde_json::to_string(&meta).map_err(|e| invalid(e.to_string()))?;
        let mut header = serde_json::json!({
            "__metadata__": { META_KEY: meta_json },
            "bank": { "dtype": dtype, "shape": [n, d], "data_offsets": [0, bank_bytes] },
            "source_image": {
                "dtype": "I32",
                "shape": [n],
                "data_offsets": [bank_bytes, bank_bytes + 4 * n]
            },
        });
        let mut end = bank_bytes + 4 * n;
        if !self.calibration_maps.is_empty() {
            let [gh, gw] = self.meta.grid.map(|v| v as usize);
            let shape = [self.calibration_maps.len() / (gh * gw).max(1), gh, gw];
            let bytes = 4 * self.calibration_maps.len();
            header["calibration_maps"] = serde_json::json!({
                "dtype": "F32", "shape": shape, "data_offsets": [end, end + bytes]
            });
            end += bytes;
        }
        let patches = self.calibration_patches.as_ref();
        if let Some(p) = patches {
            let images = p.next.len();
            let kept = p.features.len() / d.max(1);
            let shapes = [
                vec![kept, d],
                vec![kept, p.sq_dist.len() / kept.max(1)],
                vec![images],
            ];
            for (name, shape) in PATCH_TENSORS.iter().zip(shapes) {
                let bytes = 4 * shape.iter().product::<usize>();
                header[*name] = serde_json::json!({
                    "dtype": "F32", "shape": shape, "data_offsets": [end, end + bytes]
                });
                end += bytes;
            }
        }
        if let Some(r) = &self.roi {
            header["roi"] = serde_json::json!({
                "dtype": "U8", "shape": [r.height, r.width], "data_offsets": [end, end + r.mask.len()]
            });
        }
        let mut header = header.to_string();
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
            w.write_all(&buf)?;
            for values in std::iter::once(&self.calibration_maps).chain(
                patches
                    .iter()
                    .flat_map(|p| [&p.features, &p.sq_dist, &p.next]),
            ) {
                for block in values.chunks(STREAM_VALUES) {
                    buf.clear();
                    block.iter().for_each(|v| buf.extend(v.to_le_bytes()));
                    w.write_all(&buf)?;
                }
            }
            w.write_all(self.roi.as_ref().map_or(&[][..], |r| &r.mask))
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
        let calibration_maps = calibration_maps(&st, &meta).map_err(invalid)?;
        let roi = roi(&st, &meta).map_err(invalid)?;
        let calibration_patches = match &meta.growth {
            None => None,
            Some(g) => {
                let images = meta.calibration.scores.len();
                let kept = images * g.calibration_keep as usize;
                let shapes = [vec![kept, d], vec![kept, meta.k as usize], vec![images]];
                let mut values = Vec::with_capacity(3);
                for (name, shape) in PATCH_TENSORS.iter().zip(shapes) {
                    let t = st.tensor(name).map_err(|_| {
                        invalid(format!(
                            "missing tensor `{name}` (the metadata has `growth`)"
                        ))
                    })?;
                    if t.shape() != shape.as_slice() || t.dtype() != Dtype::F32 {
                        return Err(invalid(format!(
                            "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                            t.dtype(),
                            t.shape()
                        )));
                    }
                    let v: Vec<f32> = t
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    if v.iter().any(|x| !x.is_finite()) {
                        return Err(invalid(format!(
                            "tensor `{name}` holds NaN or infinite values"
                        )));
                    }
                    values.push(v);
                }
                let next = values.pop().unwrap_or_default();
                let sq_dist = values.pop().unwrap_or_default();
                let features = values.pop().unwrap_or_default();
                Some(CalibrationPatches {
                    features,
                    sq_dist,
                    next,
                })
            }
        };
        Ok(BankFile {
            meta,
            rows,
            source_image,
            roi,
            calibration_maps,
            calibration_patches,
        })
    }
}

/// Tensor `calibration_maps`, checked against the calibration it came with.
fn calibration_maps(st: &safetensors::SafeTensors, meta: &BankMeta) -> Result<Vec<f32>, String> {
    let Ok(t) = st.tensor("calibration_maps") else {
        return Ok(Vec::new());
    };
    // The maps are the fit's calibration images; images `update` added have scores but no maps.
    let added: usize = meta.history.iter().map(|h| h.images.len()).sum();
    let n = meta.calibration.scores.len().saturating_sub(added);
    let want = [n, meta.grid[0] as usize, meta.grid[1] as usize];
    if t.dtype() != safetensors::Dtype::F32 || t.shape() != want {
        return Err(format!(
            "tensor `calibration_maps` is {:?} {:?}, expected F32 {want:?} (the fit's calibration images x grid)",
            t.dtype(),
            t.shape()
        ));
    }
    if meta.calibration_geometry.len() != n {
        return Err(format!(
            "{} calibration geometries for {n} calibration maps",
            meta.calibration_geometry.len()
        ));
    }
    let maps: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if maps.iter().any(|v| !v.is_finite()) {
        return Err("tensor `calibration_maps` holds NaN or infinite values".into());
    }
    Ok(maps)
}

/// Tensor `roi`, which must be there exactly when the metadata records one, and match its
/// size and sha256 (a damaged mask would silently inspect the wrong pixels).
fn roi(st: &safetensors::SafeTensors, meta: &BankMeta) -> Result<Option<Roi>, String> {
    let tensor = st.tensor("roi").ok();
    let (t, info) = match (tensor, &meta.roi) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err("tensor `roi` without `roi` in the metadata".into()),
        (None, Some(_)) => {
            return Err("the metadata records an ROI but tensor `roi` is missing".into())
        }
        (Some(t), Some(info)) => (t, info),
    };
    let want = [info.height as usize, info.width as usize];
    if t.dtype() != safetensors::Dtype::U8 || t.shape() != want {
        return Err(format!(
            "tensor `roi` is {:?} {:?}, expected U8 {want:?} (the metadata's ROI size)",
            t.dtype(),
            t.shape()
        ));
    }
    if t.data().iter().any(|&v| v > 1) {
        return Err("tensor `roi` holds values other than 0 and 1 (damaged mask)".into());
    }
    let roi = Roi::new(info.width, info.height, t.data()).map_err(|e| format!("roi: {e}"))?;
    if roi.sha256() != info.sha256 {
        return Err(format!(
            "ROI mask sha256 {} does not match the metadata's {} (damaged mask)",
            roi.sha256(),
            info.sha256
        ));
    }
    Ok(Some(roi))
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
    if !READABLE_VERSIONS.contains(&found) {
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
