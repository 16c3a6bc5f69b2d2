//! The backbone registry: for each supported name, its stages (stride, channels), the stages
//! PatchCore uses by default, the input normalisation its weights were trained with, the weights
//! file setup writes into `models/`, and its native resolution.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::efficientnet_lite::Variant;
use super::{wide_resnet, BackboneError};

/// Per-channel input normalisation a backbone's weights expect (`fit --normalization`).
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Normalization {
    /// torchvision's ImageNet mean/std.
    #[value(name = "imagenet")]
    ImageNet,
    /// TensorFlow's `(x * 255 - 127) / 128`, used to train the EfficientNet-Lite weights.
    #[value(name = "tf")]
    TfSymmetric,
}

impl Normalization {
    /// (mean, std) per RGB channel on 0..1 pixel values: the input is `(pixel - mean) / std`.
    pub fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            Normalization::ImageNet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            Normalization::TfSymmetric => ([127.0 / 255.0; 3], [128.0 / 255.0; 3]),
        }
    }
}

/// One feature map a backbone can return.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageInfo {
    pub name: &'static str,
    /// Input pixels per output pixel: an H x W input gives a ceil(H / stride) x ceil(W / stride)
    /// map (both architectures round up at every stride-2 step).
    pub stride: u32,
    pub channels: u32,
    /// Receptive-field radius in input pixels: how far from its own position one of this stage's
    /// features can see. A tile needs this much context (plus the patch neighbourhood) to stitch
    /// exactly (`engine::extractor`).
    pub reach: u32,
}

/// Which architecture builds a registry entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Arch {
    WideResNet50_2,
    EfficientNetLite(Variant),
}

/// A registered backbone.
#[derive(Debug)]
pub struct BackboneSpec {
    pub name: &'static str,
    /// Stages in network order; `forward` stops after the last one requested.
    pub stages: Vec<StageInfo>,
    pub default_stages: &'static [&'static str],
    /// The input normalisation the weights were trained with, and PatchCore's default (see
    /// `efficientnet_lite` for why).
    pub normalization: Normalization,
    /// File name in the models folder, e.g. "efficientnet_lite2.safetensors".
    pub weights_file: &'static str,
    /// The file as its publisher distributes it (a `.pth`), read directly when the converted
    /// `weights_file` is absent, so dropping torchvision's download into the models folder suffices.
    pub published_file: Option<&'static str>,
    /// Native (training) resolution; any input size works.
    pub input_size: u32,
    /// A finer stage `fit` may add when it chooses a configuration on synthetic defects
    /// (`engine::select`); None keeps the default stages (WideResNet: the paper's settings).
    pub detail_stage: Option<&'static str>,
    /// A coarser stage the whole-image geometry adds (`Method::in_geometry`): at native size a
    /// 3 x 3 patch of the stride-8 grid spans 24 pixels of a part hundreds long, and this stage
    /// gives each patch the surface around it (README, Geometry). None: the paper's stages only.
    pub context_stage: Option<&'static str>,
    /// Whether bf16 ran faster than f32 on a GPU (H200, `patchcore bench` at batch 32):
    /// WideResNet-50-2 750 against 709 images per second; EfficientNet-Lite2 461 against 546,
    /// its depthwise convolutions being slower in bf16. `--precision auto` follows it.
    pub bf16_faster_on_cuda: bool,
    pub(super) arch: Arch,
}

impl BackboneSpec {
    /// The weights file to load from `models_dir`: the converted file, else the published one when
    /// only that is there; the converted file's path (for the error message) when neither is.
    pub fn weights_in(&self, models_dir: &Path) -> PathBuf {
        let converted = models_dir.join(self.weights_file);
        match self.published_file.map(|f| models_dir.join(f)) {
            Some(published) if !converted.is_file() && published.is_file() => published,
            _ => converted,
        }
    }

    /// The stage called `name`, or an error listing this backbone's stages.
    pub fn stage(&self, name: &str) -> Result<&StageInfo, BackboneError> {
        self.stage_index(name).map(|i| &self.stages[i])
    }

