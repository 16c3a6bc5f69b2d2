//! `--device` values for every caller (CLI and GUI worker): auto, cpu, cuda, cuda:N.
use tch::Device;

/// "auto" (or empty) picks CUDA when libtorch sees a GPU; "cuda"/"cuda:N" must exist.
pub fn parse_device(s: &str) -> Result<Device, String> {
    let cuda = |n: usize| {
        let count = tch::Cuda::device_count().max(0) as usize;
        if n < count {
            Ok(Device::Cuda(n))
        } else {
            Err(format!(
                "device cuda:{n}: libtorch sees {count} CUDA device(s)"
            ))
        }
    };
    match s {
        "" | "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => cuda(n),
            None => Err(format!(
                "device must be auto, cpu, cuda or cuda:N, not {other:?}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert!(parse_device("gpu").unwrap_err().contains("auto, cpu, cuda"));
        // This machine's CUDA count decides; a device past the count is always an error.
        assert!(parse_device("cuda:99").unwrap_err().contains("cuda:99"));
        assert_eq!(parse_device("auto"), Ok(Device::cuda_if_available()));
    }
}
