//! Backbone plus patch embedding: crops in, patch rows out, in the resolved precision.
use super::embed::{EmbedParams, Embedding};
use super::{EngineError, Method, Precision};
use crate::backbone::{Backbone, StageInfo};
use image::RgbImage;
use tch::{Device, Kind, TchError, Tensor};

/// Inputs over this many pixels are embedded in overlapping tiles: the backbone's early maps
/// grow with the input's area (a 20 MP input at stride 2 with 32 channels is 640 MB in f32),
/// and the default working resolution (at most 4 MP) is never tiled.
pub const TILE_PIXELS: u64 = 4 << 20;

/// Context each tile sees past the part it keeps, in input pixels: for each stage, its receptive
/// field's reach plus the patch neighbourhood and the bilinear upsampling (one cell each side) at
/// its stride; the lower pyramid levels' maps are computed untiled, so they need only the
/// neighbourhood and upsampling at their cells. The largest, rounded up to the cells of the
/// coarsest map (`tile_align`). `tests/geometry.rs` checks that it stitches exactly and that
/// half of it leaves a seam.
pub fn tile_margin(stages: &[StageInfo], patch_size: i64, pyramid: u32) -> u32 {
    let cells = (patch_size.max(1) as u32) / 2 + 1;
    let own = stages.iter().map(|s| s.reach + cells * s.stride);
    let lower = stages
        .iter()
        .map(|s| cells * (s.stride << (pyramid.max(1) - 1)));
    let margin = own.chain(lower).max().unwrap_or(0);
    let align = tile_align(stages, pyramid);
    margin.div_ceil(align) * align
}

/// Input pixels per cell of the coarsest map (the deepest stage at the lowest pyramid level):
/// tiles are cut on its cell borders, so every tile's maps line up with the whole input's.
pub fn tile_align(stages: &[StageInfo], pyramid: u32) -> u32 {
    let stride = stages.iter().map(|s| s.stride).max().unwrap_or(1).max(1);
    stride << (pyramid.max(1) - 1)
}

/// How large inputs are cut: `side` pixels kept per tile (a multiple of the coarsest stage's
/// stride, so every tile's grids line up with the whole input's), `margin` of context around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    pub side: u32,
    pub margin: u32,
}

