//! Faults with real processes: a `dask-scheduler --validate` and
//! `dask-worker`s on 127.0.0.1, killed (SIGKILL), hung (SIGSTOP), resumed
//! (SIGCONT) and replaced while graphs run. Each story checks that the
//! results are exact, that the scheduler survived its own invariant checks
//! (`--validate` stops it at the first broken one), and what became of the
//! processes.
//!
//! Waits are bounded ([`PATIENCE`]) and nothing asserts on speed: graphs
//! are made long with sleeping tasks, never by hoping a machine is slow,
//! and faults are injected at a measured point of progress.
//!
//! The binaries belong to other packages: `dask_testkit::process::binary`
//! builds them once per test process with this test's profile and target
//! directory, then runs them from `target/<profile>/` (`DASK_BIN_DIR=DIR`
//! uses the binaries in DIR instead).

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use dask_client::{Client, ClientOptions, Error, Future, Key, Value};
use dask_core::client::task_spec;
use dask_core::messages::{Role, TaskSpec, UpdateGraph};
use dask_core::msgpack::task_ref_value;
use dask_core::Message;
use dask_net::BlockingConn;

use dask_testkit::home::DaskHome;
use dask_testkit::process::{binary, send_signal, stop_pid, Process, SIGCONT, SIGKILL, SIGTERM};

/// Longest any one wait may take: generous, so a slow machine only makes
/// the tests slower.
const PATIENCE: Duration = Duration::from_secs(60);

// ---- the stories ----------------------------------------------------------

#[test]
fn sigkill_twice_during_a_10000_task_tree_reduction_gives_the_exact_result() {
    let mut cluster = Cluster::start(&[], &["w1", "w2", "w3"]);
    let client = cluster.client();
    // 5000 leaves of 2 ms each on three single-thread workers: at least
    // 3 s of work, whatever the machine.
    let graph = TreeReduction::new("tree10k", 5000, 2);
    assert_eq!(graph.tasks.len(), 10_000);
    let root = graph.submit(&client);
    cluster.wait_for_progress(&client, &root, 2000);
    cluster.kill("w1");
    cluster.add_worker("w4");
    cluster.wait_for_progress(&client, &root, 5000);
    cluster.kill("w2");
    cluster.add_worker("w5");
    assert_eq!(cluster.result(&root), Value::from(graph.expected));
    cluster.assert_scheduler_alive();
    cluster.wait_for_workers(&client, &["w3", "w4", "w5"]);
}

#[test]
fn a_hung_worker_is_declared_dead_its_work_moves_on_and_after_sigcont_it_registers_again() {
    let mut cluster = Cluster::start(&["--heartbeat-timeout", "3"], &["w1", "w2", "w3"]);
    let client = cluster.client();
    // Long enough that w1 holds partial sums the others need when it
    // hangs, so they may be fetching from it.
    let graph = TreeReduction::new("hung", 600, 10);
    let root = graph.submit(&client);
    cluster.wait_for_progress(&client, &root, 300);
    cluster.stop("w1");
    // Declared dead after the timeout, though its process and connections
    // are still there.
    cluster.wait_for_workers(&client, &["w2", "w3"]);
    assert_eq!(cluster.result(&root), Value::from(graph.expected));
    // Awake again, w1 finds the `close{reconnect: true}` the scheduler
    // sent (it may only have been misjudged) and registers again as a new
    // worker; what it still says on the way is not heard. (Before dask/1.1
    // it exited for good.)
    cluster.signal("w1", SIGCONT);
    cluster.wait_for_workers(&client, &["w1", "w2", "w3"]);
    assert!(
        cluster.worker("w1").exited().is_none(),
        "{}",
        cluster.logs()
    );
    assert!(
        cluster
            .worker("w1")
            .log()
            .contains("the scheduler said close"),
        "{}",
        cluster.logs()
    );
    cluster.assert_scheduler_alive();
    // The cluster goes on working, w1 with it.
    let again = TreeReduction::new("after-hung", 100, 0);
    let root = again.submit(&client);
    assert_eq!(cluster.result(&root), Value::from(again.expected));
    cluster.assert_scheduler_alive();
}

