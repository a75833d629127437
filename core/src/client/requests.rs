//! Requests: what the driver asks of the scheduler (submit, scatter,
//! gather, datasets, cancel, close) and the bookkeeping of their replies.

use std::collections::BTreeMap;

use super::events::{ClientEvent, KeyState, RequestError, RequestId};
use super::parts::{GraphPart, PartKind, SubmitPlan};
use super::{ClientSession, Pending};
use crate::messages::{
    CancelKeys, Close, ClusterInfo, Gather, GetDataset, ListDatasets, PublishDataset, ReleaseKeys,
    Scatter, TaskSpec, UnpublishDataset, UpdateGraph, WhoHas,
};
use crate::msgpack::RawValue;
use crate::wire::Key;
use crate::Message;

impl ClientSession {
    fn request_id(&mut self) -> RequestId {
        // Releases queued so far go before the request: its reply then
        // confirms them (see `unconfirmed_releases`).
        self.flush_releases();
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    pub(super) fn queue(&mut self, message: Message) {
        self.flush_releases();
        self.transmit.push_back(message);
    }

    /// Queues the releases so far, in `release-keys` of at most about the
    /// size of a graph's part (see [`ClientSession::set_submit_part_bytes`]):
    /// the scheduler takes a message in one event, and 10M futures dropped
    /// at once made one it spent seconds on, answering no one meanwhile.
    pub(super) fn flush_releases(&mut self) {
        if self.to_release.is_empty() {
            return;
        }
        let keys = std::mem::take(&mut self.to_release);
        if self.resumable && self.session_token.is_some() {
            self.unconfirmed_releases.extend(keys.iter().cloned());
            self.release_watermark = self.next_request;
        }
        let mut part: Vec<Key> = Vec::new();
        let mut bytes = 0;
        for key in keys {
            // The key and its string header.
            let size = key.as_str().len() + 5;
            if !part.is_empty() && bytes + size > self.part_bytes {
                let keys = std::mem::take(&mut part);
                self.transmit
                    .push_back(Message::ReleaseKeys(ReleaseKeys { keys: keys.into() }));
                bytes = 0;
            }
            bytes += size;
            part.push(key);
        }
        self.transmit
            .push_back(Message::ReleaseKeys(ReleaseKeys { keys: part.into() }));
    }

    /// Queues a request that expects a reply, or fails it at once when the
    /// session is closed.
    pub(super) fn ask(&mut self, kind: Pending, message: impl FnOnce(u64) -> Message) -> RequestId {
        let id = self.request_id();
        if let Some(reason) = self.closed_reason() {
            let error = RequestError::local(format!("connection closed: {reason}"));
            self.events
                .push_back(ClientEvent::RequestFailed { request: id, error });
            return id;
        }
        self.requests.insert(id, kind);
        self.queue(message(id.0));
        id
    }

    /// Registers the wants of a submit or scatter and queues its message.
    /// The keys by value: the newly wanted ones move into the request's
    /// list (a copy of each was a third of the key table's cost).
    fn ask_wants(&mut self, keys: Vec<Key>, message: impl FnOnce(u64) -> Message) -> RequestId {
        let id = self.request_id();
        // Room for every key at once: a graph's keys are mostly new, and
        // growing the table step by step rehashed it a dozen times for
        // 100k keys (~13% of the client's samples submitting them).
        self.keys.reserve(keys.len());
        let mut fresh = Vec::with_capacity(keys.len());
        for k in keys {
            if self.want(&k, Some(id), id) {
                fresh.push(k);
            }
        }
        if let Some(reason) = self.closed_reason().map(str::to_owned) {
            let error = RequestError::local(format!("connection closed: {reason}"));
            for k in &fresh {
                self.set_state(k, KeyState::Failed(error.clone()));
            }
            return id;
        }
        if !fresh.is_empty() {
            let outstanding = fresh.len();
            self.requests.insert(
                id,
                Pending::Wants {
                    keys: fresh,
                    outstanding,
                },
            );
        }
        self.queue(message(id.0));
        id
    }

    /// Submits `tasks` and wants each key of `wanted` (one local reference
    /// per entry). A refused graph turns its newly wanted keys to
    /// [`KeyState::Failed`].
    ///
    /// A graph of more than twice [`SUBMIT_FIRST_PART_BYTES`](super::SUBMIT_FIRST_PART_BYTES)
    /// (estimated encoding) goes in parts, by the rule of spec/PROTOCOL.md
    /// "A graph larger than a frame": the first of about that size, each
    /// next twice the last, up to [`SUBMIT_PART_BYTES`](super::SUBMIT_PART_BYTES) (or what
    /// [`ClientSession::set_submit_part_bytes`] set, which also bounds the
    /// first); the id returned is the last part's. The same as a
    /// [`SubmitPlan`] handed over part by part with
    /// [`ClientSession::submit_part`].
    pub fn submit(&mut self, tasks: Vec<TaskSpec>, wanted: Vec<Key>) -> RequestId {
        let mut plan = SubmitPlan::new(tasks, wanted, self.part_bytes);
        let mut id = RequestId(0);
        while let Some(part) = plan.next_part() {
            id = self.submit_part(part);
        }
        id
    }

    /// The largest part of a graph in parts (see
    /// [`ClientSession::set_submit_part_bytes`]), for [`SubmitPlan::new`].
    pub fn submit_part_bytes(&self) -> usize {
        self.part_bytes
    }

    /// Queues one part of a [`SubmitPlan`] (parts in the plan's order, none
    /// left out): its keys are wanted from now on; after the last part, the
    /// keys wanted only for later parts are released. Its request id.
    pub fn submit_part(&mut self, part: GraphPart) -> RequestId {
        // Room for every part's keys at once: reserved part by part, the
        // table grew by doubling, each time hashing every key again
        // (a quarter of the client's time submitting 1M independent tasks).
        self.keys.reserve(part.reserve);
        let id = match part.kind {
            PartKind::Whole { tasks, wanted } => self.submit_whole(tasks, wanted),
            PartKind::Part(part) => {
                let mut refs = part.wanted;
                refs.extend(part.needed_later);
                let unique = part.listed;
                let tasks = part.tasks;
                let id = self.ask_wants(refs, move |request| {
                    Message::UpdateGraph(UpdateGraph {
                        request,
                        tasks,
                        wanted: unique,
                        ack: None,
                    })
                });
                if !self.is_closed() {
                    self.part_requests.insert(id);
                }
                id
            }
        };
        for k in part.release_after {
            self.release(k.as_str());
        }
        id
    }

    fn submit_whole(&mut self, tasks: Vec<TaskSpec>, wanted: Vec<Key>) -> RequestId {
        let mut unique: Vec<Key> = Vec::with_capacity(wanted.len());
        // foldhash, not std's SipHash: the user's own keys, hashed once each.
        let mut seen: foldhash::HashSet<&Key> =
            foldhash::HashSet::with_capacity_and_hasher(wanted.len(), Default::default());
        for k in &wanted {
            if seen.insert(k) {
                unique.push(k.clone());
            }
        }
        drop(seen);
        self.ask_wants(wanted, move |request| {
            Message::UpdateGraph(UpdateGraph {
                request,
                tasks,
                wanted: unique,
                ack: None,
            })
        })
    }

    /// The parts of a graph submitted in parts are at most about `bytes`
    /// (estimated encoding) from now on, the first too (so a graph of more
    /// than twice `bytes` goes in parts when that is under twice
    /// [`SUBMIT_FIRST_PART_BYTES`](super::SUBMIT_FIRST_PART_BYTES)), and releases are sent in
    /// `release-keys` of about that size (default [`SUBMIT_PART_BYTES`](super::SUBMIT_PART_BYTES)).
    pub fn set_submit_part_bytes(&mut self, bytes: usize) {
        self.part_bytes = bytes.max(1);
    }

    /// Stores values on workers under these keys (one local reference per
    /// key); each becomes finished when stored.
    pub fn scatter(
        &mut self,
        data: BTreeMap<Key, RawValue>,
        workers: Option<Vec<String>>,
        broadcast: bool,
    ) -> RequestId {
        let keys: Vec<Key> = data.keys().cloned().collect();
        self.ask_wants(keys, move |request| {
            Message::Scatter(Scatter {
                request,
                data,
                workers,
                broadcast: broadcast.then_some(true),
                ack: None,
            })
        })
    }

    /// A barrier (dask/1.1): answered by [`ClientEvent::Done`] once the
    /// scheduler has handled everything sent before it, so every graph and
    /// scatter sent before was accepted, or refused (their keys then are
    /// [`KeyState::Failed`], which the driver sees first). It is an empty
    /// `update-graph` with `ack`. A scheduler speaking dask/1.0 has no
    /// acknowledgement: the request then fails.
    pub fn barrier(&mut self) -> RequestId {
        if let Some(n) = &self.negotiated {
            if !crate::handshake::has_1_1(n.version) {
                let id = self.request_id();
                self.events.push_back(ClientEvent::RequestFailed {
                    request: id,
                    error: no_1_1("acknowledgement"),
                });
                return id;
            }
        }
        self.ask(Pending::Barrier, |request| {
            Message::UpdateGraph(UpdateGraph {
                request,
                tasks: Vec::new(),
                wanted: Vec::new(),
                ack: Some(true),
            })
        })
    }

    /// Barriers queued before the handshake, when it turns out the
    /// scheduler speaks dask/1.0: they fail (no `ok` would come).
    pub(super) fn fail_barriers(&mut self) {
        let mut barriers: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, kind)| matches!(kind, Pending::Barrier))
            .map(|(id, _)| *id)
            .collect();
        barriers.sort();
        for request in barriers {
            self.requests.remove(&request);
            self.events.push_back(ClientEvent::RequestFailed {
                request,
                error: no_1_1("acknowledgement"),
            });
        }
    }

    /// Wants again held keys whose `key-finished` came but whose value
    /// turned out missing (its holder died and the scheduler computes it
    /// again, as a dask/1.1 `gather-reply` status says): each goes back to
    /// [`KeyState::Pending`] and gets `key-finished` again once back in
    /// memory. No local reference is added. Keys not held or not finished
    /// are left alone.
    pub fn want_again(&mut self, keys: Vec<Key>) {
        if self.is_closed() {
            return;
        }
        let request = self.request_id();
        let mut again = Vec::new();
        for k in keys {
            let Some(e) = self.keys.get_mut(&k) else {
                continue;
            };
            if matches!(e.state, KeyState::Finished { .. }) {
                e.state = KeyState::Pending;
                let earlier = std::mem::replace(&mut e.want_request, request);
                self.earlier_requests.insert(k.clone(), earlier);
                // A refusal (the key forgotten meanwhile: 4001) fails it.
                e.origin = Some(request);
                self.events.push_back(ClientEvent::KeyUpdated {
                    key: k.clone(),
                    state: KeyState::Pending,
                });
                again.push(k);
            }
        }
        if again.is_empty() {
            return;
        }
        self.requests.insert(
            request,
            Pending::Wants {
                keys: again.clone(),
                outstanding: again.len(),
            },
        );
        self.queue(Message::UpdateGraph(UpdateGraph {
            request: request.0,
            tasks: Vec::new(),
            wanted: again,
            ack: None,
        }));
    }

    /// Asks for the values of `keys`: answered by [`ClientEvent::Gathered`].
    pub fn gather(&mut self, keys: Vec<Key>) -> RequestId {
        self.ask(Pending::Gather, |request| {
            Message::Gather(Gather { request, keys })
        })
    }

    /// Asks where `keys` are held: answered by [`ClientEvent::WhoHas`].
    pub fn who_has(&mut self, keys: Vec<Key>) -> RequestId {
        self.ask(Pending::WhoHas, |request| {
            Message::WhoHas(WhoHas { request, keys })
        })
    }

    /// Asks for the cluster's description: answered by
    /// [`ClientEvent::ClusterInfo`].
    pub fn cluster_info(&mut self) -> RequestId {
        self.ask(Pending::ClusterInfo, |request| {
            Message::ClusterInfo(ClusterInfo { request })
        })
    }

    /// Publishes `keys` under `name`: answered by [`ClientEvent::Done`].
    pub fn publish_dataset(&mut self, name: &str, keys: Vec<Key>, overwrite: bool) -> RequestId {
        let name = name.to_owned();
        self.ask(Pending::Ok, |request| {
            Message::PublishDataset(PublishDataset {
                request,
                name,
                keys,
                overwrite: overwrite.then_some(true),
            })
        })
    }

    /// Removes a dataset: answered by [`ClientEvent::Done`].
    pub fn unpublish_dataset(&mut self, name: &str) -> RequestId {
        let name = name.to_owned();
        self.ask(Pending::Ok, |request| {
            Message::UnpublishDataset(UnpublishDataset { request, name })
        })
    }

    /// Asks for a dataset's keys, which the client then holds: answered by
    /// [`ClientEvent::Dataset`].
    pub fn get_dataset(&mut self, name: &str) -> RequestId {
        let name = name.to_owned();
        self.ask(Pending::GetDataset, |request| {
            Message::GetDataset(GetDataset { request, name })
        })
    }

    /// Asks for the dataset names: answered by [`ClientEvent::Datasets`].
    pub fn list_datasets(&mut self) -> RequestId {
        self.ask(Pending::ListDatasets, |request| {
            Message::ListDatasets(ListDatasets { request })
        })
    }

    /// Cancels keys (for every client with `force`); each held one gets a
    /// `key-cancelled` event from the scheduler.
    pub fn cancel(&mut self, keys: Vec<Key>, force: bool) {
        if self.is_closed() || keys.is_empty() {
            return;
        }
        self.queue(Message::CancelKeys(CancelKeys {
            keys,
            force: force.then_some(true),
        }));
    }

    /// Ends the session politely: queues `close`; the session is closed
    /// once the driver has sent it.
    pub fn close(&mut self) {
        if self.is_closed() || self.close_sent {
            return;
        }
        self.close_sent = true;
        self.queue(Message::Close(Close {
            reason: Some("client closed".into()),
            reconnect: None,
        }));
        self.enter_closed("closed by the client".into());
    }
}

/// The error of a request that needs dask/1.1 from a dask/1.0 scheduler.
fn no_1_1(what: &str) -> RequestError {
    RequestError::local(format!(
        "the scheduler speaks dask/1.0, which has no {what} (dask/1.1 has)"
    ))
}
