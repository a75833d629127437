//! A dynamic workflow, as in Dask's `as_completed` pattern: the graph is
//! not known up front; each finished result decides what to submit next,
//! until a condition holds.
//!
//! Here: Collatz walks from several starting numbers on an embedded
//! cluster with one custom function. Every step is a task; when a step
//! finishes, the client reads its value and either stops the walk (it
//! reached 1) or submits the next step, which depends on the finished
//! future itself (the value is not sent back out by the client).
//!
//! Run: `cargo run -p dask-cluster --example dynamic`

use std::collections::HashMap;

use dask_client::{args, Error, Key, Value};
use dask_cluster::{FunctionRegistry, LocalCluster, TaskError};

/// collatz_step(n) -> n / 2 for even n, 3n + 1 for odd n.
fn collatz_step(args: &[Value], _kwargs: &[(String, Value)]) -> Result<Value, TaskError> {
    let n = args
        .first()
        .and_then(Value::as_i64)
        .filter(|n| *n > 0)
        .ok_or_else(|| TaskError::new("TypeError", "collatz_step takes a positive integer"))?;
    let next = if n % 2 == 0 {
        n / 2
    } else {
        n.checked_mul(3)
            .and_then(|m| m.checked_add(1))
            .ok_or_else(|| TaskError::new("OverflowError", "3n + 1 does not fit"))?
    };
    Ok(Value::from(next))
}

fn main() -> Result<(), Error> {
    let mut functions = FunctionRegistry::builtins();
    functions.register("collatz_step", collatz_step);
    let cluster = LocalCluster::builder()
        .workers(2)
        .threads_per_worker(2)
        .functions(functions)
        .build()?;
    let client = cluster.into_client()?;
    println!("cluster at {}", client.address());

    let starts = [6i64, 7, 27, 97, 871];
    // The walk each pending future belongs to, and its steps so far.
    let mut walk_of: HashMap<Key, i64> = HashMap::new();
    let mut steps: HashMap<i64, u32> = HashMap::new();
    let mut pending = client.as_completed(Vec::new());
    for &n in &starts {
        let f = client.submit("identity", args![n]);
        walk_of.insert(f.key().clone(), n);
        steps.insert(n, 0);
        pending.add(f);
    }

    let mut submitted = starts.len();
    while let Some(done) = pending.next() {
        let start = walk_of.remove(done.key()).unwrap_or_default();
        let n = done.result()?.as_i64().unwrap_or(1);
        if n == 1 {
            println!("{start:>4}: reached 1 after {} steps", steps[&start]);
            continue;
        }
        let next = client.submit("collatz_step", args![&done]);
        submitted += 1;
        *steps.entry(start).or_default() += 1;
        walk_of.insert(next.key().clone(), start);
        pending.add(next);
    }
    let longest = starts.iter().max_by_key(|n| steps[n]).copied().unwrap_or(0);
    println!(
        "{submitted} tasks submitted one by one; the longest walk starts at {longest} ({} steps)",
        steps[&longest]
    );
    Ok(())
}
