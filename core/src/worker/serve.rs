//! Values for others: get-data from peers and the scheduler (split replies, busy), put-data.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::{ConnId, WorkerState};
use crate::messages::{
    Bin, Busy, Data, DataStored, ErrorReport, GetData, GetValueRange, PutData, ValueRange,
};
use crate::{ErrorCode, Key, Message, RawValue};

impl WorkerState {
    /// A `get-data` from a peer on `conn`: answered with `data` (possibly
    /// several messages) or `busy`.
    pub(super) fn peer_request(&mut self, conn: ConnId, request: GetData) {
        // Decided before building the reply, so a busy answer reads nothing
        // back from the spill store (a repeated key counts twice here).
        let bytes: usize = request
            .keys
            .iter()
            .filter_map(|k| self.data.get(k))
            .map(|held| held.nbytes as usize)
            .sum();
        let in_flight: usize = self.reply_bytes_in_flight.values().sum();
        if in_flight > 0 && in_flight + bytes > self.config.reply_bytes_in_flight_max {
            let busy = Message::Busy(Busy {
                request: request.request,
            });
            return self.send(conn, busy);
        }
        let (replies, bytes) = self.data_replies(conn, request.request, &request.keys);
        *self.reply_bytes_in_flight.entry(conn).or_default() += bytes;
        for message in replies {
            self.send(conn, message);
        }
    }

    /// A `get-value-range` (dask/1.1 `value-ranges`): the bytes of one
    /// value from `offset`, a slice of the stored value (no copy) or read
    /// back from the spill store (that range alone); `data` listing the key
    /// missing when it is not held (or cannot be read back). A range is at
    /// most one reply message (`reply_message_bytes_max`), whatever was
    /// asked.
    pub(super) fn value_range(&mut self, request: GetValueRange) -> Message {
        let GetValueRange {
            request,
            key,
            offset,
            bytes_max,
        } = request;
        let missing = |key| {
            Message::Data(Data {
                request,
                data: BTreeMap::new(),
                missing: vec![key],
            })
        };
        let Some(held) = self.data.get(&key) else {
            return missing(key);
        };
        let nbytes = held.nbytes;
        let len = bytes_max.clamp(1, self.config.reply_message_bytes_max.max(1) as u64);
        let start = offset.min(nbytes);
        let end = offset.saturating_add(len).min(nbytes);
        let part = match held.value.clone() {
            Some(value) => {
                self.touch(&key);
                RawValue::clone(&value)
                    .into_shared()
                    .slice(start as usize..end as usize)
            }
            None => match self.read_spilled_range(&key, start, end) {
                Some(bytes) => bytes,
                None => return missing(key),
            },
        };
        Message::ValueRange(ValueRange {
            request,
            key,
            nbytes,
            offset,
            part: Bin(part),
        })
    }

    pub(super) fn put_data(&mut self, put: PutData) {
        let too_large: Vec<Key> = put
            .data
            .iter()
            .filter(|(_, v)| v.as_bytes().len() > self.config.value_bytes_max)
            .map(|(k, _)| k.clone())
            .collect();
        if !too_large.is_empty() {
            return self.emit(Message::ErrorReport(ErrorReport {
                code: ErrorCode::ValueTooLarge.number(),
                message: format!(
                    "values over {} bytes are over this worker's limit; nothing stored",
                    self.config.value_bytes_max
                ),
                fatal: false,
                request: Some(put.request),
                keys: Some(too_large),
            }));
        }
        let mut nbytes = BTreeMap::new();
        for (key, value) in put.data {
            let n = self.store(key.clone(), Arc::new(value));
            nbytes.insert(key, n);
        }
        self.emit(Message::DataStored(DataStored {
            request: put.request,
            nbytes,
        }));
    }

