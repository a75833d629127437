//! Binaries under test in child processes: the one wrapper the tests of
//! every crate use (the conformance runner keeps its own: starting the
//! worker under test is part of that product).
//!
//! A [`Process`] keeps what the child prints (stdout and stderr, up to
//! [`LOG_BYTES_MAX`]) for failure reports, hands out the lines of its
//! stdout ([`Process::wait_for_line`]), is killed with the test (on Linux,
//! even when the test process itself is killed) and is killed and reaped
//! when dropped.
//!
//! [`binary`] finds the workspace's binaries for tests of other packages,
//! which Cargo gives no `CARGO_BIN_EXE_*`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most bytes of a child's output kept for the failure report.
pub const LOG_BYTES_MAX: usize = 64 * 1024;

/// A child process with its output kept for the failure report.
pub struct Process {
    label: String,
    child: Child,
    log: Arc<Mutex<String>>,
    stdout: Mutex<Receiver<String>>,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` (stdin closed, stdout and stderr read by threads
    /// into the log); `label` names it in reports.
    pub fn spawn(label: &str, command: &mut Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(command);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({command:?}): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (lines, stdout_lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out_log = Arc::clone(&log);
        std::thread::spawn(move || {
            read_lines(stdout, &out_log, |line| {
                let _ = lines.send(line.to_owned());
            })
        });
        let err_log = Arc::clone(&log);
        std::thread::spawn(move || read_lines(stderr, &err_log, |_| {}));
        Process {
            label: label.to_owned(),
            child,
            log,
            stdout: Mutex::new(stdout_lines),
            exit: None,
        }
    }

    /// The next line of stdout (without its end) that starts with `prefix`,
    /// skipping the others; `None` when none comes within `timeout` or
    /// stdout closes first.
    pub fn wait_for_line(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let lines = self.stdout.lock().ok()?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Some(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Like [`Process::wait_for_line`], panicking with the log when no
    /// such line comes.
    pub fn expect_line(&self, prefix: &str, timeout: Duration) -> String {
        self.wait_for_line(prefix, timeout).unwrap_or_else(|| {
            panic!(
                "{} printed no line starting with {prefix:?}:\n{}",
                self.label,
                self.log()
            )
        })
    }

    /// The name given to [`Process::spawn`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far (stdout and stderr, line by line).
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

    /// Fails the test, with the log, if the process has exited.
    pub fn assert_alive(&mut self, during: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited ({status}) during {during}:\n{}",
                self.label,
                self.log()
            );
        }
    }

    /// Resident set size, from /proc (Linux); `None` elsewhere.
    pub fn rss_bytes(&self) -> Option<u64> {
        memory_of(self.child.id(), "VmRSS:")
    }

    /// The largest resident set size it has had, from /proc (Linux);
    /// `None` elsewhere.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        memory_of(self.child.id(), "VmHWM:")
    }

    /// Fails the test if the resident set size is `max` or more (where it
    /// can be read).
    pub fn assert_rss_below(&self, max: u64, during: &str) {
        if let Some(rss) = self.rss_bytes() {
            assert!(
                rss < max,
                "{} uses {} MiB after {during}",
                self.label,
                rss >> 20
            );
        }
    }

    /// Sends `signal` (a number, e.g. 15 for SIGTERM) to the process,
    /// unless it has exited.
    pub fn signal(&mut self, signal: i32) {
        if self.exited().is_none() {
            let _ = send_signal(self.pid(), signal);
        }
    }

    /// SIGSTOP, then waits until every thread of the process is stopped
    /// (see [`stop_pid`]), unless it has exited.
    pub fn stop(&mut self) {
        if self.exited().is_none() {
            stop_pid(self.pid());
        }
    }

    /// SIGTERM, as an operator would stop it; then waits up to `grace` for
    /// it to exit, and kills it if it has not. Returns whether it exited
    /// by itself.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        self.signal(SIGTERM);
        let deadline = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopped = self.exited().is_some();
        self.kill();
        stopped
    }

    /// SIGKILL unless it has exited, then reaps it.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGTERM.
pub const SIGTERM: i32 = 15;
/// SIGKILL.
pub const SIGKILL: i32 = 9;
/// SIGSTOP.
pub const SIGSTOP: i32 = 19;
/// SIGCONT.
pub const SIGCONT: i32 = 18;

/// SIGSTOP to `pid`, then waits (at most 10 s) until each of its threads
/// is stopped. kill(2) returns before the stop takes effect: a thread
/// stops only when it next runs, which on a loaded machine was seen to
/// take 40 ms, time in which a "hung" worker still served a fetch.
/// Without /proc (not Linux), only sends the signal.
pub fn stop_pid(pid: u32) {
    assert!(send_signal(pid, SIGSTOP), "kill({pid}, SIGSTOP) failed");
    let tasks = format!("/proc/{pid}/task");
    if std::fs::metadata(&tasks).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running: Vec<String> = std::fs::read_dir(&tasks)
            .map(|dir| {
                dir.flatten()
                    .filter_map(|thread| std::fs::read_to_string(thread.path().join("stat")).ok())
                    .filter(|stat| !thread_is_stopped(stat))
                    .collect()
            })
            .unwrap_or_default();
        if running.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} got SIGSTOP 10 s ago and these threads still run: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether a `/proc/PID/task/TID/stat` line says stopped (`T`) or
/// traced (`t`): the state is the field after the command's `)`.
fn thread_is_stopped(stat: &str) -> bool {
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    matches!(state.and_then(|s| s.chars().next()), Some('T' | 't'))
}

/// Reads `from` line by line until it closes, keeping the lines in `log`.
fn read_lines(from: impl Read, log: &Mutex<String>, mut on_line: impl FnMut(&str)) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        on_line(&line);
        if let Ok(mut log) = log.lock() {
            if log.len() + line.len() < LOG_BYTES_MAX {
                log.push_str(&line);
                log.push('\n');
            }
        }
    }
}

/// On Linux the child gets SIGKILL when the thread that started it ends,
/// so even a test process killed outright (a harness timeout) leaves no
/// scheduler or worker behind. Fixtures are made and dropped on the test's
/// own thread, which outlives them.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: i32, ...) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: runs in the forked child before exec; prctl is a plain
    // system call (async-signal-safe) and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// A size field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in bytes.
pub fn memory_of(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How many times a thread of this process slept so far (blocked in a
/// wait or on a lock; yielding the CPU is not counted): the calling thread
/// (`None`) or the one named `name` (its `comm`, at most 15 bytes).
/// Linux's `/proc`; panics elsewhere or when no thread has that name.
pub fn thread_sleeps(name: Option<&str>) -> u64 {
    let task = match name {
        None => PathBuf::from("/proc/thread-self"),
        Some(name) => std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(Result::ok)
            .map(|t| t.path())
            .find(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == name))
            .unwrap_or_else(|| panic!("no thread named {name}")),
    };
    std::fs::read_to_string(task.join("status"))
        .expect("a thread's status")
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("voluntary_ctxt_switches in a thread's status")
}

/// Sends `signal` to the process `pid`; whether kill(2) succeeded.
#[cfg(unix)]
pub fn send_signal(pid: u32, signal: i32) -> bool {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { kill(pid, signal) == 0 }
}

/// Sends `signal` to the process `pid` (not on this platform: false).
#[cfg(not(unix))]
pub fn send_signal(_pid: u32, _signal: i32) -> bool {
    false
}

/// `program` started by `sh` after `ulimit -n open_files` (the arguments
/// added to the returned command go to `program`).
pub fn with_open_files(open_files: u32, program: &str) -> Command {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!("ulimit -n {open_files} && exec \"$0\" \"$@\""),
        program,
    ]);
    command
}

/// The soft limit on open files of this process, from /proc (Linux).
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---- the workspace's binaries ------------------------------------------------

/// The package that builds each binary of the workspace.
const PACKAGES: [(&str, &str); 4] = [
    ("dask-scheduler", "dask-scheduler"),
    ("dask-worker", "dask-worker"),
    ("dask", "dask-cluster"),
    ("dask-conformance", "dask-conformance"),
];

/// The path of one of the workspace's binaries (`dask-scheduler`,
/// `dask-worker`, `dask`, `dask-conformance`), for tests of another package
/// (Cargo gives a test `CARGO_BIN_EXE_*` for its own package's binaries
/// only: use that there).
///
/// It is looked up in the profile directory of the test executable
/// (`target/<profile>/`, the test itself being in `target/<profile>/deps/`)
/// after `cargo build -p <package>` with the same profile and target
/// directory, once per binary and test process, so it is never stale.
/// Under `cargo nextest` (one process per test) that build runs once per
/// test; a no-op build takes well under a second. `DASK_BIN_DIR=DIR` skips
/// the build and uses the binaries in DIR.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = exe_name(name);
    if let Some(dir) = std::env::var_os("DASK_BIN_DIR") {
        return PathBuf::from(dir).join(exe);
    }
    let layout = Layout::of_test_executable();
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let package = PACKAGES
            .iter()
            .find(|(bin, _)| *bin == name)
            .map_or(name, |(_, package)| package);
        layout.build(package, &exe);
        built.push(name.to_owned());
    }
    layout.profile_dir.join(exe)
}

fn exe_name(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
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
        static LAYOUT: OnceLock<(PathBuf, PathBuf, Option<String>)> = OnceLock::new();
        let (profile_dir, target_dir, triple) = LAYOUT.get_or_init(|| {
            let exe = std::env::current_exe().expect("the test executable's path");
            // target/<profile>/deps/<test>-<hash>; otherwise take the
            // test's own directory for the profile directory.
            let dir = exe.parent().expect("the test executable's directory");
            let profile_dir = match dir.file_name() {
                Some(n) if n == "deps" => dir.parent().expect("deps/ has a parent").to_path_buf(),
                _ => dir.to_path_buf(),
            };
            let parent = profile_dir
                .parent()
                .expect("the profile directory has a parent")
                .to_path_buf();
            // Cargo marks the root of a target directory with CACHEDIR.TAG;
            // a directory in between is the target triple of a `--target`
            // build.
            let is_root = |d: &Path| d.join("CACHEDIR.TAG").exists();
            let (target_dir, triple) = match parent.parent() {
                Some(grand) if !is_root(&parent) && is_root(grand) => (
                    grand.to_path_buf(),
                    parent.file_name().map(|n| n.to_string_lossy().into_owned()),
                ),
                _ => (parent, None),
            };
            (profile_dir, target_dir, triple)
        });
        Layout {
            profile_dir: profile_dir.clone(),
            target_dir: target_dir.clone(),
            triple: triple.clone(),
        }
    }

    /// `cargo build -p package` with this layout's profile; fails unless
    /// `exe` is then in the profile directory.
    fn build(&self, package: &str, exe: &str) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--target-dir")
            .arg(&self.target_dir)
            .args(["-p", package])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
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
        let present = self.profile_dir.join(exe).exists();
        assert!(
            out.status.success() || present,
            "{cmd:?} failed and {exe} is not built:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            eprintln!(
                "warning: {cmd:?} failed, using the {exe} already in {}:\n{}",
                self.profile_dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A loopback port free now (a scheduler started again on it listens
/// where the first one did).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh directory of its own under the system's temporary directory,
/// named after `name` (e.g. a scheduler's journal).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dask-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}
