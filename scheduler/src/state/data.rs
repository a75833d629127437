//! Data requests: scatter (put-data) here; gather (get-data over worker
//! connections) in [`gather`]; who-has, cluster-info and datasets in
//! [`queries`].

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

mod gather;
mod queries;

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
    pub(crate) fn abandon_scatter(&mut self, conn: ConnId, key: &str) -> Option<u64> {
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
                self.free_on(w, key);
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
}
