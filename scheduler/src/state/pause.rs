//! Paused workers and full spill disks (dask/1.1 heartbeat metrics
//! `paused` and `spill_error`; spec "Worker memory").
//!
//! - A **paused** worker (its memory over its pause threshold) starts no
//!   task, so none is placed on it (it has no free slot), and every task it
//!   holds is asked back with `steal-request`: those it has not started
//!   come back and go to other workers; running ones finish there.
//! - A worker paused whose spill store fails (a full disk) is **stuck**: it
//!   cannot get out of its pause by itself, so it counts as able to run
//!   nothing. Tasks only it could run become `no-worker`, with the reason
//!   `spill-failed` (told to wanting clients with `key-waiting`), and are
//!   queued again when it spills again or resumes.
//! - A worker stuck for [`SchedulerStateConfig::spill_failed_timeout`] is
//!   stuck for good: the `no-worker` tasks that only stuck-for-good
//!   workers could run err with `SpillFailed`, the message naming the
//!   worker and its error, and so do such tasks later (a graph submitted
//!   to a cluster whose only worker is stuck errs at once). Waiting a while
//!   first lets a disk that was full for a moment cost nothing.
//!
//! Each change is one log line: `worker-paused` / `worker-resumed`,
//! `worker-spill-failed` / `worker-spill-recovered`, and
//! `spill-failed-tasks` when tasks err.

use std::sync::Arc;

use dask_core::messages::StealRequest;

use super::*;

/// Most bytes of a worker's spill error kept (a longer one is cut): it is
/// shown and copied into task errors.
pub const SPILL_ERROR_BYTES_MAX: usize = 1024;

/// What a task that can only run on stuck workers waits for.
pub(crate) struct StuckCause {
    /// The first such worker's name and address.
    pub(crate) worker: String,
    /// Its spill error.
    pub(crate) error: String,
    /// How many other workers that could run it are stuck too.
    pub(crate) others: usize,
}

impl StuckCause {
    /// The sentence for people: which worker, why, and how many more.
    pub(crate) fn describe(&self) -> String {
        let others = match self.others {
            0 => String::new(),
            1 => " (and 1 more worker that could run it is stuck too)".to_owned(),
            n => format!(" (and {n} more workers that could run it are stuck too)"),
        };
        format!(
            "worker {} is paused (memory over its pause threshold) and cannot spill: {}{others}",
            self.worker, self.error
        )
    }
}

impl Worker {
    /// Whether it is paused and cannot spill (see the module docs).
    pub(crate) fn is_stuck(&self) -> bool {
        self.stuck_since.is_some()
    }

    /// Its spill error, as its last heartbeat said.
    fn spill_error(&self) -> Option<&str> {
        self.metrics.as_ref().and_then(|m| m.spill_error.as_deref())
    }
}

/// `error` cut to [`SPILL_ERROR_BYTES_MAX`] at a character boundary.
fn bounded(mut error: String) -> String {
    if error.len() > SPILL_ERROR_BYTES_MAX {
        let mut end = SPILL_ERROR_BYTES_MAX;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
        error.push('…');
    }
    error
}

impl SchedulerState {
    /// A worker's heartbeat metrics came: they are kept for the dashboard,
    /// and a change of its pause or of its spill error acts (see the
    /// module docs).
    pub(crate) fn worker_metrics(&mut self, w: WorkerIdx, metrics: Option<Metrics>) {
        let Some(mut m) = metrics else {
            return;
        };
        let Some(worker) = self.workers.get_mut(w.ix()) else {
            return;
        };
        m.spill_error = m.spill_error.map(bounded);
        worker.transfers = worker.transfers.told(&m);
        let paused = m.paused.unwrap_or(false);
        let stuck = paused && m.spill_error.is_some();
        let (was_paused, was_stuck) = (worker.paused, worker.is_stuck());
        worker.metrics = Some(m);
        worker.paused = paused;
        if stuck == was_stuck && paused == was_paused {
            return;
        }
        if paused && !was_paused {
            self.worker_paused(w);
        }
        if stuck && !was_stuck {
            self.worker_stuck(w);
        }
        if !stuck && was_stuck {
            self.worker_unstuck(w);
        }
        if !paused && was_paused {
            let worker = &self.workers[w];
            let record = LogRecord::new(
                Level::Info,
                "worker-resumed",
                format!(
                    "worker {} ({}) resumed: its memory is under its pause threshold; tasks \
                     are placed on it again",
                    worker.name, worker.address
                ),
            )
            .with("worker", worker.name.as_str());
            self.observe.log(record);
        }
    }

    /// `w` paused: no task is placed on it (its slots say so) and every
    /// task it holds is asked back; those it has not started come back.
    fn worker_paused(&mut self, w: WorkerIdx) {
        let worker = &self.workers[w];
        let asked: Vec<TaskId> = super::workers::sorted(&worker.processing)
            .into_iter()
            .filter(|&t| !self.tasks[t].steal_pending() && !self.tasks[t].steal_refused())
            .collect();
        let record = LogRecord::new(
            Level::Warn,
            "worker-paused",
            format!(
                "worker {} ({}) paused: its memory is over its pause threshold{}; no task is \
                 placed on it, and the {} tasks it holds are asked back (those not started go \
                 to other workers)",
                worker.name,
                worker.address,
                worker
                    .spill_error()
                    .map(|e| format!(" and it cannot spill: {e}"))
                    .unwrap_or_default(),
                asked.len()
            ),
        )
        .with("worker", worker.name.as_str())
        .with("tasks_asked_back", asked.len() as u64);
        self.observe.log(record);
        for t in asked {
            // No thief: a task given back is placed like any ready task.
            self.tasks[t].set_steal_pending(true);
            let key = self.tasks[t].key_owned();
            self.send_worker(w, Message::StealRequest(StealRequest { key }));
        }
    }

