//! Frozen CNN backbones for PatchCore, as native tch modules.
//!
//! Parameter paths mirror the public PyTorch checkpoints (torchvision's `wide_resnet50_2`,
//! efficientnet_pytorch's EfficientNet-Lite0/1/2), so a state dict loads without renaming. A
//! backbone only runs inference (no autograd, BatchNorm with its stored statistics) and stops
//! after the last stage a caller asks for, since PatchCore only needs mid-level features.
//!
//! - `registry`: names, stages (stride, channels), default stages, normalisation, weights file.
//! - `wide_resnet`, `efficientnet_lite`: one file per architecture.
//! - `weights`: reading `.safetensors` / `.pth` state dicts and checking them against a model;
//!   `pth` reads both `torch.save` formats (zip and pre-1.6 legacy) natively.

mod efficientnet_lite;
mod layers;
mod pth;
mod registry;
mod weights;
mod wide_resnet;

pub use registry::{default_backbone, find, registry, BackboneSpec, Normalization, StageInfo};

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tch::{nn, Device, Kind, TchError, Tensor};

use efficientnet_lite::EfficientNetLite;
use registry::Arch;
use wide_resnet::WideResNet;

/// Everything that can go wrong choosing, loading or running a backbone. Weight-file errors
/// name the file and, where it applies, the tensor and shapes involved.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error("unknown backbone `{name}` (known: {known})")]
    UnknownBackbone { name: String, known: String },
    #[error("{backbone} has no stage `{stage}` (its stages: {known})")]
    UnknownStage {
        backbone: &'static str,
        stage: String,
        known: String,
    },
    #[error(
        "{backbone} needs a floating-point N x 3 x H x W input, got {kind} of shape {shape:?}"
    )]
    BadInput {
        backbone: &'static str,
        shape: Vec<i64>,
        kind: String,
    },
    #[error("weights file {} does not exist", .file.display())]
    MissingFile { file: PathBuf },
    #[error("cannot read weights file {}: {source}", .file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("weights file {} is truncated or not a valid {format} file: {reason}", .file.display())]
    Unreadable {
        file: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("weights file {} holds {found} weights, not {expected}", .file.display())]
    WrongBackbone {
        file: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error("weights file {} lacks `{key}`, which {backbone} needs{}", .file.display(), more(*.others))]
    MissingKey {
        file: PathBuf,
        backbone: &'static str,
        key: String,
        others: usize,
    },
    #[error(
        "weights file {}: `{key}` has shape {found:?}, {backbone} needs {expected:?}{}",
        .file.display(),
        more(*.others)
    )]
    WrongShape {
        file: PathBuf,
        backbone: &'static str,
        key: String,
        expected: Vec<i64>,
        found: Vec<i64>,
        others: usize,
    },
    #[error("weights file {}: `{key}` holds {kind} values, not floating point", .file.display())]
    NotFloat {
        file: PathBuf,
        key: String,
        kind: String,
    },
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}

/// The " (and N more ...)" suffix, so the one error reported still tells how broken a file is.
fn more(others: usize) -> String {
    match others {
        0 => String::new(),
        n => format!(" (and {n} more missing or mismatched tensors)"),
    }
}

#[derive(Debug)]
enum Network {
    WideResNet(WideResNet),
    EfficientNetLite(EfficientNetLite),
}

/// Serialises seeding and drawing from libtorch's process-wide generator, so two `random` calls
/// on different threads cannot interleave their draws.
static RNG: Mutex<()> = Mutex::new(());

/// A backbone with its weights on one device, ready for inference.
#[derive(Debug)]
pub struct Backbone {
    spec: &'static BackboneSpec,
    vs: nn::VarStore,
    net: Network,
    weights_sha256: String,
}

impl Backbone {
    /// Builds the registered architecture with placeholder values and frozen parameters.
    fn build(spec: &'static BackboneSpec, device: Device) -> Result<Backbone, BackboneError> {
        let mut vs = nn::VarStore::new(device);
        let net = {
            let root = vs.root();
            match spec.arch {
                Arch::WideResNet50_2 => {
                    Network::WideResNet(WideResNet::new(&root, spec.stages.len())?)
                }
                Arch::EfficientNetLite(variant) => {
                    Network::EfficientNetLite(EfficientNetLite::new(&root, variant)?)
                }
            }
        };
        vs.freeze();
        Ok(Backbone {
            spec,
            vs,
            net,
            weights_sha256: String::new(),
        })
    }

    /// Loads the backbone `name` with the state dict in `weights` (`.safetensors`, or a `.pth`
    /// from `torch.save`, zip or legacy format) onto `device`.
    pub fn load(name: &str, weights: &Path, device: Device) -> Result<Backbone, BackboneError> {
        let spec = find(name)?;
        let state = weights::read(weights)?;
        let mut backbone = Backbone::build(spec, device)?;
        weights::assign(&backbone.vs, &state, spec, weights)?;
        backbone.weights_sha256 = state.sha256;
        Ok(backbone)
    }

