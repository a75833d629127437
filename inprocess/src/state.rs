//! The scheduling core, a pure state machine: which task runs next and
//! when a result can go. No threads, no values, no clock: the edge runs
//! tasks and keeps results; this decides.
//!
//! Call order, from any number of runners sharing it behind one lock:
//!
//! 1. [`RunState::poll_run`] gives a task to start (the ready task with the
//!    highest user priority, then the lowest place in the graph order), or
//!    nothing when none is ready or the run is stopping;
//! 2. right after, [`RunState::poll_release`] gives every result no task
//!    still needs: the dependencies whose last consumer just started (that
//!    consumer has taken its inputs), and results of tasks all of whose
//!    dependents can no longer run;
//! 3. when a task returns: [`RunState::handle_finished`] or
//!    [`RunState::handle_failed`]; [`RunState::handle_cancel`] at any time;
//! 4. the run is over when [`RunState::is_finished`]; each wanted task's
//!    [`RunState::outcome`] says how it ended.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::plan::{Plan, TaskId};

/// What happens after a task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Start no more tasks; the run ends when the running ones return
    /// (Dask's local schedulers raise the first error).
    #[default]
    Stop,
    /// Only the tasks depending on the failed one never run; the rest of
    /// the graph runs on (as on a cluster).
    Continue,
}

/// How a task ended, or why it did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and returned a result.
    Finished,
    /// It ran and failed.
    Failed,
    /// It did not run: `cause`, a task it depends on, failed.
    Blocked {
        /// The failed task.
        cause: TaskId,
    },
    /// It did not run: the run was cancelled, or stopped at the first error
    /// (see [`RunState::stopped`]).
    NotRun,
}

/// Why the run stopped starting tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// [`RunState::handle_cancel`] was called.
    Cancelled,
    /// This task failed, with [`OnError::Stop`].
    Failed(TaskId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Ready,
    Running,
    Finished,
    Failed,
    Blocked,
}

/// The scheduling state of one run of a [`Plan`].
#[derive(Debug)]
pub struct RunState {
    plan: Arc<Plan>,
    status: Vec<Status>,
    /// Dependencies not finished.
    waiting: Vec<u32>,
    /// Dependents that have not started and still can.
    consumers: Vec<u32>,
    /// Tasks without dependencies, best first, and how many were taken.
    roots: Vec<TaskId>,
    roots_taken: usize,
    /// Tasks made ready by a finished dependency.
    ready: BinaryHeap<Reverse<(Reverse<i64>, u32, TaskId)>>,
    releases: Vec<TaskId>,
    running: usize,
    /// Tasks finished, failed or blocked.
    ended: usize,
    on_error: OnError,
    stopped: Option<Stopped>,
    /// The failed task each blocked task waited for.
    causes: HashMap<TaskId, TaskId>,
}

impl RunState {
    /// A run of `plan` where nothing has started.
    pub fn new(plan: Arc<Plan>, on_error: OnError) -> RunState {
        let n = plan.len();
        let mut roots: Vec<TaskId> = (0..n as u32)
            .map(TaskId)
            .filter(|&t| plan.deps(t).is_empty())
            .collect();
        roots.sort_unstable_by_key(|&t| plan.rank(t));
        let waiting = (0..n as u32)
            .map(|t| plan.deps(TaskId(t)).len() as u32)
            .collect();
        let consumers = (0..n as u32)
            .map(|t| plan.dependents(TaskId(t)).len() as u32)
            .collect();
        let mut status = vec![Status::Waiting; n];
        for &r in &roots {
            status[r.index()] = Status::Ready;
        }
        RunState {
            plan,
            status,
            waiting,
            consumers,
            roots,
            roots_taken: 0,
            ready: BinaryHeap::new(),
            releases: Vec::new(),
            running: 0,
            ended: 0,
            on_error,
            stopped: None,
            causes: HashMap::new(),
        }
    }

    /// The plan being run.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// The next task to start, marked running; `None` when no task is
    /// ready or the run stopped. Its dependencies' results are still held
    /// when this returns; take them, then poll the releases.
    #[must_use]
    pub fn poll_run(&mut self) -> Option<TaskId> {
        if self.stopped.is_some() {
            return None;
        }
        let root = self.roots.get(self.roots_taken).copied();
        let made_ready = self.ready.peek().map(|Reverse((_, _, t))| *t);
        let task = match (root, made_ready) {
            (Some(r), Some(m)) if self.plan.runs_before(m, r) => self.ready.pop().map(|e| e.0 .2),
            (Some(r), _) => {
                self.roots_taken += 1;
                Some(r)
            }
            (None, Some(_)) => self.ready.pop().map(|e| e.0 .2),
            (None, None) => None,
        }?;
        self.status[task.index()] = Status::Running;
        self.running += 1;
        for i in 0..self.plan.deps(task).len() {
            let d = self.plan.deps(task)[i];
            self.consumer_gone(d);
        }
        Some(task)
    }

