//! The lint of case files: what the schema cannot check (IDs and their
//! files, levels, spec anchors, messages that encode as dask/1, patterns,
//! variables defined before use, worker-only and client-only steps).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};

use crate::case::{
    Case, Conn, ExitExpectation, Handshake, Level, Step, CASE_ID_PREFIX, DESCRIPTION_CHARS_MAX,
};

/// Variables every case has; a worker's are captured by the auto handshake.
pub const RUNNER_VARS: &[&str] = &[
    "scheduler_address",
    "peer_address",
    "dead_address",
    "nthreads",
];

/// Variables the auto handshake captures from `register-worker`.
pub const HANDSHAKE_VARS: &[&str] = &["worker_address", "worker_name", "worker_minor"];

/// Variables a `connect` with the auto handshake captures under `--auth`
/// (the runner's nonce and proof on that connection, 32 bytes each).
pub const AUTH_CONNECT_VARS: &[&str] = &["runner_nonce", "runner_proof"];

/// Variables every client case has.
pub const CLIENT_RUNNER_VARS: &[&str] = &["scheduler_address"];

/// Variables the auto handshake of a client case captures from its `hello`.
pub const CLIENT_HANDSHAKE_VARS: &[&str] = &["client_minor"];

/// The commands of the driver protocol (`spec/CONFORMANCE.md`).
pub const DRIVER_COMMANDS: &[&str] = &["submit", "result", "release", "cancel", "close"];

/// Steps only worker cases use, and steps only client cases use.
const WORKER_ONLY: &[&str] = &[
    "peer_holds",
    "peer_busy",
    "connect",
    "expect_exit",
    "requires",
    "read_local",
    "peer_lends",
];
const CLIENT_ONLY: &[&str] = &["drive", "expect_output"];

/// Checks what the schema cannot: unique IDs in the `dask-1/<topic>/<n>`
/// form with the topic naming the file, short descriptions, level words,
/// SHOULD cases in `optional/`, spec anchors that exist in `protocol_md`
/// (when given), messages that encode and decode as dask/1, patterns that
/// name a known op and known matchers, variables defined before use.
/// Returns every problem found.
pub fn lint(cases: &[Case], protocol_md: Option<&str>) -> Vec<String> {
    let anchors = protocol_md.map(markdown_anchors);
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for case in cases {
        let mut say = |p: String| problems.push(format!("{} ({}): {p}", case.id, case.file));
        if !seen.insert(case.id.clone()) {
            say("duplicate id".into());
        }
        let stem = case
            .file
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        let id_rest = case.id.strip_prefix(CASE_ID_PREFIX).and_then(|r| {
            if case.is_client() {
                r.strip_prefix("client/")
            } else {
                Some(r)
            }
        });
        match id_rest.map(|r| r.split('/').collect::<Vec<_>>()) {
            Some(parts) if parts.len() == 2 => {
                if parts[0] != stem {
                    say(format!(
                        "topic {:?} is not the file's name {stem:?}",
                        parts[0]
                    ));
                }
                if !parts[1].bytes().all(|b| b.is_ascii_digit())
                    || parts[1].is_empty()
                    || parts[1].starts_with('0')
                {
                    say(format!(
                        "case number {:?} is not a positive integer",
                        parts[1]
                    ));
                }
            }
            _ if case.is_client() => say(format!(
                "id is not of the form {CASE_ID_PREFIX}client/<topic>/<n>"
            )),
            _ => say(format!("id is not of the form {CASE_ID_PREFIX}<topic>/<n>")),
        }
        let chars = case.description.chars().count();
        if chars == 0 || chars > DESCRIPTION_CHARS_MAX || case.description.contains('\n') {
            say(format!(
                "description must be one line of 1 to {DESCRIPTION_CHARS_MAX} characters, has {chars}"
            ));
        }
        if !case.requirement.contains(case.level.as_str()) {
            say(format!(
                "requirement does not contain its level word {}",
                case.level.as_str()
            ));
        }
        let optional =
            case.file.starts_with("optional/") || case.file.starts_with("client/optional/");
        if optional != (case.level == Level::Should) {
            say("SHOULD cases belong in cases/optional/ (client ones in cases/client/optional/), MUST cases outside it".into());
        }
        match case.spec.strip_prefix("PROTOCOL.md#") {
            Some(anchor) if !anchor.is_empty() => {
                if let Some(anchors) = &anchors {
                    if !anchors.contains(anchor) {
                        say(format!(
                            "spec anchor #{anchor} is not a heading of PROTOCOL.md"
                        ));
                    }
                }
            }
            _ => say("spec must be PROTOCOL.md#<anchor>".into()),
        }
        if case.steps.is_empty() {
            say("no steps".into());
        }
        let (runner_vars, handshake, handshake_vars) = if case.is_client() {
            (
                CLIENT_RUNNER_VARS,
                case.client.handshake,
                CLIENT_HANDSHAKE_VARS,
            )
        } else {
            (RUNNER_VARS, case.worker.handshake, HANDSHAKE_VARS)
        };
        let mut vars: HashSet<String> = runner_vars.iter().map(|s| s.to_string()).collect();
        if handshake == Handshake::Auto {
            vars.extend(handshake_vars.iter().map(|s| s.to_string()));
        }
        let not_here = if case.is_client() {
            WORKER_ONLY
        } else {
            CLIENT_ONLY
        };
        if case.worker.nthreads == 0 {
            say("worker.nthreads must be at least 1".into());
        }
        for (i, step) in case.steps.iter().enumerate() {
            if not_here.contains(&step.action()) {
                let kind = if case.is_client() {
                    "a client"
                } else {
                    "a worker"
                };
                say(format!(
                    "step {}: `{}` has no meaning in {kind} case",
                    i + 1,
                    step.action()
                ));
            }
            for p in lint_step(step, case.worker.auth, &mut vars) {
                say(format!("step {}: {p}", i + 1));
            }
        }
    }
    problems
}

