//! `patchcore roi` and `patchcore rules`: the bank's region of interest and decision rules,
//! shown or changed in place (the bank is rewritten atomically). Setting or clearing an ROI
//! recalibrates the thresholds from the calibration maps the bank holds, without the images.
use crate::bank::BankFile;
use crate::decide::{Roi, Rules};
use crate::engine::calibrate::{load_current, recalibrate, save_rules, set_roi};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct RoiArgs {
    #[arg(long)]
    pub bank: PathBuf,
    /// Mask image (white = inspect, black = ignore; grey >= 128 counts as white), stretched
    /// over each image; its aspect ratio must be the images'. Recalibrates the thresholds.
    #[arg(long, conflicts_with_all = ["clear", "show"])]
    pub set: Option<PathBuf>,
    /// Remove the ROI (inspect everything) and recalibrate.
    #[arg(long, conflicts_with = "show")]
    pub clear: bool,
    /// Write the current mask to this PNG.
    #[arg(long)]
    pub show: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RulesArgs {
    #[arg(long)]
    pub bank: PathBuf,
    /// Image scores above this go to review.
    #[arg(long)]
    pub review_from: Option<f32>,
    /// Image scores above this are rejected (must be >= review-from).
    #[arg(long)]
    pub reject_from: Option<f32>,
    /// Defect regions smaller than this many original pixels do not count; above 0, an image
    /// without a region this large is accepted.
    #[arg(long)]
    pub min_area: Option<u64>,
    /// Anomaly-map value above which a pixel belongs to a defect region.
    #[arg(long)]
    pub pixel_threshold: Option<f32>,
    /// Size of one original pixel in mm (areas then also in mm²); 0 removes it.
    #[arg(long)]
    pub mm_per_pixel: Option<f32>,
    /// Back to the calibrated defaults (keeps min-area and the pixel size).
    #[arg(long)]
    pub defaults: bool,
}

fn load(bank: &Path) -> Result<BankFile> {
    load_current(bank).with_context(|| "loading the bank")
}

fn print_rules(file: &BankFile) {
    let r = file.meta.rules();
    let roi = match &file.roi {
        Some(roi) => format!(
            "{} x {} mask, {:.1}% inspected (sha256 {})",
            roi.width,
            roi.height,
            100.0 * roi.inspected_share(),
            &roi.sha256()[..12]
        ),
        None => "none (the whole image is inspected)".into(),
    };
    println!("roi:             {roi}");
    println!("review_from:     {}", r.review_from);
    println!("reject_from:     {}", r.reject_from);
    println!("min_area:        {} original pixels", r.min_area);
    println!("pixel_threshold: {}", r.pixel_threshold);
    if let Some(mm) = r.mm_per_pixel {
        println!("mm_per_pixel:    {mm}");
    }
    println!("calibration:     {}", file.meta.calibration.source);
}

/// Recalibrates `file` under its current ROI.
fn recalibrate_file(file: &mut BankFile, bank: &Path) -> Result<()> {
    let (calibration, rules) = recalibrate(&file.meta, &file.calibration_maps, file.roi.as_ref())
        .with_context(|| bank.display().to_string())?;
    file.meta.calibration = calibration;
    file.meta.rules = Some(rules);
    Ok(())
}

pub fn run_roi(a: RoiArgs) -> Result<()> {
    let mut file = load(&a.bank)?;
    if let Some(out) = &a.show {
        let Some(roi) = &file.roi else {
            bail!("{}: the bank has no ROI", a.bank.display());
        };
        let mut png = Vec::new();
        roi.to_image()
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
        crate::report::write_atomic(out, &png).with_context(|| out.display().to_string())?;
    } else if let Some(mask) = &a.set {
        let roi = Roi::from_image(mask)?;
        if let Some(g) = file.meta.calibration_geometry.first() {
            roi.check_aspect(mask, g.orig_width, g.orig_height)?;
        }
        file = set_roi(&a.bank, Some(roi))?;
    } else if a.clear {
        file = set_roi(&a.bank, None)?;
    }
    print_rules(&file);
    Ok(())
}

pub fn run_rules(a: RulesArgs) -> Result<()> {
    let mut file = load(&a.bank)?;
    let before = file.meta.calibration.threshold;
    if a.defaults {
        recalibrate_file(&mut file, &a.bank)?;
    }
    let old = file.meta.rules();
    let rules = Rules {
        review_from: a.review_from.unwrap_or(old.review_from),
        reject_from: a.reject_from.unwrap_or(old.reject_from),
        min_area: a.min_area.unwrap_or(old.min_area),
        pixel_threshold: a.pixel_threshold.unwrap_or(old.pixel_threshold),
        mm_per_pixel: match a.mm_per_pixel {
            Some(0.0) => None,
            Some(mm) => Some(mm),
            None => old.mm_per_pixel,
        },
    };
    if let Some(problem) = rules.problem() {
        bail!("{problem}");
    }
    if a.defaults {
        // The recalibrated thresholds go in with the rules, in one new version.
        let action = format!("rules recalibrated: {}", rules.summary());
        file.meta.rules = Some(rules);
        crate::bank::save_change(&a.bank, &mut file, action, before)?;
    } else if rules != old {
        file = save_rules(&a.bank, rules)?;
    }
    print_rules(&file);
    Ok(())
}
