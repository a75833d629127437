//! # dask-scheduler
//!
//! The dask/1 scheduler: [`state`] is the whole scheduler as a pure state
//! machine (connections, clients, workers, the task state machine,
//! placement, reference counts, datasets); [`server`] is the thin
//! single-threaded mio loop that feeds it bytes and time and writes what it
//! says. The `dask-scheduler` binary runs the server in the foreground.
//!
//! ```no_run
//! use dask_scheduler::{SchedulerConfig, SchedulerHandle};
//! let scheduler = SchedulerHandle::start(SchedulerConfig { port: 0, ..Default::default() })?;
//! println!("Scheduler at {}", scheduler.address());
//! scheduler.stop();
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

pub mod server;
pub mod state;

pub use server::{serve, SchedulerConfig, SchedulerHandle, Server, Stopper};
pub use state::{ConnId, Output, SchedulerState, StateConfig};
