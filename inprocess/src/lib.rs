//! # dask-inprocess
//!
//! The in-process scheduler: a task graph run inside this process, on a
//! pool of threads or on the calling thread alone (Dask's threaded and
//! synchronous schedulers), with no scheduler process and no sockets. The
//! tasks are the same [`TaskSpec`]s a cluster runs and the functions come
//! from the same [`FunctionRegistry`] a worker uses, so built-in and
//! registered functions behave as they do on a cluster, results included.
//!
//! ```
//! use dask_core::client::task_spec;
//! use dask_core::msgpack::task_ref_value;
//! use dask_core::Key;
//! use dask_inprocess::{compute, Scheduler};
//! use dask_worker::FunctionRegistry;
//! use rmpv::Value;
//!
//! let tasks = vec![
//!     task_spec(Key::from("a"), "inc", &[Value::from(1)], &[]),
//!     task_spec(Key::from("b"), "add", &[task_ref_value("a"), Value::from(10)], &[]),
//! ];
//! let registry = FunctionRegistry::builtins();
//! let values = compute(tasks, &[Key::from("b")], &registry, Scheduler::Threads(2))?;
//! assert_eq!(values, [Value::from(12)]);
//! # Ok::<(), dask_inprocess::Error>(())
//! ```
//!
//! - [`plan`]: the graph checked (refused as the scheduler refuses it),
//!   cut to what the wanted keys need, ordered by [`dask_core::order`].
//! - [`state`]: the scheduling core, a pure state machine (which task runs
//!   next, when a result can be dropped, what an error stops).
//! - with the `execute` feature (default): running tasks on threads, as
//!   [`compute`] and [`run`] do, with progress and [`Cancel`].
//!
//! Ready tasks run by user priority, then by the graph order, which keeps
//! few results in memory; each result is dropped as soon as the last task
//! needing it has started, unless it is wanted. Differences from a
//! cluster: `resources` and `workers` restrictions are ignored (there is
//! one place to run), a task's `retries` rerun it at once on the same
//! thread, and no result is too large for a frame.
#![deny(missing_docs)]

#[cfg(feature = "execute")]
mod cancel;
mod error;
pub mod plan;
#[cfg(feature = "execute")]
mod runner;
pub mod state;
#[cfg(feature = "execute")]
mod task;

#[cfg(feature = "execute")]
pub use cancel::Cancel;
pub use error::Error;
pub use plan::{GraphError, Plan, PlannedTask, TaskId};
pub use state::{OnError, Outcome, RunState, Stopped};

#[cfg(feature = "execute")]
pub use execute::*;

#[cfg(feature = "execute")]
mod execute {
    use std::sync::Arc;

    use dask_core::messages::TaskSpec;
    use dask_core::worker::TaskError;
    use dask_core::Key;
    use dask_worker::FunctionRegistry;
    use rmpv::Value;

    use crate::{runner, Cancel, Error, OnError, Outcome, Plan, RunState, Stopped, TaskId};

