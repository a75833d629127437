//! Batches out: messages into frames, split at the limit, large values left
//! where they are kept for vectored writes.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::{ErrorCode, WireError};
use crate::messages::Message;
use crate::msgpack::{Splice, WriteBuf};
use crate::parts::{self, PART_OVERHEAD_BYTES};

use super::*;

/// Batches messages into frames, and holds them until they are written.
///
/// [`FrameEncoder::push`] appends a message to the open frame;
/// [`FrameEncoder::finish`] closes it. Finished frames are taken either as
/// one byte buffer ([`FrameEncoder::take`], [`FrameEncoder::drain_into`]),
/// or, for vectored writes, as [`FrameEncoder::chunks`] that
/// [`FrameEncoder::consume`] advances through: then a large value
/// ([`crate::msgpack::SHARED_VALUE_BYTES_MIN`]) is one chunk of its own,
/// the bytes where it is kept, never copied. A frame is closed early when
/// the next message would take it over the limit.
#[derive(Debug)]
pub struct FrameEncoder {
    /// Finished frames, in order; the first from `out_pos` on.
    out: VecDeque<Chunk>,
    out_pos: usize,
    /// Bytes in `out` from `out_pos` on.
    out_bytes: usize,
    /// The open frame's messages, without its large values...
    open: Vec<u8>,
    /// ...which go at these offsets of `open`.
    open_splices: Vec<Splice>,
    open_spliced_bytes: usize,
    open_count: usize,
    frame_bytes_max: usize,
    /// A written chunk's buffer, kept for the next frames.
    spare: Vec<u8>,
    /// The peer takes values in parts (dask/1.1 feature `value-parts`).
    value_parts: bool,
}

/// A piece of the encoder's output.
#[derive(Debug)]
enum Chunk {
    /// Bytes the encoder wrote (headers, small messages).
    Owned(Vec<u8>),
    /// A large value's bytes, shared with where the value is kept.
    Shared(Bytes),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(b) => b,
        }
    }
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new(FRAME_BYTES_MAX)
    }
}

/// Room left for the array header inside a frame's payload.
pub(super) const ARRAY_HEADER_BYTES_MAX: usize = 5;

/// An owned chunk's buffer larger than this is not kept for reuse.
const SPARE_BYTES_MAX: usize = 4 << 20;

impl FrameEncoder {
    /// An encoder whose frames stay within `frame_bytes_max`.
    pub fn new(frame_bytes_max: usize) -> Self {
        FrameEncoder {
            out: VecDeque::new(),
            out_pos: 0,
            out_bytes: 0,
            open: Vec::new(),
            open_splices: Vec::new(),
            open_spliced_bytes: 0,
            open_count: 0,
            frame_bytes_max,
            spare: Vec::new(),
            value_parts: false,
        }
    }

    /// Whether a message too large for a frame may send its large values
    /// in parts (the peer listed the feature `value-parts`, and so did
    /// this side).
    pub fn send_value_parts(&mut self, on: bool) {
        self.value_parts = on;
    }

    /// Whether values too large for a frame go in parts.
    pub fn sends_value_parts(&self) -> bool {
        self.value_parts
    }

    /// The frame limit this encoder keeps to.
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Adds a message to the open frame. A message too large for any frame
    /// is refused with `value-too-large` and nothing is added, unless the
    /// peer takes values in parts ([`FrameEncoder::send_value_parts`]):
    /// then its values of 64 KiB or more go first as `value-part`s (each
    /// a slice of the value, written from where it is kept), and the
    /// message follows without them.
    pub fn push(&mut self, message: &Message) -> Result<(), WireError> {
        match self.push_one(message) {
            Err(e) if self.value_parts && e.code == ErrorCode::ValueTooLarge => {
                self.push_in_parts(message, e)
            }
            pushed => pushed,
        }
    }

