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
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::Error;

mod steps;
pub use steps::*;

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
