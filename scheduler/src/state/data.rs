//! Data requests: scatter (put-data), gather (get-data over worker
//! connections), who-has, cluster-info and datasets.

use std::collections::{BTreeMap, HashMap};

use dask_core::messages::{Busy, UpdateGraph};
use dask_core::messages::{
    ClusterInfo, ClusterInfoReply, Data, DataStored, Dataset, Datasets, Gather, GatherReply,
    GetData, GetDataset, ListDatasets, OkReply, PublishDataset, PutData, Scatter, UnpublishDataset,
    WhoHas, WhoHasReply, WorkerInfo,
};
use dask_core::FRAME_BYTES_MAX;

use super::*;
use crate::journal::record::{JournalRecord, RecordKind};

/// Times a `get-data` answered with `busy` is asked again
/// ([`GATHER_BUSY_RETRY_INTERVAL`] apart)
/// before its keys are reported missing.
pub const GATHER_BUSY_RETRIES_MAX: u32 = 50;

/// A client's `gather` being answered.
#[derive(Debug)]
pub(crate) struct PendingGather {
    pub(crate) client: ConnId,
    request: u64,
    /// `get-data` requests not answered yet.
    outstanding: usize,
    data: BTreeMap<Key, RawValue>,
    pub(crate) missing: Vec<Key>,
    /// Its values relayed a range at a time, once the others are in
    /// ([`relay`](super::relay)).
    pub(crate) relays: super::relay::GatherRelays,
    /// Keys whose value a holder could not send in any message (5002 to
    /// a `get-data` of that key alone): the gather fails with 5002.
    too_large: Vec<Key>,
    /// Bytes its values take, by their `nbytes` when it started (see
    /// [`outflow`](super::outflow)).
    estimate: u64,
}

/// One `get-data` sent to a worker for a gather.
#[derive(Debug)]
struct PendingGet {
    gather: u64,
    worker: WorkerIdx,
    keys: Vec<Key>,
    busy_retries: u32,
}

/// One `put-data` sent to a worker for a scatter.
#[derive(Debug)]
struct PendingPut {
    worker: WorkerIdx,
    keys: Vec<Key>,
}

/// A key being scattered: its `put-data` requests (one per worker, several
/// with broadcast) are not all answered yet. The key becomes a task, in
/// memory on every worker that stored it, only once all are: a client gets
/// `key-finished` when every copy is in place, and copies stored for a key
/// its client no longer wants are freed, never turned into a task.
#[derive(Debug)]
struct ScatteringKey {
    client: ConnId,
    /// `put-data` requests of it not answered yet (nor ended by their
    /// worker leaving).
    outstanding: u32,
    /// Workers that stored it so far (none is counted as a holder yet).
    stored: Vec<WorkerIdx>,
    nbytes: u64,
    /// The client released or cancelled the key, or left, before the last
    /// answer: the stored copies are freed.
    abandoned: bool,
    /// Why the last put that stored nothing failed, for `key-lost`.
    failure: &'static str,
    /// The `scatter`'s request: the want it makes answers it.
    request: u64,
}

/// Requests the scheduler has sent to workers and awaits answers for.
#[derive(Debug, Default)]
pub(crate) struct DataRequests {
    pub(crate) gathers: HashMap<u64, PendingGather>,
    /// `get-value-range` requests not answered yet, and their gather.
    pub(crate) ranges: HashMap<u64, u64>,
    /// Clients a value is being relayed to in parts, with the messages
    /// held for them until the reply carrying it is sent.
    pub(crate) relaying: HashMap<ConnId, Vec<Message>>,
    gets: HashMap<u64, PendingGet>,
    puts: HashMap<u64, PendingPut>,
    /// Keys with a put-data in flight.
    scattering: HashMap<Key, ScatteringKey>,
    /// Gets answered `busy`, to ask again at `busy_retry_at`.
    pub(crate) busy: Vec<u64>,
    /// When the gets in `busy` are asked again.
    pub(crate) busy_retry_at: Option<Timestamp>,
    next_gather: u64,
}

impl DataRequests {
    /// Where messages to `conn` wait while a value goes to it in parts.
    pub(crate) fn held_during_relay(&mut self, conn: ConnId) -> Option<&mut Vec<Message>> {
        self.relaying.get_mut(&conn)
    }
}

