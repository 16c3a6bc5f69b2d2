//! `patchcore demo`: the main job on an embedded default. Makes a synthetic category of parts
//! with scratches, dents, stains and missing pieces, fits a bank on its good parts, evaluates it,
//! and opens the operator app (or, without a display, stops after printing the evaluation).
use super::args::RuntimeArgs;
use super::eval::{self, EvalArgs};
use super::fit::{self, BankArgs, FitArgs, MethodArgs};
use crate::data::synthetic::{self, SyntheticSpec};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo category and its bank go.
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Only fit and evaluate; do not open the operator app.
    #[arg(long)]
    pub no_gui: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

const CATEGORY: &str = "demo_parts";

pub fn run(a: DemoArgs) -> Result<()> {
    let data_dir = a.dir.join("data");
    let banks = a.dir.join("banks");
    std::fs::create_dir_all(&banks).with_context(|| format!("creating {}", banks.display()))?;
    let spec = SyntheticSpec::default();
    let dataset = synthetic::generate(&data_dir, CATEGORY, &spec)?;
    println!(
        "demo: {} good training parts and {} test parts in {}",
        dataset.train.len(),
        dataset.test.len(),
        dataset.root.display()
    );
    let bank = banks.join(format!("{CATEGORY}.safetensors"));
    fit::run(FitArgs {
        data: dataset.root.clone(),
        category: None,
        out: bank.clone(),
        method: MethodArgs::default(),
        no_select: false,
        runtime: a.runtime.clone(),
        bank: BankArgs::default(),
    })?;
    eval::run(EvalArgs {
        bank: bank.clone(),
        data: dataset.root.clone(),
        category: None,
        json: Some(a.dir.join("eval.json")),
        dump_maps: None,
        runtime: a.runtime.clone(),
    })?;
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if a.no_gui || !has_display {
        println!("demo: no display (or --no-gui): the evaluation above is the result; `patchcore gui --models {}` opens the app", banks.display());
        return Ok(());
    }
    super::gui::run(super::gui::GuiArgs {
        models: Some(banks),
        weights_dir: Some(a.runtime.models_dir()),
        inbox: None,
        device: a.runtime.device.clone(),
        batch_size: a.runtime.batch_size,
        threads: None,
    })
}
