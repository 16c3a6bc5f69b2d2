//! PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022)
//! with an operator workstation on top.
//!
//! Layers, each depending only on those below it (checked with `grep -rn 'crate::' src/<layer>`):
//!
//! | layer | uses |
//! |---|---|
//! | `cli` (the binary's subcommands), `app` (the operator workstation) | everything below; `cli` reaches `app` only to open it (`gui`, `demo`) |
//! | `engine` (embed, coreset, search, maps, fit and inspect) | `bank`, `backbone`, `data`, `metrics`, `report` |
//! | `bank` (the memory bank file) | `data`, `report` |
//! | `backbone` (the frozen CNNs, `.pth`/safetensors weights) | libtorch only |
//! | `data` (decoding, geometry, datasets) | `report` (atomic writes) |
//! | `metrics`, `report` (decisions, CSV, `.npy`, atomic writes, timestamps) | nothing of ours |

pub mod app;
pub mod backbone;
pub mod bank;
pub mod cli;
pub mod data;
pub mod decide;
pub mod engine;
pub mod metrics;
pub mod report;
