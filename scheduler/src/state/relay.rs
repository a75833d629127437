//! Large values relayed to clients a range at a time (issue 20 item 3):
//! a gather's value of [`RELAY_VALUE_BYTES_MIN`] or more goes from its
//! holder to the client without the scheduler ever holding it whole.
//!
//! When the client listed `value-parts` and a holder `value-ranges`
//! (dask/1.1), the scheduler asks the holder for the value's bytes
//! [`RELAY_RANGE_BYTES`] at a time (`get-value-range`) and sends each range
//! on to the client as a `value-part`; after the last value, the
//! `gather-reply` carries the rest (the client's decoder puts the values
//! back in). The next range is asked only while at most
//! [`RELAY_WINDOW_BYTES`] wait unwritten for the client: a client that does
//! not read holds one window per gather, and the holder's connection (which
//! also carries its heartbeats and results) is never held up, since nothing
//! is asked of it meanwhile.
//!
//! Order: the gather's other values are fetched first (as before), then
//! the relayed values one after another, then the reply; the client's
//! other messages wait from its first part to that reply (nothing may come
//! between a value's parts and the message carrying it).
//!
//! Failures: a holder that leaves, refuses or lacks the value is replaced
//! by another holder of it, which goes on at the same offset (a value's
//! bytes are the same wherever it is held; its `nbytes` is checked). With
//! none left, a value not started yet is listed `missing`; one already
//! partly sent cannot be finished, and the client's connection is closed
//! (logged): its session sees the connection lost.

use std::collections::VecDeque;

use dask_core::messages::{Data, GetValueRange, ValuePart, ValueRange};
use dask_core::parts::PART_OVERHEAD_BYTES;

use super::*;

/// A gathered value of at least this many bytes (by its holders' `nbytes`)
/// is relayed, for clients and holders that can.
pub const RELAY_VALUE_BYTES_MIN: u64 = 4 * 1024 * 1024;

/// The bytes asked of a holder at a time.
pub const RELAY_RANGE_BYTES: u64 = 2 * 1024 * 1024;

/// The next range is asked only while at most this many bytes (with it)
/// wait unwritten for the client.
pub const RELAY_WINDOW_BYTES: u64 = 2 * RELAY_RANGE_BYTES;

/// The value a gather is relaying.
#[derive(Debug)]
pub(crate) struct Relay {
    key: Key,
    /// The holder asked.
    worker: WorkerIdx,
    /// Bytes sent on to the client (where the next range starts).
    sent: u64,
    /// The value's length, as its first range said.
    nbytes: Option<u64>,
    /// The `get-value-range` not answered yet.
    request: Option<u64>,
}

/// The relays of one gather: the values still to relay, and the one being
/// relayed.
#[derive(Debug, Default)]
pub(crate) struct GatherRelays {
    pub(crate) waiting: VecDeque<Key>,
    current: Option<Relay>,
}

impl GatherRelays {
    /// Whether values remain to relay.
    pub(crate) fn is_pending(&self) -> bool {
        self.current.is_some() || !self.waiting.is_empty()
    }

    /// Whether a value has begun to go to the client.
    fn started(&self) -> bool {
        self.current.as_ref().is_some_and(|r| r.sent > 0)
    }
}

impl SchedulerState {
    /// Whether gathering `key` for client `conn` relays it: the client
    /// takes values in parts, the value is large, and its holder sends
    /// ranges.
    pub(crate) fn relays(&self, conn: ConnId, key: &Key) -> bool {
        if !self.clients.get(&conn).is_some_and(|c| c.value_parts) {
            return false;
        }
        let Some(t) = self.task_id(key) else {
            return false;
        };
        self.tasks[t].nbytes >= RELAY_VALUE_BYTES_MIN && self.ranged_holder(key, None).is_some()
    }

    /// A holder of `key` that sends ranges, other than `except`.
    fn ranged_holder(&self, key: &Key, except: Option<WorkerIdx>) -> Option<WorkerIdx> {
        self.holder_where(key, except, |w| self.sends_value_ranges(w))
    }

