//! Bytes in, batches out: frames reassembled from a stream, large ones read
//! straight into their own buffer, values in parts into the value's.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ErrorCode, WireError};
use crate::messages::Message;
use crate::parts::{PartHead, ValueAssembler, PART_HEAD_BYTES_MAX};

use super::*;

/// Reassembles frames from a byte stream.
///
/// Call [`FrameDecoder::push`] with bytes as they arrive, then
/// [`FrameDecoder::poll`] until it returns `Ok(None)`. While a large frame
/// is coming ([`OWN_BUFFER_FRAME_BYTES_MIN`]), [`FrameDecoder::frame_room`]
/// is where its next bytes go: the rest of its own buffer, or, for a
/// `value-part`, the rest of the part in the value's buffer
/// ([`crate::parts`]); read the stream straight into it and call
/// [`FrameDecoder::filled`] instead of pushing. After an error the decoder
/// stays failed: the connection must be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    /// The frame being read into a buffer of its own.
    own: Option<OwnFrame>,
    /// The `value-part` frame whose part is being read into its value's
    /// buffer.
    direct: Option<DirectPart>,
    frame_bytes_max: usize,
    failed: Option<WireError>,
    /// Whether a frame was decoded: the first frame's failure is checked
    /// for another protocol ([`crate::foreign`]).
    decoded_one: bool,
    /// Where large frames' buffers come from and go back to, if anywhere.
    buffers: Option<Arc<FrameBuffers>>,
    /// Values arriving in parts (dask/1.1 `value-part`), put into the
    /// message that follows them.
    parts: ValueAssembler,
}

/// A large frame being read into its own buffer.
#[derive(Debug)]
struct OwnFrame {
    /// Its payload, at its announced length.
    payload: Vec<u8>,
    /// Bytes of `payload` received.
    filled: usize,
    /// `payload` is a kept buffer: its pages are mapped already.
    kept: bool,
}

/// A `value-part` frame whose part's bytes go straight into the value's
/// buffer ([`ValueAssembler::direct_room`]), and the rest of the frame
/// here.
#[derive(Debug)]
struct DirectPart {
    /// The frame's payload with an empty bin in place of the part: the
    /// bytes before the part, then those after it as they come.
    rest: Vec<u8>,
    /// Bytes of `rest` once the frame is whole.
    rest_len: usize,
    /// Bytes of the part, and how many of them were received.
    part_len: usize,
    part_filled: usize,
}

/// An empty bin, in place of a part read into its value's buffer.
const EMPTY_BIN: [u8; 2] = [0xc4, 0];

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(FRAME_BYTES_MAX)
    }
}

