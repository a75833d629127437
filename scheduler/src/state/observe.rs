//! What the scheduler shows of itself: task groups with counts by state,
//! counters, the task stream, the clients' graphs, the operator's log
//! records, and the [`StateSnapshot`] the dashboard and `/metrics` serve.
//!
//! Everything here is an aggregate kept up to date as tasks move (a few
//! additions per transition, no allocation per task), so a snapshot costs
//! in workers, groups and clients, never in tasks: the HTTP side reads
//! snapshots that the event loop publishes at a bounded rate and never the
//! live tables (Dask's dashboard slowing its scheduler is a known problem,
//! dask/distributed #4055, #6103).
//!
//! Label cardinality stays bounded: at most [`TASK_GROUPS_MAX`] groups are
//! named; keys of further prefixes count in the group `other`.

use std::borrow::Cow;
use std::collections::VecDeque;

use dask_core::log::{Level, LogRecord};
use dask_core::messages::{Metrics, UpdateGraph};
use serde::Serialize;

pub use super::snapshot::{
    ClientView, GraphView, GroupView, StateSnapshot, StreamView, WorkerView,
};

use super::*;

/// Most task groups named; tasks of later prefixes count in `other`.
pub const TASK_GROUPS_MAX: usize = 256;

/// Longest group name kept (longer prefixes are cut at a character
/// boundary): a group name is a metrics label value.
pub const GROUP_NAME_BYTES_MAX: usize = 64;

/// Finished tasks kept for the task stream.
pub const STREAM_KEPT: usize = 10_000;

/// Finished tasks a snapshot carries (the most recent).
pub const STREAM_SHOWN: usize = 2_000;

/// Graphs remembered per client, for the dashboard.
const GRAPHS_KEPT_PER_CLIENT: usize = 8;

/// Log records held until the loop takes them; past this the oldest go
/// (a loop that never drains, as in tests, holds a bounded queue).
const LOG_QUEUE_MAX: usize = 1_000;

/// Erred tasks logged one by one per [`ERRED_LOG_WINDOW`]; the rest are
/// counted in one line at the end of the window.
const ERRED_LOGGED_PER_WINDOW: u32 = 10;
const ERRED_LOG_WINDOW: Duration = Duration::from_secs(10);

/// The scheduler task states, in the order of [`TaskState::index`].
pub const STATE_NAMES: [&str; STATE_COUNT] = [
    "released",
    "waiting",
    "no-worker",
    "queued",
    "processing",
    "memory",
    "erred",
];

/// Number of scheduler task states.
pub const STATE_COUNT: usize = 7;

impl TaskState {
    /// Position in [`STATE_NAMES`].
    pub(crate) fn index(self) -> usize {
        match self {
            TaskState::Released => 0,
            TaskState::Waiting => 1,
            TaskState::NoWorker => 2,
            TaskState::Queued => 3,
            TaskState::Processing(_) => 4,
            TaskState::Memory => 5,
            TaskState::Erred => 6,
        }
    }
}

/// A task group: tasks whose keys share a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GroupId(u16);

