//! Wide ResNet-50-2 (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016), as torchvision
//! builds it: a ResNet-50 whose bottleneck 3x3 convolutions are twice as wide. PatchCore's default
//! feature extractor (layer2 + layer3).
//!
//! Parameter paths are torchvision's (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`, ...,
//! `layerX.0.downsample.{0,1}.*`), so its state dict loads as is. Only the stages the registry
//! lists are built: keys of the stages left out (`layer4.*`, `fc.*`) are ignored when loading.

use std::collections::HashMap;

use tch::{nn, Device, Kind, TchError, Tensor};

use super::layers::{ConvBn, ConvSpec};
use super::StageInfo;

/// torchvision's BatchNorm2d default.
const BN_EPS: f64 = 1e-5;
/// Bottleneck output channels = planes * EXPANSION.
const EXPANSION: i64 = 4;
/// The "wide" in WRN-50-2: bottleneck width = planes * 2 (torchvision's width_per_group 128 / 64).
const WIDTH_FACTOR: i64 = 2;
/// (planes, blocks, stride) of layer1..layer4.
const LAYERS: [(i64, usize, i64); 4] = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)];
/// torchvision's classifier size; only its random init matters here (it consumes the RNG).
const NUM_CLASSES: i64 = 1000;

/// The stages the registry exposes. Adding `layer4` (stride 32, 2048 channels, reach 213) here is
/// all it takes to build and expose it. Reach: conv1 7 x 7 / 2 and the 3 x 3 / 2 max pool, then
/// one 3 x 3 convolution per bottleneck (the first of a layer strided) give receptive fields of
/// 35, 91 and 267 pixels.
pub(super) const STAGES: [StageInfo; 3] = [
    StageInfo {
        name: "layer1",
        stride: 4,
        channels: 256,
        reach: 17,
    },
    StageInfo {
        name: "layer2",
        stride: 8,
        channels: 512,
        reach: 45,
    },
    StageInfo {
        name: "layer3",
        stride: 16,
        channels: 1024,
        reach: 133,
    },
];

/// Convolution `<p>/<conv>` with its BatchNorm `<p>/<bn>`.
fn conv_bn(
    p: &nn::Path,
    names: (&str, &str),
    (c_in, c_out): (i64, i64),
    kernel: i64,
    stride: i64,
) -> Result<ConvBn, TchError> {
    ConvBn::new(
        p,
        names,
        ConvSpec::torch(c_in, c_out, kernel, stride),
        BN_EPS,
    )
}

