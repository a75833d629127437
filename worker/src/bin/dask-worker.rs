//! `dask-worker`: runs one worker connected to a scheduler until the
//! scheduler closes it or SIGINT/SIGTERM. A lost connection is not the
//! end: the worker registers again, as a new worker with nothing in it.
//!
//! Why register again rather than exit: a scheduler that restarts, or a
//! network that drops a connection, should not need every worker restarted
//! by hand. Why a *new* worker: the scheduler has forgotten the old one and
//! rescheduled its work, so nothing of the old one is kept (its data, its
//! tasks, its data address: a fresh listener, so no stale `who_has` entry
//! can point at the new worker). A `close` from the scheduler, by contrast,
//! is final: the scheduler is shutting down or has declared this worker
//! dead (it hung past the heartbeat timeout), and a worker it gave up on
//! exits rather than come back by itself (a supervisor may restart it).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dask_worker::builtins::builtin_docs;
use dask_worker::{WorkerConfig, WorkerHandle};

const USAGE: &str = "\
usage: dask-worker tcp://HOST:PORT [options]

Connects to the scheduler at tcp://HOST:PORT, registers, and runs tasks
until the scheduler closes it or SIGINT/SIGTERM (exit 0). When the
connection is lost or broken instead, it registers again as a new, empty
worker (same name), trying every second; it exits 1 if that does not
succeed within the reconnect timeout, or at once with --no-reconnect.
An unreachable scheduler at startup exits 1.

options:
  --nthreads N           tasks run at once (default: number of CPUs)
  --name NAME            unique worker name (default: worker-<host>-<pid>-0)
  --resources R=N,...    resources offered, e.g. GPU=2,MEM=1e9
  --memory-limit BYTES   memory limit for values held (e.g. 4000000000, 4GB,
                         512MiB; 0: none), announced to the scheduler; past
                         fractions of it values spill to disk and task starts
                         pause (default: no limit)
  --memory-target-fraction F
                         spill values to disk, least recently used first,
                         while those in memory exceed F of the limit
                         (default 0.6; false: never spill)
  --memory-pause-fraction F
                         start no task while values in memory exceed F of the
                         limit (default 0.8; false: never pause)
  --local-directory DIR  where the worker makes its own directory for spilled
                         values, removed when it exits (default:
                         <temp dir>/dask-worker-space)
  --host H               host the data listener binds (default 127.0.0.1)
  --reconnect-timeout S  keep trying to register again for S seconds after
                         losing the scheduler (default 60)
  --no-reconnect         exit 1 as soon as the scheduler connection is lost
  --handshake-timeout S  close a data connection that sends no hello
                         within S seconds (default 10)
  --list-functions       print the built-in functions and exit
  -h, --help             print this help and exit";

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

/// Pause before each attempt to register again.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// How often waits check for SIGINT/SIGTERM.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// What to run.
struct Run {
    config: WorkerConfig,
    /// How long to try registering again after the connection is lost;
    /// zero: do not.
    reconnect_timeout: Duration,
}

