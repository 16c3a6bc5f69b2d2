//! `patchcore fit`: memory bank from good images, calibrated, saved atomically.
use super::args::RuntimeArgs;
use super::progress::Bars;
use crate::backbone;
use crate::bank::{BankDtype, CropMode, FieldError, ImageScore, SelectionTrial};
use crate::data;
use crate::engine::fit::{CALIBRATION_PATCHES, DEFAULT_CALIBRATION_IMAGES};
use crate::engine::{select, FitOptions, Method, PatchCore};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// How features are computed; every field defaults to the backbone's registered setting.
#[derive(Args, Clone, Debug, Default)]
pub struct MethodArgs {
    /// Backbone name (see `patchcore backbones`); default: wide_resnet50_2 when its weights are present.
    #[arg(long)]
    pub backbone: Option<String>,
    /// Comma-separated stages, e.g. layer2,layer3.
    #[arg(long, value_delimiter = ',')]
    pub stages: Option<Vec<String>>,
    /// Index (into --stages) of the stage whose grid the patches live on.
    #[arg(long)]
    pub grid_stage: Option<usize>,
    /// The paper's geometry (MVTec AD protocol, parity): shorter side resized to --resize, then
    /// the centre --input x --input kept. The rest of an elongated part is never seen.
    #[arg(long, conflicts_with_all = ["squash", "resolution", "scale"])]
    pub crop: bool,
    /// Squash the whole image into an --input x --input square (aspect not kept).
    #[arg(long, alias = "no-crop", conflicts_with_all = ["resolution", "scale"])]
    pub squash: bool,
    /// Working resolution of the default whole-image geometry: the input's longer side in
    /// pixels (default: the training images' native size up to 4 MP; `fit` prints its choice).
    #[arg(long, conflicts_with = "scale")]
    pub resolution: Option<u32>,
    /// Working resolution as a fraction of the training images' native size (e.g. 0.5).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Shorter side after resizing (--crop).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Model input size: the crop (--crop) or the square (--squash).
    #[arg(long)]
    pub input: Option<u32>,
    /// Input normalisation: imagenet (mean/std) or tf ((x - 127) / 128); default: the registry's.
    #[arg(long)]
    pub normalization: Option<backbone::Normalization>,
    /// Input mean on 0..1 pixel values, one value or one per RGB channel (overrides --normalization).
    #[arg(long, value_delimiter = ',')]
    pub pixel_mean: Option<Vec<f32>>,
    /// Input standard deviation, one value or one per RGB channel (overrides --normalization).
    #[arg(long, value_delimiter = ',')]
    pub pixel_std: Option<Vec<f32>>,
    /// Neighbourhood size of the local aggregation.
    #[arg(long)]
    pub patch_size: Option<i64>,
    /// Dimension each stage is pooled to.
    #[arg(long)]
    pub pretrain_dim: Option<i64>,
    /// Final embedding dimension.
    #[arg(long)]
    pub embed_dim: Option<i64>,
    /// Nearest neighbours averaged into a patch score.
    #[arg(long)]
    pub k: Option<i64>,
    /// The paper's Eq. 7 image-score reweighting.
    #[arg(long)]
    pub reweight: bool,
    /// Report squared L2 distances (as the official code and faiss do).
    #[arg(long)]
    pub squared: bool,
    /// Gaussian blur of the anomaly map; 0 disables it.
    #[arg(long)]
    pub blur_sigma: Option<f64>,
    /// Image score: the top patch (the paper's; default for --crop and --squash) or the peak of
    /// the anomaly map (default for the whole image).
    #[arg(long)]
    pub image_score: Option<ImageScore>,
    /// Image-pyramid levels each patch carries the stages of: 1 (the paper's; default for --crop
    /// and --squash), 2 adds the input at half size (default for the whole image), up to 3.
    #[arg(long)]
    pub pyramid: Option<u32>,
}

