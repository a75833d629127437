//! Worker memory end to end (issue 7, item 5): a `dask-worker` process with
//! an 8 MB memory limit, a scheduler in this process and a client over TCP
//! on 127.0.0.1. The graph's intermediates total 40 MB, five times the
//! limit: the worker spills them to files in its local directory, reads
//! them back for the tasks that need them, and the results are exact. The
//! files go when the keys are released, and the worker's directory when it
//! exits.
//!
//! Waits are bounded by [`PATIENCE`]; nothing asserts on speed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dask_client::{args, delayed, Arg, Client, Delayed, Future, Value};
use dask_scheduler::{SchedulerConfig, SchedulerHandle};
use dask_testkit::home::DaskHome;

/// Generous: tests must not fail on a slow machine.
const PATIENCE: Duration = Duration::from_secs(120);

/// Bytes of each intermediate (`random_bytes`), and how many there are.
const BLOB_BYTES: u64 = 1_000_000;
const BLOBS: u64 = 40;

/// The worker's limit: target 4.8 MB, pause 6.4 MB (the defaults).
const MEMORY_LIMIT: &str = "8MB";

/// Stops the worker process (by its id) on the way out, pass or fail.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn scratch_directory() -> PathBuf {
    std::env::temp_dir().join(format!("dask-spill-e2e-{}", std::process::id()))
}

/// Regular files anywhere under `dir`.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => files_under(&entry.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// What `random_bytes(BLOB_BYTES, seed)` gives, computed here.
fn expected_blob(seed: u64) -> Vec<u8> {
    match dask_worker::builtins::random_bytes(&[Value::from(BLOB_BYTES), Value::from(seed)], &[]) {
        Ok(Value::Binary(bytes)) => bytes,
        other => panic!("{other:?}"),
    }
}

#[cfg(unix)]
fn terminate(child: &Child) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: signals the child this test started, by its id.
    assert_eq!(unsafe { kill(child.id() as i32, 15) }, 0);
}

#[cfg(unix)]
#[test]
fn a_graph_five_times_the_memory_limit_completes_by_spilling() {
    let local = scratch_directory();
    let _ = std::fs::remove_dir_all(&local);
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        validate: true,
        ..SchedulerConfig::default()
    })
    .expect("scheduler starts");
    // An open scheduler, and a worker that finds no credentials.
    let mut worker = Worker(
        DaskHome::apply_none(&mut Command::new(env!("CARGO_BIN_EXE_dask-worker")))
            .arg(scheduler.address())
            .args(["--nthreads", "2", "--name", "spiller"])
            .args(["--memory-limit", MEMORY_LIMIT])
            .arg("--local-directory")
            .arg(&local)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn dask-worker"),
    );
    let mut line = String::new();
    BufReader::new(worker.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the startup line");
    assert!(line.starts_with("Worker spiller at "), "{line:?}");
    let client = Client::connect_timeout(&scheduler.address(), PATIENCE).expect("client");

    // 40 MB of intermediates, all kept by the client: most must be on disk.
    let blobs: Vec<Future> = client.map(
        "random_bytes",
        (0..BLOBS).map(|seed| args![BLOB_BYTES, seed]),
    );
    for blob in &blobs {
        blob.wait_timeout(PATIENCE).expect("blob computed");
    }
    let spilled = files_under(&local);
    // Past the 4.8 MB target at most four 1 MB values stay in memory.
    assert!(
        spilled as u64 >= BLOBS - 4,
        "{spilled} spill files for {BLOBS} values of 1 MB"
    );
    let info = client.cluster_info().unwrap();
    let stored: u64 = info.workers.iter().map(|w| w.stored_bytes).sum();
    assert!(
        stored >= BLOBS * BLOB_BYTES,
        "spilled values are still held: {info:?}"
    );

    // Reductions over all of them, each value read back from disk.
    let futures_arg = |f: &[Future]| Arg::List(f.iter().cloned().map(Arg::Future).collect());
    let lengths: Vec<Delayed> = blobs
        .iter()
        .map(|b| delayed("len", vec![Arg::Future(b.clone())]))
        .collect();
    let total = delayed(
        "sum",
        vec![Arg::List(lengths.into_iter().map(Arg::Delayed).collect())],
    );
    // One task holding all 40 MB at once: the worker pauses while it runs.
    let joined = delayed("concat", vec![futures_arg(&blobs)]);
    let joined_len = delayed("len", vec![Arg::Delayed(joined)]);
    // A byte from the middle of each value, summed.
    let probes: Vec<Delayed> = blobs
        .iter()
        .map(|b| delayed("getitem", args![b, 123_457]))
        .collect();
    let probe_sum = delayed(
        "sum",
        vec![Arg::List(probes.into_iter().map(Arg::Delayed).collect())],
    );
    let results = client.compute_all(&[total, joined_len, probe_sum]);
    let values: Vec<Value> = results
        .iter()
        .map(|f| f.result_timeout(PATIENCE).expect("reduction"))
        .collect();
    let expected: Vec<Vec<u8>> = (0..BLOBS).map(expected_blob).collect();
    let expected_probe: u64 = expected.iter().map(|b| u64::from(b[123_457])).sum();
    assert_eq!(
        values,
        vec![
            Value::from(BLOBS * BLOB_BYTES),
            Value::from(BLOBS * BLOB_BYTES),
            Value::from(expected_probe)
        ]
    );
    // Every byte of a few values, read back from disk for a gather.
    for seed in [0, 17, BLOBS - 1] {
        let got = blobs[seed as usize]
            .result_timeout(PATIENCE)
            .expect("gather");
        assert_eq!(
            got,
            Value::Binary(expected[seed as usize].clone()),
            "blob {seed}"
        );
    }
    assert!(files_under(&local) > 0, "still spilled while held");

    // Released: the worker frees them, spill files included.
    drop(results);
    drop(blobs);
    assert!(
        eventually(|| files_under(&local) == 0),
        "{} spill files left after the release",
        files_under(&local)
    );
    assert!(
        std::fs::read_dir(&local).unwrap().count() == 1,
        "the worker's own directory is there while it runs"
    );

    // The worker exits politely and takes its directory with it.
    terminate(&worker.0);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = worker.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "dask-worker did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert_eq!(
        std::fs::read_dir(&local).unwrap().count(),
        0,
        "the worker's directory is removed when it exits"
    );
    client.close();
    scheduler.stop();
    std::fs::remove_dir_all(&local).unwrap();
}
