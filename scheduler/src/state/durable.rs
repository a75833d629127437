//! What the state keeps in the journal (`--journal DIR`), and how it comes
//! back after a crash. Pure, like the rest of the state: changes go out as
//! records framed in the state's buffer ([`SchedulerState::take_journal`]),
//! each marked in the outputs by a [`SchedulerOutput::Journal`] (the event
//! loop makes them durable before anything after the marker is sent), and
//! [`SchedulerState::restore`] replays records before the loop starts.
//!
//! Records ([`crate::journal::record`]): accepted graphs and wants,
//! releases, cancels, dataset changes, task outcomes (finished, with the
//! worker holding the result; failed for good), retries used and workers
//! lost while a task ran (so a restart gives no fresh tries), client
//! sessions ended. A
//! compaction snapshot ([`SchedulerState::journal_snapshot`]) writes the
//! live state as the same records, so one replay path reads both.
//!
//! After a restore:
//! - Every client session is *detached*: its wants are kept under a
//!   connection id of its own (high bit set, never a reactor's) for
//!   [`SchedulerStateConfig::client_grace`]; events for it are dropped
//!   (the client gets every outcome again when it comes back, see
//!   [`SchedulerState::reattach`]); after the grace its wants end.
//! - Results are not in memory anywhere the scheduler knows of: workers
//!   that come back list what they hold (`register-worker` `held`, dask/1.1)
//!   and those results are *adopted* ([`SchedulerState::adopt_held`]).
//!   Placement waits until every worker the journal named as a holder is
//!   back, or [`SchedulerStateConfig::restore_worker_wait`] has passed, so
//!   held results are not computed again by the first worker back.
//! - A task that was processing is placed again, as a new run: the worker
//!   that ran it dropped it when it lost the scheduler, so no late result
//!   of that run is ever heard; a result it finished meanwhile is listed
//!   as held and adopted.
//! - Scattered data comes back as a task in memory on no worker yet,
//!   awaiting the workers that stored it (its `scattered` record names
//!   them); one that lists it gives it a holder again. If none does before
//!   placement starts, it is lost for good (`KeyLost`), as when its last
//!   holder dies.

use std::collections::{BTreeMap, BTreeSet};

use dask_core::messages::{
    CancelKeys, PublishDataset, ReleaseKeys, TaskErred, TaskSpec, UnpublishDataset, UpdateGraph,
};

use dask_core::auth::NonceSource;

use super::*;
use crate::journal::format;
use crate::journal::record::{push_snapshot_record, snapshot_records, JournalRecord, RecordKind};

/// Connection ids of detached sessions have this bit set (a reactor's ids
/// are a 32-bit generation over a 32-bit index: never this high).
pub(crate) const DETACHED_CONN_BIT: u64 = 1 << 63;

/// The session of the records that build a snapshot's graph (no client's).
const SNAPSHOT_SESSION: &str = "";

/// The journal side of the state.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    /// Records are not emitted (replaying them, or shutting down).
    quiet: bool,
    /// Session token of each client, connected or detached.
    pub(crate) sessions: HashMap<String, ConnId>,
    /// Makes session tokens (from `SchedulerStateConfig::session_seed`).
    session_tokens: Option<NonceSource>,
    next_detached: u64,
    /// When detached sessions end, if any are left.
    detached_until: Option<Timestamp>,
    /// Set by a restore until placement may start.
    restoring: Option<Restoring>,
    /// Records emitted and not taken yet, framed as the journal file holds
    /// them (`journal::format`): encoded in place, one buffer per wakeup,
    /// where a buffer per record cost an allocation, a copy and a free.
    pub(crate) framed: Vec<u8>,
}

/// Room a new buffer of framed records starts with, at most: the next
/// wakeup's records likely take as much room as the last one's, unless
/// that one held a large graph.
const FRAMED_ROOM_MAX: usize = 256 << 10;

