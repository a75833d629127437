//! Invariants of the scheduler state, checked by tests after every event
//! and by `dask-scheduler --validate`.
//!
//! After every event, every task the event changed is checked, with its
//! dependencies and dependents (whose counts it affects); the whole state
//! (every task, worker, client and dataset) is checked too while it holds
//! at most [`VALIDATE_ALL_TASKS_MAX`] tasks, and otherwise at least once
//! per [`VALIDATE_ALL_INTERVAL`]. A full pass after every event would make
//! a 10,000-task graph quadratic, too slow to run in tests; checking what
//! changed still stops the scheduler at the event that broke a task.

use super::*;

/// Up to this many tasks, the whole state is checked after every event.
pub const VALIDATE_ALL_TASKS_MAX: usize = 1000;

/// With more tasks, the whole state is checked at most this far apart
/// (after the first event past it).
pub const VALIDATE_ALL_INTERVAL: Duration = Duration::from_secs(1);

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

impl SchedulerState {
    /// No connection can time out before the liveness check is due, and a
    /// `busy` get always has its retry set.
    fn validate_timers(&self) -> Result<(), String> {
        for (conn, c) in &self.conns {
            let deadline = match c.peer {
                Peer::AwaitingHello | Peer::AwaitingProof => {
                    c.connected_at + self.config.handshake_timeout
                }
                Peer::Worker(_) => c.last_seen + self.config.heartbeat_timeout,
                Peer::Client => continue,
            };
            ensure!(
                self.next_liveness_check
                    .is_some_and(|at| at <= deadline + JUST_AFTER),
                "{conn:?} times out at {deadline:?} but the liveness check is at {:?}",
                self.next_liveness_check
            );
        }
        ensure!(
            self.data.busy.is_empty() || self.data.busy_retry_at.is_some(),
            "gets answered busy with no retry time"
        );
        Ok(())
    }

    /// The check after an event (with `validate` on): panics, naming the
    /// broken invariant, so a state bug fails where it happens.
    pub(crate) fn validate_event(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        let all_due = self.tasks.len() <= VALIDATE_ALL_TASKS_MAX
            || self
                .last_full_validation
                .is_none_or(|at| self.now.saturating_duration_since(at) >= VALIDATE_ALL_INTERVAL);
        let result = if all_due {
            self.last_full_validation = Some(self.now);
            self.validate()
        } else {
            self.validate_tasks(touched)
        };
        if let Err(e) = result {
            panic!("scheduler invariant violated: {e}");
        }
    }

    /// Checks `changed` tasks (those still known), their dependencies and
    /// their dependents.
    fn validate_tasks(&self, mut changed: Vec<TaskId>) -> Result<(), String> {
        let releasing = self.releasing();
        let mut around = Vec::new();
        for &t in &changed {
            if let Some(task) = self.tasks.get(t.ix()) {
                around.extend(task.dependencies.iter().copied());
                around.extend(task.dependents.iter());
            }
        }
        changed.append(&mut around);
        changed.sort_unstable();
        changed.dedup();
        for t in changed {
            if let Some(task) = self.tasks.get(t.ix()) {
                ensure!(
                    self.task_id(task.key()) == Some(t),
                    "task {} is not indexed by its key",
                    task.key()
                );
                self.validate_task(t, task, &releasing)
                    .map_err(|e| format!("task {} ({}): {e}", task.key(), task.state().name()))?;
            }
        }
        Ok(())
    }

