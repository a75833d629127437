//! `dask-worker`: runs one worker connected to a scheduler until the
//! scheduler closes it, the connection is lost, or SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dask_worker::builtins::builtin_docs;
use dask_worker::{WorkerConfig, WorkerHandle};

const USAGE: &str = "\
usage: dask-worker tcp://HOST:PORT [options]

Connects to the scheduler at tcp://HOST:PORT, registers, and runs tasks
until the scheduler closes it or SIGINT/SIGTERM (exit 0; a lost or broken
scheduler connection exits 1).

options:
  --nthreads N           tasks run at once (default: number of CPUs)
  --name NAME            unique worker name (default: worker-<host>-<pid>-0)
  --resources R=N,...    resources offered, e.g. GPU=2,MEM=1e9
  --memory-limit BYTES   memory limit announced to the scheduler
  --host H               host the data listener binds (default 127.0.0.1)
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

enum Command {
    Run(WorkerConfig),
    ListFunctions,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut config = WorkerConfig::default();
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
    Ok(Command::Run(config))
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
    let config = match parse_args(&args) {
        Ok(Command::Run(config)) => config,
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
    let scheduler = config.scheduler.clone();
    let worker = match WorkerHandle::start(config) {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("dask-worker: cannot register with {scheduler}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Worker {} at {}, connected to {scheduler}",
        worker.name(),
        worker.address()
    );
    while !worker.is_finished() && !SIGNALLED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if SIGNALLED.load(Ordering::SeqCst) && !worker.is_finished() {
        worker.stop();
        return ExitCode::SUCCESS;
    }
    match worker.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dask-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
