//! dask-rs beside Dask distributed, shape by shape, in one run.
//!
//! Starts `dask-scheduler` and two `dask-worker --nthreads 1` processes
//! (the binaries next to this one), runs each shape with the Rust client,
//! then runs `bench/dask_bench.py` on smaller instances of the same shapes
//! with Dask's default settings and with worker saturation off, and prints
//! one table with the ratios. The mixed workload (placement) runs on a
//! cluster of its own, two workers x 2 threads, at the same size for both.
//! See BENCHMARKS.md; run with `bench/run.sh`. dask-rs runs as deployed:
//! every connection proves the credentials its scheduler created (in a
//! temporary `DASK_RS_HOME`); with `--tls` every connection is TLS too (a
//! cluster CA as `dask-rs credentials tls` makes one): run it beside a
//! plain run for the cost of TLS (`bench/run.sh --no-dask --tls`). With
//! `--observers` a dashboard page and a Prometheus scraper poll the
//! scheduler once a second while the shapes run (`observers.rs`): run it
//! beside a run without for what watching the scheduler costs. With
//! `--journal` the scheduler keeps a journal (`dask-scheduler --journal`,
//! in the temporary home, on this machine's disk) for the whole run.
//! Without it, the independent and tree shapes run a second time on a
//! cluster whose scheduler keeps a journal: the table's journal columns
//! (tasks/s and the loss against the plain run, scheduler CPU per task).
//! `--journal-rounds N` runs only those two shapes, N rounds of each on a
//! plain and a journaling cluster in turns (`journal_rounds.rs`).
//! `--busy-poll-us N` gives the scheduler, the workers and the client that
//! busy-poll (`--busy-poll-us 0`: none, for what busy-polling gives).
//! `--tcp-values` has the workers move values by their connections (as
//! between hosts) rather than through memory (`value-local`, what workers
//! of one host do by default; also `DASK_RS_VALUE_LOCAL=off`).

mod journal_rounds;
mod observers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod scale;

mod cluster;
mod measure;
mod placement;
mod shapes;

use cluster::*;
use measure::*;
use placement::*;
use shapes::*;

/// Dask's numbers for one configuration, by shape.
type DaskResults = BTreeMap<String, serde_json::Value>;