    /// Where tasks run.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Scheduler {
        /// On this many threads (the calling thread is one of them).
        Threads(usize),
        /// On the calling thread, one task at a time in the graph order:
        /// for debugging (a debugger sees every task on one thread).
        Sync,
    }

    impl Default for Scheduler {
        /// A thread per core.
        fn default() -> Self {
            Scheduler::Threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
    }

    /// How far a run is: tasks ended (finished, failed or not runnable
    /// because a dependency failed) out of those the run has.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Progress {
        /// Tasks ended so far.
        pub done: usize,
        /// Tasks in the run (those the wanted keys need).
        pub total: usize,
    }

    /// How to run.
    #[derive(Clone, Copy, Default)]
    pub struct Options<'a> {
        /// Where tasks run.
        pub scheduler: Scheduler,
        /// What an error stops.
        pub on_error: OnError,
        /// Called as tasks end (one call may cover several), on the thread
        /// that ran them: from several threads at once, so not always in
        /// order; the call after the last task says `done == total`.
        pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
        /// Stops the run when cancelled.
        pub cancel: Option<&'a Cancel>,
    }

    impl std::fmt::Debug for Options<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Options")
                .field("scheduler", &self.scheduler)
                .field("on_error", &self.on_error)
                .field("progress", &self.progress.is_some())
                .field("cancel", &self.cancel)
                .finish()
        }
    }

    /// Computes the `wanted` keys of `tasks` with functions from
    /// `registry`, and returns their results in the order of `wanted`, or
    /// the first error (nothing more starts after it).
    pub fn compute(
        tasks: Vec<TaskSpec>,
        wanted: &[Key],
        registry: &FunctionRegistry,
        scheduler: Scheduler,
    ) -> Result<Vec<Value>, Error> {
        let plan = Arc::new(Plan::new(tasks, wanted)?);
        let options = Options {
            scheduler,
            ..Options::default()
        };
        let mut results = run_plan(&plan, registry, &options);
        let asked = plan.asked();
        // The first error in the order of `wanted`.
        if let Some(e) = asked
            .iter()
            .find_map(|&i| results[i as usize].as_ref().err())
        {
            return Err(e.clone());
        }
        let mut first_at = vec![usize::MAX; results.len()];
        let mut values: Vec<Value> = Vec::with_capacity(asked.len());
        for &i in asked {
            let i = i as usize;
            let value = match first_at[i] {
                usize::MAX => {
                    first_at[i] = values.len();
                    std::mem::replace(&mut results[i], Ok(Value::Nil)).unwrap_or(Value::Nil)
                }
                first => values[first].clone(),
            };
            values.push(value);
        }
        Ok(values)
    }

    /// Computes `calls` (the client's lazy calls, and every call they
    /// reach) in this process with functions from `registry`: their results
    /// in order, or the first error. A call whose arguments hold a
    /// [`dask_client::Future`] refers to a result on a cluster, which is
    /// not here: such a graph is refused (unknown-key).
    ///
    /// ```
    /// use dask_client::{args, delayed};
    /// use dask_inprocess::{compute_delayed, Scheduler};
    /// use dask_worker::FunctionRegistry;
    ///
    /// let total = delayed("add", args![delayed("inc", args![1]), 10]);
    /// let values = compute_delayed(&[total], &FunctionRegistry::builtins(), Scheduler::Sync)?;
    /// assert_eq!(values[0].as_i64(), Some(12));
    /// # Ok::<(), dask_inprocess::Error>(())
    /// ```
    pub fn compute_delayed(
        calls: &[dask_client::Delayed],
        registry: &FunctionRegistry,
        scheduler: Scheduler,
    ) -> Result<Vec<Value>, Error> {
        let wanted: Vec<Key> = calls.iter().map(|d| d.key().clone()).collect();
        compute(
            dask_client::build_graph(calls),
            &wanted,
            registry,
            scheduler,
        )
    }

    /// Runs `plan` and returns each wanted key's result or error, in the
    /// order of [`Plan::wanted`].
    pub fn run(
        plan: Plan,
        registry: &FunctionRegistry,
        options: &Options<'_>,
    ) -> Vec<(Key, Result<Value, Error>)> {
        let plan = Arc::new(plan);
        let results = run_plan(&plan, registry, options);
        plan.wanted()
            .iter()
            .map(|&t| plan.task(t).key.clone())
            .zip(results)
            .collect()
    }

    /// Runs `plan`: each wanted task's result, in the order of
    /// [`Plan::wanted`].
    fn run_plan(
        plan: &Arc<Plan>,
        registry: &FunctionRegistry,
        options: &Options<'_>,
    ) -> Vec<Result<Value, Error>> {
        let state = RunState::new(Arc::clone(plan), options.on_error);
        let mut ended = runner::run(state, registry, options);
        plan.wanted()
            .iter()
            .map(|&t| outcome(plan, &mut ended, t))
            .collect()
    }

    /// What became of wanted task `t`.
    fn outcome(plan: &Plan, ended: &mut runner::Ended, t: TaskId) -> Result<Value, Error> {
        let key = || plan.task(t).key.clone();
        let failure = |ended: &runner::Ended, failed: TaskId| {
            let error = ended
                .errors
                .get(&failed)
                .cloned()
                .unwrap_or_else(|| TaskError::new("Error", "the task failed"));
            Error::Task {
                key: key(),
                error,
                cause: (failed != t).then(|| plan.task(failed).key.clone()),
            }
        };
        match ended.state.outcome(t) {
            Outcome::Finished => {
                let value = ended.values[t.index()].take();
                Ok(value.map_or(Value::Nil, |v| {
                    Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone())
                }))
            }
            Outcome::Failed => Err(failure(ended, t)),
            Outcome::Blocked { cause } => Err(failure(ended, cause)),
            Outcome::NotRun => match ended.state.stopped() {
                Some(Stopped::Failed(failed)) => Err(failure(ended, failed)),
                Some(Stopped::Cancelled) | None => Err(Error::Cancelled { key: key() }),
            },
        }
    }
}
