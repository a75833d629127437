//! Playing one case against one freshly started worker.
//!
//! The session owns the runner's scheduler address, its fake peer, the
//! worker process and the connections; helper threads only read sockets
//! and hand events over a channel, so every check happens here, in step
//! order. Each wait is bounded by the step's timeout, and the worker is
//! killed when the case ends, whatever happened.
//!
//! Besides the steps, the session checks every message the worker sends:
//! each frame must be a valid dask/1 frame, the first message on a
//! connection must be `hello` (or an `error` refusing ours), and each op
//! must be one a worker sends on that connection. A breach fails the case
//! at once.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmpv::Value;
use serde_json::{json, Map, Value as Json};

use crate::auth::RunnerAuth;
use crate::case::{self, Case, Conn, ExitExpectation, Handshake, Level, Step};
use crate::peer::PeerServer;
use crate::process::{Launch, WorkerProcess};
use crate::tls::{ChannelBinding, RunnerTls};
use crate::transport::{self, Event, EventKind};
use crate::value::{self, answers, match_message, pattern_answers, render, Vars};

mod auth;
mod client;
mod expect;
mod local;
mod receive;
mod send;

/// How long the auto handshake waits for the worker's first `hello`
/// (process start-up included), in milliseconds before scaling.
pub const STARTUP_MS: u64 = 10_000;

/// The longest the session sleeps between looks at the worker process.
const PUMP_SLICE: Duration = Duration::from_millis(50);

/// How long a write to the worker may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// After the worker exits, how long events still in flight may arrive
/// before a waiting step gives up.
const EXIT_GRACE: Duration = Duration::from_millis(300);

/// Ops a worker may send on each connection.
const SCHEDULER_OPS: &[&str] = &[
    "hello",
    "auth-proof",
    "error",
    "close",
    "register-worker",
    "heartbeat",
    "task-finished",
    "task-erred",
    "steal-response",
    "data-stored",
    "add-keys",
    "missing-data",
    "data",
];
/// Ops a client may send to its scheduler.
const CLIENT_OPS: &[&str] = &[
    "hello",
    "auth-proof",
    "update-graph",
    "release-keys",
    "cancel-keys",
    "scatter",
    "gather",
    "who-has",
    "cluster-info",
    "publish-dataset",
    "unpublish-dataset",
    "get-dataset",
    "list-datasets",
    "heartbeat",
    "close",
    "error",
];
/// Ops a worker may send on its scheduler connection before `register-worker`.
const BEFORE_REGISTER_OPS: &[&str] = &[
    "hello",
    "auth-proof",
    "heartbeat",
    "close",
    "error",
    "register-worker",
];
const DATA_OPS: &[&str] = &["hello", "error", "close", "data", "busy"];
const PEER_OPS: &[&str] = &["hello", "auth-proof", "error", "close", "get-data"];

/// How the runner runs cases.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The worker's command: program and arguments, with placeholders.
    pub command: Vec<String>,
    /// Every timeout and window is multiplied by this (slow machines, valgrind).
    pub timeout_scale: f64,
    /// With `--auth`: the worker secret the worker is given, and proves.
    pub auth: Option<Arc<RunnerAuth>>,
    /// With `--tls`: the CA and certificate of the run; every connection
    /// is TLS.
    pub tls: Option<Arc<RunnerTls>>,
}

/// A case's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every step passed.
    Pass,
    /// A step failed.
    Fail,
    /// Not run (`--skip`), or not applicable (the worker does not offer
    /// the optional feature the case checks: its reason says so).
    Skip,
}

impl Status {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// What happened in one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case's ID.
    pub id: String,
    /// Its description.
    pub description: String,
    /// Its level.
    pub level: Level,
    /// Its spec section.
    pub spec: String,
    /// Its requirement.
    pub requirement: String,
    /// Pass, fail or skip.
    pub status: Status,
    /// Why it failed: the failing step and what was expected and seen.
    pub reason: Option<String>,
    /// Wall time.
    pub duration: Duration,
    /// Every message exchanged, one line each, in order.
    pub transcript: Vec<String>,
    /// The end of the worker's stdout.
    pub worker_stdout: String,
    /// The end of the worker's stderr.
    pub worker_stderr: String,
}

