//! CSV export of inspection results (the GUI's "Export rejects...", and usable by
//! `patchcore predict --csv` so both produce the same columns).
//!
//! Written atomically: the rows go to a temp file beside the target, which is renamed over it
//! only when complete, so an existing file is never left half-written.
use super::state::Decision;
use crate::engine::Inspection;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Column names, in order.
pub const CSV_COLUMNS: [&str; 12] = [
    "path",
    "score",
    "normalized_score",
    "threshold",
    "decision",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "category",
    "bank",
    "timestamp",
];

/// One CSV line: an image's result and the context that produced its decision.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvRecord {
    pub path: PathBuf,
    pub score: f32,
    pub normalized: f32,
    pub threshold: f32,
    pub decision: Decision,
    /// Top patch `[x, y, w, h]` in original-image pixels.
    pub top_box: [u32; 4],
    pub category: String,
    pub bank: PathBuf,
    /// When the image was scored (RFC 3339, UTC).
    pub timestamp: String,
}

impl CsvRecord {
    /// The record for `inspection` judged against `threshold`.
    pub fn new(
        inspection: &Inspection,
        threshold: f32,
        category: &str,
        bank: &Path,
        timestamp: &str,
    ) -> CsvRecord {
        CsvRecord {
            path: inspection.path.clone(),
            score: inspection.score,
            normalized: inspection.normalized,
            threshold,
            decision: Decision::of(inspection.score, threshold),
            top_box: inspection.top_patch.box_original,
            category: category.to_string(),
            bank: bank.to_path_buf(),
            timestamp: timestamp.to_string(),
        }
    }
}

/// Quotes a field when it holds a separator, quote or line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes the header and `records` to `out`.
pub fn write_csv(out: &mut impl Write, records: &[CsvRecord]) -> std::io::Result<()> {
    writeln!(out, "{}", CSV_COLUMNS.join(","))?;
    for r in records {
        let [x, y, w, h] = r.top_box;
        writeln!(
            out,
            "{},{},{},{},{},{x},{y},{w},{h},{},{},{}",
            field(&r.path.to_string_lossy()),
            r.score,
            r.normalized,
            r.threshold,
            r.decision.as_str(),
            field(&r.category),
            field(&r.bank.to_string_lossy()),
            field(&r.timestamp),
        )?;
    }
    Ok(())
}

/// Writes `records` to `path` atomically (temp file, fsync, rename).
pub fn write_csv_file(path: &Path, records: &[CsvRecord]) -> Result<(), ExportError> {
    let mut bytes = Vec::with_capacity(128 * (records.len() + 1));
    let err = |source| ExportError::Write {
        path: path.to_path_buf(),
        source,
    };
    write_csv(&mut bytes, records).map_err(err)?;
    crate::bank::write_atomic(path, &bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_awkward_fields() {
        let r = CsvRecord {
            path: PathBuf::from("a,b/\"c\".png"),
            score: 1.5,
            normalized: 0.25,
            threshold: 1.0,
            decision: Decision::Reject,
            top_box: [1, 2, 3, 4],
            category: "bottle".into(),
            bank: PathBuf::from("m/bottle.safetensors"),
            timestamp: "2024-01-01T00:00:00Z".into(),
        };
        let mut out = Vec::new();
        write_csv(&mut out, &[r]).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "\"a,b/\"\"c\"\".png\",1.5,0.25,1,reject,1,2,3,4,bottle,m/bottle.safetensors,2024-01-01T00:00:00Z"
        );
    }
}
