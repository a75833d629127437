//! Stories for the state machines: the bytes a fuzzer gives (or proptest
//! steps) played as connections, messages, hang-ups and time into the
//! scheduler's [`SchedulerState`](dask_scheduler::SchedulerState)
//! ([`scheduler`]) and the worker's
//! [`WorkerState`](dask_core::worker::WorkerState) ([`worker`]), with
//! their invariants checked after every step. Played by the fuzz targets
//! in `fuzz/` and by `scheduler/tests/hostile.rs` and
//! `worker/tests/hostile.rs` (proptest input, kept crashers).

pub mod common;
// A step's fields are the plain numbers a fuzzer draws; each variant's doc
// says what they pick.
#[allow(missing_docs)]
pub mod scheduler;
#[allow(missing_docs)]
pub mod worker;
