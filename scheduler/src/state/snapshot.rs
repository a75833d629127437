//! The [`StateSnapshot`]: the scheduler's aggregates ([`super::observe`])
//! as the dashboard, its JSON API and `/metrics` show them. The event loop
//! takes one at a bounded rate and publishes it to the HTTP thread; a
//! snapshot costs in workers, groups, clients and a bounded number of
//! stream records, never in tasks.

use serde::Serialize;

use super::observe::{Counters, TransferTotals, STATE_NAMES, STREAM_SHOWN};
use super::*;

/// One task group in a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// The key prefix ([`key_group`](super::observe::key_group)), or `other`.
    pub name: String,
    /// Tasks kept now, by state name (every state, zeros included).
    pub states: BTreeMap<&'static str, u64>,
    /// Tasks of the group that reached memory from a worker.
    pub finished_total: u64,
    /// Tasks of the group that became erred (their own error or a
    /// dependency's).
    pub erred_total: u64,
    /// Results of the group lost with their last worker.
    pub lost_total: u64,
    /// Seconds its finished tasks ran, as workers reported.
    pub compute_seconds_total: f64,
}

/// One worker in a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    /// Its id (its hello reply's).
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its data address.
    pub address: String,
    /// Threads.
    pub nthreads: u32,
    /// Tasks assigned to it now (running and queued on it).
    pub processing: u64,
    /// Tasks running, as its last heartbeat said.
    pub executing: Option<u32>,
    /// Tasks waiting on it for dependencies or a thread, as its last
    /// heartbeat said.
    pub ready: Option<u32>,
    /// Keys it holds (the scheduler's view).
    pub stored_keys: u64,
    /// Bytes it holds (the scheduler's view).
    pub stored_bytes: u64,
    /// Bytes it holds, spilled included, as its last heartbeat said.
    pub reported_bytes: Option<u64>,
    /// Of those, bytes spilled out of memory, as its last heartbeat said
    /// (dask/1.1; `None` from a worker that does not tell).
    pub spilled_bytes: Option<u64>,
    /// Its last heartbeat said it is paused: no task is placed on it.
    pub paused: bool,
    /// Why it cannot spill, as its last heartbeat said.
    pub spill_error: Option<String>,
    /// Paused and unable to spill: it runs nothing until that changes.
    pub stuck: bool,
    /// Its memory limit, if any.
    pub memory_limit: Option<u64>,
    /// Seconds since anything arrived from it.
    pub last_seen_seconds: f64,
    /// Seconds since it registered... (connected).
    pub connected_seconds: f64,
    /// Functions it offers (how many).
    pub functions: usize,
    /// Resources it offers.
    pub resources: Resources,
    /// Average task duration it reported, in seconds.
    pub average_task_seconds: Option<f64>,
    /// Time and bytes it spent fetching from peers since it registered,
    /// as its heartbeats said (zeros from a worker that does not tell).
    pub transfers: TransferTotals,
}

/// One graph a client submitted.
#[derive(Debug, Clone, Serialize)]
pub struct GraphView {
    /// The `update-graph`'s request id.
    pub request: u64,
    /// Tasks in it.
    pub tasks: u64,
    /// Of those, new to the scheduler.
    pub new_tasks: u64,
    /// Keys it wanted.
    pub wanted: u64,
    /// The group of its first task.
    pub group: String,
    /// Scheduler uptime when it came, in seconds.
    pub submitted_at: f64,
}

/// One client in a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    /// Its connection id.
    pub id: u64,
    /// The name in its hello, if any.
    pub name: Option<String>,
    /// Seconds since it connected.
    pub connected_seconds: f64,
    /// Keys it wants now.
    pub wants: u64,
    /// Graphs it submitted.
    pub graphs_total: u64,
    /// Its last few graphs, oldest first.
    pub graphs: Vec<GraphView>,
}

/// One finished task of the stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    /// Its key, while the scheduler keeps the task.
    pub key: Option<String>,
    /// Its group.
    pub group: String,
    /// The id of the worker that ran it.
    pub worker: u64,
    /// When it started and ended, in seconds of scheduler uptime.
    pub start: f64,
    /// See `start`.
    pub end: f64,
}

/// The scheduler's state as the dashboard and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
pub struct StateSnapshot {
    /// Scheduler uptime, in seconds, when it was taken.
    pub uptime_seconds: f64,
    /// Tasks kept, by state (every state).
    pub tasks: BTreeMap<&'static str, u64>,
    /// Task groups (those with tasks kept or anything counted).
    pub groups: Vec<GroupView>,
    /// Registered workers, by id.
    pub workers: Vec<WorkerView>,
    /// Connected clients, by id.
    pub clients: Vec<ClientView>,
    /// The last finished tasks, oldest first (at most [`STREAM_SHOWN`]).
    pub stream: Vec<StreamView>,
    /// Tasks finished since the start (the stream's sequence number).
    pub stream_total: u64,
    /// Counters since the start.
    pub counters: Counters,
    /// Bytes held on workers, as the scheduler sees them.
    pub stored_bytes: u64,
    /// Sum of the workers' memory limits (those that have one).
    pub memory_limit: u64,
    /// Sum of what workers last reported holding (spilled included).
    pub reported_bytes: u64,
    /// Sum of what workers last reported spilled.
    pub spilled_bytes: u64,
    /// Time and bytes workers spent fetching from peers since the
    /// scheduler started: the registered workers' and the departed ones'.
    pub transfers: TransferTotals,
}

