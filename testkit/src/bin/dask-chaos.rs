//! `dask-chaos`: the chaos soak (issue 20 item 6). A real
//! `dask-scheduler --validate` and `dask-worker`s, several clients running
//! graphs whose results are known, and, all along, faults drawn from one
//! seed: workers killed (SIGKILL, then replaced), workers and the scheduler
//! paused (SIGSTOP, then SIGCONT, sometimes past the heartbeat timeout), a
//! client that gathers a large value and never reads, and a partition: one
//! worker lives in a network namespace whose link goes down and comes back.
//! Every result is checked exactly and the scheduler's resident memory
//! against a bound; a failure prints the seed that replays its faults
//! (timing is the machine's: a replay draws the same faults in the same
//! order, not at the same microsecond).
//!
//! ```text
//! dask-chaos [--seed N] [--seconds S] [--clients N] [--workers N] [--no-partition]
//!            [--memory-limit BYTES] [--no-full-disk]
//! ```
//!
//! A benchmark, not a test: `scripts/ci/chaos.sh` runs a 2-minute cut of
//! it in CI. The binaries come from `DASK_BIN_DIR`, or are built next to
//! this one (`dask_testkit::process::binary`).
//!
//! Network safety: the namespace's addresses (10.213.X.1 on this side,
//! 10.213.X.2 inside) exist only on the veth pair this program creates and
//! removes; every process is started on them, the worker inside under
//! `ip netns exec`, and the routes are checked before anything starts.
//! Without root and `ip netns` the partition is left out (and said so).
//!
//! And a full spill disk: one more worker, with a 4 MB memory limit,
//! spills to a 5 MB tmpfs (root only; otherwise left out, and said so).
//! Before issue 20 item 2 (50a8499) the soak failed there: a graph waited
//! for ever with its tasks on that worker.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dask_client::{Client, ClientOptions, Key, Value};
use dask_core::auth::Credentials;
use dask_core::client::task_spec;
use dask_core::messages::{Gather, Role, TaskSpec, UpdateGraph};
use dask_core::msgpack::task_ref_value;
use dask_core::Message;
use dask_net::BlockingConn;
use dask_testkit::graphs;
use dask_testkit::home::DaskHome;
use dask_testkit::process::{binary, memory_of, send_signal, Process, SIGCONT, SIGKILL, SIGSTOP};
use dask_testkit::Rng;

/// The scheduler's heartbeat timeout: pauses are drawn around it.
const HEARTBEAT_TIMEOUT_SECONDS: u64 = 3;

/// Longest one graph may take, faults and all, before the soak fails.
const GRAPH_PATIENCE: Duration = Duration::from_secs(180);

/// Longest the setup (processes starting, registering) may take.
const SETUP_PATIENCE: Duration = Duration::from_secs(60);

/// The value the slow reader asks for and never reads.
const SLOW_READER_VALUE_BYTES: u64 = 20_000_000;

/// Most resident memory the scheduler may reach: a few graphs of a few
/// hundred tasks, and what the output bounds let the slow reader hold
/// (64 MiB and two values).
const SCHEDULER_RSS_MAX: u64 = 512 * 1024 * 1024;