#[derive(Debug)]
struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn new(p: &nn::Path, c_in: i64, planes: i64, stride: i64) -> Result<Self, TchError> {
        let width = planes * WIDTH_FACTOR;
        let c_out = planes * EXPANSION;
        let downsample = if stride != 1 || c_in != c_out {
            Some(conv_bn(
                &(p / "downsample"),
                ("0", "1"),
                (c_in, c_out),
                1,
                stride,
            )?)
        } else {
            None
        };
        Ok(Bottleneck {
            conv1: conv_bn(p, ("conv1", "bn1"), (c_in, width), 1, 1)?,
            conv2: conv_bn(p, ("conv2", "bn2"), (width, width), 3, stride)?,
            conv3: conv_bn(p, ("conv3", "bn3"), (width, c_out), 1, 1)?,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        // In place on each convolution's fresh output: no second activation map per layer.
        let y = self.conv1.forward(x)?.f_relu_()?;
        let y = self.conv2.forward(&y)?.f_relu_()?;
        let mut y = self.conv3.forward(&y)?;
        match &self.downsample {
            Some(down) => y.f_add_(&down.forward(x)?)?,
            None => y.f_add_(x)?,
        }
        .f_relu_()
    }

    fn convs_mut(&mut self) -> impl Iterator<Item = &mut ConvBn> {
        [&mut self.conv1, &mut self.conv2, &mut self.conv3]
            .into_iter()
            .chain(self.downsample.as_mut())
    }
}

/// Stem plus the first `n` residual stages.
#[derive(Debug)]
pub(super) struct WideResNet {
    conv1: ConvBn,
    layers: Vec<Vec<Bottleneck>>,
}

impl WideResNet {
    /// Builds the stem and stages layer1..layer`n_stages` under `p`.
    pub(super) fn new(p: &nn::Path, n_stages: usize) -> Result<Self, TchError> {
        let mut c_in = 64;
        let mut layers = Vec::with_capacity(n_stages);
        for (i, &(planes, blocks, stride)) in LAYERS.iter().take(n_stages).enumerate() {
            let lp = p / format!("layer{}", i + 1);
            let mut layer = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let s = if b == 0 { stride } else { 1 };
                layer.push(Bottleneck::new(&(&lp / b), c_in, planes, s)?);
                c_in = planes * EXPANSION;
            }
            layers.push(layer);
        }
        Ok(WideResNet {
            conv1: conv_bn(p, ("conv1", "bn1"), (3, 64), 7, 2)?,
            layers,
        })
    }

    /// Runs up to stage `last` (0 = layer1), handing each stage output to `visit`.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        last: usize,
        visit: &mut dyn FnMut(usize, &Tensor),
    ) -> Result<(), TchError> {
        let mut h = self.conv1.forward(x)?.f_relu_()?.f_max_pool2d(
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            false,
        )?;
        for (i, layer) in self.layers.iter().take(last + 1).enumerate() {
            for block in layer {
                h = block.forward(&h)?;
            }
            visit(i, &h);
        }
        Ok(())
    }

    /// Every convolution with its BatchNorm, for folding.
    pub(super) fn convs_mut(&mut self) -> impl Iterator<Item = &mut ConvBn> {
        std::iter::once(&mut self.conv1).chain(
            self.layers
                .iter_mut()
                .flatten()
                .flat_map(Bottleneck::convs_mut),
        )
    }
}

/// Shape of one convolution of torchvision's full model, with its parameter name.
struct ConvSlot {
    name: String,
    shape: [i64; 4],
}

/// Every Conv2d of torchvision's `wide_resnet50_2`, twice: in construction order (a layer's
/// downsample conv is created before its first block) and in `model.modules()` order (the
/// downsample comes after that block's conv3).
fn torchvision_convs() -> (Vec<ConvSlot>, Vec<ConvSlot>) {
    let slot = |name: String, c_out: i64, c_in: i64, k: i64| ConvSlot {
        name,
        shape: [c_out, c_in, k, k],
    };
    let mut built = vec![slot("conv1".into(), 64, 3, 7)];
    let mut modules = vec![slot("conv1".into(), 64, 3, 7)];
    let mut c_in = 64;
    for (i, &(planes, blocks, _)) in LAYERS.iter().enumerate() {
        let (width, c_out) = (planes * WIDTH_FACTOR, planes * EXPANSION);
        for b in 0..blocks {
            let prefix = format!("layer{}.{b}", i + 1);
            let down = (b == 0).then(|| slot(format!("{prefix}.downsample.0"), c_out, c_in, 1));
            let body = [
                slot(format!("{prefix}.conv1"), width, c_in, 1),
                slot(format!("{prefix}.conv2"), width, width, 3),
                slot(format!("{prefix}.conv3"), c_out, width, 1),
            ];
            if let Some(d) = &down {
                built.push(ConvSlot {
                    name: d.name.clone(),
                    shape: d.shape,
                });
            }
            for s in &body {
                built.push(ConvSlot {
                    name: s.name.clone(),
                    shape: s.shape,
                });
            }
            modules.extend(body);
            modules.extend(down);
            c_in = c_out;
        }
    }
    (built, modules)
}

