//! Framing: a 4-byte big-endian length, then that many bytes holding one
//! msgpack array of messages (a batch). Sans-IO: bytes in, messages out;
//! messages in, bytes out.

use crate::error::{ErrorCode, WireError};
use crate::messages::Message;
use crate::msgpack::{write, Reader};

/// Largest frame payload a dask/1 peer must accept, and the most any peer
/// may send: 256 MiB.
pub const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Decodes the messages of one frame payload.
pub fn decode_payload(payload: &[u8]) -> Result<Vec<Message>, WireError> {
    let mut r = Reader::new(payload);
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

/// Reassembles frames from a byte stream.
///
/// Call [`FrameDecoder::push`] with bytes as they arrive, then
/// [`FrameDecoder::poll`] until it returns `Ok(None)`. After an error the
/// decoder stays failed: the connection must be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    frame_bytes_max: usize,
    failed: Option<WireError>,
    /// Whether a frame was decoded: the first frame's failure is checked
    /// for another protocol ([`crate::foreign`]).
    decoded_one: bool,
}

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
            frame_bytes_max,
            failed: None,
            decoded_one: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes received and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
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
        if self.buf.len() - begin < len {
            return Ok(None);
        }
        let messages = match decode_payload(&self.buf[begin..begin + len]) {
            Ok(messages) => messages,
            Err(e) => return Err(self.fail(e)),
        };
        self.decoded_one = true;
        self.start = begin + len;
        self.compact();
        Ok(Some(messages))
    }

    /// Whether bytes of an unfinished frame are buffered (at a clean close
    /// there are none).
    pub fn is_mid_frame(&self) -> bool {
        self.buffered() > 0
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

/// Batches messages into frames.
///
/// [`FrameEncoder::push`] appends a message to the open frame;
/// [`FrameEncoder::finish`] closes it; [`FrameEncoder::take`] hands out all
/// finished frames as one byte buffer to write. A frame is closed early
/// when the next message would take it over the limit.
#[derive(Debug)]
pub struct FrameEncoder {
    out: Vec<u8>,
    open: Vec<u8>,
    open_count: usize,
    frame_bytes_max: usize,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new(FRAME_BYTES_MAX)
    }
}

/// Room left for the array header inside a frame's payload.
const ARRAY_HEADER_BYTES_MAX: usize = 5;

impl FrameEncoder {
    /// An encoder whose frames stay within `frame_bytes_max`.
    pub fn new(frame_bytes_max: usize) -> Self {
        FrameEncoder {
            out: Vec::new(),
            open: Vec::new(),
            open_count: 0,
            frame_bytes_max,
        }
    }

    /// Adds a message to the open frame. A message too large for any frame
    /// is refused with `value-too-large` and nothing is added.
    pub fn push(&mut self, message: &Message) -> Result<(), WireError> {
        let mark = self.open.len();
        message.write(&mut self.open);
        let size = self.open.len() - mark;
        if size + ARRAY_HEADER_BYTES_MAX > self.frame_bytes_max {
            self.open.truncate(mark);
            return Err(WireError::new(
                ErrorCode::ValueTooLarge,
                format!(
                    "`{}` message of {size} bytes does not fit in a frame",
                    message.op()
                ),
            ));
        }
        if mark + size + ARRAY_HEADER_BYTES_MAX > self.frame_bytes_max {
            let tail = self.open.split_off(mark);
            self.finish();
            self.open = tail;
        }
        self.open_count += 1;
        Ok(())
    }

    /// Closes the open frame, if it holds any message.
    pub fn finish(&mut self) {
        if self.open_count == 0 {
            return;
        }
        let mut header = Vec::with_capacity(ARRAY_HEADER_BYTES_MAX);
        write::array_len(&mut header, self.open_count);
        let len = (header.len() + self.open.len()) as u32;
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(&header);
        self.out.append(&mut self.open);
        self.open_count = 0;
    }

    /// Whether any finished or open frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty() && self.open_count == 0
    }

    /// Finishes the open frame and returns every byte to send.
    pub fn take(&mut self) -> Vec<u8> {
        self.finish();
        std::mem::take(&mut self.out)
    }

    /// Finishes the open frame and appends every byte to send to `dst`.
    pub fn drain_into(&mut self, dst: &mut Vec<u8>) {
        self.finish();
        if dst.is_empty() {
            std::mem::swap(dst, &mut self.out);
        } else {
            dst.append(&mut self.out);
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
    use crate::messages::{Close, Heartbeat};

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