impl SchedulerState {
    pub(crate) fn request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Workers matching a list of names or addresses (all when absent).
    fn workers_matching(&self, filter: &Option<Vec<String>>) -> Vec<WorkerIdx> {
        self.workers
            .iter()
            .filter(|(_, w)| {
                filter
                    .as_ref()
                    .is_none_or(|f| f.iter().any(|a| *a == w.name || *a == w.address))
            })
            .map(|(i, _)| WorkerIdx::new(i))
            .collect()
    }

    // ---- scatter ----------------------------------------------------------

    pub(crate) fn scatter(&mut self, conn: ConnId, m: Scatter) {
        // A key the client released may be left to a release not done yet.
        if m.data.keys().any(|k| self.task_id(k).is_some()) {
            self.run_all_checks();
        }
        let taken: Vec<Key> = m
            .data
            .keys()
            .filter(|k| self.task_id(*k).is_some() || self.data.scattering.contains_key(*k))
            .cloned()
            .collect();
        if !taken.is_empty() {
            return self.reply_error(
                conn,
                ErrorCode::DuplicateKey,
                "keys already known to the scheduler".into(),
                Some(m.request),
                Some(taken),
            );
        }
        let targets = self.workers_matching(&m.workers);
        if targets.is_empty() {
            return self.reply_error(
                conn,
                ErrorCode::NoWorkers,
                "no worker to store the data on".into(),
                Some(m.request),
                Some(m.data.keys().cloned().collect()),
            );
        }
        // A value too large for a frame reaches only workers that take
        // values in parts (dask/1.1 `value-parts`).
        let unsendable: Vec<Key> = m
            .data
            .iter()
            .filter(|(_, v)| v.len() > dask_core::worker::VALUE_BYTES_MAX)
            .filter(|_| targets.iter().any(|w| !self.takes_value_parts(*w)))
            .map(|(k, _)| k.clone())
            .collect();
        if !unsendable.is_empty() {
            return self.reply_error(
                conn,
                ErrorCode::ValueTooLarge,
                format!(
                    "values over {} bytes fit in no frame, and a worker to hold them does not take values in parts (dask/1.1 value-parts): scatter them to workers that do",
                    dask_core::worker::VALUE_BYTES_MAX
                ),
                Some(m.request),
                Some(unsendable),
            );
        }
        if m.ack == Some(true) {
            self.acknowledge(conn, m.request);
        }
        let mut per_worker: BTreeMap<WorkerIdx, BTreeMap<Key, RawValue>> = BTreeMap::new();
        if m.broadcast.unwrap_or(false) {
            for &w in &targets {
                per_worker.insert(w, m.data.clone());
            }
        } else {
            // Each value to the worker holding the fewest bytes so far.
            let mut load: Vec<(u64, WorkerIdx)> = targets
                .iter()
                .map(|&w| (self.workers[w].stored_bytes, w))
                .collect();
            for (key, value) in m.data {
                let Some(slot) = load.iter_mut().min() else {
                    break;
                };
                slot.0 += value.as_bytes().len() as u64;
                per_worker.entry(slot.1).or_default().insert(key, value);
            }
        }
        for (w, data) in per_worker {
            let request = self.request_id();
            let keys: Vec<Key> = data.keys().cloned().collect();
            for k in &keys {
                let entry = self
                    .data
                    .scattering
                    .entry(k.clone())
                    .or_insert(ScatteringKey {
                        client: conn,
                        outstanding: 0,
                        stored: Vec::new(),
                        nbytes: 0,
                        abandoned: false,
                        failure: "the worker did not store it",
                        request: m.request,
                    });
                entry.outstanding += 1;
            }
            self.data
                .puts
                .insert(request, PendingPut { worker: w, keys });
            self.send_worker(w, Message::PutData(PutData { request, data }));
        }
    }

    /// Whether worker `w`'s connection negotiated `value-parts`.
    fn takes_value_parts(&self, w: WorkerIdx) -> bool {
        let conn = self.workers[w].conn;
        self.conns.get(&conn).is_some_and(|c| c.value_parts)
    }

    /// Whether `key` is being scattered (its `put-data` not all answered).
    pub(crate) fn is_scattering(&self, key: &Key) -> bool {
        self.data.scattering.contains_key(key)
    }

    /// Client `conn` released (or cancelled) `key` before its scatter was
    /// over: the copies are freed when it is. Returns the scatter's request
    /// when the key was being scattered for that client (and not yet
    /// abandoned).
    pub(crate) fn abandon_scatter(&mut self, conn: ConnId, key: &Key) -> Option<u64> {
        match self.data.scattering.get_mut(key) {
            Some(s) if s.client == conn && !s.abandoned => {
                s.abandoned = true;
                Some(s.request)
            }
            _ => None,
        }
    }

