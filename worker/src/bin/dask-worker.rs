//! `dask-worker`: runs one worker connected to a scheduler until the
//! scheduler closes it or SIGINT/SIGTERM. A lost connection is not the
//! end: the worker registers again, as a new worker with nothing in it
//! (the rule, and why, are the worker state machine's:
//! `dask_core::worker`, `scheduler.rs`; this binary sets its timeout). A
//! `close` from the scheduler, by contrast, is final: the scheduler is
//! shutting down or has declared this worker dead (it hung past the
//! heartbeat timeout), and a worker it gave up on exits rather than come
//! back by itself (a supervisor may restart it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use dask_core::messages::Role;
use dask_net::cli::{listen_warnings, LogArgs, SecurityArgs};
use dask_worker::builtins::builtin_docs;
use dask_worker::{WorkerConfig, WorkerHandle};

/// Connects to a scheduler, registers, and runs tasks until the scheduler
/// closes it or SIGINT/SIGTERM (exit 0).
#[derive(Parser)]
#[command(
    name = "dask-worker",
    version = concat!(env!("CARGO_PKG_VERSION"), " (dask-rs, protocol dask/1)"),
    about = "Runs a dask/1 worker (dask-rs) connected to a scheduler",
    long_about = "Connects to the scheduler at tcp://HOST:PORT (or the one named in \
        --scheduler-file), registers, and runs tasks until the scheduler closes it or \
        SIGINT/SIGTERM (exit 0). When the connection is lost or broken instead, it registers \
        again as a new, empty worker (same name), trying every second; it exits 1 if that does \
        not succeed within the reconnect timeout, or at once with --no-reconnect. An \
        unreachable scheduler at startup exits 1.\n\n\
        It proves the cluster's worker secret to the scheduler and to other workers, and \
        serves its data address only to workers that prove it: the credentials file \
        dask-scheduler created is found with no flag on the same machine (same user); on \
        another machine give --credentials FILE or DASK_CREDENTIALS (`dask-rs credentials \
        export --worker FILE` writes one). With --tls-cert/--tls-key its data address is \
        tls://; --tls-ca-file lets it reach a tls:// scheduler.",
    after_help = dask_net::cli::SECURE_CLUSTER_HELP
)]
struct Cli {
    /// The scheduler, tcp://HOST:PORT
    #[arg(value_name = "SCHEDULER", required_unless_present_any = ["scheduler_file", "list_functions"])]
    scheduler: Option<String>,
    /// Read the scheduler's address from the file `dask-scheduler
    /// --scheduler-file` writes (waiting up to 60 s for it to appear)
    #[arg(long, value_name = "FILE", conflicts_with = "scheduler")]
    scheduler_file: Option<PathBuf>,
    /// Tasks run at once [default: number of CPUs]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    nthreads: Option<u32>,
    /// Unique worker name [default: worker-<host>-<pid>-0]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Resources offered, e.g. GPU=2,MEM=1e9
    #[arg(long, value_name = "R=N,...", value_parser = parse_resources)]
    resources: Option<BTreeMap<String, f64>>,
    /// Memory limit for values held (e.g. 4000000000, 4GB, 512MiB; 0: none),
    /// announced to the scheduler; past fractions of it values spill to disk
    /// and task starts pause [default: no limit]
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    memory_limit: Option<u64>,
    /// Spill values to disk, least recently used first, while those in
    /// memory exceed F of the limit (false: never spill) [default: 0.6]
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    memory_target_fraction: Option<Fraction>,
    /// Start no task while values in memory exceed F of the limit (false:
    /// never pause) [default: 0.8]
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    memory_pause_fraction: Option<Fraction>,
    /// Where the worker makes its own directory for spilled values, removed
    /// when it exits [default: <temp dir>/dask-worker-space]
    #[arg(long, value_name = "DIR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    local_directory: Option<String>,
    /// Host the data listener binds
    #[arg(long, value_name = "H", default_value = "127.0.0.1")]
    host: String,
    /// Keep trying to register again for S seconds after losing the
    /// scheduler [default: 60]
    #[arg(long, value_name = "S", value_parser = parse_seconds_or_zero)]
    reconnect_timeout: Option<Duration>,
    /// Exit 1 as soon as the scheduler connection is lost
    #[arg(long)]
    no_reconnect: bool,
    /// Close a data connection that sends no hello within S seconds [default: 10]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    handshake_timeout: Option<Duration>,
    /// Print the built-in functions and exit
    #[arg(long)]
    list_functions: bool,
    /// Largest frame this process sends (tests: a lower limit sends
    /// values over it in parts, as values over 256 MiB are)
    #[arg(long, value_name = "BYTES", hide = true)]
    frame_bytes_max: Option<usize>,
    /// After a task or a message, the event loop and each executor thread
    /// look for more work for US microseconds without sleeping (an idle
    /// CPU wakes slowly: this shortens round trips; a worker idle for
    /// longer sleeps at once); 0: never [default: 200]
    #[arg(long, value_name = "US")]
    busy_poll_us: Option<u64>,
    /// Offer the `exec` built-in: whoever holds the cluster's client
    /// secret can then run any program as this user on this machine. Off
    /// by default
    #[arg(long)]
    allow_exec: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    security: SecurityArgs,
}