#[test]
fn a_pause_of_the_whole_machine_does_not_declare_the_workers_dead() {
    let mut cluster = Cluster::start(&["--heartbeat-timeout", "2"], &["w1", "w2"]);
    let client = cluster.client();
    let graph = TreeReduction::new("machine-paused", 200, 10);
    let root = graph.submit(&client);
    cluster.wait_for_progress(&client, &root, 20);
    // A VM pause: every process stops, and when the machine runs again the
    // scheduler may run first, with no heartbeat waiting in its sockets.
    // Before the fix it declared both workers dead at once.
    cluster.stop("w1");
    cluster.stop("w2");
    stop_pid(cluster.scheduler.pid());
    std::thread::sleep(Duration::from_secs(6));
    signal_pid(cluster.scheduler.pid(), SIGCONT);
    std::thread::sleep(Duration::from_millis(300));
    cluster.signal("w1", SIGCONT);
    cluster.signal("w2", SIGCONT);
    assert_eq!(cluster.result(&root), Value::from(graph.expected));
    cluster.assert_scheduler_alive();
    let log = cluster.scheduler.log();
    assert!(log.contains("did not run for"), "{}", cluster.logs());
    assert!(!log.contains("declared dead"), "{}", cluster.logs());
    cluster.wait_for_workers(&client, &["w1", "w2"]);
}

#[test]
fn a_scheduler_paused_past_the_heartbeat_timeout_keeps_its_workers() {
    let mut cluster = Cluster::start(&["--heartbeat-timeout", "1"], &["w1", "w2"]);
    let client = cluster.client();
    let graph = TreeReduction::new("paused", 200, 10);
    let root = graph.submit(&client);
    cluster.wait_for_progress(&client, &root, 20);
    // A VM pause or a swap storm: the workers' heartbeats wait unread in
    // the scheduler's sockets for three heartbeat timeouts.
    stop_pid(cluster.scheduler.pid());
    std::thread::sleep(Duration::from_secs(3));
    signal_pid(cluster.scheduler.pid(), SIGCONT);
    assert_eq!(cluster.result(&root), Value::from(graph.expected));
    cluster.assert_scheduler_alive();
    cluster.wait_for_workers(&client, &["w1", "w2"]);
    for name in ["w1", "w2"] {
        assert!(
            cluster.worker(name).exited().is_none(),
            "{name} exited\n{}",
            cluster.logs()
        );
    }
}

#[test]
fn killing_every_worker_and_starting_new_ones_completes_the_graph() {
    let mut cluster = Cluster::start(&[], &["w1", "w2"]);
    let client = cluster.client();
    let graph = TreeReduction::new("all-die", 400, 5);
    let root = graph.submit(&client);
    cluster.wait_for_progress(&client, &root, 200);
    cluster.kill("w1");
    cluster.kill("w2");
    cluster.wait_for_workers(&client, &[]);
    assert!(!root.done(), "nobody left to finish it");
    cluster.add_worker("w3");
    cluster.add_worker("w4");
    assert_eq!(cluster.result(&root), Value::from(graph.expected));
    cluster.assert_scheduler_alive();
}

