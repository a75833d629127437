//! Graphs the tests of several crates submit.

use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use rmpv::Value;

/// One task of a [`reduction`] to make.
pub struct Node<'a> {
    /// Its level: 1 just above the leaves.
    pub depth: usize,
    /// Its place in its level, from 0.
    pub index: usize,
    /// The keys it reduces (at most the fan-in, at least one).
    pub inputs: &'a [Key],
    /// It is the last one: the root.
    pub root: bool,
}

/// A reduction of `leaves` (keys of tasks the caller makes): `fan_in` of
/// them at a time, level by level, until one key is left. `node` makes
/// each task (its key included); returns them, leaves' level first, and the
/// root's key (the only leaf's, when there is one leaf).
pub fn reduction(
    leaves: Vec<Key>,
    fan_in: usize,
    mut node: impl FnMut(Node<'_>) -> TaskSpec,
) -> (Vec<TaskSpec>, Key) {
    assert!(fan_in >= 2 && !leaves.is_empty(), "nothing to reduce");
    let mut tasks = Vec::new();
    let mut level = leaves;
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let root = level.len() <= fan_in;
        level = level
            .chunks(fan_in)
            .enumerate()
            .map(|(index, inputs)| {
                let task = node(Node {
                    depth,
                    index,
                    inputs,
                    root,
                });
                let key = task.key.clone();
                tasks.push(task);
                key
            })
            .collect();
    }
    (tasks, level.remove(0))
}

/// References to `keys`, as task arguments.
pub fn refs(keys: &[Key]) -> Vec<Value> {
    keys.iter().map(|k| task_ref_value(k.as_str())).collect()
}

/// A tree reduction over `leaves` leaves, every key prefixed by `prefix`:
/// `{prefix}inc-{i}` = `inc(i)`, then `add` pairwise (`identity` for an
/// odd one out) up to the root `{prefix}sum`, whose value is
/// `leaves * (leaves + 1) / 2`. About `2 * leaves` tasks.
pub fn tree_reduction(prefix: &str, leaves: usize) -> Vec<TaskSpec> {
    let mut tasks: Vec<TaskSpec> = (0..leaves)
        .map(|i| {
            let key = Key::from(format!("{prefix}inc-{i}"));
            task_spec(key, "inc", &[Value::from(i as u64)], &[])
        })
        .collect();
    let keys = tasks.iter().map(|t| t.key.clone()).collect();
    let (sums, _) = reduction(keys, 2, |n| {
        let key = if n.root {
            format!("{prefix}sum")
        } else {
            format!("{prefix}add-{}-{}", n.depth, n.index)
        };
        let function = if n.inputs.len() == 2 {
            "add"
        } else {
            "identity"
        };
        task_spec(Key::from(key), function, &refs(n.inputs), &[])
    });
    tasks.extend(sums);
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_of_five_leaves_adds_pairwise_up_to_its_sum() {
        let tasks = tree_reduction("p-", 5);
        let shape: Vec<(&str, &str)> = tasks
            .iter()
            .map(|t| (t.key.as_str(), t.function.as_str()))
            .collect();
        assert_eq!(
            shape,
            [
                ("p-inc-0", "inc"),
                ("p-inc-1", "inc"),
                ("p-inc-2", "inc"),
                ("p-inc-3", "inc"),
                ("p-inc-4", "inc"),
                ("p-add-1-0", "add"),
                ("p-add-1-1", "add"),
                ("p-add-1-2", "identity"),
                ("p-add-2-0", "add"),
                ("p-add-2-1", "identity"),
                ("p-sum", "add"),
            ]
        );
        assert_eq!(
            tasks[10].args,
            task_spec(
                Key::from("x"),
                "add",
                &refs(&[Key::from("p-add-2-0"), Key::from("p-add-2-1")]),
                &[]
            )
            .args
        );
    }

    #[test]
    fn a_reduction_by_four_names_its_root_and_keeps_a_lone_leaf() {
        let leaves: Vec<Key> = (0..9).map(|i| Key::from(format!("l-{i}"))).collect();
        let (tasks, root) = reduction(leaves, 4, |n| {
            let key = Key::from(format!(
                "s-{}-{}{}",
                n.depth,
                n.index,
                if n.root { "-root" } else { "" }
            ));
            task_spec(key, "sum", &[Value::Array(refs(n.inputs))], &[])
        });
        let keys: Vec<&str> = tasks.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["s-1-0", "s-1-1", "s-1-2", "s-2-0-root"]);
        assert_eq!(root.as_str(), "s-2-0-root");
        let (none, only) = reduction(vec![Key::from("l-0")], 2, |_| unreachable!());
        assert!(none.is_empty());
        assert_eq!(only.as_str(), "l-0");
    }
}
