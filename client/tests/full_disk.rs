//! A full spill disk (issue 20, item 2), with real processes: a
//! `dask-scheduler`, a `dask-worker` with a 4 MB memory limit whose
//! spill directory is on a 2 MiB tmpfs, and a client over TCP on
//! 127.0.0.1. Twelve values of 1 MB: two fit on the disk, four in memory
//! under the pause; then the worker cannot spill and pauses for good.
//! With another worker (it joins once the first is stuck) the graph
//! finishes there; alone, the client gets `SpillFailed` naming the worker
//! and the disk's error, never silence.
//!
//! The tmpfs needs root (`mount`); without it the worker's spill
//! directory is made read-only once the worker has made it, which fails
//! its writes the same way (with "Permission denied"). Which one ran is
//! printed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dask_client::{args, Future, Value};
use support::{eventually, Cluster, PATIENCE};

/// Bytes of each value, and how many there are.
const BLOB_BYTES: u64 = 1_000_000;
const BLOBS: u64 = 12;

/// A small filesystem for a worker's spill directory, gone when dropped.
struct SmallDisk {
    path: PathBuf,
    /// A tmpfs is mounted at `path`; otherwise the worker's directory
    /// under it is made read-only ([`SmallDisk::fill`]).
    mounted: bool,
}

impl SmallDisk {
    /// A 2 MiB tmpfs if this process may mount one, else a plain directory.
    fn new(name: &str) -> SmallDisk {
        let path =
            std::env::temp_dir().join(format!("dask-full-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("the disk's directory");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        eprintln!(
            "spill disk: {}",
            if mounted {
                "a 2 MiB tmpfs (writes fail with ENOSPC once it is full)"
            } else {
                "a read-only directory (mount is not permitted here)"
            }
        );
        SmallDisk { path, mounted }
    }

    /// The error the worker's writes will meet.
    fn error(&self) -> &'static str {
        if self.mounted {
            "No space left on device"
        } else {
            "Permission denied"
        }
    }

    /// Without a tmpfs: once the worker has made its directory here, it
    /// is made read-only so every spill write fails.
    fn fill(&self) {
        if self.mounted {
            return;
        }
        assert!(
            eventually(|| std::fs::read_dir(&self.path).is_ok_and(|d| d.count() > 0)),
            "the worker made no directory in {}",
            self.path.display()
        );
        for entry in std::fs::read_dir(&self.path).unwrap().flatten() {
            set_mode(&entry.path(), 0o500);
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        } else if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                set_mode(&entry.path(), 0o700);
            }
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The worker with the small disk: 4 MB limit (spill past 2.4 MB, pause
/// past 3.2 MB), logging JSON lines.
fn add_full_disk_worker(cluster: &mut Cluster, disk: &SmallDisk) {
    cluster.add_worker_with(
        "full-disk",
        &[
            "--memory-limit".as_ref(),
            "4MB".as_ref(),
            "--local-directory".as_ref(),
            disk.path.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ],
    );
    cluster.wait_for_workers(&["full-disk"]);
    disk.fill();
}

fn expected_blob(seed: u64) -> Vec<u8> {
    match dask_worker::builtins::random_bytes(&[Value::from(BLOB_BYTES), Value::from(seed)], &[]) {
        Ok(Value::Binary(bytes)) => bytes,
        other => panic!("{other:?}"),
    }
}

fn blobs(client: &dask_client::Client) -> Vec<Future> {
    client.map(
        "random_bytes",
        (0..BLOBS).map(|seed| args![BLOB_BYTES, seed]),
    )
}

#[test]
fn a_full_spill_disk_sends_the_graph_to_the_other_worker() {
    let disk = SmallDisk::new("other");
    // Long enough that nothing errs while the other worker starts.
    let mut cluster = Cluster::start_with(&["--spill-failed-timeout", "300"], &[]);
    add_full_disk_worker(&mut cluster, &disk);
    let client = cluster.client();
    let futures = blobs(&client);
    // Alone, it fills its disk and pauses: what it has not started comes
    // back, and nothing more goes to it.
    assert!(
        eventually(|| cluster
            .scheduler_log()
            .contains("is paused and cannot spill: ")),
        "{}",
        cluster.logs()
    );
    cluster.add_worker("roomy");
    for (seed, future) in futures.iter().enumerate() {
        let value = future
            .result_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("blob {seed}: {e}\n{}", cluster.logs()));
        assert_eq!(
            value,
            Value::Binary(expected_blob(seed as u64)),
            "blob {seed}"
        );
    }
    // The worker said why it stopped (one JSON line each), and the
    // scheduler heard it.
    let worker = cluster.worker_log("full-disk");
    let line = |event: &str| {
        let tag = format!("\"event\":\"{event}\"");
        let found: Vec<&str> = worker.lines().filter(|l| l.contains(&tag)).collect();
        assert_eq!(found.len(), 1, "one {event} line:\n{worker}");
        found[0].to_owned()
    };
    assert!(line("spilling-began").contains("\"level\":\"info\""));
    let failing = line("spill-failing");
    assert!(
        failing.contains("\"level\":\"error\"") && failing.contains(disk.error()),
        "{failing}"
    );
    let paused = line("paused");
    assert!(
        paused.starts_with('{') && paused.contains("\"component\":\"dask-worker\""),
        "{paused}"
    );
    let scheduler = cluster.scheduler_log();
    assert!(
        scheduler.contains("worker full-disk (") && scheduler.contains(") paused: "),
        "{scheduler}"
    );
    assert!(
        scheduler.contains("is paused and cannot spill: "),
        "{scheduler}"
    );
    client.close();
}

#[test]
fn a_full_spill_disk_with_no_other_worker_errs_naming_the_cause() {
    let disk = SmallDisk::new("alone");
    let mut cluster = Cluster::start_with(&["--spill-failed-timeout", "2"], &[]);
    add_full_disk_worker(&mut cluster, &disk);
    let client = cluster.client();
    let futures = blobs(&client);
    // Told why while it waits, then an error with the cause: never silence.
    let mut told: Option<String> = None;
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline && !futures.iter().all(Future::done) {
        if told.is_none() {
            told = futures
                .iter()
                .filter_map(Future::waiting)
                .find(|w| w.reason == "spill-failed")
                .map(|w| w.message);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let told = told.expect("a key-waiting with reason spill-failed");
    assert!(
        told.contains("worker full-disk") && told.contains(disk.error()),
        "{told}"
    );
    let mut finished = 0;
    let mut erred = 0;
    for (seed, future) in futures.iter().enumerate() {
        match future.result_timeout(PATIENCE) {
            Ok(value) => {
                assert_eq!(
                    value,
                    Value::Binary(expected_blob(seed as u64)),
                    "blob {seed}"
                );
                finished += 1;
            }
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("SpillFailed: ")
                        && e.contains("worker full-disk (tcp://127.0.0.1:")
                        && e.contains(disk.error()),
                    "blob {seed}: {e}"
                );
                erred += 1;
            }
        }
    }
    assert!(
        finished > 0 && erred > 0,
        "{finished} finished, {erred} erred"
    );
    let scheduler = cluster.scheduler_log();
    assert!(
        scheduler.contains("tasks erred with SpillFailed"),
        "{scheduler}"
    );
    client.close();
}