#[test]
fn a_client_that_disconnects_has_its_keys_released() {
    let mut cluster = Cluster::start(&[], &["w1", "w2"]);
    let observer = cluster.client();

    // A client that vanishes without `close`, some results in memory and
    // some tasks still running.
    let (mut conn, _) = BlockingConn::connect_proving(
        cluster.address(),
        Role::Client,
        Role::Scheduler,
        Some("vanishing".into()),
        PATIENCE,
        Some(&cluster.home.credentials()),
    )
    .expect("raw client connects");
    let mut tasks = Vec::new();
    let mut wanted = Vec::new();
    for i in 0..200 {
        let key = format!("vanish-{i}");
        let ms = if i < 20 { 0 } else { 50 };
        tasks.push(spec(
            &key,
            "conformance.sleep",
            vec![Value::from(ms), Value::from(i)],
        ));
        wanted.push(Key::from(key.as_str()));
    }
    let graph = TreeReduction::new("vanish-tree", 50, 20);
    tasks.extend(graph.tasks.clone());
    wanted.push(graph.root.clone());
    conn.send(&[Message::UpdateGraph(UpdateGraph {
        request: 1,
        tasks,
        wanted,
        ack: None,
    })])
    .expect("update-graph sent");
    let mut finished = 0;
    while finished < 20 {
        match conn.recv().expect("events") {
            Message::KeyFinished(_) => finished += 1,
            Message::ErrorReport(e) => panic!("graph refused: {e:?}"),
            _ => {}
        }
    }
    drop(conn);
    cluster.wait_until_empty(&observer);

    // A client that closes politely, its results still referenced.
    let polite = cluster.client();
    let futures = polite.map(
        "inc",
        (0..50).map(|i| dask_client::args![i]).collect::<Vec<_>>(),
    );
    let values = polite.gather(&futures).expect("gather");
    assert_eq!(values[49], Value::from(50));
    polite.close();
    drop(futures);
    cluster.wait_until_empty(&observer);
    cluster.assert_scheduler_alive();
}

#[test]
fn a_peer_that_dies_during_a_fetch_is_replaced_by_another_replica() {
    peer_fails_during_a_fetch(true, PeerFault::Dies);
}

#[test]
fn a_peer_that_dies_during_a_fetch_with_the_only_copy_has_it_recomputed() {
    peer_fails_during_a_fetch(false, PeerFault::Dies);
}

#[test]
fn a_peer_that_hangs_during_a_fetch_is_replaced_by_another_replica() {
    peer_fails_during_a_fetch(true, PeerFault::Hangs);
}

#[test]
fn a_peer_that_hangs_during_a_fetch_with_the_only_copy_has_it_recomputed() {
    peer_fails_during_a_fetch(false, PeerFault::Hangs);
}

/// What becomes of the worker a fetch waits for.
#[derive(PartialEq)]
enum PeerFault {
    /// SIGKILL: its connections close at once.
    Dies,
    /// SIGSTOP: its connections stay open and silent; only the scheduler's
    /// heartbeat timeout says it is gone.
    Hangs,
}

/// `d` (4 MB) is computed on `a` (alone at first), optionally copied to
/// `c`; then `a` hangs, a task pinned to `b` needs `d` and asks `a` for it
/// (`a` is first in `who_has`), and `a` is killed while the request waits,
/// or left hanging until the scheduler declares it dead. `b` must get `d`
/// from `c`, or `d` must be computed again.
fn peer_fails_during_a_fetch(with_replica: bool, fault: PeerFault) {
    const N: i64 = 4_000_000;
    let mut cluster = Cluster::start(&["--heartbeat-timeout", "3"], &["a"]);
    let client = cluster.client();
    let d = client.submit_tasks(
        vec![spec(
            "d",
            "random_bytes",
            vec![Value::from(N), Value::from(7)],
        )],
        vec![Key::from("d")],
    );
    d[0].wait_timeout(PATIENCE).expect("d computed on a");
    cluster.add_worker("b");
    cluster.add_worker("c");
    cluster.wait_for_workers(&client, &["a", "b", "c"]);
    if with_replica {
        let on_c = client.submit_tasks(
            vec![pinned(spec("len-on-c", "len", vec![r("d")]), "c")],
            vec![Key::from("len-on-c")],
        );
        assert_eq!(cluster.result(&on_c[0]), Value::from(N));
        let holders = client.who_has(&d).expect("who-has");
        assert_eq!(holders[&Key::from("d")].len(), 2, "{holders:?}");
    }
    cluster.stop("a");
    let on_b = client.submit_tasks(
        vec![pinned(spec("len-on-b", "len", vec![r("d")]), "b")],
        vec![Key::from("len-on-b")],
    );
    // Give b time to ask the hung a (if it has not yet when a dies, its
    // connection is refused instead: the same story).
    std::thread::sleep(Duration::from_millis(500));
    assert!(!on_b[0].done(), "a holds d and hangs");
    if fault == PeerFault::Dies {
        cluster.kill("a");
    }
    assert_eq!(cluster.result(&on_b[0]), Value::from(N));
    assert_eq!(
        cluster.result(&d[0]),
        cluster.result(&client.submit("random_bytes", dask_client::args![N, 7])),
        "d is the same value, fetched or computed again"
    );
    if fault == PeerFault::Hangs {
        // Awake, a takes its `close{reconnect: true}` and registers again
        // as a new, empty worker.
        cluster.signal("a", SIGCONT);
        cluster.wait_for_workers(&client, &["a", "b", "c"]);
    } else {
        cluster.wait_for_workers(&client, &["b", "c"]);
    }
    cluster.assert_scheduler_alive();
}

