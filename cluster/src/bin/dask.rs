//! `dask`: run task graph files and look at clusters.
//!
//! ```text
//! dask run GRAPH [--workers N] [--threads T]      on an embedded cluster
//! dask submit --scheduler tcp://HOST:PORT GRAPH   on a running cluster
//! dask info --scheduler tcp://HOST:PORT           workers and tasks
//! ```
//!
//! GRAPH is JSON, or msgpack when the file name ends in `.msgpack` or
//! `.mpk`: `{"tasks": [...], "wanted": [...]}` (wanted absent: every key
//! no other task depends on). Each wanted key's result is printed in JSON
//! form as `key = value`, sorted by key. Exit status: 0 when every wanted
//! key finished, 1 when some task failed (its error on stderr) or the
//! cluster could not be reached, 2 on a usage error.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use dask_client::{Client, Error, Future};
use dask_cluster::LocalCluster;
use dask_core::client::Graph;
use dask_core::Key;

const USAGE: &str = "usage:
  dask run GRAPH [--workers N] [--threads T]
  dask submit --scheduler tcp://HOST:PORT GRAPH
  dask info --scheduler tcp://HOST:PORT

GRAPH: a JSON (or .msgpack/.mpk) file {\"tasks\": [...], \"wanted\": [...]}";

/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Width of the progress bar in characters.
const PROGRESS_WIDTH: usize = 40;

/// A failure with the exit status it maps to.
struct Failure {
    status: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        status: 2,
        message: format!("{}\n\n{USAGE}", message.into()),
    }
}

fn failed(message: impl std::fmt::Display) -> Failure {
    Failure {
        status: 1,
        message: message.to_string(),
    }
}

/// Parsed command-line options.
#[derive(Default)]
struct Options {
    positional: Vec<String>,
    scheduler: Option<String>,
    workers: Option<usize>,
    threads: Option<usize>,
}

fn parse(args: &[String]) -> Result<Options, Failure> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, Failure> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        let number = |name: &str, v: String| -> Result<usize, Failure> {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| usage(format!("{name} takes a positive integer, not {v:?}")))
        };
        match flag {
            "--scheduler" => o.scheduler = Some(value(flag)?),
            "--workers" => o.workers = Some(number(flag, value(flag)?)?),
            "--threads" => o.threads = Some(number(flag, value(flag)?)?),
            f if f.starts_with("--") => return Err(usage(format!("unknown option {f}"))),
            _ => o.positional.push(a.clone()),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => parse(&args[1..]).and_then(|o| run(&o)),
        Some("submit") => parse(&args[1..]).and_then(|o| submit(&o)),
        Some("info") => parse(&args[1..]).and_then(|o| info(&o)),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("-V" | "--version") => {
            println!("dask {} (protocol dask/1)", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(other) => Err(usage(format!("unknown command {other:?}"))),
        None => Err(usage("no command given")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.status)
        }
    }
}

fn graph_path(o: &Options) -> Result<&str, Failure> {
    match o.positional.as_slice() {
        [path] => Ok(path),
        [] => Err(usage("no GRAPH file given")),
        _ => Err(usage("give exactly one GRAPH file")),
    }
}

fn read_graph(path: &str) -> Result<(Graph, Vec<Key>), Failure> {
    let bytes = std::fs::read(path).map_err(|e| failed(format!("cannot read {path}: {e}")))?;
    let parsed = if path.ends_with(".msgpack") || path.ends_with(".mpk") {
        Graph::from_msgpack(&bytes)
    } else {
        let text =
            String::from_utf8(bytes).map_err(|_| failed(format!("{path} is not UTF-8 JSON")))?;
        Graph::from_json(&text)
    };
    parsed.map_err(|e| failed(format!("{path}: {e}")))
}

fn run(o: &Options) -> Result<(), Failure> {
    if o.scheduler.is_some() {
        return Err(usage(
            "`dask run` starts its own cluster: use `dask submit --scheduler`",
        ));
    }
    let (graph, wanted) = read_graph(graph_path(o)?)?;
    let mut builder = LocalCluster::builder();
    if let Some(n) = o.workers {
        builder = builder.workers(n);
    }
    if let Some(t) = o.threads {
        builder = builder.threads_per_worker(t);
    }
    let cluster = builder
        .build()
        .map_err(|e| failed(format!("cannot start the local cluster: {e}")))?;
    let client = cluster.into_client().map_err(failed)?;
    execute(&client, graph, wanted)
}

