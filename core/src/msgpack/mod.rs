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

mod raw_value;
mod reader;
#[cfg(test)]
mod tests;
mod writing;

pub use raw_value::*;
pub use reader::*;
pub(crate) use writing::Splice;
pub use writing::{write, WriteBuf};

/// Checks the payload of a task reference: a key in UTF-8.
pub fn parse_ref(data: &[u8]) -> Result<&str, WireError> {
    let key = std::str::from_utf8(data)
        .map_err(|_| WireError::malformed("task reference is not UTF-8"))?;
    check_key(key)?;
    Ok(key)
}

/// Checks that a string's bytes ([`Reader::read_str_bytes`]) are UTF-8,
/// with [`Reader::read_str`]'s error.
pub fn check_utf8(bytes: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| WireError::malformed("string is not valid UTF-8"))
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

/// A task reference as a tree value.
pub fn task_ref_value(key: &str) -> rmpv::Value {
    rmpv::Value::Ext(TASK_REF_EXT, key.as_bytes().to_vec())
}
