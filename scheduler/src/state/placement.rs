//! Placement: which worker runs a ready task, and when.
//!
//! - A task may only go to a worker that offers its function, has at least
//!   the resources it asks for, and is inside its `workers` restriction
//!   (names or data addresses). With no such worker connected the task is
//!   `no-worker` until one registers.
//! - Among those with a free slot: the one already holding the most bytes
//!   of the task's dependencies, then the least occupied (tasks assigned
//!   per thread), then the earliest registered.
//! - Co-assignment: a task without dependencies goes to the worker that
//!   got the previous such task while that worker has a free slot. The
//!   graph order reaches a reduction's inputs one after another, so
//!   neighbouring roots share dependents (the two
//!   leaves under one node of a tree reduction); placing them together
//!   saves a transfer per dependent. Alternating them across workers, as
//!   "least occupied" alone would, makes every first-level node fetch one
//!   input from a peer. Load still balances: the sticky worker fills its
//!   slots, then the next root goes to the least occupied one.
//! - A worker gets at most `nthreads + queue depth` tasks at once, queue
//!   depth = nthreads ([`QUEUE_DEPTH_PER_THREAD`]): a thread never idles
//!   for a round trip, and the rest stays `queued` on the scheduler where a
//!   late joiner can still get it. Refinement for very short tasks: one
//!   queued task per thread cannot cover a round trip when tasks take
//!   microseconds, so once a worker's reported durations (`duration_us`,
//!   moving average) are known, its queue depth per thread is the number of
//!   tasks that fill [`QUEUED_WORK_PER_THREAD`] (1 ms), between 1 and
//!   [`QUEUE_DEPTH_PER_THREAD_MAX`]. Tasks of 1 ms or more get exactly the
//!   rule above; 10 µs tasks get 100 queued per thread (1 ms of work, which
//!   stealing can still move). Measured end to end (2 workers x 1 thread,
//!   101k tiny tasks, loopback): ~30k tasks/s at depth 1, ~85k at depth 64,
//!   the difference being one round trip per two tasks; on the 131k-task
//!   tree, a cap of 256 rather than 64 gives ~8% more (fewer, larger
//!   batches each way, and workers that do not run dry while the
//!   scheduler is busy).
//! - The queue is ordered by user priority (higher first), then graph order
//!   (`dask_core::order` within a graph: few results held at once), then
//!   submission order.
//! - Stealing: when a worker registers and nothing is left in the queue,
//!   it asks saturated workers to give back tasks beyond their thread count
//!   (`steal-request`); a stolen task is placed again like any ready task.

use std::ops::Bound;

use dask_core::messages::{ComputeTask, StealRequest};

use super::*;

/// Tasks a worker holds beyond its threads, per thread, while its task
/// durations are unknown or at least [`QUEUED_WORK_PER_THREAD`].
pub const QUEUE_DEPTH_PER_THREAD: usize = 1;

/// Work (by average duration) a worker may hold queued per thread, when
/// its tasks are short.
pub const QUEUED_WORK_PER_THREAD: std::time::Duration = std::time::Duration::from_millis(1);

/// Most tasks queued per thread, however short they are.
pub const QUEUE_DEPTH_PER_THREAD_MAX: usize = 256;

/// Weight of the newest duration in a worker's moving average.
const DURATION_AVERAGE_WEIGHT: f64 = 0.1;

/// Most queued tasks skipped (no free slot among their allowed workers) in
/// one placement pass before it stops: restricted tasks deep in the queue
/// wait for the front to move rather than cost a full scan every event.
pub const QUEUE_SCAN_SKIPS_MAX: usize = 256;

/// What [`SchedulerState::pick_worker`] found.
enum Pick {
    /// The best worker with a free slot.
    Worker(WorkerIdx),
    /// Workers can run it, but all of those are full.
    Full,
    /// No connected worker can run it.
    Nobody,
}

impl Worker {
    /// Most tasks assigned at once.
    pub(crate) fn slots(&self) -> usize {
        self.nthreads as usize * (1 + self.queue_depth_per_thread())
    }

