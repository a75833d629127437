//! The in-process scheduler's overhead, for `bench/inprocess.sh`: graphs
//! of a no-op function (a tree reduction and independent tasks), timed
//! from the task specs to the results (planning, ordering and running),
//! printed as JSON lines.
//!
//! ```text
//! inprocess_overhead shapes [--repeat R]   32,767-task tree and 100,000
//!                                          independent tasks, 2 threads and sync
//! inprocess_overhead scale SHAPE N...      each size in a child process of its
//!                                          own: us per task and peak memory
//! inprocess_overhead one SHAPE N           (the child) one run, JSON on stdout
//! ```
//!
//! Memory per task is the process's peak resident set (VmHWM) minus what
//! it held before the graph was built, over the tasks: the task specs as
//! a caller builds them, the plan, and the run.

use std::process::Command;
use std::time::Instant;

use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::Key;
use dask_inprocess::{compute, Scheduler};
use dask_worker::FunctionRegistry;
use rmpv::Value;

/// `noop(*args) -> nil`, the function every task calls.
fn registry() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register("noop", |_, _| Ok(Value::Nil));
    r
}

/// A binary reduction with `tasks` tasks (2^k - 1) and the key of its root.
fn tree(tasks: usize) -> (Vec<TaskSpec>, Vec<Key>) {
    let (specs, root) = dask_bench::binary_tree(
        tasks.div_ceil(2),
        |level, i| Key::from(format!("t-{level}-{i}").as_str()),
        "noop",
        |_| Vec::new(),
        "noop",
    );
    (specs, vec![root])
}

/// `tasks` tasks without dependencies, all wanted.
fn independent(tasks: usize) -> (Vec<TaskSpec>, Vec<Key>) {
    let specs: Vec<TaskSpec> = (0..tasks)
        .map(|i| task_spec(Key::from(format!("i-{i}").as_str()), "noop", &[], &[]))
        .collect();
    let wanted = specs.iter().map(|s| s.key.clone()).collect();
    (specs, wanted)
}

fn build(shape: &str, tasks: usize) -> (Vec<TaskSpec>, Vec<Key>) {
    match shape {
        "tree" => tree(tasks),
        "independent" => independent(tasks),
        other => panic!("unknown shape {other:?}"),
    }
}

/// Wall and CPU seconds (this process's, all threads) to compute the
/// graph from its specs. On a loaded machine the wall time includes time
/// the threads waited for a core; the CPU time does not.
fn time_one(shape: &str, tasks: usize, scheduler: Scheduler) -> (f64, f64) {
    let (specs, wanted) = build(shape, tasks);
    let registry = registry();
    let (started, cpu) = (Instant::now(), dask_bench::own_cpu_seconds());
    let values = compute(specs, &wanted, &registry, scheduler).expect("the graph runs");
    let times = (
        started.elapsed().as_secs_f64(),
        dask_bench::own_cpu_seconds() - cpu,
    );
    assert_eq!(values.len(), wanted.len());
    times
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn scheduler_name(s: Scheduler) -> String {
    match s {
        Scheduler::Sync => "sync".into(),
        Scheduler::Threads(n) => format!("threads-{n}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("shapes") => {
            let repeat: usize = args
                .iter()
                .position(|a| a == "--repeat")
                .and_then(|i| args.get(i + 1))
                .and_then(|r| r.parse().ok())
                .unwrap_or(5);
            for (shape, tasks) in [("tree", 32_767), ("independent", 100_000)] {
                for scheduler in [Scheduler::Threads(2), Scheduler::Sync] {
                    // The best of `repeat` runs: the machine is shared.
                    let runs: Vec<(f64, f64)> = (0..repeat)
                        .map(|_| time_one(shape, tasks, scheduler))
                        .collect();
                    let best = |f: fn(&(f64, f64)) -> f64| {
                        runs.iter().map(f).fold(f64::INFINITY, f64::min)
                    };
                    println!(
                        "{}",
                        serde_json::json!({
                            "shape": shape, "tasks": tasks,
                            "scheduler": scheduler_name(scheduler),
                            "us_per_task": best(|r| r.0) * 1e6 / tasks as f64,
                            "cpu_us_per_task": best(|r| r.1) * 1e6 / tasks as f64,
                        })
                    );
                }
            }
        }
        Some("build") => {
            // Only the graphs of `shapes` (to tell their cost apart).
            for (shape, tasks) in [("tree", 32_767), ("independent", 100_000)] {
                for _ in 0..2 {
                    let (specs, wanted) = build(shape, tasks);
                    assert_eq!(specs.is_empty(), wanted.is_empty());
                }
            }
        }
        Some("scale") => {
            let exe = std::env::current_exe().expect("own path");
            let shape = args.get(1).expect("a shape");
            for size in args.iter().skip(2) {
                let out = Command::new(&exe)
                    .args(["one", shape, size])
                    .output()
                    .expect("a child run");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
        Some("one") => {
            let shape = args[1].as_str();
            let tasks: usize = args[2].parse().expect("a task count");
            let before = status_kib("VmRSS:");
            let (seconds, cpu) = time_one(shape, tasks, Scheduler::Threads(2));
            let peak = status_kib("VmHWM:");
            println!(
                "{}",
                serde_json::json!({
                    "shape": shape, "tasks": tasks, "scheduler": "threads-2",
                    "us_per_task": seconds * 1e6 / tasks as f64,
                    "cpu_us_per_task": cpu * 1e6 / tasks as f64,
                    "bytes_per_task": (peak.saturating_sub(before)) * 1024 / tasks as u64,
                })
            );
        }
        _ => {
            eprintln!(
                "usage: inprocess_overhead shapes [--repeat R] | scale SHAPE N... | one SHAPE N"
            );
            std::process::exit(2);
        }
    }
}
