//! EfficientNet-Lite0/1/2 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
//! Neural Networks", ICML 2019; Lite variants from the TensorFlow TPU repository), as the
//! `efficientnet_lite_pytorch` package builds them, without the classifier head.
//!
//! The Lite rules: no squeeze-excitation, ReLU6 instead of swish, stem (32 channels) and head
//! not scaled with the width, first and last block groups not repeated more with the depth.
//! Convolutions use TensorFlow "SAME" padding computed from each input's size, so any input size
//! gives the features the TF-trained weights expect. BatchNorm eps is 1e-3 (TF momentum 0.99,
//! PyTorch 0.01, irrelevant at inference). Parameter paths are efficientnet_pytorch's
//! (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, `._bn0`, `._depthwise_conv`, `._bn1`,
//! `._project_conv`, `._bn2`); head and classifier keys in a checkpoint are ignored.
//!
//! Stage `blockN` is the output of `_blocks[N]`.

use std::collections::HashMap;

use tch::{nn, TchError, Tensor};

use super::layers::{ConvBn, ConvSpec};
use super::StageInfo;

const BN_EPS: f64 = 1e-3;
/// Channel counts are rounded to multiples of this (TF's `depth_divisor`).
const DIVISOR: i64 = 8;
/// Stem output channels, fixed for all Lite variants.
const STEM_CHANNELS: i64 = 32;
/// The stem convolution's stride, the first step of every stage stride.
const STEM_STRIDE: i64 = 2;
/// The stem convolution's kernel size.
const STEM_KERNEL: i64 = 3;

/// One group of identical blocks of the EfficientNet-B0 / Lite0 baseline (TF's block strings
/// `r1_k3_s11_e1_i32_o16`, ...), before width and depth scaling.
struct BaseGroup {
    repeats: usize,
    kernel: i64,
    stride: i64,
    expand: i64,
    input: i64,
    output: i64,
}

const fn group(
    repeats: usize,
    kernel: i64,
    stride: i64,
    expand: i64,
    input: i64,
    output: i64,
) -> BaseGroup {
    BaseGroup {
        repeats,
        kernel,
        stride,
        expand,
        input,
        output,
    }
}

const BASE: [BaseGroup; 7] = [
    group(1, 3, 1, 1, 32, 16),
    group(2, 3, 2, 6, 16, 24),
    group(2, 5, 2, 6, 24, 40),
    group(3, 3, 2, 6, 40, 80),
    group(3, 5, 1, 6, 80, 112),
    group(4, 5, 2, 6, 112, 192),
    group(1, 3, 1, 6, 192, 320),
];

/// Stage names, one per block of the deepest variant here (lite1/lite2 have 21 blocks).
const BLOCK_NAMES: [&str; 21] = [
    "block0", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "block8",
    "block9", "block10", "block11", "block12", "block13", "block14", "block15", "block16",
    "block17", "block18", "block19", "block20",
];

/// The supported Lite variants (Lite3/4 would need more stage names and have no weights here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Variant {
    Lite0,
    Lite1,
    Lite2,
}

/// One MBConv block after scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct BlockConfig {
    pub input: i64,
    pub output: i64,
    pub kernel: i64,
    pub stride: i64,
    pub expand: i64,
}

impl Variant {
    pub(super) const ALL: [Variant; 3] = [Variant::Lite0, Variant::Lite1, Variant::Lite2];

    pub(super) fn name(self) -> &'static str {
        match self {
            Variant::Lite0 => "efficientnet_lite0",
            Variant::Lite1 => "efficientnet_lite1",
            Variant::Lite2 => "efficientnet_lite2",
        }
    }

    /// (width multiplier, depth multiplier, native resolution), as in TF's efficientnet_lite_builder.
    pub(super) fn coefficients(self) -> (f64, f64, u32) {
        match self {
            Variant::Lite0 => (1.0, 1.0, 224),
            Variant::Lite1 => (1.0, 1.1, 240),
            Variant::Lite2 => (1.1, 1.2, 260),
        }
    }

    /// Every block in `_blocks` order, with the package's scaling rules.
    pub(super) fn blocks(self) -> Vec<BlockConfig> {
        let (width, depth, _) = self.coefficients();
        let mut blocks = Vec::new();
        for (i, g) in BASE.iter().enumerate() {
            let fixed = i == 0 || i == BASE.len() - 1;
            let input = if i == 0 {
                STEM_CHANNELS
            } else {
                round_filters(g.input, width)
            };
            let output = round_filters(g.output, width);
            let repeats = if fixed {
                g.repeats
            } else {
                (depth * g.repeats as f64).ceil() as usize
            };
            let (kernel, expand) = (g.kernel, g.expand);
            blocks.push(BlockConfig {
                input,
                output,
                kernel,
                stride: g.stride,
                expand,
            });
            for _ in 1..repeats {
                blocks.push(BlockConfig {
                    input: output,
                    output,
                    kernel,
                    stride: 1,
                    expand,
                });
            }
        }
        blocks
    }

    /// `blockN` stages: cumulative stride, output channels and receptive-field radius of each
    /// block (the stem's 3 x 3 / 2, then each block's depthwise kernel at the stride it reads).
    pub(super) fn stages(self) -> Vec<StageInfo> {
        let (mut stride, mut field) = (STEM_STRIDE, STEM_KERNEL);
        self.blocks()
            .iter()
            .zip(BLOCK_NAMES)
            .map(|(b, name)| {
                field += (b.kernel - 1) * stride;
                stride *= b.stride;
                StageInfo {
                    name,
                    stride: stride as u32,
                    channels: b.output as u32,
                    reach: (field as u32).div_ceil(2),
                }
            })
            .collect()
    }
}

