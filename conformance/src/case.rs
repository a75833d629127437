//! Case files: what a third party reads to know exactly what is tested.
//!
//! A case file is a JSON array of [`Case`]s (schema:
//! `conformance/cases/case.schema.json`, generated from these types). A
//! case is a script of [`Step`]s: messages the runner sends, messages it
//! expects (with matchers, see [`crate::value`]), and a few actions of the
//! runner's fake peer. SHOULD cases live apart, in `cases/optional/`.
//!
//! Client cases (`cases/client/`, SHOULD ones in `cases/client/optional/`)
//! are played against a client instead: the runner is its scheduler, and
//! drives the client through its test harness (`drive`, `expect_output`;
//! the driver protocol is in `spec/CONFORMANCE.md`).

use std::path::Path;

use schemars::JsonSchema;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value as Json};

use crate::error::Error;

include!(concat!(env!("OUT_DIR"), "/embedded_cases.rs"));

/// Every case ID starts with this: the protocol major it checks.
pub const CASE_ID_PREFIX: &str = "dask-1/";

/// Longest description the lint accepts, in characters: one line in a listing.
pub const DESCRIPTION_CHARS_MAX: usize = 72;

/// Default time an `expect` waits, in milliseconds (before `--timeout-scale`).
pub const EXPECT_WITHIN_MS_DEFAULT: u64 = 5000;

/// One case: a script played against a freshly started worker.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "A dask/1 conformance case (of a worker, or of a client under cases/client/)")]
pub struct Case {
    /// `dask-1/<topic>/<n>`; `<topic>` is the case file's name without `.json`. Unique.
    pub id: String,
    /// What the case does, in one short line.
    pub description: String,
    /// The section of the spec it checks: `PROTOCOL.md#anchor`.
    pub spec: String,
    /// The requirement checked, in the spec's words, with its level word (MUST / SHOULD).
    pub requirement: String,
    /// MUST: a failure fails the run. SHOULD: reported, fails the run only with `--strict`.
    pub level: Level,
    /// How the worker is started and greeted (worker cases).
    #[serde(default)]
    pub worker: WorkerSetup,
    /// How the client is greeted (client cases, under `cases/client/`).
    #[serde(default)]
    pub client: ClientSetup,
    /// The script, played in order; the first step that fails ends the case.
    pub steps: Vec<Step>,
    /// The file the case came from, relative to `cases/` (set by the loader).
    #[serde(skip)]
    #[schemars(skip)]
    pub file: String,
}

/// How binding a case's requirement is (RFC 2119 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Level {
    /// An absolute requirement: every conforming worker passes.
    #[serde(rename = "MUST")]
    Must,
    /// A recommendation: a worker may have reasons not to.
    #[serde(rename = "SHOULD")]
    Should,
}

impl Level {
    /// `MUST` or `SHOULD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        }
    }
}

/// How the worker under test is started and greeted.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSetup {
    /// Threads asked of the worker, given as `{nthreads}` in its command and `DASK_NTHREADS`. Default 1.
    pub nthreads: u32,
    /// `auto`: before the steps the runner expects `hello`, replies, expects `register-worker` (capturing `worker_minor` from the hello, `worker_address` and `worker_name`) and replies `worker-registered`. `manual`: the steps do it all.
    pub handshake: Handshake,
    /// `heartbeat_interval_ms` the runner gives in `worker-registered` (auto handshake). Default 1000.
    pub heartbeat_interval_ms: u64,
    /// The case checks authentication (dask/1.1): it runs only under `--auth`, which gives the worker a secret and requires its proof on every connection; without `--auth` it is skipped. Default false.
    pub auth: bool,
}

impl Default for WorkerSetup {
    fn default() -> Self {
        WorkerSetup {
            nthreads: 1,
            handshake: Handshake::Auto,
            heartbeat_interval_ms: 1000,
            auth: false,
        }
    }
}

