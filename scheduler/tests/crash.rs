//! The scheduler survives its own crash, with real processes (issue 16):
//! `dask-scheduler --journal DIR` is killed with SIGKILL in the middle of
//! a tree reduction, started again on the same DIR and port, and the
//! client (which reconnects by itself, naming its session) gets the exact
//! result without submitting again; the two `dask-worker`s register again
//! with what they hold, and the restarted scheduler adopts it rather than
//! computing it again (counted with its `/metrics`). Also: a journal cut
//! at random offsets restarts cleanly, and a journal that is not one, or
//! held by another scheduler, is refused in one line naming the file.
//!
//! Behaviour, not speed: every wait has a deadline.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dask_client::{Client, Key, Value};
use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_testkit::home::{Dashboard, DaskHome};
use dask_testkit::process::{binary, free_port, temp_dir, Process};
use dask_testkit::Rng;

const PATIENCE: Duration = Duration::from_secs(120);
/// Leaves of the big tree: about twice as many tasks in all.
const LEAVES: usize = 50_000;
const THREADS_PER_WORKER: usize = 2;
const WORKERS: usize = 2;

struct Scheduler {
    process: Process,
    address: String,
    dashboard: Dashboard,
}

fn start_scheduler(home: &DaskHome, journal: &Path, port: u16) -> Scheduler {
    let port = port.to_string();
    let journal = journal.to_str().expect("a UTF-8 journal path");
    let args = ["--host", "127.0.0.1", "--port", &port, "--journal", journal];
    let (process, address, dashboard) = home.start_scheduler_with_dashboard(&args, PATIENCE);
    Scheduler {
        process,
        address,
        dashboard,
    }
}