/// TF's `round_filters`: scale by the width multiplier, round to a multiple of 8, never more
/// than 10% down.
fn round_filters(filters: i64, width: f64) -> i64 {
    let scaled = filters as f64 * width;
    let mut rounded = (((scaled + DIVISOR as f64 / 2.0) as i64) / DIVISOR * DIVISOR).max(DIVISOR);
    if (rounded as f64) < 0.9 * scaled {
        rounded += DIVISOR;
    }
    rounded
}

/// ReLU6 in place: its input is always a convolution's fresh output, and at a megapixel a
/// second activation map per layer costs more in allocation and memory traffic than the clamp.
fn relu6(mut x: Tensor) -> Result<Tensor, TchError> {
    x.f_clamp_(0.0, 6.0)
}

/// TF-"SAME" convolution `<p>/<conv>` with its BatchNorm `<p>/<bn>`.
fn same_conv_bn(
    p: &nn::Path,
    names: (&str, &str),
    (c_in, c_out): (i64, i64),
    kernel: i64,
    stride: i64,
    groups: i64,
) -> Result<ConvBn, TchError> {
    let spec = ConvSpec::tf_same(c_in, c_out, kernel, stride, groups);
    ConvBn::new(p, names, spec, BN_EPS)
}

/// Mobile inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project, identity skip when the
/// shape is kept (drop-connect is training-only).
#[derive(Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    skip: bool,
}

