//! `dask-bench --journal-rounds N [--only independent|tree]` (issue 16
//! item 4): the journal's cost over N rounds. Two clusters run side by
//! side, one plain and one whose scheduler keeps a journal on this
//! machine's disk; each round runs every shape on both, in turns (plain
//! first in even rounds, the journal first in odd ones), so load that
//! comes and goes falls on both alike. Prints each run and a table of
//! means and ranges: tasks/s, the loss, and CPU per task of the
//! scheduler's threads (its event loop; the journal's writing thread),
//! the workers, and the whole machine (which counts other work too: read
//! it on an idle machine).

use std::collections::BTreeMap;
use std::path::Path;

use super::{connect, independent, run_shape, start_cluster_journaling, tree, wait_for_workers};
use super::{Processes, Shape};

/// One run's numbers.
#[derive(Clone, Copy, Default)]
struct Run {
    tasks_per_s: f64,
    /// CPU µs per task: the scheduler's every thread but the journal's,
    /// the journal's thread, the workers, the machine.
    scheduler: f64,
    journal_thread: f64,
    workers: f64,
    machine: f64,
}

/// The scheduler's CPU seconds to the nanosecond: (all threads but the
/// journal's, the journal's thread).
fn scheduler_threads(procs: &Processes) -> (f64, f64) {
    let threads = dask_bench::thread_cpu_seconds(&procs.scheduler_pid.to_string());
    let journal: f64 = threads
        .iter()
        .filter(|(name, _)| name == "journal")
        .map(|(_, s)| s)
        .sum();
    let all: f64 = threads.iter().map(|(_, s)| s).sum();
    (all - journal, journal)
}

fn measure(procs: &Processes, client: &dask_client::Client, shape: Shape) -> Run {
    let (s0, j0) = scheduler_threads(procs);
    let m0 = dask_bench::machine_busy_seconds();
    let m = run_shape(client, procs, shape);
    let (s1, j1) = scheduler_threads(procs);
    let m1 = dask_bench::machine_busy_seconds();
    let per_task = |s: f64| s * 1e6 / m.tasks as f64;
    Run {
        tasks_per_s: m.tasks as f64 / m.seconds,
        scheduler: per_task(s1 - s0),
        journal_thread: per_task(j1 - j0),
        workers: m.worker_cpu_us_per_task,
        machine: per_task(m1 - m0),
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn range(xs: &[f64], decimals: usize) -> String {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.d$} ({:.d$} to {:.d$})", mean(xs), lo, hi, d = decimals)
}

pub(super) fn run(bin_dir: &Path, rounds: u32, only: Option<&str>) {
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let load_at_start = load();
    let plain = start_cluster_journaling(bin_dir, 2, 1, false);
    let journaled = start_cluster_journaling(bin_dir, 2, 1, true);
    let clusters = [("plain", plain), ("journal", journaled)];
    let clients: Vec<dask_client::Client> = clusters
        .iter()
        .map(|(_, procs)| {
            let client = connect(procs);
            wait_for_workers(&client, 2);
            // Warm up connections between workers and the scheduler's tables.
            run_shape(&client, procs, tree(1024, 0));
            client
        })
        .collect();
    let shapes: [(&str, &dyn Fn(u32) -> Shape); 2] = [
        ("independent", &|run| independent(100_000, run)),
        ("tree", &|run| tree(65_536, run)),
    ];
    // By shape: the plain runs and the journal's, round by round.
    let mut runs: BTreeMap<&str, [Vec<Run>; 2]> = BTreeMap::new();
    for round in 0..rounds {
        for (name, make) in shapes {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut this = [Run::default(); 2];
            for c in order {
                this[c] = measure(&clusters[c].1, &clients[c], make(round + 1));
            }
            let [p, j] = this;
            println!(
                "round {round} {name}: plain {:.0} tasks/s (scheduler {:.2} µs/task), journal {:.0} ({:+.1}%; scheduler {:.2} + journal thread {:.2} µs/task); load {}",
                p.tasks_per_s,
                p.scheduler,
                j.tasks_per_s,
                (j.tasks_per_s / p.tasks_per_s - 1.0) * 100.0,
                j.scheduler,
                j.journal_thread,
                load()
            );
            let entry = runs.entry(name).or_default();
            entry[0].push(p);
            entry[1].push(j);
        }
    }
    println!();
    println!(
        "{rounds} rounds, plain and --journal in turns; load average (1, 5, 15 min) at the start: {load_at_start}; at the end: {}",
        load()
    );
    println!();
    println!("| shape | plain tasks/s, mean (range) | --journal tasks/s | loss of the means | loss per round, mean (range) | scheduler CPU µs/task plain / journal (+ its writing thread) | workers CPU µs/task plain / journal | machine CPU µs/task plain / journal |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, [p, j]) in &runs {
        let col = |runs: &[Run], f: fn(&Run) -> f64, d: usize| {
            range(&runs.iter().map(f).collect::<Vec<_>>(), d)
        };
        let losses: Vec<f64> = p
            .iter()
            .zip(j)
            .map(|(p, j)| (1.0 - j.tasks_per_s / p.tasks_per_s) * 100.0)
            .collect();
        let rate = |r: &[Run]| mean(&r.iter().map(|x| x.tasks_per_s).collect::<Vec<_>>());
        println!(
            "| {name} | {} | {} | {:.1}% | {}% | {} / {} (+ {}) | {} / {} | {} / {} |",
            col(p, |r| r.tasks_per_s, 0),
            col(j, |r| r.tasks_per_s, 0),
            (1.0 - rate(j) / rate(p)) * 100.0,
            range(&losses, 1),
            col(p, |r| r.scheduler, 2),
            col(j, |r| r.scheduler, 2),
            col(j, |r| r.journal_thread, 2),
            col(p, |r| r.workers, 1),
            col(j, |r| r.workers, 1),
            col(p, |r| r.machine, 1),
            col(j, |r| r.machine, 1),
        );
    }
}
