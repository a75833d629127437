//! Placement: which worker runs a ready task, and when.
//!
//! - A task may only go to a worker that offers its function, has at least
//!   the resources it asks for, and is inside its `workers` restriction
//!   (names or data addresses). With no such worker connected the task is
//!   `no-worker` until one registers. A paused worker gets no task, and one
//!   paused that cannot spill counts as not there ([`pause`](super::pause)).
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
//! - Durations are estimated per task group (key prefix, as the dashboard
//!   groups them: `inc-3` and `inc-9` are one group): a moving average of
//!   the `duration_us` their tasks reported, [`UNKNOWN_DURATION`] (Dask's
//!   default, 0.5 s) for a group with no report yet. One estimate per
//!   worker, as before, mixed everything a worker ran: after 2,000 fast
//!   `inc`s it called `sleep(0.1)` fast too, queued 256 per thread on the
//!   first worker with room, and left the other idle.
//! - A worker gets at most `nthreads + queue depth` tasks at once, queue
//!   depth = nthreads ([`QUEUE_DEPTH_PER_THREAD`]): a thread never idles
//!   for a round trip, and the rest stays `queued` on the scheduler where a
//!   late joiner can still get it. Refinement for very short tasks: one
//!   queued task per thread cannot cover a round trip when tasks take
//!   microseconds, so the queue depth per thread is the number of tasks of
//!   the mean estimated duration of what the worker holds (its occupancy
//!   over its task count) that fill [`QUEUED_WORK_PER_THREAD`] (1 ms),
//!   between 1 and [`QUEUE_DEPTH_PER_THREAD_MAX`]: queued work is bounded
//!   in estimated seconds. Tasks of 1 ms or more get exactly the rule
//!   above; 10 µs tasks get 100 queued per thread (1 ms of work, which
//!   stealing can still move); one task of an unknown group among them
//!   brings the depth back to 1. Measured end to end (2 workers x 1 thread,
//!   101k tiny tasks, loopback): ~30k tasks/s at depth 1, ~85k at depth 64,
//!   the difference being one round trip per two tasks; on the 131k-task
//!   tree, a cap of 256 rather than 64 gives ~8% more (fewer, larger
//!   batches each way, and workers that do not run dry while the
//!   scheduler is busy).
//! - The queue is ordered by user priority (higher first), then graph order
//!   (`dask_core::order` within a graph: few results held at once), then
//!   submission order.
//! - Stealing (`steal-request`, which every dask/1 worker serves): after
//!   each event, when nothing is left in the queue, a worker that just
//!   joined or has an idle thread asks the others for tasks
//!   beyond what their threads can start, the last in queue order first,
//!   up to its free slots and at most half the difference between the two
//!   workers' task counts (so tasks do not bounce back). A stolen task goes
//!   to that worker; a refused one is running and is not asked for again.
//!   A task whose dependencies the thief lacks is stolen only when moving
//!   them ([`STEAL_BYTES_PER_US`]) takes less than its estimated duration.
//!   A task freed while it may be running (cancelled, released) can keep
//!   its thread busy on the worker, which does not say when it ends: the
//!   worker counts as one thread short for stealing until it reports its
//!   next result, so the tasks queued behind such a run move to an idle
//!   worker instead of waiting for it; as a thief too, so that two workers
//!   whose threads are all held by such runs do not bounce a task between
//!   them.

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

/// Weight of the newest duration in a worker's moving average (the
/// dashboard's average task time).
const DURATION_AVERAGE_WEIGHT: f64 = 0.1;

/// Weight of the newest duration in a task group's estimate: tasks of one
/// group are alike, so the estimate follows them quickly.
const GROUP_DURATION_WEIGHT: f64 = 0.5;

/// The estimated duration of a task whose group has not reported one yet:
/// long enough that a worker holds no more than one such task queued per
/// thread (Dask's `default-task-durations` is also 0.5 s).
pub const UNKNOWN_DURATION: std::time::Duration = std::time::Duration::from_millis(500);

/// Bytes a steal may move per microsecond of the stolen task's estimated
/// duration (1 GB/s): stealing a task whose inputs take longer to move
/// than to compute loses time.
pub const STEAL_BYTES_PER_US: f64 = 1_000.0;

/// Duration estimates per task group, in microseconds.
#[derive(Debug, Default)]
pub(crate) struct GroupDurations {
    by_group: Vec<Option<f64>>,
}

impl GroupDurations {
    /// The estimated duration of a task of group `g`.
    pub(crate) fn estimate_us(&self, g: GroupId) -> f64 {
        match self.by_group.get(g.index()) {
            Some(Some(us)) => *us,
            _ => UNKNOWN_DURATION.as_secs_f64() * 1e6,
        }
    }

