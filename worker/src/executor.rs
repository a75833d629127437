//! Running tasks: [`run_job`] turns a [`Job`] into a [`TaskDone`] (decode
//! arguments, substitute dependencies, call the function inside a panic
//! boundary, encode the result), and [`ExecutorPool`] runs jobs on a fixed
//! set of threads, handing completions back to the event loop, or runs a
//! quick one on the caller's thread ([`ExecutorPool::run_here`]).

use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_core::worker::arguments::{borrowed_arguments, owned_arguments};
use dask_core::RawValue;

use crate::function::{Function, FunctionRegistry, TaskError};
use dask_core::worker::{Job, TaskDone};

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
    let outcome = match function {
        Function::Owned(function) => {
            let (args, kwargs) = owned_arguments(job)?;
            catch_unwind(AssertUnwindSafe(|| function(&args, &kwargs)))
        }
        Function::Borrowing(function) => {
            let (args, kwargs) = borrowed_arguments(job)?;
            catch_unwind(AssertUnwindSafe(|| function(&args, &kwargs)))
        }
    };
    let value = match outcome {
        Ok(result) => result?,
        Err(panic) => return Err(panic_error(panic.as_ref())),
    };
    // A large binary result becomes its encoding in place, not a copy.
    let checked = needs_check(&value);
    let raw = RawValue::from_owned_value(value);
    if !checked {
        return Ok(raw);
    }
    // Re-checking the encoding keeps a function from storing a value that
    // peers would refuse (nested deeper than the protocol allows, a string
    // that is not UTF-8, a malformed task reference).
    RawValue::from_shared_bytes(raw.into_shared()).map_err(|e| {
        TaskError::value_error(format!("result is not a valid dask/1 value: {}", e.message))
    })
}

/// Whether a result's encoding must be checked before it is stored: a
/// number, a boolean, nil or a binary always encodes as one valid value,
/// and most results of short tasks are numbers.
fn needs_check(value: &rmpv::Value) -> bool {
    use rmpv::Value::*;
    !matches!(
        value,
        Nil | Boolean(_) | Integer(_) | F32(_) | F64(_) | Binary(_)
    )
}

/// The error a function that panicked gives: `Panic`, with the panic's
/// message when it has one.
pub fn panic_error(panic: &(dyn std::any::Any + Send)) -> TaskError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the function panicked".to_string());
    TaskError::new("Panic", message)
}

/// Most bytes of arguments and dependency values a job of a quick function
/// ([`FunctionRegistry::mark_quick`]) may have to run on the event loop's
/// thread: decoding them is then as cheap as the function. Arithmetic on
/// numbers needs a few dozen; a large value given by mistake goes to the
/// executor, where it cannot stall the loop.
pub const QUICK_INPUT_BYTES_MAX: usize = 1024;

/// A queued job, ordered as the worker's ready tasks are: priority desc,
/// then arrival.
struct Queued(Job);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .priority
            .cmp(&other.0.priority)
            .then_with(|| other.0.seq.cmp(&self.0.seq))
    }
}

/// Jobs handed out and not yet taken by a thread.
struct JobQueue {
    jobs: BinaryHeap<Queued>,
    /// Threads blocked waiting for a job: notifying costs a syscall, so
    /// only when one waits.
    waiting: usize,
    closed: bool,
}

/// State shared by the pool's threads and the event loop.
struct Shared {
    queue: Mutex<JobQueue>,
    /// The queue's length, for threads that look without the lock.
    queued: AtomicUsize,
    job_available: Condvar,
    /// Completions waiting for the event loop.
    done: Mutex<Vec<TaskDone>>,
    /// Whether the loop has been woken for `done` already, so a burst of
    /// completions costs one wakeup.
    wake_pending: AtomicBool,
    wake: Wake,
    /// How long a thread that finished a job looks for the next one
    /// before it sleeps (see [`ExecutorPool::start`]).
    busy_poll: Duration,
}

impl Shared {
    fn set_queued(&self, queue: &JobQueue) {
        self.queued.store(queue.jobs.len(), Ordering::Release);
    }

    /// Looks for a queued job until one is or `busy_poll` passes,
    /// yielding the CPU between looks (on two cores shared by several
    /// processes, a spinning thread must not hold a core another needs);
    /// then the queue's lock, tried without sleeping while the submitter
    /// still holds it. `None`: the lock is poisoned.
    fn look_for_job(&self) -> Option<MutexGuard<'_, JobQueue>> {
        let until = Instant::now() + self.busy_poll;
        while Instant::now() < until {
            if self.queued.load(Ordering::Acquire) > 0 {
                match self.queue.try_lock() {
                    Ok(queue) => return Some(queue),
                    Err(TryLockError::Poisoned(_)) => return None,
                    Err(TryLockError::WouldBlock) => {}
                }
            }
            std::thread::yield_now();
        }
        self.queue.lock().ok()
    }
}

