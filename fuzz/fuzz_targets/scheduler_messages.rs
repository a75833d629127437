//! Fuzzes the scheduler's message handling: the input is a story of
//! connections, messages of a small vocabulary (every op, from every role,
//! with colliding keys and request ids), raw bytes through the frame
//! decoder, hang-ups and time, played into `SchedulerState` with
//! `validate()` after every event (see `dask_testkit::stories::scheduler`, shared with
//! `scheduler/tests/hostile.rs`). Fails on a panic or a broken invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;

use dask_testkit::stories::scheduler;

fuzz_target!(|data: &[u8]| scheduler::run(data));
