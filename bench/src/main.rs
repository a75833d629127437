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
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dask_client::{Client, ClientOptions};
use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use rmpv::Value;

mod scale;

/// One shape's graph: its tasks and the keys whose results are gathered.
struct Shape {
    name: &'static str,
    tasks: Vec<TaskSpec>,
    wanted: Vec<Key>,
    /// The sum of the wanted results, checked after the run.
    expected_sum: i64,
}

fn key(s: String) -> Key {
    Key(s)
}

fn independent(n: i64, run: u32) -> Shape {
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

fn tree(leaves: i64, run: u32) -> Shape {
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

fn chain(n: i64, run: u32) -> Shape {
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

fn all_to_all(n: i64, run: u32) -> Shape {
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

struct Processes {
    children: Vec<Child>,
    scheduler_pid: u32,
    address: String,
    /// The dashboard's URL with its token, as the scheduler printed it.
    dashboard: Option<String>,
    /// The cluster's DASK_RS_HOME: the scheduler creates the credentials
    /// there, its workers and the client find them (removed at drop).
    home: PathBuf,
}

impl Processes {
    /// CPU seconds of the scheduler and of all workers together.
    fn cpu(&self) -> (f64, f64) {
        let workers = self.children[1..]
            .iter()
            .map(|c| dask_bench::cpu_seconds(&c.id().to_string()))
            .sum();
        (
            dask_bench::cpu_seconds(&self.scheduler_pid.to_string()),
            workers,
        )
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A client proving the cluster's client secret, as deployed.
fn connect(procs: &Processes) -> Client {
    let credentials = dask_net::credentials::load(&procs.home.join("credentials.json"))
        .expect("the scheduler's credentials");
    let tls = tls_files(&procs.home).map(|(ca, cert)| {
        dask_net::TlsConfig::from_files(Some(&ca), Some(&cert), None).expect("TLS files")
    });
    let mut options = ClientOptions {
        credentials: Some(credentials),
        tls,
        ..ClientOptions::default()
    };
    if let Some(us) = busy_poll_us() {
        options.busy_poll = Duration::from_micros(us);
    }
    Client::connect_with(&procs.address, options).expect("connect")
}

/// The cluster's CA and certificate in `home`, when it runs over TLS.
fn tls_files(home: &Path) -> Option<(PathBuf, PathBuf)> {
    let dir = home.join("tls");
    dir.exists()
        .then(|| (dir.join("ca.pem"), dir.join("cluster.pem")))
}

/// Whether `--journal` asked for a scheduler that keeps a journal.
fn with_journal() -> bool {
    std::env::args().any(|a| a == "--journal")
}

/// `--busy-poll-us N`: the busy-poll of the scheduler, the workers and the
/// client (their default when absent; 0 turns it off, to measure what it
/// gives).
fn busy_poll_us() -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--busy-poll-us")?;
    Some(
        args.get(at + 1)
            .and_then(|n| n.parse().ok())
            .expect("--busy-poll-us takes a number of microseconds"),
    )
}

/// Whether `--tls` asked for every dask-rs connection over TLS (with
/// authentication, as always): the TLS column is this run beside a plain
/// one.
fn over_tls() -> bool {
    std::env::args().any(|a| a == "--tls")
}

fn start_cluster(bin_dir: &Path, workers: usize, nthreads: u32) -> Processes {
    start_cluster_journaling(bin_dir, workers, nthreads, with_journal())
}

/// [`start_cluster`], its scheduler keeping a journal or not.
fn start_cluster_journaling(
    bin_dir: &Path,
    workers: usize,
    nthreads: u32,
    journaling: bool,
) -> Processes {
    static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let home = std::env::temp_dir().join(format!("dask-bench-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    if over_tls() {
        dask_net::tls::write_cluster_files(&home.join("tls"), &[], 1).expect("TLS files");
    }
    let mut flags: Vec<String> = match tls_files(&home) {
        Some((ca, cert)) => vec![
            "--tls-ca-file".into(),
            ca.to_string_lossy().into_owned(),
            "--tls-cert".into(),
            cert.to_string_lossy().into_owned(),
        ],
        None => Vec::new(),
    };
    if let Some(us) = busy_poll_us() {
        flags.extend(["--busy-poll-us".into(), us.to_string()]);
    }
    let journal: Vec<String> = if journaling {
        vec![
            "--journal".into(),
            home.join("journal").to_string_lossy().into_owned(),
        ]
    } else {
        Vec::new()
    };
    let mut scheduler = Command::new(bin_dir.join("dask-scheduler"))
        .args(["--port", "0"])
        .args(&flags)
        .args(&journal)
        .env("DASK_RS_HOME", &home)
        .env_remove("DASK_CREDENTIALS")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dask-scheduler (build it with cargo build --release)");
    let mut line = String::new();
    let mut banner = BufReader::new(scheduler.stdout.take().expect("stdout"));
    banner.read_line(&mut line).expect("read address");
    let address = line.trim().trim_start_matches("Scheduler at ").to_owned();
    // The banner is one write: its dashboard line is there already.
    let mut line = String::new();
    let _ = banner.read_line(&mut line);
    let dashboard = line.trim().strip_prefix("Dashboard at ").map(str::to_owned);
    let scheduler_pid = scheduler.id();
    let mut children = vec![scheduler];
    for i in 0..workers {
        children.push(
            Command::new(bin_dir.join("dask-worker"))
                .args([
                    address.as_str(),
                    "--nthreads",
                    &nthreads.to_string(),
                    "--name",
                    &format!("bench-{i}"),
                ])
                .args(&flags)
                .env("DASK_RS_HOME", &home)
                .env_remove("DASK_CREDENTIALS")
                .stdout(Stdio::null())
                .spawn()
                .expect("start dask-worker"),
        );
    }
    Processes {
        children,
        scheduler_pid,
        address,
        dashboard,
        home,
    }
}

fn wait_for_workers(client: &Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.workers().map(|w| w.len()).unwrap_or(0) < n {
        assert!(Instant::now() < deadline, "workers did not register");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A measured run of one shape.
struct Measured {
    tasks: usize,
    seconds: f64,
    scheduler_cpu_us_per_task: f64,
    worker_cpu_us_per_task: f64,
}

fn run_shape(client: &Client, procs: &Processes, shape: Shape) -> Measured {
    let n = shape.tasks.len();
    let (s0, w0) = procs.cpu();
    let start = Instant::now();
    let futures = client.submit_tasks(shape.tasks, shape.wanted);
    let values = client.gather(&futures).expect("gather");
    let seconds = start.elapsed().as_secs_f64();
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
struct Transfer {
    bytes: u64,
    /// Best MB/s (10^6 bytes) of the runs.
    best_mb_per_s: f64,
    /// CPU time of both workers per run (sending, receiving, `len`),
    /// which a busy machine does not inflate as it does wall time.
    workers_cpu_ms: f64,
}

/// Worker-to-worker transfer of one `bytes`-byte value: `random_bytes`
/// made on `bench-0` (and waited for; over [`MADE_PIECE_BYTES_MAX`], the
/// `concat` of pieces), then `len` of it run on `bench-1` (worker
/// restrictions), timed from its submission to its result.
fn transfer(client: &Client, procs: &Processes, bytes: u64, runs: u32) -> Transfer {
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
fn monotonic_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn round_trip(client: &Client, n: usize) -> (f64, f64) {
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
fn dynamic(client: &Client, total: usize, in_flight: usize) -> f64 {
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

/// The placement shapes (issue 19), run on 2 workers x [`PLACEMENT_THREADS`].
const PLACEMENT_SHAPES: [&str; 2] = ["mixed", "bimodal"];
const PLACEMENT_THREADS: u32 = 2;
/// Threads of the placement cluster.
const PLACEMENT_CLUSTER_THREADS: f64 = (2 * PLACEMENT_THREADS) as f64;

/// The mixed workload: fast tasks, then slow ones.
const MIXED_FAST: usize = 2_000;
const MIXED_SLOW: usize = 300;
const MIXED_SLOW_SECONDS: f64 = 0.1;
/// Total sleep over all threads.
const MIXED_IDEAL: f64 = MIXED_SLOW as f64 * MIXED_SLOW_SECONDS / PLACEMENT_CLUSTER_THREADS;

/// The bimodal mix: one slow task then three fast ones, over and over,
/// neither duration known when they are submitted.
const BIMODAL_SLOW: usize = 100;
const BIMODAL_SLOW_SECONDS: f64 = 0.2;
const BIMODAL_FAST: usize = 300;
const BIMODAL_FAST_SECONDS: f64 = 0.02;
const BIMODAL_IDEAL: f64 = (BIMODAL_SLOW as f64 * BIMODAL_SLOW_SECONDS
    + BIMODAL_FAST as f64 * BIMODAL_FAST_SECONDS)
    / PLACEMENT_CLUSTER_THREADS;

/// Submits `sleeps` (key, seconds) at once and times them to their
/// results.
fn timed_sleeps(client: &Client, sleeps: Vec<(Key, f64)>) -> f64 {
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

fn bimodal_workload(client: &Client) -> f64 {
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
fn mixed_workload(client: &Client) -> f64 {
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
const TRANSFER_BYTES: [u64; 3] = [10_000_000, 100_000_000, 1_000_000_000];

/// Largest piece `random_bytes` makes in one task (it stops at one
/// frame): a larger value is the `concat` of such pieces.
const MADE_PIECE_BYTES_MAX: u64 = 250_000_000;

/// Tasks of the submit-on-completion loop, and how many are out at once.
const DYNAMIC_TASKS: usize = 20_000;
const DYNAMIC_IN_FLIGHT: usize = 100;

/// Runs of each transfer size (the best is reported).
const TRANSFER_RUNS: u32 = 5;
