//! Which arithmetic the backbone and the search's shortlisting run in. The one place that
//! decides it, for the CLI and the GUI worker alike, so bf16 is only used where it was measured
//! to be faster.
use crate::backbone::BackboneSpec;
use tch::{Device, Kind};

/// What the user asked for (`--precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionChoice {
    /// bf16 where it was measured faster (CUDA, CPUs with AMX), f32 elsewhere.
    #[default]
    Auto,
    F32,
    Bf16,
}

/// The precision a model actually runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Backbone and the search's shortlisting GEMM in bfloat16 (fast on AMX and on GPUs);
    /// distances are still computed in f32, so the answer is exact.
    Bf16,
}

impl Precision {
    pub(crate) fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// The measurement behind the rule for CPUs without AMX, quoted when bf16 is forced on one.
const NO_AMX_SLOWDOWN: &str = "measured 3.9x slower than f32 on a CPU with AVX512-BF16 but no \
AMX (537 against 137 ms per image, WideResNet-50, `patchcore bench`, Sapphire Rapids)";

/// The GPU measurement quoted when bf16 is forced for a backbone it slows down there.
const GPU_SLOWDOWN: &str = "EfficientNet-Lite2 predicted 461 images per second in bf16 against \
546 in f32 on an H200 (`patchcore bench`, batch 32; its depthwise convolutions)";

/// The precision to run `choice` in on `device` for `backbone`, and a warning when an explicit
/// choice is one that was measured slower there. `auto` picks bf16 only where it was measured
/// faster: with AMX (2-core Xeon, family 6 model 207) bf16 predicted in 78 against 85 ms per
/// image with EfficientNet-Lite0, 71 against 83 with Lite2 and 120 against 181 with
/// WideResNet-50-2 (`patchcore bench`); on a GPU, per backbone (`bf16_faster_on_cuda`).
pub fn resolve(
    choice: PrecisionChoice,
    device: Device,
    backbone: &BackboneSpec,
) -> (Precision, Option<String>) {
    let faster = match device {
        Device::Cpu => cpu_has_amx(),
        _ => backbone.bf16_faster_on_cuda,
    };
    resolve_for(choice, device, faster)
}

/// `bf16_faster`: what was measured for this device (and backbone, on a GPU).
fn resolve_for(
    choice: PrecisionChoice,
    device: Device,
    bf16_faster: bool,
) -> (Precision, Option<String>) {
    match choice {
        PrecisionChoice::F32 => (Precision::F32, None),
        PrecisionChoice::Auto if bf16_faster => (Precision::Bf16, None),
        PrecisionChoice::Auto => (Precision::F32, None),
        PrecisionChoice::Bf16 if bf16_faster => (Precision::Bf16, None),
        PrecisionChoice::Bf16 => (
            Precision::Bf16,
            Some(match device {
                Device::Cpu => format!(
                    "bf16 on this CPU without AMX is slower than f32: {NO_AMX_SLOWDOWN}; \
                     `--precision auto` or `f32` avoids it"
                ),
                _ => format!("bf16 is slower than f32 for this backbone on a GPU: {GPU_SLOWDOWN}"),
            }),
        ),
    }
}

/// Whether the CPU has AMX tiles with bf16 and the OS has enabled their state (XCR0 bits 17
/// and 18): oneDNN's bf16 kernels only beat f32 with AMX; AVX512-BF16 alone is slower.
#[cfg(target_arch = "x86_64")]
fn cpu_has_amx() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    // `is_x86_feature_detected!("amx-bf16")` is still unstable, so read CPUID directly; leaf 7
    // is only read when leaf 0 reports it.
    let (max_leaf, osxsave) = (__cpuid(0).eax, __cpuid(1).ecx & (1 << 27) != 0);
    if max_leaf < 7 || !osxsave {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    let (amx_bf16, amx_tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
    if !(amx_bf16 && amx_tile) {
        return false;
    }
    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        _xgetbv(0)
    }
    // SAFETY: XGETBV is available when the OS has set OSXSAVE (checked above).
    let tile_state = 0b11 << 17;
    unsafe { xcr0() & tile_state == tile_state }
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_amx() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_uses_bf16_only_where_measured_faster() {
        let cuda = Device::Cuda(0);
        use PrecisionChoice::*;
        assert_eq!(
            resolve_for(Auto, Device::Cpu, false),
            (Precision::F32, None)
        );
        assert_eq!(resolve_for(Auto, Device::Cpu, true).0, Precision::Bf16);
        assert_eq!(resolve_for(Auto, cuda, true).0, Precision::Bf16);
        assert_eq!(resolve_for(Auto, cuda, false), (Precision::F32, None));
        assert_eq!(resolve_for(F32, cuda, true), (Precision::F32, None));
        assert!(resolve_for(Bf16, cuda, false).1.unwrap().contains("461"));
        // The GPU rule is per backbone, from the H200 measurements.
        let spec = |n| crate::backbone::find(n).unwrap();
        assert_eq!(
            resolve(Auto, cuda, spec("wide_resnet50_2")).0,
            Precision::Bf16
        );
        assert_eq!(
            resolve(Auto, cuda, spec("efficientnet_lite2")).0,
            Precision::F32
        );
        // Forced bf16 is honoured, with the measured reason where it is slower.
        let (p, warning) = resolve_for(Bf16, Device::Cpu, false);
        assert_eq!(p, Precision::Bf16);
        assert!(warning.unwrap().contains("537 against 137 ms"));
        assert_eq!(
            resolve_for(Bf16, Device::Cpu, true),
            (Precision::Bf16, None)
        );
    }

    #[test]
    fn amx_detection_agrees_with_the_kernel() {
        // Linux lists amx_bf16 and amx_tile in /proc/cpuinfo only when it enables them.
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            return;
        };
        let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
        let listed = flags.contains(" amx_bf16") && flags.contains(" amx_tile");
        assert_eq!(cpu_has_amx(), listed);
    }
}
