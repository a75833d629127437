//! # dask-worker
//!
//! A dask/1 worker: it registers with a scheduler, runs the tasks it is
//! given on a fixed pool of threads, fetches their dependencies directly
//! from the workers that hold them, and serves its own results to peers.
//!
//! - [`function`]: the function registry and the task error type.
//! - [`builtins`]: the documented built-in library, conformance functions included.
//! - [`executor`]: running one task, and the executor thread pool.
//! - [`event_loop`]: the mio event loop driving `dask_core::worker::WorkerState`
//!   (the worker's protocol, sans-IO), and the public [`WorkerHandle`].
//! - [`spill`]: the spill store on disk (one file per spilled value).
//! - [`local`]: values on one host: the host's id, reads of a peer's memory.
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
pub mod event_loop;
pub mod executor;
pub mod function;
pub mod local;
pub mod spill;

pub use event_loop::{WorkerConfig, WorkerHandle};
pub use function::{BorrowingTaskFn, Function, FunctionRegistry, TaskError, TaskFn, TaskResult};
