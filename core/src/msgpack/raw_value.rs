//! [`RawValue`]: one msgpack object kept as its encoded bytes.

use super::*;

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
