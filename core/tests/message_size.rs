//! A message moves by value about 15 times between decoding and sending
//! (machine, outputs, the loop's queues), so its size is work on every task.
//! `hello`, sent once per connection, is boxed to keep it out of that size.

use dask_core::messages::{ComputeTask, Hello};
use dask_core::Message;
use std::mem::size_of;

#[test]
fn a_message_is_no_larger_than_compute_task_and_a_tag() {
    assert!(
        size_of::<Hello>() > size_of::<ComputeTask>(),
        "hello is no longer the largest payload: unbox it (core/src/messages/)"
    );
    assert!(
        size_of::<Message>() <= size_of::<ComputeTask>() + 8,
        "Message is {} bytes, compute-task {}: box the variant that grew past it",
        size_of::<Message>(),
        size_of::<ComputeTask>()
    );
}