impl GroupId {
    /// The group of keys past [`TASK_GROUPS_MAX`] prefixes.
    pub(crate) const OTHER: GroupId = GroupId(0);

    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// The group name of a key, as Dask's `key_split`: the words of the key
/// before the first that is not alphabetic (`inc-5c9e0f` -> `inc`,
/// `load-data-3` -> `load-data`, `('x-1', 0)` -> `x`), 32 hex digits ->
/// `data`, `<Class ...>` -> `Class`.
pub fn key_group(key: &str) -> Cow<'_, str> {
    let mut words = key.split('-');
    let first = words.next().unwrap_or("");
    let mut end;
    let mut name: Cow<'_, str> = if first.chars().next().is_some_and(char::is_alphabetic) {
        end = first.len();
        Cow::Borrowed(first)
    } else {
        end = usize::MAX;
        let w = first.split(',').next().unwrap_or("");
        Cow::Owned(
            w.trim_matches(|c| matches!(c, '_' | '\'' | '(' | ')' | '"'))
                .to_owned(),
        )
    };
    for word in words {
        if ends_group(word) {
            break;
        }
        match &mut name {
            Cow::Borrowed(_) if end != usize::MAX => {
                end += 1 + word.len();
                name = Cow::Borrowed(&key[..end]);
            }
            _ => {
                let owned = name.to_mut();
                owned.push('-');
                owned.push_str(word);
            }
        }
    }
    if name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Cow::Borrowed("data");
    }
    if let Some(inner) = name.strip_prefix('<') {
        let class = inner
            .trim_matches(|c| c == '<' || c == '>')
            .split_whitespace()
            .next()
            .unwrap_or("")
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_owned();
        name = Cow::Owned(class);
    }
    if name.is_empty() {
        return Cow::Borrowed("other");
    }
    if name.len() > GROUP_NAME_BYTES_MAX {
        let mut cut = GROUP_NAME_BYTES_MAX;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        return Cow::Owned(name[..cut].to_owned());
    }
    name
}

/// Whether a word after a key's first ends its group name (`key_group`):
/// empty, not all letters, or eight hex digits.
fn ends_group(word: &str) -> bool {
    let hex8 = word.len() == 8 && word.bytes().all(|b| b.is_ascii_hexdigit());
    word.is_empty() || !word.chars().all(char::is_alphabetic) || hex8
}

/// Whether `key_group` gives `name` for every key that is `name`, or
/// `name`, a dash and a word that ends a group, then anything: a name of
/// words kept as they are (not `data`, a class or cut short).
fn is_plain_group(name: &str) -> bool {
    name.chars().next().is_some_and(char::is_alphabetic)
        && name.len() <= GROUP_NAME_BYTES_MAX
        && !(name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        && !name.split('-').skip(1).any(ends_group)
}

/// Whether `key_group(key)` is the plain group name `name` (see
/// [`is_plain_group`]), read from the key's start alone.
fn in_plain_group(key: &str, name: &str) -> bool {
    match key.strip_prefix(name) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .is_some_and(|r| ends_group(r.split('-').next().unwrap_or(""))),
        None => false,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TaskGroup {
    pub(crate) name: String,
    pub(crate) counts: [u64; STATE_COUNT],
    pub(crate) finished_total: u64,
    pub(crate) erred_total: u64,
    pub(crate) lost_total: u64,
    pub(crate) compute_us_total: u64,
}

impl TaskGroup {
    fn new(name: String) -> TaskGroup {
        TaskGroup {
            name,
            counts: [0; STATE_COUNT],
            finished_total: 0,
            erred_total: 0,
            lost_total: 0,
            compute_us_total: 0,
        }
    }
}

/// One finished task of the stream. No key is copied per task: the key is
/// looked up when a snapshot is taken, if the task is still kept (its slot
/// holds the same graph order).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamRecord {
    pub(crate) task: TaskId,
    pub(crate) order: u64,
    pub(crate) group: GroupId,
    pub(crate) worker: u64,
    pub(crate) start: Timestamp,
    pub(crate) end: Timestamp,
}

/// What the dashboard shows of a client besides its wants.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientRecord {
    pub(crate) name: Option<String>,
    pub(crate) id: u64,
    pub(crate) connected_at: Timestamp,
    pub(crate) graphs_total: u64,
    pub(crate) graphs: VecDeque<GraphView>,
}

/// Time and bytes workers spent fetching values from peers, as their
/// heartbeats tell them (dask/1.1 `transfer_us`, `transfer_bytes`,
/// `transfer_local_bytes`; see PROTOCOL.md "Transfer totals").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransferTotals {
    /// Microseconds from `get-data` sent to its last `data` reply, summed.
    pub us: u64,
    /// Bytes of values the replies brought.
    pub bytes: u64,
    /// Of `bytes`, those read from peers' memory on the same host
    /// (`value-local`) rather than by their connections.
    pub local_bytes: u64,
}

