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

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dask_client::{Client, ClientOptions};
use dask_cluster::graph_file::{self, GraphFile};
use dask_cluster::LocalCluster;
use dask_core::messages::Role;
use dask_inprocess::{OnError, Options, Plan, Progress, Scheduler};
use dask_net::cli::SecurityArgs;
use dask_worker::FunctionRegistry;

mod info;
mod progress;

use info::*;
use progress::*;

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
