//! `dask-bench --scale SHAPE TASKS [--submit]` (issue 19 item 4): one
//! graph of millions of tasks on a fresh cluster (a scheduler and two
//! one-thread workers), from the Rust client, or with `--submit` through
//! `dask-rs submit` of a msgpack graph file. Prints the submission time
//! (until the scheduler accepted every part), the run time (until the
//! wanted keys finished), the scheduler's peak resident set over the tasks
//! (VmHWM / tasks, and the same less what it held before the graph) and
//! its resident set once the graph is released.
//!
//! Shapes: `tree` (a binary reduction, `add` over `inc` leaves, the last
//! node of an odd level carried up: TASKS/2 leaves, TASKS - 1 tasks in
//! all, the root wanted) and `independent` (TASKS `inc`s, every one
//! wanted).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dask_core::messages::TaskSpec;
use dask_core::Key;

use super::{connect, start_cluster, wait_for_workers};

/// Longest wait for the scheduler to forget a released graph before its
/// resident set is read.
const RELEASE_WAIT_MAX: Duration = Duration::from_secs(600);

/// A number from /proc/PID/status (kB), in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs one scale measurement and prints it.
pub fn run(bin_dir: &Path, shape: &str, tasks: usize, via_submit: bool) {
    let procs = start_cluster(bin_dir, 2, 1);
    let client = connect(&procs);
    wait_for_workers(&client, 2);
    let pid = procs.scheduler_pid;
    let rss_before = status_bytes(pid, "VmRSS");
    let made = Instant::now();
    let (specs, wanted, expected) = dask_bench::scale_graph(shape, tasks);
    let n = specs.len();
    println!(
        "{shape}: {n} tasks built in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    // A second client's round trips while the first releases its keys:
    // the longest is how long the scheduler's loop answered no one.
    let mut probe = None;
    // When the client dropped its futures, and the scheduler's CPU then.
    let mut release_started = None;
    let (submitted, finished) = if via_submit {
        let file =
            std::env::temp_dir().join(format!("dask-bench-scale-{}.msgpack", std::process::id()));
        write_graph_file(&file, specs, &wanted);
        drop(wanted);
        let start = Instant::now();
        let status = Command::new(bin_dir.join("dask-rs"))
            .args(["submit", &file.to_string_lossy(), "--quiet", "--scheduler"])
            .arg(&procs.address)
            .env("DASK_RS_HOME", &procs.home)
            .env_remove("DASK_CREDENTIALS")
            .stdout(Stdio::null())
            .status()
            .expect("run dask-rs submit");
        let _ = std::fs::remove_file(&file);
        assert!(status.success(), "dask-rs submit failed: {status}");
        (None, start.elapsed())
    } else {
        let start = Instant::now();
        let futures = client.submit_tasks(specs, wanted);
        client.wait_accepted().expect("graph accepted");
        let submitted = start.elapsed();
        let sum = if futures.len() == 1 {
            futures[0].result().expect("result").as_i64().expect("int")
        } else {
            // Independent: every future finished (results not gathered).
            for f in &futures {
                f.wait().expect("task");
            }
            expected
        };
        let finished = start.elapsed();
        assert_eq!(sum, expected, "wrong result");
        probe = Some(Probe::start(connect(&procs)));
        release_started = Some((Instant::now(), procs.cpu().0));
        drop(futures);
        (Some(submitted), finished)
    };
    let hwm = status_bytes(pid, "VmHWM");
    // CPU seconds: on a shared machine the wall times above depend on the
    // load; these much less.
    let (scheduler_cpu, workers_cpu) = procs.cpu();
    let client_cpu = if via_submit {
        // cutime and cstime: the waited-for children (here the one
        // dask-rs submit; the cluster's processes still run).
        dask_bench::stat_seconds("self", [16, 17])
    } else {
        dask_bench::cpu_seconds("self")
    };
    // Released: the scheduler forgets the tasks (10M of them take it many
    // seconds on a busy machine: a fixed wait measured it mid-release),
    // then shrinks its tables and gives memory back.
    let released_by = Instant::now() + RELEASE_WAIT_MAX;
    while Instant::now() < released_by {
        let left: u64 = client
            .cluster_info()
            .map_or(1, |info| info.tasks.values().sum());
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The release as the scheduler did it: until no task was left (to
    // 100 ms), and its CPU meanwhile (with the probe's round trips).
    let release = release_started.map_or("-".to_string(), |(at, cpu)| {
        format!(
            "{:.1} s, scheduler CPU {:.2} s",
            at.elapsed().as_secs_f64(),
            procs.cpu().0 - cpu
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = status_bytes(pid, "VmRSS");
    let probed = probe.map_or("-".to_string(), |p| {
        let (longest, trips) = p.stop();
        format!(
            "{:.0} ms ({trips} round trips)",
            longest.as_secs_f64() * 1e3
        )
    });
    let client_label = if via_submit {
        "dask-rs submit"
    } else {
        "client"
    };
    println!(
        "{shape} via {}: {n} tasks; submitted in {}; finished in {:.1} s; CPU s: scheduler {scheduler_cpu:.1}, workers {workers_cpu:.1}, {client_label} {client_cpu:.1}; scheduler VmHWM {:.0} MB = {:.0} B/task ({:.0} B/task over its {:.0} MB before); VmRSS after release {:.0} MB; released in {release}; a second client's longest round trip during the release {probed}; load {}",
        if via_submit { "dask-rs submit" } else { "the Rust client" },
        submitted.map_or("-".into(), |s| format!("{:.1} s", s.as_secs_f64())),
        finished.as_secs_f64(),
        hwm as f64 / 1e6,
        hwm as f64 / n as f64,
        hwm.saturating_sub(rss_before) as f64 / n as f64,
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    );
}

/// Round trips (`cluster-info`) of a client of its own, one after the
/// other on a thread, until stopped.
struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Duration, u64)>,
}

impl Probe {
    fn start(client: dask_client::Client) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut longest, mut trips) = (Duration::ZERO, 0);
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let at = Instant::now();
                if client.cluster_info().is_err() {
                    break;
                }
                longest = longest.max(at.elapsed());
                trips += 1;
            }
            (longest, trips)
        });
        Probe { stop, thread }
    }

    /// The longest round trip and how many were made.
    fn stop(self) -> (Duration, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the probe's thread")
    }
}

/// The graph as a msgpack graph file (spec/PROTOCOL.md "Graph file").
fn write_graph_file(path: &Path, specs: Vec<TaskSpec>, wanted: &[Key]) {
    use dask_core::wire::Wire;
    let mut bytes = Vec::with_capacity(specs.len() * 48);
    let array_header = |bytes: &mut Vec<u8>, n: usize| {
        bytes.push(0xdd); // array 32
        bytes.extend_from_slice(&(n as u32).to_be_bytes());
    };
    bytes.push(0x82); // a map of 2
    bytes.extend_from_slice(b"\xa5tasks");
    array_header(&mut bytes, specs.len());
    let mut w = dask_core::msgpack::WriteBuf::new(&mut bytes);
    for s in &specs {
        s.write(&mut w);
    }
    drop(specs);
    bytes.extend_from_slice(b"\xa6wanted");
    array_header(&mut bytes, wanted.len());
    let mut w = dask_core::msgpack::WriteBuf::new(&mut bytes);
    for k in wanted {
        k.write(&mut w);
    }
    std::fs::write(path, &bytes).expect("write the graph file");
}