impl TransferTotals {
    /// Both totals of `self` and `other` added.
    pub(crate) fn plus(self, other: TransferTotals) -> TransferTotals {
        TransferTotals {
            us: self.us.saturating_add(other.us),
            bytes: self.bytes.saturating_add(other.bytes),
            local_bytes: self.local_bytes.saturating_add(other.local_bytes),
        }
    }

    /// A worker's totals after a heartbeat that told `m`: each only
    /// grows, so a counter made of them never goes down even if a worker
    /// reports less than before.
    pub(crate) fn told(self, m: &Metrics) -> TransferTotals {
        TransferTotals {
            us: self.us.max(m.transfer_us.unwrap_or(0)),
            bytes: self.bytes.max(m.transfer_bytes.unwrap_or(0)),
            local_bytes: self.local_bytes.max(m.transfer_local_bytes.unwrap_or(0)),
        }
    }
}

/// Counters since the scheduler started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Workers that registered.
    pub workers_added: u64,
    /// Workers removed, by how: `closed` (said close), `lost`
    /// (connection dropped or broke the protocol), `timeout` (heartbeat).
    pub workers_removed: BTreeMap<&'static str, u64>,
    /// Clients whose handshake succeeded.
    pub clients_added: u64,
    /// Clients gone.
    pub clients_removed: u64,
    /// Graphs accepted.
    pub graphs_total: u64,
    /// Tasks submitted in accepted graphs (new ones, not shared).
    pub tasks_submitted_total: u64,
    /// Connections closed before they were a client or a registered
    /// worker, by error code name.
    pub connections_refused: BTreeMap<&'static str, u64>,
    /// Tasks that went from processing to erred, with `KilledWorker`.
    pub killed_worker_total: u64,
    /// The transfer totals of workers that left, as they last told them:
    /// the cluster's totals add the registered workers' to these, so they
    /// never go down when a worker leaves.
    pub departed_transfers: TransferTotals,
}

/// The scheduler's aggregates (see the module docs).
#[derive(Debug)]
pub(crate) struct Observer {
    pub(crate) groups: Vec<TaskGroup>,
    pub(crate) group_by_name: HashMap<String, GroupId>,
    /// The group last looked up: keys of one graph mostly share a prefix.
    pub(crate) last_group: GroupId,
    /// Its name is plain ([`is_plain_group`]): a key in it is told by its
    /// start, without splitting it (~300 instructions a task).
    pub(crate) last_plain: bool,
    pub(crate) stream: VecDeque<StreamRecord>,
    pub(crate) stream_total: u64,
    pub(crate) clients: HashMap<ConnId, ClientRecord>,
    pub(crate) counters: Counters,
    pub(crate) log: VecDeque<LogRecord>,
    pub(crate) erred_window_start: Option<Timestamp>,
    pub(crate) erred_in_window: u32,
    pub(crate) erred_unlogged: u64,
    pub(crate) started: Timestamp,
}

impl Observer {
    pub(crate) fn new(now: Timestamp) -> Observer {
        Observer {
            groups: vec![TaskGroup::new("other".into())],
            group_by_name: HashMap::from([("other".to_owned(), GroupId::OTHER)]),
            last_group: GroupId::OTHER,
            last_plain: false,
            stream: VecDeque::new(),
            stream_total: 0,
            clients: HashMap::new(),
            counters: Counters::default(),
            log: VecDeque::new(),
            erred_window_start: None,
            erred_in_window: 0,
            erred_unlogged: 0,
            started: now,
        }
    }

    /// The group of a new task with this key, counted in `state`.
    pub(crate) fn task_added(&mut self, key: &str, state: TaskState) -> GroupId {
        let g = self.group_of(key);
        self.groups[g.index()].counts[state.index()] += 1;
        g
    }

