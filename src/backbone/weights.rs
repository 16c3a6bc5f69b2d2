//! Reading a backbone state dict (`.safetensors`, or a `.pth` written by `torch.save` in its zip
//! or legacy format) and copying it into a built model, with errors that name the file and the key.
//!
//! Every parameter the model registers must be present with its exact shape; extra keys (a
//! classifier, stages that are not built, `num_batches_tracked`) are ignored. The file's sha256
//! goes into bank metadata, so a bank can tell which weights produced it.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tch::{nn, Kind, Tensor};

use super::registry::BackboneSpec;
use super::{efficientnet_lite, pth, wide_resnet, BackboneError};

/// A state dict read from disk, on the CPU, with the sha256 of the file it came from.
pub(super) struct StateDict {
    pub tensors: HashMap<String, Tensor>,
    pub sha256: String,
}

/// Reads a state dict, telling the format from the file's first bytes rather than its name.
pub(super) fn read(path: &Path) -> Result<StateDict, BackboneError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => BackboneError::MissingFile {
            file: path.to_path_buf(),
        },
        _ => BackboneError::Io {
            file: path.to_path_buf(),
            source,
        },
    })?;
    let sha256 = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tensors = if bytes.starts_with(pth::ZIP_MAGIC) {
        pth::read_zip(&bytes).map_err(|reason| unreadable(path, "torch zip (.pth)", reason))?
    } else if bytes.starts_with(pth::LEGACY_MAGIC) {
        pth::read_legacy(&bytes)
            .map_err(|reason| unreadable(path, "legacy torch.save (.pth)", reason))?
    } else {
        read_safetensors(&bytes, path)?
    };
    Ok(StateDict { tensors, sha256 })
}

fn unreadable(path: &Path, format: &'static str, reason: impl ToString) -> BackboneError {
    BackboneError::Unreadable {
        file: path.to_path_buf(),
        format,
        reason: reason.to_string(),
    }
}

fn read_safetensors(bytes: &[u8], path: &Path) -> Result<HashMap<String, Tensor>, BackboneError> {
    use safetensors::Dtype;
    const FORMAT: &str = "safetensors";
    let file =
        safetensors::SafeTensors::deserialize(bytes).map_err(|e| unreadable(path, FORMAT, e))?;
    let mut tensors = HashMap::new();
    for (name, view) in file.tensors() {
        let kind = match view.dtype() {
            Dtype::F64 => Kind::Double,
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::I16 => Kind::Int16,
            Dtype::I8 => Kind::Int8,
            Dtype::U8 => Kind::Uint8,
            Dtype::BOOL => Kind::Bool,
            other => {
                return Err(unreadable(
                    path,
                    FORMAT,
                    format!("tensor `{name}` has unsupported dtype {other:?}"),
                ))
            }
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| unreadable(path, FORMAT, e))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

/// What is wrong between a state dict and the model's parameters.
#[derive(Default)]
struct Mismatch {
    missing: Vec<String>,
    wrong_shape: Vec<(String, Vec<i64>, Vec<i64>)>,
    not_float: Vec<(String, Kind)>,
}

/// Copies `state` into the parameters of `vs` (built for `spec`), after checking all of them.
pub(super) fn assign(
    vs: &nn::VarStore,
    state: &StateDict,
    spec: &BackboneSpec,
    path: &Path,
) -> Result<(), BackboneError> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut mismatch = Mismatch::default();
    for &name in &names {
        match state.tensors.get(name) {
            None => mismatch.missing.push(name.clone()),
            Some(t) if t.size() != vars[name].size() => {
                mismatch
                    .wrong_shape
                    .push((name.clone(), vars[name].size(), t.size()));
            }
            Some(t) if !t.is_floating_point() => mismatch.not_float.push((name.clone(), t.kind())),
            Some(_) => {}
        }
    }
    check(mismatch, state, spec, path)?;
    tch::no_grad(|| {
        for &name in &names {
            if let Some(src) = state.tensors.get(name) {
                vars[name].shallow_clone().f_copy_(src)?;
            }
        }
        Ok::<(), tch::TchError>(())
    })
    .map_err(BackboneError::Torch)
}

/// Turns the first problem into an error; when the file is another backbone's, says that instead.
fn check(
    mismatch: Mismatch,
    state: &StateDict,
    spec: &BackboneSpec,
    path: &Path,
) -> Result<(), BackboneError> {
    let file = path.to_path_buf();
    let problems = mismatch.missing.len() + mismatch.wrong_shape.len() + mismatch.not_float.len();
    if problems == 0 {
        return Ok(());
    }
    let identity = wide_resnet::identify(&state.tensors)
        .or_else(|| efficientnet_lite::identify(&state.tensors));
    if let Some(found) = identity.filter(|found| found != spec.name) {
        return Err(BackboneError::WrongBackbone {
            file,
            expected: spec.name,
            found,
        });
    }
    let others = problems - 1;
    if let Some(key) = mismatch.missing.into_iter().next() {
        return Err(BackboneError::MissingKey {
            file,
            backbone: spec.name,
            key,
            others,
        });
    }
    if let Some((key, expected, found)) = mismatch.wrong_shape.into_iter().next() {
        return Err(BackboneError::WrongShape {
            file,
            backbone: spec.name,
            key,
            expected,
            found,
            others,
        });
    }
    match mismatch.not_float.into_iter().next() {
        Some((key, kind)) => Err(BackboneError::NotFloat {
            file,
            key,
            kind: format!("{kind:?}"),
        }),
        None => Ok(()),
    }
}
