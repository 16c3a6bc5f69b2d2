//! The one error type of the data layer: every variant names the file or folder involved.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exists but does not decode to a usable image.
    #[error("{}: not a usable image: {reason}", .path.display())]
    Image { path: PathBuf, reason: String },
    /// A folder or split file does not describe a dataset we can use.
    #[error("{}: {reason}", .path.display())]
    Dataset { path: PathBuf, reason: String },
}
