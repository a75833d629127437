//! Values larger than a frame (dask/1.1, feature `value-parts`; spec
//! "Values in parts"): a value goes as `value-part` messages, each holding
//! the next bytes of its encoding, right before the message that carries
//! it (`data`, `gather-reply`, `put-data`, `scatter`), which then leaves the
//! key out of its `data` map. Sans-IO: the frame decoder assembles, the
//! frame encoder splits.
//!
//! The receiver never allocates on the sender's word: a value's buffer
//! grows by each part as it arrives (`reserve_exact`, which the allocator
//! serves by growing the mapping in place for large buffers), and the
//! announced `nbytes` is only checked against [`PARTS_BYTES_MAX`].

use std::collections::BTreeMap;

use crate::error::{ErrorCode, WireError};
use crate::messages::{Bin, ValuePart};
use crate::msgpack::{RawValue, SHARED_VALUE_BYTES_MIN};
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
}

#[derive(Debug)]
struct Assembly {
    key: Key,
    nbytes: u64,
    bytes: Vec<u8>,
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
        }
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
                            a.bytes.len(),
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
        if bytes.is_empty() {
            return Err(unexpected(format!(
                "an empty value-part of {}: each part holds at least one byte",
                part.key
            )));
        }
        let current = match &mut self.current {
            Some(a) => {
                if a.key != part.key || a.nbytes != part.nbytes {
                    return Err(unexpected(format!(
                        "a value-part of {} ({} bytes) came while the value of {} ({} bytes) was not whole: a value's parts come one after another",
                        part.key, part.nbytes, a.key, a.nbytes
                    )));
                }
                a
            }
            None => {
                if self.complete.iter().any(|(k, _)| *k == part.key) {
                    return Err(unexpected(format!(
                        "a second value of {} in parts for the same message",
                        part.key
                    )));
                }
                let total = self.bytes.saturating_add(part.nbytes);
                if total > self.bytes_max {
                    return Err(WireError::new(
                        ErrorCode::FrameTooLarge,
                        format!(
                            "a value of {} bytes in parts ({} with the others before it) is over this receiver's limit of {} bytes",
                            part.nbytes, total, self.bytes_max
                        ),
                    ));
                }
                self.bytes = total;
                self.current.insert(Assembly {
                    key: part.key,
                    nbytes: part.nbytes,
                    bytes: Vec::new(),
                })
            }
        };
        let have = current.bytes.len() as u64;
        if have + bytes.len() as u64 > current.nbytes {
            return Err(unexpected(format!(
                "the parts of {} run past the {} bytes announced",
                current.key, current.nbytes
            )));
        }
        current.bytes.reserve_exact(bytes.len());
        current.bytes.extend_from_slice(&bytes);
        if current.bytes.len() as u64 == current.nbytes {
            if let Some(a) = self.current.take() {
                let value = RawValue::from_bytes(a.bytes).map_err(|e| {
                    WireError::malformed(format!(
                        "the parts of {} are not one msgpack value: {}",
                        a.key, e.message
                    ))
                })?;
                self.complete.push((a.key, value));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