    fn sends_value_ranges(&self, w: WorkerIdx) -> bool {
        let Some(worker) = self.workers.get(w.ix()) else {
            return false;
        };
        self.conns.get(&worker.conn).is_some_and(|c| c.value_ranges)
    }

    /// Moves gather `id`'s relays on as far as they can go now: the next
    /// range asked (within the client's window), the next value begun, or,
    /// with none left, the gather answered.
    pub(crate) fn relay_next(&mut self, id: u64) {
        loop {
            let Some(g) = self.data.gathers.get(&id) else {
                return;
            };
            let client = g.client;
            let Some(relay) = &g.relays.current else {
                let Some(key) = g.relays.waiting.front().cloned() else {
                    return self.answer_gather(id);
                };
                let holder = self.ranged_holder(&key, None);
                let Some(g) = self.data.gathers.get_mut(&id) else {
                    return;
                };
                g.relays.waiting.pop_front();
                match holder {
                    Some(worker) => {
                        g.relays.current = Some(Relay {
                            key,
                            worker,
                            sent: 0,
                            nbytes: None,
                            request: None,
                        })
                    }
                    None => g.missing.push(key),
                }
                continue;
            };
            if relay.request.is_some() {
                return;
            }
            if relay.nbytes.is_some_and(|n| relay.sent >= n) {
                if let Some(g) = self.data.gathers.get_mut(&id) {
                    g.relays.current = None;
                }
                continue;
            }
            let queued = self.outflow_queued(client);
            if queued.saturating_add(RELAY_RANGE_BYTES) > RELAY_WINDOW_BYTES {
                // Asked once the loop reports the client's output went
                // down (`handle_output_queued`).
                return;
            }
            let (worker, key, offset) = (relay.worker, relay.key.clone(), relay.sent);
            // The holder may have left (or freed it) while the client read.
            let holds = self.task_id(&key).is_some_and(|t| {
                self.tasks[t].state() == TaskState::Memory
                    && self.tasks[t].who_has.contains(&worker)
            });
            if !holds || !self.sends_value_ranges(worker) {
                return self.relay_failed(id, worker, false);
            }
            let request = self.request_id();
            if let Some(relay) = self
                .data
                .gathers
                .get_mut(&id)
                .and_then(|g| g.relays.current.as_mut())
            {
                relay.request = Some(request);
            }
            self.data.ranges.insert(request, id);
            return self.send_worker(
                worker,
                Message::GetValueRange(GetValueRange {
                    request,
                    key,
                    offset,
                    bytes_max: RELAY_RANGE_BYTES,
                }),
            );
        }
    }

