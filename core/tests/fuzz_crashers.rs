//! Replays `tests/fuzz_crashers/*` (inputs in the `frame_decoder` fuzz
//! target's layout): each must make the frame decoder fail with a decoder
//! error, whether pushed whole or in pieces, and never panic.

use std::path::PathBuf;

use dask_core::error::ErrorCode;
use dask_core::{Message, FRAME_BYTES_MAX};
use dask_testkit::wire::decode_pieces;

fn decode(stream: &[u8], piece: usize, limit: usize) -> Result<usize, ErrorCode> {
    let decoded = decode_pieces(stream.chunks(piece.max(1)), limit);
    match decoded.error {
        Some(code) => Err(code),
        None => Ok(decoded.batches.len()),
    }
}

#[test]
fn every_kept_crasher_is_refused() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_crashers");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fuzz_crashers") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).expect("read");
        let (head, stream) = data.split_at(data.len().min(2));
        let piece = head.first().map_or(1, |b| *b as usize + 1);
        let limit = match head.get(1) {
            Some(b) if b & 1 == 1 => (*b as usize) << 4,
            _ => FRAME_BYTES_MAX,
        };
        let whole = decode(stream, stream.len(), limit);
        assert!(whole.is_err(), "{path:?}: decoded without error");
        assert_eq!(
            decode(stream, piece, limit),
            whole,
            "{path:?}: pieces vs whole"
        );
        assert!(Message::from_bytes(stream).is_err(), "{path:?}: from_bytes");
        n += 1;
    }
    assert!(n > 0, "no input in {dir:?}");
}