struct Args {
    seed: u64,
    seconds: u64,
    clients: usize,
    workers: usize,
    partition: bool,
    /// `--memory-limit` of every worker (values spill to disk past 60%).
    memory_limit: Option<String>,
    /// One more worker spills to a 5 MB tmpfs (issue 20 item 2), where a
    /// tmpfs can be mounted (root).
    full_disk: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
        seconds: 120,
        clients: 3,
        workers: 3,
        partition: true,
        memory_limit: None,
        full_disk: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--seed" => args.seed = number("--seed")?.max(1),
            "--seconds" => args.seconds = number("--seconds")?,
            "--clients" => args.clients = number("--clients")?.max(1) as usize,
            "--workers" => args.workers = number("--workers")?.max(1) as usize,
            "--no-partition" => args.partition = false,
            "--no-full-disk" => args.full_disk = false,
            "--memory-limit" => {
                args.memory_limit =
                    Some(it.next().ok_or("--memory-limit takes a size (e.g. 64MB)")?)
            }
            "-h" | "--help" => {
                println!(
                    "dask-chaos [--seed N] [--seconds S] [--clients N] [--workers N] \
                     [--no-partition] [--memory-limit BYTES] [--no-full-disk]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dask-chaos: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "dask-chaos: seed {} ({} s, {} clients, {} workers); replay: dask-chaos --seed {} \
         --seconds {}",
        args.seed, args.seconds, args.clients, args.workers, args.seed, args.seconds
    );
    let started = Instant::now();
    match run(&args) {
        Ok(summary) => {
            println!(
                "dask-chaos: PASSED in {:.0} s (seed {}): {summary}",
                started.elapsed().as_secs_f64(),
                args.seed
            );
        }
        Err(e) => {
            println!(
                "dask-chaos: FAILED after {:.0} s (seed {}; replay: dask-chaos --seed {} \
                 --seconds {}): {e}",
                started.elapsed().as_secs_f64(),
                args.seed,
                args.seed,
                args.seconds
            );
            std::process::exit(1);
        }
    }
}

// ---- the network ---------------------------------------------------------------

/// A network namespace joined to this one by a veth pair; removed (with
/// the pair) when dropped.
struct Namespace {
    name: String,
    /// The end inside the namespace: the partition takes it down.
    inner_link: String,
    /// This side's address (the scheduler's and the other workers').
    outer_addr: String,
    /// The address inside.
    inner_addr: String,
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Namespace {
    fn create() -> Result<Namespace, String> {
        let pid = std::process::id();
        let ns = Namespace {
            name: format!("dask-chaos-{pid}"),
            inner_link: format!("dc{}n", pid % 1_000_000),
            outer_addr: format!("10.213.{}.1", 100 + pid % 150),
            inner_addr: format!("10.213.{}.2", 100 + pid % 150),
        };
        let outer_link = format!("dc{}o", pid % 1_000_000);
        ip(&["netns", "add", &ns.name])?;
        let (name, inner, outer) = (&ns.name, &ns.inner_link, &outer_link);
        ip(&["link", "add", outer, "type", "veth", "peer", "name", inner])?;
        ip(&["link", "set", inner, "netns", name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.outer_addr),
            "dev",
            outer,
        ])?;
        ip(&["link", "set", outer, "up"])?;
        ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{}/30", ns.inner_addr),
            "dev",
            inner,
        ])?;
        ip(&["-n", name, "link", "set", inner, "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        // Traffic stays on the pair: checked before anything starts.
        let here = ip(&["route", "get", &ns.outer_addr])?;
        if !here.starts_with("local ") {
            return Err(format!("{} is not local here: {here}", ns.outer_addr));
        }
        let out = ip(&["route", "get", &ns.inner_addr])?;
        if !out.contains(&format!(" dev {outer} ")) {
            return Err(format!(
                "{} is not reached through {outer}: {out}",
                ns.inner_addr
            ));
        }
        let back = ip(&["-n", name, "route", "get", &ns.outer_addr])?;
        if !back.contains(&format!(" dev {inner} ")) {
            return Err(format!(
                "from {name}, {} is not reached through {inner}: {back}",
                ns.outer_addr
            ));
        }
        if !ip(&["-n", name, "route", "show", "default"])?
            .trim()
            .is_empty()
        {
            return Err(format!("{name} has a default route"));
        }
        Ok(ns)
    }

    fn set_link(&self, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.name, "link", "set", &self.inner_link, state]).map(|_| ())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

extern "C" {
    fn geteuid() -> u32;
}

/// A 5 MB tmpfs, unmounted and removed when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount() -> Result<SmallDisk, String> {
        let dir = std::env::temp_dir().join(format!("dask-chaos-{}-disk", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=5m", "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "--full-disk needs to mount a tmpfs (root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn can_partition() -> bool {
    // SAFETY: geteuid takes no argument, touches no memory of ours and
    // cannot fail.
    let root = unsafe { geteuid() } == 0;
    root && ip(&["netns", "list"]).is_ok()
}

// ---- the cluster -------------------------------------------------------------------

struct Cluster {
    home: DaskHome,
    scheduler: Process,
    address: String,
    /// Host the workers outside the namespace bind.
    host: String,
    namespace: Option<Namespace>,
    /// Live workers: name, process, inside the namespace.
    workers: Vec<(String, Process, bool)>,
    next_worker: u32,
    /// Every worker's `--memory-limit`.
    memory_limit: Option<String>,
    /// The worker spilling to a small disk, and its disk (dropped in
    /// that order: the worker stops before the disk is unmounted).
    disk: Option<(Process, SmallDisk)>,
}

impl Cluster {
    fn start(args: &Args, namespace: Option<Namespace>) -> Result<Cluster, String> {
        let home = DaskHome::new();
        let host = namespace
            .as_ref()
            .map_or("127.0.0.1".to_string(), |n| n.outer_addr.clone());
        let timeout = HEARTBEAT_TIMEOUT_SECONDS.to_string();
        let (scheduler, address) = home.start_scheduler(
            &[
                "--host",
                &host,
                "--validate",
                "--heartbeat-timeout",
                &timeout,
                // Kills are the point: a task lost with many workers is no bug.
                "--allowed-failures",
                "1000",
                // So are outages: every other worker killed, paused or cut
                // off for over the default 10 s (a scheduler pause of up to
                // 12 s, replacements slow to start under load) leaves the
                // full-disk worker alone, and its tasks would err with
                // SpillFailed as documented; seed 8 did at 75 s.
                "--spill-failed-timeout",
                "60",
            ],
            SETUP_PATIENCE,
        );
        let mut cluster = Cluster {
            home,
            scheduler,
            address,
            host,
            namespace,
            workers: Vec::new(),
            next_worker: 1,
            memory_limit: args.memory_limit.clone(),
            disk: None,
        };
        for _ in 0..args.workers {
            cluster.add_worker(false);
        }
        if cluster.namespace.is_some() {
            cluster.add_worker(true);
        }
        let disk = match args.full_disk.then(SmallDisk::mount) {
            Some(Ok(disk)) => Some(disk),
            Some(Err(e)) => {
                println!("dask-chaos: full spill disk left out: {e}");
                None
            }
            None => None,
        };
        if let Some(disk) = disk {
            let name = format!("w{}-full-disk", cluster.next_worker);
            cluster.next_worker += 1;
            let mut cmd = Command::new(binary("dask-worker"));
            cluster
                .home
                .apply(&mut cmd)
                .arg(&cluster.address)
                .args(["--host", &cluster.host, "--nthreads", "2", "--name", &name])
                .args(["--memory-limit", "4MB", "--local-directory"])
                .arg(&disk.dir);
            let process = Process::spawn(&format!("dask-worker {name}"), &mut cmd);
            // Never killed: its disk stays full.
            cluster.disk = Some((process, disk));
        }
        Ok(cluster)
    }

    fn add_worker(&mut self, inside: bool) {
        let name = format!("w{}", self.next_worker);
        self.next_worker += 1;
        let worker = binary("dask-worker");
        let mut cmd = match (&self.namespace, inside) {
            (Some(ns), true) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns.name]).arg(worker);
                cmd.args(["--host", &ns.inner_addr]);
                cmd
            }
            _ => {
                let mut cmd = Command::new(worker);
                cmd.args(["--host", &self.host]);
                cmd
            }
        };
        self.home
            .apply(&mut cmd)
            .arg(&self.address)
            .args(["--nthreads", "2", "--name", &name]);
        if let Some(limit) = &self.memory_limit {
            cmd.args(["--memory-limit", limit]);
        }
        let process = Process::spawn(&format!("dask-worker {name}"), &mut cmd);
        self.workers.push((name, process, inside));
    }

    fn client(&self, name: &str) -> Result<Client, String> {
        Client::connect_with(
            &self.address,
            ClientOptions {
                name: Some(name.into()),
                request_timeout: Some(GRAPH_PATIENCE),
                ..self.home.client_options()
            },
        )
        .map_err(|e| format!("{name} cannot connect: {e}"))
    }

    /// The scheduler's log, last lines.
    fn tail(&self) -> String {
        let log = self.scheduler.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

// ---- the clients ---------------------------------------------------------------------

/// A tree reduction of `leaves` sleeping leaves (each returns its number)
/// with fan-in 4; the root's expected value.
fn tree(prefix: &str, leaves: usize, sleep: f64, offset: i64) -> (Vec<TaskSpec>, Key, i64) {
    let mut tasks: Vec<TaskSpec> = (0..leaves)
        .map(|i| {
            let key = Key::from(format!("{prefix}-leaf-{i}"));
            let n = Value::from(offset + i as i64);
            task_spec(key, "sleep", &[Value::from(sleep), n], &[])
        })
        .collect();
    let keys = tasks.iter().map(|t| t.key.clone()).collect();
    let (sums, root) = graphs::reduction(keys, 4, |n| {
        let key = Key::from(format!("{prefix}-sum-{}-{}", n.depth, n.index));
        task_spec(key, "sum", &[Value::Array(graphs::refs(n.inputs))], &[])
    });
    tasks.extend(sums);
    let expected = (0..leaves as i64).map(|i| offset + i).sum();
    (tasks, root, expected)
}

/// Values moving between workers: `leaves` binaries of random sizes, the
/// length of each, and one task that takes them all (so they are fetched
/// to one worker); the root adds the lengths and the count.
fn transfers(prefix: &str, leaves: usize, rng: &mut Rng) -> (Vec<TaskSpec>, Key, i64) {
    let mut tasks = Vec::new();
    let mut lengths = Vec::new();
    let mut all = Vec::new();
    let mut expected = leaves as i64;
    for i in 0..leaves {
        let size = 64 * 1024 + rng.below(2 * 1024 * 1024);
        expected += size as i64;
        let leaf = Key::from(format!("{prefix}-bytes-{i}"));
        tasks.push(task_spec(
            leaf.clone(),
            "random_bytes",
            &[Value::from(size as u64), Value::from(i as u64 + 1)],
            &[],
        ));
        let len = Key::from(format!("{prefix}-len-{i}"));
        tasks.push(task_spec(
            len.clone(),
            "len",
            &[task_ref_value(leaf.as_str())],
            &[],
        ));
        lengths.push(task_ref_value(len.as_str()));
        all.push(task_ref_value(leaf.as_str()));
    }
    let count = Key::from(format!("{prefix}-count"));
    tasks.push(task_spec(count.clone(), "len", &[Value::Array(all)], &[]));
    lengths.push(task_ref_value(count.as_str()));
    let root = Key::from(format!("{prefix}-total"));
    tasks.push(task_spec(
        root.clone(),
        "sum",
        &[Value::Array(lengths)],
        &[],
    ));
    (tasks, root, expected)
}

/// Runs graphs until `stop`; each result checked. Returns how many ran.
fn client_loop(
    cluster_client: Client,
    index: usize,
    seed: u64,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index as u64 + 1)) | 1);
    let mut graphs = 0;
    while !stop.load(Ordering::SeqCst) {
        let prefix = format!("c{index}-g{graphs}");
        let (leaves, (tasks, root, expected)) = if rng.chance(30) {
            let leaves = 4 + rng.below(20);
            (leaves, transfers(&prefix, leaves, &mut rng))
        } else {
            let leaves = 16 + rng.below(240);
            let sleep = [0.0, 0.001, 0.01][rng.below(3)];
            let offset = rng.below(1_000_000) as i64;
            (leaves, tree(&prefix, leaves, sleep, offset))
        };
        let futures = cluster_client.submit_tasks(tasks, vec![root.clone()]);
        let got = futures[0].result_timeout(GRAPH_PATIENCE).map_err(|e| {
            // Where the work stands, for the report.
            let workers = cluster_client.workers().map_or_else(
                |e| format!("(workers: {e})"),
                |ws| {
                    ws.iter()
                        .map(|w| {
                            format!(
                                "{}: {} processing, {} stored",
                                w.name, w.processing, w.stored_keys
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            );
            format!("client {index}, graph {prefix} ({leaves} leaves): {e}; workers: {workers}")
        })?;
        if got != Value::from(expected) {
            return Err(format!(
                "client {index}, graph {prefix} ({leaves} leaves): got {got}, expected {expected}"
            ));
        }
        drop(futures);
        graphs += 1;
    }
    Ok(graphs)
}

/// A client connection without the client library, proving the client
/// secret. Its requests may stop being read (backpressure): a send gives
/// up after a second instead of blocking for ever.
fn raw_client(address: &str, credentials: &Credentials, name: &str) -> Option<BlockingConn> {
    let (conn, _) = BlockingConn::connect_proving(
        address,
        Role::Client,
        Role::Scheduler,
        Some(name.into()),
        Duration::from_secs(10),
        Some(credentials),
    )
    .ok()?;
    conn.stream()
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    Some(conn)
}

/// Asks for the large value again and again on connections it never
/// reads, each kept a few seconds; the scheduler's bounds hold it back.
fn slow_reader(address: &str, credentials: &Credentials, big: &Key, stop: &AtomicBool) -> u64 {
    let mut sent = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(mut conn) = raw_client(address, credentials, "chaos-slow-reader") else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let until = Instant::now() + Duration::from_secs(8);
        let mut request = 0;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            request += 1;
            let gather = Message::Gather(Gather {
                request,
                keys: vec![big.clone()],
            });
            if conn.send(&[gather]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    sent
}

/// Connects, submits a graph, asks for some of its keys, and vanishes
/// (the socket dropped, no `close`) at a random point, again and again:
/// the scheduler releases what it wanted, gathers in flight included.
fn vanishing_client(address: &str, credentials: &Credentials, seed: u64, stop: &AtomicBool) -> u64 {
    let mut rng = Rng(seed.rotate_left(17) | 1);
    let mut vanished = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(mut conn) = raw_client(address, credentials, "chaos-vanishing") else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let prefix = format!("vanishing-{vanished}");
        let leaves = 8 + rng.below(120);
        let (tasks, root, _) = tree(&prefix, leaves, 0.005, 0);
        let some: Vec<Key> = tasks.iter().take(4).map(|t| t.key.clone()).collect();
        let update = Message::UpdateGraph(UpdateGraph {
            request: 1,
            tasks,
            wanted: vec![root],
            ack: None,
        });
        if conn.send(&[update]).is_ok() {
            std::thread::sleep(Duration::from_millis(rng.below(500) as u64));
            let gather = Message::Gather(Gather {
                request: 2,
                keys: some,
            });
            let _ = conn.send(&[gather]);
            std::thread::sleep(Duration::from_millis(rng.below(300) as u64));
        }
        drop(conn);
        vanished += 1;
    }
    vanished
}

// ---- the soak -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    PauseWorker,
    PauseScheduler,
    Partition,
}

#[derive(Default, Debug)]
struct Faults {
    kills: u32,
    worker_pauses: u32,
    scheduler_pauses: u32,
    partitions: u32,
}

fn run(args: &Args) -> Result<String, String> {
    let namespace = if args.partition && can_partition() {
        Some(Namespace::create()?)
    } else {
        println!("dask-chaos: partition left out (needs root and ip netns, or --no-partition)");
        None
    };
    let mut cluster = Cluster::start(args, namespace)?;
    let setup = cluster.client("chaos-setup")?;
    let expected_workers = cluster.workers.len() + usize::from(cluster.disk.is_some());
    let deadline = Instant::now() + SETUP_PATIENCE;
    while setup.workers().map_or(0, |w| w.len()) < expected_workers {
        if Instant::now() > deadline {
            return Err(format!("the workers did not register\n{}", cluster.tail()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "dask-chaos: scheduler at {}, {} workers{}",
        cluster.address,
        expected_workers,
        if cluster.namespace.is_some() {
            " (one in a network namespace)"
        } else {
            ""
        }
    );

    // The slow reader's value, kept wanted by the setup client.
    let big = Key::from("chaos-big");
    let big_future = setup.submit_tasks(
        vec![task_spec(
            big.clone(),
            "random_bytes",
            &[Value::from(SLOW_READER_VALUE_BYTES), Value::from(args.seed)],
            &[],
        )],
        vec![big.clone()],
    );
    big_future[0]
        .wait_timeout(GRAPH_PATIENCE)
        .map_err(|e| format!("the slow reader's value: {e}"))?;

    let stop = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for index in 0..args.clients {
        let client = cluster.client(&format!("chaos-client-{index}"))?;
        let (stop, seed) = (Arc::clone(&stop), args.seed);
        clients.push(std::thread::spawn(move || {
            client_loop(client, index, seed, &stop)
        }));
    }
    let reader = {
        let (address, stop, big) = (cluster.address.clone(), Arc::clone(&stop), big.clone());
        let credentials = cluster.home.credentials();
        std::thread::spawn(move || slow_reader(&address, &credentials, &big, &stop))
    };
    let vanishing = {
        let (address, stop, seed) = (cluster.address.clone(), Arc::clone(&stop), args.seed);
        let credentials = cluster.home.credentials();
        std::thread::spawn(move || vanishing_client(&address, &credentials, seed, &stop))
    };
    let scheduler_pid = cluster.scheduler.pid();
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak_rss));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(rss) = memory_of(scheduler_pid, "VmRSS:") {
                    peak.fetch_max(rss, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let mut rng = Rng(args.seed);
    let mut faults = Faults::default();
    let soak_start = Instant::now();
    let soak_end = soak_start + Duration::from_secs(args.seconds);
    let mut failure = None;
    let mut active = Vec::new();
    while Instant::now() < soak_end {
        std::thread::sleep(Duration::from_millis(300 + rng.below(2000) as u64));
        if clients.iter().any(|c| c.is_finished()) {
            break; // a client failed: its error is collected below
        }
        if cluster.scheduler.exited().is_some() {
            failure = Some(format!(
                "the scheduler (--validate) exited\n{}",
                cluster.tail()
            ));
            break;
        }
        let pause = |rng: &mut Rng| {
            Duration::from_millis(
                500 + rng.below(4 * HEARTBEAT_TIMEOUT_SECONDS as usize * 1000) as u64,
            )
        };
        // Pauses and partitions run beside the next faults (at most
        // three at once, one partition): faults overlap.
        active.retain(|(_, t): &(Fault, std::thread::JoinHandle<()>)| !t.is_finished());
        let at = soak_start.elapsed().as_secs();
        let fault = match rng.below(if cluster.namespace.is_some() { 4 } else { 3 }) {
            0 => Fault::Kill,
            1 => Fault::PauseWorker,
            2 => Fault::PauseScheduler,
            _ => Fault::Partition,
        };
        if fault != Fault::Kill && (active.len() >= 3 || active.iter().any(|(f, _)| *f == fault)) {
            continue;
        }
        let d = pause(&mut rng);
        match fault {
            Fault::Kill => {
                let i = rng.below(cluster.workers.len());
                let (name, mut process, inside) = cluster.workers.remove(i);
                let _ = send_signal(process.pid(), SIGKILL);
                process.kill();
                println!("[{at:>4} s] kill {name}; a new worker replaces it");
                cluster.add_worker(inside);
                faults.kills += 1;
            }
            Fault::PauseWorker | Fault::PauseScheduler => {
                let (name, pid) = if fault == Fault::PauseScheduler {
                    faults.scheduler_pauses += 1;
                    ("the scheduler".to_string(), scheduler_pid)
                } else {
                    faults.worker_pauses += 1;
                    let (name, process, _) = &cluster.workers[rng.below(cluster.workers.len())];
                    (name.clone(), process.pid())
                };
                println!("[{at:>4} s] pause {name} for {} ms", d.as_millis());
                let _ = send_signal(pid, SIGSTOP);
                active.push((
                    fault,
                    std::thread::spawn(move || {
                        std::thread::sleep(d);
                        let _ = send_signal(pid, SIGCONT);
                    }),
                ));
            }
            Fault::Partition => {
                let Some(ns) = &cluster.namespace else {
                    continue;
                };
                println!("[{at:>4} s] partition {} for {} ms", ns.name, d.as_millis());
                faults.partitions += 1;
                ns.set_link(false)?;
                let (name, link) = (ns.name.clone(), ns.inner_link.clone());
                active.push((
                    fault,
                    std::thread::spawn(move || {
                        std::thread::sleep(d);
                        let _ = ip(&["-n", &name, "link", "set", &link, "up"]);
                    }),
                ));
            }
        }
    }
    // Every fault over before the last checks.
    for (_, t) in active {
        let _ = t.join();
    }
    stop.store(true, Ordering::SeqCst);
    let mut graphs = 0;
    for (i, c) in clients.into_iter().enumerate() {
        match c.join() {
            Ok(Ok(n)) => graphs += n,
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(format!("client {i} panicked"))),
        }
    }
    let gathers = reader.join().unwrap_or(0);
    let vanished = vanishing.join().unwrap_or(0);
    let _ = sampler.join();
    if failure.is_none() && cluster.scheduler.exited().is_some() {
        failure = Some("the scheduler (--validate) exited".into());
    }
    let peak = peak_rss.load(Ordering::SeqCst);
    if failure.is_none() && peak > SCHEDULER_RSS_MAX {
        failure = Some(format!(
            "the scheduler's resident memory reached {} MiB (bound {} MiB)",
            peak >> 20,
            SCHEDULER_RSS_MAX >> 20
        ));
    }
    // Still serving, with every fault over.
    if failure.is_none() {
        if let Err(e) = setup.cluster_info() {
            failure = Some(format!("cluster-info after the soak: {e}"));
        }
    }
    drop(big_future);
    if let Some(e) = failure {
        return Err(format!(
            "{e}\n---- scheduler log (tail)\n{}",
            cluster.tail()
        ));
    }
    Ok(format!(
        "{graphs} graphs exact; faults {faults:?}; {gathers} unread gathers sent; {vanished} \
         clients vanished mid-graph; scheduler peak RSS {} MiB",
        peak >> 20
    ))
}
