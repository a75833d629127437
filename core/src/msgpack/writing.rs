//! The canonical writers and [`WriteBuf`], which splices large values in
//! without copying them.

use super::*;

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

    /// The encoding of a string known when compiling (a field's name):
    /// its fixstr header and bytes, written with one copy. `N` is its
    /// length plus one; a longer string does not compile.
    pub const fn fixstr<const N: usize>(s: &str) -> [u8; N] {
        assert!(s.len() + 1 == N, "N is the string's length plus one");
        put_fixstr([0u8; N], 0, s)
    }

    /// `out` with the fixstr encoding of `s` written at `at` (for
    /// encodings built when compiling, several strings in one array).
    pub const fn put_fixstr<const N: usize>(mut out: [u8; N], at: usize, s: &str) -> [u8; N] {
        let b = s.as_bytes();
        assert!(b.len() <= 31, "a fixstr holds 0 to 31 bytes");
        out[at] = 0xa0 | b.len() as u8;
        let mut i = 0;
        while i < b.len() {
            out[at + 1 + i] = b[i];
            i += 1;
        }
        out
    }

    fn str_bytes(w: &mut Vec<u8>, s: &[u8]) {
        // Most strings (keys, names) are fixstrs: their header here.
        if s.len() <= 31 {
            w.reserve(s.len() + 1);
            w.push(0xa0 | s.len() as u8);
        } else {
            header(w, s.len(), 0xa0, 31, Some(0xd9), 0xda, 0xdb);
        }
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
        if len <= 15 {
            return w.push(0x90 | len as u8);
        }
        header(w, len, 0x90, 15, None, 0xdc, 0xdd);
    }

    /// Writes a map header.
    pub fn map_len(w: &mut Vec<u8>, len: usize) {
        if len <= 15 {
            return w.push(0x80 | len as u8);
        }
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
    pub(crate) fn shared(&mut self, bytes: &Bytes) {
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
