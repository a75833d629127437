//! The graph shapes: independent, tree, chain, all-to-all.

use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use rmpv::Value;

/// One shape's graph: its tasks and the keys whose results are gathered.
pub(crate) struct Shape {
    pub(crate) name: &'static str,
    pub(crate) tasks: Vec<TaskSpec>,
    pub(crate) wanted: Vec<Key>,
    /// The sum of the wanted results, checked after the run.
    pub(crate) expected_sum: i64,
}

pub(crate) fn key(s: String) -> Key {
    Key(s)
}

pub(crate) fn independent(n: i64, run: u32) -> Shape {
    let tasks: Vec<TaskSpec> = (0..n)
        .map(|i| task_spec(key(format!("inc-{run}-{i}")), "inc", &[Value::from(i)], &[]))
        .collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    Shape {
        name: "independent",
        tasks,
        wanted,
        expected_sum: (1..=n).sum(),
    }
}

pub(crate) fn tree(leaves: i64, run: u32) -> Shape {
    let (tasks, root) = dask_bench::binary_tree(
        leaves as usize,
        |level, i| key(format!("tree-{run}-{level}-{i}")),
        "inc",
        |i| vec![Value::from(i as i64)],
        "add",
    );
    Shape {
        name: "tree",
        tasks,
        wanted: vec![root],
        expected_sum: (1..=leaves).sum(),
    }
}

pub(crate) fn chain(n: i64, run: u32) -> Shape {
    let name = |i: i64| key(format!("chain-{run}-{i}"));
    let mut tasks = vec![task_spec(name(0), "inc", &[Value::from(0)], &[])];
    for i in 1..n {
        tasks.push(task_spec(
            name(i),
            "inc",
            &[task_ref_value(name(i - 1).as_str())],
            &[],
        ));
    }
    Shape {
        name: "chain",
        tasks,
        wanted: vec![name(n - 1)],
        expected_sum: n,
    }
}

pub(crate) fn all_to_all(n: i64, run: u32) -> Shape {
    let a = |i: i64| key(format!("a2a-{run}-a-{i}"));
    let mut tasks: Vec<TaskSpec> = (0..n)
        .map(|i| task_spec(a(i), "inc", &[Value::from(i)], &[]))
        .collect();
    let refs: Vec<Value> = (0..n).map(|i| task_ref_value(a(i).as_str())).collect();
    let mut wanted = Vec::new();
    for j in 0..n {
        let b = key(format!("a2a-{run}-b-{j}"));
        tasks.push(task_spec(
            b.clone(),
            "sum",
            &[Value::Array(refs.clone())],
            &[],
        ));
        wanted.push(b);
    }
    let each: i64 = (1..=n).sum();
    Shape {
        name: "all_to_all",
        tasks,
        wanted,
        expected_sum: each * n,
    }
}
