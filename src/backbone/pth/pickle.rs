//! The pickle VM both `torch.save` formats share, with just the opcodes and globals a state dict
//! needs; anything else is an error, so a file cannot make it run code.
//!
//! Tensors are only described while unpickling (storage key, offset, size, stride) and built by
//! the caller once it has the storages' bytes, which each format keeps somewhere else. Containers
//! live in an arena and are referred to by index, so shared references keep pickle's semantics
//! and hostile nesting cannot recurse on drop.

use std::collections::HashMap;
use std::rc::Rc;

use tch::Kind;

/// Bounds a tensor's rank, so one size tuple reused by many tensors cannot multiply memory.
const MAX_DIMS: usize = 64;

pub(super) type Result<T> = std::result::Result<T, String>;

/// The globals a state dict pickle refers to; any other GLOBAL is an error.
#[derive(Clone, Copy, Debug)]
pub(super) enum Global {
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
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Global(Global),
    Node(usize),
}

pub(super) enum Node {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// `numel` elements from element `offset` of the file's storage `key` (a nonzero offset only
/// comes from the storage views of very old files).
#[derive(Clone)]
pub(super) struct StorageRef {
    pub key: Rc<str>,
    pub offset: i64,
    pub numel: i64,
}

/// The arguments of `torch._utils._rebuild_tensor(_v2)`.
pub(super) struct TensorRef {
    pub storage: StorageRef,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// Bounds-checked reading from a byte slice.
pub(super) struct Input<'a> {
    pub bytes: &'a [u8],
    pub pos: usize,
}

impl<'a> Input<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let taken = rest.get(..n);
        let taken = taken.ok_or(format!(
            "file is truncated: {n} bytes needed, {} left",
            rest.len()
        ))?;
        self.pos += n;
        Ok(taken)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
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
/// the storages seen (key -> element kind and count) persist across a file's pickles.
#[derive(Default)]
pub(super) struct Vm {
    arena: Vec<Node>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: HashMap<Rc<str>, (Kind, i64)>,
}

impl Vm {
    /// Runs one pickle up to its STOP and returns the object it built.
    pub fn load(&mut self, input: &mut Input) -> Result<Value> {
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

    /// The element kind and count a persistent id declared for storage `key`.
    pub fn storage(&self, key: &str) -> Option<(Kind, i64)> {
        self.storages.get(key).copied()
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

    pub fn node(&self, value: &Value) -> Option<&Node> {
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
    pub fn describe(&self, value: &Value) -> String {
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

    /// Resolves a storage persistent id: `('storage', class, key, location, numel)`, plus a
    /// sixth field, the view, in the legacy format.
    fn persistent_load(&mut self, pid: &Value) -> Result<Value> {
        let fields = match self.node(pid) {
            Some(Node::Tuple(fields)) => fields.as_slice(),
            _ => &[],
        };
        let (tag, kind, key, n, view) = match fields {
            [Value::Str(tag), Value::Global(Global::Storage(kind)), Value::Str(key), _, n] => {
                (tag, kind, key, n, &Value::None)
            }
            [Value::Str(tag), Value::Global(Global::Storage(kind)), Value::Str(key), _, n, view] => {
                (tag, kind, key, n, view)
            }
            _ => return Err(format!("unexpected persistent id {}", self.describe(pid))),
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
    pub fn state_dict<'s>(&'s self, root: &Value) -> Result<Vec<(&'s str, &'s TensorRef)>> {
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