    /// A result no task needs any more: drop it.
    #[must_use]
    pub fn poll_release(&mut self) -> Option<TaskId> {
        self.releases.pop()
    }

    /// `task` returned a result, which the edge now holds.
    pub fn handle_finished(&mut self, task: TaskId) {
        if !self.end_run(task, Status::Finished) {
            return;
        }
        if self.consumers[task.index()] == 0 && !self.plan.is_wanted(task) {
            // Every dependent was blocked meanwhile.
            self.releases.push(task);
        }
        for i in 0..self.plan.dependents(task).len() {
            let p = self.plan.dependents(task)[i];
            if self.status[p.index()] != Status::Waiting {
                continue;
            }
            self.waiting[p.index()] -= 1;
            if self.waiting[p.index()] == 0 {
                self.status[p.index()] = Status::Ready;
                let (priority, place) = self.plan.rank(p);
                self.ready.push(Reverse((priority, place, p)));
            }
        }
    }

    /// `task` failed (after its retries). With [`OnError::Stop`] no task
    /// starts any more; with [`OnError::Continue`] the tasks depending on
    /// it, directly or not, are blocked.
    pub fn handle_failed(&mut self, task: TaskId) {
        if !self.end_run(task, Status::Failed) {
            return;
        }
        match self.on_error {
            OnError::Stop => {
                self.stopped.get_or_insert(Stopped::Failed(task));
            }
            OnError::Continue => self.block_dependents(task),
        }
    }

    /// Stop starting tasks; the run ends when the running ones return.
    pub fn handle_cancel(&mut self) {
        self.stopped.get_or_insert(Stopped::Cancelled);
    }

    /// Whether nothing runs and nothing more will start.
    pub fn is_finished(&self) -> bool {
        self.running == 0 && (self.stopped.is_some() || self.ended == self.plan.len())
    }

    /// Why the run stopped starting tasks, if it did.
    pub fn stopped(&self) -> Option<Stopped> {
        self.stopped
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Tasks that finished, failed or were blocked.
    pub fn ended(&self) -> usize {
        self.ended
    }

    /// How `task` ended; [`Outcome::NotRun`] until it did.
    pub fn outcome(&self, task: TaskId) -> Outcome {
        match self.status[task.index()] {
            Status::Finished => Outcome::Finished,
            Status::Failed => Outcome::Failed,
            Status::Blocked => Outcome::Blocked {
                cause: self.causes[&task],
            },
            Status::Waiting | Status::Ready | Status::Running => Outcome::NotRun,
        }
    }

    /// Tasks ready to start now (none once the run stopped).
    pub fn ready_count(&self) -> usize {
        if self.stopped.is_some() {
            return 0;
        }
        self.roots.len() - self.roots_taken + self.ready.len()
    }

    /// Whether some task could start now (for waking an idle runner).
    pub fn has_ready(&self) -> bool {
        self.stopped.is_none() && (self.roots_taken < self.roots.len() || !self.ready.is_empty())
    }

    /// A running task ended with `status`; false (and nothing changes)
    /// when it was not running.
    fn end_run(&mut self, task: TaskId, status: Status) -> bool {
        if self.status[task.index()] != Status::Running {
            return false;
        }
        self.status[task.index()] = status;
        self.running -= 1;
        self.ended += 1;
        true
    }

    /// One fewer dependent of `d` will run: release it when none is left.
    fn consumer_gone(&mut self, d: TaskId) {
        self.consumers[d.index()] -= 1;
        if self.consumers[d.index()] == 0
            && !self.plan.is_wanted(d)
            && self.status[d.index()] == Status::Finished
        {
            self.releases.push(d);
        }
    }

    /// Marks every task depending on `failed`, directly or not, blocked.
    fn block_dependents(&mut self, failed: TaskId) {
        let mut stack: Vec<TaskId> = self.plan.dependents(failed).to_vec();
        while let Some(t) = stack.pop() {
            if self.status[t.index()] != Status::Waiting {
                continue;
            }
            self.status[t.index()] = Status::Blocked;
            self.causes.insert(t, failed);
            self.ended += 1;
            for i in 0..self.plan.deps(t).len() {
                let d = self.plan.deps(t)[i];
                self.consumer_gone(d);
            }
            stack.extend_from_slice(self.plan.dependents(t));
        }
    }
}

#[cfg(test)]
mod tests;
