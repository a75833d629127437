//! Graphs the tests of several crates submit.

use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use rmpv::Value;

/// A tree reduction over `leaves` leaves, every key prefixed by `prefix`:
/// `{prefix}inc-{i}` = `inc(i)`, then `add` pairwise (`identity` for an
/// odd one out) up to the root `{prefix}sum`, whose value is
/// `leaves * (leaves + 1) / 2`. About `2 * leaves` tasks.
pub fn tree_reduction(prefix: &str, leaves: usize) -> Vec<TaskSpec> {
    let mut tasks = Vec::with_capacity(2 * leaves);
    let mut level: Vec<String> = (0..leaves)
        .map(|i| {
            let key = format!("{prefix}inc-{i}");
            tasks.push(task_spec(
                Key::from(key.as_str()),
                "inc",
                &[Value::from(i as u64)],
                &[],
            ));
            key
        })
        .collect();
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let last = level.len() <= 2;
        level = level
            .chunks(2)
            .enumerate()
            .map(|(j, pair)| {
                let key = if last {
                    format!("{prefix}sum")
                } else {
                    format!("{prefix}add-{depth}-{j}")
                };
                let args: Vec<Value> = pair.iter().map(|k| task_ref_value(k)).collect();
                let function = if pair.len() == 2 { "add" } else { "identity" };
                tasks.push(task_spec(Key::from(key.as_str()), function, &args, &[]));
                key
            })
            .collect();
    }
    tasks
}