fn run_dask(python: &str, script: &Path, sizes: &str, saturation_inf: bool) -> Option<DaskResults> {
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(sizes).arg(if saturation_inf {
        "saturation=inf"
    } else {
        "default"
    });
    if saturation_inf {
        cmd.env("DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION", "inf");
    }
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        eprintln!("dask run failed: {}", String::from_utf8_lossy(&out.stdout));
        return None;
    }
    let mut results = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            let shape = v["shape"].as_str().unwrap_or("").to_owned();
            results.insert(shape, v);
        }
    }
    Some(results)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let python = args
        .iter()
        .position(|a| a == "--python")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "python3".into());
    let skip_dask = args.iter().any(|a| a == "--no-dask");
    let observed = args.iter().any(|a| a == "--observers");
    // Workers on one host move values through memory (`value-local`) as a
    // user's do; `--tcp-values` (or DASK_RS_VALUE_LOCAL=off) makes them
    // use their connections, as between hosts.
    if args.iter().any(|a| a == "--tcp-values") {
        std::env::set_var("DASK_RS_VALUE_LOCAL", "off");
    }
    let values_path = match std::env::var("DASK_RS_VALUE_LOCAL").as_deref() {
        Ok("off" | "0" | "false") => "TCP",
        _ => "same-host path",
    };
    // Other work on the machine moves the numbers: say how busy it was.
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_at_start = load();
    let exe = std::env::current_exe().expect("current exe");
    let bin_dir: PathBuf = exe.parent().expect("bin dir").to_path_buf();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(i) = args.iter().position(|a| a == "--scale") {
        let shape = args.get(i + 1).map_or("tree", String::as_str);
        let tasks = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        let via_submit = args.iter().any(|a| a == "--submit");
        return scale::run(&bin_dir, shape, tasks, via_submit);
    }
    if let Some(i) = args.iter().position(|a| a == "--journal-rounds") {
        let rounds = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--journal-rounds takes a number of rounds");
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1));
        return journal_rounds::run(&bin_dir, rounds, only.map(String::as_str));
    }

    let scale = if quick { 10 } else { 1 };
    // The tree's leaves stay a power of two (its expected sum assumes a
    // full tree): 65,536, or 4,096 with --quick.
    let (n_ind, n_leaves, n_chain, n_a2a, n_rt) = (
        100_000 / scale,
        if quick { 4096 } else { 65_536 },
        10_000 / scale,
        200,
        1000,
    );

    let procs = start_cluster(&bin_dir, 2, 1);
    let client = connect(&procs);
    wait_for_workers(&client, 2);
    // Warm up connections between workers and the scheduler's tables.
    run_shape(&client, &procs, tree(1024, 0));
    let observers = observed.then(|| {
        let url = procs
            .dashboard
            .as_deref()
            .expect("--observers: the scheduler serves no dashboard");
        observers::Observers::start(url)
    });

    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let shapes: [(&str, &dyn Fn() -> Shape); 4] = [
        ("independent", &|| independent(n_ind, 1)),
        ("tree", &|| tree(n_leaves, 1)),
        ("chain", &|| chain(n_chain, 1)),
        ("all_to_all", &|| all_to_all(n_a2a, 1)),
    ];
    let mut ours: Vec<(&str, Measured)> = Vec::new();
    for (name, make) in shapes {
        if only.as_deref().is_none_or(|o| o == name) {
            ours.push((name, run_shape(&client, &procs, make())));
        }
    }
    // The journal's cost: the shapes it was measured on, again on a
    // cluster whose scheduler keeps one (unless this whole run does).
    let journaled: BTreeMap<&str, Measured> = if with_journal() {
        BTreeMap::new()
    } else {
        let procs = start_cluster_journaling(&bin_dir, 2, 1, true);
        let client = connect(&procs);
        wait_for_workers(&client, 2);
        run_shape(&client, &procs, tree(1024, 0));
        let shapes: [(&str, &dyn Fn() -> Shape); 2] = [
            ("independent", &|| independent(n_ind, 2)),
            ("tree", &|| tree(n_leaves, 2)),
        ];
        shapes
            .into_iter()
            .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
            .map(|(name, make)| (name, run_shape(&client, &procs, make())))
            .collect()
    };
    let (rt_median, rt_p90) = round_trip(&client, n_rt);
    let dynamic_rate = only
        .as_deref()
        .is_none_or(|o| o == "dynamic")
        .then(|| dynamic(&client, DYNAMIC_TASKS, DYNAMIC_IN_FLIGHT));
    // `--transfer-mb 1000,100`: these sizes only (profiling one of them).
    let transfer_bytes: Vec<u64> = args
        .iter()
        .position(|a| a == "--transfer-mb")
        .and_then(|i| args.get(i + 1))
        .map(|list| {
            list.split(',')
                .map(|mb| mb.parse::<u64>().expect("--transfer-mb: sizes in MB") * 1_000_000)
                .collect()
        })
        .unwrap_or_else(|| TRANSFER_BYTES.to_vec());
    let transfers: Vec<Transfer> = transfer_bytes
        .iter()
        .filter(|_| only.as_deref().is_none_or(|o| o == "transfer"))
        .map(|&bytes| {
            // A 1 GB run takes seconds and gigabytes: fewer of them.
            let runs = if bytes > MADE_PIECE_BYTES_MAX {
                2
            } else {
                TRANSFER_RUNS
            };
            transfer(&client, &procs, bytes, runs)
        })
        .collect();
    if let Some(observers) = observers {
        let (pages, scrapes) = observers.stop();
        println!(
            "observers: a dashboard page polled {pages} times and /metrics was scraped {scrapes} \
             times, once a second each, every answer 200"
        );
    }
    drop(client);
    drop(procs);
    // Placement shapes, each on a fresh cluster of 2 workers x 2 threads.
    let placement: Vec<(&str, f64)> = PLACEMENT_SHAPES
        .iter()
        .filter(|&&name| only.as_deref().is_none_or(|o| o == name))
        .map(|&name| {
            let procs = start_cluster(&bin_dir, 2, PLACEMENT_THREADS);
            let client = connect(&procs);
            wait_for_workers(&client, 2);
            let seconds = match name {
                "mixed" => mixed_workload(&client),
                _ => bimodal_workload(&client),
            };
            (name, seconds)
        })
        .collect();

    let dask_sizes = if quick {
        r#"{"independent": 2000, "tree": 1024, "chain": 1000, "all_to_all": 50, "round_trip": 50, "transfer": [10000000, 100000000, 1000000000], "mixed": [2000, 300, 0.1], "bimodal": [100, 0.2, 300, 0.02]}"#
    } else {
        r#"{"independent": 20000, "tree": 8192, "chain": 5000, "all_to_all": 200, "round_trip": 200, "transfer": [10000000, 100000000, 1000000000], "mixed": [2000, 300, 0.1], "bimodal": [100, 0.2, 300, 0.02]}"#
    };
    // With --only, Dask runs that shape alone.
    let mut sizes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(dask_sizes).expect("sizes");
    if let Some(o) = &only {
        sizes.retain(|name, _| name == o);
    }
    let sizes = serde_json::Value::Object(sizes).to_string();
    let sizes = sizes.as_str();
    let script = repo.join("dask_bench.py");
    let (dask_default, dask_inf) = if skip_dask {
        (None, None)
    } else {
        (
            run_dask(&python, &script, sizes, false),
            run_dask(&python, &script, sizes, true),
        )
    };

    println!(
        "load average (1, 5, 15 min) at the start: {}; at the end: {}",
        load_at_start
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "2 workers x 1 thread, real processes on loopback{}; Dask {}",
        if with_journal() {
            ", the scheduler keeping a journal (--journal)"
        } else {
            ""
        },
        if skip_dask { "skipped" } else { "sizes " }.to_owned()
            + if skip_dask { "" } else { sizes }
    );
    println!();
    println!("| shape | tasks (dask-rs) | dask-rs tasks/s | dask-rs sched CPU us/task | dask-rs workers CPU us/task | Dask tasks/s (tasks) | Dask sched CPU us/task | ratio | Dask sat=inf tasks/s | ratio | dask-rs --journal tasks/s (loss) | --journal sched CPU us/task |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, m) in &ours {
        let rate = m.tasks as f64 / m.seconds;
        let cell = |d: &Option<DaskResults>| -> (String, String, String) {
            match d.as_ref().and_then(|d| d.get(*name)) {
                Some(v) => {
                    let r = v["tasks_per_s"].as_f64().unwrap_or(f64::NAN);
                    (
                        format!("{r:.0} ({})", v["tasks"]),
                        format!(
                            "{:.0}",
                            v["scheduler_cpu_us_per_task"].as_f64().unwrap_or(f64::NAN)
                        ),
                        format!("{:.0}x", rate / r),
                    )
                }
                None => ("-".into(), "-".into(), "-".into()),
            }
        };
        let (d_rate, d_cpu, d_ratio) = cell(&dask_default);
        let (i_rate, _, i_ratio) = cell(&dask_inf);
        let (j_rate, j_cpu) = match journaled.get(name) {
            Some(j) => {
                let r = j.tasks as f64 / j.seconds;
                (
                    format!("{r:.0} ({:+.0}%)", (r / rate - 1.0) * 100.0),
                    format!("{:.1}", j.scheduler_cpu_us_per_task),
                )
            }
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {name} | {} | {rate:.0} | {:.1} | {:.1} | {d_rate} | {d_cpu} | {d_ratio} | {i_rate} | {i_ratio} | {j_rate} | {j_cpu} |",
            m.tasks, m.scheduler_cpu_us_per_task, m.worker_cpu_us_per_task
        );
    }
    let dask_rt = |d: &Option<DaskResults>| {
        d.as_ref()
            .and_then(|d| d.get("round_trip"))
            .and_then(|v| v["median_us"].as_f64())
            .map(|x| format!("{x:.0}"))
            .unwrap_or_else(|| "-".into())
    };
    println!();
    println!("| round trip (submit one task, get its result) | median us | p90 us |");
    println!("|---|---:|---:|");
    println!("| dask-rs ({n_rt} sequential) | {rt_median:.0} | {rt_p90:.0} |");
    println!("| Dask default | {} | |", dask_rt(&dask_default));
    println!("| Dask saturation=inf | {} | |", dask_rt(&dask_inf));
    if let Some(rate) = dynamic_rate {
        println!();
        println!("| submit-on-completion loop ({DYNAMIC_IN_FLIGHT} in flight, each result fetched, then a new task) | tasks/s |");
        println!("|---|---:|");
        println!("| dask-rs ({DYNAMIC_TASKS} tasks) | {rate:.0} |");
    }
    if !placement.is_empty() {
        let dask_time = |d: &Option<DaskResults>, name: &str, ideal: f64| {
            d.as_ref()
                .and_then(|d| d.get(name))
                .and_then(|v| v["seconds"].as_f64())
                .map(|x| format!("{x:.2} s ({:.0}%)", (x / ideal - 1.0) * 100.0))
                .unwrap_or_else(|| "-".into())
        };
        println!();
        println!(
            "| placement, 2 workers x {PLACEMENT_THREADS} threads (time, over the ideal) | ideal | dask-rs | Dask default | Dask saturation=inf |"
        );
        println!("|---|---:|---:|---:|---:|");
        for (name, seconds) in &placement {
            let (what, ideal) = match *name {
                "mixed" => (
                    format!("{MIXED_SLOW} x sleep({MIXED_SLOW_SECONDS}) right after {MIXED_FAST} x inc"),
                    MIXED_IDEAL,
                ),
                _ => (
                    format!("bimodal, unknown at submit: {BIMODAL_SLOW} x sleep({BIMODAL_SLOW_SECONDS}) and {BIMODAL_FAST} x sleep({BIMODAL_FAST_SECONDS}) interleaved"),
                    BIMODAL_IDEAL,
                ),
            };
            println!(
                "| {what} | {ideal:.2} s | {seconds:.2} s ({:.0}%) | {} | {} |",
                (seconds / ideal - 1.0) * 100.0,
                dask_time(&dask_default, name, ideal),
                dask_time(&dask_inf, name, ideal),
            );
        }
    }
    if transfers.is_empty() {
        return;
    }
    let dask_transfer = |d: &Option<DaskResults>, bytes: u64| {
        d.as_ref()
            .and_then(|d| d.get(&format!("transfer-{bytes}")))
            .and_then(|v| v["mb_per_s"].as_f64())
    };
    println!();
    println!(
        "| worker-to-worker transfer (best of {TRANSFER_RUNS}, 1 GB: of 2; made on one worker, `len` on the other; dask-rs: {values_path}) | dask-rs MB/s | dask-rs workers CPU ms | Dask MB/s | ratio |"
    );
    println!("|---|---:|---:|---:|---:|");
    for t in transfers {
        let (bytes, rate) = (t.bytes, t.best_mb_per_s);
        let dask = dask_transfer(&dask_default, bytes);
        println!(
            "| {} MB | {rate:.0} | {:.0} | {} | {} |",
            bytes / 1_000_000,
            t.workers_cpu_ms,
            dask.map(|d| format!("{d:.0}"))
                .unwrap_or_else(|| "-".into()),
            dask.map(|d| format!("{:.1}x", rate / d))
                .unwrap_or_else(|| "-".into()),
        );
    }
}
