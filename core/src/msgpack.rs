//! The msgpack layer: a bounds-checked reader over a byte slice, the few
//! writers the codec needs, and [`RawValue`], one msgpack object kept as its
//! encoded bytes.
//!
//! Nothing here trusts a length read from the input: every length is checked
//! against the bytes that remain before anything is allocated.

use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;

use crate::error::WireError;

/// The msgpack ext type that marks a reference to another task's result.
/// Its payload is the key as UTF-8 bytes (spec: "Task references").
pub const TASK_REF_EXT: i8 = 1;

/// Deepest nesting of arrays and maps accepted inside one value.
pub const VALUE_DEPTH_MAX: usize = 100;

/// Longest key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 4096;

/// Values at least this long are never copied on their way through:
/// decoded from a frame that has a buffer of its own, they share it (see
/// [`Reader::over_shared`]); encoded by a `FrameEncoder`, they are sent
/// from where they are kept ([`WriteBuf`]). Shorter ones are copied,
/// which is cheaper than sharing for them.
pub const SHARED_VALUE_BYTES_MIN: usize = 64 * 1024;

/// A decoded value shares its frame's buffer only when it is at least
/// this fraction of the frame (1/N): a small value kept long must not keep
/// a large frame alive (at most N times its size is held for it).
const SHARED_VALUE_FRAME_FRACTION: usize = 8;

/// The kind of a msgpack object, as named in error messages.
pub fn marker_kind(byte: u8) -> &'static str {
    match byte {
        0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => "integer",
        0x80..=0x8f | 0xde | 0xdf => "map",
        0x90..=0x9f | 0xdc | 0xdd => "array",
        0xa0..=0xbf | 0xd9..=0xdb => "string",
        0xc0 => "nil",
        0xc2 | 0xc3 => "boolean",
        0xc4..=0xc6 => "binary",
        0xc7..=0xc9 | 0xd4..=0xd8 => "ext",
        0xca | 0xcb => "float",
        _ => "reserved byte 0xc1",
    }
}