    fn push_in_parts(&mut self, message: &Message, too_large: WireError) -> Result<(), WireError> {
        let part_bytes = self.frame_bytes_max.saturating_sub(PART_OVERHEAD_BYTES);
        if part_bytes == 0 {
            return Err(too_large);
        }
        let Some(messages) = parts::split(message, part_bytes) else {
            return Err(too_large);
        };
        // What is left of the message must fit, or nothing is queued.
        if let Some(rest) = messages.last() {
            let mut bytes = Vec::new();
            let mut splices = Vec::new();
            rest.write(&mut WriteBuf::with_splices(&mut bytes, &mut splices));
            let spliced: usize = splices.iter().map(|s| s.bytes.len()).sum();
            if bytes.len() + spliced + ARRAY_HEADER_BYTES_MAX > self.frame_bytes_max {
                return Err(too_large);
            }
        }
        // Each part starts a frame, so that the receiver can read its
        // bytes straight into the value's buffer (it looks for a part at a
        // frame's start only).
        self.finish();
        for m in &messages {
            self.push_one(m)?;
        }
        Ok(())
    }

    fn push_one(&mut self, message: &Message) -> Result<(), WireError> {
        let mark = self.open.len();
        let splice_mark = self.open_splices.len();
        message.write(&mut WriteBuf::with_splices(
            &mut self.open,
            &mut self.open_splices,
        ));
        let spliced: usize = self.open_splices[splice_mark..]
            .iter()
            .map(|s| s.bytes.len())
            .sum();
        let size = self.open.len() - mark + spliced;
        if size + ARRAY_HEADER_BYTES_MAX > self.frame_bytes_max {
            self.open.truncate(mark);
            self.open_splices.truncate(splice_mark);
            return Err(WireError::new(
                ErrorCode::ValueTooLarge,
                format!(
                    "`{}` message of {size} bytes does not fit in a frame",
                    message.op()
                ),
            ));
        }
        if mark + self.open_spliced_bytes + size + ARRAY_HEADER_BYTES_MAX > self.frame_bytes_max {
            let tail = self.open.split_off(mark);
            let mut tail_splices = self.open_splices.split_off(splice_mark);
            for s in &mut tail_splices {
                s.at -= mark;
            }
            self.finish();
            self.open = tail;
            self.open_splices = tail_splices;
        }
        self.open_spliced_bytes += spliced;
        self.open_count += 1;
        Ok(())
    }

    /// Closes the open frame, if it holds any message.
    pub fn finish(&mut self) {
        if self.open_count == 0 {
            return;
        }
        // The length prefix and the array header, on the stack.
        let mut header = [0u8; LENGTH_PREFIX_BYTES + ARRAY_HEADER_BYTES_MAX];
        let array_header = array_header_len(self.open_count);
        let len = (array_header + self.open.len() + self.open_spliced_bytes) as u32;
        header[..LENGTH_PREFIX_BYTES].copy_from_slice(&len.to_be_bytes());
        let header_len = LENGTH_PREFIX_BYTES + array_header;
        write_array_header(
            &mut header[LENGTH_PREFIX_BYTES..header_len],
            self.open_count,
        );
        let open = std::mem::take(&mut self.open);
        let splices = std::mem::take(&mut self.open_splices);
        self.append_owned(&header[..header_len]);
        let mut from = 0;
        for splice in splices {
            self.append_owned(&open[from..splice.at]);
            from = splice.at;
            self.out_bytes += splice.bytes.len();
            self.out.push_back(Chunk::Shared(splice.bytes));
        }
        self.append_owned(&open[from..]);
        self.open = open;
        self.open.clear();
        self.open_spliced_bytes = 0;
        self.open_count = 0;
    }