    fn group_of(&mut self, key: &str) -> GroupId {
        if self.last_plain && in_plain_group(key, &self.groups[self.last_group.index()].name) {
            return self.last_group;
        }
        let name = key_group(key);
        if self.groups[self.last_group.index()].name == name {
            return self.last_group;
        }
        let g = match self.group_by_name.get(name.as_ref()) {
            Some(&g) => g,
            None if self.groups.len() >= TASK_GROUPS_MAX => GroupId::OTHER,
            None => {
                let g = GroupId(self.groups.len() as u16);
                self.groups.push(TaskGroup::new(name.to_string()));
                self.group_by_name.insert(name.into_owned(), g);
                g
            }
        };
        self.last_group = g;
        self.last_plain = is_plain_group(&self.groups[g.index()].name);
        g
    }

    pub(crate) fn task_moved(&mut self, g: GroupId, from: TaskState, to: TaskState) {
        let counts = &mut self.groups[g.index()].counts;
        counts[from.index()] -= 1;
        counts[to.index()] += 1;
        if to == TaskState::Erred && from != TaskState::Erred {
            self.groups[g.index()].erred_total += 1;
        }
    }

    pub(crate) fn task_removed(&mut self, g: GroupId, state: TaskState) {
        self.groups[g.index()].counts[state.index()] -= 1;
    }

    pub(crate) fn task_lost(&mut self, g: GroupId) {
        self.groups[g.index()].lost_total += 1;
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn task_finished(
        &mut self,
        task: TaskId,
        order: u64,
        g: GroupId,
        worker: u64,
        duration_us: Option<u64>,
        now: Timestamp,
    ) {
        let group = &mut self.groups[g.index()];
        group.finished_total += 1;
        let us = duration_us.unwrap_or(0);
        group.compute_us_total = group.compute_us_total.saturating_add(us);
        if self.stream.len() == STREAM_KEPT {
            self.stream.pop_front();
        }
        let start = now
            .checked_sub(Duration::from_micros(us))
            .unwrap_or(self.started);
        self.stream.push_back(StreamRecord {
            task,
            order,
            group: g,
            worker,
            start,
            end: now,
        });
        self.stream_total += 1;
    }

    pub(crate) fn client_added(
        &mut self,
        conn: ConnId,
        id: u64,
        name: Option<String>,
        now: Timestamp,
    ) {
        self.counters.clients_added += 1;
        let shown = name.clone().unwrap_or_else(|| format!("client {id}"));
        self.clients.insert(
            conn,
            ClientRecord {
                name,
                id,
                connected_at: now,
                ..ClientRecord::default()
            },
        );
        self.log(
            LogRecord::new(
                Level::Info,
                "client-connected",
                format!("{shown} connected"),
            )
            .with("client", id),
        );
    }

    pub(crate) fn client_removed(&mut self, conn: ConnId, wants: usize) {
        self.counters.clients_removed += 1;
        if let Some(c) = self.clients.remove(&conn) {
            let shown = c.name.unwrap_or_else(|| format!("client {}", c.id));
            self.log(
                LogRecord::new(
                    Level::Info,
                    "client-left",
                    format!("{shown} left, releasing the {wants} keys it wanted"),
                )
                .with("client", c.id),
            );
        }
    }

    pub(crate) fn graph_added(&mut self, conn: ConnId, graph: GraphView) {
        self.counters.graphs_total += 1;
        self.counters.tasks_submitted_total += graph.new_tasks;
        if let Some(c) = self.clients.get_mut(&conn) {
            c.graphs_total += 1;
            if c.graphs.len() == GRAPHS_KEPT_PER_CLIENT {
                c.graphs.pop_front();
            }
            c.graphs.push_back(graph);
        }
    }

    pub(crate) fn refused(&mut self, code: ErrorCode, message: &str, peer: &str) {
        *self
            .counters
            .connections_refused
            .entry(code.name())
            .or_default() += 1;
        self.log(
            LogRecord::new(
                Level::Warn,
                "connection-refused",
                format!(
                    "refused {peer}: {} {}: {message}",
                    code.number(),
                    code.name()
                ),
            )
            .with("code", code.number()),
        );
    }

    /// A task's own error (not one reached through a dependency), logged
    /// at most [`ERRED_LOGGED_PER_WINDOW`] times per window.
    pub(crate) fn task_erred(
        &mut self,
        key: &Key,
        error_type: &str,
        message: &str,
        now: Timestamp,
    ) {
        let window_over = self
            .erred_window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= ERRED_LOG_WINDOW);
        if window_over {
            self.flush_erred_summary();
            self.erred_window_start = Some(now);
            self.erred_in_window = 0;
        }
        if self.erred_in_window >= ERRED_LOGGED_PER_WINDOW {
            self.erred_unlogged += 1;
            return;
        }
        self.erred_in_window += 1;
        let first_line = message.lines().next().unwrap_or("");
        self.log(
            LogRecord::new(
                Level::Warn,
                "task-erred",
                format!("task {key} erred: {error_type}: {first_line}"),
            )
            .with("key", key.as_str())
            .with("error_type", error_type),
        );
    }

