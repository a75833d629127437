//! The task state machine: transitions, reference counts, client events,
//! and the worker reports that drive them.

use dask_core::messages::{CancelKeys, StealResponse, TaskErred, TaskFinished};

use super::*;
use crate::journal::format;

/// Most entries of `expand`'s stack kept between calls.
const EXPAND_STACK_KEPT_MAX: usize = 4096;

impl SchedulerState {
    // ---- state bookkeeping ----------------------------------------------

    /// Moves `t` to `new`, keeping the queue, the no-worker set, worker
    /// processing sets and dependencies' waiter counts in step. Sends
    /// nothing: callers free running copies themselves.
    pub(crate) fn set_state(&mut self, t: TaskId, new: TaskState) {
        self.touch(t);
        let old = self.tasks[t].state();
        match old {
            TaskState::Queued => {
                let k = self.tasks[t].queue_key();
                self.queue.remove(&k);
            }
            TaskState::NoWorker => {
                self.no_worker.remove(&t);
            }
            TaskState::Processing(w) => {
                if let Some(worker) = self.workers.get_mut(w.ix()) {
                    worker.processing.remove(&t);
                    worker.count_processing(self.tasks[t].group, -1);
                }
                let task = &mut self.tasks[t];
                if task.steal_pending() {
                    self.steal_thieves.remove(&t);
                }
                task.set_steal_pending(false);
                task.set_steal_refused(false);
            }
            _ => {}
        }
        if old == TaskState::Memory && new != TaskState::Memory {
            self.drop_fetch_permits(t);
        }
        let (was, is) = (old.is_active(), new.is_active());
        if was != is {
            for i in 0..self.tasks[t].dependencies.len() {
                let d = self.tasks[t].dependencies[i];
                let dep = &mut self.tasks[d];
                if is {
                    dep.waiters += 1;
                } else {
                    dep.waiters -= 1;
                    self.to_check.push(d);
                }
            }
        }
        self.tasks[t].put_state(new);
        self.observe.task_moved(self.tasks[t].group, old, new);
        match new {
            TaskState::Queued => {
                let k = self.tasks[t].queue_key();
                self.queue.insert(k, t);
            }
            TaskState::NoWorker => {
                self.no_worker.insert(t);
                self.note_stuck(t);
            }
            TaskState::Processing(w) => {
                if let Some(worker) = self.workers.get_mut(w.ix()) {
                    worker.processing.insert(t);
                    worker.count_processing(self.tasks[t].group, 1);
                }
            }
            _ => {}
        }
    }

    /// Leaves `t`'s current state for `new`, freeing a running copy on its
    /// worker first.
    pub(crate) fn stop_and_set(&mut self, t: TaskId, new: TaskState) {
        if let TaskState::Processing(w) = self.tasks[t].state() {
            self.free_task_on(w, t);
            // It may be running: the worker cannot stop it.
            if let Some(worker) = self.workers.get_mut(w.ix()) {
                worker.abandoned = worker.abandoned.saturating_add(1);
            }
        }
        self.set_state(t, new);
    }

    /// A ready task (every dependency in memory) goes to the queue, or to
    /// no-worker when no connected worker could ever run it.
    pub(crate) fn make_ready(&mut self, t: TaskId) {
        if self.any_worker_can_run(t) {
            self.set_state(t, TaskState::Queued);
        } else {
            self.set_state(t, TaskState::NoWorker);
        }
    }

    /// Brings `root` (released) to memory: it and, transitively, every
    /// released dependency become waiting, and those whose dependencies are
    /// all in memory become ready. Iterative: chains may be long.
    pub(crate) fn activate(&mut self, root: TaskId) {
        if self.tasks[root].state() == TaskState::Released {
            self.expand(root);
        }
    }

    /// Recounts an active task's dependencies from scratch (it came back
    /// from a worker: the worker died, missed a dependency, or gave the
    /// task up to a steal) and recomputes released ones.
    pub(crate) fn reevaluate(&mut self, t: TaskId) {
        if self.tasks[t].state().is_active() {
            self.expand(t);
        }
    }

