//! A graph whose intermediates only fit in memory if each is dropped as
//! soon as its last consumer started: 64 blocks of 8 MiB, each reduced to
//! its length, the lengths summed. Held together the blocks take 512 MiB;
//! the run is given 256 MiB of address space and must finish. The same
//! graph with every block wanted (so kept) must not, which shows the limit
//! bites.
//!
//! The limited run is this test binary again, in a child process under
//! `ulimit -v` (a limit on this process would hit every test in it).

use std::process::Command;

use dask_core::client::task_spec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use dask_inprocess::{compute, Scheduler};
use dask_worker::FunctionRegistry;
use rmpv::Value;

const BLOCKS: u64 = 64;
const BLOCK_BYTES: u64 = 8 << 20;
const LIMIT_KIB: u64 = 256 << 10;
const MODE: &str = "DASK_INPROCESS_MEMORY_MODE";

/// Runs [`limited_run`] in a child under the limit: whether it succeeded,
/// and what it printed.
fn run_limited(mode: &str) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["limited_run", "--exact", "--ignored", "--test-threads", "1"])
        .env(MODE, mode)
        // One malloc arena: each arena reserves 64 MiB of address space.
        .env("MALLOC_ARENA_MAX", "1")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), printed.into_owned())
}

#[test]
fn intermediates_freed_early_let_a_graph_run_under_a_memory_limit() {
    let (ran, printed) = run_limited("freed");
    assert!(ran, "the graph did not run in 256 MiB:\n{printed}");
    let (ran, printed) = run_limited("held");
    assert!(
        !ran,
        "holding every block fit too, the limit does not bite:\n{printed}"
    );
    assert!(printed.contains("memory allocation"), "{printed}");
}

#[test]
#[ignore = "run by intermediates_freed_early_let_a_graph_run_under_a_memory_limit"]
fn limited_run() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let block = |i: u64| Key::from(format!("block-{i}").as_str());
    let length = |i: u64| Key::from(format!("length-{i}").as_str());
    let mut tasks = Vec::new();
    for i in 0..BLOCKS {
        let args = [Value::from(BLOCK_BYTES), Value::from(i)];
        tasks.push(task_spec(block(i), "random_bytes", &args, &[]));
        tasks.push(task_spec(
            length(i),
            "len",
            &[task_ref_value(block(i).as_str())],
            &[],
        ));
    }
    let lengths: Vec<Value> = (0..BLOCKS)
        .map(|i| task_ref_value(length(i).as_str()))
        .collect();
    tasks.push(task_spec(
        Key::from("total"),
        "sum",
        &[Value::Array(lengths)],
        &[],
    ));
    let mut wanted = vec![Key::from("total")];
    if mode == "held" {
        wanted.extend((0..BLOCKS).map(block));
    }
    let values = compute(
        tasks,
        &wanted,
        &FunctionRegistry::builtins(),
        Scheduler::Threads(3),
    )
    .expect("the graph runs");
    assert_eq!(values[0], Value::from(BLOCKS * BLOCK_BYTES));
}