    fn flush_erred_summary(&mut self) {
        if self.erred_unlogged > 0 {
            let n = std::mem::take(&mut self.erred_unlogged);
            self.log(
                LogRecord::new(
                    Level::Warn,
                    "tasks-erred",
                    format!(
                        "{n} more tasks erred in the last {} s (not logged one by one; the \
                         dashboard and the clients have each)",
                        ERRED_LOG_WINDOW.as_secs()
                    ),
                )
                .with("count", n),
            );
        }
    }

    pub(crate) fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// Queues a record for the loop's logger.
    pub(crate) fn log(&mut self, record: LogRecord) {
        if self.log.len() == LOG_QUEUE_MAX {
            self.log.pop_front();
        }
        self.log.push_back(record);
    }

    pub(crate) fn poll_log(&mut self, now: Timestamp) -> Option<LogRecord> {
        if self.log.is_empty()
            && self.erred_unlogged > 0
            && self
                .erred_window_start
                .is_some_and(|start| now.saturating_duration_since(start) >= ERRED_LOG_WINDOW)
        {
            self.flush_erred_summary();
            self.erred_window_start = None;
        }
        self.log.pop_front()
    }

    /// Counts per state of each group (validation recounts them).
    pub(crate) fn group_counts(&self) -> Vec<(String, [u64; STATE_COUNT])> {
        self.groups
            .iter()
            .map(|g| (g.name.clone(), g.counts))
            .collect()
    }

    /// Tasks kept now in each state (indexed as [`STATE_NAMES`]), summed
    /// over the groups: no pass over the tasks.
    pub(crate) fn state_counts(&self) -> [u64; STATE_COUNT] {
        let mut totals = [0u64; STATE_COUNT];
        for g in &self.groups {
            for (total, n) in totals.iter_mut().zip(g.counts) {
                *total += n;
            }
        }
        totals
    }

    pub(crate) fn group_name(&self, g: GroupId) -> &str {
        &self.groups[g.index()].name
    }
}

impl SchedulerState {
    /// The next operator log record (the loop writes them).
    pub fn poll_log(&mut self) -> Option<LogRecord> {
        let now = self.now;
        self.observe.poll_log(now)
    }

    /// Counts and logs a fatal error: a refusal when the connection was
    /// not yet a client or a registered worker.
    pub(crate) fn note_fatal(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let peer = match c.peer {
            Peer::AwaitingHello => "a connection before its hello".to_owned(),
            Peer::AwaitingProof => format!("connection {} before its proof", c.id),
            Peer::Worker(None) => format!("worker connection {}", c.id),
            Peer::Client => {
                return self.observe.log(
                    LogRecord::new(
                        Level::Warn,
                        "connection-error",
                        format!(
                            "closed client {}'s connection: {} {}: {message}",
                            c.id,
                            code.number(),
                            code.name()
                        ),
                    )
                    .with("code", code.number()),
                );
            }
            // A registered worker's removal is logged with its name.
            Peer::Worker(Some(_)) => return,
        };
        self.observe.refused(code, message, &peer);
    }