/// Backbone plus patch embedding: images in, `(B, h*w, D)` f32 patch rows out.
pub struct Extractor {
    backbone: Backbone,
    method: Method,
    /// The patch embedding's fixed convolution weights, built once for the method's stages.
    embedding: Embedding,
    mean: Tensor,
    std: Tensor,
    kind: Kind,
    /// Input pixels per cell of each of the method's stages, in its order.
    strides: Vec<u32>,
    tiling: Tiling,
    /// Tiles only above this many input pixels.
    tile_above: u64,
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
        let stages: Vec<StageInfo> = method
            .stages
            .iter()
            .filter_map(|s| spec.stages.iter().find(|st| st.name == s.as_str()))
            .copied()
            .collect();
        // Each pyramid level's maps of the same stages follow the first level's.
        let stage_channels: Vec<i64> = stages
            .iter()
            .map(|st| i64::from(st.channels))
            .collect::<Vec<_>>()
            .repeat(method.pyramid as usize);
        let embedding = Embedding::new(
            &stage_channels,
            EmbedParams {
                grid_stage: method.grid_stage,
                ..method.embed
            },
            device,
        )?;
        let align = tile_align(&stages, method.pyramid);
        // About 2 MP kept per tile, a multiple of the coarsest map's cell.
        let side = (1448 / align).max(1) * align;
        let margin = tile_margin(&stages, method.embed.patch_size, method.pyramid);
        Ok(Self {
            embedding,
            mean: channels(&mean)?,
            std: channels(&std)?,
            backbone,
            method,
            kind,
            strides: stages.iter().map(|st| st.stride).collect(),
            tiling: Tiling { side, margin },
            tile_above: TILE_PIXELS,
        })
    }

    /// Tiles every input over `above` pixels with `tiling` (tests compare tiled and whole passes).
    pub fn with_tiling(mut self, tiling: Tiling, above: u64) -> Self {
        self.tiling = tiling;
        self.tile_above = above;
        self
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
        let (w, h) = self.method.input_dims();
        let (w, h) = (w as i64, h as i64);
        let mut bytes = Vec::with_capacity(crops.len() * (w * h * 3) as usize);
        for c in crops {
            bytes.extend_from_slice(c.as_raw());
        }
        Tensor::f_from_slice(&bytes)?
            .f_view([crops.len() as i64, h, w, 3])?
            .f_to_device(self.device())?
            .f_permute([0, 3, 1, 2])?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(255.0)?
            .f_sub(&self.mean)?
            .f_div(&self.std)?
            .f_to_kind(self.kind)
    }

    /// Patch rows `(B, h*w, D)` and the grid `(h, w)`; large inputs go through `embed_tiled`.
    pub fn embed(&self, crops: &[&RgbImage]) -> Result<(Tensor, (i64, i64)), EngineError> {
        let x = self.to_input(crops)?;
        let lower = self.lower_levels(&x)?;
        let (_, _, h, w) = x.size4()?;
        let stride = self.grid_stride() as i64;
        // Only inputs on whole grid cells can be cut on cell borders.
        if (h * w) as u64 > self.tile_above && h % stride == 0 && w % stride == 0 {
            return self.embed_tiled(&x, &lower);
        }
        self.embed_input(&x, lower.into_iter().map(|l| l.map).collect())
    }

    /// The stage maps of the pyramid's lower levels (the input halved, quartered), each over
    /// the whole input: a quarter of the pixels per level, so they are not tiled. Level by
    /// level, in the order the embedding expects them after the first level's.
    fn lower_levels(&self, x: &Tensor) -> Result<Vec<LevelMap>, EngineError> {
        let mut maps = Vec::new();
        let mut level = x.shallow_clone();
        for l in 1..self.method.pyramid {
            // 2 x 2 pixels into one; an odd last row or column averages what it has.
            level = level.f_avg_pool2d([2, 2], [2, 2], [0, 0], true, true, None::<i64>)?;
            let stage_maps = tch::no_grad(|| self.backbone.forward(&level, &self.method.stages))?;
            maps.extend(
                stage_maps
                    .into_iter()
                    .zip(&self.strides)
                    .map(|(map, &s)| LevelMap {
                        map,
                        cell: i64::from(s << l),
                    }),
            );
        }
        Ok(maps)
    }

    /// Embeds `x` in overlapping tiles and stitches the kept cells into one grid: each tile
    /// keeps only its interior, so every cell comes from a tile that saw `margin` pixels of
    /// context around it (or the image border, as an untiled pass does). `x` is on whole grid
    /// cells (`embed` checks).
    fn embed_tiled(
        &self,
        x: &Tensor,
        lower: &[LevelMap],
    ) -> Result<(Tensor, (i64, i64)), EngineError> {
        let (b, _, h, w) = x.size4()?;
        let stride = self.grid_stride() as i64;
        let (side, margin) = (self.tiling.side as i64, self.tiling.margin as i64);
        let (gh, gw) = (h / stride, w / stride);
        let mut rows: Vec<Tensor> = Vec::new();
        for y0 in (0..h).step_by(side as usize) {
            let y1 = (y0 + side).min(h);
            let (ty0, ty1) = ((y0 - margin).max(0), (y1 + margin).min(h));
            let mut row: Vec<Tensor> = Vec::new();
            for x0 in (0..w).step_by(side as usize) {
                let x1 = (x0 + side).min(w);
                let (tx0, tx1) = ((x0 - margin).max(0), (x1 + margin).min(w));
                let tile = x.f_narrow(2, ty0, ty1 - ty0)?.f_narrow(3, tx0, tx1 - tx0)?;
                let windows = lower
                    .iter()
                    .map(|l| l.window((ty0, ty1), (tx0, tx1)))
                    .collect::<Result<Vec<_>, _>>()?;
                let (emb, (th, tw)) = self.embed_input(&tile, windows)?;
                let d = emb.size3()?.2;
                let kept = emb
                    .f_view([b, th, tw, d])?
                    .f_narrow(1, (y0 - ty0) / stride, (y1 - y0) / stride)?
                    .f_narrow(2, (x0 - tx0) / stride, (x1 - x0) / stride)?;
                row.push(kept);
            }
            rows.push(Tensor::f_cat(&row, 2)?);
        }
        let grid = Tensor::f_cat(&rows, 1)?;
        let d = grid.size()[3];
        Ok((grid.f_reshape([b, gh * gw, d])?, (gh, gw)))
    }

    /// Input pixels per cell of the patch grid.
    fn grid_stride(&self) -> u32 {
        self.strides
            .get(self.method.grid_stage)
            .copied()
            .unwrap_or(1)
    }

    /// One forward pass and the patch embedding of `x`, with the lower pyramid levels' maps
    /// of the same pixels.
    fn embed_input(
        &self,
        x: &Tensor,
        lower: Vec<Tensor>,
    ) -> Result<(Tensor, (i64, i64)), EngineError> {
        let mut maps = tch::no_grad(|| self.backbone.forward(x, &self.method.stages))?;
        maps.extend(lower);
        let grid = maps
            .get(self.method.grid_stage)
            .ok_or_else(|| EngineError::Config("grid stage index out of range".into()))?;
        let (_, _, gh, gw) = grid.size4()?;
        Ok((tch::no_grad(|| self.embedding.apply(&maps))?, (gh, gw)))
    }
}

/// One stage map of a lower pyramid level, over the whole input.
struct LevelMap {
    map: Tensor,
    /// Input pixels per cell.
    cell: i64,
}

impl LevelMap {
    /// The cells over input rows `ys` and columns `xs` (tile borders on whole cells, except at
    /// the input's far edges, whose last cell is partial).
    fn window(&self, ys: (i64, i64), xs: (i64, i64)) -> Result<Tensor, TchError> {
        let (_, _, mh, mw) = self.map.size4()?;
        let span = |(a, b): (i64, i64), n: i64| {
            let first = (a / self.cell).min(n);
            // A partial last cell counts (the input's far edge).
            let end = ((b + self.cell - 1) / self.cell).min(n);
            (first, (end - first).max(0))
        };
        let ((y, hh), (x, ww)) = (span(ys, mh), span(xs, mw));
        self.map.f_narrow(2, y, hh)?.f_narrow(3, x, ww)
    }
}