    fn expand(&mut self, root: TaskId) {
        let mut stack = std::mem::take(&mut self.expand_stack);
        stack.push((root, false));
        while let Some((t, expanded)) = stack.pop() {
            if expanded {
                let task = &self.tasks[t];
                if task.state() == TaskState::Waiting && task.waiting_on == 0 {
                    self.make_ready(t);
                }
                continue;
            }
            let state = self.tasks[t].state();
            if state != TaskState::Released && !(t == root && state.is_active()) {
                continue;
            }
            let ready = state == TaskState::Released
                && self.tasks[t].dependencies.iter().all(|d| {
                    let dep = &self.tasks[d];
                    dep.state() == TaskState::Memory && dep.rare().error.is_none()
                });
            if ready {
                // Straight to the queue, not through waiting: one state
                // change less for every root (~110 instructions).
                self.tasks[t].waiting_on = 0;
                self.make_ready(t);
                continue;
            }
            self.set_state(t, TaskState::Waiting);
            let erred = self.tasks[t]
                .dependencies
                .iter()
                .find_map(|d| self.tasks[d].rare().error.clone());
            if let Some(error) = erred {
                self.fail(t, error);
                continue;
            }
            stack.push((t, true));
            let mut waiting = 0;
            for i in 0..self.tasks[t].dependencies.len() {
                let d = self.tasks[t].dependencies[i];
                match self.tasks[d].state() {
                    TaskState::Memory => {}
                    TaskState::Released => {
                        waiting += 1;
                        stack.push((d, false));
                    }
                    _ => waiting += 1,
                }
            }
            self.tasks[t].waiting_on = waiting;
        }
        // A large graph's stack is not kept (it held a task per level).
        if stack.capacity() <= EXPAND_STACK_KEPT_MAX {
            self.expand_stack = stack;
        }
    }

    /// `t` is erred with `error` (its own, or a dependency's); so is every
    /// dependent not already in memory or erred. Wanting clients get
    /// key-erred and keep wanting the key (they release it as any other);
    /// for lost data they get key-lost and their wants end.
    pub(crate) fn fail(&mut self, t: TaskId, error: Arc<TaskError>) {
        let mut stack = vec![t];
        self.mark_erred(t, error.clone());
        while let Some(x) = stack.pop() {
            let dependents: Vec<TaskId> = self.tasks[x].dependents.to_vec();
            for y in dependents {
                let s = self.tasks[y].state();
                if s == TaskState::Released || s.is_active() {
                    self.mark_erred(y, error.clone());
                    stack.push(y);
                }
            }
        }
    }

    fn mark_erred(&mut self, t: TaskId, error: Arc<TaskError>) {
        self.stop_and_set(t, TaskState::Erred);
        let task = &mut self.tasks[t];
        task.who_has.clear();
        task.rare_mut().error = Some(error.clone());
        let clients = task.wanted_by.clone();
        // A detached session (after a restore) keeps its want of lost data
        // until its client comes back and hears of it (`reattach`).
        if error.lost {
            task.wanted_by.retain(|&c| Self::is_detached(c));
        }
        for c in clients {
            let m = self.error_event(t, &error, self.want_request(c, t));
            if error.lost && !Self::is_detached(c) {
                if let Some(client) = self.clients.get_mut(&c) {
                    client.wants.remove(&t);
                }
            }
            self.send(c, m);
        }
        self.to_check.push(t);
    }

    /// The `request` a dask/1.1 client's event about `t` carries: that of
    /// the message that started its want (none for a 1.0 client).
    pub(crate) fn want_request(&self, c: ConnId, t: TaskId) -> Option<u64> {
        let client = self.clients.get(&c).filter(|client| client.v1_1)?;
        client.wants.get(&t).map(|want| want.request)
    }

    /// The key-erred or key-lost event for erred task `t`, carrying
    /// `request` (see [`SchedulerState::want_request`]).
    pub(crate) fn error_event(
        &self,
        t: TaskId,
        error: &TaskError,
        request: Option<u64>,
    ) -> Message {
        let key = self.tasks[t].key_owned();
        if error.lost {
            let message = if error.origin == key {
                error.message.clone()
            } else {
                format!("depends on {}: {}", error.origin, error.message)
            };
            return Message::KeyLost(KeyLost {
                key,
                message,
                request,
            });
        }
        let cause = (error.origin != key).then(|| error.origin.clone());
        Message::KeyErred(KeyErred {
            key,
            error_type: error.error_type.clone(),
            message: error.message.clone(),
            traceback: error.traceback.clone(),
            cause,
            request,
        })
    }

