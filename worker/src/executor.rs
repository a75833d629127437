//! Running tasks: [`run_job`] turns a [`Job`] into a [`TaskDone`] (decode
//! arguments, substitute dependencies, call the function inside a panic
//! boundary, encode the result), and [`ExecutorPool`] runs jobs on a fixed
//! set of threads, handing completions back to the event loop.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use dask_core::msgpack::substitute_refs;
use dask_core::RawValue;
use rmpv::Value;

use crate::function::{FunctionRegistry, TaskError};
use crate::state::{Job, TaskDone};

/// Runs one job on the calling thread. Never panics: a panicking function
/// becomes a `Panic` error.
pub fn run_job(registry: &FunctionRegistry, job: &Job) -> TaskDone {
    let started = Instant::now();
    let result = run(registry, job);
    TaskDone {
        run_id: job.run_id,
        result,
        duration_us: started.elapsed().as_micros() as u64,
    }
}

fn run(registry: &FunctionRegistry, job: &Job) -> Result<RawValue, TaskError> {
    let Some(function) = registry.get(&job.function) else {
        return Err(TaskError::unknown_function(&job.function));
    };
    let (args, kwargs) = arguments(job)?;
    let outcome = catch_unwind(AssertUnwindSafe(|| function(&args, &kwargs)));
    let value = match outcome {
        Ok(result) => result?,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the function panicked".to_string());
            return Err(TaskError::new("Panic", message));
        }
    };
    // Re-checking the encoding keeps a function from storing a value that
    // peers would refuse (nested deeper than the protocol allows).
    RawValue::from_bytes(RawValue::from_value(&value).into_bytes()).map_err(|e| {
        TaskError::value_error(format!("result is not a valid dask/1 value: {}", e.message))
    })
}

type Kwargs = Vec<(String, Value)>;

