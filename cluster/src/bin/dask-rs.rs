//! `dask-rs`: run task graph files and look at clusters.
//!
//! ```text
//! dask-rs run GRAPH [--scheduler threads|sync|cluster] [--threads T] [--workers N]
//!                                                 in this process (threads: the default)
//! dask-rs submit GRAPH [--scheduler ADDRESS]      on a running cluster
//! dask-rs info [--scheduler ADDRESS] [--json]     workers and tasks
//! dask-rs credentials export --worker FILE         a role's file for another machine
//! dask-rs credentials tls [--host H]...            a cluster CA and certificate
//! dask-rs credentials dashboard-url [--dashboard URL] [--token-only]
//!                                                 the dashboard's URL with its token
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

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dask_client::{Client, ClientOptions, Error, Future, WaitingKey};
use dask_cluster::graph_file::{self, GraphFile};
use dask_cluster::LocalCluster;
use dask_core::messages::{ClusterInfoReply, Role, TaskSpec};
use dask_core::Key;
use dask_inprocess::{OnError, Options, Plan, Progress, Scheduler};
use dask_net::cli::SecurityArgs;
use dask_worker::FunctionRegistry;

/// How often the progress bar is redrawn (and new reasons why keys wait
/// are looked for).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Keys named per reason why they wait, before "and N more".
const WAITING_KEYS_SHOWN: usize = 5;
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
    #[command(subcommand, after_help = dask_net::cli::SECURE_CLUSTER_HELP)]
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
    /// Print the dashboard's URL with its token (open it in a browser: the
    /// token sets a cookie for the page); --token-only prints the token
    /// alone, for Prometheus (a credentials_file of bearer authorization)
    /// or `curl -H "Authorization: Bearer TOKEN" .../metrics`
    DashboardUrl(DashboardUrlArgs),
}

#[derive(Args)]
struct DashboardUrlArgs {
    /// Where the scheduler serves its dashboard: HOST:PORT or
    /// http://HOST:PORT[/PREFIX] (as in the URL it printed)
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8797")]
    dashboard: String,
    /// Print the token alone, on one line
    #[arg(long)]
    token_only: bool,
    /// The cluster's credentials file (its client secret makes the token)
    /// [default: as dask-scheduler finds it]
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
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
    /// Print no progress (a bar on a terminal, else a line every few
    /// seconds on stderr); why keys wait is still printed
    #[arg(long, short)]
    quiet: bool,
    /// When stderr is not a terminal, print a progress line this often
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0,
          value_parser = positive_seconds)]
    progress_every: f64,
}

impl GraphArgs {
    /// How often a progress line is printed when stderr is not a terminal;
    /// `None` with --quiet.
    fn progress(&self) -> Option<Duration> {
        (!self.quiet).then(|| Duration::from_secs_f64(self.progress_every))
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "expected a number of seconds above 0 (at most 86400), found {s:?}"
        )),
    }
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
    /// List every task that waits, with why (pages through them all)
    #[arg(long)]
    waiting: bool,
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
        Command::Credentials(CredentialsCommand::DashboardUrl(a)) => dashboard_url(&a),
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
            run_in_process(file, Scheduler::Threads(threads), a.graph.progress())
        }
        RunOn::Sync => run_in_process(file, Scheduler::Sync, a.graph.progress()),
        RunOn::Cluster => run_on_cluster(a, file),
    }
}