    /// Invariants of the scatters in flight (see [`SchedulerState::validate`]).
    pub(crate) fn validate_scatters(&self) -> Result<(), String> {
        let mut puts: HashMap<&Key, u32> = HashMap::new();
        for put in self.data.puts.values() {
            if !self.workers.contains(put.worker.ix()) {
                return Err("a put-data is awaited from a removed worker".into());
            }
            for k in &put.keys {
                *puts.entry(k).or_default() += 1;
            }
        }
        for (key, s) in &self.data.scattering {
            if self.task_id(key).is_some() {
                return Err(format!("{key} is both a task and being scattered"));
            }
            if puts.get(key).copied().unwrap_or(0) != s.outstanding || s.outstanding == 0 {
                return Err(format!(
                    "{key} is being scattered with {} puts outstanding, {} in flight",
                    s.outstanding,
                    puts.get(key).copied().unwrap_or(0)
                ));
            }
            if let Some(w) = s.stored.iter().find(|w| !self.workers.contains(w.ix())) {
                return Err(format!("{key} is stored on removed worker {w:?}"));
            }
        }
        if puts.keys().any(|k| !self.data.scattering.contains_key(*k)) {
            return Err("a put-data in flight for a key not being scattered".into());
        }
        Ok(())
    }

    /// A client left: its scatters in flight are abandoned, and its
    /// gathers are not answered (a later connection may get its id).
    pub(crate) fn data_client_left(&mut self, conn: ConnId) {
        for s in self.data.scattering.values_mut() {
            if s.client == conn {
                s.abandoned = true;
            }
        }
        self.data.gathers.retain(|_, g| g.client != conn);
        let gathers = &self.data.gathers;
        self.data.ranges.retain(|_, id| gathers.contains_key(id));
        self.data.relaying.remove(&conn);
        self.outflow_client_left(conn);
    }

    /// One put-data of `key` is over: stored on `stored_on` with `nbytes`,
    /// or not stored (`None`, for the reason `failure`). After the last
    /// one the key is in memory on every worker that stored it and its
    /// client gets `key-finished` (or `key-lost` when none did); copies of
    /// an abandoned key are freed instead.
    fn put_done(&mut self, key: &Key, stored_on: Option<(WorkerIdx, u64)>, failure: &'static str) {
        let Some(s) = self.data.scattering.get_mut(key) else {
            return;
        };
        s.outstanding = s.outstanding.saturating_sub(1);
        match stored_on {
            Some((w, nbytes)) => {
                if !s.stored.contains(&w) {
                    s.stored.push(w);
                }
                s.nbytes = s.nbytes.max(nbytes);
            }
            None => s.failure = failure,
        }
        if s.outstanding > 0 {
            return;
        }
        let Some(s) = self.data.scattering.remove(key) else {
            return;
        };
        let wanted = !s.abandoned && self.clients.contains_key(&s.client);
        // A task of that key cannot appear meanwhile (update-graph refuses
        // keys being scattered); if one did, the copies are not its data.
        if !wanted || self.task_id(key).is_some() {
            for &w in &s.stored {
                self.free_on(w, key.clone());
            }
            if wanted {
                self.scatter_lost(&s, key.clone(), "the key was defined meanwhile");
            }
            return;
        }
        if s.stored.is_empty() {
            return self.scatter_lost(&s, key.clone(), s.failure);
        }
        let t = self.add_scattered(key.clone(), s.nbytes);
        for &w in &s.stored {
            self.add_replica(t, w);
        }
        self.journal(|st| {
            JournalRecord::scattered(
                st.session_of(s.client),
                key.clone(),
                s.nbytes,
                s.request,
                st.worker_names(&s.stored),
            )
        });
        self.add_want(s.client, t, s.request);
    }

    /// A task for scattered data `key` of `nbytes`, in memory (its holders
    /// are the caller's to add).
    pub(crate) fn add_scattered(&mut self, key: Key, nbytes: u64) -> TaskId {
        let order = self.next_order;
        self.next_order += 1;
        let mut task = Task::new(key, None, TaskState::Memory, order);
        task.group = self.observe.task_added(task.key(), TaskState::Memory);
        task.nbytes = nbytes;
        let t = TaskId::new(self.tasks.insert(task));
        self.key_index.insert(&self.tasks, t);
        self.to_check.push(t);
        t
    }

