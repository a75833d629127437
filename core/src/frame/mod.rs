//! Framing: a 4-byte big-endian length, then that many bytes holding one
//! msgpack array of messages (a batch). Sans-IO: bytes in, messages out;
//! messages in, bytes out.

use bytes::Bytes;

use crate::error::{ErrorCode, WireError};
use crate::messages::Message;
use crate::msgpack::Reader;

/// Largest frame payload a dask/1 peer must accept, and the most any peer
/// may send: 256 MiB.
pub const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Frames at least this long are read into a buffer of their own,
/// allocated at their announced length once their prefix is here (as
/// Dask does): the bytes are never moved again, and the large values in
/// them share that buffer ([`crate::msgpack::SHARED_VALUE_BYTES_MIN`]).
/// Shorter frames are gathered in the decoder's reusable buffer.
pub const OWN_BUFFER_FRAME_BYTES_MIN: usize = 64 * 1024;

/// Decodes the messages of one frame payload (values are copied out).
pub fn decode_payload(payload: &[u8]) -> Result<Vec<Message>, WireError> {
    decode_messages(Reader::new(payload))
}

/// Decodes the messages of one frame payload whose large values share
/// `payload` instead of being copied.
pub fn decode_shared_payload(payload: &Bytes) -> Result<Vec<Message>, WireError> {
    decode_messages(Reader::over_shared(payload))
}

fn decode_messages(mut r: Reader<'_>) -> Result<Vec<Message>, WireError> {
    let count = r.read_array_len().map_err(|e| match e.code {
        ErrorCode::WrongType => {
            WireError::malformed("a frame must hold a msgpack array of messages")
        }
        _ => e,
    })?;
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let m = Message::read(&mut r).map_err(|e| match e.code {
            // A batch entry that is not even a map is a framing error.
            ErrorCode::WrongType if e.message.starts_with("expected map") => {
                WireError::malformed(format!("a message must be a msgpack map: {}", e.message))
            }
            _ => e,
        })?;
        out.push(m);
    }
    if r.remaining() != 0 {
        return Err(WireError::malformed("bytes after the array of messages"));
    }
    Ok(out)
}

mod buffers;
mod decoder;
mod encoder;

pub use buffers::FrameBuffers;
pub use decoder::FrameDecoder;
pub use encoder::{encode_frame, FrameEncoder};

#[cfg(test)]
mod tests;
