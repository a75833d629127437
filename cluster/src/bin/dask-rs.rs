//! `dask-rs`: run task graph files and look at clusters.
//!
//! ```text
//! dask-rs run GRAPH [--scheduler threads|sync|cluster] [--threads T] [--workers N]
//!                                                 in this process (threads: the default)
//! dask-rs submit GRAPH [--scheduler ADDRESS]      on a running cluster
//! dask-rs info [--scheduler ADDRESS] [--json]     workers and tasks
//! dask-rs credentials export --worker FILE         a role's file for another machine
//! dask-rs credentials tls [--host H]...            a cluster CA and certificate
//! ```
//!
//! `submit` and `info` prove the cluster's client secret, found as
//! `dask_net::cli::SecurityArgs` says (the file dask-scheduler created on
//! this machine with no flag).
//!
//! Named `dask-rs`, not `dask`: Python Dask installs a `dask` command, and
//! a virtualenv puts it first on PATH (docs/guide.md, "Living beside
//! Python Dask"). GRAPH is a file (`-`: standard input), JSON or msgpack
//! (spec/PROTOCOL.md "Graph file"). Each wanted key's result is printed in
//! JSON form as `key = value`, sorted by key. Exit status: 0 when every
//! wanted key finished, 1 when some task failed (its error on stderr), the
//! file was refused or the cluster could not be reached, 2 on a usage
//! error.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dask_client::{Client, ClientOptions, Error, Future};
use dask_cluster::graph_file::{self, GraphFile};
use dask_cluster::LocalCluster;
use dask_core::messages::{ClusterInfoReply, Role};
use dask_core::Key;
use dask_inprocess::{OnError, Options, Plan, Progress, Scheduler};
use dask_net::cli::SecurityArgs;
use dask_worker::FunctionRegistry;

/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Width of the progress bar in characters.
const PROGRESS_WIDTH: usize = 40;
/// How long a client waits for a scheduler file to appear.
const SCHEDULER_FILE_WAIT: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(
    name = "dask-rs",
    version = concat!(env!("CARGO_PKG_VERSION"), " (protocol dask/1)"),
    about = "Run task graph files on dask-rs clusters, and look at clusters",
    after_help = "GRAPH: a JSON (or .msgpack/.mpk) file {\"tasks\": [...], \"wanted\": [...]}, \
                  or - for standard input; see docs/guide.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a graph in this process: on threads (no sockets), on this thread
    /// alone, or on a cluster started inside the command
    Run(RunArgs),
    /// Run a graph on a running cluster
    Submit(SubmitArgs),
    /// Describe a running cluster: workers, clients, tasks by state
    Info(InfoArgs),
    /// Files of the cluster's credentials and TLS certificates
    #[command(subcommand)]
    Credentials(CredentialsCommand),
}

#[derive(Subcommand)]
enum CredentialsCommand {
    /// Write one role's secret to a new owner-only file, for a machine
    /// that must not hold more (a worker's file cannot submit work); copy
    /// it there and give it as --credentials FILE or DASK_CREDENTIALS
    Export(ExportArgs),
    /// Make a cluster CA and a certificate every process uses (name
    /// dask-internal, localhost and each --host), in DIR: ca.pem and
    /// cluster.pem (certificate and key, owner-only); then give every
    /// program --tls-ca-file DIR/ca.pem --tls-cert DIR/cluster.pem
    Tls(TlsArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// Write the client secret to FILE
    #[arg(long, value_name = "FILE", required_unless_present = "worker")]
    client: Option<PathBuf>,
    /// Write the worker secret to FILE
    #[arg(long, value_name = "FILE")]
    worker: Option<PathBuf>,
    /// The scheduler's credentials file [default: as dask-scheduler finds it]
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
}

#[derive(Args)]
struct TlsArgs {
    /// Where to write ca.pem and cluster.pem [default: tls/ beside the
    /// default credentials file, e.g. ~/.dask-rs/tls]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// A host name or IP address the certificate also names (repeat)
    #[arg(long, value_name = "HOST")]
    host: Vec<String>,
    /// Validity of the certificate and CA, in days
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    days: u32,
}

#[derive(Args)]
struct GraphArgs {
    /// The graph file; - reads standard input
    #[arg(value_name = "GRAPH")]
    path: String,
    /// Refuse a graph file with fields this version does not know (by
    /// default they are ignored with a warning)
    #[arg(long)]
    strict: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    graph: GraphArgs,
    /// Where the tasks run: threads of this process (no scheduler, no
    /// sockets), sync (one at a time on the main thread, for a debugger),
    /// or cluster (a scheduler and workers inside the command, on loopback)
    /// [default: threads; cluster when --workers is given]
    #[arg(long, value_enum)]
    scheduler: Option<RunOn>,
    /// Workers of the embedded cluster (--scheduler cluster)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    workers: Option<u32>,
    /// Threads: of this process (--scheduler threads; default: one per
    /// core), or of each embedded worker (--scheduler cluster)
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
}

/// Where `dask-rs run` runs the tasks (Dask's `scheduler=` names).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RunOn {
    Threads,
    Sync,
    Cluster,
}