impl MethodArgs {
    /// Whether the user chose the feature settings that `fit` would otherwise choose itself.
    fn sets_features(&self) -> bool {
        self.stages.is_some()
            || self.grid_stage.is_some()
            || self.normalization.is_some()
            || self.pixel_mean.is_some()
            || self.pixel_std.is_some()
    }

    /// The method, its geometry resolved for the training images `train` (the whole-image
    /// default reads their sizes); the second value says how the working resolution was chosen.
    pub fn method(&self, rt: &RuntimeArgs, train: &[PathBuf]) -> Result<(Method, String)> {
        let spec = match &self.backbone {
            Some(name) => backbone::find(name)?,
            None => backbone::default_backbone(&rt.models_dir()),
        };
        let paper = Method::defaults_for(spec);
        let (crop, why) = self.geometry(paper.crop, train)?;
        let mut m = paper.in_geometry(spec, crop);
        if let Some(s) = &self.stages {
            // The registry's grid stage belongs to its default stages; given stages use the first.
            m.stages = s.clone();
            m.grid_stage = 0;
        }
        if let Some(g) = self.grid_stage {
            m.grid_stage = g;
        }
        if let Some(norm) = self.normalization {
            (m.mean, m.std) = norm.mean_std();
        }
        if let Some(v) = &self.pixel_mean {
            m.mean = per_channel("--pixel-mean", v)?;
        }
        if let Some(v) = &self.pixel_std {
            m.std = per_channel("--pixel-std", v)?;
        }
        if let Some(p) = self.patch_size {
            m.embed.patch_size = p;
        }
        if let Some(p) = self.pretrain_dim {
            m.embed.pretrain_dim = p;
        }
        if let Some(p) = self.embed_dim {
            m.embed.embed_dim = p;
        }
        if let Some(k) = self.k {
            m.k = k;
        }
        m.reweight |= self.reweight;
        m.squared |= self.squared;
        if let Some(s) = self.blur_sigma {
            m.blur_sigma = s;
        }
        if let Some(s) = self.image_score {
            m.image_score = s;
        }
        if let Some(p) = self.pyramid {
            m.pyramid = p;
        }
        m.validate().map_err(flag_error)?;
        Ok((m, why))
    }

    /// The geometry the flags ask for; `paper` is the backbone's crop (the paper's 256 / 224).
    fn geometry(&self, paper: CropMode, train: &[PathBuf]) -> Result<(CropMode, String)> {
        let (default_resize, default_input) = match paper {
            CropMode::Center { resize, crop } => (resize, crop),
            other => {
                let (w, _) = other.input_dims();
                (w * 8 / 7, w)
            }
        };
        let input = self.input.unwrap_or(default_input);
        if self.squash {
            return Ok((CropMode::Full { size: input }, "--squash".into()));
        }
        if self.crop {
            // Keep the paper's 256/224 ratio when only the input size is given.
            let resize = self.resize.unwrap_or(if self.input.is_some() {
                input * 8 / 7
            } else {
                default_resize
            });
            if resize < input {
                bail!("--resize {resize} is smaller than the input size {input}");
            }
            let crop = CropMode::Center {
                resize,
                crop: input,
            };
            return Ok((crop, "--crop".into()));
        }
        if self.input.is_some() || self.resize.is_some() {
            bail!("--input and --resize size the --crop or --squash input; the whole-image default takes --resolution or --scale");
        }
        let sizes = train
            .iter()
            .map(|p| data::image_size(p))
            .collect::<Result<Vec<_>, _>>()?;
        let native = data::working::native_long_side(&sizes);
        let working = match (self.resolution, self.scale) {
            (Some(long), _) => data::working::Working {
                long,
                reason: format!("--resolution {long} (native median longer side {native} px)"),
            },
            (None, Some(s)) if s.is_finite() && s > 0.0 => data::working::Working {
                long: ((native as f64 * s).round() as u32).max(data::WHOLE_ALIGN),
                reason: format!("--scale {s} of the native median longer side {native} px"),
            },
            (None, Some(s)) => bail!("--scale {s} must be a positive number"),
            (None, None) => data::working::choose(&sizes, data::working::WORKING_PIXELS),
        };
        if working.long == 0 {
            bail!("--resolution must be at least 1");
        }
        Ok((CropMode::whole_for(&sizes, working.long), working.reason))
    }
}

