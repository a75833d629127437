//! Fuzzes the worker's state machine (`dask_core::worker`): the input is a
//! story of scheduler messages and raw bytes, peer requests and replies,
//! executor completions and time (see `stories/worker.rs`, shared with
//! `worker/tests/hostile.rs`), checked against a model of the executor.
//! Fails on a panic or a failed check.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../stories/worker.rs"]
mod story;

fuzz_target!(|data: &[u8]| story::run(data));