/// How the runner, as the scheduler, greets the client under test.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSetup {
    /// The highest minor version of dask/1 the runner speaks: it replies with the lower of this and the client's. Default 1 (dask/1.1).
    pub scheduler_minor: u32,
    /// `auto`: before the steps the runner expects the client's `hello` (capturing `client_minor`) and replies. `manual`: the steps do it.
    pub handshake: Handshake,
}

impl Default for ClientSetup {
    fn default() -> Self {
        ClientSetup {
            scheduler_minor: 1,
            handshake: Handshake::Auto,
        }
    }
}

/// Who performs the scheduler-side handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Handshake {
    /// The runner, before the steps.
    Auto,
    /// The steps.
    Manual,
}

/// A connection between the runner and the worker under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Conn {
    /// The worker's connection to the runner's scheduler address (the default).
    #[default]
    Scheduler,
    /// The runner's connection to the worker's data address (opened by a `connect` step).
    Data,
    /// Connections the worker opens to the runner's peer address to fetch data. The runner answers them itself (see `peer_holds`); steps may only expect on them.
    Peer,
}

impl Conn {
    /// The name used in case files and transcripts.
    pub fn as_str(self) -> &'static str {
        match self {
            Conn::Scheduler => "scheduler",
            Conn::Data => "data",
            Conn::Peer => "peer",
        }
    }
}

/// One message or several, each in JSON form (see [`crate::value`]).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Messages {
    /// One message.
    One(Map<String, Json>),
    /// Several: sent in one frame, or all expected.
    Many(Vec<Map<String, Json>>),
}

impl Messages {
    /// The messages as a slice.
    pub fn as_slice(&self) -> &[Map<String, Json>] {
        match self {
            Messages::One(m) => std::slice::from_ref(m),
            Messages::Many(ms) => ms,
        }
    }
}

/// One step of a case. Each is an object with exactly one action key
/// (`send`, `send_raw`, `expect`, ...) and that action's options.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Step {
    /// Send messages in one frame.
    Send(SendStep),
    /// Send raw bytes.
    SendRaw(SendRawStep),
    /// Wait for messages.
    Expect(ExpectStep),
    /// Check that no such message comes for a while.
    ExpectNone(ExpectNoneStep),
    /// Check that such messages keep coming.
    ExpectEvery(ExpectEveryStep),
    /// Wait for the worker to close a connection.
    ExpectClose(ExpectCloseStep),
    /// Wait for the worker's process to exit.
    ExpectExit(ExpectExitStep),
    /// Give the runner's peer values to serve.
    PeerHolds(PeerHoldsStep),
    /// Make the runner's peer answer `busy` to the next requests.
    PeerBusy(PeerBusyStep),
    /// Open a connection to the worker.
    Connect(ConnectStep),
    /// Close a connection from the runner's side.
    Close(CloseStep),
    /// Let time pass.
    Wait(WaitStep),
    /// Stop the case as not applicable unless the worker lists a feature.
    Requires(RequiresStep),
    /// Read a value the worker lent on the data connection from its memory.
    ReadLocal(ReadLocalStep),
    /// Make the runner's peer lend its values by address.
    PeerLends(PeerLendsStep),
    /// Give the client's harness a command (client cases).
    Drive(DriveStep),
    /// Wait for a line of the client's harness (client cases).
    ExpectOutput(ExpectOutputStep),
}