    /// Queues bytes that are not a dask/1 frame (a refusal in another
    /// protocol's framing), after the frames queued so far.
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.finish();
        self.append_owned(bytes);
    }

    /// Appends encoder-written bytes to the output.
    fn append_owned(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.out_bytes += bytes.len();
        if let Some(Chunk::Owned(last)) = self.out.back_mut() {
            last.extend_from_slice(bytes);
            return;
        }
        let mut chunk = std::mem::take(&mut self.spare);
        chunk.extend_from_slice(bytes);
        self.out.push_back(Chunk::Owned(chunk));
    }

    /// Whether any finished or open frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.out_bytes == 0 && self.open_count == 0
    }

    /// Bytes of finished frames not yet taken.
    pub fn finished_bytes(&self) -> usize {
        self.out_bytes
    }

    /// The finished frames' bytes not yet taken, in order, as slices (a
    /// large value is a slice of its own): for a vectored write, after
    /// which [`FrameEncoder::consume`] says how much was written.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.out.iter().enumerate().map(|(i, c)| {
            let bytes = c.bytes();
            if i == 0 {
                &bytes[self.out_pos..]
            } else {
                bytes
            }
        })
    }

    /// Drops the first `n` bytes of the finished frames (written).
    pub fn consume(&mut self, mut n: usize) {
        n = n.min(self.out_bytes);
        self.out_bytes -= n;
        while n > 0 {
            let Some(front) = self.out.front() else {
                break;
            };
            let left = front.bytes().len() - self.out_pos;
            if n < left {
                self.out_pos += n;
                return;
            }
            n -= left;
            self.out_pos = 0;
            if let Some(Chunk::Owned(mut v)) = self.out.pop_front() {
                if v.capacity() <= SPARE_BYTES_MAX && v.capacity() > self.spare.capacity() {
                    v.clear();
                    self.spare = v;
                }
            }
        }
        if self.out.is_empty() {
            self.out_pos = 0;
        }
    }

    /// Finishes the open frame and returns every byte to send.
    pub fn take(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.drain_into(&mut out);
        out
    }

    /// Finishes the open frame and appends every byte to send to `dst`
    /// (large values copied in: [`FrameEncoder::chunks`] does not copy).
    pub fn drain_into(&mut self, dst: &mut Vec<u8>) {
        self.finish();
        if dst.is_empty() && self.out_pos == 0 && self.out.len() == 1 {
            if let Some(Chunk::Owned(v)) = self.out.front_mut() {
                std::mem::swap(dst, v);
                // `dst`'s empty buffer is the next frame's, as `consume`
                // keeps a written one (else every frame grows a new one).
                let kept = std::mem::take(v);
                self.out.clear();
                self.out_bytes = 0;
                if kept.capacity() <= SPARE_BYTES_MAX && kept.capacity() > self.spare.capacity() {
                    self.spare = kept;
                }
                return;
            }
        }
        dst.reserve(self.out_bytes);
        for chunk in self.chunks() {
            dst.extend_from_slice(chunk);
        }
        let n = self.out_bytes;
        self.consume(n);
    }
}

/// Bytes of the msgpack header of an array of `n` items.
pub(super) fn array_header_len(n: usize) -> usize {
    match n {
        0..=15 => 1,
        16..=0xffff => 3,
        _ => 5,
    }
}

/// Writes that header into `out` (of [`array_header_len`] bytes), as
/// [`write::array_len`] does.
pub(super) fn write_array_header(out: &mut [u8], n: usize) {
    match n {
        0..=15 => out[0] = 0x90 | n as u8,
        16..=0xffff => {
            out[0] = 0xdc;
            out[1..3].copy_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out[0] = 0xdd;
            out[1..5].copy_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

/// The bytes of one frame holding `messages`.
pub fn encode_frame(messages: &[Message]) -> Result<Vec<u8>, WireError> {
    let mut enc = FrameEncoder::default();
    for m in messages {
        enc.push(m)?;
    }
    if messages.is_empty() {
        return Ok(vec![0, 0, 0, 1, 0x90]);
    }
    Ok(enc.take())
}