#[test]
fn workers_joining_and_leaving_repeatedly_during_a_long_graph() {
    let mut cluster = Cluster::start(&[], &["w0", "w1"]);
    let client = cluster.client();
    let graph = TreeReduction::new("churn", 2000, 3);
    let root = graph.submit(&client);
    // Every round one worker joins and the oldest leaves, politely
    // (SIGTERM: it says `close`) or not (SIGKILL), alternately.
    for round in 0..10 {
        if root.done() {
            break;
        }
        let name = format!("w{}", round + 2);
        cluster.add_worker(&name);
        cluster.wait_for_registration(&client, &name);
        std::thread::sleep(Duration::from_millis(200));
        let leaving = format!("w{round}");
        if round % 2 == 0 {
            cluster.signal(&leaving, SIGTERM);
        } else {
            cluster.kill(&leaving);
        }
        cluster.wait_for_exit(&leaving);
    }
    assert_eq!(cluster.result(&root), Value::from(graph.expected));
    cluster.assert_scheduler_alive();
}

#[test]
fn a_poison_task_that_kills_its_worker_ends_as_killed_worker() {
    // The default allowed failures (3): the fourth worker lost with the
    // task errs it; the fifth worker is left alive.
    let mut cluster = Cluster::start(&[], &["w1", "w2", "w3", "w4", "w5"]);
    let client = cluster.client();
    let poison = spec(
        "poison",
        "exec",
        vec![
            Value::from("sh"),
            Value::from("-c"),
            Value::from("kill -9 $PPID"),
        ],
    );
    let after = spec("after-poison", "identity", vec![r("poison")]);
    let futures = client.submit_tasks(
        vec![poison, after],
        vec![Key::from("poison"), Key::from("after-poison")],
    );
    for (future, cause) in futures.iter().zip([None, Some("poison")]) {
        match future.result_timeout(PATIENCE) {
            Err(Error::Remote {
                error_type,
                message,
                cause: got_cause,
                ..
            }) => {
                assert_eq!(error_type, "KilledWorker", "{message}");
                assert!(message.contains("poison"), "{message}");
                assert!(message.contains("4 workers"), "{message}");
                assert_eq!(got_cause.as_ref().map(|k| k.as_str()), cause);
            }
            other => panic!("{}: {other:?}\n{}", future.key(), cluster.logs()),
        }
    }
    let alive = cluster.worker_names(&client);
    assert_eq!(alive.len(), 1, "four workers died, one is left: {alive:?}");
    let four_dead = eventually(|| {
        let dead = cluster.workers.iter_mut().filter_map(|(_, p)| p.exited());
        dead.count() == 4
    });
    assert!(
        four_dead,
        "the poison killed its workers\n{}",
        cluster.logs()
    );
    // The survivor still computes.
    let ok = client.submit("inc", dask_client::args![41]);
    assert_eq!(cluster.result(&ok), Value::from(42));
    cluster.assert_scheduler_alive();
}

