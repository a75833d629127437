//! Values larger than a frame (dask/1.1, feature `value-parts`; spec
//! "Values in parts"): a value goes as `value-part` messages, each holding
//! the next bytes of its encoding, right before the message that carries
//! it (`data`, `gather-reply`, `put-data`, `scatter`), which then leaves the
//! key out of its `data` map. Sans-IO: the frame decoder assembles, the
//! frame encoder splits.
//!
//! The receiver commits memory only as parts arrive: at a value's first
//! part it reserves the announced `nbytes` (checked against
//! [`PARTS_BYTES_MAX`]) as zeroed memory the allocator maps without
//! touching it, so pages become real only as bytes are written into them;
//! where the allocator cannot map that much, the buffer grows by each
//! part instead. With the whole size reserved, the frame decoder reads a
//! part's bytes straight into the value's buffer ([`ValueAssembler::begin_direct`]):
//! no frame buffer, no copy.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ErrorCode, WireError};
use crate::frame::FrameBuffers;
use crate::messages::{Bin, ValuePart};
use crate::msgpack::{RawValue, Reader, SHARED_VALUE_BYTES_MIN};
use crate::wire::Wire;
use crate::{Key, Message};

/// Room a `value-part` needs in its frame beside its bytes: the batch
/// header, op and field names, `nbytes`, the bin header and a key of up to
/// 4096 bytes.
pub const PART_OVERHEAD_BYTES: usize = 8 * 1024;

/// The most bytes of values in parts a receiver holds for one message (by
/// default): a larger announced `nbytes` is refused (1002) before anything
/// of it is kept. Real memory grows only as parts arrive.
pub const PARTS_BYTES_MAX: u64 = 64 << 30;

/// The value maps of the messages that carry values in parts.
fn carried(message: &mut Message) -> Option<&mut BTreeMap<Key, RawValue>> {
    match message {
        Message::Data(m) => Some(&mut m.data),
        Message::GatherReply(m) => Some(&mut m.data),
        Message::PutData(m) => Some(&mut m.data),
        Message::Scatter(m) => Some(&mut m.data),
        _ => None,
    }
}

/// `message` with its values of at least [`SHARED_VALUE_BYTES_MIN`] bytes
/// taken out and sent in parts of at most `part_bytes`: the parts, then the
/// message without them. `None` when it carries no such value.
pub fn split(message: &Message, part_bytes: usize) -> Option<Vec<Message>> {
    let part_bytes = part_bytes.max(1);
    let mut rest = message.clone();
    let data = carried(&mut rest)?;
    let large: Vec<Key> = data
        .iter()
        .filter(|(_, v)| v.len() >= SHARED_VALUE_BYTES_MIN)
        .map(|(k, _)| k.clone())
        .collect();
    if large.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for key in large {
        let Some(value) = data.remove(&key) else {
            continue;
        };
        let bytes = value.into_shared();
        let nbytes = bytes.len() as u64;
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + part_bytes).min(bytes.len());
            out.push(Message::ValuePart(ValuePart {
                key: key.clone(),
                nbytes,
                part: Bin(bytes.slice(at..end)),
            }));
            at = end;
        }
    }
    out.push(rest);
    Some(out)
}

/// Assembles the values that arrive in parts and puts each in the message
/// that follows its parts. See the module docs.
#[derive(Debug)]
pub struct ValueAssembler {
    /// The value whose parts are arriving.
    current: Option<Assembly>,
    /// Values complete, for the next message.
    complete: Vec<(Key, RawValue)>,
    /// Bytes announced for `current` and held in `complete`.
    bytes: u64,
    bytes_max: u64,
    /// Where values' buffers come from, and go back to once the values are
    /// dropped, if anywhere: a kept buffer's pages are mapped already.
    buffers: Option<Arc<FrameBuffers>>,
}

#[derive(Debug)]
struct Assembly {
    key: Key,
    nbytes: u64,
    /// The value's whole size, zeroed (`filled` of it received), or, where
    /// that could not be reserved, the bytes received.
    bytes: Vec<u8>,
    filled: usize,
    /// `bytes` is a kept buffer: its pages are mapped already.
    kept: bool,
}