    /// `w` is paused and cannot spill: tasks that only it could run wait
    /// in no-worker (their clients are told why) until it recovers or its
    /// time runs out.
    fn worker_stuck(&mut self, w: WorkerIdx) {
        let now = self.now;
        let timeout = self.config.spill_failed_timeout;
        let worker = &mut self.workers[w];
        worker.stuck_since = Some(now);
        let record = LogRecord::new(
            Level::Error,
            "worker-spill-failed",
            format!(
                "worker {} ({}) is paused and cannot spill: {}; tasks only it can run wait, \
                 and err with SpillFailed after {} s unless it recovers",
                worker.name,
                worker.address,
                worker.spill_error().unwrap_or_default(),
                timeout.as_secs_f64()
            ),
        )
        .with("worker", worker.name.as_str())
        .with("error", worker.spill_error().unwrap_or_default());
        self.observe.log(record);
        let at = now + timeout;
        self.next_spill_failed_check = Some(self.next_spill_failed_check.map_or(at, |t| t.min(at)));
        self.strand_queued();
    }

    /// `w` can spill again, or resumed: what only it could run is queued
    /// again.
    fn worker_unstuck(&mut self, w: WorkerIdx) {
        let worker = &mut self.workers[w];
        worker.stuck_since = None;
        worker.stuck_for_good = false;
        let record = LogRecord::new(
            Level::Info,
            "worker-spill-recovered",
            format!(
                "worker {} ({}) {}; the tasks that waited for it are queued again",
                worker.name,
                worker.address,
                if worker.paused {
                    "can spill again"
                } else {
                    "resumed"
                }
            ),
        )
        .with("worker", worker.name.as_str());
        self.observe.log(record);
        self.worker_joined(w);
    }

    /// Marks the workers stuck for `spill_failed_timeout` as stuck for
    /// good; the tasks waiting for them are looked at by this event's end.
    pub(crate) fn check_stuck_workers(&mut self, now: Timestamp) {
        let timeout = self.config.spill_failed_timeout;
        let mut next: Option<Timestamp> = None;
        let mut expired = false;
        for (_, worker) in self.workers.iter_mut() {
            let Some(since) = worker.stuck_since else {
                continue;
            };
            if worker.stuck_for_good {
                continue;
            }
            if since + timeout <= now {
                worker.stuck_for_good = true;
                expired = true;
            } else {
                let at = since + timeout;
                next = Some(next.map_or(at, |t| t.min(at)));
            }
        }
        self.next_spill_failed_check = next;
        if expired {
            self.recheck_stuck();
        }
    }

    /// Why `task` cannot run when every worker that could run it is stuck
    /// (stuck for good only, with `for_good`); `None` when some such worker
    /// is not, or when none could run it anyway.
    pub(crate) fn stuck_cause(&self, task: &Task, for_good: bool) -> Option<StuckCause> {
        let mut cause: Option<StuckCause> = None;
        for (_, w) in &self.workers {
            if !w.is_eligible(task) {
                continue;
            }
            if !w.is_stuck() || (for_good && !w.stuck_for_good) {
                return None;
            }
            match &mut cause {
                Some(c) => c.others += 1,
                None => {
                    cause = Some(StuckCause {
                        worker: format!("{} ({})", w.name, w.address),
                        error: w.spill_error().unwrap_or_default().to_owned(),
                        others: 0,
                    })
                }
            }
        }
        cause
    }

    /// Whether every worker that could run `task` is paused (and one is).
    pub(crate) fn all_eligible_paused(&self, task: &Task) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for (_, w) in &self.workers {
            if !w.is_eligible(task) {
                continue;
            }
            if !w.paused {
                return None;
            }
            names.push(w.name.clone());
        }
        (!names.is_empty()).then_some(names)
    }

    /// Errs, with `SpillFailed`, the tasks that became no-worker in this
    /// event (or were looked at again) and that only workers stuck for
    /// good could run. Runs before clients are told why keys wait.
    pub(crate) fn fail_spill_stuck(&mut self) {
        if self.stuck.is_empty() || !self.workers.iter().any(|(_, w)| w.stuck_for_good) {
            return;
        }
        let candidates: Vec<TaskId> = self.stuck.clone();
        let mut failed = 0u64;
        let mut example: Option<String> = None;
        for t in candidates {
            if !self.tasks.contains(t.ix()) || self.tasks[t].state() != TaskState::NoWorker {
                continue;
            }
            let Some(cause) = self.stuck_cause(&self.tasks[t], true) else {
                continue;
            };
            let message = format!(
                "no worker can run it: {}; it waited {} s for that to change",
                cause.describe(),
                self.config.spill_failed_timeout.as_secs_f64()
            );
            example.get_or_insert_with(|| message.clone());
            let error = Arc::new(TaskError {
                origin: self.tasks[t].key_owned(),
                error_type: "SpillFailed".into(),
                message,
                traceback: String::new(),
                lost: false,
            });
            failed += 1;
            self.fail(t, error);
        }
        if let Some(example) = example {
            self.observe.log(
                LogRecord::new(
                    Level::Error,
                    "spill-failed-tasks",
                    format!("{failed} tasks erred with SpillFailed: {example}"),
                )
                .with("tasks", failed),
            );
        }
    }
}