#[derive(Args, Debug)]
pub struct FitArgs {
    /// MVTec AD category folder (or its parent with --category), a folder of good images, or a split.json.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub category: Option<String>,
    /// Bank file to write (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Fit the backbone's default configuration without first trying its alternative on
    /// synthetic defects (EfficientNet-Lite; feature flags such as --stages also skip the choice).
    #[arg(long)]
    pub no_select: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub bank: BankArgs,
}

/// How the bank is built from the patch features: shared by `fit`, `bench` and `demo`, so the
/// three agree on every default.
#[derive(Args, Clone, Debug)]
pub struct BankArgs {
    /// Fraction of patches kept in the coreset; 1 keeps all.
    #[arg(long, default_value_t = 0.1)]
    pub coreset_ratio: f64,
    /// Exact number of coreset rows (overrides --coreset-ratio).
    #[arg(long)]
    pub coreset_size: Option<usize>,
    /// Dimension of the coreset's random projection.
    #[arg(long, default_value_t = 128)]
    pub coreset_projection: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Storage precision of the bank rows.
    #[arg(long, value_enum, default_value_t = BankDtype::F32)]
    pub bank_dtype: BankDtype,
    /// Training images scored leave-one-out for the threshold (evenly spread); 0 = all.
    /// Default: 64, fewer at high resolution (at most 262,144 patches, at least 8 images);
    /// a number given is scored in full.
    #[arg(long)]
    pub calibration_images: Option<usize>,
    /// Patches entering the coreset at most; past it each image gives an equal random share
    /// (memory and selection time stay bounded at high resolution); 0 = all.
    #[arg(long, default_value_t = 400_000)]
    pub max_patches: usize,
}

impl Default for BankArgs {
    /// The command-line defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            bank: BankArgs,
        }
        <Defaults as clap::Parser>::parse_from(["defaults"]).bank
    }
}

/// Where the training images come from, for the bank's metadata.
pub struct Source {
    pub category: String,
    pub train_dir: PathBuf,
    pub test_dir: Option<PathBuf>,
}

impl BankArgs {
    pub fn options(
        &self,
        method: Method,
        runtime: &RuntimeArgs,
        source: Source,
    ) -> Result<FitOptions> {
        crate::bank::check_coreset(self.coreset_ratio, self.coreset_projection)
            .map_err(flag_error)?;
        Ok(FitOptions {
            weights: runtime.weights_for(&method.backbone)?,
            device: runtime.device()?,
            precision: runtime.precision(&method.backbone)?,
            batch_size: runtime.batch_size,
            coreset_ratio: self.coreset_ratio,
            coreset_size: self.coreset_size,
            projection_dim: self.coreset_projection,
            seed: self.seed,
            bank_dtype: self.bank_dtype,
            calibration_images: self.calibration_images,
            max_patches: self.max_patches,
            category: source.category,
            train_dir: source.train_dir,
            test_dir: source.test_dir,
            method,
        })
    }
}

