//! Options shared by several subcommands: device, models folder, weights, batch size.
use crate::backbone;
use crate::engine::precision::{self, Precision, PrecisionChoice};
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Args, Clone, Debug)]
pub struct RuntimeArgs {
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Folder with the backbone weights (default: $PATCHCORE_MODELS, ./models, or the checkout's models/).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Weights file to use instead of the registry's file in the models folder (.safetensors or .pth).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// bf16 for the backbone and the search's shortlisting GEMM (distances stay exact f32), or
    /// f32; auto picks bf16 only where it was measured faster (CUDA, CPUs with AMX).
    #[arg(long, value_enum, default_value_t)]
    pub precision: PrecisionChoice,
}

impl RuntimeArgs {
    pub fn device(&self) -> Result<Device> {
        parse_device(&self.device)
    }

    pub fn models_dir(&self) -> PathBuf {
        self.models.clone().unwrap_or_else(default_models_dir)
    }

    /// The precision `--precision` resolves to for `backbone` on `--device` (warns where slower).
    pub fn precision(&self, backbone: &str) -> Result<Precision> {
        let spec = backbone::find(backbone)?;
        let (precision, warning) = precision::resolve(self.precision, self.device()?, spec);
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        Ok(precision)
    }

    /// The weights for `backbone`: `--weights`, else the registry's file in the models folder.
    pub fn weights_for(&self, backbone: &str) -> Result<PathBuf> {
        if let Some(w) = &self.weights {
            return Ok(w.clone());
        }
        let spec = backbone::find(backbone)?;
        let path = spec.weights_in(&self.models_dir());
        if !path.exists() {
            bail!(
                "weights for {backbone} not found at {} (run `bash scripts/setup.sh`, or pass --weights FILE)",
                path.display()
            );
        }
        Ok(path)
    }
}

pub fn parse_device(s: &str) -> Result<Device> {
    crate::engine::device::parse_device(s).map_err(|e| anyhow::anyhow!("--{e}"))
}

/// `$PATCHCORE_MODELS`, `./models`, or the checkout's `models/` next to `target/<profile>/patchcore`.
pub fn default_models_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PATCHCORE_MODELS") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("models");
    if local.is_dir() {
        return local;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(Path::parent)
                .and_then(Path::parent)
                .map(|p| p.join("models"))
        })
        .filter(|p| p.is_dir())
        .unwrap_or(local)
}