/// `{"send": message | [messages], "on": conn}`: the runner sends the messages in one frame.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendStep {
    /// The message(s), in JSON form with `{"$var": name}` and `{"$bin_pattern": n}` allowed.
    pub send: Messages,
    /// Where to send: `scheduler` (default) or `data`.
    #[serde(default)]
    pub on: Conn,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"send_raw": "hex"}`: bytes sent as they are, length prefix included.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRawStep {
    /// Hex digits; whitespace is ignored.
    pub send_raw: String,
    /// Where to send: `scheduler` (default) or `data`.
    #[serde(default)]
    pub on: Conn,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"expect": pattern | [patterns], "within_ms": n}`: each pattern must match a message not matched before.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectStep {
    /// Message patterns (fields listed must match; other fields are ignored).
    pub expect: Messages,
    /// Connection to watch. Default `scheduler`.
    #[serde(default)]
    pub on: Conn,
    /// How long to wait for all of them, in milliseconds. Default 5000.
    pub within_ms: Option<u64>,
    /// The messages must have arrived in the order of the patterns. Default false.
    #[serde(default)]
    pub ordered: bool,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"expect_none": pattern, "for_ms": n}`: no message matching the pattern is waiting or arrives for n ms.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectNoneStep {
    /// The pattern no message may match.
    pub expect_none: Map<String, Json>,
    /// Connection to watch. Default `scheduler`.
    #[serde(default)]
    pub on: Conn,
    /// How long to watch, in milliseconds.
    pub for_ms: u64,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"expect_every": pattern, "interval_ms": i, "count": n}`: from now on, n new matching messages, none more than i ms after the one before (or after the step's start).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectEveryStep {
    /// The pattern each message must match. Matching messages that arrived before the step do not count.
    pub expect_every: Map<String, Json>,
    /// Connection to watch. Default `scheduler`.
    #[serde(default)]
    pub on: Conn,
    /// The longest gap allowed, in milliseconds.
    pub interval_ms: u64,
    /// How many messages.
    pub count: u32,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"expect_close": true, "within_ms": n}`: the worker closes the connection (messages before the close can still be expected).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectCloseStep {
    /// Always true.
    pub expect_close: bool,
    /// Connection to watch. Default `scheduler`.
    #[serde(default)]
    pub on: Conn,
    /// How long to wait, in milliseconds. Default 5000.
    pub within_ms: Option<u64>,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"expect_exit": true | {"code": c}, "within_ms": n}`: the worker's process exits (with status c).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectExitStep {
    /// `true`: any exit; `{"code": c}`: exit with status c.
    pub expect_exit: ExitExpectation,
    /// How long to wait, in milliseconds. Default 5000.
    pub within_ms: Option<u64>,
    /// A remark for readers.
    pub note: Option<String>,
}

/// What `expect_exit` accepts.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExitExpectation {
    /// Any exit.
    Any(bool),
    /// An exit with this status.
    Code {
        /// The exit status.
        code: i32,
    },
}

/// `{"peer_holds": {key: value}}`: the runner's peer (at `peer_address`) now serves these values to `get-data`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerHoldsStep {
    /// Values by key, in JSON form (`$bin_pattern` allowed).
    pub peer_holds: Map<String, Json>,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"peer_busy": n}`: the runner's peer answers the next n `get-data` with `busy`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerBusyStep {
    /// How many requests get `busy`.
    pub peer_busy: u32,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"connect": "data"}`: open a connection to `worker_address`; with `handshake` (default) send a peer `hello` and expect the worker's `hello`, whose `features` must be among those the runner listed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectStep {
    /// Always `data`.
    pub connect: Conn,
    /// Greet as a peer and check the reply. Default true.
    #[serde(default = "yes")]
    pub handshake: bool,
    /// The features the runner's hello lists. Default none.
    #[serde(default)]
    pub features: Vec<String>,
    /// With `value-local` in `features`: the runner's hello carries `local` as a worker of another host (a fresh host tag), or of the worker's own host (the tag the worker gave in an earlier hello reply, with the runner's pid and probe). Default: no `local`.
    pub local: Option<LocalAs>,
    /// A remark for readers.
    pub note: Option<String>,
}

/// Who the runner says it is in the `local` of its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LocalAs {
    /// A worker of another host: values must not be lent to it.
    OtherHost,
    /// A worker of the same host and user as the worker under test.
    SameHost,
}