    /// Folds a task of group `g` that took `duration_us` into its estimate.
    pub(crate) fn record(&mut self, g: GroupId, duration_us: u64) {
        if self.by_group.len() <= g.index() {
            self.by_group.resize(g.index() + 1, None);
        }
        let d = duration_us as f64;
        let estimate = &mut self.by_group[g.index()];
        *estimate = Some(match *estimate {
            None => d,
            Some(e) => e + (d - e) * GROUP_DURATION_WEIGHT,
        });
    }
}

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

/// The order of a worker's function names: by length, then bytes, so a
/// lookup compares lengths and reads the bytes of names of the same length
/// only (a lookup per placement and per task made ready was ~280
/// instructions of `memcmp`s with name-order, ~7% of the chain's).
pub(crate) fn function_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

impl Worker {
    /// Whether it offers `function`: a shared name by its bit in
    /// [`Worker::offered`] (the worker's names were shared as it
    /// registered, so a shared name it offers has its bit), a name held
    /// apart (past the bound on shared names) by its text.
    pub(crate) fn offers(&self, function: &FunctionName) -> bool {
        if function.index != FunctionName::NOT_SHARED {
            let i = function.index as usize;
            return self
                .offered
                .get(i / 64)
                .is_some_and(|bits| bits >> (i % 64) & 1 == 1);
        }
        self.functions
            .binary_search_by(|f| function_order(f, function))
            .is_ok()
    }

    /// Most tasks assigned at once, given the estimates in `durations`.
    pub(crate) fn slots(&self, durations: &GroupDurations) -> usize {
        self.nthreads as usize * (1 + self.queue_depth_per_thread(durations))
    }

    /// Most tasks it may ever be given (what `slots` can grow to).
    pub(crate) fn slots_max(&self) -> usize {
        self.nthreads as usize * (1 + QUEUE_DEPTH_PER_THREAD_MAX)
    }

    /// Estimated microseconds of work it holds (running and queued).
    pub(crate) fn occupancy_us(&self, durations: &GroupDurations) -> f64 {
        self.processing_groups
            .iter()
            .map(|&(g, n)| n as f64 * durations.estimate_us(g))
            .sum()
    }

    /// Queued tasks per thread: as many of the mean estimated duration of
    /// what it holds as fill [`QUEUED_WORK_PER_THREAD`].
    fn queue_depth_per_thread(&self, durations: &GroupDurations) -> usize {
        if self.processing.is_empty() {
            return QUEUE_DEPTH_PER_THREAD;
        }
        let mean = self.occupancy_us(durations) / self.processing.len() as f64;
        let budget = QUEUED_WORK_PER_THREAD.as_secs_f64() * 1e6;
        let fit = (budget / mean.max(1.0)) as usize;
        fit.clamp(QUEUE_DEPTH_PER_THREAD, QUEUE_DEPTH_PER_THREAD_MAX)
    }

    /// Counts a task of group `g` into (`+1`) or out of (`-1`) what it
    /// processes.
    pub(crate) fn count_processing(&mut self, g: GroupId, delta: i32) {
        match self.processing_groups.iter().position(|&(x, _)| x == g) {
            Some(i) => {
                let n = &mut self.processing_groups[i].1;
                *n = n.saturating_add_signed(delta);
                if *n == 0 {
                    self.processing_groups.swap_remove(i);
                }
            }
            None if delta > 0 => self.processing_groups.push((g, delta as u32)),
            None => {}
        }
    }

    /// Threads that may start its queued tasks: its threads less the runs
    /// freed while they may still be running.
    fn threads_free_of_abandoned_runs(&self) -> usize {
        (self.nthreads as usize).saturating_sub(self.abandoned as usize)
    }

    /// Folds a reported task duration into the moving average.
    pub(crate) fn record_duration(&mut self, duration_us: u64) {
        let d = duration_us as f64;
        self.average_duration_us = Some(match self.average_duration_us {
            None => d,
            Some(avg) => avg + (d - avg) * DURATION_AVERAGE_WEIGHT,
        });
    }

    /// Tasks it may be given now: none while it is paused (see [`pause`]).
    fn free_slots(&self, durations: &GroupDurations) -> usize {
        if self.paused {
            return 0;
        }
        self.slots(durations).saturating_sub(self.processing.len())
    }

    /// Whether this worker may run `task`: it is eligible and not stuck
    /// (paused with a failing spill store, see [`pause`]).
    pub(crate) fn can_run(&self, task: &Task) -> bool {
        !self.is_stuck() && self.is_eligible(task)
    }