    /// Seeded random weights, for tests and benchmarks. For `wide_resnet50_2` they equal
    /// torchvision's `torch.manual_seed(seed); wide_resnet50_2(weights=None)` bit for bit.
    ///
    /// Seeds libtorch's process-wide CPU generator: another thread drawing random numbers
    /// through libtorch at the same time would change the result.
    pub fn random(name: &str, seed: i64, device: Device) -> Result<Backbone, BackboneError> {
        let spec = find(name)?;
        // Drawn on the CPU, where torch.manual_seed's stream is defined, then copied over.
        let cpu = Backbone::build(spec, Device::Cpu)?;
        let vars = cpu.vs.variables();
        {
            let _draws = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tch::manual_seed(seed);
            tch::no_grad(|| match spec.arch {
                Arch::WideResNet50_2 => wide_resnet::init_like_torchvision(&vars),
                Arch::EfficientNetLite(_) => efficientnet_lite::init_random(&vars),
            })?;
        }
        let mut backbone = if device == Device::Cpu {
            cpu
        } else {
            let mut on_device = Backbone::build(spec, device)?;
            on_device.vs.copy(&cpu.vs)?;
            on_device
        };
        backbone.weights_sha256 = format!("random-seed-{seed}");
        Ok(backbone)
    }

    pub fn spec(&self) -> &'static BackboneSpec {
        self.spec
    }

    /// sha256 (lowercase hex) of the weights file, or `random-seed-<n>` for random weights.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The parameters and BatchNorm statistics under their checkpoint names, sorted by name
    /// (shallow handles on the live tensors), for checks and export.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut params: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    }

    /// Folds every BatchNorm into the convolution before it (inference only; about a fifth of
    /// WideResNet's forward time on CPU). `parameters()` then no longer match the checkpoint,
    /// and `forward` agrees with the unfolded network up to float rounding.
    pub fn fold_batchnorm(&mut self) -> Result<(), BackboneError> {
        match &mut self.net {
            Network::WideResNet(net) => net.convs_mut().try_for_each(|c| c.fold()),
            Network::EfficientNetLite(net) => net.convs_mut().try_for_each(|c| c.fold()),
        }?;
        Ok(())
    }

    /// Converts the weights to a floating-point `kind` (e.g. BFloat16); `forward` then casts its
    /// input to it and returns outputs of that kind.
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
    }

    /// Runs the normalised NCHW input `x` (any H, W; moved to the backbone's device and kind)
    /// and returns the outputs of `stages`, in the order asked. Stops after the last stage
    /// requested; an unknown stage name is an error.
    pub fn forward(&self, x: &Tensor, stages: &[String]) -> Result<Vec<Tensor>, BackboneError> {
        let wanted = stages
            .iter()
            .map(|s| self.spec.stage_index(s))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(&last) = wanted.iter().max() else {
            return Ok(Vec::new());
        };
        let shape = x.size();
        if shape.len() != 4 || shape[1] != 3 || !x.is_floating_point() {
            return Err(BackboneError::BadInput {
                backbone: self.spec.name,
                shape,
                kind: format!("{:?}", x.kind()),
            });
        }
        let mut outputs: Vec<Option<Tensor>> = wanted.iter().map(|_| None).collect();
        let mut visit = |stage: usize, t: &Tensor| {
            for (slot, &w) in outputs.iter_mut().zip(&wanted) {
                if w == stage {
                    *slot = Some(t.shallow_clone());
                }
            }
        };
        tch::no_grad(|| {
            let x = x.f_to_device(self.device())?.f_to_kind(self.vs.kind())?;
            match &self.net {
                Network::WideResNet(net) => net.forward(&x, last, &mut visit),
                Network::EfficientNetLite(net) => net.forward(&x, last, &mut visit),
            }
        })?;
        Ok(outputs.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn backbone_is_send() {
        assert_send::<Backbone>();
    }

    #[test]
    fn forward_checks_stages_and_input() -> Result<(), BackboneError> {
        let backbone = Backbone::random("efficientnet_lite0", 3, Device::Cpu)?;
        assert_eq!(backbone.weights_sha256(), "random-seed-3");
        let x = Tensor::zeros([1, 3, 37, 45], (Kind::Float, Device::Cpu));
        let err = backbone
            .forward(&x, &["block99".to_string()])
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, BackboneError::UnknownStage { .. }), "{err}");
        let gray = Tensor::zeros([1, 1, 32, 32], (Kind::Float, Device::Cpu));
        let err = backbone
            .forward(&gray, &["block0".to_string()])
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, BackboneError::BadInput { .. }), "{err}");
        // Outputs come back in the order asked, with SAME-padding sizes ceil(37 / s) x ceil(45 / s).
        let out = backbone.forward(&x, &["block4".to_string(), "block0".to_string()])?;
        assert_eq!(out[0].size(), [1, 40, 5, 6]);
        assert_eq!(out[1].size(), [1, 16, 19, 23]);
        Ok(())
    }
}
