//! What is measured on a running cluster: a shape's run, a transfer between
//! workers, round trips, the dynamic submit-on-completion loop.

use std::time::Instant;

use dask_client::Client;
use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use rmpv::Value;

use crate::*;

/// A measured run of one shape.
pub(crate) struct Measured {
    pub(crate) tasks: usize,
    pub(crate) seconds: f64,
    pub(crate) scheduler_cpu_us_per_task: f64,
    pub(crate) worker_cpu_us_per_task: f64,
}

pub(crate) fn run_shape(client: &Client, procs: &Processes, shape: Shape) -> Measured {
    let n = shape.tasks.len();
    let (s0, w0) = procs.cpu();
    let client0 = dask_bench::own_cpu_seconds();
    let start = Instant::now();
    let wall_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let futures = client.submit_tasks(shape.tasks, shape.wanted);
    let submitted = start.elapsed();
    // `DASK_BENCH_TIMELINE`: when the first wanted key's result came
    // (a task ran, its result back: the start's serial part ends before)
    // and when the call queueing the graph returned, against the submit.
    let first_done = std::env::var_os("DASK_BENCH_TIMELINE").map(|_| {
        let first = futures[0].clone();
        std::thread::spawn(move || {
            first.wait().expect("the first key");
            start.elapsed()
        })
    });
    let values = client.gather(&futures).expect("gather");
    let seconds = start.elapsed().as_secs_f64();
    // This process is the client: its CPU (every thread; the timeline's
    // waiting thread too) over the run.
    let client_cpu = dask_bench::own_cpu_seconds() - client0;
    if let Some(first_done) = first_done {
        let first_done = first_done.join().expect("the timeline's thread");
        eprintln!(
            "timeline {} (submitted at {wall_start:.6} s since the epoch): submit_tasks returned at {:.1} ms, first key done at {:.1} ms, all gathered at {:.1} ms; client CPU {:.1} ms ({:.2} us/task)",
            shape.name,
            submitted.as_secs_f64() * 1e3,
            first_done.as_secs_f64() * 1e3,
            seconds * 1e3,
            client_cpu * 1e3,
            client_cpu * 1e6 / n as f64
        );
    }
    let (s1, w1) = procs.cpu();
    let (cpu, worker_cpu) = (s1 - s0, w1 - w0);
    let sum: i64 = values
        .iter()
        .map(|v| v.as_i64().expect("integer result"))
        .sum();
    assert_eq!(sum, shape.expected_sum, "wrong result for {}", shape.name);
    drop(futures);
    Measured {
        tasks: n,
        seconds,
        scheduler_cpu_us_per_task: cpu * 1e6 / n as f64,
        worker_cpu_us_per_task: worker_cpu * 1e6 / n as f64,
    }
}

/// A measured transfer shape.
pub(crate) struct Transfer {
    pub(crate) bytes: u64,
    /// Best MB/s (10^6 bytes) of the runs.
    pub(crate) best_mb_per_s: f64,
    /// CPU time of both workers per run (sending, receiving, `len`),
    /// which a busy machine does not inflate as it does wall time.
    pub(crate) workers_cpu_ms: f64,
}