    pub(crate) fn data_stored(&mut self, w: WorkerIdx, m: DataStored) {
        if self.data.puts.get(&m.request).is_none_or(|p| p.worker != w) {
            return;
        }
        let Some(put) = self.data.puts.remove(&m.request) else {
            return;
        };
        for key in put.keys {
            let stored = m
                .nbytes
                .get(&key)
                .map(|&n| (w, super::tasks::plausible_nbytes(n)));
            self.put_done(&key, stored, "the worker did not store it");
        }
    }

    fn scatter_lost(&mut self, s: &ScatteringKey, key: Key, why: &str) {
        let Some(client) = self.clients.get(&s.client) else {
            return;
        };
        let request = client.v1_1.then_some(s.request);
        self.send(
            s.client,
            Message::KeyLost(KeyLost {
                key,
                message: format!("scatter failed: {why}"),
                request,
            }),
        );
    }

    // ---- gather -----------------------------------------------------------

    /// Asks the holders for a gather's values (when
    /// [`outflow`](super::outflow) lets it start).
    pub(crate) fn start_gather(&mut self, conn: ConnId, m: Gather, estimate: u64) {
        let id = self.data.next_gather;
        self.data.next_gather += 1;
        let mut g = PendingGather {
            client: conn,
            request: m.request,
            outstanding: 0,
            data: BTreeMap::new(),
            missing: Vec::new(),
            too_large: Vec::new(),
            estimate,
            relays: Default::default(),
        };
        let mut per_worker: BTreeMap<WorkerIdx, Vec<Key>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for key in m.keys {
            // A key listed twice is answered once (a holder's reply has
            // it once, so a second ask would look like a lost replica).
            if !seen.insert(key.clone()) {
                continue;
            }
            if self.relays(conn, &key) {
                g.relays.waiting.push_back(key);
                continue;
            }
            match self.holder(&key, None) {
                Some(w) => per_worker.entry(w).or_default().push(key),
                None => g.missing.push(key),
            }
        }
        self.data.gathers.insert(id, g);
        self.request_gets(id, per_worker);
        self.maybe_answer_gather(id);
    }

    /// Whether a gather of `conn` is being answered.
    pub(crate) fn gather_in_progress(&self, conn: ConnId) -> bool {
        self.data.gathers.values().any(|g| g.client == conn)
    }

    /// Bytes of the large gathers being answered (see
    /// [`outflow`](super::outflow)).
    pub(crate) fn large_gathers_in_flight(&self) -> u64 {
        self.data
            .gathers
            .values()
            .map(|g| g.estimate)
            .filter(|&e| e > super::outflow::GATHER_SMALL_BYTES)
            .fold(0u64, u64::saturating_add)
    }

    /// A worker holding `key` in memory, other than `except`: the one with
    /// the fewest tasks assigned.
    fn holder(&self, key: &Key, except: Option<WorkerIdx>) -> Option<WorkerIdx> {
        self.holder_where(key, except, |_| true)
    }

    /// As [`SchedulerState::holder`], among the holders `fit` accepts.
    pub(crate) fn holder_where(
        &self,
        key: &Key,
        except: Option<WorkerIdx>,
        fit: impl Fn(WorkerIdx) -> bool,
    ) -> Option<WorkerIdx> {
        let t = self.task_id(key)?;
        let task = &self.tasks[t];
        if task.state() != TaskState::Memory {
            return None;
        }
        task.who_has
            .iter()
            .copied()
            .filter(|&w| Some(w) != except && fit(w))
            .min_by_key(|w| {
                self.workers
                    .get(w.ix())
                    .map_or(usize::MAX, |k| k.processing.len())
            })
    }

    fn request_gets(&mut self, gather: u64, per_worker: BTreeMap<WorkerIdx, Vec<Key>>) {
        for (w, keys) in per_worker {
            self.request_get(gather, w, keys);
        }
    }

    fn request_get(&mut self, gather: u64, w: WorkerIdx, keys: Vec<Key>) {
        let request = self.request_id();
        self.send_worker(
            w,
            Message::GetData(GetData {
                request,
                keys: keys.clone(),
            }),
        );
        self.data.gets.insert(
            request,
            PendingGet {
                gather,
                worker: w,
                keys,
                busy_retries: 0,
            },
        );
        if let Some(g) = self.data.gathers.get_mut(&gather) {
            g.outstanding += 1;
        }
    }

    /// Once a gather's values are in, its relays go (unless a value is
    /// too large to send at all), then its reply.
    fn maybe_answer_gather(&mut self, id: u64) {
        let Some(g) = self.data.gathers.get(&id) else {
            return;
        };
        if g.outstanding > 0 {
            return;
        }
        if g.too_large.is_empty() && g.relays.is_pending() {
            return self.relay_next(id);
        }
        self.answer_gather(id);
    }

