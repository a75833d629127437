//! Fuzzes `FrameDecoder` (and `Message::from_bytes`) with arbitrary bytes.
//!
//! Input layout: byte 0 picks the size of the pieces the stream is fed in
//! (1 to 256 bytes; `decode_pieces` reads them into the decoder's own
//! buffer for a large frame, as a connection does, and pushes the rest),
//! byte 1 picks the decoder's limit (odd: a small limit of byte << 4, so
//! the frame-too-large path is reached; even: the default 256 MiB), the
//! rest is the stream. Checks: no panic; every error is a decoder code (or
//! bad-handshake for another protocol's first bytes); pushing in pieces
//! gives the same outcome as pushing everything at once; every decoded
//! message re-encodes to bytes that decode to the same bytes again.
#![no_main]

use dask_core::error::ErrorCode;
use dask_core::{Message, FRAME_BYTES_MAX};
use dask_testkit::wire::{decode_pieces, DECODER_CODES, FIRST_BYTES_CODE};
use libfuzzer_sys::fuzz_target;

/// The batches (as canonical bytes) and the error a stream decodes to.
fn decode(stream: &[u8], piece: usize, limit: usize) -> (Vec<Vec<Vec<u8>>>, Option<ErrorCode>) {
    let decoded = decode_pieces(stream.chunks(piece), limit);
    let batches = decoded
        .batches
        .iter()
        .map(|batch| batch.iter().map(Message::to_bytes).collect())
        .collect();
    (batches, decoded.error)
}

fuzz_target!(|data: &[u8]| {
    let (head, stream) = data.split_at(data.len().min(2));
    let piece = head.first().map_or(1, |b| *b as usize + 1);
    let limit = match head.get(1) {
        Some(b) if b & 1 == 1 => (*b as usize) << 4,
        _ => FRAME_BYTES_MAX,
    };
    let pieces = decode(stream, piece, limit);
    let whole = decode(stream, stream.len().max(1), limit);
    assert_eq!(pieces, whole, "the outcome depends on how the bytes arrive");
    for bytes in whole.0.iter().flatten() {
        let again = Message::from_bytes(bytes).expect("a re-encoded message decodes");
        assert_eq!(&again.to_bytes(), bytes, "re-encoding is not stable");
    }
    if let Err(e) = Message::from_bytes(stream) {
        assert!(
            DECODER_CODES.contains(&e.code) || e.code == FIRST_BYTES_CODE,
            "unexpected code {}",
            e.code
        );
    }
});