/// Worker-to-worker transfer of one `bytes`-byte value: `random_bytes`
/// made on `bench-0` (and waited for; over [`MADE_PIECE_BYTES_MAX`], the
/// `concat` of pieces), then `len` of it run on `bench-1` (worker
/// restrictions), timed from its submission to its result.
pub(crate) fn transfer(client: &Client, procs: &Processes, bytes: u64, runs: u32) -> Transfer {
    let mut best = 0f64;
    let mut cpu = 0f64;
    for run in 0..runs {
        let made = key(format!("transfer-{bytes}-{run}-made"));
        let on_bench_0 = |mut t: TaskSpec| {
            t.workers = Some(vec!["bench-0".into()]);
            t
        };
        let make = if bytes <= MADE_PIECE_BYTES_MAX {
            vec![on_bench_0(task_spec(
                made.clone(),
                "random_bytes",
                &[Value::from(bytes), Value::from(run)],
                &[],
            ))]
        } else {
            let pieces = bytes.div_ceil(MADE_PIECE_BYTES_MAX);
            let mut tasks: Vec<TaskSpec> = (0..pieces)
                .map(|i| {
                    let n = MADE_PIECE_BYTES_MAX.min(bytes - i * MADE_PIECE_BYTES_MAX);
                    on_bench_0(task_spec(
                        key(format!("transfer-{bytes}-{run}-piece-{i}")),
                        "random_bytes",
                        &[Value::from(n), Value::from(run * 100 + i as u32)],
                        &[],
                    ))
                })
                .collect();
            let refs: Vec<Value> = tasks
                .iter()
                .map(|t| task_ref_value(t.key.as_str()))
                .collect();
            tasks.push(on_bench_0(task_spec(
                made.clone(),
                "concat",
                &[Value::Array(refs)],
                &[],
            )));
            tasks
        };
        let source = client.submit_tasks(make, vec![made.clone()]);
        source[0].wait().expect("make the value");
        let used = key(format!("transfer-{bytes}-{run}-len"));
        let mut consume = task_spec(used.clone(), "len", &[task_ref_value(made.as_str())], &[]);
        consume.workers = Some(vec!["bench-1".into()]);
        let (_, w0) = procs.cpu();
        let start = Instant::now();
        let window_start = monotonic_seconds();
        let f = client.submit_tasks(vec![consume], vec![used]);
        let n = f[0].result().expect("transfer result");
        let seconds = start.elapsed().as_secs_f64();
        let run_cpu = procs.cpu().1 - w0;
        if std::env::var_os("DASK_BENCH_TRANSFER_WINDOWS").is_some() {
            // For `perf report --time` (perf record -k CLOCK_MONOTONIC),
            // with this run's own numbers (the table has the best rate and
            // the mean CPU).
            eprintln!(
                "transfer window {bytes} bytes: {window_start:.6},{:.6} ({:.0} MB/s, workers' CPU {:.0} ms)",
                monotonic_seconds(),
                bytes as f64 / seconds / 1e6,
                run_cpu * 1e3
            );
        }
        cpu += run_cpu;
        assert_eq!(n.as_u64(), Some(bytes), "len of the transferred value");
        best = best.max(bytes as f64 / seconds / 1e6);
        drop(f);
        drop(source);
    }
    Transfer {
        bytes,
        best_mb_per_s: best,
        workers_cpu_ms: cpu * 1e3 / runs as f64,
    }
}

/// CLOCK_MONOTONIC in seconds, the clock `perf record -k CLOCK_MONOTONIC`
/// stamps samples with.
pub(crate) fn monotonic_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

pub(crate) fn round_trip(client: &Client, n: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let start = Instant::now();
        let f = client.submit_tasks(
            vec![task_spec(
                key(format!("rt-{i}")),
                "inc",
                &[Value::from(i)],
                &[],
            )],
            vec![key(format!("rt-{i}"))],
        );
        let v = f[0].result().expect("round trip result");
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(v.as_i64(), Some(i + 1));
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[n / 2], samples[n * 9 / 10])
}

/// The submit-on-completion loop (issue 19): `in_flight` tasks out at
/// once; each time one completes its result is fetched and a new task is
/// submitted, until `total` have run. Tasks per second.
pub(crate) fn dynamic(client: &Client, total: usize, in_flight: usize) -> f64 {
    let submit = |i: usize| {
        let k = key(format!("dyn-{i}"));
        let f = client.submit_tasks(
            vec![task_spec(k.clone(), "inc", &[Value::from(i as u64)], &[])],
            vec![k],
        );
        f.into_iter().next().expect("one future")
    };
    let start = Instant::now();
    let mut next = in_flight.min(total);
    let mut done = client.as_completed((0..next).map(submit).collect());
    let mut finished = 0;
    while let Some(f) = done.next() {
        let v = f.result().expect("a result of the loop");
        assert!(v.as_u64().is_some(), "inc gives an int");
        finished += 1;
        if next < total {
            done.add(submit(next));
            next += 1;
        }
        if finished == total {
            break;
        }
    }
    assert_eq!(finished, total, "every task of the loop finished");
    total as f64 / start.elapsed().as_secs_f64()
}
