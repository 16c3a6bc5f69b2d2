//! What leaves the system: accept/reject decisions, CSV rows (every image, failures included),
//! `.npy` maps, atomic file writes and timestamps. Plain values only, so every layer can use it:
//! the bank and the data generator write atomically, `predict` and the app write the same CSV.
mod atomic;
mod csv;
mod decision;
mod npy;
mod provenance;
mod time;

pub use atomic::{check_writable, write_atomic, write_atomic_with};
pub use csv::{neutralize_formula, write_csv_file, CsvRecord, CsvStream, Outcome, CSV_COLUMNS};
pub use decision::Decision;
pub use npy::write_npy;
pub use provenance::{sha256_file, Operator};
pub use time::now_rfc3339;

/// A report file that could not be written; names the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", .path.display())]
pub struct WriteError {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}
