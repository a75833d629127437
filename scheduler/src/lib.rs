//! # dask-scheduler
//!
//! The dask/1 scheduler: [`state`] is the whole scheduler as a pure state
//! machine (connections, clients, workers, the task state machine,
//! placement, reference counts, datasets); [`event_loop`] is the thin
//! single-threaded loop that moves a `dask_net::Reactor`'s events and the
//! time into it and its outputs back; [`journal`] is the append-only file
//! (`--journal DIR`) that group-commits records, cuts a torn tail and
//! compacts by snapshot. The `dask-scheduler` binary runs the
//! loop in the foreground.
//!
//! ```no_run
//! use dask_scheduler::{SchedulerConfig, SchedulerHandle};
//! let scheduler = SchedulerHandle::start(SchedulerConfig { port: 0, ..Default::default() })?;
//! println!("Scheduler at {}", scheduler.address());
//! scheduler.stop();
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

pub mod dashboard;
pub mod event_loop;
pub mod journal;
pub mod state;

pub use event_loop::{serve, EventLoop, SchedulerConfig, SchedulerHandle, Stopper, DEFAULT_PORT};
pub use state::{ConnId, SchedulerOutput, SchedulerState, SchedulerStateConfig};
