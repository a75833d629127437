//! # dask-testkit
//!
//! Test support shared by the crates of dask-rs, kept once instead of
//! copied per crate. A dev-dependency only (and a dependency of the fuzz
//! targets, which play its stories): no shipped crate depends on it.
//!
//! - [`generated`]: the check of committed generated files;
//! - [`process`]: binaries under test in child processes, and where the
//!   workspace's binaries are;
//! - [`wire`]: raw connections, hand-made frames, the decoder's codes;
//! - [`hostile`]: the hostile input both the scheduler and the worker get;
//! - [`good_client`]: a well-behaved client computing beside hostile input;
//! - [`stories`]: the stories the fuzz targets and the proptests play into
//!   the scheduler's and the worker's state machines;
//! - [`sim`]: a whole cluster of real state machines on a virtual clock;
//! - [`Rng`]: a seeded generator for reproducible random input.
#![deny(missing_docs)]

pub mod generated;
pub mod good_client;
pub mod graphs;
pub mod home;
pub mod hostile;
pub mod process;
mod rng;
pub mod sim;
pub mod stories;
pub mod wire;

pub use rng::Rng;
