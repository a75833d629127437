//! What the benchmark binaries share: the graph shapes they build.

use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use rmpv::Value;

/// A binary reduction over `leaves` leaves (a power of two): leaf `i` is
/// `leaf_function(leaf_args(i))`, each node `node_function` of its two
/// children; keys from `name(level, index)`. The tasks, leaves first, and
/// the root's key.
pub fn binary_tree(
    leaves: usize,
    name: impl Fn(u32, usize) -> Key,
    leaf_function: &str,
    leaf_args: impl Fn(usize) -> Vec<Value>,
    node_function: &str,
) -> (Vec<TaskSpec>, Key) {
    let mut tasks: Vec<TaskSpec> = Vec::with_capacity(2 * leaves);
    tasks.extend((0..leaves).map(|i| task_spec(name(0, i), leaf_function, &leaf_args(i), &[])));
    let (mut level, mut width) = (0, leaves);
    while width > 1 {
        for i in 0..width / 2 {
            let args = [
                task_ref_value(name(level, 2 * i).as_str()),
                task_ref_value(name(level, 2 * i + 1).as_str()),
            ];
            tasks.push(task_spec(name(level + 1, i), node_function, &args, &[]));
        }
        level += 1;
        width /= 2;
    }
    (tasks, name(level, 0))
}