/// Tasks the scheduler saw finish on a worker (`/metrics`, summed over
/// the task groups): the runs it counted.
fn finished_total(s: &Scheduler) -> u64 {
    s.dashboard
        .get("/metrics")
        .lines()
        .filter(|l| l.starts_with("dask_scheduler_tasks_finished_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn start_worker(home: &DaskHome, address: &str, i: usize) -> Process {
    let mut cmd = Command::new(binary("dask-worker"));
    home.apply(&mut cmd).args([
        address,
        "--nthreads",
        &THREADS_PER_WORKER.to_string(),
        "--name",
        &format!("w{i}"),
        "--reconnect-timeout",
        "60",
    ]);
    Process::spawn(&format!("dask-worker w{i}"), &mut cmd)
}

/// A tree reduction over `leaves` leaves, its root `{prefix}sum`.
fn tree(prefix: &str, leaves: usize) -> Vec<TaskSpec> {
    dask_testkit::graphs::tree_reduction(prefix, leaves)
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_scheduler_killed_mid_tree_restarts_on_its_journal_and_the_client_gets_the_exact_result() {
    let home = DaskHome::new();
    let journal = temp_dir("mid-tree");
    let port = free_port();
    let mut scheduler = start_scheduler(&home, &journal, port);
    let address = scheduler.address.clone();
    let mut workers: Vec<Process> = (0..WORKERS)
        .map(|i| start_worker(&home, &address, i))
        .collect();
    let client = Client::connect_with(&address, home.client_options()).expect("client");
    wait_for("the workers", || {
        client.workers().map(|w| w.len()).unwrap_or(0) == WORKERS
    });
    let mut tasks = tree("", LEAVES);
    // The second half of the leaves runs only on a worker that starts
    // after the restart: the crash comes mid-tree however fast the tree
    // runs (its first parts run while the last ones are sent, so it was
    // often done before the workers were paused).
    for leaf in &mut tasks[LEAVES / 2..LEAVES] {
        leaf.workers = Some(vec![format!("w{WORKERS}")]);
    }
    let n = tasks.len() as u64;
    let futures = client.submit_tasks(tasks, vec![Key::from("sum")]);
    // Acknowledged: from now on the graph survives a crash.
    client.wait_accepted().expect("the graph accepted");
    wait_for("a third of the tree", || {
        finished_total(&scheduler) >= n / 3
    });

    // Workers paused, so the count is exact when the scheduler dies.
    for w in &mut workers {
        w.stop();
    }
    std::thread::sleep(Duration::from_millis(1200));
    let before = finished_total(&scheduler);
    scheduler.process.kill();
    for w in &mut workers {
        w.signal(18); // SIGCONT
    }
    let scheduler = start_scheduler(&home, &journal, port);
    assert_eq!(scheduler.address, address);
    workers.push(start_worker(&home, &address, WORKERS));

    let sum = futures[0]
        .result_timeout(PATIENCE)
        .expect("the root after the restart");
    assert_eq!(sum.as_u64(), Some((LEAVES * (LEAVES + 1) / 2) as u64));
    std::thread::sleep(Duration::from_millis(1200));
    let after = finished_total(&scheduler);
    eprintln!("{n} tasks: {before} ran before the crash, {after} after the restart");
    assert!(before > 0 && after > 0);
    // Runs cut short by the crash run again; held results do not.
    let slack = (WORKERS * THREADS_PER_WORKER) as u64;
    assert!(
        before + after <= n + slack,
        "{} runs for {n} tasks: held results were computed again",
        before + after
    );
    for w in &mut workers {
        w.assert_alive("the restart");
    }
    client.close();
    let _ = std::fs::remove_dir_all(&journal);
}

#[test]
fn crashes_at_random_moments_restart_cleanly() {
    let home = DaskHome::new();
    let journal = temp_dir("random");
    let port = free_port();
    let mut scheduler = start_scheduler(&home, &journal, port);
    let address = scheduler.address.clone();
    let _workers: Vec<Process> = (0..WORKERS)
        .map(|i| start_worker(&home, &address, i))
        .collect();
    let client = Client::connect_with(&address, home.client_options()).expect("client");
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut expected = Vec::new();
    for round in 0..3 {
        let leaves = 500 + rng.below(1500);
        let prefix = format!("r{round}-");
        let futures = client.submit_tasks(
            tree(&prefix, leaves),
            vec![Key::from(format!("{prefix}sum"))],
        );
        client.wait_accepted().expect("accepted");
        expected.push((futures, (leaves * (leaves + 1) / 2) as u64));
        std::thread::sleep(Duration::from_millis(rng.below(300) as u64));
        scheduler.process.kill();
        scheduler = start_scheduler(&home, &journal, port);
    }
    for (round, (futures, value)) in expected.iter().enumerate() {
        let got = futures[0].result_timeout(PATIENCE).unwrap_or_else(|e| {
            panic!(
                "round {round}: {e}; status {:?}; scheduler log:\n{}",
                client.status(futures),
                scheduler.process.log()
            )
        });
        assert_eq!(got.as_u64(), Some(*value));
    }
    client.close();
    let _ = std::fs::remove_dir_all(&journal);
}

#[test]
fn a_graph_on_scattered_data_survives_a_crash_and_the_data_is_not_sent_again() {
    let home = DaskHome::new();
    let journal = temp_dir("scatter");
    let port = free_port();
    let mut scheduler = start_scheduler(&home, &journal, port);
    let address = scheduler.address.clone();
    let _worker = start_worker(&home, &address, 0);
    let client = Client::connect_with(&address, home.client_options()).expect("client");
    wait_for("the worker", || {
        client.workers().map(|w| w.len()).unwrap_or(0) == 1
    });
    let data = client.scatter(vec![Value::from(41)]).expect("scattered");
    let d = data[0].key().as_str().to_owned();
    // A graph on it that is still running when the scheduler dies.
    let tasks = vec![
        task_spec(
            Key::from("slow"),
            "sleep",
            &[Value::from(1.0), dask_core::msgpack::task_ref_value(&d)],
            &[],
        ),
        task_spec(
            Key::from("plus-one"),
            "inc",
            &[dask_core::msgpack::task_ref_value("slow")],
            &[],
        ),
    ];
    let futures = client.submit_tasks(tasks, vec![Key::from("plus-one")]);
    client.wait_accepted().expect("the graph accepted");
    scheduler.process.kill();
    let scheduler = start_scheduler(&home, &journal, port);

    // The worker kept the data and lists it; the client resubmits nothing.
    let got = futures[0]
        .result_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("{e}; scheduler log:\n{}", scheduler.process.log()));
    assert_eq!(got.as_u64(), Some(42));
    let again = client
        .gather(&data)
        .expect("the scattered data, after the restart");
    assert_eq!(again, [Value::from(41)]);
    client.close();
    let _ = std::fs::remove_dir_all(&journal);
}

#[test]
fn a_journal_cut_at_random_offsets_restarts_cleanly() {
    let home = DaskHome::new();
    let journal = temp_dir("torn");
    let port = free_port();
    let mut scheduler = start_scheduler(&home, &journal, port);
    let address = scheduler.address.clone();
    let client = Client::connect_with(&address, home.client_options()).expect("client");
    // Graphs nobody can run (no worker): they stay in the journal.
    for g in 0..20 {
        let tasks = vec![task_spec(
            Key::from(format!("g{g}")),
            "inc",
            &[Value::from(g)],
            &[],
        )];
        drop(client.submit_tasks(tasks, vec![Key::from(format!("g{g}"))]));
    }
    client.wait_accepted().expect("accepted");
    client.close();
    scheduler.process.kill();
    let file = journal.join("journal");
    let whole = std::fs::read(&file).expect("the journal");
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    for _ in 0..4 {
        let cut = 1 + rng.below(whole.len() - 1);
        std::fs::write(&file, &whole[..cut]).expect("a cut journal");
        let mut s = start_scheduler(&home, &journal, port);
        s.process.assert_alive("a restart on a cut journal");
        s.process.kill();
    }
    let _ = std::fs::remove_dir_all(&journal);
}

#[test]
fn a_journal_that_is_not_one_or_is_held_is_refused_naming_the_file() {
    let home = DaskHome::new();
    let journal = temp_dir("refused");
    let port = free_port();
    let _held = start_scheduler(&home, &journal, port);
    let run = |dir: &Path| {
        let mut cmd = Command::new(binary("dask-scheduler"));
        home.apply(&mut cmd)
            .args(["--port", "0", "--no-dashboard", "--journal"])
            .arg(dir);
        cmd.output().expect("dask-scheduler runs")
    };
    let out = run(&journal);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(journal.to_str().unwrap()) && err.contains("another running scheduler"),
        "{err}"
    );
    let junk = temp_dir("junk");
    std::fs::write(
        junk.join("journal"),
        b"PK\x03\x04 random bytes, not a journal",
    )
    .unwrap();
    let out = run(&junk);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = err
        .lines()
        .find(|l| l.contains("not a dask-rs journal"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(junk.join("journal").to_str().unwrap()),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&journal);
    let _ = std::fs::remove_dir_all(&junk);
}
