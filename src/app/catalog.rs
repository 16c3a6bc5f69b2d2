//! Finding things on disk: the bank files of the models folder and the images of a folder.
//! Header reads and directory walks only (no libtorch); run off the GUI thread.
use crate::bank::{self, BankError, BankMeta};
use std::path::{Path, PathBuf};

/// One bank file of the models folder. A `.safetensors` file that is not plainly some other
/// safetensors file (weights) but cannot be read as a bank is listed with its error, so the
/// operator sees why a category is missing.
#[derive(Clone, Debug)]
pub struct CatalogEntry {
    pub path: PathBuf,
    pub file_name: String,
    pub meta: Result<BankMeta, String>,
}

impl CatalogEntry {
    /// One-line description for the picker: category, backbone, training images, threshold.
    pub fn summary(&self) -> String {
        match &self.meta {
            Ok(m) => format!(
                "{} — {}, {} train images, threshold {:.3}",
                m.category, m.backbone, m.n_train_images, m.calibration.threshold
            ),
            Err(e) => format!("{} — unusable: {e}", self.file_name),
        }
    }

    pub fn category(&self) -> &str {
        match &self.meta {
            Ok(m) => &m.category,
            Err(_) => &self.file_name,
        }
    }
}

/// All bank files of `dir`, sorted by file name.
pub fn scan_models(dir: &Path) -> Result<Vec<CatalogEntry>, String> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read models folder {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let path = entry.path();
        let is_st = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if !is_st || !path.is_file() {
            continue;
        }
        // Backbone weights files share the folder: skip them silently. Anything else that
        // fails (truncated, bad metadata, newer format) is listed with its reason.
        let meta = match bank::read_meta(&path) {
            Ok(m) => Ok(m),
            Err(BankError::NotABank { .. }) => continue,
            Err(e) => Err(e.to_string()),
        };
        out.push(CatalogEntry {
            file_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path,
            meta,
        });
    }
    out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(out)
}
