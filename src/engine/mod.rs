//! The PatchCore method, one file per step: decoding (`pipeline`), features (`extractor`,
//! `embed`), fitting (`fit`, `coreset`), scoring (`inspect`, `knn`, `anomaly_map`), with the
//! settings (`method`, `precision`) and the error type they share.
pub mod anomaly_map;
pub mod calibrate;
pub mod coreset;
pub mod device;
pub mod embed;
mod error;
pub mod extractor;
pub mod feature_store;
pub mod fit;
pub mod host;
pub mod inspect;
pub mod inspection;
pub mod knn;
pub mod memory;
mod method;
pub mod pipeline;
pub mod precision;
pub mod select;
pub mod update;

pub use error::EngineError;
pub use extractor::Extractor;
pub use fit::{FitOptions, FitTimes};
pub use inspect::PatchCore;
pub use inspection::{AnomalyMap, Inspection, PhaseTimes, TopPatch};
pub use method::Method;
pub use pipeline::{decode_all, for_each_decoded, Decoded, NoProgress, Progress};
pub use precision::{Precision, PrecisionChoice};
pub use update::{update, update_and_commit, UpdateOptions, UpdateTimes, Updated};