    /// Answers gather `id` with what it has (its relayed values went
    /// before, in parts): then the client's messages held meanwhile.
    pub(crate) fn answer_gather(&mut self, id: u64) {
        let Some(g) = self.data.gathers.remove(&id) else {
            return;
        };
        let client = g.client;
        let held = self.data.relaying.remove(&client);
        self.answer(g);
        for message in held.into_iter().flatten() {
            self.send(client, message);
        }
    }

    fn answer(&mut self, g: PendingGather) {
        self.gather_answered(g.client, 0);
        if !self.clients.contains_key(&g.client) {
            return;
        }
        if !g.too_large.is_empty() {
            let message = format!(
                "the values of {} do not fit in one message (frame_bytes_max {FRAME_BYTES_MAX} bytes): no client can gather them",
                key_list(&g.too_large)
            );
            return self.reply_error(
                g.client,
                ErrorCode::ValueTooLarge,
                message,
                Some(g.request),
                Some(g.too_large),
            );
        }
        let reply = GatherReply {
            request: g.request,
            status: self.status_for(g.client, g.missing.iter()),
            data: g.data,
            missing: g.missing,
        };
        let in_parts = self.clients.get(&g.client).is_some_and(|c| c.value_parts);
        if !in_parts && !fits_in_a_frame(&reply) {
            // Each value fits alone (holders sent them), not all together.
            let keys: Vec<Key> = reply.data.into_keys().collect();
            let message = format!(
                "the values of the {} keys asked for do not fit in one message together (frame_bytes_max {FRAME_BYTES_MAX} bytes): gather fewer keys per request",
                keys.len()
            );
            return self.reply_error(
                g.client,
                ErrorCode::ValueTooLarge,
                message,
                Some(g.request),
                Some(keys),
            );
        }
        let bytes = reply.data.values().map(|v| v.len() as u64).sum();
        self.gather_answered(g.client, bytes);
        self.send(g.client, Message::GatherReply(reply));
    }

    /// A worker refused a request of ours with a non-fatal `error` (its
    /// fatal errors close the connection). For a `get-data`, 5002 means
    /// the values would not fit in one message: each key it lists is asked
    /// for alone and the others together, and a key refused alone cannot
    /// be sent at all (the gather fails with 5002 naming it); any other
    /// code counts as the keys not delivered. For a `put-data` (its 5002:
    /// a value it will not store), the keys are not stored there.
    pub(crate) fn request_refused(&mut self, w: WorkerIdx, e: ErrorReport) {
        let Some(request) = e.request else {
            return;
        };
        if self.check_answered(w, request, None) {
            return;
        }
        if self.data.puts.get(&request).is_some_and(|p| p.worker == w) {
            let Some(put) = self.data.puts.remove(&request) else {
                return;
            };
            for key in put.keys {
                self.put_done(&key, None, "the worker refused to store it");
            }
            return;
        }
        if self.range_refused(w, request) {
            return;
        }
        if self.data.gets.get(&request).is_none_or(|g| g.worker != w) {
            return;
        }
        let Some(get) = self.data.gets.remove(&request) else {
            return;
        };
        self.data.busy.retain(|&r| r != request);
        if e.code != ErrorCode::ValueTooLarge.number() {
            return self.get_failed(get.gather, w, get.keys, false);
        }
        let Some(g) = self.data.gathers.get_mut(&get.gather) else {
            return;
        };
        g.outstanding = g.outstanding.saturating_sub(1);
        if let [key] = &get.keys[..] {
            g.too_large.push(key.clone());
            return self.maybe_answer_gather(get.gather);
        }
        let listed = e.keys.unwrap_or_default();
        let (mut alone, mut together): (Vec<Key>, Vec<Key>) =
            get.keys.into_iter().partition(|k| listed.contains(k));
        if alone.is_empty() {
            // It named none of them: find out key by key.
            std::mem::swap(&mut alone, &mut together);
        }
        for key in alone {
            self.request_get(get.gather, w, vec![key]);
        }
        if !together.is_empty() {
            self.request_get(get.gather, w, together);
        }
    }