#[test]
fn scattered_data_lost_with_its_worker_is_reported_lost_not_recomputed() {
    let mut cluster = Cluster::start(&[], &["w1", "w2"]);
    let client = cluster.client();
    let x = client
        .scatter_with(vec![Value::from(5)], Some(vec!["w1".into()]), false)
        .expect("scatter")
        .remove(0);
    // A dependent that cannot run yet (no worker of that name).
    let y = client.submit_tasks(
        vec![pinned(
            spec("y", "inc", vec![r(x.key().as_str())]),
            "nobody",
        )],
        vec![Key::from("y")],
    );
    let waiting = eventually(|| {
        let info = client.cluster_info().expect("cluster-info");
        info.tasks.get("no-worker") == Some(&1)
    });
    assert!(waiting, "y never waited for a worker\n{}", cluster.logs());
    cluster.kill("w1");
    for f in [&x, &y[0]] {
        match f.result_timeout(PATIENCE) {
            Err(Error::Lost { .. }) => {}
            other => panic!("{}: {other:?}", f.key()),
        }
    }
    cluster.wait_until_empty(&client);
    cluster.assert_scheduler_alive();
}

#[test]
fn a_finished_result_lost_with_its_worker_is_recomputed_and_gathered() {
    // dask/1.1: the gather says the key is being computed again (it only
    // listed it missing in 1.0, so the client gave up with Lost), and the
    // client waits for it and asks again.
    let mut cluster = Cluster::start(&[], &["w1", "w2"]);
    let client = cluster.client();
    // A second to compute: the gather comes while it is computed again.
    // Larger than the scheduler's inline bound (dask/1.1 inline results),
    // so the client's result is a gather.
    let value = Value::Binary(vec![42; 5000]);
    let x = client.submit_tasks(
        vec![spec(
            "x",
            "conformance.sleep",
            vec![Value::from(1000), value.clone()],
        )],
        vec![Key::from("x")],
    );
    client.wait_accepted().expect("the graph was acknowledged");
    x[0].wait_timeout(PATIENCE).expect("x finishes");
    let status = client.status(&x).expect("key states");
    assert_eq!(status[&Key::from("x")], "memory");
    let holder = client.who_has(&x).expect("who-has")[&Key::from("x")].clone();
    let holder = client
        .workers()
        .expect("cluster-info")
        .into_iter()
        .find(|w| holder.contains(&w.address))
        .map(|w| w.name)
        .expect("a worker holds x");
    cluster.kill(&holder);
    assert_eq!(cluster.result(&x[0]), value);
    let status = client.status(&x).expect("key states");
    assert_eq!(status[&Key::from("x")], "memory");
    cluster.assert_scheduler_alive();
}

#[test]
fn workers_register_again_with_a_restarted_scheduler() {
    let mut cluster = Cluster::start(&[], &["w1", "w2"]);
    let port = cluster.port();
    cluster.kill_scheduler();
    cluster.restart_scheduler(&["--port", &port.to_string()]);
    let client = cluster.client();
    cluster.wait_for_workers(&client, &["w1", "w2"]);
    let graph = TreeReduction::new("restarted", 100, 0);
    let root = graph.submit(&client);
    assert_eq!(cluster.result(&root), Value::from(graph.expected));
    cluster.assert_scheduler_alive();
}

// ---- graphs ---------------------------------------------------------------

fn r(key: &str) -> Value {
    task_ref_value(key)
}

fn spec(key: &str, function: &str, args: Vec<Value>) -> TaskSpec {
    task_spec(Key::from(key), function, &args, &[])
}

fn pinned(mut spec: TaskSpec, worker: &str) -> TaskSpec {
    spec.workers = Some(vec![worker.into()]);
    spec
}

/// `leaves` tasks `conformance.sleep(ms, i)` summed pairwise with `add`
/// up to one sum, then `inc`: 2 x leaves tasks in all.
struct TreeReduction {
    tasks: Vec<TaskSpec>,
    root: Key,
    expected: i64,
}

