//! # dask-worker
//!
//! A dask/1 worker: it registers with a scheduler, runs the tasks it is
//! given on a fixed pool of threads, fetches their dependencies directly
//! from the workers that hold them, and serves its own results to peers.
//!
//! - [`function`]: the function registry and the task error type.
//! - [`builtins`]: the documented built-in library, conformance functions included.
//! - [`state`]: the worker state machine, sans-IO (tasks, fetches, data store).
//! - [`executor`]: running one task, and the executor thread pool.
//! - [`server`]: the mio event loop and the public [`WorkerHandle`].
//! - [`spill`]: the spill store on disk (one file per spilled value).
//!
//! ```no_run
//! use dask_worker::{WorkerConfig, WorkerHandle};
//! let worker = WorkerHandle::start(WorkerConfig {
//!     scheduler: "tcp://127.0.0.1:8796".into(),
//!     nthreads: 2,
//!     ..WorkerConfig::default()
//! })?;
//! println!("{} serves data at {}", worker.name(), worker.address());
//! worker.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

pub mod builtins;
pub mod executor;
pub mod function;
pub mod server;
pub mod spill;
pub mod state;

pub use function::{FunctionRegistry, TaskError, TaskFn, TaskResult};
pub use server::{WorkerConfig, WorkerHandle};