/// Runs the graph with the in-process scheduler; prints as on a cluster.
fn run_in_process(
    file: GraphFile,
    scheduler: Scheduler,
    progress: Option<Duration>,
) -> Result<(), Failure> {
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
    let reporter = Reporter::new(progress);
    let draw = |p: Progress| reporter.update(p.done, p.total, 0);
    let options = Options {
        scheduler,
        on_error: OnError::Continue,
        progress: Some(&draw),
        ..Options::default()
    };
    let results = dask_inprocess::run(plan, &FunctionRegistry::builtins(), &options);
    let erred = results.iter().filter(|(_, r)| r.is_err()).count();
    reporter.finish(total, total, erred);
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
    execute(&client, file, a.graph.progress())
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

/// `dask-rs credentials dashboard-url`: the token is HMAC-SHA256 of the
/// client secret (`dask_core::auth::dashboard_token`), as the scheduler
/// derives it; it opens the dashboard and `/metrics`, nothing else.
fn dashboard_url(a: &DashboardUrlArgs) -> Result<(), Failure> {
    use dask_net::credentials;
    let found = credentials::discover(a.credentials.as_deref()).map_err(failed)?;
    let Some(file) = found else {
        return Err(failed(
            "no credentials file: the token comes from the cluster's client secret, in the file \
             dask-scheduler created (~/.dask-rs/credentials.json on its machine); give \
             --credentials FILE. (A scheduler started with --no-auth-anyone-can-connect serves \
             its dashboard with no token.)",
        ));
    };
    let Some(secret) = file.credentials.client.as_ref() else {
        return Err(failed(format!(
            "{} holds no client secret, which the dashboard token is made from: use the \
             scheduler's file or a client's (dask-rs credentials export --client FILE)",
            file.path.display()
        )));
    };
    let token = dask_core::auth::dashboard_token(secret);
    if a.token_only {
        println!("{token}");
        return Ok(());
    }
    let base = a.dashboard.trim().trim_end_matches('/');
    let base = base.strip_suffix("/status").unwrap_or(base);
    let scheme = if base.contains("://") { "" } else { "http://" };
    println!("{scheme}{base}/status?token={token}");
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
    execute(&client, file, a.graph.progress())
}

/// Graphs of at most this many tasks want every task, so progress counts
/// each; larger ones want only their wanted keys (a want per task cost the
/// scheduler and this client memory and time per task: 10M futures were
/// ~8 GB here).
const PROGRESS_PER_TASK_MAX: usize = 100_000;

/// Submits the graph, waits (showing progress and why keys wait), prints
/// the results sorted by key and the errors on stderr.
///
/// A graph of at most [`PROGRESS_PER_TASK_MAX`] tasks has every task
/// wanted, so progress counts this graph's own tasks (not other clients');
/// a task that is not in `wanted` is released as soon as it is done, so
/// its result is freed as it would have been. A larger graph wants only
/// its wanted keys, and progress counts those.
fn execute(client: &Client, file: GraphFile, progress: Option<Duration>) -> Result<(), Failure> {
    let mut wanted = file.wanted;
    wanted.sort();
    wanted.dedup();
    let tasks = file.graph.into_tasks();
    let Some(every) = every_key(&tasks, &wanted) else {
        if progress.is_some() {
            eprintln!(
                "dask-rs: {} tasks (over {PROGRESS_PER_TASK_MAX}): progress counts the {} wanted \
                 keys",
                tasks.len(),
                wanted.len()
            );
        }
        let futures = client.submit_tasks(tasks, wanted);
        let (finished, errors) = follow(futures, None, progress);
        return print_results(client, finished, errors);
    };
    let wanted_set: HashSet<Key> = wanted.into_iter().collect();
    let futures = client.submit_tasks(tasks, every);
    let (finished, errors) = follow(futures, Some(&wanted_set), progress);
    print_results(client, finished, errors)
}

/// Every key of the graph and the wanted keys it does not define, or
/// `None` for a graph of more than [`PROGRESS_PER_TASK_MAX`] tasks (only
/// its wanted keys are asked for).
fn every_key(tasks: &[TaskSpec], wanted: &[Key]) -> Option<Vec<Key>> {
    if tasks.len() > PROGRESS_PER_TASK_MAX {
        return None;
    }
    let mut every: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    let defined: HashSet<&Key> = tasks.iter().map(|t| &t.key).collect();
    let elsewhere: Vec<Key> = wanted
        .iter()
        .filter(|k| !defined.contains(k))
        .cloned()
        .collect();
    every.extend(elsewhere);
    Some(every)
}

/// Prints the finished keys' results sorted by key, and fails with the
/// errors when there are any.
fn print_results(
    client: &Client,
    finished: Vec<Future>,
    errors: Vec<(Key, Error)>,
) -> Result<(), Failure> {
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

/// Follows the graph's futures until all are done: draws progress (see
/// [`Reporter`]), prints why keys wait as soon as the scheduler says,
/// drops the futures of keys not wanted once done (`None`: every key is).
/// Returns the wanted futures that finished, sorted by key, and the wanted
/// keys' errors.
fn follow(
    futures: Vec<Future>,
    wanted: Option<&HashSet<Key>>,
    progress: Option<Duration>,
) -> (Vec<Future>, Vec<(Key, Error)>) {
    let total = futures.len();
    let is_wanted = |k: &Key| wanted.is_none_or(|w| w.contains(k));
    // The graph's own keys, to tell a key waiting on another of them
    // apart; when only the wanted keys are followed (a large graph) every
    // waiting key is told.
    let all: HashSet<Key> = match wanted {
        Some(_) => futures.iter().map(|f| f.key().clone()).collect(),
        None => HashSet::new(),
    };
    let reporter = Reporter::new(progress);
    let mut pending = futures;
    let mut finished: Vec<Future> = Vec::new();
    let mut errors: Vec<(Key, Error)> = Vec::new();
    let (mut done, mut erred) = (0usize, 0usize);
    let mut told: HashSet<Key> = HashSet::new();
    loop {
        let mut still = Vec::with_capacity(pending.len());
        let mut newly_waiting: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for f in pending {
            if !f.done() {
                if let Some(w) = f.waiting() {
                    // A key of this graph that waits on another of its
                    // tasks: that task is told about itself.
                    let own = w.task.as_ref().is_some_and(|t| all.contains(t));
                    if told.insert(f.key().clone()) && !own {
                        newly_waiting
                            .entry(w.to_string())
                            .or_default()
                            .push(f.key().clone());
                    }
                }
                still.push(f);
                continue;
            }
            done += 1;
            match f.wait() {
                Ok(()) if is_wanted(f.key()) => finished.push(f),
                Ok(()) => {}
                Err(e) => {
                    erred += 1;
                    if is_wanted(f.key()) {
                        errors.push((f.key().clone(), e));
                    }
                }
            }
        }
        pending = still;
        if !newly_waiting.is_empty() {
            reporter.break_line();
            print_waiting(&newly_waiting);
        }
        if pending.is_empty() {
            break;
        }
        reporter.update(done, total, erred);
        std::thread::sleep(PROGRESS_INTERVAL);
    }
    reporter.finish(done, total, erred);
    finished.sort_by(|a, b| a.key().cmp(b.key()));
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    (finished, errors)
}

/// Progress on stderr, for a cluster's run and the in-process one alike:
/// on a terminal a bar redrawn at most every [`PROGRESS_INTERVAL`];
/// otherwise a line every `every` (none for a run shorter than that:
/// scripts see only what matters); nothing when `every` is `None`
/// (--quiet). It may be told from several threads at once.
struct Reporter {
    every: Option<Duration>,
    tty: bool,
    started: Instant,
    drawn: Mutex<Drawn>,
}

#[derive(Default)]
struct Drawn {
    /// When the bar was drawn or the line printed last.
    last: Option<Instant>,
    /// Lines printed (not a terminal).
    lines: usize,
    /// The bar is on the current line of the terminal.
    bar_shown: bool,
}

impl Reporter {
    fn new(every: Option<Duration>) -> Reporter {
        Reporter {
            every,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: Mutex::new(Drawn::default()),
        }
    }

    fn update(&self, done: usize, total: usize, erred: usize) {
        let Some(every) = self.every else {
            return;
        };
        // Another thread is drawing: this update is not needed.
        let Ok(mut drawn) = self.drawn.try_lock() else {
            return;
        };
        let period = if self.tty { PROGRESS_INTERVAL } else { every };
        let since = drawn.last.unwrap_or(self.started);
        if since.elapsed() < period {
            return;
        }
        self.draw(&mut drawn, done, total, erred);
    }

    /// The last update: the bar at its end, or the last line when lines
    /// were printed.
    fn finish(&self, done: usize, total: usize, erred: usize) {
        if self.every.is_none() {
            return;
        }
        let Ok(mut drawn) = self.drawn.lock() else {
            return;
        };
        if self.tty || drawn.lines > 0 {
            self.draw(&mut drawn, done, total, erred);
        }
        if drawn.bar_shown {
            eprintln!();
            drawn.bar_shown = false;
        }
    }

    /// Ends the bar's line, so that a message printed next has its own.
    fn break_line(&self) {
        if let Ok(mut drawn) = self.drawn.lock() {
            if drawn.bar_shown {
                eprintln!();
                drawn.bar_shown = false;
            }
        }
    }

    fn draw(&self, drawn: &mut Drawn, done: usize, total: usize, erred: usize) {
        let line = progress_line(done, total, erred, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        if self.tty {
            let filled = (done * PROGRESS_WIDTH)
                .checked_div(total)
                .unwrap_or(PROGRESS_WIDTH)
                .min(PROGRESS_WIDTH);
            let _ = write!(
                err,
                "\r[{}{}] {line}",
                "#".repeat(filled),
                ".".repeat(PROGRESS_WIDTH - filled)
            );
            drawn.bar_shown = true;
        } else {
            let _ = writeln!(err, "dask-rs: {line}");
            drawn.lines += 1;
        }
        let _ = err.flush();
        drawn.last = Some(Instant::now());
    }
}

/// `12/50 tasks, 2 erred, 3.4 tasks/s, 12 s elapsed`.
fn progress_line(done: usize, total: usize, erred: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let errors = if erred > 0 {
        format!(", {erred} erred")
    } else {
        String::new()
    };
    let elapsed = if secs < 60.0 {
        format!("{secs:.0} s")
    } else {
        format!("{}:{:02}", elapsed.as_secs() / 60, elapsed.as_secs() % 60)
    };
    format!("{done}/{total} tasks{errors}, {rate:.1} tasks/s, {elapsed} elapsed")
}

/// `dask-rs: waiting: KEY: REASON`, a few keys per reason.
fn print_waiting(by_reason: &BTreeMap<String, Vec<Key>>) {
    let mut err = std::io::stderr().lock();
    for (why, keys) in by_reason {
        let shown: Vec<&str> = keys
            .iter()
            .take(WAITING_KEYS_SHOWN)
            .map(Key::as_str)
            .collect();
        let more = keys.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = writeln!(err, "dask-rs: waiting: {}{more}: {why}", shown.join(", "));
    }
}

/// Most tasks `dask-rs info` pages through (without --waiting) to name
/// the keys that cannot run.
const INFO_WAITING_SCAN: usize = 10_000;

/// The tasks that wait, with why: every page (`all`), or the first pages
/// up to [`INFO_WAITING_SCAN`] tasks. `None` when the scheduler cannot
/// tell (dask/1.0).
fn waiting_tasks(client: &Client, state: Option<&str>, all: bool) -> Option<Vec<WaitingKey>> {
    let mut tasks = Vec::new();
    let mut cursor = 0;
    loop {
        let (page, next) = client.waiting_keys(state, cursor, Some(1000)).ok()?;
        tasks.extend(page);
        match next {
            Some(n) if all || tasks.len() < INFO_WAITING_SCAN => cursor = n,
            _ => return Some(tasks),
        }
    }
}

fn info(a: &InfoArgs) -> Result<(), Failure> {
    let client = connect(&a.scheduler)?;
    let info = client.cluster_info().map_err(failed)?;
    let waiting = if a.waiting {
        waiting_tasks(&client, None, true)
    } else if info.tasks.get("no-worker").copied().unwrap_or(0) > 0 {
        waiting_tasks(&client, Some("no-worker"), false)
    } else {
        Some(Vec::new())
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut json = info_json(client.address(), &info);
        if let Some(w) = &waiting {
            json["waiting"] = w
                .iter()
                .map(|t| {
                    serde_json::json!({"key": t.key.as_str(), "state": t.state,
                                       "reason": t.reason, "message": t.message})
                })
                .collect();
        }
        let _ = writeln!(out, "{json}");
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
    let count = |s: &str| info.tasks.get(s).copied().unwrap_or(0);
    if count("waiting") + count("queued") + count("no-worker") == 0 {
        return Ok(());
    }
    let _ = writeln!(out, "not running yet, and why:");
    if count("waiting") > 0 {
        let _ = writeln!(
            out,
            "  {} waiting: for their inputs to be computed",
            count("waiting")
        );
    }
    if count("queued") > 0 {
        let _ = writeln!(
            out,
            "  {} queued: ready, for a free thread on a worker",
            count("queued")
        );
    }
    match &waiting {
        None => {
            let _ = writeln!(
                out,
                "  {} no-worker: no connected worker can run them (this scheduler speaks \
                 dask/1.0: it cannot say which keys or why)",
                count("no-worker")
            );
        }
        Some(tasks) if !a.waiting => {
            let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for t in tasks.iter().filter(|t| t.state == "no-worker") {
                by_reason
                    .entry(&t.message)
                    .or_default()
                    .push(t.key.as_str());
            }
            let _ = writeln!(
                out,
                "  {} no-worker: no connected worker can run them:",
                count("no-worker")
            );
            for (why, keys) in by_reason {
                let shown: Vec<&str> = keys.iter().take(10).copied().collect();
                let more = keys.len() - shown.len();
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                let _ = writeln!(out, "    {}{more}: {why}", shown.join(", "));
            }
            let _ = writeln!(out, "  (dask-rs info --waiting lists every waiting task)");
        }
        Some(tasks) => {
            let _ = writeln!(out, "every waiting task:");
            for t in tasks {
                let _ = writeln!(out, "  {} {} {}: {}", t.key, t.state, t.reason, t.message);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::client::task_spec;

    fn specs(n: usize) -> Vec<TaskSpec> {
        (0..n)
            .map(|i| task_spec(Key(format!("t-{i}")), "inc", &[i.into()], &[]))
            .collect()
    }

    #[test]
    fn a_small_graph_wants_every_task_and_a_large_one_only_its_wanted_keys() {
        let wanted = vec![Key::from("t-1"), Key::from("elsewhere")];
        let every = every_key(&specs(3), &wanted).expect("small: every key");
        let names: Vec<&str> = every.iter().map(Key::as_str).collect();
        assert_eq!(names, ["t-0", "t-1", "t-2", "elsewhere"]);
        assert_eq!(every_key(&specs(PROGRESS_PER_TASK_MAX + 1), &wanted), None);
    }

    #[test]
    fn a_progress_line_says_done_of_total_errors_rate_and_elapsed_time() {
        let line = |done, erred, secs| progress_line(done, 50, erred, Duration::from_secs(secs));
        assert_eq!(line(12, 0, 4), "12/50 tasks, 3.0 tasks/s, 4 s elapsed");
        assert_eq!(
            line(12, 2, 4),
            "12/50 tasks, 2 erred, 3.0 tasks/s, 4 s elapsed"
        );
        assert_eq!(line(50, 0, 125), "50/50 tasks, 0.4 tasks/s, 2:05 elapsed");
        assert_eq!(line(0, 0, 0), "0/50 tasks, 0.0 tasks/s, 0 s elapsed");
    }
}