impl CaseOutcome {
    /// The outcome of a case that was not run.
    pub fn skipped(case: &Case) -> CaseOutcome {
        CaseOutcome {
            id: case.id.clone(),
            description: case.description.clone(),
            level: case.level,
            spec: case.spec.clone(),
            requirement: case.requirement.clone(),
            status: Status::Skip,
            reason: None,
            duration: Duration::ZERO,
            transcript: Vec::new(),
            worker_stdout: String::new(),
            worker_stderr: String::new(),
        }
    }
}

/// Runs one case: starts the worker, plays the steps, kills the worker.
/// `run` numbers the case within the run (used in the worker's name).
pub fn run_case(case: &Case, opts: &RunOptions, run: u32) -> CaseOutcome {
    let started = Instant::now();
    let mut outcome = CaseOutcome::skipped(case);
    let mut skip = None;
    let result = Session::start(case, opts, run).map(|mut s| {
        let r = s.play();
        s.finish();
        skip = s.skip.take();
        let (out, err) = s.worker.output();
        outcome.worker_stdout = out;
        outcome.worker_stderr = err;
        outcome.transcript = std::mem::take(&mut s.transcript);
        r
    });
    let result = result.and_then(|r| r);
    outcome.status = match (&result, &skip) {
        (Ok(()), Some(_)) => Status::Skip,
        (Ok(()), None) => Status::Pass,
        (Err(_), _) => Status::Fail,
    };
    outcome.reason = result.err().or(skip);
    outcome.duration = started.elapsed();
    outcome
}

/// One message received and not yet matched.
struct Received {
    at: Instant,
    value: Value,
    consumed: bool,
}

/// What arrived on one connection.
#[derive(Default)]
struct Inbox {
    messages: Vec<Received>,
    /// Why it closed, once it has.
    closed: Option<String>,
    /// Whether anything arrived yet (the first message must be hello).
    started: bool,
    /// Whether `register-worker` arrived (scheduler connection).
    registered: bool,
}

/// A line the client's harness printed, as a msgpack map (its JSON read in
/// the JSON form), and whether a step matched it yet.
struct OutputLine {
    value: Value,
    consumed: bool,
}

struct Session<'a> {
    case: &'a Case,
    scale: f64,
    start: Instant,
    rx: Receiver<Event>,
    tx: Sender<Event>,
    vars: Vars,
    inbox: HashMap<Conn, Inbox>,
    scheduler: Option<TcpStream>,
    data: Option<TcpStream>,
    peer: PeerServer,
    worker: WorkerProcess,
    stop_accept: Arc<AtomicBool>,
    transcript: Vec<String>,
    violation: Option<String>,
    exited_at: Option<Instant>,
    /// Peer connections (by index) whose first message has come.
    peers_greeted: HashSet<u32>,
    /// Lines of a client case's harness.
    output: Vec<OutputLine>,
    /// With `--auth`: the secret every connection proves.
    auth: Option<Arc<RunnerAuth>>,
    /// With `--tls`: the run's TLS material.
    tls: Option<Arc<RunnerTls>>,
    /// The channel bindings of the TLS scheduler and data connections.
    scheduler_binding: Option<ChannelBinding>,
    data_binding: Option<ChannelBinding>,
    /// Which data connection is the current one (1, 2, ...): events of an
    /// earlier one, closed by a step, are dropped.
    data_index: u32,
    /// The worker's reply `hello` on the current data connection.
    data_hello: Option<Value>,
    /// The current data connection negotiated `value-local` as the same
    /// host: the worker may lend on it (`data-local`).
    data_local: bool,
    /// The worker's host tag, from the `local` of a hello of its.
    worker_host: Option<Vec<u8>>,
    /// The worker's hello on each peer connection.
    peer_hellos: HashMap<u32, Value>,
    /// Peer connections that negotiated `value-local` (the peer lending):
    /// the worker may give leases back on them (`value-local-done`).
    peer_local: HashSet<u32>,
    /// How the runner's peer lends (`peer_lends`), if it does.
    lend: Option<case::LendMode>,
    /// Why the case stopped as not applicable (a `requires` step).
    skip: Option<String>,
}

fn dead_address() -> Result<String, String> {
    // A port that was just free: bound, read, released. Connecting to it
    // is refused (nothing listens there).
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    Ok(format!("tcp://{addr}"))
}

