//! `dask-conformance`: runs the dask/1 conformance cases against a worker,
//! or against a client through its test harness. See `spec/CONFORMANCE.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use dask_conformance::auth::RunnerAuth;
use dask_conformance::case::{self, Case};
use dask_conformance::lint;
use dask_conformance::report::{self, Totals};
use dask_conformance::session::{run_case, CaseOutcome, RunOptions};
use dask_conformance::tls::RunnerTls;

const USAGE: &str = "\
dask-conformance: proves that a worker, or a client, speaks dask/1

USAGE:
    dask-conformance worker [OPTIONS] -- CMD [ARGS...]
    dask-conformance client [OPTIONS] -- CMD [ARGS...]
    dask-conformance lint [--cases DIR] [--protocol PROTOCOL.md]
    dask-conformance schema

worker: the runner plays the scheduler (and a peer worker holding data),
starts CMD once per case and plays the case against it. In CMD and ARGS,
{scheduler} becomes the address to join (tcp://127.0.0.1:PORT), {nthreads}
the thread count the case asks for, {name} a unique worker name; the
same values are in DASK_SCHEDULER_ADDRESS, DASK_NTHREADS, DASK_WORKER_NAME.

client: the runner plays the scheduler; CMD is the client's test harness,
which connects to {scheduler} and takes driver commands on stdin, one JSON
object a line, answering on stdout (the protocol is in CONFORMANCE.md).

OPTIONS (worker and client):
    --case PATTERN       run only matching cases (repeatable): an ID, an ID
                         prefix such as dask-1/compute, or a glob with *
    --skip PATTERN       do not run matching cases (repeatable)
    --strict             SHOULD failures also fail the run
    --dryrun             list the selected cases and exit
    --report FILE        write a report: JUnit XML if FILE ends in .xml, else JSON
    --junit FILE         write a JUnit XML report whatever FILE's name
    --cases DIR          read cases from DIR instead of the built-in ones
    --timeout-scale F    multiply every timeout and window by F (default 1)
    --verbose            print the transcript of passing cases too
    --auth               (worker) run with dask/1.1 authentication: the runner
                         makes a worker secret and writes it where dask-rs
                         programs find it with no flag (DASK_RS_HOME, a
                         directory of the run's own, holds credentials.json;
                         the file's path is also {credentials}), and gives
                         it in hex as {worker_secret} / DASK_WORKER_SECRET
                         for other workers; it requires the worker's proof
                         on every connection (a worker that skips or fakes
                         it is refused with 3003); the cases marked auth
                         run only then. (client) the file also holds a
                         client secret, whose proof the runner requires
                         of the client
    --tls                (worker) every connection over TLS (mutual): the
                         runner makes a CA and a certificate for the run,
                         listens on tls://, and gives the worker the files
                         as {tls_ca_file} / DASK_TLS_CA_FILE and {tls_cert} /
                         DASK_TLS_CERT (certificate and key; also {tls_key});
                         its data address must be tls:// too

Exit status: 0 when every MUST case passed (and with --strict every case),
1 when not, 2 on a usage or case-file error. The last line printed is
`N passed, M failed`.
";

struct Args {
    include: Vec<String>,
    skip: Vec<String>,
    strict: bool,
    dryrun: bool,
    report: Option<PathBuf>,
    junit: Option<PathBuf>,
    cases_dir: Option<PathBuf>,
    protocol: Option<PathBuf>,
    timeout_scale: f64,
    verbose: bool,
    auth: bool,
    tls: bool,
    command: Vec<String>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        include: Vec::new(),
        skip: Vec::new(),
        strict: false,
        dryrun: false,
        report: None,
        junit: None,
        cases_dir: None,
        protocol: None,
        timeout_scale: 1.0,
        verbose: false,
        auth: false,
        tls: false,
        command: Vec::new(),
    };
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--case" => a.include.push(value("--case")?),
            "--skip" => a.skip.push(value("--skip")?),
            "--strict" => a.strict = true,
            "--dryrun" | "--dry-run" => a.dryrun = true,
            "--report" => a.report = Some(value("--report")?.into()),
            "--junit" => a.junit = Some(value("--junit")?.into()),
            "--cases" => a.cases_dir = Some(value("--cases")?.into()),
            "--protocol" => a.protocol = Some(value("--protocol")?.into()),
            "--timeout-scale" => {
                let v = value("--timeout-scale")?;
                a.timeout_scale = v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f > 0.0)
                    .ok_or_else(|| format!("--timeout-scale takes a positive number, not {v:?}"))?;
            }
            "--verbose" | "-v" => a.verbose = true,
            "--auth" => a.auth = true,
            "--tls" => a.tls = true,
            "--" => {
                a.command = argv.by_ref().collect();
                break;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(a)
}

fn load(a: &Args) -> Result<Vec<Case>, String> {
    let cases = match &a.cases_dir {
        Some(dir) => case::load_dir(dir).map_err(|e| e.to_string())?,
        None => case::embedded().map_err(|e| e.to_string())?,
    };
    let protocol = match &a.protocol {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let problems = lint::lint(&cases, protocol.as_deref());
    if !problems.is_empty() {
        return Err(format!(
            "case files have problems:\n  {}",
            problems.join("\n  ")
        ));
    }
    Ok(cases)
}

fn run(a: Args, clients: bool) -> Result<bool, String> {
    let cases: Vec<Case> = load(&a)?
        .into_iter()
        .filter(|c| c.is_client() == clients)
        .collect();
    let (selected, mut skipped) = case::select(cases, &a.include, &a.skip);
    // Cases that check authentication need --auth; under --auth, cases
    // that play the handshake without it are skipped.
    let (selected, other_mode): (Vec<Case>, Vec<Case>) =
        selected.into_iter().partition(|c| match a.auth {
            true => c.worker.auth || !c.plays_a_handshake(),
            false => !c.worker.auth,
        });
    skipped.extend(other_mode);
    if a.dryrun {
        for c in &selected {
            println!(
                "{} [{}] {}  ({})",
                c.id,
                c.level.as_str(),
                c.description,
                c.spec
            );
        }
        for c in &skipped {
            println!(
                "{} [{}] {}  (skipped)",
                c.id,
                c.level.as_str(),
                c.description
            );
        }
        println!(
            "{} cases selected, {} skipped",
            selected.len(),
            skipped.len()
        );
        return Ok(true);
    }
    if a.command.is_empty() {
        let what = if clients { "client harness" } else { "worker" };
        return Err(format!("no {what} command: put it after --"));
    }
    if selected.is_empty() {
        return Err("no case matches the --case patterns".into());
    }
    println!(
        "dask-conformance {}: {} cases against `{}`",
        env!("CARGO_PKG_VERSION"),
        selected.len(),
        a.command.join(" ")
    );
    if a.tls && clients {
        return Err("--tls is for workers (client harnesses are given no TLS files)".into());
    }
    let auth = match a.auth {
        true => Some(std::sync::Arc::new(RunnerAuth::create().map_err(|e| {
            format!("cannot write the run's credentials file: {e}")
        })?)),
        false => None,
    };
    let tls = match a.tls {
        true => Some(std::sync::Arc::new(RunnerTls::create().map_err(|e| {
            format!("cannot make the run's TLS certificates: {e}")
        })?)),
        false => None,
    };
    let opts = RunOptions {
        command: a.command.clone(),
        timeout_scale: a.timeout_scale,
        auth,
        tls,
    };
    let mut outcomes: Vec<CaseOutcome> = Vec::new();
    for (i, c) in selected.iter().enumerate() {
        let o = run_case(c, &opts, i as u32 + 1);
        println!("{}", report::case_text(&o, a.verbose));
        outcomes.push(o);
    }
    for c in &skipped {
        let o = CaseOutcome::skipped(c);
        println!("{}", report::case_text(&o, false));
        outcomes.push(o);
    }
    let reports = [(a.report.as_ref(), false), (a.junit.as_ref(), true)];
    for (path, junit) in reports.into_iter().filter_map(|(p, j)| p.map(|p| (p, j))) {
        let text = if junit || path.extension().is_some_and(|e| e == "xml") {
            report::junit_report(&outcomes, a.strict)
        } else {
            report::json_report(&outcomes, &a.command, a.strict)
        };
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!("{}", report::summary_text(&outcomes, a.strict));
    Ok(!Totals::of(&outcomes).run_fails(a.strict))
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let sub = argv.next().unwrap_or_default();
    let result = match sub.as_str() {
        "worker" => parse(argv).and_then(|a| run(a, false)),
        "client" => parse(argv).and_then(|a| run(a, true)),
        "lint" => parse(argv).and_then(|a| {
            let n = load(&a)?.len();
            println!("{n} cases, no problems");
            Ok(true)
        }),
        "schema" => {
            print!("{}", case::schema());
            Ok(true)
        }
        "--version" | "-V" => {
            println!("dask-conformance {}", env!("CARGO_PKG_VERSION"));
            Ok(true)
        }
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            Ok(true)
        }
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("dask-conformance: {e}");
            ExitCode::from(2)
        }
    }
}