#[derive(Debug, Default)]
struct Restoring {
    /// Placement starts at this time at the latest.
    hold_until: Option<Timestamp>,
    /// Workers the journal named as holders, not back yet.
    awaited: BTreeSet<String>,
    /// Results the journal knew in memory and not adopted yet: their
    /// bytes and last holders (written into snapshots while restoring).
    last_known: HashMap<Key, (u64, Vec<String>)>,
}

/// What [`SchedulerState::restore`] brought back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Records replayed (snapshot and events).
    pub records: usize,
    /// Tasks kept.
    pub tasks: usize,
    /// Client sessions waiting for their client.
    pub sessions: usize,
    /// Datasets.
    pub datasets: usize,
    /// Results last known in memory, awaited from their workers.
    pub results: usize,
    /// Workers named as holders, awaited before placement starts.
    pub workers_awaited: usize,
    /// Graphs that could not be accepted again (they referred to keys
    /// the journal did not know).
    pub graphs_dropped: usize,
}

impl SchedulerState {
    /// Whether records are emitted (journaling, and not replaying).
    pub(crate) fn journaling(&self) -> bool {
        self.config.journal && !self.durable.quiet
    }

    /// Emits `record` when journaling (and not replaying).
    pub(crate) fn journal(&mut self, record: impl FnOnce(&Self) -> JournalRecord) {
        if self.journaling() {
            let record = record(self);
            self.emit_record(|out| record.encode_into(out));
        }
    }

    /// Emits the `release` record of client `conn`'s `keys`.
    pub(crate) fn journal_release(&mut self, conn: ConnId, keys: &KeyList) {
        if self.journaling() {
            let session = self.clients.get(&conn).map_or("", |c| c.session.as_str());
            format::encode_record_with(
                &mut self.durable.framed,
                format::RecordKind::Event,
                |out| JournalRecord::encode_release(out, session, keys),
            );
            self.out.push_back(SchedulerOutput::Journal);
        }
    }

    /// Emits the record that `payload` writes (framed in place).
    pub(crate) fn emit_record(&mut self, payload: impl FnOnce(&mut Vec<u8>)) {
        format::encode_record_with(&mut self.durable.framed, format::RecordKind::Event, payload);
        self.out.push_back(SchedulerOutput::Journal);
    }

    /// The records emitted since the last call (one per
    /// [`SchedulerOutput::Journal`]), framed as the journal file holds
    /// them, for the journal's writer.
    pub fn take_journal(&mut self) -> Vec<u8> {
        let room = self.durable.framed.len().min(FRAMED_ROOM_MAX);
        std::mem::replace(&mut self.durable.framed, Vec::with_capacity(room))
    }

    /// [`SchedulerState::take_journal`] as one buffer per record (the
    /// records of a journal file), for simulations and tests.
    pub fn take_journal_records(&mut self) -> Vec<Vec<u8>> {
        let framed = self.take_journal();
        let (records, _) = format::decode_records(&framed);
        records
            .into_iter()
            .map(|r| framed[r.payload].to_vec())
            .collect()
    }

    /// Emits a record of `kind` for client `conn` carrying `message`, and
    /// gives the message back (a graph is not copied to be written).
    pub(crate) fn journal_message(
        &mut self,
        kind: RecordKind,
        conn: ConnId,
        message: Message,
    ) -> Message {
        if !self.config.journal || self.durable.quiet {
            return message;
        }
        let record = JournalRecord::new(kind, self.session_of(conn), message);
        self.emit_record(|out| record.encode_into(out));
        record.message
    }

    /// The session token of client `conn` (`""` for none).
    pub(crate) fn session_of(&self, conn: ConnId) -> &str {
        self.clients.get(&conn).map_or("", |c| c.session.as_str())
    }

