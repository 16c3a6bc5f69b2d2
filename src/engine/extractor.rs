//! Backbone plus patch embedding: crops in, patch rows out, in the resolved precision.
use super::embed::{embed, EmbedParams};
use super::{EngineError, Method, Precision};
use crate::backbone::Backbone;
use image::RgbImage;
use tch::{Device, Kind, TchError, Tensor};

/// Backbone plus patch embedding: images in, `(B, h*w, D)` f32 patch rows out.
pub struct Extractor {
    backbone: Backbone,
    method: Method,
    mean: Tensor,
    std: Tensor,
    kind: Kind,
}

impl Extractor {
    pub fn new(
        mut backbone: Backbone,
        method: Method,
        precision: Precision,
    ) -> Result<Self, EngineError> {
        let spec = backbone.spec();
        for s in &method.stages {
            if !spec.stages.iter().any(|st| st.name == s.as_str()) {
                return Err(EngineError::Config(format!(
                    "backbone {} has no stage `{s}` (it has {})",
                    spec.name,
                    spec.stages
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        // The bank's and fit's value checks, again for callers that build a `Method` by hand.
        method.validate()?;
        let (mean, std) = (method.mean, method.std);
        let device = backbone.device();
        let kind = precision.kind();
        backbone.fold_batchnorm()?;
        if kind != Kind::Float {
            backbone.set_kind(kind);
        }
        let channels = |v: &[f32; 3]| {
            Tensor::f_from_slice(v)?
                .f_view([1, 3, 1, 1])?
                .f_to_device(device)
        };
        Ok(Self {
            mean: channels(&mean)?,
            std: channels(&std)?,
            backbone,
            method,
            kind,
        })
    }

    pub fn device(&self) -> Device {
        self.backbone.device()
    }

    /// The settings this extractor computes features with (a bank's, when loaded from one).
    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// ToTensor + Normalize exactly as torchvision orders the ops: `(u8 / 255 - mean) / std`.
    /// Crops of another size than the method's input are an error (a shape mismatch).
    pub fn to_input(&self, crops: &[&RgbImage]) -> Result<Tensor, TchError> {
        let s = self.method.input_size() as i64;
        let mut bytes = Vec::with_capacity(crops.len() * (s * s * 3) as usize);
        for c in crops {
            bytes.extend_from_slice(c.as_raw());
        }
        Tensor::f_from_slice(&bytes)?
            .f_view([crops.len() as i64, s, s, 3])?
            .f_to_device(self.device())?
            .f_permute([0, 3, 1, 2])?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(255.0)?
            .f_sub(&self.mean)?
            .f_div(&self.std)?
            .f_to_kind(self.kind)
    }

    /// Patch rows `(B, h*w, D)` and the grid `(h, w)`.
    pub fn embed(&self, crops: &[&RgbImage]) -> Result<(Tensor, (i64, i64)), EngineError> {
        let x = self.to_input(crops)?;
        let maps = tch::no_grad(|| self.backbone.forward(&x, &self.method.stages))?;
        let grid = maps
            .get(self.method.grid_stage)
            .ok_or_else(|| EngineError::Config("grid stage index out of range".into()))?;
        let (_, _, h, w) = grid.size4()?;
        let p = EmbedParams {
            grid_stage: self.method.grid_stage,
            ..self.method.embed
        };
        Ok((tch::no_grad(|| embed(&maps, p))?, (h, w)))
    }
}
