//! The dask-rs cluster a run measures: its processes, credentials, TLS,
//! journal and busy-polling knobs, and the client connected to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dask_client::{Client, ClientOptions};

pub(crate) struct Processes {
    pub(crate) children: Vec<Child>,
    pub(crate) scheduler_pid: u32,
    pub(crate) address: String,
    /// The dashboard's URL with its token, as the scheduler printed it.
    pub(crate) dashboard: Option<String>,
    /// The cluster's DASK_RS_HOME: the scheduler creates the credentials
    /// there, its workers and the client find them (removed at drop).
    pub(crate) home: PathBuf,
}

impl Processes {
    /// CPU seconds of the scheduler and of all workers together.
    pub(crate) fn cpu(&self) -> (f64, f64) {
        let workers = self.children[1..]
            .iter()
            .map(|c| dask_bench::cpu_seconds(&c.id().to_string()))
            .sum();
        (
            dask_bench::cpu_seconds(&self.scheduler_pid.to_string()),
            workers,
        )
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A client proving the cluster's client secret, as deployed.
pub(crate) fn connect(procs: &Processes) -> Client {
    let credentials = dask_net::credentials::load(&procs.home.join("credentials.json"))
        .expect("the scheduler's credentials");
    let tls = tls_files(&procs.home).map(|(ca, cert)| {
        dask_net::TlsConfig::from_files(Some(&ca), Some(&cert), None).expect("TLS files")
    });
    let mut options = ClientOptions {
        credentials: Some(credentials),
        tls,
        ..ClientOptions::default()
    };
    if let Some(us) = busy_poll_us() {
        options.busy_poll = Duration::from_micros(us);
    }
    Client::connect_with(&procs.address, options).expect("connect")
}

/// The cluster's CA and certificate in `home`, when it runs over TLS.
pub(crate) fn tls_files(home: &Path) -> Option<(PathBuf, PathBuf)> {
    let dir = home.join("tls");
    dir.exists()
        .then(|| (dir.join("ca.pem"), dir.join("cluster.pem")))
}

/// Whether `--journal` asked for a scheduler that keeps a journal.
pub(crate) fn with_journal() -> bool {
    std::env::args().any(|a| a == "--journal")
}

/// `--busy-poll-us N`: the busy-poll of the scheduler, the workers and the
/// client (their default when absent; 0 turns it off, to measure what it
/// gives).
pub(crate) fn busy_poll_us() -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--busy-poll-us")?;
    Some(
        args.get(at + 1)
            .and_then(|n| n.parse().ok())
            .expect("--busy-poll-us takes a number of microseconds"),
    )
}

/// Whether `--tls` asked for every dask-rs connection over TLS (with
/// authentication, as always): the TLS column is this run beside a plain
/// one.
pub(crate) fn over_tls() -> bool {
    std::env::args().any(|a| a == "--tls")
}

pub(crate) fn start_cluster(bin_dir: &Path, workers: usize, nthreads: u32) -> Processes {
    start_cluster_journaling(bin_dir, workers, nthreads, with_journal())
}

/// [`start_cluster`], its scheduler keeping a journal or not.
pub(crate) fn start_cluster_journaling(
    bin_dir: &Path,
    workers: usize,
    nthreads: u32,
    journaling: bool,
) -> Processes {
    static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let home = std::env::temp_dir().join(format!("dask-bench-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    if over_tls() {
        dask_net::tls::write_cluster_files(&home.join("tls"), &[], 1).expect("TLS files");
    }
    let mut flags: Vec<String> = match tls_files(&home) {
        Some((ca, cert)) => vec![
            "--tls-ca-file".into(),
            ca.to_string_lossy().into_owned(),
            "--tls-cert".into(),
            cert.to_string_lossy().into_owned(),
        ],
        None => Vec::new(),
    };
    if let Some(us) = busy_poll_us() {
        flags.extend(["--busy-poll-us".into(), us.to_string()]);
    }
    let journal: Vec<String> = if journaling {
        vec![
            "--journal".into(),
            home.join("journal").to_string_lossy().into_owned(),
        ]
    } else {
        Vec::new()
    };
    let mut scheduler = Command::new(bin_dir.join("dask-scheduler"))
        .args(["--port", "0"])
        .args(&flags)
        .args(&journal)
        .env("DASK_RS_HOME", &home)
        .env_remove("DASK_CREDENTIALS")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dask-scheduler (build it with cargo build --release)");
    let mut line = String::new();
    let mut banner = BufReader::new(scheduler.stdout.take().expect("stdout"));
    banner.read_line(&mut line).expect("read address");
    let address = line.trim().trim_start_matches("Scheduler at ").to_owned();
    // The banner is one write: its dashboard line is there already.
    let mut line = String::new();
    let _ = banner.read_line(&mut line);
    let dashboard = line.trim().strip_prefix("Dashboard at ").map(str::to_owned);
    let scheduler_pid = scheduler.id();
    let mut children = vec![scheduler];
    for i in 0..workers {
        children.push(
            Command::new(bin_dir.join("dask-worker"))
                .args([
                    address.as_str(),
                    "--nthreads",
                    &nthreads.to_string(),
                    "--name",
                    &format!("bench-{i}"),
                ])
                .args(&flags)
                .env("DASK_RS_HOME", &home)
                .env_remove("DASK_CREDENTIALS")
                .stdout(Stdio::null())
                .spawn()
                .expect("start dask-worker"),
        );
    }
    Processes {
        children,
        scheduler_pid,
        address,
        dashboard,
        home,
    }
}

pub(crate) fn wait_for_workers(client: &Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.workers().map(|w| w.len()).unwrap_or(0) < n {
        assert!(Instant::now() < deadline, "workers did not register");
        std::thread::sleep(Duration::from_millis(20));
    }
}