    /// A new session token: 128 bits of HMAC-SHA256 under the configured
    /// key of a count, as hex. A client proves who it is with the
    /// cluster's credentials; the token says which session it was, and
    /// knowing one's own token gives no other (an earlier scheme, an
    /// invertible mix of a 64-bit seed, gave them all away).
    pub(crate) fn new_session_token(&mut self) -> String {
        let seed = self.config.session_seed;
        let source = self
            .durable
            .session_tokens
            .get_or_insert_with(|| NonceSource::new(seed));
        loop {
            let bytes = source.next_nonce();
            let token: String = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
            // A restored session may hold one (the same key, restarted).
            if !self.durable.sessions.contains_key(&token) {
                return token;
            }
        }
    }

    /// The session token a client's hello reply tells: the detached
    /// session it asked to resume, else a new one.
    pub(crate) fn session_for_hello(&mut self, resume: Option<&str>) -> String {
        match resume {
            Some(s)
                if self
                    .durable
                    .sessions
                    .get(s)
                    .is_some_and(|&c| Self::is_detached(c)) =>
            {
                s.to_owned()
            }
            _ => self.new_session_token(),
        }
    }

    /// Whether `conn` is a detached session (no connection behind it).
    pub(crate) fn is_detached(conn: ConnId) -> bool {
        conn.0 & DETACHED_CONN_BIT != 0
    }

    /// Whether placement waits (a restore awaits the workers it knew).
    pub(crate) fn placement_held(&self) -> bool {
        self.durable
            .restoring
            .as_ref()
            .is_some_and(|r| r.hold_until.is_some())
    }

