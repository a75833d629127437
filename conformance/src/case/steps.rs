//! The steps of a case: one JSON object each, with exactly one action key
//! (`send`, `expect`, `connect`, ...) and that action's options.

use schemars::JsonSchema;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value as Json};

use super::Conn;

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
    /// As `memory`, but each value's `nbytes` is 2^50: a fetcher must refuse it before reserving memory (and fall back).
    Huge,
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
