//! `Method`: every setting that decides which numbers come out, shared by fitting and scoring.
use super::embed::EmbedParams;
use crate::backbone;
use crate::bank::{BankMeta, CropMode, FieldError, ImageScore, ScoringSettings};

/// Everything that decides which numbers come out; stored in the bank so scoring repeats fitting.
#[derive(Clone, Debug, PartialEq)]
pub struct Method {
    pub backbone: String,
    pub stages: Vec<String>,
    pub grid_stage: usize,
    pub crop: CropMode,
    /// Input normalisation (mean, std per RGB channel on 0..1 values).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub embed: EmbedParams,
    /// Image-pyramid levels whose stage maps every patch carries: 1 is the paper's; 2 adds the
    /// same stages on the input at half size, twice the context per patch (`in_geometry`).
    pub pyramid: u32,
    pub k: i64,
    pub reweight: bool,
    pub squared: bool,
    pub blur_sigma: f64,
    pub image_score: ImageScore,
}

impl Method {
    /// The paper's settings on the backbone's default stages.
    pub fn defaults_for(spec: &backbone::BackboneSpec) -> Method {
        let (mean, std) = spec.normalization.mean_std();
        Method {
            mean,
            std,
            backbone: spec.name.to_string(),
            stages: spec.default_stages.iter().map(|s| s.to_string()).collect(),
            // Patches live on the first (finest) default stage's grid, as in the paper.
            grid_stage: 0,
            crop: CropMode::Center {
                resize: 256,
                crop: 224,
            },
            embed: EmbedParams::default(),
            pyramid: 1,
            k: 1,
            reweight: false,
            squared: false,
            blur_sigma: 4.0,
            image_score: ImageScore::TopPatch,
        }
    }

    /// This method in geometry `crop`. The whole image also gets the backbone's context stage
    /// (`BackboneSpec::context_stage`): measured better on all three of magnetic tile, MVTec AD
    /// bottle at native size and the high-resolution benchmark (README, Geometry), and is scored
    /// by its map's peak: with thousands of patches per image, the top patch lets one noisy
    /// patch reject a good part (README, Geometry). Its patches carry a second pyramid level: at
    /// native size a patch sees too little of a large, faint defect (README, Geometry). The
    /// paper's crop and the squash keep the paper's stages, score and single level.
    pub fn in_geometry(mut self, spec: &backbone::BackboneSpec, crop: CropMode) -> Method {
        self.crop = crop;
        if let CropMode::Whole { .. } = crop {
            self.image_score = ImageScore::MapPeak;
            self.pyramid = 2;
            if let Some(stage) = spec.context_stage {
                if !self.stages.iter().any(|s| s == stage) {
                    self.stages.push(stage.to_string());
                }
            }
        }
        self
    }

    /// The method a bank was fitted with, to score exactly as at fit time.
    pub fn from_meta(meta: &BankMeta) -> Method {
        Method {
            backbone: meta.backbone.clone(),
            stages: meta.stages.clone(),
            grid_stage: meta.grid_stage as usize,
            crop: meta.crop,
            mean: meta.mean,
            std: meta.std,
            embed: EmbedParams {
                patch_size: meta.patch_size as i64,
                pretrain_dim: meta.pretrain_dim as i64,
                embed_dim: meta.embed_dim as i64,
                grid_stage: meta.grid_stage as usize,
            },
            pyramid: meta.pyramid,
            k: meta.k as i64,
            reweight: meta.reweight,
            squared: meta.squared,
            blur_sigma: meta.blur_sigma as f64,
            image_score: meta.image_score,
        }
    }

    /// Model input `(width, height)`.
    pub fn input_dims(&self) -> (u32, u32) {
        self.crop.input_dims()
    }

    /// The same value checks a bank's metadata gets on loading (see `ScoringSettings::check`).
    pub fn validate(&self) -> Result<(), FieldError> {
        ScoringSettings {
            stages: &self.stages,
            grid_stage: self.grid_stage,
            mean: self.mean,
            std: self.std,
            crop: self.crop,
            patch_size: self.embed.patch_size,
            pretrain_dim: self.embed.pretrain_dim,
            embed_dim: self.embed.embed_dim,
            pyramid: self.pyramid,
            k: self.k,
            blur_sigma: self.blur_sigma,
        }
        .check()
    }
}