    /// Deadlines of the journal side, for [`SchedulerState::poll_timeout`].
    pub(crate) fn durable_deadline(&self) -> Option<Timestamp> {
        let hold = self.durable.restoring.as_ref().and_then(|r| r.hold_until);
        [hold, self.durable.detached_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Ends the placement hold and detached sessions that are due.
    pub(crate) fn durable_timeout(&mut self, now: Timestamp) {
        if self
            .durable
            .restoring
            .as_ref()
            .and_then(|r| r.hold_until)
            .is_some_and(|at| at <= now)
        {
            self.end_hold();
        }
        if self.durable.detached_until.is_some_and(|at| at <= now) {
            self.durable.detached_until = None;
            let mut detached: Vec<ConnId> = self
                .clients
                .keys()
                .copied()
                .filter(|&c| Self::is_detached(c))
                .collect();
            detached.sort();
            for conn in detached {
                self.remove_client(conn);
            }
        }
    }

    /// Placement starts: the workers that came back have listed what they
    /// hold, so a result last known elsewhere is gone (computed again when
    /// needed).
    fn end_hold(&mut self) {
        let Some(restoring) = self.durable.restoring.take() else {
            return;
        };
        // Scattered data no worker brought back cannot be computed.
        let mut unheld: Vec<TaskId> = restoring
            .last_known
            .keys()
            .filter_map(|key| self.task_id(key))
            .filter(|&t| self.awaits_holder(t))
            .collect();
        unheld.sort();
        for t in unheld {
            self.lose_data(t);
        }
    }

    /// Whether a restore awaits the workers that held scattered `key`
    /// (in memory on none of them yet).
    pub(crate) fn restore_awaits_holder(&self, key: &str) -> bool {
        self.durable
            .restoring
            .as_ref()
            .is_some_and(|r| r.last_known.contains_key(key))
    }

    /// Whether `t` is scattered data restored in memory that no worker
    /// holds yet (only while a restore awaits its workers).
    pub(crate) fn awaits_holder(&self, t: TaskId) -> bool {
        let task = &self.tasks[t];
        task.def().is_none() && task.state() == TaskState::Memory && task.who_has.is_empty()
    }

    /// Quiet: nothing more is journaled (the scheduler is shutting down:
    /// its clients are not gone, they may come back to the next one).
    pub(crate) fn journal_quiet(&mut self) {
        self.durable.quiet = true;
    }

    // ---- restore ----------------------------------------------------------

    /// Replays a journal's snapshot and events (as [`crate::journal::Journal::open`]
    /// gives them) into this new state, before any connection. The error
    /// names the record that cannot be read.
    pub fn restore(
        &mut self,
        snapshot: Option<&[u8]>,
        events: &[Vec<u8>],
    ) -> Result<RestoreSummary, String> {
        let mut summary = RestoreSummary::default();
        let in_snapshot = match snapshot {
            Some(s) => snapshot_records(s).map_err(|e| format!("the snapshot: {e}"))?,
            None => Vec::new(),
        };
        let mut records = Vec::with_capacity(in_snapshot.len() + events.len());
        for (i, bytes) in in_snapshot.iter().enumerate() {
            let r = JournalRecord::decode(bytes)
                .map_err(|e| format!("record {} of the snapshot: {e}", i + 1))?;
            records.push(r);
        }
        for (i, bytes) in events.iter().enumerate() {
            let r = JournalRecord::decode(bytes)
                .map_err(|e| format!("event record {} after the snapshot: {e}", i + 1))?;
            records.push(r);
        }
        self.durable.quiet = true;
        self.durable.restoring = Some(Restoring::default());
        summary.records = records.len();
        for record in records {
            if !self.replay(record) {
                summary.graphs_dropped += 1;
            }
            self.run_all_checks();
        }
        self.durable.quiet = false;
        // What replay said to nobody.
        self.out.clear();
        self.pending_free.clear();
        self.stuck.clear();
        let now = self.now;
        let Some(mut restoring) = self.durable.restoring.take() else {
            return Ok(summary);
        };
        restoring.last_known.retain(|key, _| {
            self.task_id(key)
                .is_some_and(|t| self.tasks[t].state() != TaskState::Erred)
        });
        restoring.awaited = restoring
            .last_known
            .values()
            .flat_map(|(_, holders)| holders.iter().cloned())
            .collect();
        summary.tasks = self.tasks.len();
        summary.sessions = self.durable.sessions.len();
        summary.datasets = self.datasets.len();
        summary.results = restoring.last_known.len();
        summary.workers_awaited = restoring.awaited.len();
        if !restoring.awaited.is_empty() {
            restoring.hold_until = Some(now + self.config.restore_worker_wait);
        }
        let held = restoring.hold_until.is_some();
        self.durable.restoring = Some(restoring);
        if !held {
            self.end_hold();
        }
        if summary.sessions > 0 {
            self.durable.detached_until = Some(now + self.config.client_grace);
        }
        Ok(summary)
    }

    /// The connection id of a session's (detached) client, made if new.
    fn detached_client(&mut self, session: &str) -> ConnId {
        if let Some(&conn) = self.durable.sessions.get(session) {
            return conn;
        }
        self.durable.next_detached += 1;
        let conn = ConnId(DETACHED_CONN_BIT | self.durable.next_detached);
        let client = Client {
            // Its want requests are kept for the client that comes back.
            v1_1: true,
            session: session.to_owned(),
            ..Client::default()
        };
        self.clients.insert(conn, client);
        self.durable.sessions.insert(session.to_owned(), conn);
        conn
    }

    /// Applies one record. False when a graph could not be accepted again.
    fn replay(&mut self, record: JournalRecord) -> bool {
        let JournalRecord {
            kind,
            session,
            holders,
            message,
        } = record;
        // The connection that plays the record: a session's, or one that
        // is nobody's for datasets (their replies go nowhere).
        let nobody = ConnId(DETACHED_CONN_BIT);
        match (kind, message) {
            (RecordKind::Graph, Message::UpdateGraph(mut m)) => {
                let conn = self.detached_client(&session);
                m.ack = None;
                return self.update_graph(conn, m);
            }
            (RecordKind::Release, Message::ReleaseKeys(m)) => {
                if let Some(&conn) = self.durable.sessions.get(&session) {
                    for key in m.keys.iter() {
                        if let Some(t) = self.task_id(key) {
                            self.remove_want(conn, t);
                        }
                    }
                }
            }
            (RecordKind::Cancel, Message::CancelKeys(m)) => {
                if let Some(&conn) = self.durable.sessions.get(&session) {
                    self.cancel_keys(conn, m);
                }
            }
            (RecordKind::Put, Message::PublishDataset(m)) => self.publish_dataset(nobody, m),
            (RecordKind::Delete, Message::UnpublishDataset(m)) => self.unpublish_dataset(nobody, m),
            (RecordKind::Finished, Message::TaskFinished(m)) => {
                let known = self.task_id(&m.key).is_some();
                if let (Some(r), true) = (self.durable.restoring.as_mut(), known) {
                    r.last_known.insert(m.key, (m.nbytes, holders));
                }
            }
            (RecordKind::Erred, Message::TaskErred(m)) => {
                if let Some(r) = self.durable.restoring.as_mut() {
                    r.last_known.remove(&m.key);
                }
                if let Some(t) = self.task_id(&m.key) {
                    if self.tasks[t].state() != TaskState::Erred {
                        self.fail(t, TaskError::reported(m));
                    }
                }
            }
            (RecordKind::Retried, Message::TaskErred(m)) => {
                if let Some(t) = self.task_id(&m.key) {
                    let rare = self.tasks[t].rare_mut();
                    rare.retries_left = rare.retries_left.saturating_sub(1);
                }
            }
            (RecordKind::Lost, Message::KeyLost(m)) => {
                if let Some(t) = self.task_id(&m.key) {
                    let worker = holders.first().map_or("", String::as_str);
                    self.tasks[t].rare_mut().count_lost_worker(worker);
                }
            }
            (RecordKind::Scattered, Message::KeyFinished(m)) if self.task_id(&m.key).is_none() => {
                let conn = self.detached_client(&session);
                let t = self.add_scattered(m.key.clone(), m.nbytes);
                self.add_want(conn, t, m.request.unwrap_or(0));
                if let Some(r) = self.durable.restoring.as_mut() {
                    r.last_known.insert(m.key, (m.nbytes, holders));
                }
            }
            (RecordKind::Gone, _) => {
                if let Some(&conn) = self.durable.sessions.get(&session) {
                    self.remove_client(conn);
                }
            }
            // `decode` checked that kinds and messages match.
            _ => {}
        }
        true
    }

    // ---- reconnection -----------------------------------------------------

    /// A client proved its credentials and named detached `session`: it
    /// takes over that session's wants on `conn` and gets the event of
    /// every want that has one (finished or failed). False when no such
    /// session waits.
    pub(crate) fn reattach(
        &mut self,
        conn: ConnId,
        session: &str,
        v1_1: bool,
        key_waiting: bool,
    ) -> bool {
        let Some(&old) = self.durable.sessions.get(session) else {
            return false;
        };
        if !Self::is_detached(old) {
            return false;
        }
        let Some(mut client) = self.clients.remove(&old) else {
            return false;
        };
        client.v1_1 = v1_1;
        client.key_waiting = key_waiting;
        let wanted: Vec<TaskId> = client.wanted_in_order();
        for want in client.wants.values_mut() {
            want.finished_sent = false;
            want.waiting_told = false;
        }
        self.clients.insert(conn, client);
        self.durable.sessions.insert(session.to_owned(), conn);
        for &t in &wanted {
            for c in self.tasks[t].wanted_by.iter_mut() {
                if *c == old {
                    *c = conn;
                }
            }
        }
        for t in wanted {
            let task = &self.tasks[t];
            match task.state() {
                TaskState::Memory => self.notify_finished(t, None),
                TaskState::Erred => {
                    if let Some(error) = task.rare().error.clone() {
                        let m = self.error_event(t, &error, self.want_request(conn, t));
                        self.send(conn, m);
                        // Lost data: told once, the want ends (as for a
                        // connected client in `mark_erred`).
                        if error.lost {
                            self.remove_want(conn, t);
                        }
                    }
                }
                _ => {}
            }
        }
        if !self
            .clients
            .keys()
            .any(|&c| Self::is_detached(c) && c.0 != DETACHED_CONN_BIT)
        {
            self.durable.detached_until = None;
        }
        true
    }

    /// A worker that registered lists what it holds: results of known
    /// tasks not in memory are adopted (as if it had just computed them),
    /// copies of results in memory count as replicas, the rest is freed
    /// on it. A worker the restore awaited is back.
    pub(crate) fn adopt_held(&mut self, w: WorkerIdx, held: BTreeMap<Key, u64>) {
        for (key, nbytes) in held {
            let Some(t) = self.task_id(&key) else {
                self.free_on(w, &key);
                continue;
            };
            let task = &self.tasks[t];
            match task.state() {
                TaskState::Memory => {
                    if let Some(r) = self.durable.restoring.as_mut() {
                        r.last_known.remove(&key);
                    }
                    self.add_replica(t, w);
                }
                TaskState::Erred => self.free_on(w, &key),
                _ if task.def().is_none() => self.free_on(w, &key),
                _ => {
                    if let Some(r) = self.durable.restoring.as_mut() {
                        r.last_known.remove(&key);
                    }
                    self.stop_and_set(t, TaskState::Memory);
                    self.reached_memory(t, w, nbytes, None);
                }
            }
        }
        let name = self.workers[w].name.clone();
        let mut all_back = false;
        if let Some(r) = self.durable.restoring.as_mut() {
            r.awaited.remove(&name);
            all_back = r.awaited.is_empty();
        }
        if all_back {
            self.end_hold();
        }
    }

    // ---- snapshot ---------------------------------------------------------

    /// The names of workers `ws` (records name workers, not indexes).
    pub(crate) fn worker_names(&self, ws: &[WorkerIdx]) -> Vec<String> {
        ws.iter()
            .filter_map(|w| self.workers.get(w.ix()))
            .map(|w| w.name.clone())
            .collect()
    }

    /// The holders a restore last knew for `key` (none when not restoring).
    fn last_known_holders(&self, key: &str) -> Vec<String> {
        self.durable
            .restoring
            .as_ref()
            .and_then(|r| r.last_known.get(key))
            .map(|(_, holders)| holders.clone())
            .unwrap_or_default()
    }

    /// The live state as journal records (see the module docs): what a
    /// compaction writes.
    pub fn journal_snapshot(&self) -> Vec<u8> {
        let mut snapshot = Vec::new();
        let mut push = |r: &JournalRecord| push_snapshot_record(&mut snapshot, r);
        // Scattered data first: the graph may refer to it.
        for (_, task) in &self.tasks {
            if task.def().is_some() || task.state() != TaskState::Memory {
                continue;
            }
            let holders = if task.who_has.is_empty() {
                self.last_known_holders(task.key())
            } else {
                self.worker_names(&task.who_has)
            };
            push(&JournalRecord::scattered(
                SNAPSHOT_SESSION,
                task.key_owned(),
                task.nbytes,
                0,
                holders,
            ));
        }
        let mut specs = Vec::new();
        let mut wanted = Vec::new();
        for (_, task) in &self.tasks {
            let Some(def) = task.def() else { continue };
            specs.push(TaskSpec {
                key: task.key_owned(),
                function: String::clone(def.function),
                args: def.args(&self.tasks, &mut Vec::new()),
                kwargs: def.kwargs().cloned(),
                priority: (task.priority() != 0).then_some(task.priority()),
                resources: def.resources().cloned(),
                retries: (task.rare().retries_left != 0).then_some(task.rare().retries_left),
                workers: def.workers().cloned(),
            });
            if task.is_wanted() {
                wanted.push(task.key_owned());
            }
        }
        let graph = |request: u64, tasks: Vec<TaskSpec>, wanted: Vec<Key>| {
            Message::UpdateGraph(UpdateGraph {
                request,
                tasks,
                wanted,
                ack: None,
            })
        };
        push(&JournalRecord::new(
            RecordKind::Graph,
            SNAPSHOT_SESSION,
            graph(0, specs, wanted.clone()),
        ));
        let mut clients: Vec<(&ConnId, &Client)> = self.clients.iter().collect();
        clients.sort_by_key(|(c, _)| **c);
        for (_, client) in clients {
            let mut by_request: BTreeMap<u64, Vec<Key>> = BTreeMap::new();
            for t in client.wanted_in_order() {
                let want = &client.wants[&t];
                let key = self.tasks[t].key_owned();
                by_request.entry(want.request).or_default().push(key);
            }
            for (request, keys) in by_request {
                push(&JournalRecord::new(
                    RecordKind::Graph,
                    &client.session,
                    graph(request, Vec::new(), keys),
                ));
            }
        }
        // Releases not taken in yet remove the wants just written (see
        // `release`): their records were written before this snapshot.
        for (conn, keys) in self.releases.pending() {
            let session = self.clients.get(&conn).map_or("", |c| c.session.as_str());
            push(&JournalRecord::new(
                RecordKind::Release,
                session,
                Message::ReleaseKeys(ReleaseKeys { keys: keys.clone() }),
            ));
        }
        for (name, ids) in &self.datasets {
            let keys: Vec<Key> = ids.iter().map(|t| self.tasks[t].key_owned()).collect();
            push(&JournalRecord::new(
                RecordKind::Put,
                "",
                Message::PublishDataset(PublishDataset {
                    request: 0,
                    name: name.clone(),
                    keys,
                    overwrite: Some(true),
                }),
            ));
        }
        push(&JournalRecord::new(
            RecordKind::Release,
            SNAPSHOT_SESSION,
            Message::ReleaseKeys(ReleaseKeys {
                keys: wanted.into(),
            }),
        ));
        push(&JournalRecord::gone(SNAPSHOT_SESSION));
        for (_, task) in &self.tasks {
            // Lost workers count against the task (KilledWorker); names
            // beyond the kept ones are counts without a name.
            let rare = task.rare();
            let unnamed = (rare.suspicious as usize).saturating_sub(rare.lost_on.len());
            for _ in 0..unnamed {
                push(&JournalRecord::lost(task.key_owned(), ""));
            }
            for name in &rare.lost_on {
                push(&JournalRecord::lost(task.key_owned(), name));
            }
            match task.state() {
                // Scattered data: its record came first.
                TaskState::Memory if task.def().is_none() => {}
                TaskState::Memory => {
                    let holders = self.worker_names(&task.who_has);
                    push(&JournalRecord::finished(
                        task.key_owned(),
                        task.nbytes,
                        holders,
                    ));
                }
                TaskState::Erred => {
                    if let Some(e) = task
                        .rare()
                        .error
                        .as_ref()
                        .filter(|e| e.origin.as_str() == task.key())
                    {
                        push(&JournalRecord::erred(TaskErred {
                            key: task.key_owned(),
                            error_type: e.error_type.clone(),
                            message: e.message.clone(),
                            traceback: e.traceback.clone(),
                        }));
                    }
                }
                _ => {
                    let known = self
                        .durable
                        .restoring
                        .as_ref()
                        .and_then(|r| r.last_known.get(task.key()));
                    if let Some((nbytes, holders)) = known {
                        push(&JournalRecord::finished(
                            task.key_owned(),
                            *nbytes,
                            holders.clone(),
                        ));
                    }
                }
            }
        }
        snapshot
    }
}

/// The records of client messages the journal keeps (a release's is
/// [`JournalRecord::encode_release`]).
pub(crate) fn cancel_record(session: &str, m: &CancelKeys) -> JournalRecord {
    JournalRecord::new(RecordKind::Cancel, session, Message::CancelKeys(m.clone()))
}

/// See [`cancel_record`].
pub(crate) fn delete_record(m: &UnpublishDataset) -> JournalRecord {
    JournalRecord::new(RecordKind::Delete, "", Message::UnpublishDataset(m.clone()))
}
