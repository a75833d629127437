//! # dask-conformance
//!
//! Proves that a worker speaks dask/1. The runner plays the scheduler (and,
//! where a case needs it, a peer worker holding data), starts the worker
//! under test as a command, and plays scripted cases against it.
//!
//! Cases are data (`conformance/cases/*.json`, described in
//! `spec/CONFORMANCE.md`): a third party can read exactly what is tested,
//! and the runner holds no case logic of its own beyond the step
//! vocabulary in [`case`] and the matchers in [`value`].
//!
//! Module order follows a run: [`case`] loads and selects cases,
//! [`session`] plays one case against one worker process (using
//! [`process`] for the worker and [`peer`] for the fake peer), [`report`]
//! prints and writes the outcome.
#![deny(missing_docs)]

pub mod auth;
pub mod case;
pub mod error;
pub mod lint;
pub mod local;
pub mod peer;
pub mod process;
pub mod report;
pub mod session;
pub mod tls;
pub mod transport;
pub mod value;

pub use case::{Case, Level};
pub use error::Error;
pub use session::{run_case, CaseOutcome, RunOptions, Status};