    pub(crate) fn data_reply(&mut self, w: WorkerIdx, mut m: Data) {
        if self.check_answered(w, m.request, Some(&m)) || self.range_missing(w, &m) {
            return;
        }
        if self.data.gets.get(&m.request).is_none_or(|g| g.worker != w) {
            return;
        }
        let Some(get) = self.data.gets.remove(&m.request) else {
            return;
        };
        self.data.busy.retain(|&r| r != m.request);
        let mut not_there = Vec::new();
        if let Some(g) = self.data.gathers.get_mut(&get.gather) {
            for key in get.keys {
                match m.data.remove(&key) {
                    Some(value) => {
                        g.data.insert(key, value);
                    }
                    None => not_there.push(key),
                }
            }
        }
        self.get_failed(get.gather, w, not_there, true);
    }

    /// Keys a worker did not deliver for a gather: its replica is dropped
    /// (when `drop_replica`) and another holder is asked, else missing.
    fn get_failed(&mut self, gather: u64, w: WorkerIdx, keys: Vec<Key>, drop_replica: bool) {
        let mut retry: BTreeMap<WorkerIdx, Vec<Key>> = BTreeMap::new();
        let mut missing = Vec::new();
        // Its client may have left: nothing more to ask for.
        let answering = self.data.gathers.contains_key(&gather);
        for key in keys {
            if drop_replica {
                if let Some(t) = self.task_id(&key) {
                    if self.remove_replica(t, w) {
                        let task = &self.tasks[t];
                        if task.state() == TaskState::Memory && task.who_has.is_empty() {
                            self.lose_data(t);
                        }
                    }
                }
            }
            if !answering {
                continue;
            }
            match self.holder(&key, Some(w)) {
                Some(x) => retry.entry(x).or_default().push(key),
                None => missing.push(key),
            }
        }
        if let Some(g) = self.data.gathers.get_mut(&gather) {
            g.outstanding = g.outstanding.saturating_sub(1);
            g.missing.extend(missing);
        }
        self.request_gets(gather, retry);
        self.maybe_answer_gather(gather);
    }

    pub(crate) fn busy_reply(&mut self, w: WorkerIdx, m: Busy) {
        if self.check_answered(w, m.request, None) || self.range_refused(w, m.request) {
            return;
        }
        let Some(get) = self.data.gets.get_mut(&m.request) else {
            return;
        };
        if get.worker != w {
            return;
        }
        get.busy_retries += 1;
        if get.busy_retries > GATHER_BUSY_RETRIES_MAX {
            let Some(get) = self.data.gets.remove(&m.request) else {
                return;
            };
            self.get_failed(get.gather, w, get.keys, false);
        } else if !self.data.busy.contains(&m.request) {
            self.data.busy.push(m.request);
            if self.data.busy_retry_at.is_none() {
                self.data.busy_retry_at = Some(self.now + GATHER_BUSY_RETRY_INTERVAL);
            }
        }
    }

    /// Asks again for gets answered `busy`.
    pub(crate) fn retry_busy_gets(&mut self) {
        for request in std::mem::take(&mut self.data.busy) {
            let Some(get) = self.data.gets.get(&request) else {
                continue;
            };
            let (w, keys) = (get.worker, get.keys.clone());
            self.send_worker(w, Message::GetData(GetData { request, keys }));
        }
    }

    /// Requests to a worker that left: gets go to other holders; puts
    /// end without a copy there (the key is lost if no worker stored it).
    pub(crate) fn data_worker_left(&mut self, w: WorkerIdx) {
        self.relays_worker_left(w);
        let mut gets: Vec<u64> = self
            .data
            .gets
            .iter()
            .filter(|(_, g)| g.worker == w)
            .map(|(&r, _)| r)
            .collect();
        gets.sort_unstable();
        for r in gets {
            self.data.busy.retain(|&b| b != r);
            if let Some(get) = self.data.gets.remove(&r) {
                self.get_failed(get.gather, w, get.keys, false);
            }
        }
        let mut puts: Vec<u64> = self
            .data
            .puts
            .iter()
            .filter(|(_, p)| p.worker == w)
            .map(|(&r, _)| r)
            .collect();
        puts.sort_unstable();
        // Copies it stored for scatters still in flight are gone with it.
        for s in self.data.scattering.values_mut() {
            s.stored.retain(|&x| x != w);
        }
        for r in puts {
            let Some(put) = self.data.puts.remove(&r) else {
                continue;
            };
            for key in put.keys {
                self.put_done(&key, None, "the worker left before storing it");
            }
        }
    }

    // ---- questions ----------------------------------------------------------