pub fn run(a: FitArgs) -> Result<()> {
    // Before minutes of fitting: an unwritable --out fails now.
    crate::report::check_writable(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let t_all = Instant::now();
    let dataset = data::open(&a.data, a.category.as_deref())?;
    if dataset.train.is_empty() {
        bail!("{}: no training images found", a.data.display());
    }
    let (method, why) = a.method.method(&a.runtime, &dataset.train)?;
    // Absolute, so the app finds the images whatever folder it is started from.
    let absolute =
        |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let train_dir = absolute(
        dataset
            .train
            .first()
            .and_then(|p| p.parent())
            .unwrap_or(&dataset.root),
    );
    let source = Source {
        category: a.category.clone().unwrap_or_else(|| dataset.name.clone()),
        train_dir,
        test_dir: (!dataset.test.is_empty()).then(|| absolute(&dataset.root)),
    };
    let mut opts = a.bank.options(method, &a.runtime, source)?;
    let (selection, select_s) = if a.no_select || a.method.sets_features() {
        (Vec::new(), 0.0)
    } else {
        choose(&dataset.train, &mut opts)?
    };
    eprintln!(
        "fit: {} training images of {} with {} (stages {}{}, image score: {}) on {:?}",
        dataset.train.len(),
        opts.category,
        opts.method.backbone,
        opts.method.stages.join("+"),
        match opts.method.pyramid {
            1 => String::new(),
            n => format!(", at {n} pyramid levels"),
        },
        opts.method.image_score.describe(),
        opts.device
    );
    match opts.method.crop {
        CropMode::Whole { .. } => eprintln!(
            "fit: geometry {}; working resolution from {why}",
            opts.method.crop.describe()
        ),
        _ => eprintln!("fit: geometry {} ({why})", opts.method.crop.describe()),
    }
    let (model, mut file, times) = PatchCore::fit(&dataset.train, &opts, &Bars::default())?;
    // The model's copy of the bank is not needed to save the file's.
    drop(model);
    file.meta.selection = selection;
    let t = Instant::now();
    file.save(&a.out)
        .with_context(|| format!("saving {}", a.out.display()))?;
    let save_s = t.elapsed().as_secs_f64();
    let c = &file.meta.calibration;
    let [gh, gw] = file.meta.grid;
    let images = file.meta.n_train_images.max(1) as u64;
    println!(
        "bank: {} ({} of {} patches; {} x {} = {} patches per image, {} per image into the coreset), threshold {:.4} (calibration {:.4}..{:.4})",
        a.out.display(),
        file.meta.coreset_size,
        file.meta.n_patches,
        gw,
        gh,
        gw * gh,
        file.meta.n_patches / images,
        c.threshold,
        c.min,
        c.max
    );
    if let Some(note) = calibration_note(
        c.scores.len(),
        file.meta.n_train_images as usize,
        (gw * gh) as usize,
        a.bank.calibration_images,
        times.calibration_s,
    ) {
        println!("note: {note}");
    }
    println!(
        "time: selection {:.1} s, features {:.1} s, coreset {:.1} s, calibration {:.1} s, save {:.1} s, total {:.1} s",
        select_s,
        times.features_s,
        times.coreset_s,
        times.calibration_s,
        save_s,
        t_all.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Lets `engine::select` pick among the backbone's candidate configurations and puts the winner
/// into `opts`; returns the trials and the seconds spent. One candidate, or too few images: no-op.
fn choose(train: &[PathBuf], opts: &mut FitOptions) -> Result<(Vec<SelectionTrial>, f64)> {
    let spec = backbone::find(&opts.method.backbone)?;
    let candidates = select::candidates(spec, &opts.method);
    if candidates.len() < 2 {
        return Ok((Vec::new(), 0.0));
    }
    if select::holdout(train.len()).is_none() {
        eprintln!(
            "fit: {} training images are too few to choose between configurations; using {}",
            train.len(),
            candidates[0].name
        );
        return Ok((Vec::new(), 0.0));
    }
    eprintln!(
        "fit: choosing between {} configurations on synthetic defects in every 7th good image",
        candidates.len()
    );
    let t = Instant::now();
    let (best, trials) = select::select(train, &candidates, opts, &Bars::default())?;
    for trial in &trials {
        println!(
            "select: {} {:<40} image AUROC {:6.2}  pixel AUROC {:6.2}  PRO {:6.2}",
            if trial.chosen { "*" } else { " " },
            trial.name,
            100.0 * trial.image_auroc,
            100.0 * trial.pixel_auroc,
            100.0 * trial.pro
        );
    }
    opts.method = candidates[best].method.clone();
    Ok((trials, t.elapsed().as_secs_f64()))
}

/// A failed value check (shared with bank loading) restated with the flag that set the field.
fn flag_error(e: FieldError) -> anyhow::Error {
    let flag = match e.field {
        "mean" => "--pixel-mean".to_string(),
        "std" => "--pixel-std".to_string(),
        "crop.resize" => "--resize".to_string(),
        "crop.crop" | "crop.size" => "--input".to_string(),
        "crop.width" | "crop.height" => "--resolution".to_string(),
        field => format!("--{}", field.replace('_', "-")),
    };
    anyhow::anyhow!("{flag} {}", e.problem)
}

/// One value for all channels, or one per RGB channel.
fn per_channel(flag: &str, v: &[f32]) -> Result<[f32; 3]> {
    match *v {
        [x] => Ok([x; 3]),
        [r, g, b] => Ok([r, g, b]),
        _ => bail!("{flag} takes one value or three (R,G,B), got {}", v.len()),
    }
}

/// Fewer calibration images than this make a threshold (the highest good score among them) that
/// good parts often pass: the high-resolution benchmark's 8 put 3 of 12 good bars above it.
const FEW_CALIBRATION_IMAGES: usize = 16;

/// What `fit` says when the threshold rests on fewer images than asked or than is safe: `used`
/// of `train` images with `per_image` patches each, `asked` by the user (or the default), in
/// `seconds`.
fn calibration_note(
    used: usize,
    train: usize,
    per_image: usize,
    asked: Option<usize>,
    seconds: f64,
) -> Option<String> {
    let capped = asked.is_none() && used < DEFAULT_CALIBRATION_IMAGES.min(train);
    let few = used < FEW_CALIBRATION_IMAGES.min(train);
    if !capped && !few {
        return None;
    }
    let mut note = format!("the threshold comes from {used} of the {train} training images");
    if capped {
        note += &format!(
            ", not {DEFAULT_CALIBRATION_IMAGES}: at {per_image} patches per image the default \
             keeps the leave-one-out search to {CALIBRATION_PATCHES} patches"
        );
    }
    if few {
        note += "; with so few, good parts may score above it";
    }
    note += &format!(
        "; --calibration-images N scores N (about {:.1} s per image here)",
        seconds / used.max(1) as f64
    );
    Some(note)
}

#[cfg(test)]
mod tests {
    use super::{calibration_note, per_channel};

    #[test]
    fn fit_says_when_the_threshold_rests_on_few_or_budgeted_images() {
        // 1 MP images: the budget keeps 16 of the default 64.
        let note = calibration_note(16, 200, 16_384, None, 32.0).unwrap();
        assert!(
            note.contains("16 of the 200 training images, not 64"),
            "{note}"
        );
        assert!(note.contains("2.0 s per image"), "{note}");
        assert!(!note.contains("so few"), "{note}");
        // Eight, even when asked for: too few for a threshold, said so.
        let note = calibration_note(8, 60, 62_500, Some(8), 8.0).unwrap();
        assert!(note.contains("good parts may score above it"), "{note}");
        assert!(!note.contains("not 64"), "{note}");
        // The default in full, a number asked for, or every image of a small set: nothing to say.
        assert_eq!(calibration_note(64, 400, 3_696, None, 10.0), None);
        assert_eq!(calibration_note(32, 400, 3_696, Some(32), 10.0), None);
        assert_eq!(calibration_note(10, 10, 784, None, 1.0), None);
    }

    #[test]
    fn pixel_statistics_take_one_or_three_values() {
        assert_eq!(per_channel("--pixel-mean", &[0.5]).unwrap(), [0.5; 3]);
        assert_eq!(
            per_channel("--pixel-std", &[0.1, 0.2, 0.3]).unwrap(),
            [0.1, 0.2, 0.3]
        );
        let err = per_channel("--pixel-std", &[0.1, 0.2]).unwrap_err();
        assert!(err
            .to_string()
            .contains("--pixel-std takes one value or three"));
    }
}
