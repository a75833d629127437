//! # dask-client
//!
//! The Rust client of dask-rs: connect to a scheduler, build task graphs
//! lazily ([`delayed`], [`Client::call`]) or submit calls directly
//! ([`Client::submit`], [`Client::map`]), and get results through
//! [`Future`]s. A background thread does the network I/O, driving the
//! sans-IO [`dask_core::client::ClientSession`]; submitting never blocks.
//!
//! ```no_run
//! use dask_client::{args, delayed, Client};
//!
//! let client = Client::connect("tcp://127.0.0.1:8796")?;
//! let a = client.submit("inc", args![1]);
//! let total = delayed("add", args![&a, delayed("inc", args![10])]);
//! assert_eq!(client.compute(&total).result()?.as_i64(), Some(13));
//! # Ok::<(), dask_client::Error>(())
//! ```
//!
//! To run a scheduler and workers in this process instead (like Dask's
//! `LocalCluster(processes=False)`), see the `dask-cluster` crate:
//! `dask_cluster::LocalCluster::start()?.into_client()?`. To compute
//! [`Delayed`] calls with no scheduler, worker or socket at all, on threads
//! of this process (like Dask's threaded and synchronous schedulers), see
//! the `dask-inprocess` crate: `dask_inprocess::compute_delayed(&calls,
//! &registry, Scheduler::Threads(n))`.
//!
//! Keys: generated keys are `{function}-{seed}-{n}`, where the seed is
//! random per process, so clients sharing a scheduler do not clash.
//! Futures are per key: two futures of one key (from clones, or from
//! submitting the same explicit key twice) are two references to the same
//! result; the key is released on the cluster when the last one drops.
#![deny(missing_docs)]

mod client;
mod delayed;
mod error;
mod event_loop;
mod future;
mod shared;

pub use client::{Client, ClientOptions};
pub use dask_core::client::{Progress, TaskOptions, Waiting};
pub use dask_core::messages::{ClusterInfoReply, WaitingKey, WorkerInfo};
pub use dask_core::{Key, RawValue};
pub use delayed::{build_graph, delayed, new_key, Arg, Delayed};
pub use error::{Error, Result};
pub use future::{AsCompleted, Future, Status};
pub use rmpv::Value;
