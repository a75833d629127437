//! `dask-scheduler`: runs a dask/1 scheduler in the foreground.
//!
//! Prints `Scheduler at tcp://HOST:PORT` (the real port when `--port 0`)
//! once listening, serves until SIGINT or SIGTERM, then says `close` to
//! every connection and exits 0.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use dask_scheduler::{EventLoop, SchedulerConfig, Stopper};

const USAGE: &str = "\
Usage: dask-scheduler [--host HOST] [--port PORT] [--heartbeat-timeout SECS]
                      [--handshake-timeout SECS] [--allowed-failures N] [--validate]

Runs a dask/1 scheduler until SIGINT or SIGTERM.

Options:
  --host HOST               interface to listen on (default 127.0.0.1)
  --port PORT               port to listen on, 0 for any free one (default 8786)
  --heartbeat-timeout SECS  declare a silent worker dead after SECS seconds (default 10)
  --handshake-timeout SECS  close a connection that sends no hello within SECS seconds (default 10)
  --allowed-failures N      a task processing on more than N workers that are lost
                            (connection dropped or timed out) errs with KilledWorker
                            instead of running again (default 3)
  --validate                check the scheduler's invariants after every event (slow;
                            a violation stops the scheduler with a message)
  -h, --help                print this help";

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

fn parse(args: &[String]) -> Result<Option<SchedulerConfig>, String> {
    let mut config = SchedulerConfig::default();
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (args[i].clone(), None),
        };
        i += 1;
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
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--host" => config.host = value("--host")?,
            "--port" => {
                let v = value("--port")?;
                config.port = v
                    .parse()
                    .map_err(|_| format!("--port: {v:?} is not a port number"))?;
            }
            "--heartbeat-timeout" => {
                config.heartbeat_timeout =
                    seconds("--heartbeat-timeout", &value("--heartbeat-timeout")?)?;
            }
            "--handshake-timeout" => {
                config.handshake_timeout =
                    seconds("--handshake-timeout", &value("--handshake-timeout")?)?;
            }
            "--allowed-failures" => {
                let v = value("--allowed-failures")?;
                config.allowed_failures = v
                    .parse()
                    .map_err(|_| format!("--allowed-failures: {v:?} is not a count"))?;
            }
            "--validate" => config.validate = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(config))
}

/// A positive number of seconds, fractions allowed.
fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    let secs: f64 = v
        .parse()
        .map_err(|_| format!("{flag}: {v:?} is not a number"))?;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("{flag}: {v} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dask-scheduler: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    signals::install();
    let event_loop = match EventLoop::bind(&config) {
        Ok(event_loop) => event_loop,
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
    println!("Scheduler at {}", event_loop.address());
    let _ = std::io::stdout().flush();
    match event_loop.run(None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dask-scheduler: {e}");
            ExitCode::FAILURE
        }
    }
}
