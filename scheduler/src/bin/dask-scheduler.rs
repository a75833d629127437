//! `dask-scheduler`: runs a dask/1 scheduler in the foreground.
//!
//! Prints `Scheduler at tcp://HOST:PORT` (the real port when `--port 0`)
//! once listening (and writes it to `--scheduler-file`), serves until
//! SIGINT or SIGTERM, then says `close` to every connection and exits 0.
//!
//! Secure by default: it requires every client and worker to prove the
//! cluster's credentials, from the file it creates on its first start
//! (path on standard error) or is given; `--no-auth-anyone-can-connect`
//! turns that off, with a warning.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use dask_net::cli::{listen_warnings, LogArgs, SecurityArgs};
use dask_net::scheduler_file;
use dask_scheduler::dashboard::{DashboardConfig, DEFAULT_DASHBOARD_PORT};
use dask_scheduler::event_loop::JournalRefused;
use dask_scheduler::{EventLoop, SchedulerConfig, Stopper, DEFAULT_PORT};

/// Runs a dask/1 scheduler until SIGINT or SIGTERM.
#[derive(Parser)]
#[command(
    name = "dask-scheduler",
    version = concat!(env!("CARGO_PKG_VERSION"), " (dask-rs, protocol dask/1)"),
    about = "Runs a dask/1 scheduler (dask-rs) until SIGINT or SIGTERM",
    after_help = dask_net::cli::SECURE_CLUSTER_HELP
)]
struct Cli {
    /// Interface to listen on
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on, 0 for any free one (8796: not Python Dask's 8786)
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Declare a silent worker dead after SECS seconds [default: 10]
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    heartbeat_timeout: Option<Duration>,
    /// Close a connection that sends no hello within SECS seconds [default: 10]
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    handshake_timeout: Option<Duration>,
    /// A task processing on more than N workers that are lost (connection
    /// dropped or timed out) errs with KilledWorker instead of running again
    /// [default: 3]
    #[arg(long, value_name = "N")]
    allowed_failures: Option<u32>,
    /// Tasks that only workers paused and unable to spill (a full disk)
    /// could run err with SpillFailed once such a worker has been so for
    /// SECS seconds of the scheduler's running time (a pause of the
    /// scheduler starts the wait again) [default: 10]
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    spill_failed_timeout: Option<Duration>,
    /// Close a connection (and log it) when over 1 MiB of its output waits
    /// and no byte of it could be written for SECS seconds: a peer that does
    /// not read; 0: never [default: 30]
    #[arg(long, value_name = "SECS", value_parser = seconds_or_never)]
    write_timeout: Option<Duration>,
    /// After handling messages, look for more for US microseconds without
    /// sleeping (an idle CPU wakes slowly: this shortens round trips; a
    /// scheduler idle for longer sleeps at once); 0: never [default: 200]
    #[arg(long, value_name = "US")]
    busy_poll_us: Option<u64>,
    /// Check the scheduler's invariants after every event (slow; a
    /// violation stops the scheduler with a message)
    #[arg(long)]
    validate: bool,
    /// Largest frame this process sends (tests: a lower limit sends
    /// values over it in parts, as values over 256 MiB are)
    #[arg(long, value_name = "BYTES", hide = true)]
    frame_bytes_max: Option<usize>,
    /// Write the scheduler's address to FILE once listening (JSON, as
    /// Dask's --scheduler-file), for workers and clients on a shared
    /// filesystem; removed at exit
    #[arg(long, value_name = "FILE")]
    scheduler_file: Option<PathBuf>,
    /// Keep a journal in DIR (created if needed): every graph, release,
    /// cancel, dataset change and task outcome is durable there before it
    /// is acknowledged, and a scheduler started again on DIR after a crash
    /// restores them; workers and clients that reconnect get their results
    /// and futures back
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Serve the dashboard, its JSON API and /metrics on [HOST]:PORT (HOST
    /// defaults to --host; a port alone works too) [default: 8797, or any
    /// free port when 8797 is taken]
    #[arg(long, value_name = "[HOST]:PORT", value_parser = dashboard_address)]
    dashboard_address: Option<(Option<String>, u16)>,
    /// Serve no dashboard, JSON API or /metrics
    #[arg(long, conflicts_with_all = ["dashboard_address", "dashboard_prefix"])]
    no_dashboard: bool,
    /// Serve the dashboard under this path prefix (behind a reverse proxy
    /// that forwards /PREFIX/... unchanged)
    #[arg(long, value_name = "PREFIX")]
    dashboard_prefix: Option<String>,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    security: SecurityArgs,
}

/// `HOST:PORT`, `:PORT` or `PORT`.
fn dashboard_address(v: &str) -> Result<(Option<String>, u16), String> {
    let (host, port) = match v.rsplit_once(':') {
        Some((host, port)) => (
            Some(host.trim_start_matches('[').trim_end_matches(']')),
            port,
        ),
        None => (None, v),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{v:?}: expected [HOST]:PORT with a port from 0 to 65535"))?;
    Ok((host.filter(|h| !h.is_empty()).map(str::to_owned), port))
}

/// Set by the signal handler; the loop looks at it before it first sleeps
/// (a signal that comes before [`STOPPER`] is set).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// The running loop's stopper, for the signal handler.
static STOPPER: OnceLock<Stopper> = OnceLock::new();

/// Signal handling without a dependency: `signal(2)` from the C library
/// that std already links. The handler only stores to atomics and writes
/// to the loop's eventfd (through [`Stopper::stop`]), which is
/// async-signal-safe; the loop wakes at once.
#[cfg(unix)]
mod signals {
    use super::*;

    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;

    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    }

    extern "C" fn on_signal(_: i32) {
        SIGNALLED.store(true, Ordering::SeqCst);
        if let Some(stopper) = STOPPER.get() {
            stopper.stop();
        }
    }

    pub fn install() {
        // SAFETY: `on_signal` is a valid `extern "C" fn(i32)` that only
        // performs an atomic store; SIGINT and SIGTERM are valid signals.
        unsafe {
            signal(SIGINT, on_signal);
            signal(SIGTERM, on_signal);
        }
    }
}

#[cfg(not(unix))]
mod signals {
    pub fn install() {}
}

/// A positive number of seconds, fractions allowed.
fn seconds(v: &str) -> Result<Duration, String> {
    let secs: f64 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("{v} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// As [`seconds`], or `0`: never (a zero duration).
fn seconds_or_never(v: &str) -> Result<Duration, String> {
    if v.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    seconds(v)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logger = cli.log.logger("dask-scheduler");
    let dashboard = (!cli.no_dashboard).then(|| {
        let (host, port, fall_back) = match &cli.dashboard_address {
            Some((host, port)) => (host.clone(), *port, false),
            None => (None, DEFAULT_DASHBOARD_PORT, true),
        };
        DashboardConfig {
            host: host.unwrap_or_else(|| cli.host.clone()),
            port,
            fall_back_to_any_port: fall_back,
            prefix: cli.dashboard_prefix.clone().unwrap_or_default(),
            ..DashboardConfig::default()
        }
    });
    let tls = match cli.security.tls() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("dask-scheduler: {e}");
            return ExitCode::FAILURE;
        }
    };
    if tls.as_ref().is_some_and(|t| !t.can_listen()) {
        eprintln!("dask-scheduler: serving TLS needs --tls-cert and --tls-key");
        return ExitCode::FAILURE;
    }
    let credentials = match cli.security.scheduler_credentials() {
        Ok(Some((credentials, path, created))) => {
            let how = if created { "created" } else { "found" };
            eprintln!(
                "dask-scheduler: credentials {how} at {} (clients and workers of this user on \
                 this machine find it; `dask-rs credentials export` writes files for other \
                 machines)",
                path.display()
            );
            Some(credentials)
        }
        Ok(None) => None,
        Err(e) => {
            eprintln!("dask-scheduler: {e}");
            return ExitCode::FAILURE;
        }
    };
    for line in listen_warnings(&cli.host, credentials.is_some(), tls.is_some()) {
        eprintln!("dask-scheduler: {line}");
    }
    let mut config = SchedulerConfig {
        credentials,
        tls,
        host: cli.host,
        port: cli.port,
        validate: cli.validate,
        dashboard,
        logger,
        journal: cli.journal.clone(),
        ..SchedulerConfig::default()
    };
    if let Some(t) = cli.heartbeat_timeout {
        config.heartbeat_timeout = t;
    }
    if let Some(t) = cli.handshake_timeout {
        config.handshake_timeout = t;
    }
    if let Some(n) = cli.allowed_failures {
        config.allowed_failures = n;
    }
    if let Some(t) = cli.spill_failed_timeout {
        config.spill_failed_timeout = t;
    }
    if let Some(n) = cli.frame_bytes_max {
        config.frame_bytes_max = n;
    }
    if let Some(t) = cli.write_timeout {
        config.write_timeout = (!t.is_zero()).then_some(t);
    }
    if let Some(us) = cli.busy_poll_us {
        config.busy_poll = Duration::from_micros(us);
    }
    signals::install();
    let event_loop = match EventLoop::bind(&config) {
        Ok(event_loop) => event_loop,
        Err(e) if e.to_string().starts_with("cannot serve the dashboard") => {
            eprintln!("dask-scheduler: {e} (--no-dashboard serves none)");
            return ExitCode::FAILURE;
        }
        Err(e) if e.get_ref().is_some_and(|e| e.is::<JournalRefused>()) => {
            eprintln!("dask-scheduler: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "dask-scheduler: cannot listen on {}:{}: {e}",
                config.host, config.port
            );
            return ExitCode::FAILURE;
        }
    };
    let _ = STOPPER.set(event_loop.stopper());
    if SIGNALLED.load(Ordering::SeqCst) {
        event_loop.stopper().stop();
    }
    let address = event_loop.address().to_owned();
    if let Some(path) = &cli.scheduler_file {
        if let Err(e) = scheduler_file::write(path, &address) {
            eprintln!(
                "dask-scheduler: cannot write the scheduler file {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    // One write, errors ignored: a reader that takes the first line and
    // closes the pipe must not stop the scheduler.
    let mut banner = format!("Scheduler at {address}\n");
    if let Some(url) = event_loop.dashboard_url() {
        banner.push_str(&format!("Dashboard at {url}\n"));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(banner.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    let result = event_loop.run(None);
    if let Some(path) = &cli.scheduler_file {
        scheduler_file::remove(path, &address);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dask-scheduler: {e}");
            ExitCode::FAILURE
        }
    }
}
