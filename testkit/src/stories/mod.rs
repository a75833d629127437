//! Stories for the state machines: the bytes a fuzzer gives (or proptest
//! steps) played as connections, messages, hang-ups and time into the
//! scheduler's [`SchedulerState`](dask_scheduler::SchedulerState)
//! ([`scheduler`]) and the worker's
//! [`WorkerState`](dask_core::worker::WorkerState) ([`worker`]), with
//! their invariants checked after every step. Played by the fuzz targets
//! in `fuzz/` and by `scheduler/tests/hostile.rs` and
//! `worker/tests/hostile.rs` (proptest input, kept crashers).

use std::path::Path;

pub mod common;
// A step's fields are the plain numbers a fuzzer draws; each variant's doc
// says what they pick.
#[allow(missing_docs)]
pub mod scheduler;
#[allow(missing_docs)]
pub mod worker;

/// Plays every kept crasher in `dir` (each file but the `.md` ones) through
/// `run`, failing with the file's name and the panic's message when one
/// panics; returns how many were played (0 when `dir` does not exist).
pub fn replay_crashers(dir: &Path, run: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut played = 0;
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{}: {what}", path.display());
        }
        played += 1;
    }
    played
}
