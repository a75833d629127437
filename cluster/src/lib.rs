//! # dask-cluster
//!
//! [`LocalCluster`]: a dask-rs scheduler and workers running inside this
//! process, on loopback (like Dask's `LocalCluster(processes=False)`), and
//! the `dask-rs` command (`src/bin/dask-rs/`, reading graph files with
//! [`graph_file`]). The client itself is the
//! `dask-client` crate, which knows no scheduler or worker code.
//!
//! ```no_run
//! use dask_client::{args, delayed};
//! use dask_cluster::LocalCluster;
//!
//! // An embedded scheduler and worker, owned by the client: dropping the
//! // client stops them.
//! let client = LocalCluster::start()?.into_client()?;
//! let a = client.submit("inc", args![1]);
//! let total = delayed("add", args![&a, delayed("inc", args![10])]);
//! assert_eq!(client.compute(&total).result()?.as_i64(), Some(13));
//! # Ok::<(), dask_client::Error>(())
//! ```
#![deny(missing_docs)]

pub mod graph_file;
mod local;

pub use dask_worker::{FunctionRegistry, TaskError};
pub use local::{credentials_of_local_cluster, LocalClient, LocalCluster, LocalClusterBuilder};