    /// Checks every invariant; the error says which one broke and where.
    /// Costs a pass over all tasks and workers.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_timers()?;
        self.validate_releases()?;
        ensure!(
            self.key_index.len() == self.tasks.len(),
            "{} keys indexed for {} tasks",
            self.key_index.len(),
            self.tasks.len()
        );
        for t in self.key_index.iter() {
            let task = self.tasks.get(t.ix());
            ensure!(
                task.is_some_and(|task| self.task_id(task.key()) == Some(t)),
                "index entry {t:?} is not its task's"
            );
        }
        let mut group_counts = self.observe.group_counts();
        let releasing = self.releasing();
        for (i, task) in &self.tasks {
            self.validate_task(TaskId::new(i), task, &releasing)
                .map_err(|e| format!("task {} ({}): {e}", task.key(), task.state().name()))?;
            let counts = &mut group_counts[task.group.index()].1;
            counts[task.state().index()] = counts[task.state().index()].wrapping_sub(1);
        }
        for (name, counts) in group_counts {
            ensure!(
                counts.iter().all(|&n| n == 0),
                "task group {name}'s counts by state are off by {counts:?} from its tasks"
            );
        }
        for (k, t) in self.queue.iter() {
            let task = self
                .tasks
                .get(t.ix())
                .ok_or("queue holds a forgotten task")?;
            ensure!(
                task.state() == TaskState::Queued && task.queue_key() == k,
                "queue entry {} is {} or misfiled",
                task.key(),
                task.state().name()
            );
        }
        for &t in &self.no_worker {
            let task = self
                .tasks
                .get(t.ix())
                .ok_or("no-worker holds a forgotten task")?;
            ensure!(
                task.state() == TaskState::NoWorker,
                "no-worker entry {} is {}",
                task.key(),
                task.state().name()
            );
        }
        for (i, w) in &self.workers {
            let mut bytes = 0;
            for &t in &w.has_what {
                let task = self
                    .tasks
                    .get(t.ix())
                    .ok_or("a worker holds a forgotten task")?;
                ensure!(
                    task.who_has.contains(&WorkerIdx::new(i)),
                    "worker {} holds {} but who_has disagrees",
                    w.name,
                    task.key()
                );
                bytes += task.nbytes;
            }
            ensure!(
                bytes == w.stored_bytes,
                "worker {} stored_bytes {} but its keys add up to {bytes}",
                w.name,
                w.stored_bytes
            );
            for &t in &w.processing {
                let task = self
                    .tasks
                    .get(t.ix())
                    .ok_or("a worker processes a forgotten task")?;
                ensure!(
                    task.state() == TaskState::Processing(WorkerIdx::new(i)),
                    "worker {} processes {} which is {}",
                    w.name,
                    task.key(),
                    task.state().name()
                );
            }
            let mut groups: Vec<(GroupId, u32)> = Vec::new();
            for &t in &w.processing {
                let g = self.tasks[t].group;
                match groups.iter_mut().find(|(x, _)| *x == g) {
                    Some((_, n)) => *n += 1,
                    None => groups.push((g, 1)),
                }
            }
            let mut counted = w.processing_groups.clone();
            groups.sort_unstable_by_key(|&(g, _)| g.index());
            counted.sort_unstable_by_key(|&(g, _)| g.index());
            ensure!(
                groups == counted,
                "worker {} counts its processing tasks by group as {counted:?}, but they are {groups:?}",
                w.name
            );
            ensure!(
                w.processing.len() <= w.slots_max(),
                "worker {} has {} tasks for {} slots at most",
                w.name,
                w.processing.len(),
                w.slots_max()
            );
            ensure!(
                self.worker_by_conn.get(&w.conn) == Some(&WorkerIdx::new(i)),
                "worker {} is not indexed by its connection",
                w.name
            );
        }
        for (&conn, client) in &self.clients {
            for &t in client.wants.keys() {
                let task = self
                    .tasks
                    .get(t.ix())
                    .ok_or("a client wants a forgotten task")?;
                ensure!(
                    task.wanted_by.contains(&conn),
                    "client {conn:?} wants {} but wanted_by disagrees",
                    task.key()
                );
            }
        }
        self.validate_scatters()?;
        self.validate_outflow()?;
        let mut refs: HashMap<TaskId, u32> = HashMap::new();
        for ids in self.datasets.values() {
            for &t in ids {
                *refs.entry(t).or_default() += 1;
            }
        }
        for (i, task) in &self.tasks {
            let n = refs.get(&TaskId::new(i)).copied().unwrap_or(0);
            ensure!(
                task.rare().dataset_refs == n,
                "task {} has dataset_refs {} but {n} datasets hold it",
                task.key(),
                task.rare().dataset_refs
            );
        }
        Ok(())
    }

    /// Tasks a release not done yet will check (see `run_checks`): they
    /// may be known while nothing needs them.
    fn releasing(&self) -> HashSet<TaskId> {
        self.to_check.iter().copied().collect()
    }

    fn validate_task(
        &self,
        t: TaskId,
        task: &Task,
        releasing: &HashSet<TaskId>,
    ) -> Result<(), String> {
        for d in &task.dependencies {
            let dep = self.tasks.get(d.ix()).ok_or("a dependency was forgotten")?;
            ensure!(
                dep.dependents.contains(t),
                "{} does not list it as a dependent",
                dep.key()
            );
        }
        let mut waiters = 0;
        for y in task.dependents.iter() {
            let dep = self.tasks.get(y.ix()).ok_or("a dependent was forgotten")?;
            ensure!(
                dep.dependencies.contains(&t),
                "{} does not depend on it",
                dep.key()
            );
            if dep.state().is_active() {
                waiters += 1;
            }
        }
        ensure!(
            task.waiters == waiters,
            "waiters {} but {waiters} active dependents",
            task.waiters
        );
        for &c in &task.wanted_by {
            ensure!(
                self.clients
                    .get(&c)
                    .is_some_and(|cl| cl.wants.contains_key(&t)),
                "wanted by {c:?}, which does not list it"
            );
        }
        let needed = task.is_wanted() || task.waiters > 0;
        let releasing = releasing.contains(&t);
        let not_memory = |d: &TaskId| self.tasks[d].state() != TaskState::Memory;
        match task.state() {
            TaskState::Released => {
                ensure!(!needed, "released but needed");
                ensure!(
                    !task.dependents.is_empty() || releasing,
                    "released with no dependent: not forgotten"
                );
            }
            TaskState::Waiting => {
                let missing = task.dependencies.iter().filter(|d| not_memory(d)).count();
                ensure!(
                    task.waiting_on as usize == missing && missing > 0,
                    "waiting_on {} but {missing} dependencies not in memory",
                    task.waiting_on
                );
            }
            TaskState::NoWorker | TaskState::Queued => {
                ensure!(
                    !task.dependencies.iter().any(not_memory),
                    "ready with a dependency not in memory"
                );
                let can = self.workers.iter().any(|(_, w)| w.can_run(task));
                ensure!(
                    can == (task.state() == TaskState::Queued),
                    "a worker that can run it is {}connected",
                    if can { "" } else { "not " }
                );
            }
            TaskState::Processing(w) => {
                let worker = self
                    .workers
                    .get(w.ix())
                    .ok_or("processing on a removed worker")?;
                ensure!(
                    worker.processing.contains(&t),
                    "not in its worker's processing set"
                );
            }
            TaskState::Memory => {
                ensure!(
                    !task.who_has.is_empty() || self.restore_awaits_holder(task.key()),
                    "in memory nowhere"
                );
                ensure!(needed || releasing, "in memory but nothing needs it");
            }
            TaskState::Erred => {
                let error = task.rare().error.as_ref().ok_or("erred without an error")?;
                ensure!(
                    !error.lost || task.wanted_by.iter().all(|&c| Self::is_detached(c)),
                    "lost and still wanted by a client"
                );
                ensure!(
                    task.is_wanted() || !task.dependents.is_empty() || releasing,
                    "erred with nothing referring to it: not forgotten"
                );
            }
        }
        if task.state().is_active() {
            ensure!(needed || releasing, "active but nothing needs it");
        }
        if task.state() != TaskState::Memory {
            ensure!(task.who_has.is_empty(), "not in memory but has holders");
        }
        for w in &task.who_has {
            let worker = self.workers.get(w.ix()).ok_or("held by a removed worker")?;
            ensure!(
                worker.has_what.contains(&t),
                "holder {} does not list it",
                worker.name
            );
        }
        if task.steal_pending() {
            ensure!(
                matches!(task.state(), TaskState::Processing(_)),
                "steal pending while not processing"
            );
        }
        if task.steal_refused() {
            ensure!(
                matches!(task.state(), TaskState::Processing(_)),
                "steal refused while not processing"
            );
        }
        if self.steal_thieves.contains_key(&t) {
            ensure!(
                task.steal_pending(),
                "a thief is recorded but no steal is pending"
            );
        }
        ensure!(
            (self.queue.get(&task.queue_key()) == Some(t)) == (task.state() == TaskState::Queued),
            "queued is {} but the queue {} it",
            task.state() == TaskState::Queued,
            if self.queue.get(&task.queue_key()) == Some(t) {
                "holds"
            } else {
                "lacks"
            }
        );
        ensure!(
            self.no_worker.contains(&t) == (task.state() == TaskState::NoWorker),
            "no-worker set and state disagree"
        );
        ensure!(
            task.rare().suspicious <= self.config.allowed_failures
                || task.state() == TaskState::Erred,
            "lost {} workers, more than the {} allowed, and not erred",
            task.rare().suspicious,
            self.config.allowed_failures
        );
        Ok(())
    }
}
