//! `patchcore gui`: the operator workstation.
use super::args::default_models_dir;
use crate::app::{self, GuiOptions};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct GuiArgs {
    /// Folder of bank files, one category each (default: the one used last).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Folder with the backbone weights (default: as for fit).
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
    /// Score new images as they appear in this folder.
    #[arg(long)]
    pub inbox: Option<PathBuf>,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// libtorch threads for scoring on the CPU (default: one per core, as `predict`).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(a: GuiArgs) -> Result<()> {
    app::run(GuiOptions {
        models_dir: a.models,
        weights_dir: Some(a.weights_dir.unwrap_or_else(default_models_dir)),
        device: a.device,
        inbox: a.inbox,
        batch_size: a.batch_size,
        torch_threads: a
            .threads
            .unwrap_or_else(crate::app::torch_backend::default_threads),
        ..Default::default()
    })
}