/// A memory fraction, or none (`false`): a newtype because clap reads an
/// `Option<Option<_>>` field as a flag with an optional value.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fraction(Option<f64>);

/// How long a worker waits for its scheduler file to appear.
const SCHEDULER_FILE_WAIT: Duration = Duration::from_secs(60);

/// Set by the signal handler; polled by main.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// SIGINT/SIGTERM set a flag and nothing else (all a handler may safely
/// do); main polls it. A two-line `extern "C"` declaration of libc's
/// `signal` avoids a dependency (signal-hook) for this one use.
#[cfg(unix)]
fn install_signal_handlers() {
    extern "C" fn on_signal(_signum: i32) {
        SIGNALLED.store(true, Ordering::SeqCst);
    }
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    }
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    // SAFETY: `on_signal` only stores to an atomic, which is
    // async-signal-safe; `signal` is libc's, linked into every Rust program.
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
}

#[cfg(not(unix))]
fn install_signal_handlers() {}

/// How long a worker that lost its scheduler keeps trying to register
/// again, by default.
const RECONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// How often waits check for SIGINT/SIGTERM.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

enum Command {
    /// Run; the flag: no credentials were found, and none were asked for
    /// or refused (so they may appear: see [`start`]).
    Run(Box<WorkerConfig>, bool),
    ListFunctions,
}

/// What the arguments ask for. The scheduler file, if any, is read here
/// (waiting for it).
fn command(cli: Cli) -> Result<Command, String> {
    if cli.list_functions {
        return Ok(Command::ListFunctions);
    }
    let scheduler = match (cli.scheduler, cli.scheduler_file) {
        (Some(address), _) => address,
        (None, Some(path)) => dask_net::scheduler_file::read(&path, SCHEDULER_FILE_WAIT)?,
        (None, None) => return Err("the scheduler address is required".into()),
    };
    let credentials = cli.security.member_credentials(Role::Worker)?;
    let tls = cli.security.tls()?;
    let listens_tls = tls.as_ref().is_some_and(|t| t.can_listen());
    let opted_out = cli.security.no_auth_anyone_can_connect;
    for line in listen_warnings(&cli.host, !opted_out, listens_tls) {
        eprintln!("dask-worker: {line}");
    }
    let mut config = WorkerConfig {
        scheduler,
        credentials,
        tls,
        name: cli.name,
        host: cli.host,
        memory_limit: cli.memory_limit.filter(|&n| n > 0),
        local_directory: cli.local_directory.map(Into::into),
        logger: cli.log.logger("dask-worker"),
        ..WorkerConfig::default()
    };
    if let Some(n) = cli.nthreads {
        config.nthreads = n as usize;
    }
    if !cli.allow_exec {
        config.functions.remove("exec");
    }
    if let Some(n) = cli.frame_bytes_max {
        config.frame_bytes_max = n;
    }
    if let Some(us) = cli.busy_poll_us {
        config.busy_poll = Duration::from_micros(us);
    }
    if let Some(r) = cli.resources {
        config.resources = r;
    }
    if let Some(Fraction(f)) = cli.memory_target_fraction {
        config.memory_target_fraction = f;
    }
    if let Some(Fraction(f)) = cli.memory_pause_fraction {
        config.memory_pause_fraction = f;
    }
    if let Some(t) = cli.handshake_timeout {
        config.handshake_timeout = t;
    }
    config.reconnect_timeout = if cli.no_reconnect {
        Duration::ZERO
    } else {
        cli.reconnect_timeout.unwrap_or(RECONNECT_TIMEOUT_DEFAULT)
    };
    let may_appear =
        config.credentials.is_none() && !opted_out && cli.security.credentials.is_none();
    Ok(Command::Run(Box::new(config), may_appear))
}

/// Seconds, fractions allowed, more than 0.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    match parse_seconds_or_zero(text)? {
        d if d.is_zero() => Err(format!("needs a positive number of seconds, got {text:?}")),
        d => Ok(d),
    }
}

/// Seconds, fractions allowed, 0 or more.
fn parse_seconds_or_zero(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("needs a number of seconds, got {text:?}"))
}

fn parse_resources(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (name, amount) = item
            .split_once('=')
            .ok_or_else(|| format!("resource {item:?} is not NAME=AMOUNT"))?;
        let amount: f64 = amount
            .parse()
            .ok()
            .filter(|a: &f64| a.is_finite() && *a >= 0.0)
            .ok_or_else(|| format!("resource {name:?} needs a non-negative number"))?;
        if name.is_empty() {
            return Err(format!("resource {item:?} has no name"));
        }
        out.insert(name.to_string(), amount);
    }
    Ok(out)
}

