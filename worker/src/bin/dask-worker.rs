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
  --memory-limit BYTES   memory limit announced to the scheduler
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
    Run(Run),
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
            "--memory-limit" => config.memory_limit = Some(parse_bytes(&value(flag)?)?),
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
    Ok(Command::Run(Run {
        config,
        reconnect_timeout,
    }))
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

fn parse_bytes(text: &str) -> Result<u64, String> {
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(f as u64),
        _ => Err(format!(
            "--memory-limit needs a number of bytes, got {text:?}"
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
    } = run;
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
