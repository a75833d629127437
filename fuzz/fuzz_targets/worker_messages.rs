//! Fuzzes the worker's state machine (`dask_core::worker`): the input is a
//! story of scheduler messages and raw bytes, peer requests and replies,
//! executor completions and time (see `dask_testkit::stories::worker`, shared with
//! `worker/tests/hostile.rs`), checked against a model of the executor.
//! Fails on a panic or a failed check.
#![no_main]

use libfuzzer_sys::fuzz_target;

use dask_testkit::stories::worker;

fuzz_target!(|data: &[u8]| worker::run(data));
