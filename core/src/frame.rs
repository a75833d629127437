//! Framing: a 4-byte big-endian length, then that many bytes holding one
//! msgpack array of messages (a batch). Sans-IO: bytes in, messages out;
//! messages in, bytes out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use crate::error::{ErrorCode, WireError};
use crate::messages::Message;
use crate::msgpack::{Reader, Splice, WriteBuf};
use crate::parts::{self, PartHead, ValueAssembler, PART_HEAD_BYTES_MAX, PART_OVERHEAD_BYTES};

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

/// Buffers of large frames whose values are all gone, kept for the next
/// large frames of a process: a fresh buffer costs a page fault (and the
/// zeroing of a page) per 4 KiB when the stream is first read into it,
/// which at memory speed is most of a large transfer's time. Bounded in
/// bytes; [`FrameBuffers::trim_unused`] gives them back once idle.
#[derive(Debug)]
pub struct FrameBuffers {
    free: Mutex<FreeBuffers>,
    bytes_max: usize,
}

#[derive(Debug, Default)]
struct FreeBuffers {
    /// Each fully initialised to its length (its last frame's).
    buffers: Vec<Vec<u8>>,
    bytes: usize,
    /// A buffer was taken since the last trim.
    taken: bool,
}

impl FrameBuffers {
    /// A pool keeping at most `bytes_max` bytes of free buffers.
    pub fn new(bytes_max: usize) -> Arc<FrameBuffers> {
        Arc::new(FrameBuffers {
            free: Mutex::new(FreeBuffers::default()),
            bytes_max,
        })
    }

    fn lock(&self) -> MutexGuard<'_, FreeBuffers> {
        // A panic while locked leaves a list of buffers: still a list.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept buffer of at least `len` bytes (and not much more), cut to
    /// `len`: its pages are mapped, its bytes are an old value's, to be
    /// overwritten whole (a spill read uses one as a received value does).
    pub fn take(&self, len: usize) -> Option<Vec<u8>> {
        let mut free = self.lock();
        let at = free
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len && b.len() / 2 <= len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i)?;
        let mut buffer = free.buffers.swap_remove(at);
        free.bytes -= buffer.len();
        free.taken = true;
        buffer.truncate(len);
        Some(buffer)
    }

    /// Keeps `buffer` if it fits under the bound.
    fn give(&self, buffer: Vec<u8>) {
        let mut free = self.lock();
        if free.bytes + buffer.len() <= self.bytes_max {
            free.bytes += buffer.len();
            free.buffers.push(buffer);
        }
    }

    /// Drops the kept buffers if none was taken since the last call (an
    /// event loop calls it every few seconds while some are kept).
    pub fn trim_unused(&self) {
        let mut free = self.lock();
        if !std::mem::take(&mut free.taken) {
            free.buffers = Vec::new();
            free.bytes = 0;
        }
    }

    /// Bytes of the buffers kept.
    pub fn kept_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// `buffer` as shared bytes that go back to `home` when the last
    /// reference to them is dropped.
    pub fn share(home: &Arc<FrameBuffers>, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(PooledPayload {
            buffer,
            home: Arc::downgrade(home),
        })
    }
}

/// A frame's payload (or a value that arrived in parts) in a buffer that
/// goes back to its [`FrameBuffers`] when the last value sharing it is
/// dropped.
struct PooledPayload {
    buffer: Vec<u8>,
    home: Weak<FrameBuffers>,
}

impl AsRef<[u8]> for PooledPayload {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledPayload {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give(std::mem::take(&mut self.buffer));
        }
    }
}

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
const ARRAY_HEADER_BYTES_MAX: usize = 5;

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
                self.out.clear();
                self.out_bytes = 0;
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
fn array_header_len(n: usize) -> usize {
    match n {
        0..=15 => 1,
        16..=0xffff => 3,
        _ => 5,
    }
}