    /// The `data` messages answering a get-data, and their value bytes.
    /// Values that together exceed one message are split over several
    /// messages with the same request id; `missing` goes in the first.
    ///
    /// A spilled value is read back for the reply and stays spilled; one
    /// that cannot be read back is lost here and listed missing.
    ///
    /// A value too large for one frame goes (in parts) only on a connection
    /// that negotiated `value-parts`; on another, the reply is
    /// `error{5002}` listing those keys (spec "value-too-large").
    pub(super) fn data_replies(
        &mut self,
        conn: ConnId,
        request: u64,
        keys: &[Key],
    ) -> (Vec<Message>, usize) {
        /// A value for the reply: shared with the store, or read back.
        enum Found {
            Memory(Arc<RawValue>),
            ReadBack(RawValue),
        }
        impl Found {
            fn as_raw(&self) -> &RawValue {
                match self {
                    Found::Memory(value) => value,
                    Found::ReadBack(value) => value,
                }
            }
        }
        let mut missing = Vec::new();
        let mut found: Vec<(&Key, Found)> = Vec::new();
        let mut seen = HashSet::new();
        for key in keys {
            if !seen.insert(key) {
                continue;
            }
            let in_memory = match self.data.get(key) {
                None => {
                    missing.push(key.clone());
                    continue;
                }
                Some(held) => held.value.clone(),
            };
            match in_memory {
                Some(value) => {
                    self.touch(key);
                    found.push((key, Found::Memory(value)));
                }
                None => match self.read_spilled(key) {
                    Some(value) => found.push((key, Found::ReadBack(value))),
                    None => missing.push(key.clone()),
                },
            }
        }
        // To a peer on this host, large values in memory are lent by
        // address (`local.rs`) rather than written.
        let mut lent = None;
        if self.conns.get(&conn).is_some_and(|c| c.local.usable) {
            let mut memory = Vec::new();
            found.retain(|(key, value)| match value {
                Found::Memory(value) => {
                    memory.push((*key, Arc::clone(value)));
                    false
                }
                Found::ReadBack(_) => true,
            });
            lent = self.lend(conn, request, &mut memory);
            found.extend(memory.into_iter().map(|(k, v)| (k, Found::Memory(v))));
            if lent.is_some() && found.is_empty() && missing.is_empty() {
                return (lent.into_iter().collect(), 0);
            }
        }
        let in_parts = self.conns.get(&conn).is_some_and(|c| c.value_parts);
        let too_large: Vec<Key> = found
            .iter()
            .filter(|(_, v)| !in_parts && v.as_raw().len() > self.config.frame_value_bytes_max)
            .map(|(k, _)| (*k).clone())
            .collect();
        if !too_large.is_empty() {
            let refusal = Message::ErrorReport(ErrorReport {
                code: ErrorCode::ValueTooLarge.number(),
                message: format!(
                    "values over {} bytes fit in no frame, and this connection did not negotiate the feature value-parts",
                    self.config.frame_value_bytes_max
                ),
                fatal: false,
                request: Some(request),
                keys: Some(too_large),
            });
            return (lent.into_iter().chain([refusal]).collect(), 0);
        }
        let missing_bytes: usize = missing.iter().map(|k| k.0.len() + 5).sum();
        let mut messages = Vec::new();
        let mut part = BTreeMap::new();
        let mut part_bytes = missing_bytes;
        let mut total = 0;
        for (key, value) in found {
            let size = value.as_raw().as_bytes().len();
            let entry_bytes = key.0.len() + size + 8;
            if !part.is_empty() && part_bytes + entry_bytes > self.config.reply_message_bytes_max {
                messages.push(std::mem::take(&mut part));
                part_bytes = 0;
            }
            part_bytes += entry_bytes;
            total += size;
            let value = match value {
                Found::Memory(value) => RawValue::clone(&value),
                Found::ReadBack(value) => value,
            };
            part.insert(key.clone(), value);
        }
        if !part.is_empty() || messages.is_empty() {
            messages.push(part);
        }
        let replies = lent
            .into_iter()
            .chain(messages.into_iter().enumerate().map(|(i, data)| {
                Message::Data(Data {
                    request,
                    data,
                    missing: if i == 0 {
                        std::mem::take(&mut missing)
                    } else {
                        Vec::new()
                    },
                })
            }))
            .collect();
        (replies, total)
    }
}
