//! Command-line interface: `fit`, `eval`, `predict`, `roi`, `rules`, `update`, `history`,
//! `revert`, `gui`, `demo`, `synth`, `backbones`, `bench`.
//! Errors become `anyhow` only here, at the binary's edge.
mod args;
mod backbones;
mod bench;
mod demo;
mod eval;
mod fit;
mod gui;
mod history;
mod predict;
mod progress;
mod revert;
mod roi;
mod synth;
mod update;

use crate::data::{set_decode_limits, DecodeLimits};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "patchcore",
    version,
    about = "PatchCore anomaly detection: fit a memory bank on good parts, inspect new ones"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    decode: DecodeArgs,
}

/// Limits checked from each image's header before decoding (README: "Limits"); every
/// subcommand obeys them, so a decompression bomb is refused in milliseconds.
#[derive(clap::Args)]
struct DecodeArgs {
    /// Largest image accepted, in pixels (width x height).
    #[arg(long, global = true, default_value_t = DecodeLimits::DEFAULT.max_pixels)]
    max_pixels: u64,
    /// Largest aspect ratio accepted (longer side / shorter side).
    #[arg(long, global = true, default_value_t = DecodeLimits::DEFAULT.max_aspect)]
    max_aspect: f64,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a memory bank on good images of one category.
    Fit(fit::FitArgs),
    /// Score a labelled test set and report image AUROC, pixel AUROC, PRO and F1-max.
    Eval(eval::EvalArgs),
    /// Inspect images with a fitted bank: scores, decisions, CSV and heatmaps.
    Predict(predict::PredictArgs),
    /// Show or set the bank's region of interest (white = inspect); recalibrates.
    Roi(roi::RoiArgs),
    /// Show or change the bank's decision rules: review and reject thresholds, minimum area.
    Rules(roi::RulesArgs),
    /// Teach a bank new good images (no refit); the previous version is kept.
    Update(update::UpdateArgs),
    /// Show what a bank was taught, by whom, and the versions kept.
    History(history::HistoryArgs),
    /// Restore a kept version of a bank, bit for bit.
    Revert(revert::RevertArgs),
    /// Open the operator workstation.
    Gui(gui::GuiArgs),
    /// List the backbones, their stages and which weights are present.
    Backbones(backbones::BackbonesArgs),
    /// Time fit and predict phase by phase, with peak memory.
    Bench(bench::BenchArgs),
    /// The main job on an embedded demo: synthetic parts, fit, evaluate, open the operator app.
    Demo(demo::DemoArgs),
    /// Write a synthetic category with exact masks: long bars at 1-4 megapixels, or flanges.
    Synth(synth::SynthArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let aspect = cli.decode.max_aspect;
    if aspect.is_nan() || aspect < 1.0 || cli.decode.max_pixels == 0 {
        eprintln!("error: --max-pixels must be at least 1 and --max-aspect at least 1");
        return ExitCode::FAILURE;
    }
    set_decode_limits(DecodeLimits {
        max_pixels: cli.decode.max_pixels,
        max_aspect: cli.decode.max_aspect,
    });
    // Named pool threads, so a per-thread CPU split (/proc/PID/task/*/comm) reads as parts of
    // the program. Fails only if a pool already exists, which then keeps its names.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("pc-rayon-{i}"))
        .build_global();
    let result = match cli.command {
        Command::Fit(a) => fit::run(a),
        Command::Eval(a) => eval::run(a).map(|_| ()),
        Command::Predict(a) => predict::run(a),
        Command::Update(a) => update::run(a),
        Command::History(a) => history::run(a),
        Command::Revert(a) => revert::run(a),
        Command::Backbones(a) => backbones::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Gui(a) => gui::run(a),
        Command::Roi(a) => roi::run_roi(a),
        Command::Rules(a) => roi::run_rules(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain_text(&e));
            if e.downcast_ref::<predict::Uninspected>().is_some() {
                ExitCode::from(predict::EXIT_UNINSPECTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes joined by ": ", each cause left out when the text before it already
/// holds it: our error types name their cause in their own message, and `{:#}` said it twice.
fn chain_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[cfg(test)]
mod chain_tests {
    use super::chain_text;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let data = crate::data::DataError::Write {
            path: "/proc/nope/x.csv".into(),
            source: io,
        };
        let e = anyhow::Error::new(data);
        assert_eq!(
            chain_text(&e),
            "cannot write /proc/nope/x.csv: no such file"
        );
        let e = e.context("exporting the rejects");
        assert_eq!(
            chain_text(&e),
            "exporting the rejects: cannot write /proc/nope/x.csv: no such file"
        );
        let plain = anyhow::anyhow!("outer").context("top");
        assert_eq!(chain_text(&plain), "top: outer");
    }
}