impl FrameDecoder {
    /// A decoder that refuses frames over `frame_bytes_max`.
    pub fn new(frame_bytes_max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            own: None,
            direct: None,
            frame_bytes_max,
            failed: None,
            decoded_one: false,
            buffers: None,
            parts: ValueAssembler::default(),
        }
    }

    /// Holds at most `bytes_max` bytes of values in parts for one message
    /// (default [`crate::parts::PARTS_BYTES_MAX`]).
    pub fn limit_parts(&mut self, bytes_max: u64) {
        self.parts = ValueAssembler::new(bytes_max);
        if let Some(buffers) = &self.buffers {
            self.parts.use_buffers(Arc::clone(buffers));
        }
    }

    /// Takes the buffers of large frames and of values arriving in parts
    /// from `buffers` when it has one that fits, and gives them back there
    /// when their values are gone.
    pub fn use_buffers(&mut self, buffers: Arc<FrameBuffers>) {
        self.parts.use_buffers(Arc::clone(&buffers));
        self.buffers = Some(buffers);
    }

    /// Appends received bytes.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if let Some(own) = &mut self.own {
            let n = bytes.len().min(own.payload.len() - own.filled);
            own.payload[own.filled..own.filled + n].copy_from_slice(&bytes[..n]);
            own.filled += n;
            bytes = &bytes[n..];
        }
        if let Some(direct) = &mut self.direct {
            let room = &mut self.parts.direct_room(direct.part_len)[direct.part_filled..];
            let n = bytes.len().min(room.len());
            room[..n].copy_from_slice(&bytes[..n]);
            direct.part_filled += n;
            bytes = &bytes[n..];
            let n = bytes.len().min(direct.rest_len - direct.rest.len());
            direct.rest.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        // Bytes past a frame of its own come after it: `poll` takes that
        // frame first.
        self.buf.extend_from_slice(bytes);
    }

    /// While a large frame is being read into its own buffer, the part of
    /// it still to come: read into it, then call [`FrameDecoder::filled`].
    pub fn frame_room(&mut self) -> Option<&mut [u8]> {
        if self.failed.is_some() {
            return None;
        }
        if let Some(own) = self.own.as_mut() {
            return Some(&mut own.payload[own.filled..]);
        }
        let direct = self.direct.as_ref()?;
        if direct.part_filled == direct.part_len {
            return None;
        }
        Some(&mut self.parts.direct_room(direct.part_len)[direct.part_filled..])
    }

    /// Whether [`FrameDecoder::frame_room`] is in a buffer kept from
    /// earlier frames or values ([`FrameDecoder::use_buffers`]), whose
    /// pages are mapped already: there is no need to map them ahead.
    pub fn frame_room_is_mapped(&self) -> bool {
        match &self.own {
            Some(own) => own.kept,
            None => self.direct.is_some() && self.parts.in_kept_buffer(),
        }
    }

    /// `n` bytes were read into [`FrameDecoder::frame_room`].
    pub fn filled(&mut self, n: usize) {
        if let Some(own) = &mut self.own {
            own.filled = (own.filled + n).min(own.payload.len());
        } else if let Some(direct) = &mut self.direct {
            direct.part_filled = (direct.part_filled + n).min(direct.part_len);
        }
    }

    /// Bytes received and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        let own = self
            .own
            .as_ref()
            .map_or(0, |f| LENGTH_PREFIX_BYTES + f.filled);
        let direct = self.direct.as_ref().map_or(0, |d| {
            LENGTH_PREFIX_BYTES + d.rest.len() - EMPTY_BIN.len() + d.part_filled
        });
        own + direct + self.buf.len() - self.start
    }

    /// The payload length announced by the next frame, if its prefix is here.
    fn next_len(&self) -> Option<usize> {
        let b = self.buf.get(self.start..self.start + LENGTH_PREFIX_BYTES)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// The messages of the next complete frame, `Ok(None)` when more bytes
    /// are needed. An oversized length is refused as soon as the prefix is
    /// here, before its payload is buffered.
    pub fn poll(&mut self) -> Result<Option<Vec<Message>>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some(own) = &self.own {
            if own.filled < own.payload.len() {
                return Ok(None);
            }
            let Some(own) = self.own.take() else {
                return Ok(None);
            };
            let payload = match &self.buffers {
                Some(home) => FrameBuffers::share(home, own.payload),
                None => Bytes::from(own.payload),
            };
            return match decode_shared_payload(&payload).and_then(|m| self.parts.take(m)) {
                Ok(messages) => {
                    self.decoded_one = true;
                    Ok(Some(messages))
                }
                Err(e) => Err(self.fail(e)),
            };
        }
        if let Some(direct) = &self.direct {
            if direct.part_filled < direct.part_len || direct.rest.len() < direct.rest_len {
                return Ok(None);
            }
            let Some(direct) = self.direct.take() else {
                return Ok(None);
            };
            return match decode_payload(&direct.rest)
                .and_then(|m| self.parts.take_after_direct(m, direct.part_len))
            {
                Ok(messages) => {
                    self.decoded_one = true;
                    Ok(Some(messages))
                }
                Err(e) => Err(self.fail(e)),
            };
        }
        let Some(len) = self.next_len() else {
            return Ok(None);
        };
        if len > self.frame_bytes_max {
            if self.may_be_python_dask() {
                if self.buf.len() < crate::foreign::RECOGNISE_BYTES {
                    return Ok(None);
                }
                if crate::foreign::is_python_dask(&self.buf[..crate::foreign::RECOGNISE_BYTES]) {
                    return Err(self.fail(crate::foreign::python_dask_peer_error()));
                }
            }
            if !self.decoded_one && crate::foreign::is_tls_handshake(&self.buf) {
                return Err(self.fail(crate::foreign::tls_peer_error()));
            }
            return Err(self.fail(WireError::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "frame of {len} bytes is over the limit of {} bytes",
                    self.frame_bytes_max
                ),
            )));
        }
        let begin = self.start + LENGTH_PREFIX_BYTES;
        let have = self.buf.len() - begin;
        if have < len {
            if len >= OWN_BUFFER_FRAME_BYTES_MIN && !self.read_part_in_place(len) {
                self.read_into_own_buffer(len);
            }
            return Ok(None);
        }
        let decoded = decode_payload(&self.buf[begin..begin + len]);
        let messages = match decoded.and_then(|m| self.parts.take(m)) {
            Ok(messages) => messages,
            Err(e) => return Err(self.fail(e)),
        };
        self.decoded_one = true;
        self.start = begin + len;
        self.compact();
        Ok(Some(messages))
    }

    /// For a large frame whose prefix starts the buffer: if it begins with
    /// a `value-part` whose part can go straight into its value's buffer,
    /// sets that up with what is here of the frame. Returns whether the
    /// frame is taken care of: read in place, or waiting for the first
    /// bytes that tell (so the caller reads it into its own buffer only
    /// when it is not a part to read in place). Only where the bytes go
    /// depends on this, not what the frame decodes to.
    fn read_part_in_place(&mut self, len: usize) -> bool {
        let begin = self.start + LENGTH_PREFIX_BYTES;
        let have = self.buf.len() - begin;
        let head = match PartHead::read(&self.buf[begin..]) {
            Ok(Some(head)) => head,
            Ok(None) => return false,
            // Bounded: a head is at most a few KiB.
            Err(()) => return have < PART_HEAD_BYTES_MAX.min(len),
        };
        let in_place = head.len >= OWN_BUFFER_FRAME_BYTES_MIN
            && head.bytes_at + head.len <= len
            && self.parts.begin_direct(&head.key, head.nbytes, head.len);
        if !in_place {
            return false;
        }
        let rest_len = head.header_at + EMPTY_BIN.len() + (len - head.bytes_at - head.len);
        let mut rest = Vec::with_capacity(rest_len);
        rest.extend_from_slice(&self.buf[begin..begin + head.header_at]);
        rest.extend_from_slice(&EMPTY_BIN);
        // Bytes of the part already here, then any after it.
        let here = &self.buf[(begin + head.bytes_at).min(self.buf.len())..];
        let room = self.parts.direct_room(head.len);
        let n = here.len().min(room.len());
        room[..n].copy_from_slice(&here[..n]);
        rest.extend_from_slice(&here[n..]);
        self.direct = Some(DirectPart {
            rest,
            rest_len,
            part_len: head.len,
            part_filled: n,
        });
        self.start = self.buf.len();
        self.compact();
        true
    }

    /// Moves the frame whose prefix starts the buffer into a buffer of its
    /// own of its announced `len`, with the part of it already here.
    fn read_into_own_buffer(&mut self, len: usize) {
        let begin = self.start + LENGTH_PREFIX_BYTES;
        // A kept buffer (its pages already mapped), else zeroed memory
        // from the allocator: for large sizes fresh pages, not written
        // until the bytes arrive.
        let kept = self.buffers.as_ref().and_then(|b| b.take(len));
        let is_kept = kept.is_some();
        let mut payload = kept.unwrap_or_else(|| vec![0; len]);
        let have = self.buf.len() - begin;
        payload[..have].copy_from_slice(&self.buf[begin..]);
        self.own = Some(OwnFrame {
            payload,
            filled: have,
            kept: is_kept,
        });
        self.start = self.buf.len();
        self.compact();
    }

    /// Whether bytes of an unfinished frame are buffered, or parts of
    /// values for a message still to come (at a clean close there are none).
    pub fn is_mid_frame(&self) -> bool {
        self.buffered() > 0 || self.parts.is_holding()
    }

    /// Whether an oversized first prefix may be Python Dask's framing: its
    /// first length is little-endian and small, so its high bytes come
    /// second here. The first [`crate::foreign::RECOGNISE_BYTES`] then
    /// decide which refusal it is (only they, so the answer does not depend
    /// on how the bytes arrive; net's hello gate follows the same rule).
    fn may_be_python_dask(&self) -> bool {
        !self.decoded_one && self.buf.get(2..LENGTH_PREFIX_BYTES) == Some(&[0, 0][..])
    }

    fn fail(&mut self, e: WireError) -> WireError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.start = 0;
        self.own = None;
        self.direct = None;
        e
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > 1 << 20 {
                self.buf.shrink_to(64 * 1024);
            }
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}