    /// A connection the reactor closed because its peer read nothing for
    /// the write timeout while `unwritten` bytes waited for it: logged
    /// with who it was (the removal follows as a close).
    pub fn handle_write_timeout(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        unwritten: u64,
        idle: Duration,
    ) {
        self.set_now(now);
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let peer = match c.peer {
            Peer::Client => match &c.name {
                Some(name) => format!("client {} ({name})", c.id),
                None => format!("client {}", c.id),
            },
            Peer::Worker(Some(w)) => match self.workers.get(w.ix()) {
                Some(worker) => format!("worker {} ({})", worker.name, worker.address),
                None => format!("worker connection {}", c.id),
            },
            _ => format!("connection {}", c.id),
        };
        self.observe.log(
            LogRecord::new(
                Level::Warn,
                "write-timeout",
                format!(
                    "closed {peer}'s connection: {unwritten} bytes waited for it and none could be written for {:.1} s (--write-timeout): it does not read what it asked for",
                    idle.as_secs_f64()
                ),
            )
            .with("conn", c.id)
            .with("unwritten", unwritten),
        );
    }

    /// A connection the reactor refused before its hello (bytes that are
    /// not dask/1, a frame over the bound before the hello).
    pub fn handle_refused(&mut self, now: Timestamp, conn: ConnId, code: ErrorCode, message: &str) {
        self.set_now(now);
        self.note_fatal(conn, code, message);
    }

    pub(crate) fn log_worker_added(&mut self, w: WorkerIdx) {
        self.observe.counters_mut().workers_added += 1;
        let worker = &self.workers[w];
        let limit = worker
            .memory_limit
            .map(|l| format!(", memory limit {l} bytes"))
            .unwrap_or_default();
        let record = LogRecord::new(
            Level::Info,
            "worker-joined",
            format!(
                "worker {} joined from {}: {} threads, {} functions{limit}",
                worker.name,
                worker.address,
                worker.nthreads,
                worker.functions.len()
            ),
        )
        .with("worker", worker.name.as_str())
        .with("address", worker.address.as_str())
        .with("nthreads", worker.nthreads);
        self.observe.log(record);
    }

    pub(crate) fn log_worker_removed(&mut self, w: WorkerIdx, how: Departure) {
        let worker = &self.workers[w];
        let (reason, level, why) = match how {
            Departure::Closed => ("closed", Level::Info, "left (it said close)".to_owned()),
            Departure::Lost => (
                "lost",
                Level::Warn,
                "was lost (its connection dropped or broke the protocol)".to_owned(),
            ),
            Departure::TimedOut => (
                "timeout",
                Level::Warn,
                format!(
                    "declared dead: nothing from it for {} ms (heartbeat timeout)",
                    self.config.heartbeat_timeout.as_millis()
                ),
            ),
        };
        let record = LogRecord::new(
            level,
            if how == Departure::Closed { "worker-left" } else { "worker-lost" },
            format!(
                "worker {} ({}) {why}; {} tasks processing on it are placed again, {} keys it held dropped",
                worker.name,
                worker.address,
                worker.processing.len(),
                worker.has_what.len()
            ),
        )
        .with("worker", worker.name.as_str())
        .with("reason", reason);
        *self
            .observe
            .counters_mut()
            .workers_removed
            .entry(reason)
            .or_default() += 1;
        self.observe.log(record);
    }