/// Decodes args and kwargs and replaces task references by dependency values.
fn arguments(job: &Job) -> Result<(Vec<Value>, Kwargs), TaskError> {
    let mut deps: HashMap<&str, Value> = HashMap::with_capacity(job.deps.len());
    for (key, value) in &job.deps {
        let decoded = value.to_value().map_err(|e| {
            TaskError::value_error(format!("dependency {key} cannot be decoded: {e}"))
        })?;
        deps.insert(key.as_str(), decoded);
    }
    let mut lookup = |k: &str| deps.get(k).cloned();
    let decode = |raw: &RawValue, what: &str| {
        raw.to_value()
            .map_err(|e| TaskError::type_error(format!("{what} cannot be decoded: {e}")))
    };
    let args = decode(&job.args, "args")?;
    let args = if job.deps.is_empty() {
        args
    } else {
        substitute_refs(&args, &mut lookup).map_err(|e| TaskError::new("MissingDependency", e))?
    };
    let Value::Array(args) = args else {
        return Err(TaskError::type_error("args must be an array"));
    };
    let kwargs = match &job.kwargs {
        None => Vec::new(),
        Some(raw) => {
            let value = decode(raw, "kwargs")?;
            let value = if job.deps.is_empty() {
                value
            } else {
                substitute_refs(&value, &mut lookup)
                    .map_err(|e| TaskError::new("MissingDependency", e))?
            };
            match value {
                Value::Nil => Vec::new(),
                Value::Map(entries) => entries
                    .into_iter()
                    .map(|(k, v)| match k {
                        Value::String(s) if s.is_str() => Ok((s.into_str().unwrap_or_default(), v)),
                        other => Err(TaskError::type_error(format!(
                            "kwargs keys must be strings, got {other}"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(TaskError::type_error("kwargs must be a map")),
            }
        }
    };
    Ok((args, kwargs))
}

/// Completions waiting for the event loop, and whether it has been woken
/// for them already (so a burst of completions costs one wakeup).
struct Completions {
    done: Mutex<Vec<(usize, TaskDone)>>,
    wake_pending: AtomicBool,
    waker: Arc<mio::Waker>,
}

/// A fixed pool of executor threads. Each thread has its own job channel;
/// the event loop gives a job only to a thread it knows is idle.
pub struct ExecutorPool {
    senders: Vec<Sender<Job>>,
    idle: Vec<usize>,
    threads: Vec<JoinHandle<()>>,
    completions: Arc<Completions>,
}

impl ExecutorPool {
    /// Starts `nthreads` threads running functions from `registry`; each
    /// completion wakes the event loop through `waker`.
    pub fn start(
        nthreads: usize,
        registry: FunctionRegistry,
        waker: Arc<mio::Waker>,
        thread_name: &str,
    ) -> std::io::Result<ExecutorPool> {
        let completions = Arc::new(Completions {
            done: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            waker,
        });
        let mut senders = Vec::with_capacity(nthreads);
        let mut threads = Vec::with_capacity(nthreads);
        for index in 0..nthreads {
            let (tx, rx) = channel::<Job>();
            let registry = registry.clone();
            let completions = Arc::clone(&completions);
            let thread = std::thread::Builder::new()
                .name(format!("{thread_name}-exec-{index}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        let done = run_job(&registry, &job);
                        drop(job);
                        if let Ok(mut queue) = completions.done.lock() {
                            queue.push((index, done));
                        }
                        if !completions.wake_pending.swap(true, Ordering::AcqRel) {
                            let _ = completions.waker.wake();
                        }
                    }
                })?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(ExecutorPool {
            senders,
            idle: (0..nthreads).rev().collect(),
            threads,
            completions,
        })
    }

    /// Gives a job to an idle thread; gives it back when none is idle.
    #[must_use]
    pub fn submit(&mut self, job: Job) -> Option<Job> {
        let Some(index) = self.idle.pop() else {
            return Some(job);
        };
        match self.senders[index].send(job) {
            Ok(()) => None,
            Err(e) => Some(e.0),
        }
    }

    /// Takes every completion so far, marking their threads idle.
    pub fn take_completions(&mut self) -> Vec<TaskDone> {
        // Clear the flag first: a completion pushed after the swap below
        // wakes the loop again rather than being left unseen.
        self.completions
            .wake_pending
            .store(false, Ordering::Release);
        let done = match self.completions.done.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(_) => Vec::new(),
        };
        done.into_iter()
            .map(|(index, d)| {
                self.idle.push(index);
                d
            })
            .collect()
    }

    /// Stops the threads: idle ones exit at once and are joined; busy ones
    /// exit when their function returns (not waited for: a task may sleep
    /// for hours).
    pub fn shutdown(self) {
        drop(self.senders);
        for thread in self.threads {
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                // Give a thread that is just leaving a moment to do so.
                let deadline = Instant::now() + std::time::Duration::from_millis(100);
                while !thread.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                if thread.is_finished() {
                    let _ = thread.join();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::msgpack::task_ref_value;
    use dask_core::Key;

    fn job(function: &str, args: Value, kwargs: Option<Value>, deps: Vec<(&str, Value)>) -> Job {
        Job {
            run_id: 3,
            key: "k".into(),
            function: function.into(),
            args: RawValue::from_value(&args),
            kwargs: kwargs.map(|k| RawValue::from_value(&k)),
            deps: deps
                .into_iter()
                .map(|(k, v)| (Key::from(k), Arc::new(RawValue::from_value(&v))))
                .collect(),
        }
    }

    fn result(done: TaskDone) -> Result<Value, TaskError> {
        done.result.map(|raw| raw.to_value().unwrap())
    }

    #[test]
    fn references_are_replaced_by_dependency_values() {
        let registry = FunctionRegistry::builtins();
        let j = job(
            "add",
            Value::Array(vec![task_ref_value("a"), Value::from(1)]),
            Some(Value::Map(vec![(Value::from("b"), task_ref_value("b"))])),
            vec![("a", Value::from(10)), ("b", Value::from(5))],
        );
        // add(a, 1, b=...) is one argument too many for add(a, b).
        assert_eq!(
            result(run_job(&registry, &j)).unwrap_err().error_type,
            "TypeError"
        );
        let j = job(
            "add",
            Value::Array(vec![task_ref_value("a")]),
            Some(Value::Map(vec![(Value::from("b"), task_ref_value("b"))])),
            vec![("a", Value::from(10)), ("b", Value::from(5))],
        );
        let done = run_job(&registry, &j);
        assert_eq!(done.run_id, 3);
        assert_eq!(result(done).unwrap(), Value::from(15));
    }

    #[test]
    fn panics_become_task_errors() {
        let mut registry = FunctionRegistry::new();
        registry.register("boom", |_, _| panic!("kaboom"));
        let j = job("boom", Value::Array(vec![]), None, vec![]);
        let e = result(run_job(&registry, &j)).unwrap_err();
        assert_eq!(e.error_type, "Panic");
        assert!(e.message.contains("kaboom"));
    }

    #[test]
    fn bad_arguments_and_unknown_functions_are_errors() {
        let registry = FunctionRegistry::builtins();
        let e = result(run_job(
            &registry,
            &job("nope", Value::Array(vec![]), None, vec![]),
        ));
        assert_eq!(e.unwrap_err().error_type, "UnknownFunction");
        let e = result(run_job(
            &registry,
            &job("identity", Value::from(1), None, vec![]),
        ));
        assert_eq!(e.unwrap_err().error_type, "TypeError");
        let bad_kwargs = Value::Map(vec![(Value::from(1), Value::from(2))]);
        let e = result(run_job(
            &registry,
            &job("identity", Value::Array(vec![]), Some(bad_kwargs), vec![]),
        ));
        assert_eq!(e.unwrap_err().error_type, "TypeError");
        let e = result(run_job(
            &registry,
            &job(
                "identity",
                Value::Array(vec![task_ref_value("x")]),
                None,
                vec![("y", Value::Nil)],
            ),
        ));
        assert_eq!(e.unwrap_err().error_type, "MissingDependency");
    }

    #[test]
    fn results_nested_deeper_than_the_protocol_allows_are_refused() {
        let mut registry = FunctionRegistry::new();
        registry.register("deep", |_, _| {
            let mut v = Value::Nil;
            for _ in 0..200 {
                v = Value::Array(vec![v]);
            }
            Ok(v)
        });
        let e = result(run_job(
            &registry,
            &job("deep", Value::Array(vec![]), None, vec![]),
        ));
        assert_eq!(e.unwrap_err().error_type, "ValueError");
    }

    #[test]
    fn the_pool_runs_jobs_and_reports_completions() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let mut pool = ExecutorPool::start(2, FunctionRegistry::builtins(), waker, "t").unwrap();
        for i in 0..2 {
            let mut j = job("inc", Value::Array(vec![Value::from(i)]), None, vec![]);
            j.run_id = i;
            assert!(pool.submit(j).is_none());
        }
        let extra = job("inc", Value::Array(vec![Value::from(9)]), None, vec![]);
        assert!(pool.submit(extra).is_some(), "no idle thread left");
        let mut events = mio::Events::with_capacity(4);
        let mut done = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while done.len() < 2 && Instant::now() < deadline {
            poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
                .unwrap();
            done.extend(pool.take_completions());
        }
        done.sort_by_key(|d| d.run_id);
        let values: Vec<Value> = done.into_iter().map(|d| result(d).unwrap()).collect();
        assert_eq!(values, vec![Value::from(1), Value::from(2)]);
        pool.shutdown();
    }
}