    /// Whether `task` may go to this worker at all: its function, its
    /// resources and its `workers` restriction.
    pub(crate) fn is_eligible(&self, task: &Task) -> bool {
        let Some(def) = task.def() else {
            return false;
        };
        if !self.offers(def.function) {
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
        let task = &self.tasks[t];
        self.workers.iter().any(|(_, w)| w.can_run(task))
    }

    fn pick_worker(&self, t: TaskId) -> Pick {
        let task = &self.tasks[t];
        // Each worker is asked once whether it can run the task: the last
        // root worker's answer, when asked first, is kept for the loop.
        let mut asked: Option<(usize, bool)> = None;
        if let (true, Some(last)) = (task.dependencies.is_empty(), self.last_root_worker) {
            // A stale index (worker gone, slot reused) is only a preference.
            if let Some(w) = self.workers.get(last.ix()) {
                let can = w.can_run(task);
                if can && w.free_slots(&self.durations) > 0 {
                    return Pick::Worker(last);
                }
                asked = Some((last.ix(), can));
            }
        }
        let mut any = false;
        // (dependency bytes held, processing, nthreads, index)
        let mut best: Option<(u64, usize, u32, usize)> = None;
        for (i, w) in &self.workers {
            let can = match asked {
                Some((j, can)) if j == i => can,
                _ => w.can_run(task),
            };
            if !can {
                continue;
            }
            any = true;
            if w.free_slots(&self.durations) == 0 {
                continue;
            }
            let held: u64 = task
                .dependencies
                .iter()
                .map(|d| &self.tasks[d])
                .filter(|d| d.who_has.contains(&WorkerIdx::new(i)))
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
            Some((_, _, _, i)) => Pick::Worker(WorkerIdx::new(i)),
            None if any => Pick::Full,
            None => Pick::Nobody,
        }
    }

    /// Places queued tasks, in queue order, on workers with free slots.
    pub(crate) fn schedule(&mut self) {
        if self.queue.is_empty() || self.placement_held() {
            return;
        }
        let mut free: usize = self
            .workers
            .iter()
            .map(|(_, w)| w.free_slots(&self.durations))
            .sum();
        let mut cursor: Option<QueueKey> = None;
        let mut skipped = 0;
        while free > 0 && skipped < QUEUE_SCAN_SKIPS_MAX {
            let Some((k, t)) = self.queue.next_after(cursor) else {
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
    pub(crate) fn assign(&mut self, t: TaskId, w: WorkerIdx) {
        self.set_state(t, TaskState::Processing(w));
        self.grant_fetch_permits(t, w);
        let hash = self.key_index.hash(self.tasks[t].key_bytes());
        let sent = &mut self.workers[w].sent;
        if sent.len() == SENT_HINTS_MAX {
            sent.pop_front();
        }
        sent.push_back((hash, t));
        let mut scratch = std::mem::take(&mut self.args_scratch);
        let task = &self.tasks[t];
        if task.dependencies.is_empty() {
            self.last_root_worker = Some(w);
        }
        let Some(def) = task.def() else {
            return;
        };
        // Inserted one by one: collecting sorts through a vector first,
        // and most tasks have one or two dependencies.
        let mut who_has = BTreeMap::new();
        for d in task.dependencies.iter() {
            let dep = &self.tasks[d];
            let addresses = dep
                .who_has
                .iter()
                .filter_map(|x| self.workers.get(x.ix()).map(|k| k.address.clone()))
                .collect();
            who_has.insert(dep.key_owned(), addresses);
        }
        let m = Message::ComputeTask(ComputeTask {
            key: task.key_owned(),
            function: String::clone(def.function),
            args: def.args(&self.tasks, &mut scratch),
            kwargs: def.kwargs().cloned(),
            who_has,
            priority: (task.priority() != 0).then_some(task.priority()),
            resources: def.resources().cloned(),
        });
        self.args_scratch = scratch;
        self.send_worker(w, m);
    }

    /// A worker registered: tasks only it can run leave no-worker; once the
    /// queue is placed, it may steal ([`SchedulerState::balance`]).
    pub(crate) fn worker_joined(&mut self, w: WorkerIdx) {
        let runnable: Vec<TaskId> = self
            .no_worker
            .iter()
            .copied()
            .filter(|t| self.workers[w].can_run(&self.tasks[t]))
            .collect();
        for t in runnable {
            self.set_state(t, TaskState::Queued);
        }
        self.joined.push(w);
    }

    /// A worker left (its tasks are already handled): queued tasks that no
    /// remaining worker can run become no-worker.
    pub(crate) fn worker_left(&mut self, w: WorkerIdx) {
        self.strand_queued();
        self.data_worker_left(w);
    }

    /// Queued tasks that no worker can run now become no-worker (a worker
    /// left, or can run nothing any more).
    pub(crate) fn strand_queued(&mut self) {
        let stranded: Vec<TaskId> = self
            .queue
            .iter()
            .map(|(_, t)| t)
            .filter(|&t| !self.any_worker_can_run(t))
            .collect();
        for t in stranded {
            self.set_state(t, TaskState::NoWorker);
        }
    }

    /// Steals for every worker with an idle thread and every worker that
    /// just joined, when the queue has nothing left (see the module docs).
    pub(crate) fn balance(&mut self) {
        let joined = std::mem::take(&mut self.joined);
        if !self.queue.is_empty() || self.workers.len() < 2 {
            return;
        }
        // Nothing to steal while no worker holds more than its threads can
        // start (a chain, a quiet cluster): the common case, checked
        // without collecting anything.
        let victims = self
            .workers
            .iter()
            .any(|(_, v)| v.processing.len() > v.threads_free_of_abandoned_runs());
        if !victims {
            return;
        }
        let thieves: Vec<WorkerIdx> = self
            .workers
            .iter()
            // A thread held by an abandoned run is not idle: counting it
            // idle here while the victim's side counts it busy bounced a
            // task between two such workers for ever.
            .filter(|&(i, w)| {
                w.processing.len() < w.threads_free_of_abandoned_runs()
                    || joined.contains(&WorkerIdx::new(i))
            })
            .map(|(i, _)| WorkerIdx::new(i))
            .collect();
        for thief in thieves {
            self.steal_for(thief);
        }
    }

    /// Asks the other workers for tasks their threads cannot start yet,
    /// for `thief`.
    fn steal_for(&mut self, thief: WorkerIdx) {
        let Some(worker) = self.workers.get(thief.ix()) else {
            return;
        };
        let mut room = worker.free_slots(&self.durations);
        let mut held = worker.processing.len() + self.steals_to(thief);
        // The most loaded first.
        let mut victims: Vec<(usize, WorkerIdx)> = self
            .workers
            .iter()
            .filter(|&(i, v)| {
                i != thief.ix() && v.processing.len() > v.threads_free_of_abandoned_runs()
            })
            .map(|(i, v)| (v.processing.len(), WorkerIdx::new(i)))
            .collect();
        victims.sort_unstable_by_key(|&(n, v)| (Reverse(n), v.0));
        for (_, v) in victims {
            if room == 0 {
                break;
            }
            let victim = &self.workers[v];
            let asked = victim
                .processing
                .iter()
                .filter(|&&t| self.tasks[t].steal_pending())
                .count();
            let excess = victim
                .processing
                .len()
                .saturating_sub(victim.threads_free_of_abandoned_runs() + asked);
            let left = victim.processing.len() - asked;
            // Half the difference, rounded up: 1 vs 0 moves, 1 vs 1 not.
            let fair = left.saturating_sub(held).div_ceil(2);
            let take = excess.min(room).min(fair);
            if take == 0 {
                continue;
            }
            // The last in queue order are the least likely to have started.
            let mut candidates: Vec<(QueueKey, TaskId)> = victim
                .processing
                .iter()
                .map(|&t| (self.tasks[t].queue_key(), t))
                .filter(|&(_, t)| self.worth_stealing(t, thief))
                .collect();
            candidates.sort_unstable_by_key(|&(k, t)| (Reverse(k), t));
            for (_, t) in candidates.into_iter().take(take) {
                self.tasks[t].set_steal_pending(true);
                self.steal_thieves.insert(t, thief);
                let key = self.tasks[t].key_owned();
                self.send_worker(v, Message::StealRequest(StealRequest { key }));
                room -= 1;
                held += 1;
            }
        }
    }

    /// Steals in flight towards `thief`.
    fn steals_to(&self, thief: WorkerIdx) -> usize {
        self.steal_thieves.values().filter(|&&x| x == thief).count()
    }

    /// Whether `thief` should ask for `t`: not asked for already, not known
    /// to be running, runnable there, and its inputs the thief lacks move
    /// faster than it computes.
    fn worth_stealing(&self, t: TaskId, thief: WorkerIdx) -> bool {
        let task = &self.tasks[t];
        if task.steal_pending() || task.steal_refused() || !self.workers[thief].can_run(task) {
            return false;
        }
        let missing: u64 = task
            .dependencies
            .iter()
            .map(|d| &self.tasks[d])
            .filter(|d| !d.who_has.contains(&thief))
            .map(|d| d.nbytes)
            .sum();
        missing as f64 / STEAL_BYTES_PER_US <= self.durations.estimate_us(task.group)
    }
}
