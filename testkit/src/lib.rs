//! # dask-testkit
//!
//! Test support shared by the crates of dask-rs, kept once instead of
//! copied per crate. A dev-dependency only.
#![deny(missing_docs)]

pub mod generated;