impl<'a> Session<'a> {
    fn start(case: &'a Case, opts: &RunOptions, run: u32) -> Result<Session<'a>, String> {
        let (tx, rx) = channel();
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("runner cannot bind a scheduler port: {e}"))?;
        let scheme = if opts.tls.is_some() { "tls" } else { "tcp" };
        let scheduler_address = format!(
            "{scheme}://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let stop_accept = Arc::new(AtomicBool::new(false));
        transport::spawn_acceptor(
            listener,
            Conn::Scheduler,
            opts.tls.clone(),
            stop_accept.clone(),
            tx.clone(),
        );
        let peer = PeerServer::start(tx.clone(), opts.auth.clone(), opts.tls.clone())
            .map_err(|e| format!("runner cannot bind a peer port: {e}"))?;
        let launch = Launch {
            scheduler: scheduler_address.clone(),
            nthreads: case.worker.nthreads,
            name: format!("conformance-{}-{run}", std::process::id()),
            credentials: opts.auth.as_ref().map(|a| {
                (
                    a.dir().to_owned(),
                    a.file.display().to_string(),
                    a.worker_secret_hex(),
                )
            }),
            tls: opts.tls.as_ref().map(|t| {
                (
                    t.ca_file.display().to_string(),
                    t.cert_file.display().to_string(),
                )
            }),
        };
        let mut vars = Vars::new();
        vars.insert(
            "scheduler_address".into(),
            Value::from(scheduler_address.as_str()),
        );
        vars.insert("peer_address".into(), Value::from(peer.address.as_str()));
        vars.insert("dead_address".into(), Value::from(dead_address()?.as_str()));
        vars.insert("nthreads".into(), Value::from(case.worker.nthreads));
        let start = Instant::now();
        let driven = case.is_client().then(|| tx.clone());
        let worker = WorkerProcess::spawn(&opts.command, &launch, driven)?;
        let mut s = Session {
            case,
            scale: if opts.timeout_scale > 0.0 {
                opts.timeout_scale
            } else {
                1.0
            },
            start,
            rx,
            tx,
            vars,
            inbox: HashMap::new(),
            scheduler: None,
            data: None,
            peer,
            worker,
            stop_accept,
            transcript: Vec::new(),
            violation: None,
            exited_at: None,
            peers_greeted: HashSet::new(),
            output: Vec::new(),
            auth: opts.auth.clone(),
            tls: opts.tls.clone(),
            scheduler_binding: None,
            data_binding: None,
            data_index: 0,
            data_hello: None,
            data_local: false,
            worker_host: None,
            peer_hellos: HashMap::new(),
            peer_local: HashSet::new(),
            lend: None,
            skip: None,
        };
        let argv: Vec<String> = opts.command.iter().map(|a| launch.fill(a)).collect();
        s.note(format!(
            "started {} (pid {}): {}",
            s.who(),
            s.worker.id(),
            argv.join(" ")
        ));
        s.note(format!(
            "scheduler at {scheduler_address}, peer at {}, nthreads {}",
            s.peer.address, case.worker.nthreads
        ));
        Ok(s)
    }

    fn finish(&mut self) {
        self.stop_accept.store(true, Ordering::Relaxed);
        self.peer.stop();
        for s in [self.scheduler.take(), self.data.take()]
            .into_iter()
            .flatten()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.worker.kill();
        // Keep the last events (closes, the exit) in the transcript.
        while let Ok(ev) = self.rx.try_recv() {
            self.apply(ev);
        }
    }

    fn ms(&self, ms: u64) -> Duration {
        Duration::from_secs_f64(ms as f64 * self.scale / 1000.0)
    }

    fn stamp(&self, at: Instant) -> String {
        format!(
            "{:>7} ms",
            at.saturating_duration_since(self.start).as_millis()
        )
    }

    fn note(&mut self, text: String) {
        let line = format!("{}  -- {text}", self.stamp(Instant::now()));
        self.transcript.push(line);
    }

    fn line(&mut self, at: Instant, arrow: &str, text: &str) {
        let line = format!("{}  {arrow:<22} {text}", self.stamp(at));
        self.transcript.push(line);
    }

    /// What is under test, for messages: "worker" or "client".
    fn who(&self) -> &'static str {
        if self.case.is_client() {
            "client"
        } else {
            "worker"
        }
    }