enum Command {
    Run(Box<Run>),
    ListFunctions,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut config = WorkerConfig::default();
    let mut reconnect_timeout = RECONNECT_TIMEOUT_DEFAULT;
    let mut scheduler = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))?;
            i += 1;
            Ok(v)
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--list-functions" => return Ok(Command::ListFunctions),
            "--nthreads" => {
                let v = value(flag)?;
                config.nthreads = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--nthreads needs a positive integer, got {v:?}"))?;
            }
            "--name" => config.name = Some(value(flag)?),
            "--host" => config.host = value(flag)?,
            "--resources" => config.resources = parse_resources(&value(flag)?)?,
            "--memory-limit" => {
                config.memory_limit = Some(parse_bytes(&value(flag)?)?).filter(|&n| n > 0)
            }
            "--memory-target-fraction" => {
                config.memory_target_fraction = parse_fraction(flag, &value(flag)?)?
            }
            "--memory-pause-fraction" => {
                config.memory_pause_fraction = parse_fraction(flag, &value(flag)?)?
            }
            "--local-directory" => {
                let v = value(flag)?;
                if v.is_empty() {
                    return Err("--local-directory needs a directory".into());
                }
                config.local_directory = Some(v.into());
            }
            "--reconnect-timeout" => {
                let v = value(flag)?;
                reconnect_timeout = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        format!("--reconnect-timeout needs a number of seconds, got {v:?}")
                    })?;
            }
            "--no-reconnect" => reconnect_timeout = Duration::ZERO,
            "--handshake-timeout" => {
                let v = value(flag)?;
                config.handshake_timeout = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        format!("--handshake-timeout needs a positive number of seconds, got {v:?}")
                    })?;
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => {
                if scheduler.is_some() {
                    return Err(format!("unexpected argument {other:?}"));
                }
                scheduler = Some(other.to_string());
            }
        }
    }
    config.scheduler = scheduler.ok_or("the scheduler address is required")?;
    Ok(Command::Run(Box::new(Run {
        config,
        reconnect_timeout,
    })))
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
    let bad = || {
        format!(
            "--memory-limit needs a number of bytes, e.g. 4000000000, 4GB or 512MiB; got {text:?}"
        )
    };
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
fn parse_fraction(flag: &str, text: &str) -> Result<Option<f64>, String> {
    if matches!(text.to_ascii_lowercase().as_str(), "false" | "none" | "off") {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(Some(f)),
        _ => Err(format!(
            "{flag} needs a fraction between 0 and 1 (or false), got {text:?}"
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = match parse_args(&args) {
        Ok(Command::Run(run)) => run,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
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
            eprintln!("dask-worker: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    install_signal_handlers();
    let Run {
        mut config,
        reconnect_timeout,
    } = *run;
    let scheduler = config.scheduler.clone();
    let mut worker = match WorkerHandle::start(config.clone()) {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("dask-worker: cannot register with {scheduler}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Later registrations keep the name (a default one included).
    config.name = Some(worker.name().to_string());
    loop {
        announce(&worker, &scheduler);
        while !worker.is_finished() && !signalled() {
            std::thread::sleep(SIGNAL_POLL);
        }
        if signalled() && !worker.is_finished() {
            worker.stop();
            return ExitCode::SUCCESS;
        }
        let lost = match worker.join() {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => e,
        };
        if reconnect_timeout.is_zero() {
            eprintln!("dask-worker: {lost}");
            return ExitCode::FAILURE;
        }
        eprintln!(
            "dask-worker: {lost}; registering again as a new worker (for up to {} s)",
            reconnect_timeout.as_secs_f64()
        );
        worker = match register_again(&config, reconnect_timeout) {
            Ok(worker) => worker,
            Err(None) => return ExitCode::SUCCESS,
            Err(Some(e)) => {
                eprintln!(
                    "dask-worker: could not register again with {scheduler} within {} s: {e}",
                    reconnect_timeout.as_secs_f64()
                );
                return ExitCode::FAILURE;
            }
        };
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

/// Tries to register every [`RECONNECT_DELAY`] until it works or `timeout`
/// passes (`Err(Some(last error))`) or a signal asks to stop (`Err(None)`).
fn register_again(
    config: &WorkerConfig,
    timeout: Duration,
) -> Result<WorkerHandle, Option<std::io::Error>> {
    let deadline = Instant::now() + timeout;
    loop {
        let pause_until = Instant::now() + RECONNECT_DELAY;
        while Instant::now() < pause_until {
            if signalled() {
                return Err(None);
            }
            std::thread::sleep(SIGNAL_POLL);
        }
        match WorkerHandle::start(config.clone()) {
            Ok(worker) => return Ok(worker),
            Err(e) if Instant::now() >= deadline => return Err(Some(e)),
            Err(_) => {}
        }
    }
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
        assert_eq!(parse_fraction("--f", "0.6"), Ok(Some(0.6)));
        assert_eq!(parse_fraction("--f", "1"), Ok(Some(1.0)));
        assert_eq!(parse_fraction("--f", "false"), Ok(None));
        for text in ["1.5", "-0.1", "NaN", "x", ""] {
            assert!(parse_fraction("--f", text).is_err(), "{text}");
        }
    }

    #[test]
    fn memory_options_reach_the_config() {
        let args: Vec<String> = [
            "tcp://127.0.0.1:1",
            "--memory-limit",
            "8MB",
            "--memory-target-fraction=0.5",
            "--memory-pause-fraction",
            "false",
            "--local-directory",
            "/tmp/x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let Ok(Command::Run(run)) = parse_args(&args) else {
            panic!("parses");
        };
        assert_eq!(run.config.memory_limit, Some(8_000_000));
        assert_eq!(run.config.memory_target_fraction, Some(0.5));
        assert_eq!(run.config.memory_pause_fraction, None);
        assert_eq!(
            run.config.local_directory.as_deref(),
            Some(std::path::Path::new("/tmp/x"))
        );
        let zero = ["tcp://127.0.0.1:1", "--memory-limit", "0"].map(String::from);
        let Ok(Command::Run(run)) = parse_args(&zero) else {
            panic!("parses");
        };
        assert_eq!(run.config.memory_limit, None, "0: no limit");
    }
}