    /// Remembers a graph for the dashboard's clients.
    pub(crate) fn graph_accepted(&mut self, conn: ConnId, m: &UpdateGraph, new_tasks: usize) {
        let group = m
            .tasks
            .first()
            .map_or_else(String::new, |t| key_group(t.key.as_str()).into_owned());
        let graph = GraphView {
            request: m.request,
            tasks: m.tasks.len() as u64,
            new_tasks: new_tasks as u64,
            wanted: m.wanted.len() as u64,
            group,
            submitted_at: self.uptime(self.now),
        };
        self.observe.graph_added(conn, graph);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_follow_dask_key_split() {
        for (key, group) in [
            ("inc-5c9e0f1a2b3c4d5e", "inc"),
            ("x-1", "x"),
            ("load-data-3", "load-data"),
            ("hello-world-1a2b3c4d-2", "hello-world"),
            ("sum", "sum"),
            ("('x-1', 0)", "x"),
            ("0123456789abcdef0123456789abcdef", "data"),
            ("<Foo.Bar object at 0x1>-1", "Bar"),
            ("", "other"),
            ("-3", "other"),
            ("λ-ü", "λ-ü"),
        ] {
            assert_eq!(key_group(key), group, "{key}");
        }
        let long = "a".repeat(100);
        assert_eq!(key_group(&long).len(), GROUP_NAME_BYTES_MAX);
        let wide = "é".repeat(40);
        assert!(key_group(&wide).len() <= GROUP_NAME_BYTES_MAX);
    }

    /// Keys told by their start when the last group's name is plain get
    /// the group `key_group` gives them, whatever came before.
    #[test]
    fn keys_of_the_last_plain_group_are_grouped_as_key_split_does() {
        let keys = [
            "inc-1",
            "inc-2",
            "inc",
            "inc-",
            "inc-x-1",
            "inc-deadbeef-1",
            "inc-x",
            "inc-é-3",
            "incr-1",
            "in-1",
            "inc-ab",
            "load-data-3",
            "load-data-x7",
            "load-data-deadbeef",
            "load-data",
            "load-dataset-1",
            "load-1",
            "('x-1', 0)",
            "x-1",
            "0123456789abcdef0123456789abcdef-1",
            "0123456789abcdef0123456789abcdef",
            "<Foo.Bar object at 0x1>-1",
            "-3",
            "λ-ü-1",
            "λ-ü",
            "a,b-1",
            "a,b",
            "deadbeef-1",
            "deadbeef-deadbeef",
            "other-1",
            "other",
        ];
        let long = format!("{}-1", "a".repeat(100));
        let mut o = Observer::new(Timestamp::default());
        // Each key after each other: every last group meets every key.
        for first in keys.iter().copied().chain([long.as_str()]) {
            for key in keys.iter().copied().chain([long.as_str()]) {
                o.group_of(first);
                let g = o.group_of(key);
                assert_eq!(
                    o.groups[g.index()].name,
                    key_group(key),
                    "{key} after {first}"
                );
            }
        }
    }

    #[test]
    fn groups_past_the_bound_count_in_other() {
        let mut o = Observer::new(Timestamp::default());
        for i in 0..TASK_GROUPS_MAX + 10 {
            o.task_added(&format!("g{i}"), TaskState::Released);
        }
        assert_eq!(o.groups.len(), TASK_GROUPS_MAX);
        assert_eq!(o.groups[0].counts[0], 11);
    }

    #[test]
    fn erred_tasks_are_logged_ten_per_window_then_counted() {
        let mut o = Observer::new(Timestamp::default());
        let t0 = Timestamp::default();
        for i in 0..25 {
            o.task_erred(&Key::from(format!("x-{i}")), "ValueError", "bad\nmore", t0);
        }
        let mut lines = Vec::new();
        while let Some(r) = o.poll_log(t0) {
            lines.push(r);
        }
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0].message, "task x-0 erred: ValueError: bad");
        let later = t0 + ERRED_LOG_WINDOW;
        let summary = o.poll_log(later).unwrap();
        assert_eq!(summary.event, "tasks-erred");
        assert!(summary.message.starts_with("15 more tasks erred"));
        assert!(o.poll_log(later).is_none());
    }
}