    /// The steps: the auto handshake's, then the case's.
    fn play(&mut self) -> Result<(), String> {
        let mut steps: Vec<(String, Step)> = Vec::new();
        if self.case.is_client() {
            if self.case.client.handshake == Handshake::Auto && self.auth.is_some() {
                self.greet_client_with_auth()
                    .map_err(|e| format!("handshake (with authentication): {e}"))?;
            } else if self.case.client.handshake == Handshake::Auto {
                self.greet_client().map_err(|e| format!("handshake: {e}"))?;
            }
        } else if self.case.worker.handshake == Handshake::Auto && self.auth.is_some() {
            self.greet_worker_with_auth()
                .map_err(|e| format!("handshake (with authentication): {e}"))?;
        } else if self.case.worker.handshake == Handshake::Auto {
            for (i, s) in auto_handshake(self.case.worker.heartbeat_interval_ms)
                .into_iter()
                .enumerate()
            {
                steps.push((format!("handshake step {}", i + 1), s));
            }
        }
        for (i, s) in self.case.steps.iter().enumerate() {
            steps.push((format!("step {}", i + 1), s.clone()));
        }
        for (name, step) in &steps {
            self.run_step(step)
                .map_err(|e| format!("{name} ({}): {e}", describe(step)))?;
            if self.skip.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn run_step(&mut self, step: &Step) -> Result<(), String> {
        self.check_violation()?;
        match step {
            Step::Drive(s) => {
                let line = self.command_line(&s.drive)?;
                self.line(Instant::now(), "runner -> harness", &line);
                self.worker.write_line(&line)
            }
            Step::ExpectOutput(s) => self.expect_output(
                &s.expect_output,
                s.within_ms.unwrap_or(case::EXPECT_WITHIN_MS_DEFAULT),
            ),
            Step::Send(s) => self.send(s.on, s.send.as_slice()),
            Step::SendRaw(s) => {
                let bytes = dask_core::json::unhex(&s.send_raw)?;
                let shown = dask_core::json::to_hex(&bytes[..bytes.len().min(64)]);
                self.line(
                    Instant::now(),
                    &arrow_out(s.on, self.who()),
                    &format!(
                        "raw bytes {shown}{}",
                        if bytes.len() > 64 { "…" } else { "" }
                    ),
                );
                self.write(s.on, &bytes)
            }
            Step::Expect(s) => self.expect(
                s.on,
                s.expect.as_slice(),
                s.within_ms.unwrap_or(case::EXPECT_WITHIN_MS_DEFAULT),
                s.ordered,
            ),
            Step::ExpectNone(s) => self.expect_none(s.on, &s.expect_none, s.for_ms),
            Step::ExpectEvery(s) => {
                self.expect_every(s.on, &s.expect_every, s.interval_ms, s.count)
            }
            Step::ExpectClose(s) => {
                self.expect_close(s.on, s.within_ms.unwrap_or(case::EXPECT_WITHIN_MS_DEFAULT))
            }
            Step::ExpectExit(s) => self.expect_exit(
                &s.expect_exit,
                s.within_ms.unwrap_or(case::EXPECT_WITHIN_MS_DEFAULT),
            ),
            Step::PeerHolds(s) => {
                for (k, v) in &s.peer_holds {
                    let bytes = value::encode(v, &self.vars)?;
                    let shown = if bytes.len() <= 4096 {
                        value::decode(&bytes)
                            .map(|v| render(&v))
                            .unwrap_or_default()
                    } else {
                        format!("<{} bytes of msgpack>", bytes.len())
                    };
                    self.note(format!("peer now holds {k:?} = {shown}"));
                    self.peer.hold(k.clone(), bytes);
                }
                Ok(())
            }
            Step::PeerBusy(s) => {
                self.note(format!(
                    "peer answers the next {} get-data with busy",
                    s.peer_busy
                ));
                self.peer.set_busy(s.peer_busy);
                Ok(())
            }
            Step::Connect(s) => self.connect(s),
            Step::Requires(s) => self.requires(
                &s.requires,
                s.on,
                s.within_ms.unwrap_or(case::EXPECT_WITHIN_MS_DEFAULT),
            ),
            Step::ReadLocal(s) => self.read_local(&s.read_local, &s.value),
            Step::PeerLends(s) => {
                self.peer_lends(s.peer_lends);
                Ok(())
            }
            Step::Close(s) => {
                let stream = match s.close {
                    Conn::Scheduler => self.scheduler.take(),
                    _ => self.data.take(),
                };
                if let Some(stream) = stream {
                    let _ = stream.shutdown(Shutdown::Both);
                }
                self.note(format!("runner closed the {} connection", s.close.as_str()));
                Ok(())
            }
            Step::Wait(s) => {
                let until = Instant::now() + self.ms(s.wait_ms);
                while Instant::now() < until {
                    self.pump(until)?;
                }
                Ok(())
            }
        }
    }
}

fn obj(j: Json) -> Map<String, Json> {
    match j {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

/// The steps of the automatic scheduler-side handshake.
pub(super) fn auto_handshake(heartbeat_interval_ms: u64) -> Vec<Step> {
    let steps = json!([
        {"expect": {"op": "hello", "protocol": "dask", "version": [1, {"$capture": "worker_minor"}], "role": "worker"},
         "within_ms": STARTUP_MS},
        {"send": {"op": "hello", "protocol": "dask", "version": [1, 0], "role": "scheduler", "id": 1, "features": []}},
        {"expect": {"op": "register-worker", "name": {"$capture": "worker_name"}, "address": {"$capture": "worker_address"}}},
        {"send": {"op": "worker-registered", "id": 1, "heartbeat_interval_ms": heartbeat_interval_ms}},
    ]);
    serde_json::from_value(steps).unwrap_or_default()
}

fn conn_name(conn: Conn, index: u32) -> String {
    match conn {
        Conn::Peer => format!("peer#{index}"),
        other => other.as_str().to_owned(),
    }
}

/// The transcript's arrow for what the runner sends to `who` on `on`.
fn arrow_out(on: Conn, who: &str) -> String {
    match on {
        Conn::Scheduler => format!("scheduler -> {who}"),
        Conn::Data => format!("data -> {who}"),
        Conn::Peer => format!("peer -> {who}"),
    }
}

/// One line saying what a step does.
fn describe(step: &Step) -> String {
    let short = |j: Json| {
        let s = j.to_string();
        if s.chars().count() > 160 {
            format!("{}…", s.chars().take(160).collect::<String>())
        } else {
            s
        }
    };
    match step {
        Step::Drive(s) => format!("drive {}", short(Json::Object(s.drive.clone()))),
        Step::ExpectOutput(s) => format!(
            "expect the harness to print {}",
            short(Json::Object(s.expect_output.clone()))
        ),
        Step::Send(s) => format!("send on {}", s.on.as_str()),
        Step::SendRaw(s) => format!("send raw bytes on {}", s.on.as_str()),
        Step::Expect(s) => format!(
            "expect on {} {}",
            s.on.as_str(),
            short(Json::Array(
                s.expect
                    .as_slice()
                    .iter()
                    .cloned()
                    .map(Json::Object)
                    .collect()
            ))
        ),
        Step::ExpectNone(s) => format!(
            "expect none on {} for {} ms of {}",
            s.on.as_str(),
            s.for_ms,
            short(Json::Object(s.expect_none.clone()))
        ),
        Step::ExpectEvery(s) => format!(
            "expect {} every {} ms on {}",
            s.count,
            s.interval_ms,
            s.on.as_str()
        ),
        Step::ExpectClose(s) => format!("expect the worker to close {}", s.on.as_str()),
        Step::ExpectExit(_) => "expect the worker to exit".into(),
        Step::PeerHolds(_) => "peer holds".into(),
        Step::PeerBusy(_) => "peer busy".into(),
        Step::Connect(_) => "connect to the data address".into(),
        Step::Requires(s) => format!("requires {} on {}", s.requires, s.on.as_str()),
        Step::ReadLocal(s) => format!("read {:?} from the worker's memory", s.read_local),
        Step::PeerLends(s) => format!("peer lends ({:?})", s.peer_lends),
        Step::Close(s) => format!("close {}", s.close.as_str()),
        Step::Wait(s) => format!("wait {} ms", s.wait_ms),
    }
}