    /// Most tasks it may ever be given (what `slots` can grow to).
    pub(crate) fn slots_max(&self) -> usize {
        self.nthreads as usize * (1 + QUEUE_DEPTH_PER_THREAD_MAX)
    }

    fn queue_depth_per_thread(&self) -> usize {
        match self.average_duration_us {
            None => QUEUE_DEPTH_PER_THREAD,
            Some(us) => {
                let budget = QUEUED_WORK_PER_THREAD.as_secs_f64() * 1e6;
                let fit = (budget / us.max(1.0)) as usize;
                fit.clamp(QUEUE_DEPTH_PER_THREAD, QUEUE_DEPTH_PER_THREAD_MAX)
            }
        }
    }

    /// Folds a reported task duration into the moving average.
    pub(crate) fn record_duration(&mut self, duration_us: u64) {
        let d = duration_us as f64;
        self.average_duration_us = Some(match self.average_duration_us {
            None => d,
            Some(avg) => avg + (d - avg) * DURATION_AVERAGE_WEIGHT,
        });
    }

    fn free_slots(&self) -> usize {
        self.slots().saturating_sub(self.processing.len())
    }

    /// Whether this worker may run `task`.
    pub(crate) fn can_run(&self, task: &Task) -> bool {
        let Some(def) = &task.def else {
            return false;
        };
        if self
            .functions
            .binary_search_by(|f| f.as_str().cmp(&def.function))
            .is_err()
        {
            return false;
        }
        if let Some(wanted) = def.resources() {
            for (name, amount) in wanted {
                if *amount > 0.0 && self.resources.get(name).is_none_or(|have| have < amount) {
                    return false;
                }
            }
        }
        if let Some(allowed) = def.workers() {
            if !allowed
                .iter()
                .any(|a| *a == self.name || *a == self.address)
            {
                return false;
            }
        }
        true
    }
}

impl SchedulerState {
    pub(crate) fn any_worker_can_run(&self, t: TaskId) -> bool {
        let task = &self.tasks[t.0];
        self.workers.iter().any(|(_, w)| w.can_run(task))
    }

    fn pick_worker(&self, t: TaskId) -> Pick {
        let task = &self.tasks[t.0];
        if let (true, Some(last)) = (task.dependencies.is_empty(), self.last_root_worker) {
            // A stale index (worker gone, slot reused) is only a preference.
            if let Some(w) = self.workers.get(last.0) {
                if w.free_slots() > 0 && w.can_run(task) {
                    return Pick::Worker(last);
                }
            }
        }
        let mut any = false;
        // (dependency bytes held, processing, nthreads, index)
        let mut best: Option<(u64, usize, u32, usize)> = None;
        for (i, w) in &self.workers {
            if !w.can_run(task) {
                continue;
            }
            any = true;
            if w.free_slots() == 0 {
                continue;
            }
            let held: u64 = task
                .dependencies
                .iter()
                .map(|d| &self.tasks[d.0])
                .filter(|d| d.who_has.contains(&WorkerIdx(i)))
                .map(|d| d.nbytes)
                .sum();
            let candidate = (held, w.processing.len(), w.nthreads, i);
            let better = match best {
                None => true,
                Some((b_held, b_proc, b_threads, _)) => {
                    // More bytes held wins; then lower processing/nthreads
                    // (compared by cross-multiplying).
                    held > b_held
                        || (held == b_held
                            && (candidate.1 as u64) * (b_threads as u64)
                                < (b_proc as u64) * (candidate.2 as u64))
                }
            };
            if better {
                best = Some(candidate);
            }
        }
        match best {
            Some((_, _, _, i)) => Pick::Worker(WorkerIdx(i)),
            None if any => Pick::Full,
            None => Pick::Nobody,
        }
    }

