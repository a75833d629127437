//! Client-side throughput: submit many small independent tasks with `map`,
//! wait for all and gather them; prints tasks per second.
//!
//! Run: `cargo run --release -p dask-cluster --example client_throughput -- [TASKS] [WORKERS]`

use std::time::Instant;

use dask_client::{args, Error};
use dask_cluster::LocalCluster;

fn main() -> Result<(), Error> {
    let mut argv = std::env::args().skip(1);
    let tasks: i64 = argv.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let workers: usize = argv.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let cluster = LocalCluster::builder()
        .workers(workers)
        .threads_per_worker(1)
        .build()?;
    let client = cluster.into_client()?;
    let start = Instant::now();
    let futures = client.map("inc", (0..tasks).map(|i| args![i]));
    let submitted = start.elapsed();
    for f in &futures {
        f.wait()?;
    }
    let computed = start.elapsed();
    let values = client.gather(&futures)?;
    let gathered = start.elapsed();
    drop(futures);
    assert_eq!(values.len() as i64, tasks);
    let secs = computed.as_secs_f64();
    println!(
        "{tasks} tasks on {workers} workers: submitted in {:.3}s, computed in {secs:.3}s ({:.0} tasks/s), gathered in {:.3}s",
        submitted.as_secs_f64(),
        tasks as f64 / secs,
        (gathered - computed).as_secs_f64(),
    );
    Ok(())
}