impl Assembly {
    /// A kept buffer of `nbytes` from `buffers` if it has one (its old
    /// bytes are all overwritten before the value is whole), else zeroed
    /// memory.
    fn new(key: Key, nbytes: u64, buffers: Option<&FrameBuffers>) -> Assembly {
        let kept = buffers
            .zip(usize::try_from(nbytes).ok())
            .and_then(|(buffers, n)| buffers.take(n));
        Assembly {
            key,
            nbytes,
            kept: kept.is_some(),
            bytes: kept.or_else(|| reserve_zeroed(nbytes)).unwrap_or_default(),
            filled: 0,
        }
    }

    /// Whether the whole size is reserved (parts are written in place).
    fn reserved(&self) -> bool {
        self.bytes.len() as u64 == self.nbytes
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.reserved() {
            self.bytes[self.filled..self.filled + bytes.len()].copy_from_slice(bytes);
        } else {
            self.bytes.reserve_exact(bytes.len());
            self.bytes.extend_from_slice(bytes);
        }
        self.filled += bytes.len();
    }
}

/// `nbytes` zeroed bytes, if the allocator can give them: for large sizes
/// it maps fresh pages without writing them (the kernel backs each page
/// when it is first written). Asked with `try_reserve_exact` first: a
/// failed `vec!` aborts the process.
fn reserve_zeroed(nbytes: u64) -> Option<Vec<u8>> {
    let n = usize::try_from(nbytes).ok()?;
    Vec::<u8>::new().try_reserve_exact(n).ok()?;
    Some(vec![0; n])
}

/// The first bytes of a frame whose first message is a `value-part` with
/// its `op`, `key` and `nbytes` before its `part` (as encoders write it):
/// where the part's bytes start, so that they can be read straight into
/// the value's buffer.
#[derive(Debug)]
pub(crate) struct PartHead {
    pub key: Key,
    pub nbytes: u64,
    /// Offset of the part's bin header in the frame's payload...
    pub header_at: usize,
    /// ...and of its bytes, of which there are `len`.
    pub bytes_at: usize,
    pub len: usize,
}

/// Most bytes of a frame's start [`PartHead::read`] needs.
pub(crate) const PART_HEAD_BYTES_MAX: usize = PART_OVERHEAD_BYTES;

impl PartHead {
    /// Reads the head from the first bytes of a frame's payload:
    /// `Ok(None)` if the frame does not start so, `Err(())` if more bytes
    /// are needed to tell.
    pub(crate) fn read(payload_start: &[u8]) -> Result<Option<PartHead>, ()> {
        match PartHead::parse(payload_start) {
            Ok(head) => Ok(head),
            Err(e) if e == WireError::truncated() => Err(()),
            Err(_) => Ok(None),
        }
    }

