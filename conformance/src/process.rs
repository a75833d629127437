//! The worker (or client harness) under test as a child process: started
//! from the command line given to the runner with its placeholders filled
//! in, its output kept (the last [`OUTPUT_TAIL_BYTES`] of each stream) to
//! show on failure, and killed with its whole process group when the case
//! ends. A client's harness is *driven*: the runner writes commands to its
//! stdin, and each line it prints comes to the session as an event.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::case::Conn;
use crate::transport::{Event, EventKind};

/// Bytes of the worker's stdout and of its stderr kept for reports.
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

/// What a case gives the worker's command: placeholders in its arguments
/// and the same values as environment variables.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `{scheduler}` / `DASK_SCHEDULER_ADDRESS`: `tcp://127.0.0.1:PORT`.
    pub scheduler: String,
    /// `{nthreads}` / `DASK_NTHREADS`.
    pub nthreads: u32,
    /// `{name}` / `DASK_WORKER_NAME`: a name unique to the case run.
    pub name: String,
    /// With `--auth`: the directory given as `DASK_RS_HOME` (where every
    /// dask-rs program finds `credentials.json` with no flag), the path of
    /// that file (`{credentials}`), and the secret in hex
    /// (`{worker_secret}` / `DASK_WORKER_SECRET`).
    pub credentials: Option<(PathBuf, String, String)>,
    /// With `--tls`: the CA file (`{tls_ca_file}` / `DASK_TLS_CA_FILE`)
    /// and the certificate with its key (`{tls_cert}`, `{tls_key}` /
    /// `DASK_TLS_CERT`).
    pub tls: Option<(String, String)>,
}

impl Launch {
    /// Fills the placeholders of one argument.
    pub fn fill(&self, arg: &str) -> String {
        let (file, secret) = self
            .credentials
            .as_ref()
            .map_or(("", ""), |(_, f, s)| (f.as_str(), s.as_str()));
        let (ca, cert) = self
            .tls
            .as_ref()
            .map_or(("", ""), |(ca, cert)| (ca.as_str(), cert.as_str()));
        arg.replace("{scheduler}", &self.scheduler)
            .replace("{tls_ca_file}", ca)
            .replace("{tls_cert}", cert)
            .replace("{tls_key}", cert)
            .replace("{nthreads}", &self.nthreads.to_string())
            .replace("{name}", &self.name)
            .replace("{credentials}", file)
            .replace("{worker_secret}", secret)
    }
}

/// A running worker (or client harness).
pub struct WorkerProcess {
    child: Child,
    /// The harness's stdin, for driver commands (driven processes only).
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    exit: Option<ExitStatus>,
}

fn keep_tail(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let Ok(mut tail) = into.lock() else { return };
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * OUTPUT_TAIL_BYTES {
                        let cut = tail.len() - OUTPUT_TAIL_BYTES;
                        tail.drain(..cut);
                    }
                }
            }
        }
    });
}

/// Keeps the tail of `from` and sends each line of it as an
/// [`EventKind::Output`].
fn forward_lines(from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>, tx: Sender<Event>) {
    thread::spawn(move || {
        let mut lines = BufReader::new(from);
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if let Ok(mut tail) = into.lock() {
                        tail.extend_from_slice(line.as_bytes());
                        if tail.len() > 2 * OUTPUT_TAIL_BYTES {
                            let cut = tail.len() - OUTPUT_TAIL_BYTES;
                            tail.drain(..cut);
                        }
                    }
                    let text = line.trim_end().to_owned();
                    let event = Event::now(Conn::Scheduler, 0, EventKind::Output(text));
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

impl WorkerProcess {
    /// Starts `command` (program and arguments) for one case. With
    /// `driven`, its stdin takes driver commands and each line of its
    /// stdout goes to that channel.
    pub fn spawn(
        command: &[String],
        launch: &Launch,
        driven: Option<Sender<Event>>,
    ) -> Result<WorkerProcess, String> {
        let (program, args) = command
            .split_first()
            .ok_or("no worker command given (after --)")?;
        let mut cmd = Command::new(launch.fill(program));
        cmd.args(args.iter().map(|a| launch.fill(a)))
            // Without --auth the runner plays a scheduler that proves no
            // credentials: the program under test must find none (not the
            // user's own file); with it, the run's file is where it looks.
            .env(
                "DASK_RS_HOME",
                launch
                    .credentials
                    .as_ref()
                    .map_or_else(no_credentials_home, |(home, _, _)| home.clone()),
            )
            .env_remove("DASK_CREDENTIALS")
            .env_remove("DASK_WORKER_SECRET")
            .env_remove("DASK_TLS_CA_FILE")
            .env_remove("DASK_TLS_CERT")
            .env("DASK_SCHEDULER_ADDRESS", &launch.scheduler)
            .env("DASK_NTHREADS", launch.nthreads.to_string())
            .env("DASK_WORKER_NAME", &launch.name);
        if let Some((_, _, secret)) = &launch.credentials {
            cmd.env("DASK_WORKER_SECRET", secret);
        }
        if let Some((ca, cert)) = &launch.tls {
            cmd.env("DASK_TLS_CA_FILE", ca).env("DASK_TLS_CERT", cert);
        }
        cmd.stdin(if driven.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group, so that a wrapper script and the
            // worker it starts are killed together.
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {program:?}: {e}"))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        match (child.stdout.take(), driven) {
            (Some(out), Some(tx)) => forward_lines(out, stdout.clone(), tx),
            (Some(out), None) => keep_tail(out, stdout.clone()),
            (None, _) => {}
        }
        if let Some(err) = child.stderr.take() {
            keep_tail(err, stderr.clone());
        }
        Ok(WorkerProcess {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            exit: None,
        })
    }

    /// Writes one line (a driver command) to a driven process's stdin.
    pub fn write_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or("the process under test takes no commands")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("cannot write to the harness's stdin: {e}"))
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Kills the process group (if still running) and reaps the process.
    pub fn kill(&mut self) {
        if self.exit_status().is_none() {
            #[cfg(unix)]
            signal_group(self.child.id());
            let _ = self.child.kill();
        }
        #[cfg(unix)]
        signal_group(self.child.id());
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
    }

    /// The last lines the worker wrote to stdout and stderr.
    pub fn output(&self) -> (String, String) {
        let text = |b: &Arc<Mutex<Vec<u8>>>| {
            b.lock()
                .map(|t| {
                    let start = t.len().saturating_sub(OUTPUT_TAIL_BYTES);
                    String::from_utf8_lossy(&t[start..]).into_owned()
                })
                .unwrap_or_default()
        };
        (text(&self.stdout), text(&self.stderr))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGKILL to the process group led by `pid` (the worker was started
/// as the leader of a new group, so this reaches only what it started).
#[cfg(unix)]
fn signal_group(pid: u32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours.
            unsafe {
                kill(-pid, SIGKILL);
            }
        }
    }
}

/// A `DASK_RS_HOME` that holds no credentials file (a directory that does
/// not exist).
fn no_credentials_home() -> PathBuf {
    std::env::temp_dir().join(format!(
        "dask-conformance-{}-no-credentials",
        std::process::id()
    ))
}