/// Fills the built convolutions exactly as `torch.manual_seed(seed); wide_resnet50_2()` does,
/// drawing from libtorch's global CPU generator (seeded by the caller) in torchvision's order:
/// every Conv2d's default `kaiming_uniform_(a=sqrt(5))` as it is constructed, the `fc` Linear's
/// weight and bias, then `kaiming_normal_(mode="fan_out", nonlinearity="relu")` over the convs
/// in module order. Draws for layers that are not built go to scratch tensors, so the stream
/// stays aligned. BatchNorms already hold torchvision's init (weight 1, bias 0).
pub(super) fn init_like_torchvision(vars: &HashMap<String, Tensor>) -> Result<(), TchError> {
    let (built, modules) = torchvision_convs();
    for conv in &built {
        let bound = default_bound(conv.shape[1] * conv.shape[2] * conv.shape[3]);
        scratch(&conv.shape)?.f_uniform_(-bound, bound).map(drop)?;
    }
    let fc_in = LAYERS[3].0 * EXPANSION;
    let bound = default_bound(fc_in);
    scratch(&[NUM_CLASSES, fc_in])?
        .f_uniform_(-bound, bound)
        .map(drop)?;
    // Linear bias: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), written as torch computes it.
    let bias_bound = 1.0 / (fc_in as f64).sqrt();
    scratch(&[NUM_CLASSES])?
        .f_uniform_(-bias_bound, bias_bound)
        .map(drop)?;

    // Nothing after the last built conv in module order affects the built weights.
    let weight = |conv: &ConvSlot| vars.get(&format!("{}.weight", conv.name));
    let Some(last) = modules.iter().rposition(|c| weight(c).is_some()) else {
        return Ok(());
    };
    for conv in &modules[..=last] {
        let fan_out = conv.shape[0] * conv.shape[2] * conv.shape[3];
        let std = 2f64.sqrt() / (fan_out as f64).sqrt();
        let mut target = match weight(conv) {
            Some(var) => var.shallow_clone(),
            None => scratch(&conv.shape)?,
        };
        target.f_normal_(0.0, std).map(drop)?;
    }
    Ok(())
}

/// A CPU float tensor that only receives random draws, to keep the generator aligned with
/// torchvision for parameters that are not built.
fn scratch(shape: &[i64]) -> Result<Tensor, TchError> {
    Tensor::f_empty(shape, (Kind::Float, Device::Cpu))
}

/// The bound of PyTorch's default `kaiming_uniform_(w, a=sqrt(5))`, with torch's exact float
/// steps: gain = sqrt(2 / (1 + a^2)), std = gain / sqrt(fan_in), bound = sqrt(3) * std.
fn default_bound(fan_in: i64) -> f64 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a.powf(2.0))).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    3f64.sqrt() * std
}

/// Names the model a ResNet-style state dict belongs to, from the width of its first 3x3
/// bottleneck conv (128 for the wide variant, 64 for a plain ResNet-50/101/152).
pub(super) fn identify(tensors: &HashMap<String, Tensor>) -> Option<String> {
    let conv2 = tensors.get("layer1.0.conv2.weight")?;
    Some(match conv2.size().first() {
        Some(&w) if w == 64 * WIDTH_FACTOR => "wide_resnet50_2".to_string(),
        Some(&64) => "a plain (not wide) ResNet".to_string(),
        _ => "an unknown ResNet variant".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_conv_orders() {
        let (built, modules) = torchvision_convs();
        // conv1 + 16 blocks * 3 convs + 4 downsamples.
        assert_eq!(built.len(), 1 + 16 * 3 + 4);
        assert_eq!(modules.len(), built.len());
        assert_eq!(built[1].name, "layer1.0.downsample.0");
        assert_eq!(modules[4].name, "layer1.0.downsample.0");
        assert_eq!(built[1].shape, [256, 64, 1, 1]);
        assert_eq!(modules[5].shape, [128, 256, 1, 1]);
    }

    #[test]
    fn built_names_match_torchvision() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = WideResNet::new(&vs.root(), 1);
        assert!(net.is_ok());
        let vars = vs.variables();
        let shape = |k: &str| vars.get(k).map(|t| t.size());
        assert_eq!(shape("conv1.weight"), Some(vec![64, 3, 7, 7]));
        assert_eq!(shape("layer1.0.conv2.weight"), Some(vec![128, 128, 3, 3]));
        assert_eq!(shape("layer1.0.downsample.1.running_var"), Some(vec![256]));
        assert_eq!(shape("layer1.2.conv3.weight"), Some(vec![256, 128, 1, 1]));
        assert!(!vars.contains_key("layer2.0.conv1.weight"));
    }
}
