//! The placement shapes (issue 19): mixed and bimodal durations on 2 workers
//! x 2 threads, and their makespans against the ideal.

use std::time::Instant;

use dask_client::Client;
use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::Key;
use rmpv::Value;

use crate::*;

/// The placement shapes (issue 19), run on 2 workers x [`PLACEMENT_THREADS`].
pub(crate) const PLACEMENT_SHAPES: [&str; 2] = ["mixed", "bimodal"];
pub(crate) const PLACEMENT_THREADS: u32 = 2;
/// Threads of the placement cluster.
pub(crate) const PLACEMENT_CLUSTER_THREADS: f64 = (2 * PLACEMENT_THREADS) as f64;

/// The mixed workload: fast tasks, then slow ones.
pub(crate) const MIXED_FAST: usize = 2_000;
pub(crate) const MIXED_SLOW: usize = 300;
pub(crate) const MIXED_SLOW_SECONDS: f64 = 0.1;
/// Total sleep over all threads.
pub(crate) const MIXED_IDEAL: f64 =
    MIXED_SLOW as f64 * MIXED_SLOW_SECONDS / PLACEMENT_CLUSTER_THREADS;

/// The bimodal mix: one slow task then three fast ones, over and over,
/// neither duration known when they are submitted.
pub(crate) const BIMODAL_SLOW: usize = 100;
pub(crate) const BIMODAL_SLOW_SECONDS: f64 = 0.2;
pub(crate) const BIMODAL_FAST: usize = 300;
pub(crate) const BIMODAL_FAST_SECONDS: f64 = 0.02;
pub(crate) const BIMODAL_IDEAL: f64 = (BIMODAL_SLOW as f64 * BIMODAL_SLOW_SECONDS
    + BIMODAL_FAST as f64 * BIMODAL_FAST_SECONDS)
    / PLACEMENT_CLUSTER_THREADS;

/// Submits `sleeps` (key, seconds) at once and times them to their
/// results.
pub(crate) fn timed_sleeps(client: &Client, sleeps: Vec<(Key, f64)>) -> f64 {
    let n = sleeps.len();
    let tasks: Vec<TaskSpec> = sleeps
        .into_iter()
        .enumerate()
        .map(|(i, (key, seconds))| {
            task_spec(key, "sleep", &[Value::from(seconds), Value::from(i)], &[])
        })
        .collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    let start = Instant::now();
    let futures = client.submit_tasks(tasks, wanted);
    let values = client.gather(&futures).expect("gather the sleeps");
    let seconds = start.elapsed().as_secs_f64();
    let sum: i64 = values.iter().filter_map(|v| v.as_i64()).sum();
    assert_eq!(sum as usize, n * (n - 1) / 2, "sleep results");
    seconds
}

pub(crate) fn bimodal_workload(client: &Client) -> f64 {
    let mut sleeps = Vec::new();
    let per_slow = BIMODAL_FAST / BIMODAL_SLOW;
    for i in 0..BIMODAL_SLOW {
        sleeps.push((key(format!("bimodal-slow-{i}")), BIMODAL_SLOW_SECONDS));
        for j in 0..per_slow {
            let k = key(format!("bimodal-fast-{}", i * per_slow + j));
            sleeps.push((k, BIMODAL_FAST_SECONDS));
        }
    }
    timed_sleeps(client, sleeps)
}

/// Runs [`MIXED_FAST`] `inc`s (and gathers them), then times
/// [`MIXED_SLOW`] `sleep`s from their submission to their results.
pub(crate) fn mixed_workload(client: &Client) -> f64 {
    let incs: Vec<TaskSpec> = (0..MIXED_FAST)
        .map(|i| task_spec(key(format!("mixed-inc-{i}")), "inc", &[Value::from(i)], &[]))
        .collect();
    let wanted = incs.iter().map(|t| t.key.clone()).collect();
    let futures = client.submit_tasks(incs, wanted);
    client.gather(&futures).expect("gather the incs");
    drop(futures);
    let sleeps = (0..MIXED_SLOW)
        .map(|i| (key(format!("mixed-sleep-{i}")), MIXED_SLOW_SECONDS))
        .collect();
    timed_sleeps(client, sleeps)
}

/// Value sizes of the transfer shape, in bytes (1 GB is over one frame:
/// it goes in parts, dask/1.1 `value-parts`).
pub(crate) const TRANSFER_BYTES: [u64; 3] = [10_000_000, 100_000_000, 1_000_000_000];

/// Largest piece `random_bytes` makes in one task (it stops at one
/// frame): a larger value is the `concat` of such pieces.
pub(crate) const MADE_PIECE_BYTES_MAX: u64 = 250_000_000;

/// Tasks of the submit-on-completion loop, and how many are out at once.
pub(crate) const DYNAMIC_TASKS: usize = 20_000;
pub(crate) const DYNAMIC_IN_FLIGHT: usize = 100;

/// Runs of each transfer size (the best is reported).
pub(crate) const TRANSFER_RUNS: u32 = 5;
