//! The per-task record's size (issue 19 item 4: a 10M-task graph holds
//! ten million of them; the scheduler's memory per task is measured by
//! `dask-bench --scale`). A field that makes it larger fails here: box it
//! with the rare fields, or say why in the commit and raise the bound.

use super::*;
use crate::state::task_record::PackedState;
use crate::state::task_set::TaskSet;

#[test]
fn the_task_record_and_its_parts_stay_small() {
    let record = std::mem::size_of::<Task>();
    assert!(record <= RECORD_BYTES_MAX, "Task is {record} bytes");
    // A dependent set of up to three ids allocates nothing.
    assert_eq!(std::mem::size_of::<TaskSet>(), 16);
    assert_eq!(std::mem::size_of::<PackedState>(), 4);
}

#[test]
fn a_packed_state_reads_back_as_written() {
    let workers = [0, 1, 7, PackedState::PROCESSING_MAX as usize];
    let states = [
        TaskState::Released,
        TaskState::Waiting,
        TaskState::NoWorker,
        TaskState::Queued,
        TaskState::Memory,
        TaskState::Erred,
    ]
    .into_iter()
    .chain(workers.map(|w| TaskState::Processing(WorkerIdx::new(w))));
    for state in states {
        assert_eq!(PackedState::new(state).get(), state);
    }
}

#[test]
#[should_panic(expected = "fewer than 2^32 - 8 workers")]
fn no_worker_index_reaches_the_packed_states() {
    WorkerIdx::new(PackedState::PROCESSING_MAX as usize + 1);
}

#[test]
fn the_flags_are_apart() {
    let mut task = Task::new(Key("k".into()), None, TaskState::Released, 0);
    task.set_steal_pending(true);
    task.set_args_are_dependencies(true);
    assert!(task.steal_pending() && !task.steal_refused() && task.args_are_dependencies());
    task.set_steal_pending(false);
    task.set_steal_refused(true);
    assert!(!task.steal_pending() && task.steal_refused() && task.args_are_dependencies());
}

/// The record's size now (bytes): 240 before the compact record (four-byte
/// ids, lists of a few ids in place, key and arguments as boxed slices),
/// 168 before the priority went with the rare fields, 160 before key and
/// arguments became one field ([`TaskText`](super::super::task_text)),
/// 152 before the function name's pointer became a thin one, 144 before
/// the state took four bytes and the bools one.
const RECORD_BYTES_MAX: usize = 136;
