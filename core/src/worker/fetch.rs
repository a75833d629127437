//! Dependencies from peers: one get-data per holder, busy, failures, timeouts, missing-data;
//! and the time and bytes fetched, which heartbeats tell (`transfer_us`, `transfer_bytes`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::execute::TaskState;
use super::WorkerState;
use crate::messages::{Busy, Data, GetData, MissingData};
use crate::{Key, Message, RawValue, Timestamp};

/// First delay before asking a `busy` holder again; doubles per answer.
pub const BUSY_RETRY_DELAY_MIN: Duration = Duration::from_millis(10);

/// Longest delay before asking a `busy` holder again.
pub const BUSY_RETRY_DELAY_MAX: Duration = Duration::from_secs(1);

/// `busy` answers for one key before the worker gives up on that holder.
pub const BUSY_ANSWERS_MAX: u32 = 30;

/// How long a get-data to a peer may go unanswered before that holder
/// counts as failed for its keys (a peer that hangs without closing). Long
/// enough for a 256 MiB value at a few MB/s.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a holder whose connection failed is tried only after others.
pub const FAILED_ADDRESS_MEMORY: Duration = Duration::from_secs(10);

/// A dependency being obtained.
#[derive(Debug, Default)]
pub(super) struct Fetch {
    /// Holders not asked yet (or asked again after `busy`), in who_has order.
    pub(super) candidates: Vec<String>,
    /// Holders that answered missing or could not be reached.
    pub(super) tried: Vec<String>,
    /// The request asking for it now.
    pub(super) in_flight: Option<u64>,
    /// In the pending or delayed list.
    pub(super) queued: bool,
    pub(super) busy_answers: u32,
    /// Tasks waiting for it, as (slot, seq).
    pub(super) dependents: Vec<(usize, u64)>,
}

#[derive(Debug)]
pub(super) struct PeerRequest {
    pub(super) address: String,
    pub(super) outstanding: HashSet<Key>,
    /// When it was sent, or when its last `data` reply came: the transfer
    /// time a reply adds starts here, so a reply split in several `data`
    /// counts the request's time once.
    pub(super) counted_until: Timestamp,
}

impl WorkerState {
    /// A `data` or `busy` from the holder at `address`, answering one of
    /// our `get-data` requests. Anything else is ignored (the connection
    /// routes only these here).
    pub(super) fn peer_reply(&mut self, address: &str, message: Message) {
        self.dirty = true;
        match message {
            Message::Data(Data {
                request,
                data,
                missing,
            }) => self.data_arrived(address, request, data, missing),
            Message::Busy(Busy { request }) => self.busy_arrived(address, request),
            _ => {}
        }
    }

