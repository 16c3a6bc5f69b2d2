//! Options shared by several subcommands: device, models folder, weights, batch size.
use crate::backbone;
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
    /// f32, or bf16 for the backbone and the search's shortlisting GEMM (distances stay exact f32).
    #[arg(long, default_value = "f32")]
    pub precision: String,
}

impl RuntimeArgs {
    pub fn device(&self) -> Result<Device> {
        parse_device(&self.device)
    }

    pub fn models_dir(&self) -> PathBuf {
        self.models.clone().unwrap_or_else(default_models_dir)
    }

    pub fn precision(&self) -> Result<crate::engine::Precision> {
        match self.precision.as_str() {
            "f32" => Ok(crate::engine::Precision::F32),
            "bf16" => {
                if self.device()? == Device::Cpu && !cpu_has_bf16() {
                    eprintln!(
                        "warning: this CPU has no AVX512-BF16/AMX: bf16 runs slower than f32 here"
                    );
                }
                Ok(crate::engine::Precision::Bf16)
            }
            other => bail!("--precision must be f32 or bf16, not {other:?}"),
        }
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

/// Whether oneDNN has native bfloat16 arithmetic on this CPU (Sapphire Rapids and later have it;
/// AVX2-only CPUs emulate it, several times slower than f32).
fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
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
