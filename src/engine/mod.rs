//! The PatchCore method: patch embedding, coreset, nearest-neighbour search, anomaly maps, and
//! the `PatchCore` object that ties them together for every caller.
pub mod anomaly_map;
pub mod coreset;
pub mod device;
pub mod embed;
pub mod feature_store;
pub mod host;
pub mod inspection;
pub mod knn;
pub mod patchcore;
pub mod precision;
pub mod select;

pub use inspection::{AnomalyMap, Inspection, PhaseTimes, TopPatch};
pub use patchcore::{EngineError, FitOptions, FitTimes, Method, PatchCore, Progress};
pub use precision::{Precision, PrecisionChoice};