impl MbConv {
    fn new(p: &nn::Path, c: BlockConfig) -> Result<Self, TchError> {
        let hidden = c.input * c.expand;
        let expand = if c.expand != 1 {
            Some(same_conv_bn(
                p,
                ("_expand_conv", "_bn0"),
                (c.input, hidden),
                1,
                1,
                1,
            )?)
        } else {
            None
        };
        Ok(MbConv {
            expand,
            depthwise: same_conv_bn(
                p,
                ("_depthwise_conv", "_bn1"),
                (hidden, hidden),
                c.kernel,
                c.stride,
                hidden,
            )?,
            project: same_conv_bn(p, ("_project_conv", "_bn2"), (hidden, c.output), 1, 1, 1)?,
            skip: c.stride == 1 && c.input == c.output,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let h = match &self.expand {
            Some(expand) => relu6(expand.forward(x)?)?,
            None => x.shallow_clone(),
        };
        let h = relu6(self.depthwise.forward(&h)?)?;
        let mut h = self.project.forward(&h)?;
        if self.skip {
            h.f_add_(x)
        } else {
            Ok(h)
        }
    }

    fn convs_mut(&mut self) -> impl Iterator<Item = &mut ConvBn> {
        self.expand
            .as_mut()
            .into_iter()
            .chain([&mut self.depthwise, &mut self.project])
    }
}

/// Stem and all MBConv blocks of one variant.
#[derive(Debug)]
pub(super) struct EfficientNetLite {
    stem: ConvBn,
    blocks: Vec<MbConv>,
}

impl EfficientNetLite {
    pub(super) fn new(p: &nn::Path, variant: Variant) -> Result<Self, TchError> {
        let blocks_path = p / "_blocks";
        let blocks = variant
            .blocks()
            .into_iter()
            .enumerate()
            .map(|(i, c)| MbConv::new(&(&blocks_path / i), c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EfficientNetLite {
            stem: same_conv_bn(
                p,
                ("_conv_stem", "_bn0"),
                (3, STEM_CHANNELS),
                STEM_KERNEL,
                STEM_STRIDE,
                1,
            )?,
            blocks,
        })
    }

    /// Runs up to block `last`, handing each block output to `visit`.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        last: usize,
        visit: &mut dyn FnMut(usize, &Tensor),
    ) -> Result<(), TchError> {
        let mut h = relu6(self.stem.forward(x)?)?;
        for (i, block) in self.blocks.iter().take(last + 1).enumerate() {
            h = block.forward(&h)?;
            visit(i, &h);
        }
        Ok(())
    }

    /// Every convolution with its BatchNorm, for folding.
    pub(super) fn convs_mut(&mut self) -> impl Iterator<Item = &mut ConvBn> {
        std::iter::once(&mut self.stem).chain(self.blocks.iter_mut().flat_map(MbConv::convs_mut))
    }
}

/// Seeded random weights for tests and benchmarks (no reference to match): each conv gets
/// kaiming-normal fan-out noise, in parameter-name order; BatchNorms stay the identity.
/// Draws from libtorch's global CPU generator, which the caller seeds.
pub(super) fn init_random(vars: &HashMap<String, Tensor>) -> Result<(), TchError> {
    let mut names: Vec<&String> = vars
        .keys()
        .filter(|k| k.ends_with("_conv.weight") || k.ends_with("_stem.weight"))
        .collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let size = var.size();
        let fan_out: i64 = size[0] * size[2..].iter().product::<i64>();
        var.shallow_clone()
            .f_normal_(0.0, (2.0 / fan_out as f64).sqrt())
            .map(drop)?;
    }
    Ok(())
}

/// Names the model an efficientnet_pytorch-style state dict belongs to: a Lite variant when the
/// block count and final block width match one, else a description of what it is.
pub(super) fn identify(tensors: &HashMap<String, Tensor>) -> Option<String> {
    tensors.get("_conv_stem.weight")?;
    if tensors.keys().any(|k| k.contains("._se_reduce.")) {
        return Some(
            "an EfficientNet-B checkpoint (with squeeze-excitation, not Lite)".to_string(),
        );
    }
    let block_index = |k: &String| {
        k.strip_prefix("_blocks.")?
            .split('.')
            .next()?
            .parse::<usize>()
            .ok()
    };
    let n_blocks = tensors
        .keys()
        .filter_map(block_index)
        .max()
        .map_or(0, |m| m + 1);
    let last_width = n_blocks
        .checked_sub(1)
        .and_then(|i| tensors.get(&format!("_blocks.{i}._project_conv.weight")))
        .and_then(|t| t.size().first().copied());
    for variant in Variant::ALL {
        let blocks = variant.blocks();
        if blocks.len() == n_blocks && blocks.last().map(|b| b.output) == last_width {
            return Some(variant.name().to_string());
        }
    }
    Some(format!("an EfficientNet checkpoint with {n_blocks} blocks"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_counts_and_widths_follow_the_lite_rules() {
        let counts: Vec<usize> = Variant::ALL.iter().map(|v| v.blocks().len()).collect();
        assert_eq!(counts, [16, 21, 21]);
        let widths = |v: Variant| v.stages().iter().map(|s| s.channels).collect::<Vec<_>>();
        assert_eq!(
            widths(Variant::Lite0),
            [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]
        );
        let lite2 = widths(Variant::Lite2);
        assert_eq!(
            (lite2[0], lite2[3], lite2[6], lite2[10], lite2[14], lite2[19], lite2[20]),
            (16, 24, 48, 88, 120, 208, 352)
        );
        for v in Variant::ALL {
            assert_eq!(
                v.stages().len(),
                v.blocks().len(),
                "{v:?} has a name for every block"
            );
            assert_eq!(v.stages().last().map(|s| s.stride), Some(32));
        }
    }

    #[test]
    fn built_names_match_efficientnet_pytorch() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        assert!(EfficientNetLite::new(&vs.root(), Variant::Lite0).is_ok());
        let vars = vs.variables();
        let shape = |k: &str| vars.get(k).map(|t| t.size());
        assert_eq!(shape("_conv_stem.weight"), Some(vec![32, 3, 3, 3]));
        assert_eq!(
            shape("_blocks.0._depthwise_conv.weight"),
            Some(vec![32, 1, 3, 3])
        );
        assert_eq!(shape("_blocks.0._expand_conv.weight"), None);
        assert_eq!(
            shape("_blocks.1._expand_conv.weight"),
            Some(vec![96, 16, 1, 1])
        );
        assert_eq!(shape("_blocks.15._bn2.running_mean"), Some(vec![320]));
    }
}