    /// The last copy of `t`'s data is gone. Its lineage recomputes it if
    /// anything still needs it; scattered data is lost for good.
    pub(crate) fn lose_data(&mut self, t: TaskId) {
        let task = &self.tasks[t];
        if task.def().is_none() {
            let error = Arc::new(TaskError {
                origin: task.key_owned(),
                error_type: "KeyLost".into(),
                message: "scattered data was lost with the last worker holding it".into(),
                traceback: String::new(),
                lost: true,
            });
            return self.fail(t, error);
        }
        self.observe.task_lost(task.group);
        self.set_state(t, TaskState::Released);
        let dependents: Vec<TaskId> = self.tasks[t].dependents.to_vec();
        for y in dependents {
            match self.tasks[y].state() {
                TaskState::Waiting => self.tasks[y].waiting_on += 1,
                TaskState::Queued | TaskState::NoWorker => {
                    self.set_state(y, TaskState::Waiting);
                    self.tasks[y].waiting_on = 1;
                }
                // A running dependent may already have the data; if not it
                // reports missing-data and is reevaluated then.
                _ => {}
            }
        }
        let task = &self.tasks[t];
        if task.is_wanted() || task.waiters > 0 {
            self.activate(t);
        } else {
            self.to_check.push(t);
        }
    }

    /// Drops worker `w`'s copy of `t` (no message is sent).
    pub(crate) fn remove_replica(&mut self, t: TaskId, w: WorkerIdx) -> bool {
        let task = &mut self.tasks[t];
        let Some(pos) = task.who_has.iter().position(|&x| x == w) else {
            return false;
        };
        task.who_has.remove(pos);
        let nbytes = task.nbytes;
        self.touch(t);
        if let Some(worker) = self.workers.get_mut(w.ix()) {
            worker.has_what.remove(&t);
            worker.stored_bytes = worker.stored_bytes.saturating_sub(nbytes);
        }
        true
    }

    /// Records that worker `w` holds `t`'s data.
    pub(crate) fn add_replica(&mut self, t: TaskId, w: WorkerIdx) {
        let task = &mut self.tasks[t];
        if task.who_has.contains(&w) {
            return;
        }
        task.who_has.push(w);
        let nbytes = task.nbytes;
        self.touch(t);
        if let Some(worker) = self.workers.get_mut(w.ix()) {
            worker.has_what.insert(t);
            worker.stored_bytes += nbytes;
        }
    }

    // ---- reference counts -------------------------------------------------

    /// Releases what nothing needs any more, then forgets what nothing
    /// refers to; cascades to dependencies. Whether it released or forgot
    /// `t` (what a release step counts).
    pub(super) fn check(&mut self, t: TaskId) -> bool {
        let Some(task) = self.tasks.get(t.ix()) else {
            return false;
        };
        if self.config.validate {
            self.touched.push(t);
        }
        if task.is_wanted() {
            return false;
        }
        let state = task.state();
        let mut released = false;
        if task.waiters == 0 {
            released = state.is_active() || state == TaskState::Memory;
            if state.is_active() {
                self.stop_and_set(t, TaskState::Released);
            } else if state == TaskState::Memory {
                let holders = std::mem::take(&mut self.tasks[t].who_has);
                let nbytes = self.tasks[t].nbytes;
                for w in holders {
                    if let Some(worker) = self.workers.get_mut(w.ix()) {
                        worker.has_what.remove(&t);
                        worker.stored_bytes = worker.stored_bytes.saturating_sub(nbytes);
                    }
                    self.free_task_on(w, t);
                }
                self.set_state(t, TaskState::Released);
            }
        }
        let task = &self.tasks[t];
        if matches!(task.state(), TaskState::Released | TaskState::Erred)
            && task.dependents.is_empty()
            && task.waiters == 0
        {
            self.forget(t);
            return true;
        }
        released
    }

