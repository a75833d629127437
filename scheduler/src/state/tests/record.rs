//! The per-task record's size (issue 19 item 4: a 10M-task graph holds
//! ten million of them; the scheduler's memory per task is measured by
//! `dask-bench --scale`). A field that makes it larger fails here: box it
//! with the rare fields, or say why in the commit and raise the bound.

use super::*;
use crate::state::task_set::TaskSet;

#[test]
fn the_task_record_and_its_parts_stay_small() {
    let record = std::mem::size_of::<Task>();
    assert!(record <= RECORD_BYTES_MAX, "Task is {record} bytes");
    // A dependent set of up to three ids allocates nothing.
    assert_eq!(std::mem::size_of::<TaskSet>(), 16);
}

/// The record's size now (bytes): 240 before the compact record (four-byte
/// ids, lists of a few ids in place, key and arguments as boxed slices),
/// 168 before the priority went with the rare fields, 160 before key and
/// arguments became one field ([`TaskText`](super::super::task_text)),
/// 152 before the function name's pointer became a thin one.
const RECORD_BYTES_MAX: usize = 144;