/// A byte count as Dask's `parse_bytes` reads it: a number and an optional
/// unit, decimal (`kB`, `MB`, `GB`, `TB`, `PB`, or `k`, `M`, ...) or binary
/// (`KiB`, `MiB`, ..., or `Ki`, `Mi`, ...), any case, spaces allowed.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let bad = || format!("needs a number of bytes, e.g. 4000000000, 4GB or 512MiB; got {text:?}");
    let trimmed = text.trim();
    if let Ok(n) = trimmed.parse::<u64>() {
        return Ok(n);
    }
    let split = trimmed
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.trim().parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = number * scale;
    if bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64 {
        Ok(bytes as u64)
    } else {
        Err(bad())
    }
}

/// A fraction of the memory limit in [0, 1], or `false`/`none`: off.
fn parse_fraction(text: &str) -> Result<Fraction, String> {
    if matches!(text.to_ascii_lowercase().as_str(), "false" | "none" | "off") {
        return Ok(Fraction(None));
    }
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(Fraction(Some(f))),
        _ => Err(format!(
            "needs a fraction between 0 and 1 (or false), got {text:?}"
        )),
    }
}

fn main() -> ExitCode {
    let (config, may_appear) = match command(Cli::parse()) {
        Ok(Command::Run(config, may_appear)) => (*config, may_appear),
        Ok(Command::ListFunctions) => {
            for (name, doc) in builtin_docs() {
                println!("{name}");
                for line in doc.lines() {
                    if line.is_empty() {
                        println!();
                    } else {
                        println!("    {line}");
                    }
                }
                println!();
            }
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dask-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    install_signal_handlers();
    let scheduler = config.scheduler.clone();
    let worker = match start(config, may_appear) {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("dask-worker: cannot register with {scheduler}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Registering again after losing the scheduler happens inside the
    // worker; each registration is announced.
    let mut announced = 0;
    loop {
        let registrations = worker.registrations();
        if registrations > announced {
            announced = registrations;
            announce(&worker, &scheduler);
        }
        if worker.is_finished() {
            break;
        }
        if signalled() {
            worker.stop();
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(SIGNAL_POLL);
    }
    match worker.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dask-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the worker. A worker that found no credentials file and is told
/// by the scheduler that it requires them looks once more: started at the
/// same moment as a scheduler on the same machine, it may have looked
/// before the scheduler created the file (it does so before it listens).
fn start(config: WorkerConfig, may_appear: bool) -> std::io::Result<WorkerHandle> {
    let retry = may_appear.then(|| config.clone());
    match (WorkerHandle::start(config), retry) {
        (Err(e), Some(mut config)) if e.to_string().contains("authentication required") => {
            let found = dask_net::credentials::discover(None).ok().flatten();
            match found.and_then(|f| dask_net::credentials::for_role(&f.credentials, Role::Worker))
            {
                Some(credentials) => {
                    config.credentials = Some(credentials);
                    WorkerHandle::start(config)
                }
                None => Err(e),
            }
        }
        (started, _) => started,
    }
}

fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// The line that says the worker is registered (tests and tools read it).
fn announce(worker: &WorkerHandle, scheduler: &str) {
    println!(
        "Worker {} at {}, connected to {scheduler}",
        worker.name(),
        worker.address()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_decimal_and_binary_units() {
        for (text, bytes) in [
            ("8000000", 8_000_000),
            ("1e9", 1_000_000_000),
            ("2GB", 2_000_000_000),
            ("2 gb", 2_000_000_000),
            ("1.5kB", 1_500),
            ("512MiB", 512 << 20),
            ("4Gi", 4 << 30),
            ("10B", 10),
            ("0", 0),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for text in ["", "GB", "-1", "1XB", "1e400", "nan", "1 2"] {
            assert!(parse_bytes(text).is_err(), "{text}");
        }
    }

    #[test]
    fn fractions_are_between_0_and_1_or_off() {
        assert_eq!(parse_fraction("0.6"), Ok(Fraction(Some(0.6))));
        assert_eq!(parse_fraction("1"), Ok(Fraction(Some(1.0))));
        assert_eq!(parse_fraction("false"), Ok(Fraction(None)));
        for text in ["1.5", "-0.1", "NaN", "x", ""] {
            assert!(parse_fraction(text).is_err(), "{text}");
        }
    }

    #[test]
    fn memory_options_reach_the_config() {
        let parse_args = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(std::iter::once("dask-worker").chain(args.iter().copied()))
                    .map_err(|e| e.to_string())?;
            command(cli)
        };
        let args = [
            "tcp://127.0.0.1:1",
            "--memory-limit",
            "8MB",
            "--memory-target-fraction=0.5",
            "--memory-pause-fraction",
            "false",
            "--local-directory",
            "/tmp/x",
        ];
        let Ok(Command::Run(config, _)) = parse_args(&args) else {
            panic!("parses");
        };
        assert_eq!(config.memory_limit, Some(8_000_000));
        assert_eq!(config.memory_target_fraction, Some(0.5));
        assert_eq!(config.memory_pause_fraction, None);
        assert_eq!(
            config.local_directory.as_deref(),
            Some(std::path::Path::new("/tmp/x"))
        );
        let zero = ["tcp://127.0.0.1:1", "--memory-limit", "0"];
        let Ok(Command::Run(config, _)) = parse_args(&zero) else {
            panic!("parses");
        };
        assert_eq!(config.memory_limit, None, "0: no limit");
    }
}
