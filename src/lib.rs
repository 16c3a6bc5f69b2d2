//! PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022)
//! with an operator workstation on top.
//!
//! Layers, each depending only on those below it:
//! `cli`, `app` -> `bank` -> `engine` -> `backbone` ; `data` and `metrics` stand alone.

pub mod app;
pub mod backbone;
pub mod bank;
pub mod cli;
pub mod data;
pub mod engine;
pub mod metrics;
