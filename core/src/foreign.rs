//! Python Dask (and TLS) met on a plain dask/1 port, recognised on a
//! connection's first bytes, so the error says what was reached.
//!
//! Both commands are called `dask` and both schedulers default to port
//! 8786, so a Python Dask (distributed) peer on a dask/1 port is a mistake
//! people make. Each side of a Python Dask connection writes a handshake as
//! soon as it connects; its framing, read as dask/1's, is a frame of
//! hundreds of megabytes (a Python client reading a dask/1 frame sees the
//! same kind of nonsense and raises `MemoryError`). Python Dask's TCP
//! framing (`distributed/comm/tcp.py`): a little-endian u64 with the bytes
//! that follow, a little-endian u64 count of frames, one little-endian u64
//! length per frame, the frames; the first frame is the msgpack message.

use crate::error::{ErrorCode, WireError};
use crate::msgpack::write;

/// Bytes [`is_python_dask`] needs to decide.
pub const RECOGNISE_BYTES: usize = 16;

/// Most frames a Python Dask message is believed to have for recognition
/// (a handshake has one).
const PYTHON_FRAMES_MAX: u64 = 1024;

/// The message of the error a decoder gives when the peer's first bytes
/// are Python Dask's (code 3002: the first message is not a dask/1 hello).
pub const PYTHON_DASK_PEER: &str =
    "the peer speaks Python Dask's protocol (distributed), not dask/1: its first bytes are \
     Python Dask's framing";

/// The message of the error for a peer whose first bytes are a TLS
/// handshake at a plain dask/1 address (code 3002).
pub const TLS_PEER: &str =
    "the peer started a TLS handshake at a plain dask/1 address: connect with tcp://HOST:PORT, \
     or serve TLS here (--tls-cert, --tls-key)";

/// Whether a connection's first bytes are a TLS record carrying a
/// handshake (a ClientHello: `16 03 0x`). Never true for a dask/1 frame:
/// read as a length prefix those bytes are over frame_bytes_max.
pub fn is_tls_handshake(first: &[u8]) -> bool {
    first.len() >= 3 && first[0] == 0x16 && first[1] == 0x03 && first[2] <= 0x04
}

/// The error a plain acceptor answers a TLS handshake with.
pub fn tls_peer_error() -> WireError {
    WireError::new(ErrorCode::BadHandshake, TLS_PEER)
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Whether a connection's first bytes are Python Dask's framing. Never true
/// for a dask/1 frame: its fifth byte is the header of the frame's msgpack
/// array, while Python Dask's length has zero high bytes there. Needs
/// [`RECOGNISE_BYTES`]; with fewer it says no.
pub fn is_python_dask(first: &[u8]) -> bool {
    if first.len() < RECOGNISE_BYTES || first[4..8] != [0; 4] {
        return false;
    }
    let total = u64_le(&first[0..8]);
    let frames = u64_le(&first[8..16]);
    if frames == 0 || frames > PYTHON_FRAMES_MAX || total < 8 * (1 + frames) {
        return false;
    }
    // With the first frame's length here: it fits, and (when its first
    // byte is here too) it is a msgpack map, as every message is.
    let Some(first_len) = first.get(16..24).map(u64_le) else {
        return true;
    };
    let header = 8 * (1 + frames);
    let Some(room) = total.checked_sub(header) else {
        return false;
    };
    let prelude_end = (8 + header) as usize;
    first_len <= room
        && first
            .get(prelude_end)
            .is_none_or(|&b| matches!(b, 0x80..=0x8f | 0xde | 0xdf))
}

/// The decoder's error for a Python Dask peer.
pub fn python_dask_peer_error() -> WireError {
    WireError::new(ErrorCode::BadHandshake, PYTHON_DASK_PEER)
}

/// Whether `e` is [`python_dask_peer_error`].
pub fn is_python_dask_peer_error(e: &WireError) -> bool {
    e.code == ErrorCode::BadHandshake && e.message == PYTHON_DASK_PEER
}

/// One msgpack message in Python Dask's framing.
fn python_message(msgpack: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + msgpack.len());
    out.extend_from_slice(&(16 + msgpack.len() as u64).to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&(msgpack.len() as u64).to_le_bytes());
    out.extend_from_slice(msgpack);
    out
}