fn connect(o: &Options) -> Result<Client, Failure> {
    let address = o
        .scheduler
        .as_deref()
        .ok_or_else(|| usage("--scheduler tcp://HOST:PORT is required"))?;
    Client::connect(address).map_err(failed)
}

fn submit(o: &Options) -> Result<(), Failure> {
    if o.workers.is_some() || o.threads.is_some() {
        return Err(usage("--workers/--threads only apply to `dask run`"));
    }
    let (graph, wanted) = read_graph(graph_path(o)?)?;
    let client = connect(o)?;
    execute(&client, graph, wanted)
}

/// Submits the graph, waits (drawing progress on a terminal), prints the
/// results sorted by key and the errors on stderr.
fn execute(client: &Client, graph: Graph, wanted: Vec<Key>) -> Result<(), Failure> {
    let total = graph.len();
    let mut wanted = wanted;
    wanted.sort();
    wanted.dedup();
    let futures = client.submit_tasks(graph.into_tasks(), wanted);
    if std::io::stdout().is_terminal() {
        show_progress(client, &futures, total);
    }
    let mut errors: Vec<(Key, Error)> = Vec::new();
    let mut finished: Vec<Future> = Vec::new();
    for f in futures {
        match f.wait() {
            Ok(()) => finished.push(f),
            Err(e) => errors.push((f.key().clone(), e)),
        }
    }
    let values = client.gather_raw(&finished).map_err(failed)?;
    let mut out = std::io::stdout().lock();
    for (f, raw) in finished.iter().zip(&values) {
        let json = dask_core::json::msgpack_to_json(raw.as_bytes())
            .map(|j| j.to_string())
            .unwrap_or_else(|e| format!("<undecodable: {e}>"));
        let _ = writeln!(out, "{} = {json}", f.key());
    }
    let _ = out.flush();
    if errors.is_empty() {
        return Ok(());
    }
    let message = errors
        .iter()
        .map(|(k, e)| format!("{k}: {e}"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(failed(message))
}

/// Draws a bar on stderr until every wanted key is done. Progress is the
/// share of submitted tasks that no longer wait or run, per cluster-info.
fn show_progress(client: &Client, futures: &[Future], total: usize) {
    let mut err = std::io::stderr();
    loop {
        let all_done = futures.iter().all(Future::done);
        let remaining: u64 = match client.cluster_info() {
            Ok(info) => info
                .tasks
                .iter()
                .filter(|(state, _)| {
                    matches!(
                        state.as_str(),
                        "released" | "waiting" | "no-worker" | "queued" | "processing"
                    )
                })
                .map(|(_, n)| *n)
                .sum(),
            Err(_) => break,
        };
        let done = if all_done {
            total
        } else {
            total.saturating_sub(remaining as usize)
        };
        let filled = (done * PROGRESS_WIDTH)
            .checked_div(total)
            .unwrap_or(PROGRESS_WIDTH);
        let _ = write!(
            err,
            "\r[{}{}] {done}/{total} tasks",
            "#".repeat(filled),
            ".".repeat(PROGRESS_WIDTH - filled.min(PROGRESS_WIDTH))
        );
        let _ = err.flush();
        if all_done {
            break;
        }
        std::thread::sleep(PROGRESS_INTERVAL);
    }
    let _ = writeln!(err);
}

fn info(o: &Options) -> Result<(), Failure> {
    if !o.positional.is_empty() {
        return Err(usage("`dask info` takes no positional argument"));
    }
    let client = connect(o)?;
    let info = client.cluster_info().map_err(failed)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "scheduler: {}", client.address());
    let _ = writeln!(out, "clients: {}", info.clients);
    let _ = writeln!(out, "workers: {}", info.workers.len());
    for w in &info.workers {
        let _ = writeln!(
            out,
            "  {} {} threads={} functions={} processing={} stored={} keys / {} bytes",
            w.name,
            w.address,
            w.nthreads,
            w.functions.len(),
            w.processing,
            w.stored_keys,
            w.stored_bytes
        );
    }
    let total: u64 = info.tasks.values().sum();
    let _ = writeln!(out, "tasks: {total}");
    for (state, n) in &info.tasks {
        let _ = writeln!(out, "  {state}: {n}");
    }
    Ok(())
}