impl TreeReduction {
    fn new(prefix: &str, leaves: usize, sleep_ms: u64) -> TreeReduction {
        let mut tasks = Vec::new();
        let mut level: Vec<String> = (0..leaves)
            .map(|i| {
                let key = format!("{prefix}-leaf-{i}");
                tasks.push(spec(
                    &key,
                    "conformance.sleep",
                    vec![Value::from(sleep_ms), Value::from(i)],
                ));
                key
            })
            .collect();
        let mut depth = 0;
        while level.len() > 1 {
            depth += 1;
            let mut next = Vec::new();
            for (j, pair) in level.chunks(2).enumerate() {
                match pair {
                    [a, b] => {
                        let key = format!("{prefix}-sum-{depth}-{j}");
                        tasks.push(spec(&key, "add", vec![r(a), r(b)]));
                        next.push(key);
                    }
                    [a] => next.push(a.clone()),
                    _ => unreachable!("chunks of two"),
                }
            }
            level = next;
        }
        let root = format!("{prefix}-root");
        tasks.push(spec(&root, "inc", vec![r(&level[0])]));
        let n = leaves as i64;
        TreeReduction {
            tasks,
            root: Key::from(root.as_str()),
            expected: n * (n - 1) / 2 + 1,
        }
    }

    fn submit(&self, client: &Client) -> Future {
        client
            .submit_tasks(self.tasks.clone(), vec![self.root.clone()])
            .remove(0)
    }
}

// ---- the cluster of processes ------------------------------------------------

/// Sends `signal` to the process `pid` (one of our children).
fn signal_pid(pid: u32, signal: i32) {
    assert!(send_signal(pid, signal), "kill({pid}, {signal}) failed");
}

/// A `dask-scheduler --validate` and named single-thread `dask-worker`s.
/// Dropping it kills them all.
struct Cluster {
    /// Where the first scheduler creates the credentials that the workers,
    /// the clients and a restarted scheduler find (with no flag).
    home: DaskHome,
    address: String,
    scheduler: Process,
    /// Earlier schedulers (killed).
    dead_schedulers: Vec<Process>,
    workers: Vec<(String, Process)>,
}

impl Cluster {
    /// Starts the scheduler (with `--validate` and `scheduler_args`) on a
    /// free port and the workers, and waits until they are registered.
    fn start(scheduler_args: &[&str], workers: &[&str]) -> Cluster {
        let home = DaskHome::new();
        let scheduler = start_scheduler(&home, &[&["--port", "0"], scheduler_args].concat());
        let mut cluster = Cluster {
            home,
            address: scheduler.1,
            scheduler: scheduler.0,
            dead_schedulers: Vec::new(),
            workers: Vec::new(),
        };
        for name in workers {
            cluster.add_worker(name);
        }
        let client = cluster.client();
        cluster.wait_for_workers(&client, workers);
        cluster
    }

    fn address(&self) -> &str {
        &self.address
    }

    fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("tcp://HOST:PORT")
    }

    fn client(&self) -> Client {
        Client::connect_with(
            &self.address,
            ClientOptions {
                request_timeout: Some(PATIENCE),
                ..self.home.client_options()
            },
        )
        .unwrap_or_else(|e| panic!("client cannot connect: {e}\n{}", self.logs()))
    }

    /// Starts a worker (one thread); does not wait for its registration.
    fn add_worker(&mut self, name: &str) {
        let mut cmd = Command::new(binary("dask-worker"));
        self.home
            .apply(&mut cmd)
            .arg(&self.address)
            // The poison task runs `exec`.
            .args(["--allow-exec", "--nthreads", "1", "--name", name]);
        let process = Process::spawn(&format!("dask-worker {name}"), &mut cmd);
        self.workers.push((name.to_string(), process));
    }

    fn worker(&mut self, name: &str) -> &mut Process {
        self.workers
            .iter_mut()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("no worker {name}"))
    }

    /// SIGSTOP, returning once every thread of the worker is stopped.
    fn stop(&mut self, name: &str) {
        self.worker(name).stop();
    }

    fn signal(&mut self, name: &str, signal: i32) {
        let pid = self.worker(name).pid();
        signal_pid(pid, signal);
    }

    /// SIGKILL, and waits until the process is gone.
    fn kill(&mut self, name: &str) {
        self.signal(name, SIGKILL);
        self.wait_for_exit(name);
    }

    fn wait_for_exit(&mut self, name: &str) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.worker(name).exited() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("worker {name} did not exit\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill_scheduler(&mut self) {
        self.scheduler.kill();
    }

    /// A new scheduler (with `--validate` and `args`) in place of the dead
    /// one.
    fn restart_scheduler(&mut self, args: &[&str]) {
        let (scheduler, address) = start_scheduler(&self.home, args);
        let old = std::mem::replace(&mut self.scheduler, scheduler);
        self.dead_schedulers.push(old);
        self.address = address;
    }

    /// Names of the registered workers, sorted.
    fn worker_names(&self, client: &Client) -> Vec<String> {
        let mut names: Vec<String> = client
            .workers()
            .unwrap_or_else(|e| panic!("cluster-info: {e}\n{}", self.logs()))
            .into_iter()
            .map(|w| w.name)
            .collect();
        names.sort();
        names
    }

    /// Waits until exactly these workers are registered.
    fn wait_for_workers(&self, client: &Client, names: &[&str]) {
        let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        want.sort();
        let ok = eventually(|| self.worker_names(client) == want);
        assert!(ok, "workers are not {want:?}\n{}", self.logs());
    }

    /// Waits until a worker named `name` is registered.
    fn wait_for_registration(&self, client: &Client, name: &str) {
        let ok = eventually(|| self.worker_names(client).iter().any(|n| n == name));
        assert!(ok, "{name} did not register\n{}", self.logs());
    }

    /// Waits until `done` tasks are in memory or released after running
    /// (`root` not finished yet, or the graph was too short for the story).
    fn wait_for_progress(&self, client: &Client, root: &Future, done: u64) {
        let ok = eventually(|| {
            assert!(!root.done(), "the graph ended before the fault");
            let info = client.cluster_info().expect("cluster-info");
            let count = |s: &str| info.tasks.get(s).copied().unwrap_or(0);
            count("memory") + count("released") >= done
        });
        assert!(ok, "no progress to {done} tasks\n{}", self.logs());
    }

    /// Waits until the scheduler knows no task and no worker holds data.
    fn wait_until_empty(&self, client: &Client) {
        let ok = eventually(|| {
            let info = client.cluster_info().expect("cluster-info");
            info.tasks.values().sum::<u64>() == 0 && info.workers.iter().all(|w| w.stored_keys == 0)
        });
        let info = client.cluster_info().expect("cluster-info");
        assert!(ok, "tasks left: {info:?}\n{}", self.logs());
    }

    /// The future's value, within [`PATIENCE`].
    fn result(&self, future: &Future) -> Value {
        future
            .result_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", future.key(), self.logs()))
    }

    /// The scheduler is still running: no invariant check failed.
    fn assert_scheduler_alive(&mut self) {
        if let Some(status) = self.scheduler.exited() {
            panic!("the scheduler exited ({status})\n{}", self.logs());
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for p in self.dead_schedulers.iter().chain([&self.scheduler]) {
            out.push_str(&format!("--- {} ---\n{}", p.label(), p.log()));
        }
        for (_, p) in &self.workers {
            out.push_str(&format!("--- {} ---\n{}", p.label(), p.log()));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, p) in &mut self.workers {
            p.kill();
        }
        self.scheduler.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Starts `dask-scheduler --validate ARGS` in `home` and waits for its
/// address.
fn start_scheduler(home: &DaskHome, args: &[&str]) -> (Process, String) {
    let mut cmd = Command::new(binary("dask-scheduler"));
    home.apply(&mut cmd)
        .args(["--host", "127.0.0.1", "--validate"])
        .args(args);
    let process = Process::spawn("dask-scheduler", &mut cmd);
    let line = process.expect_line("Scheduler at ", PATIENCE);
    let address = line["Scheduler at ".len()..].trim().to_string();
    (process, address)
}

/// Polls `check` every 20 ms until it holds (true) or [`PATIENCE`] ends
/// (false).
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