#[derive(Args)]
struct SchedulerArgs {
    /// The scheduler, tcp://HOST:PORT [default: $DASK_SCHEDULER_ADDRESS]
    #[arg(long, value_name = "ADDRESS", conflicts_with = "scheduler_file")]
    scheduler: Option<String>,
    /// Read the scheduler's address from the file `dask-scheduler
    /// --scheduler-file` writes (waiting up to 60 s for it)
    #[arg(long, value_name = "FILE")]
    scheduler_file: Option<PathBuf>,
    #[command(flatten)]
    security: SecurityArgs,
}

#[derive(Args)]
struct SubmitArgs {
    #[command(flatten)]
    graph: GraphArgs,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

#[derive(Args)]
struct InfoArgs {
    #[command(flatten)]
    scheduler: SchedulerArgs,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// A failure with the exit status it maps to.
struct Failure {
    status: u8,
    message: String,
}

fn failed(message: impl std::fmt::Display) -> Failure {
    Failure {
        status: 1,
        message: message.to_string(),
    }
}

fn usage(message: impl std::fmt::Display) -> Failure {
    Failure {
        status: 2,
        message: format!("error: {message}\n\nFor more information, try '--help'."),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run(&a),
        Command::Submit(a) => submit(&a),
        Command::Info(a) => info(&a),
        Command::Credentials(CredentialsCommand::Export(a)) => export(&a),
        Command::Credentials(CredentialsCommand::Tls(a)) => make_tls(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.status)
        }
    }
}

/// Reads the graph, warning about (or, with --strict, refusing) unknown
/// fields.
fn read_graph(a: &GraphArgs) -> Result<GraphFile, Failure> {
    let file = graph_file::read(&a.path).map_err(failed)?;
    if file.unknown_fields.is_empty() {
        return Ok(file);
    }
    let shown = if a.path == "-" {
        "standard input"
    } else {
        &a.path
    };
    let fields = file.unknown_fields.join(", ");
    if a.strict {
        return Err(failed(format!(
            "{shown}: unknown fields {fields} (a graph file has tasks and wanted, a task key, \
             function, args, kwargs, priority, resources, retries and workers): refused by --strict"
        )));
    }
    eprintln!(
        "dask-rs: warning: {shown}: unknown fields {fields} are ignored (a typo? --strict refuses them)"
    );
    Ok(file)
}

fn run(a: &RunArgs) -> Result<(), Failure> {
    let scheduler = match (a.scheduler, a.workers) {
        (None, Some(_)) => RunOn::Cluster,
        (None, None) => RunOn::Threads,
        (Some(RunOn::Cluster), _) => RunOn::Cluster,
        (Some(_), Some(_)) => return Err(usage("--workers is for --scheduler cluster")),
        (Some(other), None) => other,
    };
    if scheduler == RunOn::Sync && a.threads.is_some() {
        return Err(usage("--threads is for --scheduler threads or cluster"));
    }
    let file = read_graph(&a.graph)?;
    match scheduler {
        RunOn::Threads => {
            let threads = a.threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                |t| t as usize,
            );
            run_in_process(file, Scheduler::Threads(threads))
        }
        RunOn::Sync => run_in_process(file, Scheduler::Sync),
        RunOn::Cluster => run_on_cluster(a, file),
    }
}