/// A cursor over msgpack bytes. Every read checks bounds and returns
/// [`WireError`] instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// `buf` as a shared buffer: large values read from it share it.
    shared: Option<&'a Bytes>,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`. Values read from it are copied.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            shared: None,
        }
    }

    /// A reader at the start of `buf` whose large values
    /// ([`SHARED_VALUE_BYTES_MIN`]) share `buf` instead of being copied.
    pub fn over_shared(buf: &'a Bytes) -> Self {
        Reader {
            buf,
            pos: 0,
            shared: Some(buf),
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The marker byte of the next object, without consuming it.
    pub fn peek(&self) -> Result<u8, WireError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(WireError::truncated)
    }

    /// Whether the next object is nil.
    pub fn next_is_nil(&self) -> bool {
        self.buf.get(self.pos) == Some(&0xc0)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::truncated());
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn wrong(&self, expected: &'static str, marker: u8) -> WireError {
        // 0xc1 is no msgpack type at all: the bytes are malformed, whatever
        // was expected (as when the value is skipped).
        if marker == 0xc1 {
            return WireError::malformed("reserved msgpack byte 0xc1");
        }
        WireError::wrong_type(expected, marker_kind(marker))
    }

    /// Reads nil.
    pub fn read_nil(&mut self) -> Result<(), WireError> {
        match self.byte()? {
            0xc0 => Ok(()),
            m => Err(self.wrong("nil", m)),
        }
    }

    /// Reads a boolean.
    pub fn read_bool(&mut self) -> Result<bool, WireError> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            m => Err(self.wrong("boolean", m)),
        }
    }

    /// Reads any msgpack integer as i128, so both u64 and i64 fit.
    pub fn read_int(&mut self) -> Result<i128, WireError> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => m as i128,
            0xe0..=0xff => (m as i8) as i128,
            0xcc => u8::from_be_bytes(self.be()?) as i128,
            0xcd => u16::from_be_bytes(self.be()?) as i128,
            0xce => u32::from_be_bytes(self.be()?) as i128,
            0xcf => u64::from_be_bytes(self.be()?) as i128,
            0xd0 => i8::from_be_bytes(self.be()?) as i128,
            0xd1 => i16::from_be_bytes(self.be()?) as i128,
            0xd2 => i32::from_be_bytes(self.be()?) as i128,
            0xd3 => i64::from_be_bytes(self.be()?) as i128,
            _ => return Err(self.wrong("integer", m)),
        })
    }

    /// Reads an integer that must fit in `T`.
    pub fn read_int_as<T: TryFrom<i128>>(
        &mut self,
        expected: &'static str,
    ) -> Result<T, WireError> {
        let v = self.read_int()?;
        T::try_from(v).map_err(|_| WireError::wrong_type(expected, "integer out of range"))
    }

    /// Reads a float; integers are accepted and converted.
    pub fn read_f64(&mut self) -> Result<f64, WireError> {
        match self.peek()? {
            0xca => {
                self.pos += 1;
                Ok(f32::from_be_bytes(self.be()?) as f64)
            }
            0xcb => {
                self.pos += 1;
                Ok(f64::from_be_bytes(self.be()?))
            }
            m if marker_kind(m) == "integer" => Ok(self.read_int()? as f64),
            m => Err(self.wrong("number", m)),
        }
    }

    /// Reads the length of a string and its bytes.
    pub fn read_str(&mut self) -> Result<&'a str, WireError> {
        let m = self.byte()?;
        let len = match m {
            0xa0..=0xbf => (m & 0x1f) as usize,
            0xd9 => u8::from_be_bytes(self.be()?) as usize,
            0xda => u16::from_be_bytes(self.be()?) as usize,
            0xdb => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("string", m)),
        };
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| WireError::malformed("string is not valid UTF-8"))
    }

    /// Reads binary data.
    pub fn read_bin(&mut self) -> Result<&'a [u8], WireError> {
        let m = self.byte()?;
        let len = match m {
            0xc4 => u8::from_be_bytes(self.be()?) as usize,
            0xc5 => u16::from_be_bytes(self.be()?) as usize,
            0xc6 => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("binary", m)),
        };
        self.take(len)
    }

    /// Reads binary data as [`Bytes`]: a slice of the shared buffer when
    /// there is one and the data is large ([`SHARED_VALUE_BYTES_MIN`]),
    /// else a copy.
    pub fn read_bin_shared(&mut self) -> Result<Bytes, WireError> {
        let bytes = self.read_bin()?;
        let end = self.pos;
        Ok(match self.shared {
            Some(frame) if bytes.len() >= SHARED_VALUE_BYTES_MIN => {
                frame.slice(end - bytes.len()..end)
            }
            _ => Bytes::copy_from_slice(bytes),
        })
    }

    /// Reads an array header. The length is checked against the bytes left
    /// (each element takes at least one byte), so callers may reserve it.
    pub fn read_array_len(&mut self) -> Result<usize, WireError> {
        let m = self.byte()?;
        let len = match m {
            0x90..=0x9f => (m & 0x0f) as usize,
            0xdc => u16::from_be_bytes(self.be()?) as usize,
            0xdd => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("array", m)),
        };
        if len > self.remaining() {
            return Err(WireError::truncated());
        }
        Ok(len)
    }

    /// Reads a map header; the length is checked like an array's.
    pub fn read_map_len(&mut self) -> Result<usize, WireError> {
        let m = self.byte()?;
        let len = match m {
            0x80..=0x8f => (m & 0x0f) as usize,
            0xde => u16::from_be_bytes(self.be()?) as usize,
            0xdf => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("map", m)),
        };
        if len.saturating_mul(2) > self.remaining() {
            return Err(WireError::truncated());
        }
        Ok(len)
    }

    /// Reads an ext header and payload.
    pub fn read_ext(&mut self) -> Result<(i8, &'a [u8]), WireError> {
        let m = self.byte()?;
        let len = match m {
            0xd4 => 1,
            0xd5 => 2,
            0xd6 => 4,
            0xd7 => 8,
            0xd8 => 16,
            0xc7 => u8::from_be_bytes(self.be()?) as usize,
            0xc8 => u16::from_be_bytes(self.be()?) as usize,
            0xc9 => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("ext", m)),
        };
        let ty = i8::from_be_bytes(self.be()?);
        Ok((ty, self.take(len)?))
    }

    /// Skips one whole value, checking that it is well formed (UTF-8
    /// strings, depth at most [`VALUE_DEPTH_MAX`], task references hold
    /// valid keys), and returns its bytes. `on_ref` sees every task reference.
    pub fn skip_value(&mut self, on_ref: &mut dyn FnMut(&'a str)) -> Result<&'a [u8], WireError> {
        self.skip_nested(VALUE_DEPTH_MAX, on_ref)
    }

    /// Like [`Reader::skip_value`], with nesting up to `depth_max` levels.
    pub fn skip_nested(
        &mut self,
        depth_max: usize,
        on_ref: &mut dyn FnMut(&'a str),
    ) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        // An explicit stack of "objects still to read" keeps deep input from
        // overflowing the native stack. Its first levels are in place: every
        // message skips its values, and a heap stack was a malloc and a free
        // for each one holding a container (most task arguments).
        let mut pending = SkipStack::default();
        let mut todo = 1usize;
        loop {
            while todo == 0 {
                match pending.pop() {
                    Some(t) => todo = t,
                    None => return Ok(&self.buf[start..self.pos]),
                }
            }
            todo -= 1;
            let m = self.peek()?;
            let is_container = matches!(m, 0x80..=0x9f | 0xdc..=0xdf);
            // Every open container is on `pending`, so its length is the
            // number of containers around this object. An empty container
            // counts as a level too: the limit is on nesting, not on data.
            if is_container && pending.len() >= depth_max {
                return Err(WireError::malformed(format!(
                    "nested deeper than {depth_max} levels"
                )));
            }
            let children = match m {
                0x80..=0x8f | 0xde | 0xdf => self.read_map_len()? * 2,
                0x90..=0x9f | 0xdc | 0xdd => self.read_array_len()?,
                0xa0..=0xbf | 0xd9..=0xdb => {
                    self.read_str()?;
                    0
                }
                0xc4..=0xc6 => {
                    self.read_bin()?;
                    0
                }
                0xc7..=0xc9 | 0xd4..=0xd8 => {
                    let (ty, data) = self.read_ext()?;
                    if ty == TASK_REF_EXT {
                        on_ref(parse_ref(data)?);
                    }
                    0
                }
                0xc0 | 0xc2 | 0xc3 => {
                    self.pos += 1;
                    0
                }
                0xca => {
                    self.take(5)?;
                    0
                }
                0xcb => {
                    self.take(9)?;
                    0
                }
                0xcc..=0xd3 | 0x00..=0x7f | 0xe0..=0xff => {
                    self.read_int()?;
                    0
                }
                _ => return Err(WireError::malformed("reserved msgpack byte 0xc1")),
            };
            if children > 0 {
                pending.push(todo);
                todo = children;
            }
        }
    }
}

/// The stack of [`Reader::skip_nested`]: its first levels in place, the
/// rest on the heap.
#[derive(Default)]
struct SkipStack {
    inline: [usize; SkipStack::INLINE],
    len: usize,
    deeper: Vec<usize>,
}

impl SkipStack {
    const INLINE: usize = 8;

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, todo: usize) {
        match self.inline.get_mut(self.len) {
            Some(at) => *at = todo,
            None => self.deeper.push(todo),
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<usize> {
        self.len = self.len.checked_sub(1)?;
        match self.inline.get(self.len) {
            Some(&todo) => Some(todo),
            None => self.deeper.pop(),
        }
    }
}

/// Checks the payload of a task reference: a key in UTF-8.
pub fn parse_ref(data: &[u8]) -> Result<&str, WireError> {
    let key = std::str::from_utf8(data)
        .map_err(|_| WireError::malformed("task reference is not UTF-8"))?;
    check_key(key)?;
    Ok(key)
}

/// Checks the rules every key follows: 1 to [`KEY_BYTES_MAX`] bytes.
pub fn check_key(key: &str) -> Result<(), WireError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(WireError::wrong_type(
            "key of 1 to 4096 bytes",
            "string of another length",
        ));
    }
    Ok(())
}