    /// Relays whose next range waits for their client's output to go down:
    /// asked now if it has (called when the loop reported it).
    pub(crate) fn resume_relays(&mut self) {
        let waiting: Vec<u64> = self
            .data
            .gathers
            .iter()
            .filter(|(_, g)| {
                g.relays
                    .current
                    .as_ref()
                    .is_some_and(|r| r.request.is_none())
            })
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.relay_next(id);
        }
    }

    /// A holder's `value-range`: sent on to the client as a `value-part`.
    pub(crate) fn value_range_reply(&mut self, w: WorkerIdx, m: ValueRange) {
        let Some(&id) = self.data.ranges.get(&m.request) else {
            return;
        };
        let Some(relay) = self
            .data
            .gathers
            .get(&id)
            .and_then(|g| g.relays.current.as_ref())
        else {
            self.data.ranges.remove(&m.request);
            return;
        };
        if relay.worker != w || relay.request != Some(m.request) {
            return;
        }
        self.data.ranges.remove(&m.request);
        let len = m.part.0.len() as u64;
        let end = relay.sent.saturating_add(len);
        let fits = m.key == relay.key
            && m.offset == relay.sent
            && len > 0
            && end <= m.nbytes
            && relay.nbytes.is_none_or(|n| n == m.nbytes);
        if !fits {
            // Not the bytes asked for (or another length than before):
            // this holder's copy is not used for it.
            return self.relay_failed(id, w, false);
        }
        let Some(g) = self.data.gathers.get_mut(&id) else {
            return;
        };
        let client = g.client;
        let Some(relay) = g.relays.current.as_mut() else {
            return;
        };
        relay.request = None;
        relay.nbytes = Some(m.nbytes);
        relay.sent = end;
        self.data.relaying.entry(client).or_default();
        self.outflow_sent(client, len + PART_OVERHEAD_BYTES as u64);
        self.out.push_back(SchedulerOutput::Send(
            client,
            Message::ValuePart(ValuePart {
                key: m.key,
                nbytes: m.nbytes,
                part: m.part,
            }),
        ));
        self.relay_next(id);
    }

    /// A range request was answered with `data`: the key was not there.
    /// Returns false when the request is no range request.
    pub(crate) fn range_missing(&mut self, w: WorkerIdx, m: &Data) -> bool {
        self.range_failed(w, m.request, true)
    }

    /// A range request `request` to `w` got no range (a `busy`, an error,
    /// or `w` left). Returns false when `request` is no range request.
    pub(crate) fn range_refused(&mut self, w: WorkerIdx, request: u64) -> bool {
        self.range_failed(w, request, false)
    }

    fn range_failed(&mut self, w: WorkerIdx, request: u64, lost_there: bool) -> bool {
        let Some(&id) = self.data.ranges.get(&request) else {
            return false;
        };
        let ours = self
            .data
            .gathers
            .get(&id)
            .and_then(|g| g.relays.current.as_ref())
            .is_some_and(|r| r.worker == w && r.request == Some(request));
        if ours {
            self.data.ranges.remove(&request);
            self.relay_failed(id, w, lost_there);
        }
        true
    }

    /// Worker `w` left: the relays waiting for it go on with other holders.
    pub(crate) fn relays_worker_left(&mut self, w: WorkerIdx) {
        let mut requests: Vec<u64> = self.data.ranges.keys().copied().collect();
        requests.sort_unstable();
        for request in requests {
            self.range_refused(w, request);
        }
    }

    /// Holder `w` did not send the range asked of it (and no longer holds
    /// the value, when `lost_there`): another holder goes on from there.
    fn relay_failed(&mut self, id: u64, w: WorkerIdx, lost_there: bool) {
        let Some(key) = self
            .data
            .gathers
            .get(&id)
            .and_then(|g| g.relays.current.as_ref())
            .map(|r| r.key.clone())
        else {
            return;
        };
        if lost_there {
            if let Some(t) = self.task_id(&key) {
                if self.remove_replica(t, w) {
                    let task = &self.tasks[t];
                    if task.state() == TaskState::Memory && task.who_has.is_empty() {
                        self.lose_data(t);
                    }
                }
            }
        }
        let next = self.ranged_holder(&key, Some(w));
        let Some(g) = self.data.gathers.get_mut(&id) else {
            return;
        };
        let started = g.relays.started();
        let Some(relay) = g.relays.current.as_mut() else {
            return;
        };
        relay.request = None;
        match next {
            Some(x) => relay.worker = x,
            None if !started => {
                g.relays.current = None;
                g.missing.push(key);
            }
            None => return self.relay_broken(id, key),
        }
        self.relay_next(id);
    }

    /// A value partly sent to its client can be finished by no holder:
    /// the client's connection is closed (nothing else may follow the
    /// parts), and the log says why.
    fn relay_broken(&mut self, id: u64, key: Key) {
        let Some(g) = self.data.gathers.remove(&id) else {
            return;
        };
        let client = g.client;
        let sent = g.relays.current.as_ref().map_or(0, |r| r.sent);
        let shown = self
            .conns
            .get(&client)
            .map(|c| c.name.clone().unwrap_or_else(|| format!("client {}", c.id)))
            .unwrap_or_else(|| "a client".into());
        self.observe.log(
            LogRecord::new(
                Level::Warn,
                "gather-broken",
                format!(
                    "closed {shown}'s connection: its gather of {key} had sent {sent} bytes of the value in parts when no worker holding it was left to send the rest; it may gather the key again"
                ),
            ),
        );
        self.data.relaying.remove(&client);
        self.drop_conn(client, Departure::Lost);
        self.out.push_back(SchedulerOutput::Close(client));
    }
}