/// Wakes the event loop (the reactor's waker, in the worker).
pub type Wake = Box<dyn Fn() + Send + Sync>;

/// A fixed pool of executor threads taking jobs from one queue, highest
/// priority first. At most `nthreads` jobs run at once (one per thread); a
/// job still in the queue can be withdrawn (steal, free-keys).
pub struct ExecutorPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// For the quick jobs run on the caller's thread.
    registry: FunctionRegistry,
}

impl ExecutorPool {
    /// Starts `nthreads` threads running functions from `registry`; each
    /// burst of completions wakes the event loop through `wake`. A thread
    /// that finished a job looks for the next one for `busy_poll` before
    /// it sleeps: a task's successor often arrives within tens of µs, and
    /// waking a sleeping thread (on a halted vCPU) costs about that much.
    pub fn start(
        nthreads: usize,
        registry: FunctionRegistry,
        wake: Wake,
        thread_name: &str,
        busy_poll: Duration,
    ) -> std::io::Result<ExecutorPool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(JobQueue {
                jobs: BinaryHeap::new(),
                waiting: 0,
                closed: false,
            }),
            queued: AtomicUsize::new(0),
            job_available: Condvar::new(),
            done: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            wake,
            busy_poll,
        });
        let mut threads = Vec::with_capacity(nthreads);
        for index in 0..nthreads {
            let registry = registry.clone();
            let shared = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name(format!("{thread_name}-exec-{index}"))
                .spawn(move || executor_thread(&shared, &registry))?;
            threads.push(thread);
        }
        Ok(ExecutorPool {
            shared,
            threads,
            registry,
        })
    }

    /// Runs `job` on the calling thread when its function is quick and its
    /// inputs small ([`QUICK_INPUT_BYTES_MAX`]); `None`: it is for the
    /// threads. A task of microseconds costs less run where it is than
    /// the two thread wakeups and the locks of a trip through the pool.
    pub fn run_here(&self, job: &Job) -> Option<TaskDone> {
        if !self.registry.is_quick(&job.function) {
            return None;
        }
        let mut input = job.args.len() + job.kwargs.as_ref().map_or(0, |k| k.len());
        for (_, value) in &job.deps {
            input += value.len();
            if input > QUICK_INPUT_BYTES_MAX {
                return None;
            }
        }
        (input <= QUICK_INPUT_BYTES_MAX).then(|| run_job(&self.registry, job))
    }

    /// Queues jobs for the threads.
    pub fn submit(&mut self, jobs: impl IntoIterator<Item = Job>) {
        let wake = {
            let Ok(mut queue) = self.shared.queue.lock() else {
                return;
            };
            let before = queue.jobs.len();
            queue.jobs.extend(jobs.into_iter().map(Queued));
            self.shared.set_queued(&queue);
            (queue.jobs.len() - before).min(queue.waiting)
        };
        for _ in 0..wake {
            self.shared.job_available.notify_one();
        }
    }

    /// Removes a job no thread has taken yet; false when it has started
    /// (or is unknown).
    pub fn withdraw(&mut self, run_id: u64) -> bool {
        let Ok(mut queue) = self.shared.queue.lock() else {
            return false;
        };
        let before = queue.jobs.len();
        queue.jobs.retain(|j| j.0.run_id != run_id);
        self.shared.set_queued(&queue);
        queue.jobs.len() != before
    }

    /// Moves every completion so far into `into` (which should be empty).
    /// The two vectors trade places, so both keep their capacity: a fresh
    /// vector per batch would cost an allocation over 1 KiB on one thread
    /// and its free on the other, per batch, which glibc's malloc pays for
    /// with arena locks and consolidations.
    pub fn take_completions(&mut self, into: &mut Vec<TaskDone>) {
        // Clear the flag first: a completion pushed after the take below
        // wakes the loop again rather than being left unseen.
        self.shared.wake_pending.store(false, Ordering::Release);
        if let Ok(mut done) = self.shared.done.lock() {
            if into.is_empty() {
                std::mem::swap(&mut *done, into);
            } else {
                into.append(&mut done);
            }
        }
    }

    /// Stops the threads: queued jobs are dropped, idle threads exit at
    /// once and are joined; busy ones exit when their function returns
    /// (not waited for: a task may sleep for hours).
    pub fn shutdown(self) {
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.closed = true;
            queue.jobs.clear();
            self.shared.set_queued(&queue);
        }
        self.shared.job_available.notify_all();
        let deadline = Instant::now() + std::time::Duration::from_millis(100);
        for thread in self.threads {
            // Give a thread that is just leaving a moment to do so.
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

fn executor_thread(shared: &Shared, registry: &FunctionRegistry) {
    // Whether to look for a job before sleeping: once after each job.
    let mut look = false;
    loop {
        let job = {
            let Ok(mut queue) = shared.queue.lock() else {
                return;
            };
            loop {
                if queue.closed {
                    return;
                }
                if let Some(Queued(job)) = queue.jobs.pop() {
                    shared.set_queued(&queue);
                    break job;
                }
                if std::mem::take(&mut look) && !shared.busy_poll.is_zero() {
                    drop(queue);
                    queue = match shared.look_for_job() {
                        Some(q) => q,
                        None => return,
                    };
                    continue;
                }
                queue.waiting += 1;
                queue = match shared.job_available.wait(queue) {
                    Ok(q) => q,
                    Err(_) => return,
                };
                queue.waiting -= 1;
            }
        };
        let done = run_job(registry, &job);
        drop(job);
        if let Ok(mut queue) = shared.done.lock() {
            queue.push(done);
        }
        if !shared.wake_pending.swap(true, Ordering::AcqRel) {
            (shared.wake)();
        }
        look = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::msgpack::task_ref_value;
    use dask_core::Key;
    use dask_net::BUSY_POLL;
    use dask_testkit::process::thread_sleeps;
    use rmpv::Value;

    fn job(function: &str, args: Value, kwargs: Option<Value>, deps: Vec<(&str, Value)>) -> Job {
        Job {
            run_id: 3,
            priority: 0,
            seq: 0,
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
    fn scalar_results_keep_their_encoding_and_strings_are_still_checked() {
        let mut registry = FunctionRegistry::new();
        let scalars = vec![
            Value::Nil,
            Value::from(true),
            Value::from(-7),
            Value::from(u64::MAX),
            Value::F64(1.5),
            Value::Binary(vec![0xc1; 3]),
        ];
        let returned = scalars.clone();
        registry.register("scalar", move |args: &[Value], _: &[(String, Value)]| {
            let at = args[0].as_u64().unwrap_or(0) as usize;
            Ok(returned[at].clone())
        });
        for (at, expected) in scalars.iter().enumerate() {
            let j = job("scalar", Value::Array(vec![Value::from(at)]), None, vec![]);
            let raw = run_job(&registry, &j).result.unwrap();
            // The canonical encoding, one whole value.
            assert_eq!(raw.as_bytes(), RawValue::from_value(expected).as_bytes());
            assert_eq!(&raw.to_value().unwrap(), expected);
        }
        // A string is checked: rmpv keeps bytes that are not UTF-8 as given.
        let bad: rmpv::Utf8String = match rmpv::decode::read_value(&mut &[0xa1, 0xff][..]) {
            Ok(Value::String(s)) => s,
            other => panic!("{other:?}"),
        };
        assert!(!bad.is_str());
        registry.register("bad_str", move |_: &[Value], _: &[(String, Value)]| {
            Ok(Value::String(bad.clone()))
        });
        let e = result(run_job(
            &registry,
            &job("bad_str", Value::Array(vec![]), None, vec![]),
        ));
        assert_eq!(e.unwrap_err().error_type, "ValueError");
    }

    #[test]
    fn the_pool_runs_jobs_and_reports_completions() {
        let mut poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let waker: Wake = Box::new(move || drop(waker.wake()));
        let mut pool =
            ExecutorPool::start(2, FunctionRegistry::builtins(), waker, "t", BUSY_POLL).unwrap();
        let jobs = (0..5).map(|i| {
            let mut j = job("inc", Value::Array(vec![Value::from(i)]), None, vec![]);
            j.run_id = i;
            j
        });
        pool.submit(jobs);
        let mut events = mio::Events::with_capacity(4);
        let mut done = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while done.len() < 5 && Instant::now() < deadline {
            poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
                .unwrap();
            pool.take_completions(&mut done);
        }
        done.sort_by_key(|d| d.run_id);
        let values: Vec<Value> = done.into_iter().map(|d| result(d).unwrap()).collect();
        let expected: Vec<Value> = (1..6).map(Value::from).collect();
        assert_eq!(values, expected);
        assert!(!pool.withdraw(0), "finished jobs cannot be withdrawn");
        pool.shutdown();
    }

    /// Runs one job, then another 20 ms after it finished; how many times
    /// the executor thread slept from the first's start.
    fn sleeps_between_two_jobs(busy_poll: Duration, name: &str) -> u64 {
        let mut poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let waker: Wake = Box::new(move || drop(waker.wake()));
        let mut pool =
            ExecutorPool::start(1, FunctionRegistry::builtins(), waker, name, busy_poll).unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut run = |pool: &mut ExecutorPool, i: u64| {
            let mut j = job("inc", Value::Array(vec![Value::from(i)]), None, vec![]);
            j.run_id = i;
            pool.submit([j]);
            let mut done = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while done.is_empty() && Instant::now() < deadline {
                poll.poll(&mut events, Some(Duration::from_secs(30)))
                    .unwrap();
                pool.take_completions(&mut done);
            }
            assert_eq!(result(done.remove(0)).unwrap(), Value::from(i + 1));
        };
        run(&mut pool, 0);
        // Counted from before job 1 starts: the sleep after it (if any)
        // comes after this count.
        let thread = format!("{name}-exec-0");
        let before = thread_sleeps(Some(&thread));
        run(&mut pool, 1);
        std::thread::sleep(Duration::from_millis(20));
        if busy_poll.is_zero() {
            // However late the thread got back to the queue, it sleeps
            // before job 2.
            let deadline = Instant::now() + Duration::from_secs(30);
            while thread_sleeps(Some(&thread)) == before {
                assert!(Instant::now() < deadline, "the thread never slept");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        run(&mut pool, 2);
        let slept = thread_sleeps(Some(&thread)) - before;
        pool.shutdown();
        slept
    }

    #[test]
    fn a_thread_that_finished_a_job_looks_for_the_next_before_sleeping() {
        assert_eq!(sleeps_between_two_jobs(Duration::from_secs(30), "spin"), 0);
        // Without busy-polling the thread sleeps until it is notified.
        assert!(sleeps_between_two_jobs(Duration::ZERO, "nospin") > 0);
    }

    #[test]
    fn a_queued_job_can_be_withdrawn_before_a_thread_takes_it() {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let waker: Wake = Box::new(move || drop(waker.wake()));
        let gate = Arc::new(Mutex::new(()));
        let started = Arc::new(AtomicBool::new(false));
        let mut registry = FunctionRegistry::new();
        {
            let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
            registry.register("gated", move |_, _| {
                started.store(true, Ordering::SeqCst);
                let _open = gate.lock();
                Ok(Value::Nil)
            });
        }
        let closed = gate.lock().unwrap();
        let mut pool = ExecutorPool::start(1, registry, waker, "t", BUSY_POLL).unwrap();
        let mut first = job("gated", Value::Array(vec![]), None, vec![]);
        first.run_id = 1;
        let mut second = job("gated", Value::Array(vec![]), None, vec![]);
        second.run_id = 2;
        pool.submit([first, second]);
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while !started.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!pool.withdraw(1), "running");
        assert!(pool.withdraw(2), "still queued");
        drop(closed);
        pool.shutdown();
    }

    #[test]
    fn queued_jobs_start_highest_priority_first_then_in_arrival_order() {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let waker: Wake = Box::new(move || drop(waker.wake()));
        let gate = Arc::new(Mutex::new(()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(AtomicBool::new(false));
        let mut registry = FunctionRegistry::new();
        {
            let (gate, order, started) =
                (Arc::clone(&gate), Arc::clone(&order), Arc::clone(&started));
            registry.register("log", move |args, _| {
                started.store(true, Ordering::SeqCst);
                let _open = gate.lock();
                order.lock().unwrap().push(args[0].as_i64().unwrap());
                Ok(Value::Nil)
            });
        }
        let closed = gate.lock().unwrap();
        let mut pool = ExecutorPool::start(1, registry, waker, "t", BUSY_POLL).unwrap();
        let mk = |i: i64, priority: i64| {
            let mut j = job("log", Value::Array(vec![Value::from(i)]), None, vec![]);
            (j.run_id, j.priority, j.seq) = (i as u64, priority, i as u64);
            j
        };
        // 0 is taken first (the queue is empty then), the rest wait.
        pool.submit([mk(0, 0)]);
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while !started.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        pool.submit([mk(1, 0), mk(2, 5), mk(3, 0), mk(4, 5)]);
        drop(closed);
        while order.lock().unwrap().len() < 5 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order[1..], [2, 4, 1, 3]);
        pool.shutdown();
    }
}