/// Writers for the canonical encoding: the smallest form of every integer,
/// length and string header; floats always as float 64.
pub mod write {
    /// Writes nil.
    pub fn nil(w: &mut Vec<u8>) {
        w.push(0xc0);
    }

    /// Writes a boolean.
    pub fn bool(w: &mut Vec<u8>, v: bool) {
        w.push(if v { 0xc3 } else { 0xc2 });
    }

    /// Writes an unsigned integer in its smallest form.
    pub fn uint(w: &mut Vec<u8>, v: u64) {
        match v {
            0..=0x7f => w.push(v as u8),
            0x80..=0xff => w.extend_from_slice(&[0xcc, v as u8]),
            0x100..=0xffff => {
                w.push(0xcd);
                w.extend_from_slice(&(v as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                w.push(0xce);
                w.extend_from_slice(&(v as u32).to_be_bytes());
            }
            _ => {
                w.push(0xcf);
                w.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    /// Writes a signed integer in its smallest form (non-negative values
    /// are written as unsigned, as the msgpack spec recommends).
    pub fn int(w: &mut Vec<u8>, v: i64) {
        if v >= 0 {
            return uint(w, v as u64);
        }
        match v {
            -32..=-1 => w.push(v as i8 as u8),
            -128..=-33 => w.extend_from_slice(&[0xd0, v as i8 as u8]),
            -32768..=-129 => {
                w.push(0xd1);
                w.extend_from_slice(&(v as i16).to_be_bytes());
            }
            -2147483648..=-32769 => {
                w.push(0xd2);
                w.extend_from_slice(&(v as i32).to_be_bytes());
            }
            _ => {
                w.push(0xd3);
                w.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    /// Writes a float 64.
    pub fn f64(w: &mut Vec<u8>, v: f64) {
        w.push(0xcb);
        w.extend_from_slice(&v.to_bits().to_be_bytes());
    }

    fn header(
        w: &mut Vec<u8>,
        len: usize,
        fix: u8,
        fix_max: usize,
        m8: Option<u8>,
        m16: u8,
        m32: u8,
    ) {
        if len <= fix_max {
            w.push(fix | len as u8);
        } else if let (Some(m), true) = (m8, len <= 0xff) {
            w.extend_from_slice(&[m, len as u8]);
        } else if len <= 0xffff {
            w.push(m16);
            w.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            w.push(m32);
            w.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    /// Writes a string.
    pub fn str(w: &mut Vec<u8>, s: &str) {
        str_bytes(w, s.as_bytes());
    }

    fn str_bytes(w: &mut Vec<u8>, s: &[u8]) {
        header(w, s.len(), 0xa0, 31, Some(0xd9), 0xda, 0xdb);
        w.extend_from_slice(s);
    }

    /// Writes binary data.
    pub fn bin(w: &mut Vec<u8>, b: &[u8]) {
        if b.len() <= 0xff {
            w.extend_from_slice(&[0xc4, b.len() as u8]);
        } else if b.len() <= 0xffff {
            w.push(0xc5);
            w.extend_from_slice(&(b.len() as u16).to_be_bytes());
        } else {
            w.push(0xc6);
            w.extend_from_slice(&(b.len() as u32).to_be_bytes());
        }
        w.extend_from_slice(b);
    }

    /// Writes an array header.
    pub fn array_len(w: &mut Vec<u8>, len: usize) {
        header(w, len, 0x90, 15, None, 0xdc, 0xdd);
    }

    /// Writes a map header.
    pub fn map_len(w: &mut Vec<u8>, len: usize) {
        header(w, len, 0x80, 15, None, 0xde, 0xdf);
    }

    /// Writes an ext object.
    pub fn ext(w: &mut Vec<u8>, ty: i8, data: &[u8]) {
        match data.len() {
            1 => w.push(0xd4),
            2 => w.push(0xd5),
            4 => w.push(0xd6),
            8 => w.push(0xd7),
            16 => w.push(0xd8),
            n if n <= 0xff => w.extend_from_slice(&[0xc7, n as u8]),
            n if n <= 0xffff => {
                w.push(0xc8);
                w.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                w.push(0xc9);
                w.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
        w.push(ty as u8);
        w.extend_from_slice(data);
    }

    /// Writes a reference to the result of task `key`.
    pub fn task_ref(w: &mut Vec<u8>, key: &str) {
        ext(w, super::TASK_REF_EXT, key.as_bytes());
    }

    /// Writes a tree in the canonical encoding: smallest forms, every float
    /// (float 32 too) as float 64, map entries in the tree's order.
    pub fn value(w: &mut Vec<u8>, v: &rmpv::Value) {
        use rmpv::Value;
        match v {
            Value::Nil => nil(w),
            Value::Boolean(b) => bool(w, *b),
            Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => uint(w, u),
                (None, Some(s)) => int(w, s),
                // An rmpv integer is always a u64 or an i64.
                (None, None) => nil(w),
            },
            Value::F32(f) => f64(w, *f as f64),
            Value::F64(f) => f64(w, *f),
            Value::String(s) => str_bytes(w, s.as_bytes()),
            Value::Binary(b) => bin(w, b),
            Value::Array(items) => {
                array_len(w, items.len());
                for item in items {
                    value(w, item);
                }
            }
            Value::Map(entries) => {
                map_len(w, entries.len());
                for (k, item) in entries {
                    value(w, k);
                    value(w, item);
                }
            }
            Value::Ext(ty, data) => ext(w, *ty, data),
        }
    }
}

/// A large value to be sent from where it is kept, at an offset of the
/// bytes written around it.
#[derive(Debug, Clone)]
pub(crate) struct Splice {
    /// Where in the written bytes the value goes.
    pub(crate) at: usize,
    pub(crate) bytes: Bytes,
}

/// Where an encoding is written: a byte buffer (it derefs to the
/// `Vec<u8>`, so the [`write`] functions take it), and, for a `FrameEncoder`
/// feeding vectored writes, a list of large values to send from where
/// they are kept instead of copying them in.
pub struct WriteBuf<'a> {
    bytes: &'a mut Vec<u8>,
    splices: Option<&'a mut Vec<Splice>>,
}

impl<'a> WriteBuf<'a> {
    /// Writes everything into `bytes`.
    pub fn new(bytes: &'a mut Vec<u8>) -> WriteBuf<'a> {
        WriteBuf {
            bytes,
            splices: None,
        }
    }

    /// Writes into `bytes`, but values of at least
    /// [`SHARED_VALUE_BYTES_MIN`] go to `splices`, at their offset.
    pub(crate) fn with_splices(
        bytes: &'a mut Vec<u8>,
        splices: &'a mut Vec<Splice>,
    ) -> WriteBuf<'a> {
        WriteBuf {
            bytes,
            splices: Some(splices),
        }
    }

    /// Writes `bytes` as a msgpack bin whose data is sent from where it
    /// is kept when large (as [`WriteBuf::shared`]).
    pub(crate) fn shared_bin(&mut self, bytes: &Bytes) {
        let len = bytes.len();
        if len <= 0xff {
            self.bytes.extend_from_slice(&[0xc4, len as u8]);
        } else if len <= 0xffff {
            self.bytes.push(0xc5);
            self.bytes.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.bytes.push(0xc6);
            self.bytes.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.shared(bytes);
    }

    /// Writes encoded bytes kept in a shared buffer: by reference when
    /// they are large and the caller can send them so.
    fn shared(&mut self, bytes: &Bytes) {
        match &mut self.splices {
            Some(splices) if bytes.len() >= SHARED_VALUE_BYTES_MIN => splices.push(Splice {
                at: self.bytes.len(),
                bytes: bytes.clone(),
            }),
            _ => self.bytes.extend_from_slice(bytes),
        }
    }
}

impl Deref for WriteBuf<'_> {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        self.bytes
    }
}

impl DerefMut for WriteBuf<'_> {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        self.bytes
    }
}

/// Nesting decoding into a tree allows: a value's own bound, with room
/// for a dependency's value put in place of a reference deep inside.
const DECODE_DEPTH_MAX: usize = VALUE_DEPTH_MAX * 2 + 8;

/// One msgpack object kept in its encoded form: task arguments and results
/// travel through the scheduler as these bytes, never parsed into a tree.
///
/// Holds exactly one object: [`RawValue::from_bytes`] and decoding check
/// that it is well formed; [`RawValue::from_value`] trusts the tree it is
/// given (its strings, task references and depth are not checked).
///
/// Cloning is cheap (a reference count): a large value read from a frame
/// shares that frame's buffer, and is written out from it again without a
/// copy (see [`SHARED_VALUE_BYTES_MIN`]).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RawValue(Bytes);

impl RawValue {
    /// Checks `bytes` holds exactly one well-formed object.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<RawValue, WireError> {
        RawValue::from_shared_bytes(Bytes::from(bytes))
    }

    /// [`RawValue::from_bytes`] for bytes already shared.
    pub fn from_shared_bytes(bytes: Bytes) -> Result<RawValue, WireError> {
        let mut r = Reader::new(&bytes);
        r.skip_value(&mut |_| {})?;
        if r.remaining() != 0 {
            return Err(WireError::malformed("bytes after the end of a value"));
        }
        Ok(RawValue(bytes))
    }

    /// Encodes a tree in the canonical encoding (floats as float 64). The
    /// tree is trusted: build trees from untrusted input with
    /// [`RawValue::from_bytes`] instead.
    pub fn from_value(value: &rmpv::Value) -> RawValue {
        let mut out = Vec::new();
        write::value(&mut out, value);
        RawValue(Bytes::from(out))
    }

    /// [`RawValue::from_value`] of a tree given away: a large binary's
    /// bytes become its encoding in place (the buffer grown by the 5-byte
    /// header, which the allocator does without a copy for memory it
    /// mapped, the bytes moved up within it), so a task's large binary
    /// result is never held twice nor copied into fresh pages.
    pub fn from_owned_value(value: rmpv::Value) -> RawValue {
        match value {
            // Canonical: at this size, bin 32 is the smallest form.
            rmpv::Value::Binary(mut b)
                if b.len() >= SHARED_VALUE_BYTES_MIN && u32::try_from(b.len()).is_ok() =>
            {
                let n = b.len();
                b.reserve_exact(5);
                b.extend_from_slice(&[0; 5]);
                b.copy_within(0..n, 5);
                b[0] = 0xc6;
                b[1..5].copy_from_slice(&(n as u32).to_be_bytes());
                RawValue(Bytes::from(b))
            }
            other => RawValue::from_value(&other),
        }
    }

    /// A copy of `bytes`, taken from a `RawValue` (so they hold exactly
    /// one well-formed object: not checked again). The scheduler keeps
    /// task arguments as plain bytes in its task records.
    pub fn copy_of_trusted(bytes: &[u8]) -> RawValue {
        RawValue(Bytes::copy_from_slice(bytes))
    }

    /// The encoded bytes, shared (a reference count, no copy).
    pub fn into_shared(self) -> Bytes {
        self.0
    }

    /// Nil.
    pub fn nil() -> RawValue {
        RawValue(Bytes::from_static(&[0xc0]))
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, owned (copied when the buffer is shared).
    pub fn into_bytes(self) -> Vec<u8> {
        Vec::from(self.0)
    }

    /// Bytes of the encoding.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds no bytes (only [`RawValue::default`] does; it is
    /// not a valid value).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes the encoding; a large one by reference when `w` can.
    pub(crate) fn write_to(&self, w: &mut WriteBuf<'_>) {
        w.shared(&self.0);
    }

    /// Decodes into a tree. Cannot fail on a `RawValue` built by this crate,
    /// but returns a `Result` rather than trust that.
    pub fn to_value(&self) -> Result<rmpv::Value, WireError> {
        rmpv::decode::read_value_with_max_depth(&mut &self.0[..], DECODE_DEPTH_MAX)
            .map_err(|e| WireError::malformed(format!("value: {e}")))
    }

    /// Decodes into a tree borrowing its strings and binaries from these
    /// bytes (a large binary is not copied).
    pub fn to_value_ref(&self) -> Result<rmpv::ValueRef<'_>, WireError> {
        rmpv::decode::read_value_ref_with_max_depth(&mut &self.0[..], DECODE_DEPTH_MAX)
            .map_err(|e| WireError::malformed(format!("value: {e}")))
    }

    /// The keys of every task reference inside, in order of appearance.
    pub fn refs(&self) -> Vec<&str> {
        let mut refs = Vec::new();
        let _ = Reader::new(&self.0).skip_value(&mut |k| refs.push(k));
        refs
    }

    /// Whether the value is an array (task args must be).
    pub fn is_array(&self) -> bool {
        matches!(self.0.first(), Some(0x90..=0x9f | 0xdc | 0xdd))
    }

    /// Whether the value is a map whose keys are all strings (task kwargs
    /// must be).
    pub fn is_string_map(&self) -> bool {
        let mut r = Reader::new(&self.0);
        let Ok(len) = r.read_map_len() else {
            return false;
        };
        (0..len).all(|_| r.read_str().is_ok() && r.skip_value(&mut |_| {}).is_ok())
    }

    /// Whether the value holds any task reference.
    pub fn has_refs(&self) -> bool {
        let mut any = false;
        let _ = Reader::new(&self.0).skip_value(&mut |_| any = true);
        any
    }

    /// Reads one object from `r`, keeping its bytes: a slice of `r`'s
    /// buffer when it is shared and the value is large enough, else a copy.
    pub fn read(r: &mut Reader<'_>) -> Result<RawValue, WireError> {
        let start = r.position();
        let bytes = r.skip_value(&mut |_| {})?;
        Ok(RawValue(match r.shared {
            Some(frame)
                if bytes.len() >= SHARED_VALUE_BYTES_MIN
                    && bytes.len() >= frame.len() / SHARED_VALUE_FRAME_FRACTION =>
            {
                frame.slice(start..start + bytes.len())
            }
            _ => Bytes::copy_from_slice(bytes),
        }))
    }
}

impl fmt::Debug for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_value() {
            Ok(v) if self.0.len() <= 256 => write!(f, "RawValue({v})"),
            _ => write!(f, "RawValue({} bytes)", self.0.len()),
        }
    }
}

impl From<rmpv::Value> for RawValue {
    fn from(v: rmpv::Value) -> Self {
        RawValue::from_value(&v)
    }
}

/// A task reference as a tree value.
pub fn task_ref_value(key: &str) -> rmpv::Value {
    rmpv::Value::Ext(TASK_REF_EXT, key.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: &rmpv::Value) -> Vec<u8> {
        RawValue::from_value(v).into_bytes()
    }

    #[test]
    fn a_tree_given_away_encodes_as_one_borrowed() {
        let patterned = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
        for value in [
            rmpv::Value::Binary(patterned(SHARED_VALUE_BYTES_MIN)),
            rmpv::Value::Binary(patterned(3 << 20)),
            rmpv::Value::Binary(patterned(SHARED_VALUE_BYTES_MIN - 1)),
            rmpv::Value::Binary(Vec::new()),
            rmpv::Value::from("text"),
            rmpv::Value::Array(vec![rmpv::Value::Binary(patterned(1 << 17))]),
        ] {
            let given = RawValue::from_owned_value(value.clone());
            assert!(given.as_bytes() == encode(&value).as_slice());
            assert_eq!(given.to_value().unwrap(), value);
        }
    }

    #[test]
    fn integers_use_the_smallest_form() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0xcc, 0x80]),
            (-1, &[0xff]),
            (-33, &[0xd0, 0xdf]),
            (65536, &[0xce, 0, 1, 0, 0]),
        ];
        for (v, bytes) in cases {
            let mut w = Vec::new();
            write::int(&mut w, *v);
            assert_eq!(&w, bytes, "{v}");
            assert_eq!(Reader::new(&w).read_int().unwrap(), *v as i128);
        }
    }