impl SchedulerState {
    pub(crate) fn uptime(&self, at: Timestamp) -> f64 {
        at.saturating_duration_since(self.observe.started)
            .as_secs_f64()
    }

    /// The aggregates as of now. Costs in workers, groups, clients and
    /// [`STREAM_SHOWN`] stream records; never in tasks.
    pub fn snapshot(&self) -> StateSnapshot {
        let now = self.now;
        let o = &self.observe;
        let mut tasks: BTreeMap<&'static str, u64> = STATE_NAMES.iter().map(|&s| (s, 0)).collect();
        let groups = o
            .groups
            .iter()
            .filter(|g| g.counts.iter().any(|&n| n > 0) || g.finished_total + g.erred_total > 0)
            .map(|g| {
                for (i, n) in g.counts.iter().enumerate() {
                    *tasks.entry(STATE_NAMES[i]).or_default() += n;
                }
                GroupView {
                    name: g.name.clone(),
                    states: STATE_NAMES.iter().copied().zip(g.counts).collect(),
                    finished_total: g.finished_total,
                    erred_total: g.erred_total,
                    lost_total: g.lost_total,
                    compute_seconds_total: g.compute_us_total as f64 / 1e6,
                }
            })
            .collect();
        let mut workers: Vec<WorkerView> = self
            .workers
            .iter()
            .map(|(_, w)| {
                let conn = self.conns.get(&w.conn);
                WorkerView {
                    id: w.id,
                    name: w.name.clone(),
                    address: w.address.clone(),
                    nthreads: w.nthreads,
                    processing: w.processing.len() as u64,
                    executing: w.metrics.as_ref().map(|m| m.executing),
                    ready: w.metrics.as_ref().map(|m| m.ready),
                    stored_keys: w.has_what.len() as u64,
                    stored_bytes: w.stored_bytes,
                    reported_bytes: w.metrics.as_ref().map(|m| m.stored_bytes),
                    spilled_bytes: w.metrics.as_ref().and_then(|m| m.spilled_bytes),
                    paused: w.paused,
                    spill_error: w.metrics.as_ref().and_then(|m| m.spill_error.clone()),
                    stuck: w.is_stuck(),
                    memory_limit: w.memory_limit,
                    last_seen_seconds: conn.map_or(0.0, |c| {
                        now.saturating_duration_since(c.last_seen).as_secs_f64()
                    }),
                    connected_seconds: conn.map_or(0.0, |c| {
                        now.saturating_duration_since(c.connected_at).as_secs_f64()
                    }),
                    functions: w.functions.len(),
                    resources: w.resources.clone(),
                    average_task_seconds: w.average_duration_us.map(|us| us / 1e6),
                    transfers: w.transfers,
                }
            })
            .collect();
        workers.sort_by_key(|w| w.id);
        let mut clients: Vec<ClientView> = o
            .clients
            .iter()
            .map(|(conn, c)| ClientView {
                id: c.id,
                name: c.name.clone(),
                connected_seconds: now.saturating_duration_since(c.connected_at).as_secs_f64(),
                wants: self.clients.get(conn).map_or(0, |k| k.wants.len() as u64),
                graphs_total: c.graphs_total,
                graphs: c.graphs.iter().cloned().collect(),
            })
            .collect();
        clients.sort_by_key(|c| c.id);
        let skip = o.stream.len().saturating_sub(STREAM_SHOWN);
        let stream = o
            .stream
            .iter()
            .skip(skip)
            .map(|r| StreamView {
                key: self
                    .tasks
                    .get(r.task.ix())
                    .filter(|t| t.order == r.order)
                    .map(|t| t.key().to_owned()),
                group: o.group_name(r.group).to_owned(),
                worker: r.worker,
                start: self.uptime(r.start),
                end: self.uptime(r.end),
            })
            .collect();
        let (stored_bytes, memory_limit, reported_bytes) =
            self.workers
                .iter()
                .fold((0u64, 0u64, 0u64), |(s, l, r), (_, w)| {
                    (
                        s.saturating_add(w.stored_bytes),
                        l.saturating_add(w.memory_limit.unwrap_or(0)),
                        r.saturating_add(w.metrics.as_ref().map_or(0, |m| m.stored_bytes)),
                    )
                });
        let spilled_bytes = workers
            .iter()
            .filter_map(|w| w.spilled_bytes)
            .fold(0u64, u64::saturating_add);
        let transfers = workers
            .iter()
            .fold(o.counters.departed_transfers, |total, w| {
                total.plus(w.transfers)
            });
        StateSnapshot {
            spilled_bytes,
            transfers,
            uptime_seconds: self.uptime(now),
            tasks,
            groups,
            workers,
            clients,
            stream,
            stream_total: o.stream_total,
            counters: o.counters.clone(),
            stored_bytes,
            memory_limit,
            reported_bytes,
        }
    }
}