/// Writes that header into `out` (of [`array_header_len`] bytes), as
/// [`write::array_len`] does.
fn write_array_header(out: &mut [u8], n: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Close, Data, Heartbeat};
    use crate::msgpack::{write, RawValue, SHARED_VALUE_BYTES_MIN};
    use crate::wire::Key;

    /// A `data` message holding binary values of these sizes.
    fn data(sizes: &[usize]) -> Message {
        Message::Data(Data {
            request: 7,
            data: sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let bytes = (0..n).map(|b| (b % 251) as u8).collect();
                    (
                        Key::from(format!("k{i}").as_str()),
                        RawValue::from_value(&rmpv::Value::Binary(bytes)),
                    )
                })
                .collect(),
            missing: vec![],
        })
    }

    fn values(m: &Message) -> Vec<&RawValue> {
        match m {
            Message::Data(d) => d.data.values().collect(),
            _ => panic!("not data"),
        }
    }

    fn within(inner: &[u8], outer: std::ops::Range<*const u8>) -> bool {
        outer.contains(&inner.as_ptr())
    }

    #[test]
    fn a_large_frame_is_read_into_its_own_buffer_and_its_large_values_share_it() {
        let m = data(&[300_000, 100]);
        let bytes = encode_frame(std::slice::from_ref(&m)).unwrap();
        let mut d = FrameDecoder::default();
        d.push(&bytes[..1000]);
        assert_eq!(d.poll().unwrap(), None);
        assert!(d.is_mid_frame());
        assert_eq!(d.buffered(), 1000);
        let room = d.frame_room().expect("a frame of its own");
        assert_eq!(room.len(), bytes.len() - 1000);
        // The whole payload: what came before, then the room.
        let already = 1000 - LENGTH_PREFIX_BYTES;
        let range = room.as_ptr().wrapping_sub(already)..room.as_ptr_range().end;
        room.copy_from_slice(&bytes[1000..]);
        let n = room.len();
        d.filled(n);
        assert!(d.frame_room().is_none() || d.frame_room().is_some_and(|r| r.is_empty()));
        let got = d.poll().unwrap().expect("the frame");
        assert_eq!(got, vec![m]);
        assert!(!d.is_mid_frame());
        let vs = values(&got[0]);
        assert!(
            within(vs[0].as_bytes(), range.clone()),
            "the large value shares the frame"
        );
        assert!(
            !within(vs[1].as_bytes(), range),
            "the small one is copied out"
        );
    }

    #[test]
    fn large_frames_split_anywhere_reassemble_with_what_follows() {
        let big = data(&[OWN_BUFFER_FRAME_BYTES_MIN * 2]);
        let small = Message::Heartbeat(Heartbeat { metrics: None });
        let mut bytes = encode_frame(std::slice::from_ref(&big)).unwrap();
        bytes.extend(encode_frame(std::slice::from_ref(&small)).unwrap());
        for cut in [0, 3, 4, 5, 100, 70_000, bytes.len() - 10, bytes.len()] {
            let mut d = FrameDecoder::default();
            d.push(&bytes[..cut]);
            let mut got = Vec::new();
            while let Some(f) = d.poll().unwrap() {
                got.extend(f);
            }
            d.push(&bytes[cut..]);
            while let Some(f) = d.poll().unwrap() {
                got.extend(f);
            }
            assert_eq!(got, vec![big.clone(), small.clone()], "cut at {cut}");
            assert!(!d.is_mid_frame());
        }
    }

    #[test]
    fn a_frame_of_its_own_that_does_not_decode_fails_the_decoder() {
        let mut payload = vec![0x91, 0xc4];
        payload.resize(OWN_BUFFER_FRAME_BYTES_MIN, 0);
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend(&payload);
        let mut d = FrameDecoder::default();
        d.push(&bytes[..10]);
        assert_eq!(d.poll().unwrap(), None);
        d.push(&bytes[10..]);
        let e = d.poll().unwrap_err();
        assert_eq!(d.poll().unwrap_err(), e);
        assert!(d.frame_room().is_none());
    }

    #[test]
    fn shared_decoding_shares_only_values_large_for_the_frame() {
        let m = data(&[SHARED_VALUE_BYTES_MIN, 10]);
        let bytes = Bytes::from(encode_frame(std::slice::from_ref(&m)).unwrap());
        let payload = bytes.slice(LENGTH_PREFIX_BYTES..);
        let range = payload.as_ptr_range();
        let got = decode_shared_payload(&payload).unwrap();
        assert_eq!(got, vec![m.clone()]);
        let vs = values(&got[0]);
        assert!(within(vs[0].as_bytes(), range.clone()));
        assert!(!within(vs[1].as_bytes(), range.clone()));
        // A value under an eighth of its frame is copied: keeping it must
        // not keep the whole frame.
        let m = data(&[SHARED_VALUE_BYTES_MIN, SHARED_VALUE_BYTES_MIN * 8]);
        let bytes = Bytes::from(encode_frame(std::slice::from_ref(&m)).unwrap());
        let payload = bytes.slice(LENGTH_PREFIX_BYTES..);
        let range = payload.as_ptr_range();
        let got = decode_shared_payload(&payload).unwrap();
        let vs = values(&got[0]);
        assert!(!within(vs[0].as_bytes(), range.clone()));
        assert!(within(vs[1].as_bytes(), range));
    }

    #[test]
    fn large_values_are_written_from_where_they_are_kept() {
        let m = data(&[SHARED_VALUE_BYTES_MIN, 10, SHARED_VALUE_BYTES_MIN * 3]);
        let expected = encode_frame(std::slice::from_ref(&m)).unwrap();
        let mut enc = FrameEncoder::default();
        enc.push(&m).unwrap();
        enc.push(&close()).unwrap();
        enc.finish();
        let mut expected_two = expected.clone();
        expected_two.extend(encode_frame(&[close()]).unwrap());
        // The encoder's frame with both messages equals one frame of both.
        let both = encode_frame(&[m.clone(), close()]).unwrap();
        let chunks: Vec<&[u8]> = enc.chunks().collect();
        assert_eq!(chunks.concat(), both);
        assert_eq!(enc.finished_bytes(), both.len());
        for v in values(&m) {
            let shared = chunks.iter().any(|c| c.as_ptr() == v.as_bytes().as_ptr());
            assert_eq!(
                shared,
                v.len() >= SHARED_VALUE_BYTES_MIN,
                "{} bytes",
                v.len()
            );
        }
        // Written in uneven steps, it is the same bytes.
        let mut written = Vec::new();
        while enc.finished_bytes() > 0 {
            let step = enc.chunks().next().unwrap().len().min(7777);
            written.extend_from_slice(&enc.chunks().next().unwrap()[..step]);
            enc.consume(step);
        }
        assert_eq!(written, both);
        assert!(enc.is_empty());
        assert_ne!(expected_two, both, "two frames differ from one");
    }

    #[test]
    fn array_headers_match_the_msgpack_writer() {
        for n in [0, 1, 15, 16, 255, 0xffff, 0x10000, 1 << 20] {
            let mut expected = Vec::new();
            write::array_len(&mut expected, n);
            let mut got = [0u8; ARRAY_HEADER_BYTES_MAX];
            let len = array_header_len(n);
            write_array_header(&mut got[..len], n);
            assert_eq!(&got[..len], &expected[..], "{n}");
        }
    }

    fn close() -> Message {
        Message::Close(Close {
            reason: Some("bye".into()),
            reconnect: None,
        })
    }

    #[test]
    fn frames_split_anywhere_reassemble() {
        let bytes =
            encode_frame(&[close(), Message::Heartbeat(Heartbeat { metrics: None })]).unwrap();
        for cut in 0..bytes.len() {
            let mut d = FrameDecoder::default();
            d.push(&bytes[..cut]);
            assert_eq!(d.poll().unwrap(), None, "cut at {cut}");
            d.push(&bytes[cut..]);
            let got = d.poll().unwrap().unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(d.poll().unwrap(), None);
            assert!(!d.is_mid_frame());
        }
    }

    #[test]
    fn oversized_prefix_fails_before_the_payload_arrives() {
        let mut d = FrameDecoder::new(1000);
        d.push(&1001u32.to_be_bytes());
        let e = d.poll().unwrap_err();
        assert_eq!(e.code, ErrorCode::FrameTooLarge);
        d.push(&[0x90]);
        assert_eq!(d.poll().unwrap_err().code, ErrorCode::FrameTooLarge);
    }

    #[test]
    fn encoder_splits_batches_at_the_limit() {
        let one = close().to_bytes().len();
        let mut enc = FrameEncoder::new(one * 2 + ARRAY_HEADER_BYTES_MAX);
        for _ in 0..5 {
            enc.push(&close()).unwrap();
        }
        let bytes = enc.take();
        let mut d = FrameDecoder::new(one * 2 + ARRAY_HEADER_BYTES_MAX);
        d.push(&bytes);
        let sizes: Vec<usize> = std::iter::from_fn(|| d.poll().unwrap())
            .map(|f| f.len())
            .collect();
        assert_eq!(sizes, vec![2, 2, 1]);
    }

    #[test]
    fn message_larger_than_any_frame_is_refused() {
        let mut enc = FrameEncoder::new(8);
        assert_eq!(
            enc.push(&close()).unwrap_err().code,
            ErrorCode::ValueTooLarge
        );
        assert!(enc.is_empty());
    }

    #[test]
    fn a_python_dask_peer_is_named_on_its_first_bytes() {
        let python = crate::foreign::python_dask_refusal("x");
        let mut d = FrameDecoder::default();
        d.push(&python[..10]);
        // Not enough to tell yet: the decoder waits for 16 bytes.
        assert_eq!(d.poll().unwrap(), None);
        d.push(&python[10..]);
        let e = d.poll().unwrap_err();
        assert!(crate::foreign::is_python_dask_peer_error(&e), "{e}");
        let mut d = FrameDecoder::default();
        d.push(&python);
        let e = d.poll().unwrap_err();
        assert!(crate::foreign::is_python_dask_peer_error(&e), "{e}");
        // After a dask/1 frame, the same bytes are just a bad frame.
        let mut d = FrameDecoder::default();
        d.push(&encode_frame(&[]).unwrap());
        assert_eq!(d.poll().unwrap(), Some(vec![]));
        d.push(&python);
        assert_eq!(d.poll().unwrap_err().code, ErrorCode::FrameTooLarge);
    }
}