    /// The connection to the holder at `address` failed (refused, reset,
    /// bad handshake, protocol error): its requests are tried elsewhere.
    pub(super) fn holder_failed(&mut self, address: &str) {
        let failed: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.address == address)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.request_failed(id);
        }
    }

    /// A request is given up: its holder counts as failed for its keys.
    pub(super) fn request_failed(&mut self, id: u64) {
        let Some(request) = self.requests.remove(&id) else {
            return;
        };
        self.dirty = true;
        self.failed_addresses
            .insert(request.address.clone(), self.now);
        for key in request.outstanding {
            self.holder_lacks(&key, &request.address, id);
        }
    }

    /// Counts the task's dependencies absent from the store, registers it
    /// with their fetches, and makes it ready when none are absent.
    ///
    /// The holders a compute-task lists are the scheduler's newest word:
    /// a holder an earlier compute-task listed and this one does not has
    /// lost the data, or its worker was declared dead (perhaps while it
    /// hangs, answering nothing); so it is no longer a candidate, and a
    /// fetch waiting on it is abandoned and asked of the listed holders.
    pub(super) fn request_missing_deps(&mut self, slot: usize) {
        let task = &self.tasks[slot];
        let seq = task.seq;
        let mut missing = 0;
        for dep in &task.deps {
            if self.data.contains_key(dep) {
                continue;
            }
            missing += 1;
            let fetch = self.fetches.entry(dep.clone()).or_default();
            fetch.dependents.push((slot, seq));
            if let Some(listed) = task.who_has.get(dep) {
                fetch.candidates.retain(|a| listed.contains(a));
                let stale = fetch.in_flight.filter(|id| {
                    self.requests
                        .get(id)
                        .is_some_and(|r| !listed.contains(&r.address))
                });
                if let Some(id) = stale {
                    fetch.in_flight = None;
                    if let Some(request) = self.requests.get_mut(&id) {
                        // A late answer for this key is then ignored.
                        request.outstanding.remove(dep);
                        if request.outstanding.is_empty() {
                            self.requests.remove(&id);
                        }
                    }
                }
            }
            for address in task.who_has.get(dep).into_iter().flatten() {
                if *address == self.config.address {
                    // Listed as held here, but it is not: counts as tried.
                    if !fetch.tried.contains(address) {
                        fetch.tried.push(address.clone());
                    }
                } else if !fetch.candidates.contains(address) && !fetch.tried.contains(address) {
                    fetch.candidates.push(address.clone());
                }
            }
            if fetch.in_flight.is_none() && !fetch.queued {
                fetch.queued = true;
                self.pending_fetches.push(dep.clone());
            }
        }
        let task = &mut self.tasks[slot];
        task.missing = missing;
        if missing == 0 {
            self.make_ready(slot);
        } else {
            task.state = TaskState::Waiting;
        }
    }

    pub(super) fn data_arrived(
        &mut self,
        address: &str,
        request: u64,
        data: BTreeMap<Key, RawValue>,
        missing: Vec<Key>,
    ) {
        let Some(req) = self.requests.get_mut(&request) else {
            return;
        };
        if req.address != address {
            return;
        }
        let waited = self.now.saturating_duration_since(req.counted_until);
        req.counted_until = self.now;
        self.transfer_us = self
            .transfer_us
            .saturating_add(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));
        let mut arrived = Vec::new();
        for (key, value) in data {
            if req.outstanding.remove(&key) {
                self.transfer_bytes = self
                    .transfer_bytes
                    .saturating_add(value.as_bytes().len() as u64);
                arrived.push((key, value));
            }
        }
        let mut lacking = Vec::new();
        for key in missing {
            if req.outstanding.remove(&key) {
                lacking.push(key);
            }
        }
        if req.outstanding.is_empty() {
            self.requests.remove(&request);
        }
        for (key, value) in arrived {
            let wanted = self
                .fetches
                .get(&key)
                .is_some_and(|f| f.dependents.iter().any(|&d| self.is_live_dependent(d)));
            if wanted {
                let nbytes = self.store(key.clone(), Arc::new(value));
                self.add_keys.insert(key, nbytes);
            } else {
                self.fetches.remove(&key);
            }
        }
        for key in lacking {
            self.holder_lacks(&key, address, request);
        }
    }

    /// `address` could not give `key` (answered missing, or failed): try
    /// the next holder.
    pub(super) fn holder_lacks(&mut self, key: &Key, address: &str, request: u64) {
        let Some(fetch) = self.fetches.get_mut(key) else {
            return;
        };
        if fetch.in_flight != Some(request) {
            return;
        }
        fetch.in_flight = None;
        fetch.candidates.retain(|a| a != address);
        if !fetch.tried.iter().any(|a| a == address) {
            fetch.tried.push(address.to_string());
        }
        if !fetch.queued {
            fetch.queued = true;
            self.pending_fetches.push(key.clone());
        }
    }

    pub(super) fn busy_arrived(&mut self, address: &str, request: u64) {
        match self.requests.get(&request) {
            Some(req) if req.address == address => {}
            _ => return,
        }
        let Some(req) = self.requests.remove(&request) else {
            return;
        };
        for key in req.outstanding {
            let Some(fetch) = self.fetches.get_mut(&key) else {
                continue;
            };
            if fetch.in_flight != Some(request) {
                continue;
            }
            fetch.in_flight = None;
            fetch.busy_answers += 1;
            if fetch.busy_answers > BUSY_ANSWERS_MAX {
                self.holder_lacks_now(&key, address);
                continue;
            }
            // Other holders first; this one again at the end of the list.
            fetch.candidates.retain(|a| a != address);
            let others = !fetch.candidates.is_empty();
            fetch.candidates.push(address.to_string());
            fetch.queued = true;
            if others {
                self.pending_fetches.push(key);
            } else {
                let shift = (fetch.busy_answers - 1).min(16);
                let delay = (BUSY_RETRY_DELAY_MIN * (1u32 << shift)).min(BUSY_RETRY_DELAY_MAX);
                self.delayed_fetches.push((self.now + delay, key));
            }
        }
    }

    pub(super) fn holder_lacks_now(&mut self, key: &Key, address: &str) {
        if let Some(fetch) = self.fetches.get_mut(key) {
            fetch.candidates.retain(|a| a != address);
            if !fetch.tried.iter().any(|a| a == address) {
                fetch.tried.push(address.to_string());
            }
            if !fetch.queued {
                fetch.queued = true;
                self.pending_fetches.push(key.clone());
            }
        }
    }

    /// No holder is left for `key`: every task waiting for it is given
    /// back with `missing-data` and dropped.
    pub(super) fn dependency_lost(&mut self, key: Key) {
        let Some(fetch) = self.fetches.remove(&key) else {
            return;
        };
        for dependent in fetch.dependents {
            if !self.is_live_dependent(dependent) {
                continue;
            }
            let task = self.remove_task(dependent.0);
            self.emit(Message::MissingData(MissingData {
                key: key.clone(),
                addresses: fetch.tried.clone(),
                task: task.key,
            }));
        }
    }

    pub(super) fn send_fetches(&mut self) {
        let mut batches: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for key in std::mem::take(&mut self.pending_fetches) {
            let Some(fetch) = self.fetches.get(&key) else {
                continue;
            };
            let live = fetch.dependents.iter().any(|&d| self.is_live_dependent(d));
            if !live {
                self.fetches.remove(&key);
                continue;
            }
            let choice = fetch
                .candidates
                .iter()
                .position(|a| !self.failed_addresses.contains_key(a))
                .or(if fetch.candidates.is_empty() {
                    None
                } else {
                    Some(0)
                });
            let Some(at) = choice else {
                self.dependency_lost(key);
                continue;
            };
            let Some(fetch) = self.fetches.get_mut(&key) else {
                continue;
            };
            fetch.queued = false;
            let address = fetch.candidates.remove(at);
            batches.entry(address).or_default().push(key);
        }
        for (address, keys) in batches {
            let request = self.next_request;
            self.next_request += 1;
            for key in &keys {
                if let Some(fetch) = self.fetches.get_mut(key) {
                    fetch.in_flight = Some(request);
                }
            }
            self.request_deadlines
                .push_back((self.now + FETCH_TIMEOUT, request));
            self.requests.insert(
                request,
                PeerRequest {
                    address: address.clone(),
                    outstanding: keys.iter().cloned().collect(),
                    counted_until: self.now,
                },
            );
            if !self.send_to_holder(&address, GetData { request, keys }) {
                self.request_failed(request);
            }
        }
    }
}