/// Runs the graph with the in-process scheduler; prints as on a cluster.
fn run_in_process(file: GraphFile, scheduler: Scheduler) -> Result<(), Failure> {
    let mut wanted = file.wanted;
    wanted.sort();
    wanted.dedup();
    let plan = Plan::new(file.graph.into_tasks(), &wanted).map_err(|e| {
        failed(format!(
            "graph refused ({}, {}): {}",
            e.code.name(),
            e.code as u32,
            e.message
        ))
    })?;
    let total = plan.len();
    let bar = std::io::stderr().is_terminal().then(Bar::default);
    let draw = |p: Progress| {
        if let Some(bar) = &bar {
            bar.draw(p.done, p.total);
        }
    };
    let options = Options {
        scheduler,
        on_error: OnError::Continue,
        progress: Some(&draw),
        ..Options::default()
    };
    let results = dask_inprocess::run(plan, &FunctionRegistry::builtins(), &options);
    if let Some(bar) = &bar {
        bar.finish(total);
    }
    let mut out = std::io::stdout().lock();
    let mut errors: Vec<String> = Vec::new();
    for (key, result) in results {
        match result {
            Ok(value) => {
                let raw = dask_core::RawValue::from_value(&value);
                let json = dask_core::json::msgpack_to_json(raw.as_bytes())
                    .map(|j| j.to_string())
                    .unwrap_or_else(|e| format!("<undecodable: {e}>"));
                let _ = writeln!(out, "{key} = {json}");
            }
            // As a cluster's client says it (dask_client::Error).
            Err(dask_inprocess::Error::Task { error, cause, .. }) => {
                let raised_by = cause
                    .map(|c| format!(" (raised by {c})"))
                    .unwrap_or_default();
                errors.push(format!(
                    "{key}: RemoteError: {}: {}{raised_by}",
                    error.error_type, error.message
                ));
            }
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
    let _ = out.flush();
    if errors.is_empty() {
        return Ok(());
    }
    Err(failed(errors.join("\n")))
}

fn run_on_cluster(a: &RunArgs, file: GraphFile) -> Result<(), Failure> {
    let mut builder = LocalCluster::builder();
    if let Some(n) = a.workers {
        builder = builder.workers(n as usize);
    }
    if let Some(t) = a.threads {
        builder = builder.threads_per_worker(t as usize);
    }
    let cluster = builder
        .build()
        .map_err(|e| failed(format!("cannot start the local cluster: {e}")))?;
    let client = cluster.into_client().map_err(failed)?;
    execute(&client, file)
}

/// A progress bar on stderr, redrawn at most every [`PROGRESS_INTERVAL`]
/// (it may be told from several threads at once).
#[derive(Default)]
struct Bar {
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Bar {
    fn draw(&self, done: usize, total: usize) {
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < PROGRESS_INTERVAL) {
            return;
        }
        *last = Some(std::time::Instant::now());
        draw_bar(done, total);
    }

    fn finish(&self, total: usize) {
        draw_bar(total, total);
        let _ = writeln!(std::io::stderr());
    }
}

/// `[####....] done/total tasks` over the line.
fn draw_bar(done: usize, total: usize) {
    let mut err = std::io::stderr();
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
}

/// The scheduler's address: --scheduler, else --scheduler-file, else
/// $DASK_SCHEDULER_ADDRESS.
fn scheduler_address(a: &SchedulerArgs) -> Result<String, Failure> {
    if let Some(address) = &a.scheduler {
        return Ok(address.clone());
    }
    if let Some(path) = &a.scheduler_file {
        return dask_net::scheduler_file::read(path, SCHEDULER_FILE_WAIT).map_err(failed);
    }
    match std::env::var("DASK_SCHEDULER_ADDRESS") {
        Ok(address) if !address.is_empty() => Ok(address),
        _ => Err(usage(
            "no scheduler: give --scheduler tcp://HOST:PORT, --scheduler-file FILE, or set \
             DASK_SCHEDULER_ADDRESS",
        )),
    }
}

fn connect(a: &SchedulerArgs) -> Result<Client, Failure> {
    let address = scheduler_address(a)?;
    let options = ClientOptions {
        credentials: a
            .security
            .member_credentials(Role::Client)
            .map_err(failed)?,
        tls: a.security.tls().map_err(failed)?,
        ..ClientOptions::default()
    };
    Client::connect_with(&address, options).map_err(failed)
}

/// `dask-rs credentials export`.
fn export(a: &ExportArgs) -> Result<(), Failure> {
    use dask_net::credentials;
    let found = credentials::discover(a.credentials.as_deref()).map_err(failed)?;
    let Some(file) = found else {
        return Err(failed(
            "no credentials file to export from: start dask-scheduler once on this machine \
             (it creates one), or give --credentials FILE",
        ));
    };
    for (role, path) in [(Role::Client, &a.client), (Role::Worker, &a.worker)] {
        let Some(path) = path else { continue };
        let Some(own) = credentials::for_role(&file.credentials, role) else {
            return Err(failed(format!(
                "{} holds no {} secret",
                file.path.display(),
                role.as_str()
            )));
        };
        credentials::write_new(path, &own).map_err(failed)?;
        println!(
            "{} credentials written to {}",
            role.as_str(),
            path.display()
        );
    }
    Ok(())
}

/// `dask-rs credentials tls`.
fn make_tls(a: &TlsArgs) -> Result<(), Failure> {
    let dir = match &a.dir {
        Some(dir) => dir.clone(),
        None => dask_net::credentials::default_path()
            .and_then(|p| p.parent().map(|d| d.join("tls")))
            .ok_or_else(|| failed("neither HOME nor DASK_RS_HOME is set: give --dir DIR"))?,
    };
    let files = dask_net::tls::write_cluster_files(&dir, &a.host, a.days).map_err(failed)?;
    println!(
        "TLS files written: give every program --tls-ca-file {} --tls-cert {}",
        files.ca.display(),
        files.cert.display()
    );
    Ok(())
}

fn submit(a: &SubmitArgs) -> Result<(), Failure> {
    let file = read_graph(&a.graph)?;
    let client = connect(&a.scheduler)?;
    execute(&client, file)
}

/// Submits the graph, waits (drawing progress on a terminal), prints the
/// results sorted by key and the errors on stderr.
fn execute(client: &Client, file: GraphFile) -> Result<(), Failure> {
    let total = file.graph.len();
    let mut wanted = file.wanted;
    wanted.sort();
    wanted.dedup();
    let futures = client.submit_tasks(file.graph.into_tasks(), wanted);
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
        draw_bar(done, total);
        if all_done {
            break;
        }
        std::thread::sleep(PROGRESS_INTERVAL);
    }
    let _ = writeln!(err);
}

/// Why tasks in each not-yet-running state wait, as far as the states
/// tell (cluster-info reports counts per state, not keys or finer reasons).
const WAITING_REASONS: &[(&str, &str)] = &[
    (
        "waiting",
        "for dependencies still running, waiting or erred",
    ),
    ("queued", "ready, for a free thread on a worker"),
    (
        "no-worker",
        "for a worker that can run them: none connected offers the function, the resources or \
         matches the task's worker restriction",
    ),
];

fn info(a: &InfoArgs) -> Result<(), Failure> {
    let client = connect(&a.scheduler)?;
    let info = client.cluster_info().map_err(failed)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let _ = writeln!(out, "{}", info_json(client.address(), &info));
        return Ok(());
    }
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
    let waiting: Vec<(&str, u64, &str)> = WAITING_REASONS
        .iter()
        .filter_map(|&(state, why)| Some((state, *info.tasks.get(state)?, why)))
        .collect();
    if !waiting.is_empty() {
        let _ = writeln!(out, "not running yet, by reason:");
        for (state, n, why) in waiting {
            let _ = writeln!(out, "  {n} {state}: {why}");
        }
        let _ = writeln!(
            out,
            "  (the scheduler reports counts per state only, not which keys: dask/1.0 has no \
             request for them)"
        );
    }
    Ok(())
}

fn info_json(address: &str, info: &ClusterInfoReply) -> serde_json::Value {
    let workers: Vec<serde_json::Value> = info
        .workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "id": w.id,
                "name": w.name,
                "address": w.address,
                "nthreads": w.nthreads,
                "memory_limit": w.memory_limit,
                "resources": w.resources,
                "functions": w.functions,
                "processing": w.processing,
                "stored_keys": w.stored_keys,
                "stored_bytes": w.stored_bytes,
            })
        })
        .collect();
    serde_json::json!({
        "scheduler": address,
        "clients": info.clients,
        "workers": workers,
        "tasks": info.tasks,
    })
}
