//! A cluster of real processes for end-to-end tests: the `dask-scheduler`
//! binary and `dask-worker` binaries on 127.0.0.1, stopped when the fixture
//! drops.
//!
//! The binaries belong to other packages, so Cargo gives this test no
//! `CARGO_BIN_EXE_*` for them: they are looked up in the profile directory
//! of the test executable (`target/<profile>/`, the test itself being in
//! `target/<profile>/deps/`) after running `cargo build -p dask-scheduler
//! -p dask-worker` once per test process with the same profile and target
//! directory, so they are never stale. Under `cargo nextest` (one process
//! per test) that build runs once per test; a no-op build takes well under
//! a second. `DASK_BIN_DIR=DIR` skips the build and uses the binaries in
//! DIR.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dask_client::{Client, ClientOptions};

/// Generous limit for any single wait: tests never depend on speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How long a child gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// Most bytes of a child's output kept for the failure report.
const LOG_BYTES_MAX: usize = 64 * 1024;

/// The directory holding `dask-scheduler` and `dask-worker`, built once per
/// test process.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("DASK_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let layout = Layout::of_test_executable();
        layout.build(&["dask-scheduler", "dask-worker"]);
        layout.profile_dir
    })
}

/// Where this test executable was built, and so where Cargo puts the
/// binaries of the same build.
struct Layout {
    /// `<target-dir>[/<triple>]/<profile-dir>`.
    profile_dir: PathBuf,
    target_dir: PathBuf,
    /// Set when the build was for an explicit `--target`.
    triple: Option<String>,
}

impl Layout {
    fn of_test_executable() -> Layout {
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/<profile>/deps/<test>-<hash>; otherwise take the test's
        // own directory for the profile directory.
        let dir = exe.parent().expect("the test executable's directory");
        let profile_dir = match dir.file_name() {
            Some(n) if n == "deps" => dir.parent().expect("deps/ has a parent").to_path_buf(),
            _ => dir.to_path_buf(),
        };
        let parent = profile_dir
            .parent()
            .expect("the profile directory has a parent")
            .to_path_buf();
        // Cargo marks the root of a target directory with CACHEDIR.TAG; a
        // directory in between is the target triple of a `--target` build.
        let is_root = |d: &Path| d.join("CACHEDIR.TAG").exists();
        let (target_dir, triple) = match parent.parent() {
            Some(grand) if !is_root(&parent) && is_root(grand) => (
                grand.to_path_buf(),
                parent.file_name().map(|n| n.to_string_lossy().into_owned()),
            ),
            _ => (parent, None),
        };
        Layout {
            profile_dir,
            target_dir,
            triple,
        }
    }

    /// `cargo build -p ...` for `packages` with this layout's profile.
    fn build(&self, packages: &[&str]) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--target-dir")
            .arg(&self.target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
        for p in packages {
            cmd.args(["-p", p]);
        }
        match self.profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => {}
        }
        if let Some(triple) = &self.triple {
            cmd.args(["--target", triple]);
        }
        let out = cmd.output().expect("cargo runs");
        let missing: Vec<&&str> = packages
            .iter()
            .filter(|p| !self.profile_dir.join(exe_name(p)).exists())
            .collect();
        assert!(
            out.status.success() || missing.is_empty(),
            "{cmd:?} failed and {missing:?} are not built:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            eprintln!(
                "warning: {cmd:?} failed, using the binaries already in {}:\n{}",
                self.profile_dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn exe_name(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// The path of one of the workspace's binaries.
pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(exe_name(name))
}

/// A child process with its output kept for the failure report.
pub struct Proc {
    pub label: String,
    pub child: Child,
    log: Arc<Mutex<String>>,
    exit: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr read by threads into the log;
    /// the first stdout line starting with `watch` (if any) is sent on the
    /// returned channel.
    pub fn spawn(
        label: &str,
        mut cmd: Command,
        watch: Option<&str>,
    ) -> (Proc, mpsc::Receiver<String>) {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd:?}): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let watch = watch.map(str::to_owned);
        let out_log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            read_lines(stdout, &out_log, |line| {
                if let (Some(prefix), Some(_)) = (&watch, &tx) {
                    if line.starts_with(prefix.as_str()) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(line.to_owned());
                        }
                    }
                }
            });
        });
        let err_log = Arc::clone(&log);
        std::thread::spawn(move || read_lines(stderr, &err_log, |_| {}));
        (
            Proc {
                label: label.to_owned(),
                child,
                log,
                exit: None,
            },
            rx,
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// SIGKILL unless it has exited, then reaps it.
    pub fn kill_and_reap(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }
}

/// Reads `from` line by line until it closes, keeping the lines in `log`.
fn read_lines(from: impl Read, log: &Mutex<String>, mut on_line: impl FnMut(&str)) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        on_line(&line);
        append(log, &line);
    }
}

fn append(log: &Mutex<String>, line: &str) {
    if let Ok(mut log) = log.lock() {
        if log.len() + line.len() < LOG_BYTES_MAX {
            log.push_str(line);
            log.push('\n');
        }
    }
}