    /// dask/1.1: an `ok` answering `request` (an `ack` asked for it), to a
    /// client that speaks 1.1 (a 1.0 scheduler does not know `ack`).
    pub(crate) fn acknowledge(&mut self, conn: ConnId, request: u64) {
        if self.clients.get(&conn).is_some_and(|c| c.v1_1) {
            self.send(conn, Message::OkReply(OkReply { request }));
        }
    }

    /// dask/1.1: the scheduler state of each key (`forgotten` when no task
    /// of that key is kept), for a client that speaks 1.1; `None` for 1.0.
    fn status_for<'k>(
        &self,
        conn: ConnId,
        keys: impl Iterator<Item = &'k Key>,
    ) -> Option<BTreeMap<Key, String>> {
        if !self.clients.get(&conn).is_some_and(|c| c.v1_1) {
            return None;
        }
        let status = keys
            .map(|key| {
                let state = self.task_state(key.as_str()).unwrap_or("forgotten");
                (key.clone(), state.to_owned())
            })
            .collect();
        Some(status)
    }

    pub(crate) fn who_has(&mut self, conn: ConnId, m: WhoHas) {
        let mut who_has = BTreeMap::new();
        for key in m.keys {
            let addresses = match self.task_id(&key) {
                Some(t) => self.tasks[t]
                    .who_has
                    .iter()
                    .filter_map(|w| self.workers.get(w.ix()).map(|k| k.address.clone()))
                    .collect(),
                None => Vec::new(),
            };
            who_has.insert(key, addresses);
        }
        self.send(
            conn,
            Message::WhoHasReply(WhoHasReply {
                request: m.request,
                status: self.status_for(conn, who_has.keys()),
                who_has,
            }),
        );
    }

    pub(crate) fn cluster_info(&mut self, conn: ConnId, m: ClusterInfo) {
        let workers = self
            .workers
            .iter()
            .map(|(_, w)| WorkerInfo {
                id: w.id,
                name: w.name.clone(),
                address: w.address.clone(),
                nthreads: w.nthreads,
                memory_limit: w.memory_limit,
                resources: w.resources.clone(),
                functions: w.function_list.clone(),
                processing: w.processing.len() as u64,
                stored_keys: w.has_what.len() as u64,
                stored_bytes: w.stored_bytes,
            })
            .collect();
        // From the groups' counts: a pass over 10M tasks (a string each)
        // kept the loop busy for over a second per cluster-info.
        let tasks: BTreeMap<String, u64> = super::observe::STATE_NAMES
            .iter()
            .zip(self.observe.state_counts())
            .filter(|&(_, n)| n > 0)
            .map(|(name, n)| (name.to_string(), n))
            .collect();
        let clients = u32::try_from(self.clients.len()).unwrap_or(u32::MAX);
        self.send(
            conn,
            Message::ClusterInfoReply(ClusterInfoReply {
                request: m.request,
                workers,
                tasks,
                clients,
            }),
        );
    }

    // ---- datasets -----------------------------------------------------------

    pub(crate) fn publish_dataset(&mut self, conn: ConnId, m: PublishDataset) {
        let unknown: Vec<Key> = m
            .keys
            .iter()
            .filter(|k| self.task_id(*k).is_none())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return self.reply_error(
                conn,
                ErrorCode::UnknownKey,
                format!(
                    "dataset {:?} names keys the scheduler does not know",
                    m.name
                ),
                Some(m.request),
                Some(unknown),
            );
        }
        if self.datasets.contains_key(&m.name) && !m.overwrite.unwrap_or(false) {
            return self.reply_error(
                conn,
                ErrorCode::DatasetExists,
                format!("dataset {:?} is already published", m.name),
                Some(m.request),
                None,
            );
        }
        let m = match self.journal_message(RecordKind::Put, conn, Message::PublishDataset(m)) {
            Message::PublishDataset(m) => m,
            _ => return,
        };
        let mut ids: Vec<TaskId> = Vec::with_capacity(m.keys.len());
        for key in &m.keys {
            if let Some(t) = self.task_id(key) {
                if !ids.contains(&t) {
                    ids.push(t);
                }
            }
        }
        for &t in &ids {
            self.tasks[t].rare_mut().dataset_refs += 1;
            if self.tasks[t].state() == TaskState::Released {
                self.activate(t);
            }
        }
        if let Some(old) = self.datasets.insert(m.name, ids) {
            self.release_dataset(old);
        }
        self.send(conn, Message::OkReply(OkReply { request: m.request }));
    }

    fn release_dataset(&mut self, ids: Vec<TaskId>) {
        for t in ids {
            self.tasks[t].rare_mut().dataset_refs -= 1;
            self.to_check.push(t);
        }
    }

    pub(crate) fn unpublish_dataset(&mut self, conn: ConnId, m: UnpublishDataset) {
        match self.datasets.remove(&m.name) {
            Some(ids) => {
                self.journal(|_| super::durable::delete_record(&m));
                self.release_dataset(ids);
                self.send(conn, Message::OkReply(OkReply { request: m.request }));
            }
            None => self.unknown_dataset(conn, m.request, &m.name),
        }
    }

    fn unknown_dataset(&mut self, conn: ConnId, request: u64, name: &str) {
        self.reply_error(
            conn,
            ErrorCode::UnknownDataset,
            format!("no dataset named {name:?}"),
            Some(request),
            None,
        );
    }

    pub(crate) fn get_dataset(&mut self, conn: ConnId, m: GetDataset) {
        let Some(ids) = self.datasets.get(&m.name).cloned() else {
            return self.unknown_dataset(conn, m.request, &m.name);
        };
        let keys: Vec<Key> = ids.iter().map(|t| self.tasks[t].key_owned()).collect();
        self.journal(|s| {
            let wants = UpdateGraph {
                request: m.request,
                tasks: Vec::new(),
                wanted: keys.clone(),
                ack: None,
            };
            JournalRecord::new(
                RecordKind::Graph,
                s.session_of(conn),
                Message::UpdateGraph(wants),
            )
        });
        self.send(
            conn,
            Message::Dataset(Dataset {
                request: m.request,
                name: m.name,
                keys,
            }),
        );
        for t in ids {
            self.add_want(conn, t, m.request);
        }
        self.recheck_stuck();
    }

    pub(crate) fn list_datasets(&mut self, conn: ConnId, m: ListDatasets) {
        let names = self.datasets.keys().cloned().collect();
        self.send(
            conn,
            Message::Datasets(Datasets {
                request: m.request,
                names,
            }),
        );
    }
}

