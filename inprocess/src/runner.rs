//! The edge: runners (threads, or the calling thread alone) sharing one
//! [`RunState`] and the results behind one lock. A runner takes tasks and
//! their inputs under the lock, runs them outside, and hands the results
//! back under the lock in the same critical section that takes its next
//! tasks, so a task costs at most one lock acquisition (less when short
//! tasks are taken in batches).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use dask_worker::{FunctionRegistry, TaskError};
use rmpv::Value;

use crate::cancel::Stop;
use crate::plan::{Plan, TaskId};
use crate::state::RunState;
use crate::task::{self, Functions};
use crate::{Options, Progress, Scheduler};

/// Everything behind the lock.
struct Inner {
    state: RunState,
    /// Results held: those some task still needs, and the wanted ones.
    values: Vec<Option<Arc<Value>>>,
    /// Errors of the tasks that failed.
    errors: HashMap<TaskId, TaskError>,
    /// Runners waiting for a task to become ready.
    idle: usize,
}

/// A run's shared half: the lock, and where idle runners wait.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Stop for Shared {
    fn stop(&self) {
        let mut inner = self.lock();
        inner.state.handle_cancel();
        // Idle runners see the run is over (or stay idle for nothing).
        drop(inner);
        self.wake.notify_all();
    }
}

/// How a run ended: the state and the results it kept.
pub(crate) struct Ended {
    pub(crate) state: RunState,
    pub(crate) values: Vec<Option<Arc<Value>>>,
    pub(crate) errors: HashMap<TaskId, TaskError>,
}

/// Runs `state` to its end with `options`' runners.
pub(crate) fn run(state: RunState, registry: &FunctionRegistry, options: &Options<'_>) -> Ended {
    let plan = Arc::clone(state.plan());
    let functions = Functions::resolve(&plan, registry);
    let n = plan.len();
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            state,
            values: vec![None; n],
            errors: HashMap::new(),
            idle: 0,
        }),
        wake: Condvar::new(),
    });
    if let Some(cancel) = options.cancel {
        let stop: Arc<dyn Stop> = shared.clone();
        cancel.watch(Arc::downgrade(&stop));
    }
    let runners = match options.scheduler {
        Scheduler::Sync => 1,
        Scheduler::Threads(n) => n.max(1),
    };
    let work = || runner(&shared, &plan, &functions, options.progress, runners);
    std::thread::scope(|scope| {
        let mut helpers = Vec::with_capacity(runners - 1);
        for i in 1..runners {
            let spawned = std::thread::Builder::new()
                .name(format!("dask-inprocess-{i}"))
                .spawn_scoped(scope, work);
            match spawned {
                Ok(helper) => helpers.push(helper),
                // Fewer threads than asked for still finish the run.
                Err(_) => break,
            }
        }
        work();
        // Joined, not left to the scope: the scope waits only until a
        // thread's closure returns, so a thread dropped unjoined may still
        // be exiting (its TLS not yet freed) when the caller goes on, or
        // when a C program ends right after (valgrind: "possibly lost").
        for helper in helpers {
            if let Err(panic) = helper.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    // A cancel token may hold the run for the moment of a cancel.
    let mut shared = shared;
    let inner = loop {
        match Arc::try_unwrap(shared) {
            Ok(shared) => break shared.inner.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(still_shared) => {
                shared = still_shared;
                std::thread::yield_now();
            }
        }
    };
    Ended {
        state: inner.state,
        values: inner.values,
        errors: inner.errors,
    }
}

/// Tasks a runner takes at once at most: one lock per batch instead of
/// per task, when tasks are short (see [`BATCH_TASK_MICROS_MAX`]).
const BATCH_MAX: usize = 16;
/// A batch grows only while its tasks took less than this on average:
/// taking several tasks at once saves a lock and a wakeup per task, which
/// matters only when the tasks themselves cost about as much.
const BATCH_TASK_MICROS_MAX: u128 = 20;

/// One runner: takes tasks until the run is over. With several runners,
/// a runner takes up to a batch of ready tasks (its share of them, and
/// more only while tasks are short); alone (sync), one at a time, so the
/// tasks run exactly in the graph order.
fn runner(
    shared: &Shared,
    plan: &Plan,
    functions: &Functions,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
    runners: usize,
) {
    let mut returned: Vec<(TaskId, Result<Value, TaskError>)> = Vec::new();
    let mut batch: Vec<(TaskId, usize)> = Vec::new();
    let mut batch_max = 1usize;
    // Results to drop, outside the lock (a large one takes a while).
    let mut released: Vec<Arc<Value>> = Vec::new();
    // The inputs of the batch's tasks, one after another.
    let mut inputs: Vec<Option<Arc<Value>>> = Vec::new();
    let mut inner = shared.lock();
    loop {
        let mut ended = None;
        for (t, result) in returned.drain(..) {
            match result {
                Ok(value) => {
                    inner.values[t.index()] = Some(Arc::new(value));
                    inner.state.handle_finished(t);
                }
                Err(error) => {
                    inner.errors.insert(t, error);
                    inner.state.handle_failed(t);
                }
            }
            ended = Some(inner.state.ended());
        }
        let share = inner
            .state
            .ready_count()
            .div_ceil(runners)
            .clamp(1, batch_max);
        while batch.len() < share {
            let Some(t) = inner.state.poll_run() else {
                break;
            };
            // Held: the state releases a result only once its last
            // consumer has started.
            batch.push((t, inputs.len()));
            inputs.extend(plan.deps(t).iter().map(|d| inner.values[d.index()].clone()));
        }
        while let Some(r) = inner.state.poll_release() {
            if let Some(v) = inner.values[r.index()].take() {
                released.push(v);
            }
        }
        let finished = inner.state.is_finished();
        if batch.is_empty() && !finished && ended.is_none() {
            inner.idle += 1;
            inner = shared.wake.wait(inner).unwrap_or_else(|p| p.into_inner());
            inner.idle -= 1;
            continue;
        }
        let wake_one = !batch.is_empty() && inner.idle > 0 && inner.state.has_ready();
        drop(inner);
        if finished {
            shared.wake.notify_all();
        } else if wake_one {
            shared.wake.notify_one();
        }
        released.clear();
        if let (Some(progress), Some(ended)) = (progress, ended) {
            progress(Progress {
                done: ended,
                total: plan.len(),
            });
        }
        if batch.is_empty() {
            if finished {
                return;
            }
            // Reported progress; now wait for work.
            inner = shared.lock();
            continue;
        }
        let started = Instant::now();
        for (k, &(t, first)) in batch.iter().enumerate() {
            let end = batch.get(k + 1).map_or(inputs.len(), |&(_, next)| next);
            returned.push((t, task::run(plan, functions, t, &mut inputs[first..end])));
        }
        let per_task = started.elapsed().as_micros() / batch.len() as u128;
        batch_max = if runners > 1 && per_task < BATCH_TASK_MICROS_MAX {
            (batch_max * 2).min(BATCH_MAX)
        } else {
            1
        };
        batch.clear();
        inputs.clear();
        inner = shared.lock();
    }
}