/// On Linux the child gets SIGKILL when the thread that started it ends,
/// so even a test process killed outright (a harness timeout) leaves no
/// scheduler or worker behind. Fixtures are made and dropped on the test's
/// own thread, which outlives them.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: i32, ...) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: runs in the forked child before exec; prctl is a plain
    // system call (async-signal-safe) and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Asks a process to stop (SIGTERM), as an operator would.
#[cfg(unix)]
fn terminate(pid: u32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGTERM: i32 = 15;
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        unsafe {
            kill(pid, SIGTERM);
        }
    }
}

#[cfg(not(unix))]
fn terminate(_pid: u32) {}

/// One `dask-scheduler` and named `dask-worker`s (one thread each), all
/// real processes on 127.0.0.1. Dropping it stops them all: SIGTERM, then
/// SIGKILL for any still running after a grace period.
pub struct Cluster {
    address: String,
    scheduler: Proc,
    workers: Vec<(String, Proc)>,
}

impl Cluster {
    /// Starts a scheduler on a free port and one worker per name, and waits
    /// until every worker has registered.
    pub fn start(worker_names: &[&str]) -> Cluster {
        let mut cmd = Command::new(binary("dask-scheduler"));
        cmd.args(["--host", "127.0.0.1", "--port", "0"]);
        let (scheduler, first_line) = Proc::spawn("dask-scheduler", cmd, Some("Scheduler at "));
        let mut cluster = Cluster {
            address: String::new(),
            scheduler,
            workers: Vec::new(),
        };
        let line = match first_line.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => panic!(
                "the scheduler did not print its address:\n{}",
                cluster.scheduler.log()
            ),
        };
        cluster.address = line["Scheduler at ".len()..].trim().to_owned();
        for name in worker_names {
            cluster.add_worker(name);
        }
        cluster.wait_for_workers(worker_names);
        cluster
    }

    /// Starts one more `dask-worker` (does not wait for it to register).
    pub fn add_worker(&mut self, name: &str) {
        let mut cmd = Command::new(binary("dask-worker"));
        cmd.arg(&self.address)
            .args(["--nthreads", "1", "--name", name]);
        let (proc, _) = Proc::spawn(&format!("dask-worker {name}"), cmd, None);
        self.workers.push((name.to_owned(), proc));
    }

    /// The scheduler's address, `tcp://127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A new client of this cluster; requests give up after [`PATIENCE`].
    pub fn client(&self) -> Client {
        Client::connect_with(
            &self.address,
            ClientOptions {
                request_timeout: Some(PATIENCE),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("client cannot connect to {}: {e}", self.address))
    }

    /// The scheduler's process id.
    pub fn scheduler_pid(&self) -> u32 {
        self.scheduler.pid()
    }

    /// The process id of the worker named `name`.
    pub fn worker_pid(&self, name: &str) -> u32 {
        self.workers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.pid())
            .unwrap_or_else(|| panic!("no worker named {name}"))
    }

    /// Waits until a worker of each name is connected to the scheduler.
    pub fn wait_for_workers(&self, names: &[&str]) {
        let client = self.client();
        let ok = eventually(|| {
            let workers = client.workers().expect("cluster-info");
            names.iter().all(|n| workers.iter().any(|w| w.name == *n))
        });
        assert!(ok, "workers {names:?} did not register:\n{}", self.logs());
    }

    /// Everything the processes printed, for failure reports.
    pub fn logs(&self) -> String {
        let mut out = format!("--- {} ---\n{}", self.scheduler.label, self.scheduler.log());
        for (_, w) in &self.workers {
            out.push_str(&format!("--- {} ---\n{}", w.label, w.log()));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut procs: Vec<&mut Proc> = self.workers.iter_mut().map(|(_, p)| p).collect();
        procs.push(&mut self.scheduler);
        for p in &procs {
            terminate(p.pid());
        }
        let deadline = Instant::now() + TERM_GRACE;
        for p in &mut procs {
            while Instant::now() < deadline && matches!(p.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(p.child.try_wait(), Ok(None)) {
                eprintln!("{} did not stop on SIGTERM: killing it", p.label);
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("cluster logs:\n{}", self.logs());
        }
    }
}

/// Polls `check` every 10 ms until it is true (true) or [`PATIENCE`] runs
/// out (false).
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Bytes received so far on the established TCP connections whose local
/// end is `local_port` (`sport`) or whose remote end is `remote_port`
/// (`dport`), summed over the kernel's per-socket `bytes_received`, as `ss`
/// reports it. `None` when `ss` (iproute2) cannot be run.
///
/// Socket reads (`recv`) do not show in a process's `/proc/<pid>/io`, so
/// this is the way to see what a process received over the network.
pub fn tcp_bytes_received(side: PortSide, port: u16) -> Option<u64> {
    let filter = match side {
        PortSide::Local => format!("sport = :{port}"),
        PortSide::Remote => format!("dport = :{port}"),
    };
    let out = Command::new("ss")
        .args(["-tinH", "state", "established", &filter])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|field| field.strip_prefix("bytes_received:"))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum(),
    )
}

/// Which end of a connection a port filter names.
#[derive(Debug, Clone, Copy)]
pub enum PortSide {
    /// The socket's own port (a server's listening port on accepted sockets).
    Local,
    /// The port it is connected to.
    Remote,
}

/// The port of a `tcp://HOST:PORT` address.
pub fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address:?}"))
}