/// Whether `reply` fits in a frame by itself (as the frame encoder
/// decides: the message and a batch header of up to 5 bytes).
fn fits_in_a_frame(reply: &GatherReply) -> bool {
    encoded_len(reply) + 5 <= FRAME_BYTES_MAX
}

/// The length of `reply`'s canonical encoding as a message, without
/// encoding it (its values may be hundreds of MiB).
fn encoded_len(reply: &GatherReply) -> usize {
    fn str_len(n: usize) -> usize {
        n + match n {
            0..=31 => 1,
            32..=255 => 2,
            256..=65535 => 3,
            _ => 5,
        }
    }
    fn container_header(n: usize) -> usize {
        match n {
            0..=15 => 1,
            16..=65535 => 3,
            _ => 5,
        }
    }
    let request = match reply.request {
        0..=127 => 1,
        128..=255 => 2,
        256..=65535 => 3,
        65536..=0xffff_ffff => 5,
        _ => 9,
    };
    container_header(4)
        + str_len(2)
        + str_len("gather-reply".len())
        + str_len("request".len())
        + request
        + str_len("data".len())
        + container_header(reply.data.len())
        + reply
            .data
            .iter()
            .map(|(k, v)| str_len(k.0.len()) + v.as_bytes().len())
            .sum::<usize>()
        + str_len("missing".len())
        + container_header(reply.missing.len())
        + reply
            .missing
            .iter()
            .map(|k| str_len(k.0.len()))
            .sum::<usize>()
}

/// Up to 8 keys, quoted, for a message a person reads.
fn key_list(keys: &[Key]) -> String {
    let mut shown: Vec<String> = keys.iter().take(8).map(|k| format!("{:?}", k.0)).collect();
    if keys.len() > 8 {
        shown.push(format!("and {} more", keys.len() - 8));
    }
    shown.join(", ")
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let key = |n: usize| Key("k".repeat(n));
        let value = |n: usize| RawValue::from_value(&rmpv::Value::Binary(vec![7; n]));
        for (request, keys, missing) in [(0, 0, 0), (200, 3, 1), (70_000, 20, 17), (u64::MAX, 1, 0)]
        {
            let reply = GatherReply {
                request,
                data: (0..keys)
                    .map(|i| (key(i * 40 + 1), value(i * 100)))
                    .collect(),
                missing: (0..missing).map(|i| key(i * 300 + 1)).collect(),
                status: None,
            };
            let bytes = Message::GatherReply(reply.clone()).to_bytes();
            assert_eq!(
                encoded_len(&reply),
                bytes.len(),
                "request {request}, {keys} keys"
            );
        }
    }
}
