//! Fuzzes the scheduler's message handling: the input is a story of
//! connections, messages of a small vocabulary (every op, from every role,
//! with colliding keys and request ids), raw bytes through the frame
//! decoder, hang-ups and time, played into `SchedulerState` with
//! `validate()` after every event (see `stories/scheduler.rs`, shared with
//! `scheduler/tests/hostile.rs`). Fails on a panic or a broken invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;

// `Story::first` serves the tests only.
#[allow(dead_code)]
#[path = "../stories/scheduler.rs"]
mod story;

fuzz_target!(|data: &[u8]| story::run(data));
