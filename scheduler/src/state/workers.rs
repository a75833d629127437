//! Workers registering and leaving: what a lost worker's tasks and data
//! become.

use super::*;

impl SchedulerState {
    // ---- workers --------------------------------------------------------

    pub(super) fn register_worker(
        &mut self,
        conn: ConnId,
        mut m: dask_core::messages::RegisterWorker,
    ) {
        if self.worker_by_name.contains_key(&m.name) {
            return self.fatal(
                conn,
                ErrorCode::NameInUse,
                format!("a worker named {:?} is already registered", m.name),
            );
        }
        if m.nthreads == 0 {
            return self.fatal(
                conn,
                ErrorCode::WrongType,
                "in `register-worker`: field `nthreads`: expected at least 1, found 0".into(),
            );
        }
        let id = self.conns.get(&conn).map_or(0, |c| c.id);
        let mut offered: Vec<u64> = Vec::new();
        for f in &m.functions {
            let i = self.shared_function(f.clone()).index;
            if i != FunctionName::NOT_SHARED {
                let (word, bit) = (i as usize / 64, i % 64);
                if offered.len() <= word {
                    offered.resize(word + 1, 0);
                }
                offered[word] |= 1 << bit;
            }
        }
        let w = WorkerIdx::new(self.workers.insert(Worker {
            conn,
            id,
            name: m.name.clone(),
            address: m.address,
            nthreads: m.nthreads,
            memory_limit: m.memory_limit,
            resources: m.resources.unwrap_or_default(),
            functions: {
                let mut f = m.functions.clone();
                f.sort_unstable_by(|a, b| placement::function_order(a, b));
                f.dedup();
                f
            },
            offered,
            function_list: m.functions,
            processing: foldhash::HashSet::default(),
            sent: VecDeque::new(),
            has_what: foldhash::HashSet::default(),
            stored_bytes: 0,
            average_duration_us: None,
            processing_groups: Vec::new(),
            abandoned: 0,
            metrics: None,
            transfers: observe::TransferTotals::default(),
            paused: false,
            stuck_since: None,
            stuck_for_good: false,
        }));
        self.worker_by_conn.insert(conn, w);
        self.worker_by_name.insert(m.name, w);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Peer::Worker(Some(w));
        }
        let interval = self.heartbeat_interval_told().as_millis();
        let v1_1 = self.conns.get(&conn).is_some_and(|c| c.v1_1);
        let inline = self.config.inline_bytes_max;
        self.send(
            conn,
            Message::WorkerRegistered(WorkerRegistered {
                id,
                heartbeat_interval_ms: u64::try_from(interval).unwrap_or(u64::MAX),
                inline_bytes_max: (v1_1 && inline > 0).then_some(inline),
            }),
        );
        self.log_worker_added(w);
        let held = m.held.take().unwrap_or_default();
        self.adopt_held(w, held);
        self.worker_joined(w);
    }

    /// Removes a worker: its replicas are dropped, its processing tasks go
    /// back to be placed again (or err with `KilledWorker` once they have
    /// lost more than the allowed workers), keys only it held are
    /// recomputed (or lost).
    ///
    /// Tasks processing elsewhere that may be fetching data from it are
    /// asked back with `steal-request`: a worker that hangs rather than dies
    /// keeps its peers' fetches waiting, and only the scheduler knows it is
    /// gone. A task given back is placed again with the holders that remain
    /// (or after its dependency is recomputed); one already running keeps
    /// going (it has its data).
    pub(super) fn remove_worker(&mut self, w: WorkerIdx, how: Departure) {
        if !self.workers.contains(w.ix()) {
            return;
        }
        let fetching = self.tasks_maybe_fetching_from(w);
        self.log_worker_removed(w, how);
        let worker = self.workers.remove(w.ix());
        let departed = &mut self.observe.counters_mut().departed_transfers;
        *departed = departed.plus(worker.transfers);
        self.worker_by_conn.remove(&worker.conn);
        if self.worker_by_name.get(&worker.name) == Some(&w) {
            self.worker_by_name.remove(&worker.name);
        }
        self.pending_free.remove(&w);
        // Its data is gone.
        let mut lost = Vec::new();
        for t in sorted(&worker.has_what) {
            let task = &mut self.tasks[t];
            task.who_has.retain(|&x| x != w);
            if task.state() == TaskState::Memory && task.who_has.is_empty() {
                lost.push(t);
            }
            self.touch(t);
        }
        for t in lost {
            if self.tasks.contains(t.ix()) && self.tasks[t].state() == TaskState::Memory {
                self.lose_data(t);
            }
        }
        // Its work goes back to be placed again.
        for t in sorted(&worker.processing) {
            if !self.tasks.contains(t.ix()) || self.tasks[t].state() != TaskState::Processing(w) {
                continue;
            }
            if how != Departure::Closed && self.count_lost_worker(t, &worker.name) {
                continue;
            }
            self.reevaluate(t);
        }
        // Tasks given back for data it was asked about go again too.
        self.claims_worker_left(w);
        for (t, x) in fetching {
            let task = &self.tasks[t];
            if task.state() == TaskState::Processing(x) && !task.steal_pending() {
                self.tasks[t].set_steal_pending(true);
                let key = self.tasks[t].key_owned();
                self.send_worker(x, Message::StealRequest(StealRequest { key }));
            }
        }
        self.worker_left(w);
    }

    /// Tasks processing on other workers that depend on data worker `w`
    /// holds and their own worker does not: they may be fetching it from
    /// `w`. Sorted, without duplicates.
    pub(super) fn tasks_maybe_fetching_from(&self, w: WorkerIdx) -> Vec<(TaskId, WorkerIdx)> {
        let mut found = Vec::new();
        for &d in &self.workers[w].has_what {
            let dep = &self.tasks[d];
            for y in dep.dependents.iter() {
                if let TaskState::Processing(x) = self.tasks[y].state() {
                    if x != w && !dep.who_has.contains(&x) {
                        found.push((y, x));
                    }
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Counts a lost worker against `t`, which was processing on it.
    /// Returns true when that was one too many: `t` is now erred with
    /// `KilledWorker` (and so is everything waiting for it).
    pub(super) fn count_lost_worker(&mut self, t: TaskId, worker: &str) -> bool {
        let allowed = self.config.allowed_failures;
        self.journal(|s| JournalRecord::lost(s.tasks[t].key_owned(), worker));
        let task = &mut self.tasks[t];
        let key = task.key_owned();
        let rare = task.rare.get_or_insert_with(Box::default);
        rare.count_lost_worker(worker);
        if rare.suspicious <= allowed {
            return false;
        }
        let names = rare
            .lost_on
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let earlier = rare.suspicious as usize - rare.lost_on.len();
        let names = if earlier > 0 {
            format!("{earlier} more, then {names}")
        } else {
            names
        };
        let error = Arc::new(TaskError {
            origin: key.clone(),
            error_type: "KilledWorker".into(),
            message: format!(
                "task {} was processing on {} workers that were lost while it ran ({names}); \
                 at most {allowed} such losses are allowed per task, so it is not tried \
                 again: it may be what kills its workers",
                key, rare.suspicious
            ),
            traceback: String::new(),
            lost: false,
        });
        self.journal(|_| {
            JournalRecord::erred(dask_core::messages::TaskErred {
                key: error.origin.clone(),
                error_type: error.error_type.clone(),
                message: error.message.clone(),
                traceback: error.traceback.clone(),
            })
        });
        self.observe.counters_mut().killed_worker_total += 1;
        self.observe.log(
            LogRecord::new(
                Level::Warn,
                "killed-worker",
                format!("KilledWorker: {}", error.message),
            )
            .with("key", error.origin.as_str()),
        );
        self.fail(t, error);
        true
    }
}

/// A set of tasks in the order of their ids: what a worker held or ran,
/// where the order reaches messages.
pub(super) fn sorted(set: &foldhash::HashSet<TaskId>) -> Vec<TaskId> {
    let mut tasks: Vec<TaskId> = set.iter().copied().collect();
    tasks.sort_unstable();
    tasks
}