/// Whether message template `t` is valid dask/1 for some values of its
/// variables, each a string (an address, a key) or an integer (a request
/// id captured earlier): the combinations are tried (a message uses few).
fn valid_with_some_values(t: &Json, strings: &HashMap<String, rmpv::Value>) -> bool {
    fn vars_in(j: &Json, out: &mut Vec<String>) {
        match j {
            Json::Object(o) => match (o.len(), o.get("$var")) {
                (1, Some(Json::String(name))) => out.push(name.clone()),
                _ => o.values().for_each(|v| vars_in(v, out)),
            },
            Json::Array(items) => items.iter().for_each(|v| vars_in(v, out)),
            _ => {}
        }
    }
    let mut used = Vec::new();
    vars_in(t, &mut used);
    used.sort();
    used.dedup();
    let n = used.len().min(8);
    (0u32..1 << n).any(|mask| {
        let mut values = strings.clone();
        for (i, v) in used.iter().take(n).enumerate() {
            if mask & (1 << i) != 0 {
                values.insert(v.clone(), rmpv::Value::from(1));
            }
        }
        crate::value::encode(t, &values)
            .is_ok_and(|bytes| dask_core::Message::from_bytes(&bytes).is_ok())
    })
}

fn lint_step(step: &Step, auth: bool, vars: &mut HashSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let dummy: HashMap<String, rmpv::Value> = vars
        .iter()
        .map(|v| match AUTH_CONNECT_VARS.contains(&v.as_str()) {
            true => (v.clone(), rmpv::Value::Binary(vec![0; 32])),
            false => (v.clone(), rmpv::Value::from("tcp://127.0.0.1:1")),
        })
        .collect();
    let mut check_pattern = |p: &Map<String, Json>, problems: &mut Vec<String>| {
        let output = matches!(step, Step::ExpectOutput(_));
        match p.get("op").and_then(Json::as_str) {
            _ if output => {}
            Some(op) if dask_core::messages::OPS.iter().any(|(o, _)| *o == op) => {}
            Some(op) => problems.push(format!("pattern op {op:?} is not a dask/1 op")),
            None => problems.push("a pattern must have a literal string `op`".into()),
        }
        let mut used = Vec::new();
        let mut captured = Vec::new();
        if let Err(e) =
            crate::value::check_pattern(&Json::Object(p.clone()), &mut used, &mut captured)
        {
            problems.push(e);
        }
        for u in used {
            if !vars.contains(&u) {
                problems.push(format!("$var {u:?} is not defined before this step"));
            }
        }
        vars.extend(captured);
    };
    match step {
        Step::Send(s) => {
            if s.on == Conn::Peer {
                problems
                    .push("the runner's peer answers by itself: send on scheduler or data".into());
            }
            for m in s.send.as_slice() {
                let t = Json::Object(m.clone());
                match crate::value::encode(&t, &dummy) {
                    Ok(_) if valid_with_some_values(&t, &dummy) => {}
                    Ok(bytes) => {
                        if let Err(e) = dask_core::Message::from_bytes(&bytes) {
                            problems.push(format!(
                                "sent message is not valid dask/1 ({e}); use send_raw for malformed input"
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("sent message does not encode: {e}")),
                }
            }
        }
        Step::SendRaw(s) => {
            if s.on == Conn::Peer {
                problems.push("send_raw goes on scheduler or data".into());
            }
            if let Err(e) = dask_core::json::unhex(&s.send_raw) {
                problems.push(e);
            }
        }
        Step::Expect(s) => {
            if s.expect.as_slice().is_empty() {
                problems.push("expect lists no pattern".into());
            }
            for p in s.expect.as_slice() {
                check_pattern(p, &mut problems);
            }
        }
        Step::ExpectNone(s) => check_pattern(&s.expect_none, &mut problems),
        Step::ExpectEvery(s) => {
            check_pattern(&s.expect_every, &mut problems);
            if s.count == 0 || s.interval_ms == 0 {
                problems.push("expect_every needs count and interval_ms above 0".into());
            }
        }
        Step::ExpectClose(s) => {
            if !s.expect_close {
                problems.push("expect_close takes true".into());
            }
        }
        Step::ExpectExit(s) => {
            if matches!(s.expect_exit, ExitExpectation::Any(false)) {
                problems.push("expect_exit takes true or {\"code\": c}".into());
            }
        }
        Step::PeerHolds(s) => {
            for (k, v) in &s.peer_holds {
                if let Err(e) = crate::value::encode(v, &dummy) {
                    problems.push(format!("peer value {k:?} does not encode: {e}"));
                }
            }
        }
        Step::PeerBusy(_) | Step::Wait(_) | Step::PeerLends(_) => {}
        Step::Requires(s) => {
            if !matches!(s.on, Conn::Data | Conn::Peer) {
                problems.push("requires looks at the worker's hello on data or peer".into());
            }
            if s.requires != crate::local::VALUE_LOCAL {
                problems.push(format!(
                    "requires knows the feature {:?} only",
                    crate::local::VALUE_LOCAL
                ));
            }
        }
        Step::ReadLocal(s) => {
            let mut used = Vec::new();
            let mut captured = Vec::new();
            if let Err(e) = crate::value::check_pattern(&s.value, &mut used, &mut captured) {
                problems.push(e);
            }
            vars.insert("lease".into());
        }
        Step::Connect(s) => {
            if s.connect != Conn::Data {
                problems.push("only `data` can be connected to".into());
            }
            if !vars.contains("worker_address") {
                problems.push("connect needs worker_address (auto handshake or a $capture)".into());
            }
            if s.handshake && auth {
                vars.extend(AUTH_CONNECT_VARS.iter().map(|v| v.to_string()));
            }
            if s.local.is_some() && !s.features.iter().any(|f| f == crate::local::VALUE_LOCAL) {
                problems.push("local goes with the feature value-local".into());
            }
        }
        Step::Close(s) => {
            if s.close == Conn::Peer {
                problems.push("close takes scheduler or data".into());
            }
        }
        Step::Drive(s) => {
            match s.drive.get("do").and_then(Json::as_str) {
                Some(c) if DRIVER_COMMANDS.contains(&c) => {}
                other => problems.push(format!(
                    "drive needs \"do\": one of {DRIVER_COMMANDS:?}, found {other:?}"
                )),
            }
            let mut used = Vec::new();
            let mut captured = Vec::new();
            if let Err(e) = crate::value::check_pattern(
                &Json::Object(s.drive.clone()),
                &mut used,
                &mut captured,
            ) {
                problems.push(e);
            }
            for u in used {
                if !vars.contains(&u) {
                    problems.push(format!("$var {u:?} is not defined before this step"));
                }
            }
            if let Some(args) = s.drive.get("args") {
                if let Err(e) = crate::value::encode(args, &dummy) {
                    problems.push(format!("args do not encode: {e}"));
                }
            }
        }
        Step::ExpectOutput(s) => check_pattern(&s.expect_output, &mut problems),
    }
    problems
}

/// The anchors of a Markdown document: GitHub's slugs of its headings
/// (lowercase, punctuation dropped, spaces to hyphens, `-1`, `-2` for
/// repeats) and explicit `<a id="...">` / `<a name="...">` anchors.
pub fn markdown_anchors(text: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut in_code = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for attr in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(pos) = rest.find(attr) {
                rest = &rest[pos + attr.len()..];
                if let Some(end) = rest.find('"') {
                    anchors.insert(rest[..end].to_owned());
                }
            }
        }
        let hashes = trimmed.bytes().take_while(|&b| b == b'#').count();
        if hashes == 0 || hashes > 6 || !trimmed[hashes..].starts_with(' ') {
            continue;
        }
        let slug = slug(trimmed[hashes..].trim());
        let n = counts.entry(slug.clone()).or_insert(0);
        let anchor = if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        };
        *n += 1;
        anchors.insert(anchor);
    }
    anchors
}

fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_github_slugs() {
        let md = "# dask/1\n## Compute: `compute-task`\n## Compute: `compute-task`\n```\n# not a heading\n```\n<a id=\"x-y\"></a>\n";
        let a = markdown_anchors(md);
        assert!(a.contains("dask1"));
        assert!(a.contains("compute-compute-task"));
        assert!(a.contains("compute-compute-task-1"));
        assert!(a.contains("x-y"));
        assert!(!a.contains("not-a-heading"));
    }
}