/// `{"requires": feature, "on": conn}`: unless the worker listed the feature in its hello on that connection (`data`: its reply to the runner's hello; `peer`: its hello to the runner's peer, waited for), the case stops here and is reported as skipped: it checks an optional feature the worker does not offer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequiresStep {
    /// The feature, e.g. `value-local`.
    pub requires: String,
    /// `data` or `peer`.
    pub on: Conn,
    /// How long to wait for the worker's hello on `peer`, in milliseconds. Default 5000.
    pub within_ms: Option<u64>,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"read_local": key, "value": pattern}`: the latest `data-local` the worker sent on the data connection lends `key`; the runner checks the probe of the worker's hello, copies `nbytes` at `at` from the worker's memory, and the bytes must be one well-formed value matching the pattern. Binds `lease` to the value's lease.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadLocalStep {
    /// The key lent.
    pub read_local: String,
    /// The pattern the value read must match (`$bin_pattern` allowed).
    pub value: Json,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"peer_lends": mode}`: from now on the runner's peer lends the values it holds by address (`data-local`) on its connections from the worker.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerLendsStep {
    /// How.
    pub peer_lends: LendMode,
    /// A remark for readers.
    pub note: Option<String>,
}

/// How the runner's peer lends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LendMode {
    /// As a worker of the worker's host: its hello reply lists `value-local` when the worker's hello does, with `local` naming the worker's host tag, the runner's pid and probe; values go in `data-local` until a `value-local-done` says `failed`.
    Memory,
    /// As `memory`, but the probe its hello gives is not what is at the probe's address: every read must fail.
    BadProbe,
    /// Without negotiating: its hello reply lists no feature, yet it answers `get-data` with `data-local`.
    Unnegotiated,
}

fn yes() -> bool {
    true
}

/// `{"close": conn}`: the runner closes its end of the connection.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseStep {
    /// `scheduler` or `data`.
    pub close: Conn,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"wait_ms": n}`: let n milliseconds pass (messages keep arriving).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    /// Milliseconds.
    pub wait_ms: u64,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"drive": command}`: one line of the driver protocol to the client's harness (`$var` allowed; a field `args`, a value in JSON form, goes as `args_hex`, its msgpack encoding in hex).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriveStep {
    /// The command, e.g. `{"do": "submit", "function": "conformance.add", "args": [1, 2]}`.
    pub drive: Map<String, Json>,
    /// A remark for readers.
    pub note: Option<String>,
}

/// `{"expect_output": pattern, "within_ms": n}`: a line the client's harness printed (a JSON object) matches the pattern.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectOutputStep {
    /// The pattern (fields listed must match; matchers allowed, `$capture` binds).
    pub expect_output: Map<String, Json>,
    /// How long to wait, in milliseconds. Default 5000.
    pub within_ms: Option<u64>,
    /// A remark for readers.
    pub note: Option<String>,
}

/// Every step's action key, in the order the spec lists them.
pub const ACTIONS: &[&str] = &[
    "send",
    "send_raw",
    "expect",
    "expect_none",
    "expect_every",
    "expect_close",
    "expect_exit",
    "peer_holds",
    "peer_busy",
    "connect",
    "close",
    "wait_ms",
    "requires",
    "read_local",
    "peer_lends",
    "drive",
    "expect_output",
];

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Json::deserialize(d)?;
        let Some(obj) = v.as_object() else {
            return Err(D::Error::custom("a step must be a JSON object"));
        };
        let present: Vec<&str> = ACTIONS
            .iter()
            .copied()
            .filter(|a| obj.contains_key(*a))
            .collect();
        let action = match present.as_slice() {
            [one] => *one,
            [] => {
                return Err(D::Error::custom(format!(
                    "a step needs one of the keys {ACTIONS:?}, found {:?}",
                    obj.keys().collect::<Vec<_>>()
                )))
            }
            many => {
                return Err(D::Error::custom(format!(
                    "a step has exactly one action, found {many:?}"
                )))
            }
        };
        let step = match action {
            "send" => serde_json::from_value(v).map(Step::Send),
            "send_raw" => serde_json::from_value(v).map(Step::SendRaw),
            "expect" => serde_json::from_value(v).map(Step::Expect),
            "expect_none" => serde_json::from_value(v).map(Step::ExpectNone),
            "expect_every" => serde_json::from_value(v).map(Step::ExpectEvery),
            "expect_close" => serde_json::from_value(v).map(Step::ExpectClose),
            "expect_exit" => serde_json::from_value(v).map(Step::ExpectExit),
            "peer_holds" => serde_json::from_value(v).map(Step::PeerHolds),
            "peer_busy" => serde_json::from_value(v).map(Step::PeerBusy),
            "connect" => serde_json::from_value(v).map(Step::Connect),
            "close" => serde_json::from_value(v).map(Step::Close),
            "requires" => serde_json::from_value(v).map(Step::Requires),
            "read_local" => serde_json::from_value(v).map(Step::ReadLocal),
            "peer_lends" => serde_json::from_value(v).map(Step::PeerLends),
            "drive" => serde_json::from_value(v).map(Step::Drive),
            "expect_output" => serde_json::from_value(v).map(Step::ExpectOutput),
            _ => serde_json::from_value(v).map(Step::Wait),
        };
        step.map_err(|e| D::Error::custom(format!("`{action}` step: {e}")))
    }
}