    /// Places queued tasks, in queue order, on workers with free slots.
    pub(crate) fn schedule(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let mut free: usize = self.workers.iter().map(|(_, w)| w.free_slots()).sum();
        let mut cursor: Option<QueueKey> = None;
        let mut skipped = 0;
        while free > 0 && skipped < QUEUE_SCAN_SKIPS_MAX {
            let next = match cursor {
                None => self.queue.iter().next(),
                Some(c) => self
                    .queue
                    .range((Bound::Excluded(c), Bound::Unbounded))
                    .next(),
            };
            let Some((&k, &t)) = next else {
                break;
            };
            match self.pick_worker(t) {
                Pick::Worker(w) => {
                    self.assign(t, w);
                    free -= 1;
                }
                Pick::Full => {
                    skipped += 1;
                    cursor = Some(k);
                }
                Pick::Nobody => self.set_state(t, TaskState::NoWorker),
            }
        }
    }

    /// Sends `t` to worker `w`.
    fn assign(&mut self, t: TaskId, w: WorkerIdx) {
        self.set_state(t, TaskState::Processing(w));
        let task = &self.tasks[t.0];
        if task.dependencies.is_empty() {
            self.last_root_worker = Some(w);
        }
        let Some(def) = &task.def else {
            return;
        };
        let who_has = task
            .dependencies
            .iter()
            .map(|d| {
                let dep = &self.tasks[d.0];
                let addresses = dep
                    .who_has
                    .iter()
                    .filter_map(|x| self.workers.get(x.0).map(|k| k.address.clone()))
                    .collect();
                (dep.key.clone(), addresses)
            })
            .collect();
        let m = Message::ComputeTask(ComputeTask {
            key: task.key.clone(),
            function: def.function.clone(),
            args: def.args.clone(),
            kwargs: def.kwargs().cloned(),
            who_has,
            priority: (task.priority != 0).then_some(task.priority),
            resources: def.resources().cloned(),
        });
        self.send_worker(w, m);
    }

    /// A worker registered: tasks only it can run leave no-worker; once the
    /// queue is placed, it may steal.
    pub(crate) fn worker_joined(&mut self, w: WorkerIdx) {
        let runnable: Vec<TaskId> = self
            .no_worker
            .iter()
            .copied()
            .filter(|t| self.workers[w.0].can_run(&self.tasks[t.0]))
            .collect();
        for t in runnable {
            self.set_state(t, TaskState::Queued);
        }
        self.steal_for.push(w);
    }

    /// A worker left (its tasks are already handled): queued tasks that no
    /// remaining worker can run become no-worker.
    pub(crate) fn worker_left(&mut self, w: WorkerIdx) {
        let stranded: Vec<TaskId> = self
            .queue
            .values()
            .copied()
            .filter(|&t| !self.any_worker_can_run(t))
            .collect();
        for t in stranded {
            self.set_state(t, TaskState::NoWorker);
        }
        self.data_worker_left(w);
    }

    /// Asks saturated workers to give back not-yet-started tasks for the
    /// new worker `thief`, when the queue has nothing left for it.
    pub(crate) fn steal_for_worker(&mut self, thief: WorkerIdx) {
        let Some(worker) = self.workers.get(thief.0) else {
            return;
        };
        let mut room = worker.free_slots();
        if room == 0 || !self.queue.is_empty() {
            return;
        }
        let victims: Vec<WorkerIdx> = self
            .workers
            .iter()
            .filter(|&(i, v)| i != thief.0 && v.processing.len() > v.nthreads as usize)
            .map(|(i, _)| WorkerIdx(i))
            .collect();
        for v in victims {
            if room == 0 {
                break;
            }
            let victim = &self.workers[v.0];
            let excess = victim.processing.len() - victim.nthreads as usize;
            // The last in queue order are the least likely to have started.
            let mut candidates: Vec<(QueueKey, TaskId)> = victim
                .processing
                .iter()
                .map(|&t| (self.tasks[t.0].queue_key(), t))
                .filter(|(_, t)| {
                    let task = &self.tasks[t.0];
                    !task.steal_pending && self.workers[thief.0].can_run(task)
                })
                .collect();
            candidates.sort_unstable_by_key(|&(k, _)| Reverse(k));
            for (_, t) in candidates.into_iter().take(excess.min(room)) {
                self.tasks[t.0].steal_pending = true;
                let key = self.tasks[t.0].key.clone();
                self.send_worker(v, Message::StealRequest(StealRequest { key }));
                room -= 1;
            }
        }
    }
}