    fn parse(payload_start: &[u8]) -> Result<Option<PartHead>, WireError> {
        let mut r = Reader::new(payload_start);
        if r.read_array_len()? == 0 {
            return Ok(None);
        }
        let fields = r.read_map_len()?;
        let (mut op, mut key, mut nbytes) = (None, None, None);
        for _ in 0..fields {
            match r.read_str()? {
                "op" if op.is_none() => op = Some(r.read_str()?),
                "key" if key.is_none() => key = Some(Key::read(&mut r)?),
                "nbytes" if nbytes.is_none() => nbytes = Some(u64::read(&mut r)?),
                "part" if op == Some("value-part") => {
                    let (Some(key), Some(nbytes)) = (key, nbytes) else {
                        return Ok(None);
                    };
                    let header_at = r.position();
                    let b = &payload_start[header_at..];
                    let byte = |i: usize| b.get(i).copied().ok_or_else(WireError::truncated);
                    let (header, len) = match byte(0)? {
                        0xc4 => (2, byte(1)? as usize),
                        0xc5 => (3, u16::from_be_bytes([byte(1)?, byte(2)?]) as usize),
                        0xc6 => (
                            5,
                            u32::from_be_bytes([byte(1)?, byte(2)?, byte(3)?, byte(4)?]) as usize,
                        ),
                        _ => return Ok(None),
                    };
                    return Ok(Some(PartHead {
                        key,
                        nbytes,
                        header_at,
                        bytes_at: header_at + header,
                        len,
                    }));
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

impl Default for ValueAssembler {
    fn default() -> Self {
        ValueAssembler::new(PARTS_BYTES_MAX)
    }
}

fn unexpected(message: String) -> WireError {
    WireError::new(ErrorCode::UnexpectedMessage, message)
}

impl ValueAssembler {
    /// An assembler holding at most `bytes_max` bytes of values in parts
    /// for one message.
    pub fn new(bytes_max: u64) -> ValueAssembler {
        ValueAssembler {
            current: None,
            complete: Vec::new(),
            bytes: 0,
            bytes_max,
            buffers: None,
        }
    }

    /// Takes values' buffers from `buffers` when it has one that fits, and
    /// gives them back there when the values are dropped.
    pub(crate) fn use_buffers(&mut self, buffers: Arc<FrameBuffers>) {
        self.buffers = Some(buffers);
    }

    /// Whether parts are held for a message still to come.
    pub fn is_holding(&self) -> bool {
        self.current.is_some() || !self.complete.is_empty()
    }

    /// The messages of one batch as the receiver acts on them: parts taken
    /// out, each complete value put into the message after its parts. An
    /// error is fatal to the connection (the whole frame is discarded).
    pub fn take(&mut self, batch: Vec<Message>) -> Result<Vec<Message>, WireError> {
        if !self.is_holding() && !batch.iter().any(|m| matches!(m, Message::ValuePart(_))) {
            return Ok(batch);
        }
        let mut out = Vec::with_capacity(batch.len());
        for message in batch {
            match message {
                Message::ValuePart(part) => self.part(part)?,
                mut other => {
                    if let Some(a) = &self.current {
                        return Err(unexpected(format!(
                            "`{}` came while the value of {} was still arriving in parts ({} of {} bytes): a value's parts come whole, right before the message carrying it",
                            other.op(),
                            a.key,
                            a.filled,
                            a.nbytes
                        )));
                    }
                    if !self.complete.is_empty() {
                        let op = other.op();
                        let Some(data) = carried(&mut other) else {
                            return Err(unexpected(format!(
                                "`{op}` came after values in parts: only data, gather-reply, put-data and scatter carry them"
                            )));
                        };
                        for (key, value) in self.complete.drain(..) {
                            if data.contains_key(&key) {
                                return Err(unexpected(format!(
                                    "`{op}` holds {key} in its data and in parts"
                                )));
                            }
                            data.insert(key, value);
                        }
                        self.bytes = 0;
                    }
                    out.push(other);
                }
            }
        }
        Ok(out)
    }

    fn part(&mut self, part: ValuePart) -> Result<(), WireError> {
        let bytes = part.part.0;
        self.check_part(&part.key, part.nbytes, bytes.len())?;
        let current = self.start(part.key, part.nbytes);
        current.append(&bytes);
        self.complete_if_whole()
    }

    /// Whether a part of `len` bytes of `key` (`nbytes` in all) would be
    /// taken as the next one; nothing changes.
    fn check_part(&self, key: &Key, nbytes: u64, len: usize) -> Result<(), WireError> {
        if len == 0 {
            return Err(unexpected(format!(
                "an empty value-part of {key}: each part holds at least one byte"
            )));
        }
        let have = match &self.current {
            Some(a) => {
                if a.key != *key || a.nbytes != nbytes {
                    return Err(unexpected(format!(
                        "a value-part of {key} ({nbytes} bytes) came while the value of {} ({} bytes) was not whole: a value's parts come one after another",
                        a.key, a.nbytes
                    )));
                }
                a.filled as u64
            }
            None => {
                if self.complete.iter().any(|(k, _)| k == key) {
                    return Err(unexpected(format!(
                        "a second value of {key} in parts for the same message"
                    )));
                }
                let total = self.bytes.saturating_add(nbytes);
                if total > self.bytes_max {
                    return Err(WireError::new(
                        ErrorCode::FrameTooLarge,
                        format!(
                            "a value of {nbytes} bytes in parts ({total} with the others before it) is over this receiver's limit of {} bytes",
                            self.bytes_max
                        ),
                    ));
                }
                0
            }
        };
        if have + len as u64 > nbytes {
            return Err(unexpected(format!(
                "the parts of {key} run past the {nbytes} bytes announced"
            )));
        }
        Ok(())
    }

    /// The value being assembled, begun if need be (after
    /// [`ValueAssembler::check_part`]).
    fn start(&mut self, key: Key, nbytes: u64) -> &mut Assembly {
        if self.current.is_none() {
            self.bytes = self.bytes.saturating_add(nbytes);
        }
        let buffers = self.buffers.as_deref();
        self.current
            .get_or_insert_with(|| Assembly::new(key, nbytes, buffers))
    }

    /// Moves the value being assembled to the complete ones once it is.
    fn complete_if_whole(&mut self) -> Result<(), WireError> {
        if self
            .current
            .as_ref()
            .is_none_or(|a| a.filled as u64 != a.nbytes)
        {
            return Ok(());
        }
        if let Some(mut a) = self.current.take() {
            a.bytes.truncate(a.filled);
            let bytes = match &self.buffers {
                Some(home) => FrameBuffers::share(home, a.bytes),
                None => Bytes::from(a.bytes),
            };
            let value = RawValue::from_shared_bytes(bytes).map_err(|e| {
                WireError::malformed(format!(
                    "the parts of {} are not one msgpack value: {}",
                    a.key, e.message
                ))
            })?;
            self.complete.push((a.key, value));
        }
        Ok(())
    }

    /// Whether the next part, `len` bytes of `key` (`nbytes` in all), can
    /// be written straight into the value's buffer: it would be taken, and
    /// the whole value is reserved. If so, its bytes go into
    /// [`ValueAssembler::direct_room`], and the frame that held it is
    /// handed to [`ValueAssembler::take_after_direct`]. Nothing is refused
    /// here: a part that would be is left to [`ValueAssembler::take`], so
    /// the outcome does not depend on the path.
    pub(crate) fn begin_direct(&mut self, key: &Key, nbytes: u64, len: usize) -> bool {
        if self.check_part(key, nbytes, len).is_err() {
            return false;
        }
        self.start(key.clone(), nbytes).reserved()
    }

    /// Where the `len` bytes of a part begun with
    /// [`ValueAssembler::begin_direct`] go.
    pub(crate) fn direct_room(&mut self, len: usize) -> &mut [u8] {
        match &mut self.current {
            Some(a) if a.reserved() => {
                let end = (a.filled + len).min(a.bytes.len());
                &mut a.bytes[a.filled..end]
            }
            _ => &mut [],
        }
    }

    /// Whether the value being assembled is in a kept buffer (pages
    /// mapped already).
    pub(crate) fn in_kept_buffer(&self) -> bool {
        self.current.as_ref().is_some_and(|a| a.kept)
    }

    /// [`ValueAssembler::take`] for the frame whose first message held the
    /// part of `len` bytes written into [`ValueAssembler::direct_room`]
    /// (decoded with an empty part in its place).
    pub(crate) fn take_after_direct(
        &mut self,
        mut batch: Vec<Message>,
        len: usize,
    ) -> Result<Vec<Message>, WireError> {
        let placeholder = match batch.first() {
            Some(Message::ValuePart(p)) if p.part.0.is_empty() => self
                .current
                .as_ref()
                .is_some_and(|a| a.key == p.key && a.nbytes == p.nbytes && a.reserved()),
            _ => false,
        };
        if !placeholder {
            // The head read before the part and the frame decoded after it
            // disagree: only a decoder bug gets here.
            return Err(WireError::malformed(
                "a value-part read in place does not match its frame",
            ));
        }
        batch.remove(0);
        if let Some(a) = &mut self.current {
            a.filled += len;
        }
        self.complete_if_whole()?;
        self.take(batch)
    }
}

#[cfg(test)]
mod tests;