impl Step {
    /// The step's action key.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Send(_) => "send",
            Step::SendRaw(_) => "send_raw",
            Step::Expect(_) => "expect",
            Step::ExpectNone(_) => "expect_none",
            Step::ExpectEvery(_) => "expect_every",
            Step::ExpectClose(_) => "expect_close",
            Step::ExpectExit(_) => "expect_exit",
            Step::PeerHolds(_) => "peer_holds",
            Step::PeerBusy(_) => "peer_busy",
            Step::Connect(_) => "connect",
            Step::Close(_) => "close",
            Step::Wait(_) => "wait_ms",
            Step::Requires(_) => "requires",
            Step::ReadLocal(_) => "read_local",
            Step::PeerLends(_) => "peer_lends",
            Step::Drive(_) => "drive",
            Step::ExpectOutput(_) => "expect_output",
        }
    }
}

impl Case {
    /// Whether it is a client case (its file is under `cases/client/`).
    pub fn is_client(&self) -> bool {
        self.file.starts_with("client/")
    }

    /// Whether the case plays a handshake itself (a manual one with the
    /// scheduler, or a data connection opened without one): it checks
    /// the handshake without authentication, which `--auth` changes, so
    /// `--auth` runs it only when it is an auth case.
    pub fn plays_a_handshake(&self) -> bool {
        self.worker.handshake == Handshake::Manual
            || (self.is_client() && self.client.handshake == Handshake::Manual)
            || self
                .steps
                .iter()
                .any(|s| matches!(s, Step::Connect(c) if !c.handshake))
    }
}

/// Parses one case file (a JSON array of cases); `path` is relative to `cases/`.
pub fn parse_file(path: &str, text: &str) -> Result<Vec<Case>, Error> {
    let mut cases: Vec<Case> = serde_json::from_str(text)
        .map_err(|e| Error::new(format!("{path}: not a valid case file: {e}")))?;
    for case in &mut cases {
        case.file = path.to_owned();
    }
    Ok(cases)
}

/// The cases compiled into the binary: MUST cases first, then in file order.
pub fn embedded() -> Result<Vec<Case>, Error> {
    let mut all = Vec::new();
    for (path, text) in EMBEDDED_CASES {
        all.extend(parse_file(path, text)?);
    }
    Ok(musts_first(all))
}

/// The cases of every `*.json` file under `dir` (schemas excepted): MUST
/// cases first, then in path order.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, Error> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), Error> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "json")
                && !path.to_string_lossy().ends_with(".schema.json")
            {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", file.display())))?;
        let rel = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        all.extend(parse_file(&rel, &text)?);
    }
    Ok(musts_first(all))
}

/// MUST cases first, each group in file order.
fn musts_first(mut cases: Vec<Case>) -> Vec<Case> {
    cases.sort_by_key(|c| c.level == Level::Should);
    cases
}