    #[test]
    fn refs_are_found_at_any_depth() {
        use rmpv::Value;
        let v = Value::Array(vec![
            task_ref_value("a"),
            Value::Map(vec![(
                Value::from("k"),
                Value::Array(vec![task_ref_value("b")]),
            )]),
        ]);
        let raw = RawValue::from_bytes(encode(&v)).unwrap();
        assert_eq!(raw.refs(), vec!["a", "b"]);
    }

    #[test]
    fn refs_and_siblings_are_read_past_the_stack_kept_in_place() {
        // 20 levels, more than the skip stack holds in place: a reference
        // before and after each inner array, so each level is resumed after
        // its inner one ends, on both sides of the boundary.
        use rmpv::Value;
        let depth = 20;
        let mut v = Value::Array(vec![]);
        for d in (0..depth).rev() {
            v = Value::Array(vec![
                task_ref_value(&format!("in-{d}")),
                v,
                task_ref_value(&format!("out-{d}")),
            ]);
        }
        let bytes = encode(&v);
        let raw = RawValue::from_bytes(bytes.clone()).unwrap();
        let mut want: Vec<String> = (0..depth).map(|d| format!("in-{d}")).collect();
        want.extend((0..depth).rev().map(|d| format!("out-{d}")));
        assert_eq!(raw.refs(), want);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.skip_value(&mut |_| {}).unwrap().len(), bytes.len());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut bytes = vec![0x91; 100_000];
        bytes.push(0xc0);
        assert!(RawValue::from_bytes(bytes).is_err());
        let mut ok = vec![0x91; VALUE_DEPTH_MAX];
        ok.push(0xc0);
        assert!(RawValue::from_bytes(ok).is_ok());
        let mut ok = vec![0x91; VALUE_DEPTH_MAX - 1];
        ok.push(0x90);
        assert!(RawValue::from_bytes(ok).is_ok());
    }

    #[test]
    fn an_empty_container_past_the_limit_is_too_deep() {
        // 100 arrays around an empty one: 101 levels of nesting.
        let mut bytes = vec![0x91; VALUE_DEPTH_MAX];
        bytes.push(0x90);
        assert!(RawValue::from_bytes(bytes).is_err());
        let mut bytes = vec![0x91; VALUE_DEPTH_MAX];
        bytes.push(0x80);
        assert!(RawValue::from_bytes(bytes).is_err());
    }

    #[test]
    fn trees_are_written_canonically() {
        use rmpv::Value;
        let v = Value::Array(vec![
            Value::F32(1.5),
            Value::from(300u64),
            Value::from(-33i64),
        ]);
        let bytes = RawValue::from_value(&v).into_bytes();
        assert_eq!(
            bytes,
            [0x93, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xcd, 0x01, 0x2c, 0xd0, 0xdf]
        );
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // array32 claiming 4 billion elements, with nothing after it.
        assert!(RawValue::from_bytes(vec![0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(RawValue::from_bytes(vec![0xdb, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(RawValue::from_bytes(vec![0xc1]).is_err());
    }
}