    fn forget(&mut self, t: TaskId) {
        let task = self.tasks.remove(t.ix());
        self.observe.task_removed(task.group, task.state());
        self.key_index.remove(task.key(), t);
        for d in task.dependencies {
            self.tasks[d].dependents.remove(t);
            self.to_check.push(d);
        }
    }

    /// Client `conn` wants `t`, for the message with id `request`: events
    /// follow (at once when it is already in memory or erred). A want still
    /// pending is left as it is (one want per key: the events answer the
    /// message that started it); one whose event was sent starts again
    /// with this request, and its event comes again. An erred task stays
    /// wanted (with its error) until released; one whose data was lost is
    /// not wanted (key-lost ends the want).
    pub(crate) fn add_want(&mut self, conn: ConnId, t: TaskId, request: u64) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let task = &mut self.tasks[t];
        if task.state() == TaskState::Erred {
            let Some(error) = task.rare().error.clone() else {
                return;
            };
            // The event is sent again: it answers this message. (key-lost
            // ends the want, so none is made for lost data.)
            let event_request = client.v1_1.then_some(request);
            match client.wants.get_mut(&t) {
                Some(want) => want.request = request,
                None if !error.lost => {
                    task.wanted_by.push(conn);
                    let want = Want {
                        finished_sent: false,
                        request,
                        waiting_told: false,
                    };
                    client.wants.insert(t, want);
                }
                None => {}
            }
            let m = self.error_event(t, &error, event_request);
            self.send(conn, m);
            self.to_check.push(t);
            return;
        }
        let in_memory = task.state() == TaskState::Memory;
        match client.wants.get_mut(&t) {
            Some(want) if !want.finished_sent => return,
            Some(want) => {
                *want = Want {
                    finished_sent: in_memory,
                    request,
                    waiting_told: false,
                }
            }
            None => {
                task.wanted_by.push(conn);
                let want = Want {
                    finished_sent: in_memory,
                    request,
                    waiting_told: false,
                };
                client.wants.insert(t, want);
            }
        }
        if in_memory {
            let m = Message::KeyFinished(KeyFinished {
                key: task.key_owned(),
                nbytes: task.nbytes,
                request: self.want_request(conn, t),
                value: None,
            });
            self.send(conn, m);
        } else if task.state() == TaskState::Released {
            self.activate(t);
        }
    }

    /// Client `conn` no longer wants `t`. Returns whether it did.
    pub(crate) fn remove_want(&mut self, conn: ConnId, t: TaskId) -> bool {
        let Some(client) = self.clients.get_mut(&conn) else {
            return false;
        };
        if client.wants.remove(&t).is_none() {
            return false;
        }
        self.tasks[t].wanted_by.retain(|&c| c != conn);
        self.to_check.push(t);
        true
    }

    /// Sends key-finished to wanting clients that have not had it.
    pub(crate) fn notify_finished(&mut self, t: TaskId, inline: Option<&RawValue>) {
        let task = &self.tasks[t];
        for i in 0..task.wanted_by.len() {
            let c = self.tasks[t].wanted_by[i];
            let Some(client) = self.clients.get_mut(&c) else {
                continue;
            };
            let Some(want) = client.wants.get_mut(&t) else {
                continue;
            };
            if want.finished_sent {
                continue;
            }
            want.finished_sent = true;
            let value = inline.filter(|_| client.v1_1).cloned();
            // What `want_request` says, without looking both up again.
            let request = client.v1_1.then_some(want.request);
            let task = &self.tasks[t];
            let m = Message::KeyFinished(KeyFinished {
                key: task.key_owned(),
                nbytes: task.nbytes,
                request,
                value,
            });
            self.send(c, m);
        }
    }

    /// `cancel-keys`: like release plus key-cancelled; with force, for
    /// every client wanting the keys.
    pub(crate) fn cancel_keys(&mut self, conn: ConnId, m: CancelKeys) {
        let force = m.force.unwrap_or(false);
        if force {
            // It acts for every client: theirs go first (see `release`).
            self.apply_all_releases();
        }
        for key in m.keys {
            let Some(t) = self.task_id(&key) else {
                // A scatter not over yet ends like a want.
                if let Some(scatter) = self.abandon_scatter(conn, key.as_str()) {
                    let request = self.clients.get(&conn).filter(|c| c.v1_1).map(|_| scatter);
                    self.send(conn, Message::KeyCancelled(KeyCancelled { key, request }));
                }
                continue;
            };
            let clients: Vec<ConnId> = if force {
                self.tasks[t].wanted_by.to_vec()
            } else {
                vec![conn]
            };
            for c in clients {
                let request = self.want_request(c, t);
                if self.remove_want(c, t) {
                    let key = self.tasks[t].key_owned();
                    self.send(c, Message::KeyCancelled(KeyCancelled { key, request }));
                }
            }
        }
    }

    /// Runs the reference checks, sends batched `free-keys`, places queued
    /// tasks, steals for idle workers; validates when configured.
    pub(crate) fn finish_event(&mut self) {
        self.run_checks();
        for (w, keys) in std::mem::take(&mut self.pending_free) {
            if let Some(worker) = self.workers.get(w.ix()) {
                let conn = worker.conn;
                self.send(
                    conn,
                    Message::FreeKeys(dask_core::messages::FreeKeys {
                        keys: keys.finish(),
                    }),
                );
            }
        }
        self.start_waiting_gathers();
        self.schedule();
        self.balance();
        self.fail_spill_stuck();
        self.tell_waiting();
        self.maybe_shrink();
        if self.config.validate {
            self.validate_event();
        }
    }

    // ---- worker reports ---------------------------------------------------

    pub(crate) fn task_finished(&mut self, w: WorkerIdx, m: TaskFinished) {
        let Some(t) = self.finished_task(w, m.key.as_str()) else {
            return;
        };
        if self.tasks[t].state() != TaskState::Processing(w) {
            // A copy we already gave up on (freed, stolen, or reassigned):
            // the worker drops it on the free-keys it has been sent.
            return;
        }
        if let Some(worker) = self.workers.get_mut(w.ix()) {
            worker.abandoned = 0;
            if let Some(us) = m.duration_us {
                worker.record_duration(us);
                self.durations.record(self.tasks[t].group, us);
            }
        }
        let (task, worker) = (&self.tasks[t], &self.workers[w]);
        self.observe.task_finished(
            t,
            task.order,
            task.group,
            worker.id,
            m.duration_us,
            self.now,
        );
        self.set_state(t, TaskState::Memory);
        // A result sent inline goes on to the clients waiting for it now;
        // the scheduler keeps none (a later want gathers it).
        let inline = m
            .value
            .filter(|v| v.len() as u64 <= self.config.inline_bytes_max);
        self.reached_memory(t, w, m.nbytes, inline.as_ref());
    }

    /// The task of `key`, which worker `w` reports finished: looked for
    /// first among the tasks last sent to it ([`Worker::sent`]), whose
    /// hints sit in one short list, then in the key index. A large graph's
    /// index is tens of MB: its slot for the key missed the cache (and the
    /// TLB) on nearly every report, ~12% of the scheduler's time in the
    /// 1M-task tree.
    fn finished_task(&mut self, w: WorkerIdx, key: &str) -> Option<TaskId> {
        if let Some(worker) = self.workers.get_mut(w.ix()) {
            let tasks = &self.tasks;
            // A worker runs its tasks in the order they came: ~99% of the
            // reports of 100k independent tasks were for the oldest hint
            // (the rest within the first 8), so it is compared first, with
            // no hash.
            if let Some(&(_, t)) = worker.sent.front() {
                if tasks
                    .get(t.ix())
                    .is_some_and(|x| x.key_bytes() == key.as_bytes())
                {
                    worker.sent.pop_front();
                    return Some(t);
                }
            }
        }
        let hash = self.key_index.hash(key.as_bytes());
        if let Some(worker) = self.workers.get_mut(w.ix()) {
            let tasks = &self.tasks;
            let found = worker.sent.iter().position(|&(h, t)| {
                h == hash
                    && tasks
                        .get(t.ix())
                        .is_some_and(|x| x.key_bytes() == key.as_bytes())
            });
            if let Some((_, t)) = found.and_then(|i| worker.sent.remove(i)) {
                return Some(t);
            }
        }
        self.key_index.get_hashed(&self.tasks, key, hash)
    }

    /// `t` just came into memory on worker `w` (computed there, or adopted
    /// from it after a restore): its wanting clients and its waiting
    /// dependents hear of it (with the result itself when it came inline),
    /// and so does the journal.
    pub(crate) fn reached_memory(
        &mut self,
        t: TaskId,
        w: WorkerIdx,
        nbytes: u64,
        inline: Option<&RawValue>,
    ) {
        self.tasks[t].nbytes = plausible_nbytes(nbytes);
        self.add_replica(t, w);
        if self.journaling() {
            let task = &self.tasks[t];
            let holder = self.workers.get(w.ix()).map(|x| x.name.as_str());
            format::encode_record_with(
                &mut self.durable.framed,
                format::RecordKind::Event,
                |out| JournalRecord::encode_finished(out, task.key(), task.nbytes, holder),
            );
            self.out.push_back(SchedulerOutput::Journal);
        }
        self.notify_finished(t, inline);
        let dependents: Vec<TaskId> = self.tasks[t].dependents.to_vec();
        for y in dependents {
            let dep = &mut self.tasks[y];
            if dep.state() == TaskState::Waiting {
                dep.waiting_on -= 1;
                if dep.waiting_on == 0 {
                    self.make_ready(y);
                }
            }
        }
        self.to_check.push(t);
    }

    pub(crate) fn task_erred(&mut self, w: WorkerIdx, m: TaskErred) {
        let Some(t) = self.task_id(&m.key) else {
            return;
        };
        if self.tasks[t].state() != TaskState::Processing(w) {
            return;
        }
        if self.tasks[t].rare().retries_left > 0 {
            self.tasks[t].rare_mut().retries_left -= 1;
            self.journal(|_| {
                JournalRecord::new(
                    crate::journal::record::RecordKind::Retried,
                    "",
                    Message::TaskErred(m.clone()),
                )
            });
            self.reevaluate(t);
        } else {
            self.observe
                .task_erred(&m.key, &m.error_type, &m.message, self.now);
            self.journal(|_| JournalRecord::erred(m.clone()));
            self.fail(t, TaskError::reported(m));
        }
        // A result: no run freed earlier holds a thread there any more
        // (after `fail`, which counts the erred task's own stop as one).
        if let Some(worker) = self.workers.get_mut(w.ix()) {
            worker.abandoned = 0;
        }
    }

    pub(crate) fn steal_response(&mut self, w: WorkerIdx, m: StealResponse) {
        let Some(t) = self.task_id(&m.key) else {
            return;
        };
        let task = &mut self.tasks[t];
        if task.state() != TaskState::Processing(w) || !task.steal_pending() {
            return;
        }
        task.set_steal_pending(false);
        let thief = self.steal_thieves.remove(&t);
        if !m.stolen {
            // Running (or done, its report on the way): not asked again.
            self.tasks[t].set_steal_refused(true);
            return;
        }
        // Co-assignment must not send a stolen root back to its victim.
        if self.last_root_worker == Some(w) {
            self.last_root_worker = None;
        }
        self.reevaluate(t);
        // It goes to the worker it was stolen for, if that one can still
        // take it; else it is placed like any ready task.
        if let Some(thief) = thief {
            if self.tasks[t].state() == TaskState::Queued
                && self.workers.get(thief.ix()).is_some_and(|x| {
                    !x.paused && x.can_run(&self.tasks[t]) && x.processing.len() < x.slots_max()
                })
            {
                self.assign(t, thief);
            }
        }
    }
}

/// A value is at most what a receiver holds in parts (dask/1.1
/// `value-parts`; 64 GiB), so a worker reporting more bytes for one is
/// wrong; clamping keeps the per-worker byte sums from overflowing.
pub(crate) fn plausible_nbytes(nbytes: u64) -> u64 {
    nbytes.min(dask_core::parts::PARTS_BYTES_MAX)
}
