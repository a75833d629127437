//! The Rust client across a scheduler restart (issue 16), with real
//! processes: `dask-scheduler --journal DIR` killed with SIGKILL and
//! started again on the same port and journal. A gather the crash cut
//! (it waited on a stopped worker) is sent again once the session is
//! resumed, and answers; a graph sent in parts that the killed scheduler
//! never read is sent again and completed, its root exact.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dask_client::{args, Client, ClientOptions, Key, Status};
use dask_testkit::home::DaskHome;
use dask_testkit::process::{binary, free_port, temp_dir, Process, SIGCONT};

const PATIENCE: Duration = Duration::from_secs(120);

fn worker(home: &DaskHome, address: &str) -> Process {
    let mut cmd = Command::new(binary("dask-worker"));
    home.apply(&mut cmd)
        .args([address, "--nthreads", "2", "--name", "w1"])
        .args(["--reconnect-timeout", "60"]);
    let worker = Process::spawn("dask-worker", &mut cmd);
    worker.expect_line("Worker w1 at ", PATIENCE);
    worker
}

fn scheduler(home: &DaskHome, journal: &Path, port: u16) -> Process {
    let port = port.to_string();
    let journal = journal.to_str().expect("a UTF-8 journal path");
    let args = ["--host", "127.0.0.1", "--port", &port, "--journal", journal];
    home.start_scheduler_with_dashboard(&args, PATIENCE).0
}

#[test]
fn a_gather_cut_by_a_scheduler_restart_is_sent_again_and_answers() {
    let home = DaskHome::new();
    let journal = temp_dir("client-resume-gather");
    let port = free_port();
    let mut s = scheduler(&home, &journal, port);
    let address = format!("tcp://127.0.0.1:{port}");
    let mut worker = worker(&home, &address);
    let client = Client::connect_with(&address, home.client_options()).expect("a client");
    // Over the inline bound (4 KiB): its result is fetched from the worker.
    let big = client.submit("sleep", args![0, "x".repeat(100_000)]);
    big.wait().expect("finished");
    assert_eq!(big.status(), Status::Finished);
    // The gather waits on the stopped worker; the scheduler dies meanwhile.
    worker.stop();
    let fetch = std::thread::spawn(move || big.result());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !fetch.is_finished(),
        "the gather waits on the stopped worker"
    );
    s.kill();
    s = scheduler(&home, &journal, port);
    worker.signal(SIGCONT);
    let deadline = Instant::now() + PATIENCE;
    while !fetch.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let value = fetch
        .join()
        .expect("the fetching thread")
        .unwrap_or_else(|e| panic!("{e}; scheduler log:\n{}", s.log()));
    assert_eq!(value.as_str().map(str::len), Some(100_000));
    client.close();
    let _ = std::fs::remove_dir_all(&journal);
}

#[test]
fn a_graph_sent_in_parts_that_a_killed_scheduler_never_read_is_completed_after_the_restart() {
    const LEAVES: usize = 2_000;
    let home = DaskHome::new();
    let journal = temp_dir("client-resume-parts");
    let port = free_port();
    let mut s = scheduler(&home, &journal, port);
    let address = format!("tcp://127.0.0.1:{port}");
    let _worker = worker(&home, &address);
    let options = ClientOptions {
        // About 60 parts for the 4,000 tasks.
        submit_part_bytes: 4_000,
        ..home.client_options()
    };
    let client = Client::connect_with(&address, options).expect("a client");
    let tasks = dask_testkit::graphs::tree_reduction("", LEAVES);
    // Stopped, then killed, before it reads any part: nothing of the graph
    // (nor of the session) reaches its journal; every part goes again, to
    // a new session. (Cuts in the middle of the parts: the sim story in
    // scheduler/tests/restart.rs.)
    s.stop();
    let futures = client.submit_tasks(tasks, vec![Key::from("sum")]);
    std::thread::sleep(Duration::from_millis(200));
    s.kill();
    s = scheduler(&home, &journal, port);
    let sum = futures[0]
        .result_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("{e}; scheduler log:\n{}", s.log()));
    assert_eq!(sum.as_u64(), Some((LEAVES * (LEAVES + 1) / 2) as u64));
    client.close();
    let _ = std::fs::remove_dir_all(&journal);
}
