//! A cluster of real processes for end-to-end tests: the `dask-scheduler`
//! binary and `dask-worker` binaries on 127.0.0.1, stopped when the fixture
//! drops. The binaries are found (and built, once per test process) by
//! [`dask_testkit::process::binary`].

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dask_client::{Client, ClientOptions};
use dask_testkit::home::DaskHome;
use dask_testkit::process::{binary, Process, SIGTERM};

/// Generous limit for any single wait: tests never depend on speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How long a child gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// One `dask-scheduler` and named `dask-worker`s (one thread each), all
/// real processes on 127.0.0.1. Dropping it stops them all: SIGTERM, then
/// SIGKILL for any still running after a grace period.
pub struct Cluster {
    /// Where the scheduler creates the credentials its workers and
    /// clients find (as on a user's machine, with no flag).
    home: DaskHome,
    address: String,
    scheduler: Process,
    workers: Vec<(String, Process)>,
    /// Workers move values by their connections even on one host (no
    /// `value-local`): for tests that count the bytes on them.
    tcp_values: bool,
}

impl Cluster {
    /// Starts a scheduler on a free port and one worker per name, and waits
    /// until every worker has registered.
    pub fn start(worker_names: &[&str]) -> Cluster {
        Cluster::start_with(&[], worker_names)
    }

    /// [`Cluster::start`] with more arguments for `dask-scheduler`.
    pub fn start_with(scheduler_args: &[&str], worker_names: &[&str]) -> Cluster {
        Cluster::start_as(scheduler_args, worker_names, false)
    }

    /// [`Cluster::start`] with workers that move values by their
    /// connections, as between hosts (`DASK_RS_VALUE_LOCAL=off`).
    pub fn start_tcp_values(worker_names: &[&str]) -> Cluster {
        Cluster::start_as(&[], worker_names, true)
    }

    fn start_as(scheduler_args: &[&str], worker_names: &[&str], tcp_values: bool) -> Cluster {
        let home = DaskHome::new();
        let mut cmd = Command::new(binary("dask-scheduler"));
        home.apply(&mut cmd)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(scheduler_args);
        let scheduler = Process::spawn("dask-scheduler", &mut cmd);
        let line = scheduler.expect_line("Scheduler at ", PATIENCE);
        let mut cluster = Cluster {
            home,
            address: line["Scheduler at ".len()..].trim().to_owned(),
            scheduler,
            workers: Vec::new(),
            tcp_values,
        };
        for name in worker_names {
            cluster.add_worker(name);
        }
        cluster.wait_for_workers(worker_names);
        cluster
    }

    /// Starts one more `dask-worker` (does not wait for it to register).
    pub fn add_worker(&mut self, name: &str) {
        self.add_worker_with(name, &[] as &[&str]);
    }

    /// [`Cluster::add_worker`] with more arguments for `dask-worker`.
    pub fn add_worker_with<S: AsRef<std::ffi::OsStr>>(&mut self, name: &str, args: &[S]) {
        let mut cmd = Command::new(binary("dask-worker"));
        self.home
            .apply(&mut cmd)
            .arg(&self.address)
            .args(["--nthreads", "1", "--name", name])
            .args(args);
        if self.tcp_values {
            cmd.env(dask_worker::local::VALUE_LOCAL_ENV, "off");
        }
        let process = Process::spawn(&format!("dask-worker {name}"), &mut cmd);
        self.workers.push((name.to_owned(), process));
    }

    /// The scheduler's address, `tcp://127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A new client of this cluster; requests give up after [`PATIENCE`].
    pub fn client(&self) -> Client {
        self.client_with(ClientOptions::default())
    }

    /// [`Cluster::client`] with these options (its credentials and
    /// request timeout set as there).
    pub fn client_with(&self, options: ClientOptions) -> Client {
        let home = self.home.client_options();
        Client::connect_with(
            &self.address,
            ClientOptions {
                request_timeout: Some(PATIENCE),
                credentials: home.credentials,
                ..options
            },
        )
        .unwrap_or_else(|e| panic!("client cannot connect to {}: {e}", self.address))
    }

    /// The cluster's `DASK_RS_HOME`.
    pub fn home(&self) -> &DaskHome {
        &self.home
    }

    /// The scheduler's process id.
    pub fn scheduler_pid(&self) -> u32 {
        self.scheduler.pid()
    }

    /// What the scheduler printed so far (its log lines go to stderr).
    pub fn scheduler_log(&self) -> String {
        self.scheduler.log()
    }

    /// What the worker named `name` printed so far.
    pub fn worker_log(&self, name: &str) -> String {
        self.workers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.log())
            .unwrap_or_else(|| panic!("no worker named {name}"))
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
        let mut out = format!(
            "--- {} ---\n{}",
            self.scheduler.label(),
            self.scheduler.log()
        );
        for (_, w) in &self.workers {
            out.push_str(&format!("--- {} ---\n{}", w.label(), w.log()));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut procs: Vec<&mut Process> = self.workers.iter_mut().map(|(_, p)| p).collect();
        procs.push(&mut self.scheduler);
        for p in procs.iter_mut() {
            p.signal(SIGTERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        for p in &mut procs {
            while Instant::now() < deadline && p.exited().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
            if p.exited().is_none() {
                eprintln!("{} did not stop on SIGTERM: killing it", p.label());
            }
            p.kill();
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