    pub(super) fn stage_index(&self, name: &str) -> Result<usize, BackboneError> {
        self.stages
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| BackboneError::UnknownStage {
                backbone: self.name,
                stage: name.to_string(),
                known: self
                    .stages
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// EfficientNet-Lite's registered configuration: the last blocks at strides 8 and 16 on the
/// stride-8 grid with the weights' own `(x - 127) / 128` input. `fit` also tries the stride-4 block
/// with ImageNet input (`detail_stage`, `engine::select`), because neither wins on both bottle and
/// magnetic tile (README, Accuracy).
fn efficientnet_lite(
    variant: Variant,
    default_stages: &'static [&'static str],
    weights_file: &'static str,
) -> BackboneSpec {
    let stages = variant.stages();
    let last_at = |stride: u32| {
        stages
            .iter()
            .rev()
            .find(|s| s.stride == stride)
            .map(|s| s.name)
    };
    BackboneSpec {
        name: variant.name(),
        default_stages,
        normalization: Normalization::TfSymmetric,
        weights_file,
        published_file: None,
        input_size: variant.coefficients().2,
        detail_stage: last_at(4),
        // The last block.
        context_stage: last_at(32),
        bf16_faster_on_cuda: false,
        arch: Arch::EfficientNetLite(variant),
        stages,
    }
}

fn build() -> Vec<BackboneSpec> {
    vec![
        BackboneSpec {
            name: "wide_resnet50_2",
            stages: wide_resnet::STAGES.to_vec(),
            default_stages: &["layer2", "layer3"],
            normalization: Normalization::ImageNet,
            weights_file: "wide_resnet50_2.safetensors",
            published_file: Some("wide_resnet50_2-95faca4d.pth"),
            input_size: 224,
            detail_stage: None,
            context_stage: None,
            bf16_faster_on_cuda: true,
            arch: Arch::WideResNet50_2,
        },
        efficientnet_lite(
            Variant::Lite0,
            &["block4", "block10"],
            "efficientnet_lite0.safetensors",
        ),
        efficientnet_lite(
            Variant::Lite1,
            &["block6", "block14"],
            "efficientnet_lite1.safetensors",
        ),
        efficientnet_lite(
            Variant::Lite2,
            &["block6", "block14"],
            "efficientnet_lite2.safetensors",
        ),
    ]
}

/// All supported backbones.
pub fn registry() -> &'static [BackboneSpec] {
    static REGISTRY: OnceLock<Vec<BackboneSpec>> = OnceLock::new();
    REGISTRY.get_or_init(build)
}

/// The backbone called `name`; an unknown name's error lists the known ones.
pub fn find(name: &str) -> Result<&'static BackboneSpec, BackboneError> {
    registry()
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| BackboneError::UnknownBackbone {
            name: name.to_string(),
            known: registry()
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// WideResNet-50-2 (the paper's backbone) when its weights are in `models_dir`, else
/// EfficientNet-Lite2, whose weights setup can always install offline.
pub fn default_backbone(models_dir: &Path) -> &'static BackboneSpec {
    let registry = registry();
    let by_name = |name: &str| registry.iter().find(|s| s.name == name);
    match by_name("wide_resnet50_2") {
        Some(wrn) if wrn.weights_in(models_dir).is_file() => wrn,
        _ => by_name("efficientnet_lite2").unwrap_or(&registry[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_weights_are_used_only_without_the_converted_file() {
        let dir = tempfile::tempdir().unwrap();
        let wrn = find("wide_resnet50_2").unwrap();
        let converted = dir.path().join("wide_resnet50_2.safetensors");
        let published = dir.path().join("wide_resnet50_2-95faca4d.pth");
        assert_eq!(wrn.weights_in(dir.path()), converted);
        assert_eq!(default_backbone(dir.path()).name, "efficientnet_lite2");
        std::fs::write(&published, b"").unwrap();
        assert_eq!(wrn.weights_in(dir.path()), published);
        assert_eq!(default_backbone(dir.path()).name, "wide_resnet50_2");
        std::fs::write(&converted, b"").unwrap();
        assert_eq!(wrn.weights_in(dir.path()), converted);
    }

    #[test]
    fn default_stages_exist_and_strides_grow() {
        for spec in registry() {
            for stage in spec.default_stages {
                assert!(
                    spec.stage(stage).is_ok(),
                    "{} lacks default stage {stage}",
                    spec.name
                );
            }
            assert!(
                spec.stages
                    .windows(2)
                    .all(|w| w[0].stride <= w[1].stride && w[0].reach < w[1].reach),
                "{}",
                spec.name
            );
            if let Some(stage) = spec.context_stage {
                assert_eq!(spec.stage(stage).map(|s| s.stride).ok(), Some(32));
            }
            assert!(spec.weights_file.starts_with(spec.name));
        }
        let lite2 = find("efficientnet_lite2")
            .map(|s| (s.stage("block6").copied(), s.stage("block14").copied()));
        assert!(matches!(
            lite2,
            Ok((
                Ok(StageInfo {
                    stride: 8,
                    channels: 48,
                    ..
                }),
                Ok(StageInfo {
                    stride: 16,
                    channels: 120,
                    ..
                })
            ))
        ));
        // Receptive fields by hand: Lite2's last block sees 1,115 pixels (the stem's 3 x 3 / 2,
        // then 21 depthwise kernels at their strides); WideResNet's layer3 267.
        let reach = |b: &str, s: &str| find(b).and_then(|b| b.stage(s)).map(|s| s.reach).ok();
        assert_eq!(reach("efficientnet_lite2", "block20"), Some(558));
        assert_eq!(reach("wide_resnet50_2", "layer3"), Some(133));
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = find("resnet18").map(|s| s.name).unwrap_err().to_string();
        assert!(
            err.contains("resnet18")
                && err.contains("wide_resnet50_2")
                && err.contains("efficientnet_lite2"),
            "{err}"
        );
        let err = find("wide_resnet50_2")
            .and_then(|s| s.stage("layer9"))
            .map(|s| s.name)
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer9") && err.contains("layer2"), "{err}");
    }

    #[test]
    fn tf_symmetric_is_minus_one_to_one() {
        let (mean, std) = Normalization::TfSymmetric.mean_std();
        assert!(((0.0 - mean[0]) / std[0] + 127.0 / 128.0).abs() < 1e-6);
        assert!(((1.0 - mean[0]) / std[0] - 1.0).abs() < 1e-6);
    }
}