/// What a dask/1 acceptor writes to a Python Dask connector before it
/// closes, so that the Python side fails with `text` rather than with
/// `MemoryError`: a Python Dask handshake, then one message that each of
/// its request paths reads as an error carrying `text` (an RPC reply
/// with `status: "uncaught-error"` raises `Exception(text)`; a worker's
/// registration (`--no-nanny`) logs `message`; with a nanny, Python Dask
/// 2026.8 fails earlier, on a `KeyError`, without the text).
pub fn python_dask_refusal(text: &str) -> Vec<u8> {
    let mut handshake = Vec::new();
    write::map_len(&mut handshake, 3);
    write::str(&mut handshake, "compression");
    write::nil(&mut handshake);
    write::str(&mut handshake, "python");
    write::array_len(&mut handshake, 3);
    for part in [3, 11, 0] {
        write::uint(&mut handshake, part);
    }
    write::str(&mut handshake, "pickle-protocol");
    write::uint(&mut handshake, 5);

    let mut error = Vec::new();
    let fields: [(&str, Option<&str>); 6] = [
        ("op", Some("stream-start")),
        ("status", Some("uncaught-error")),
        ("message", Some(text)),
        ("exception", Some(text)),
        ("exception_text", Some(text)),
        ("traceback", None),
    ];
    // A worker's registration reads `time` before it looks at `status`.
    write::map_len(&mut error, fields.len() + 1);
    for (k, v) in fields {
        write::str(&mut error, k);
        match v {
            Some(v) => write::str(&mut error, v),
            None => write::nil(&mut error),
        }
    }
    write::str(&mut error, "time");
    write::f64(&mut error, 0.0);
    let mut out = python_message(&handshake);
    out.extend_from_slice(&python_message(&error));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use crate::handshake::offer;
    use crate::messages::{Message, Role};

    /// The bytes a Python Dask 2026.8 scheduler sends first (captured).
    const PYTHON_HANDSHAKE: &str = "3a0000000000000001000000000000002a0000000000000083ab636f6d707\
        2657373696f6ec0a6707974686f6e93030b07af7069636b6c652d70726f746f636f6c05";

    #[test]
    fn python_dask_framing_is_recognised_and_dask_1_never_is() {
        let python = crate::json::unhex(PYTHON_HANDSHAKE).unwrap();
        for n in RECOGNISE_BYTES..=python.len() {
            assert!(is_python_dask(&python[..n]), "{n}");
        }
        assert!(!is_python_dask(&python[..RECOGNISE_BYTES - 1]));
        let refusal = python_dask_refusal("no");
        assert!(is_python_dask(&refusal));
        let hello = encode_frame(&[Message::from(offer(Role::Client, None))]).unwrap();
        for n in 0..=hello.len() {
            assert!(!is_python_dask(&hello[..n]));
        }
        // A wrong count, a total too small for its prelude, a frame that
        // is not a map.
        let mut bad = python.clone();
        bad[8] = 0;
        assert!(!is_python_dask(&bad));
        let mut bad = python.clone();
        bad[0] = 8;
        assert!(!is_python_dask(&bad));
        let mut bad = python;
        bad[24] = 0x91;
        assert!(!is_python_dask(&bad));
    }

    #[test]
    fn the_refusal_is_two_python_messages() {
        let bytes = python_dask_refusal("this is a dask/1 scheduler");
        let mut rest = &bytes[..];
        let mut maps = Vec::new();
        while !rest.is_empty() {
            let total = u64_le(rest) as usize;
            assert_eq!(u64_le(&rest[8..]), 1);
            let len = u64_le(&rest[16..]) as usize;
            assert_eq!(total, 16 + len);
            let value = rmpv::decode::read_value(&mut &rest[24..24 + len]).unwrap();
            maps.push(value);
            rest = &rest[8 + total..];
        }
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0]["pickle-protocol"], rmpv::Value::from(5));
        assert_eq!(maps[1]["status"].as_str(), Some("uncaught-error"));
        assert_eq!(
            maps[1]["exception"].as_str(),
            Some("this is a dask/1 scheduler")
        );
    }
}
