//! `patchcore backbones`: what can be used here, with which weights.
use super::args::default_models_dir;
use crate::backbone;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BackbonesArgs {
    /// Folder with the weights (default: as for fit).
    #[arg(long)]
    pub models: Option<PathBuf>,
}

pub fn run(a: BackbonesArgs) -> Result<()> {
    let models = a.models.unwrap_or_else(default_models_dir);
    let default = backbone::default_backbone(&models);
    println!(
        "{:<18} {:<7} {:<28} {:<40} weights",
        "backbone", "input", "default stages", "stages (stride)"
    );
    for spec in backbone::registry() {
        let weights = spec.weights_in(&models);
        let status = if weights.exists() {
            format!("ready ({})", weights.display())
        } else {
            format!("missing ({})", weights.display())
        };
        let stages: Vec<String> = spec
            .stages
            .iter()
            .map(|s| format!("{}/{}", s.name, s.stride))
            .collect();
        let mut stages = stages.join(" ");
        if stages.len() > 40 {
            stages.truncate(37);
            stages.push_str("...");
        }
        println!(
            "{:<18} {:<7} {:<28} {:<40} {}{}",
            spec.name,
            spec.input_size,
            spec.default_stages.join("+"),
            stages,
            status,
            if spec.name == default.name {
                "  [default]"
            } else {
                ""
            }
        );
    }
    Ok(())
}