/// Whether `pattern` selects case `id`: the same ID, a prefix of it that
/// ends at a `/` (`dask-1/compute` selects `dask-1/compute/3`), or a glob
/// where `*` matches any characters.
pub fn id_matches(pattern: &str, id: &str) -> bool {
    if pattern.contains('*') {
        return glob(pattern.as_bytes(), id.as_bytes());
    }
    let pattern = pattern.trim_end_matches('/');
    id == pattern
        || id
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point: linear enough
    // for IDs, and no recursion depth to worry about.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The cases `--case` patterns select (all when there are none) minus the
/// ones `--skip` patterns name; the second list holds the skipped ones.
pub fn select(cases: Vec<Case>, include: &[String], skip: &[String]) -> (Vec<Case>, Vec<Case>) {
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    for case in cases {
        if !include.is_empty() && !include.iter().any(|p| id_matches(p, &case.id)) {
            continue;
        }
        if skip.iter().any(|p| id_matches(p, &case.id)) {
            skipped.push(case);
        } else {
            selected.push(case);
        }
    }
    (selected, skipped)
}

/// The JSON Schema of a case file, generated from these types; the
/// committed `cases/case.schema.json` is this text.
pub fn schema() -> String {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let root = generator.into_root_schema_for::<Vec<Case>>();
    let mut doc = root.to_value();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "$id".into(),
            Json::String("https://dask-rs.dev/conformance/case.schema.json".into()),
        );
        obj.insert(
            "title".into(),
            Json::String("dask/1 conformance case file".into()),
        );
        obj.insert(
            "description".into(),
            Json::String("A JSON array of cases (see spec/CONFORMANCE.md). Generated from conformance/src/case.rs: do not edit.".into()),
        );
    }
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// The Markdown tables of every case for `spec/CONFORMANCE.md` ("The
/// cases"): MUST cases, then SHOULD cases, each by topic and number.
pub fn markdown_tables(cases: &[Case]) -> String {
    let mut sorted: Vec<&Case> = cases.iter().collect();
    let number = |c: &Case| -> (String, u64) {
        let mut parts = c.id.rsplitn(2, '/');
        let n = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (parts.next().unwrap_or("").to_owned(), n)
    };
    sorted.sort_by_key(|c| (c.level == Level::Should, number(c)));
    let mut out = String::new();
    for (client, level, title) in [
        (false, Level::Must, "MUST cases (`cases/*.json`)"),
        (
            false,
            Level::Should,
            "SHOULD cases (`cases/optional/*.json`)",
        ),
        (
            true,
            Level::Must,
            "Client MUST cases (`cases/client/*.json`)",
        ),
        (
            true,
            Level::Should,
            "Client SHOULD cases (`cases/client/optional/*.json`)",
        ),
    ] {
        out.push_str(&format!("\n### {title}\n\n"));
        out.push_str("| ID | What the case does | Requirement checked |\n|---|---|---|\n");
        for c in sorted
            .iter()
            .filter(|c| c.level == level && c.is_client() == client)
        {
            let anchor = c.spec.split_once('#').map(|(_, a)| a).unwrap_or("");
            out.push_str(&format!(
                "| `{}` | {} | {} ([{anchor}]({})) |\n",
                c.id,
                c.description.replace('|', "\\|"),
                c.requirement.replace('|', "\\|"),
                c.spec
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_select_by_id_prefix_and_glob() {
        assert!(id_matches("dask-1/compute", "dask-1/compute/3"));
        assert!(id_matches("dask-1/compute/3", "dask-1/compute/3"));
        assert!(!id_matches("dask-1/compute/3", "dask-1/compute/30"));
        assert!(!id_matches("dask-1/comp", "dask-1/compute/3"));
        assert!(id_matches("*/heartbeat/*", "dask-1/heartbeat/2"));
        assert!(id_matches("dask-1/*/1", "dask-1/deps/1"));
        assert!(!id_matches("dask-1/*/1", "dask-1/deps/2"));
    }

    #[test]
    fn steps_name_their_action_and_reject_two() {
        let s: Step = serde_json::from_str(r#"{"wait_ms": 5}"#).unwrap();
        assert_eq!(s.action(), "wait_ms");
        let e = serde_json::from_str::<Step>(r#"{"wait_ms": 5, "send": {"op": "close"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one action"), "{e}");
        let e = serde_json::from_str::<Step>(r#"{"expect": {"op": "close"}, "whithin_ms": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("whithin_ms"), "{e}");
    }
}
