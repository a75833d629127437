//! Builds the golden vectors in `spec/vectors/`.
//!
//! The JSON forms and the expected outcomes are written here by hand; the
//! canonical hex comes from `dask_core::json::json_to_msgpack`, and the
//! "also accepted" encodings are made by rewriting the canonical bytes
//! (fields reordered, integers widened, nil for absent fields, unknown
//! fields added). `tests/generated.rs` checks the committed files against
//! what this module builds, and separately checks what the files say
//! against the codec, so a vector never rests on this module alone.
//!
//! Rewrites that change the encoding of a value (args, kwargs, data values)
//! are not used for message vectors: dask-rs keeps values verbatim, so they
//! would not re-encode canonically. Non-canonical values have their own
//! cases in `values.json`.

use dask_core::json::{json_to_msgpack, to_hex};
use dask_core::msgpack::{write, Reader};
use serde_json::{json, Map, Value as Json};

/// Each file of `spec/vectors/`: its name and its text.
pub fn files() -> Vec<(&'static str, String)> {
    vec![
        ("messages.json", render(&messages())),
        ("values.json", render(&values())),
        ("frames.json", render(&frames())),
        ("invalid.json", render(&invalid())),
        ("handshake.json", render(&handshake())),
    ]
}

// ---------------------------------------------------------------------------
// Encoding helpers

fn canonical(v: &Json) -> Vec<u8> {
    json_to_msgpack(v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn hex(bytes: &[u8]) -> Json {
    Json::String(to_hex(bytes))
}

/// The bytes of one frame holding `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The payload of a batch: an array header and the messages' bytes.
fn batch(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    write::array_len(&mut out, messages.len());
    for m in messages {
        out.extend_from_slice(m);
    }
    out
}

fn frame_of(messages: &[Json]) -> Vec<u8> {
    frame(&batch(&messages.iter().map(canonical).collect::<Vec<_>>()))
}

/// An encoding of `v` with every integer, string, binary, array, map and
/// task reference in its widest form: valid, never canonical. Only for
/// typed fields (values would keep the wide bytes).
fn wide(v: &Json) -> Vec<u8> {
    let mut w = Vec::new();
    wide_into(&mut w, v);
    w
}

fn wide_str(w: &mut Vec<u8>, s: &str) {
    w.push(0xdb);
    w.extend_from_slice(&(s.len() as u32).to_be_bytes());
    w.extend_from_slice(s.as_bytes());
}

fn wide_into(w: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Number(n) if n.is_u64() => {
            w.push(0xcf);
            w.extend_from_slice(&n.as_u64().unwrap_or(0).to_be_bytes());
        }
        Json::Number(n) if n.is_i64() => {
            w.push(0xd3);
            w.extend_from_slice(&n.as_i64().unwrap_or(0).to_be_bytes());
        }
        Json::String(s) => wide_str(w, s),
        Json::Array(items) => {
            w.push(0xdd);
            w.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                wide_into(w, item);
            }
        }
        Json::Object(obj) if !is_special(obj) => {
            w.push(0xdf);
            w.extend_from_slice(&(obj.len() as u32).to_be_bytes());
            for (k, item) in obj {
                wide_str(w, k);
                wide_into(w, item);
            }
        }
        other => w.extend_from_slice(&canonical(other)),
    }
}

fn is_special(obj: &Map<String, Json>) -> bool {
    obj.len() == 1 && obj.keys().all(|k| k.starts_with('$'))
}

/// A map's entries as raw bytes: (encoded key, encoded value).
fn entries(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut r = Reader::new(bytes);
    let n = r.read_map_len().expect("a map");
    let mut out = Vec::new();
    for _ in 0..n {
        let k = r.skip_value(&mut |_| {}).expect("key").to_vec();
        let v = r.skip_value(&mut |_| {}).expect("value").to_vec();
        out.push((k, v));
    }
    out
}

fn key_bytes(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    write::str(&mut w, name);
    w
}

fn map_bytes(entries: &[(Vec<u8>, Vec<u8>)], map16: bool) -> Vec<u8> {
    let mut w = Vec::new();
    if map16 {
        w.push(0xde);
        w.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    } else {
        write::map_len(&mut w, entries.len());
    }
    for (k, v) in entries {
        w.extend_from_slice(k);
        w.extend_from_slice(v);
    }
    w
}

/// Reverses the entries of a map, or of each map in an array; keeps every
/// key and value byte as it is.
fn reverse_entries(bytes: &[u8]) -> Vec<u8> {
    match bytes[0] {
        0x80..=0x8f | 0xde | 0xdf => {
            let mut e = entries(bytes);
            e.reverse();
            map_bytes(&e, false)
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let mut r = Reader::new(bytes);
            let n = r.read_array_len().expect("array");
            let mut w = Vec::new();
            write::array_len(&mut w, n);
            for _ in 0..n {
                let item = r.skip_value(&mut |_| {}).expect("item");
                w.extend_from_slice(&reverse_entries(item));
            }
            w
        }
        _ => panic!("reverse_entries: not a map or array"),
    }
}

/// One rewrite of a message's canonical bytes.
enum Alt {
    /// Fields in reverse order (`op` last).
    Reversed,
    /// A map 16 header for the message map.
    Map16,
    /// Field names as str 32.
    WideNames,
    /// An absent optional field sent as nil.
    Nil(&'static str),
    /// A field this version does not define, appended.
    Unknown(&'static str, Json),
    /// A typed field's value in its widest encoding.
    Wide(&'static str),
    /// A typed map field (or array of maps) with its entries reversed.
    ReverseIn(&'static str),
    /// A field's value replaced by these bytes.
    Raw(&'static str, Vec<u8>),
}

fn rewrite(json: &Json, alts: &[Alt]) -> Vec<u8> {
    let mut e = entries(&canonical(json));
    let mut map16 = false;
    let field = |e: &[(Vec<u8>, Vec<u8>)], name: &str| -> usize {
        let k = key_bytes(name);
        e.iter()
            .position(|(ek, _)| *ek == k)
            .unwrap_or_else(|| panic!("no field {name}"))
    };
    for alt in alts {
        match alt {
            Alt::Reversed => e.reverse(),
            Alt::Map16 => map16 = true,
            Alt::WideNames => {
                for (k, _) in e.iter_mut() {
                    let name = dask_core::json::msgpack_to_json(k).expect("name");
                    let mut w = Vec::new();
                    wide_str(&mut w, name.as_str().expect("string name"));
                    *k = w;
                }
            }
            Alt::Nil(name) => e.push((key_bytes(name), vec![0xc0])),
            Alt::Unknown(name, v) => e.push((key_bytes(name), canonical(v))),
            Alt::Wide(name) => {
                let i = field(&e, name);
                e[i].1 = wide(&json[*name]);
            }
            Alt::ReverseIn(name) => {
                let i = field(&e, name);
                e[i].1 = reverse_entries(&e[i].1);
            }
            Alt::Raw(name, bytes) => {
                let i = field(&e, name);
                e[i].1 = bytes.clone();
            }
        }
    }
    map_bytes(&e, map16)
}

fn case(description: &str, json: Json, alts: Vec<Vec<Alt>>) -> Json {
    let canon = canonical(&json);
    let mut msgpack = vec![hex(&canon)];
    for alt in &alts {
        let bytes = rewrite(&json, alt);
        assert_ne!(
            bytes, canon,
            "{description}: an alternate equal to the canonical encoding"
        );
        msgpack.push(hex(&bytes));
    }
    json!({"description": description, "json": json, "msgpack": msgpack})
}

fn value_case(description: &str, json: Json, alts: Vec<Vec<u8>>) -> Json {
    let canon = canonical(&json);
    let mut msgpack = vec![hex(&canon)];
    for bytes in alts {
        assert_ne!(
            bytes, canon,
            "{description}: an alternate equal to the canonical encoding"
        );
        msgpack.push(hex(&bytes));
    }
    json!({"description": description, "json": json, "msgpack": msgpack})
}

fn unhex(s: &str) -> Vec<u8> {
    dask_core::json::unhex(s).expect("hex")
}

// ---------------------------------------------------------------------------
// Rendering: one case per block, JSON forms on one line.

fn render(doc: &Json) -> String {
    let mut out = String::new();
    render_into(&mut out, doc, 0, "");
    out.push('\n');
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn render_into(out: &mut String, v: &Json, depth: usize, key: &str) {
    let expand_strings = matches!(key, "msgpack" | "frame") && v.is_array();
    match v {
        Json::Object(obj) if depth < 3 && !obj.is_empty() => {
            out.push_str("{\n");
            for (i, (k, item)) in obj.iter().enumerate() {
                indent(out, depth + 1);
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                render_into(out, item, depth + 1, k);
                out.push_str(if i + 1 < obj.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push('}');
        }
        Json::Array(items)
            if !items.is_empty()
                && ((depth < 2 && items.iter().all(Json::is_object)) || expand_strings) =>
        {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, depth + 1);
                render_into(out, item, depth + 1, "");
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push(']');
        }
        other => out.push_str(&inline(other)),
    }
}

/// Compact JSON with a space after each `:` and `,`.
pub fn inline(v: &Json) -> String {
    match v {
        Json::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(inline).collect::<Vec<_>>().join(", ")
            )
        }
        Json::Object(obj) => format!(
            "{{{}}}",
            obj.iter()
                .map(|(k, item)| format!("{}: {}", Json::String(k.clone()), inline(item)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// messages.json

const A1: &str = "tcp://127.0.0.1:40001";
const A2: &str = "tcp://127.0.0.1:40002";

fn nested(levels: usize, inner: Json) -> Json {
    let mut v = inner;
    for _ in 0..levels {
        v = Json::Array(vec![v]);
    }
    v
}

fn bytes_pattern(n: usize) -> String {
    to_hex(&(0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

fn messages() -> Json {
    use Alt::*;
    let mut cases = Vec::new();

    // --- any direction -------------------------------------------------
    cases.push(case(
        "hello: a client's offer, the least a connector sends",
        json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "client"}),
        vec![
            vec![Reversed],
            vec![Map16, WideNames],
            vec![Wide("version")],
            vec![
                Nil("name"),
                Nil("id"),
                Nil("features"),
                Nil("auth"),
                Nil("tls"),
            ],
            vec![Unknown(
                "x-future",
                json!({"nested": [1, {"$ref": "k"}], "bin": {"$bin": "00"}}),
            )],
        ],
    ));
    cases.push(case(
        "hello: a worker's offer as dask-rs sends it (name, empty feature list)",
        json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "worker",
               "name": "worker-1", "features": []}),
        vec![vec![Reversed, Wide("features"), Wide("name")]],
    ));
    cases.push(case(
        "hello: the scheduler's reply (its role, the connection id, the common features)",
        json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "scheduler",
               "id": 1, "features": []}),
        vec![
            vec![Wide("id")],
            vec![Raw("version", vec![0x92, 0xd0, 0x01, 0xcc, 0x00])],
        ],
    ));
    cases.push(case(
        "hello: a peer that speaks dask/1.3 and offers a feature this version does not know",
        json!({"op": "hello", "protocol": "dask", "version": [1, 3], "role": "peer",
               "name": "fetcher", "features": ["x-compression"]}),
        vec![vec![Nil("auth")]],
    ));
    cases.push(case(
        "hello: tls sent as false (the only value dask/1.0 defines)",
        json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "peer", "tls": false}),
        vec![],
    ));
    cases.push(case(
        "error: fatal, an oversized frame (no request: the frame was never read)",
        json!({"op": "error", "code": 1002,
               "message": "frame of 300000000 bytes is over the limit of 268435456 bytes",
               "fatal": true}),
        vec![
            vec![Wide("code")],
            vec![Raw("code", vec![0xd1, 0x03, 0xea])],
            vec![Nil("request"), Nil("keys")],
        ],
    ));
    cases.push(case(
        "error: fatal, the handshake's version mismatch",
        json!({"op": "error", "code": 3001,
               "message": "peer speaks dask/2.0, this side speaks dask/1.0", "fatal": true}),
        vec![],
    ));
    cases.push(case(
        "error: not fatal, a graph refused because a task references an unknown key (keys: the unknown key)",
        json!({"op": "error", "code": 4001, "message": "task \"b\" references unknown key \"zz\"",
               "fatal": false, "request": 7, "keys": ["zz"]}),
        vec![vec![Reversed, Wide("request"), Wide("keys")]],
    ));
    cases.push(case(
        "error: not fatal, wrong-type from graph validation (args not an array); the frame itself decoded",
        json!({"op": "error", "code": 2003, "message": "task \"t\": args must be an array",
               "fatal": false, "request": 8, "keys": ["t"]}),
        vec![],
    ));
    cases.push(case(
        "error: not fatal, scatter with no worker connected",
        json!({"op": "error", "code": 5001, "message": "no workers to hold the data",
               "fatal": false, "request": 9}),
        vec![],
    ));
    cases.push(case(
        "close: no reason",
        json!({"op": "close"}),
        vec![
            vec![Nil("reason")],
            vec![Map16],
            vec![Unknown("x-later", json!(null))],
            // An unknown field may nest 102 levels (any field may).
            vec![Unknown("x-deep", nested(101, json!([])))],
        ],
    ));
    cases.push(case(
        "close: with a reason",
        json!({"op": "close", "reason": "scheduler shutting down"}),
        vec![vec![Reversed], vec![Wide("reason")]],
    ));
    cases.push(case(
        "heartbeat: a client's (no metrics)",
        json!({"op": "heartbeat"}),
        vec![vec![Nil("metrics")]],
    ));
    cases.push(case(
        "heartbeat: a worker's, with metrics",
        json!({"op": "heartbeat", "metrics": {"executing": 2, "ready": 5, "stored_keys": 10,
               "stored_bytes": 123456}}),
        vec![vec![Wide("metrics")], vec![ReverseIn("metrics")]],
    ));

    // --- client <-> scheduler -----------------------------------------
    cases.push(case(
        "update-graph: two tasks, one referencing the other; the client wants the second",
        json!({"op": "update-graph", "request": 1, "tasks": [
                {"key": "x", "function": "inc", "args": [1]},
                {"key": "y", "function": "add", "args": [{"$ref": "x"}, 10]}],
               "wanted": ["y"]}),
        vec![
            vec![Reversed],
            vec![ReverseIn("tasks")],
            vec![Wide("request"), Wide("wanted")],
            vec![Raw("tasks", {
                // The same tasks with kwargs: nil in each (nil = absent).
                let mut w = Vec::new();
                write::array_len(&mut w, 2);
                for t in [
                    json!({"key": "x", "function": "inc", "args": [1]}),
                    json!({"key": "y", "function": "add", "args": [{"$ref": "x"}, 10]}),
                ] {
                    let mut e = entries(&canonical(&t));
                    e.push((key_bytes("kwargs"), vec![0xc0]));
                    w.extend_from_slice(&map_bytes(&e, false));
                }
                w
            })],
        ],
    ));
    cases.push(case(
        "update-graph: every task option, kwargs, binary and task references nested in arrays and maps",
        json!({"op": "update-graph", "request": 2, "tasks": [
                {"key": "a", "function": "conformance.echo", "args": [{"$bin": "00ff10"}]},
                {"key": "b", "function": "range", "args": [3]},
                {"key": "sum-1", "function": "sum",
                 "args": [[{"$ref": "a"}, {"nested": [{"$ref": "b"}]}]],
                 "kwargs": {"start": 0, "meta": {"label": "total", "refs": [{"$ref": "a"}]}},
                 "priority": -5, "resources": {"GPU": 1.0, "MEM": 2.5}, "retries": 2,
                 "workers": [A1, "worker-b"]}],
               "wanted": ["sum-1", "a"]}),
        vec![vec![ReverseIn("tasks"), Map16]],
    ));
    cases.push(case(
        "update-graph: no new task, wanting a key the scheduler already knows",
        json!({"op": "update-graph", "request": 3, "tasks": [], "wanted": ["x"]}),
        vec![vec![Raw("tasks", vec![0xdc, 0x00, 0x00])]],
    ));
    cases.push(case(
        "update-graph: keys in any script (UTF-8), a 40-byte key (str 8)",
        json!({"op": "update-graph", "request": 4, "tasks": [
                {"key": "données-ключ-🔑", "function": "identity", "args": ["é"]},
                {"key": "k-0123456789abcdef0123456789abcdef012345", "function": "len",
                 "args": [{"$ref": "données-ключ-🔑"}]}],
               "wanted": ["k-0123456789abcdef0123456789abcdef012345"]}),
        vec![],
    ));
    cases.push(case(
        "update-graph: args nested 100 levels deep (the limit holds for each value itself)",
        json!({"op": "update-graph", "request": 5, "tasks": [
                {"key": "deep", "function": "conformance.echo", "args": nested(99, json!([]))}],
               "wanted": ["deep"]}),
        vec![],
    ));
    cases.push(case(
        "update-graph (dask/1.1): ack asks for an ok once the graph is accepted",
        json!({"op": "update-graph", "request": 6, "tasks": [
                {"key": "x", "function": "inc", "args": [1]}],
               "wanted": ["x"], "ack": true}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "release-keys",
        json!({"op": "release-keys", "keys": ["x", "y"]}),
        vec![vec![Wide("keys")]],
    ));
    cases.push(case(
        "cancel-keys: for this client only",
        json!({"op": "cancel-keys", "keys": ["y"]}),
        vec![vec![Nil("force")]],
    ));
    cases.push(case(
        "cancel-keys: forced, for every client",
        json!({"op": "cancel-keys", "keys": ["y", "z"], "force": true}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "scatter: two values, the scheduler picks the worker",
        json!({"op": "scatter", "request": 5,
               "data": {"a": [1, 2, 3], "b": {"$bin": "deadbeef"}}}),
        vec![
            vec![ReverseIn("data")],
            vec![Nil("workers"), Nil("broadcast")],
        ],
    ));
    cases.push(case(
        "scatter: broadcast to named workers",
        json!({"op": "scatter", "request": 6, "data": {"c": {"x": 1.5}},
               "workers": [A1, A2], "broadcast": true}),
        vec![vec![Wide("workers"), Wide("request")]],
    ));
    cases.push(case(
        "scatter (dask/1.1): ack asks for an ok once accepted",
        json!({"op": "scatter", "request": 10, "data": {"d": 4}, "ack": true}),
        vec![vec![Nil("workers")]],
    ));
    cases.push(case(
        "gather",
        json!({"op": "gather", "request": 7, "keys": ["a", "y"]}),
        vec![vec![Reversed, Wide("keys")]],
    ));
    cases.push(case(
        "gather-reply: one value, one key not in memory anywhere",
        json!({"op": "gather-reply", "request": 7, "data": {"a": [1, 2, 3], "y": 12},
               "missing": ["gone"]}),
        vec![vec![ReverseIn("data")]],
    ));
    cases.push(case(
        "gather-reply (dask/1.1): the state of each missing key, one being recomputed",
        json!({"op": "gather-reply", "request": 12, "data": {},
               "missing": ["gone", "y"], "status": {"gone": "forgotten", "y": "processing"}}),
        vec![vec![ReverseIn("status")]],
    ));
    cases.push(case(
        "who-has",
        json!({"op": "who-has", "request": 8, "keys": ["a", "b"]}),
        vec![],
    ));
    cases.push(case(
        "who-has-reply: holders per key, an empty list for a key held nowhere",
        json!({"op": "who-has-reply", "request": 8, "who_has": {"a": [A1, A2], "b": []}}),
        vec![vec![ReverseIn("who_has")], vec![Wide("who_has")]],
    ));
    cases.push(case(
        "who-has-reply (dask/1.1): with the state of every key, an unknown one forgotten",
        json!({"op": "who-has-reply", "request": 13, "who_has": {"a": [A1], "b": [], "c": []},
               "status": {"a": "memory", "b": "waiting", "c": "forgotten"}}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "cluster-info",
        json!({"op": "cluster-info", "request": 9}),
        vec![vec![Wide("request")]],
    ));
    cases.push(case(
        "cluster-info-reply: one worker, task counts by scheduler state",
        json!({"op": "cluster-info-reply", "request": 9, "workers": [
                {"id": 2, "name": "w1", "address": A1, "nthreads": 4,
                 "memory_limit": 8589934592u64, "resources": {"GPU": 1.0},
                 "functions": ["add", "inc"], "processing": 3, "stored_keys": 10,
                 "stored_bytes": 2048}],
               "tasks": {"memory": 10, "processing": 3, "waiting": 7}, "clients": 1}),
        vec![
            vec![Wide("workers"), Wide("tasks"), Wide("clients")],
            vec![ReverseIn("workers"), ReverseIn("tasks"), Reversed],
            // A resource amount sent as an integer is read as a float.
            vec![Raw(
                "workers",
                canonical(&json!([{"id": 2, "name": "w1", "address": A1,
                "nthreads": 4, "memory_limit": 8589934592u64, "resources": {"GPU": 1},
                "functions": ["add", "inc"], "processing": 3, "stored_keys": 10,
                "stored_bytes": 2048}])),
            )],
        ],
    ));
    cases.push(case(
        "cluster-info-reply: no worker, no task",
        json!({"op": "cluster-info-reply", "request": 10, "workers": [], "tasks": {}, "clients": 1}),
        vec![],
    ));
    cases.push(case(
        "publish-dataset",
        json!({"op": "publish-dataset", "request": 11, "name": "results", "keys": ["y", "a"]}),
        vec![vec![Nil("overwrite")]],
    ));
    cases.push(case(
        "publish-dataset: replacing a dataset of the same name",
        json!({"op": "publish-dataset", "request": 12, "name": "results", "keys": ["y"],
               "overwrite": true}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "unpublish-dataset",
        json!({"op": "unpublish-dataset", "request": 13, "name": "results"}),
        vec![],
    ));
    cases.push(case(
        "get-dataset",
        json!({"op": "get-dataset", "request": 14, "name": "results"}),
        vec![vec![Wide("name")]],
    ));
    cases.push(case(
        "dataset",
        json!({"op": "dataset", "request": 14, "name": "results", "keys": ["y", "a"]}),
        vec![],
    ));
    cases.push(case(
        "list-datasets",
        json!({"op": "list-datasets", "request": 15}),
        vec![],
    ));
    cases.push(case(
        "datasets: names, sorted",
        json!({"op": "datasets", "request": 15, "names": ["results", "train"]}),
        vec![],
    ));
    cases.push(case(
        "ok",
        json!({"op": "ok", "request": 11}),
        vec![
            vec![Wide("request")],
            vec![Raw("request", vec![0xd0, 0x0b])],
        ],
    ));
    cases.push(case(
        "key-finished",
        json!({"op": "key-finished", "key": "y", "nbytes": 1}),
        vec![vec![Wide("nbytes")]],
    ));
    cases.push(case(
        "key-finished: a large result (uint 32 nbytes)",
        json!({"op": "key-finished", "key": "big", "nbytes": 200000000}),
        vec![],
    ));
    cases.push(case(
        "key-erred: the task itself failed",
        json!({"op": "key-erred", "key": "z", "error_type": "ZeroDivisionError",
               "message": "division by zero",
               "traceback": "Traceback (most recent call last):\n  File \"f.py\", line 1\nZeroDivisionError: division by zero\n"}),
        vec![vec![Nil("cause")]],
    ));
    cases.push(case(
        "key-erred: failed through a dependency (cause names the task that raised)",
        json!({"op": "key-erred", "key": "w", "error_type": "ConformanceError", "message": "boom",
               "traceback": "", "cause": "z"}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "key-lost",
        json!({"op": "key-lost", "key": "s",
               "message": "the only worker holding scattered key \"s\" is gone"}),
        vec![],
    ));
    cases.push(case(
        "key-cancelled",
        json!({"op": "key-cancelled", "key": "y"}),
        vec![vec![Unknown("reason", json!("ignored by dask/1.0"))]],
    ));
    cases.push(case(
        "key-finished (dask/1.1): the request of the update-graph that started the want",
        json!({"op": "key-finished", "key": "y", "nbytes": 1, "request": 1}),
        vec![vec![Reversed], vec![Wide("request")]],
    ));
    cases.push(case(
        "key-erred (dask/1.1): with the want's request",
        json!({"op": "key-erred", "key": "w", "error_type": "ConformanceError", "message": "boom",
               "traceback": "", "cause": "z", "request": 4}),
        vec![],
    ));
    cases.push(case(
        "key-lost (dask/1.1): the want started by a scatter",
        json!({"op": "key-lost", "key": "s", "message": "scatter failed: the worker left before storing it",
               "request": 5}),
        vec![],
    ));
    cases.push(case(
        "key-cancelled (dask/1.1): with the want's request",
        json!({"op": "key-cancelled", "key": "y", "request": 300}),
        vec![],
    ));

    // --- scheduler <-> worker -----------------------------------------
    cases.push(case(
        "register-worker: required fields only",
        json!({"op": "register-worker", "name": "w1", "address": A1, "nthreads": 2,
               "functions": ["add", "inc"]}),
        vec![
            vec![Nil("memory_limit"), Nil("resources"), Nil("pid")],
            vec![Wide("nthreads"), Wide("functions"), Reversed],
        ],
    ));
    cases.push(case(
        "register-worker: every field",
        json!({"op": "register-worker", "name": "gpu-worker", "address": A2, "nthreads": 8,
               "memory_limit": 17179869184u64, "resources": {"GPU": 2.0, "MEM": 1e9},
               "functions": ["conformance.echo", "sum"], "pid": 4242}),
        vec![
            vec![Wide("memory_limit"), Wide("pid"), ReverseIn("resources")],
            // Floats may come as float 32 or as integers: read as float 64.
            vec![Raw("resources", {
                let mut w = Vec::new();
                write::map_len(&mut w, 2);
                write::str(&mut w, "GPU");
                w.extend_from_slice(&[0xca, 0x40, 0x00, 0x00, 0x00]);
                write::str(&mut w, "MEM");
                w.extend_from_slice(&[0xce, 0x3b, 0x9a, 0xca, 0x00]);
                w
            })],
        ],
    ));
    cases.push(case(
        "worker-registered",
        json!({"op": "worker-registered", "id": 2, "heartbeat_interval_ms": 1000}),
        vec![vec![Wide("id"), Wide("heartbeat_interval_ms")]],
    ));
    cases.push(case(
        "compute-task: one dependency held by a peer",
        json!({"op": "compute-task", "key": "y", "function": "add",
               "args": [{"$ref": "x"}, 10], "who_has": {"x": [A2]}}),
        vec![
            vec![Reversed],
            vec![Nil("kwargs"), Nil("priority"), Nil("resources")],
        ],
    ));
    cases.push(case(
        "compute-task: kwargs, priority, resources, a dependency held by two workers (one the receiver)",
        json!({"op": "compute-task", "key": "sum-1", "function": "sum",
               "args": [[{"$ref": "a"}, {"nested": [{"$ref": "b"}]}]],
               "kwargs": {"start": 0, "meta": {"label": "total", "refs": [{"$ref": "a"}]}},
               "who_has": {"a": [A1, A2], "b": [A1]}, "priority": -5,
               "resources": {"GPU": 1.0}}),
        vec![vec![ReverseIn("who_has")], vec![Wide("priority"), Wide("who_has")]],
    ));
    cases.push(case(
        "compute-task: no dependencies, args nested 100 levels deep (the limit)",
        json!({"op": "compute-task", "key": "deep", "function": "conformance.echo",
               "args": nested(99, json!([])), "who_has": {}}),
        vec![],
    ));
    cases.push(case(
        "task-finished",
        json!({"op": "task-finished", "key": "y", "nbytes": 1, "duration_us": 52}),
        vec![vec![Wide("nbytes"), Wide("duration_us")]],
    ));
    cases.push(case(
        "task-finished: duration unknown",
        json!({"op": "task-finished", "key": "x", "nbytes": 1}),
        vec![vec![Nil("duration_us")]],
    ));
    cases.push(case(
        "task-erred: a function the worker does not offer",
        json!({"op": "task-erred", "key": "z", "error_type": "UnknownFunction",
               "message": "no function named \"nope\"", "traceback": ""}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "free-keys",
        json!({"op": "free-keys", "keys": ["x", "y"]}),
        vec![],
    ));
    cases.push(case(
        "steal-request",
        json!({"op": "steal-request", "key": "y"}),
        vec![],
    ));
    cases.push(case(
        "steal-response: the task had not started and is dropped",
        json!({"op": "steal-response", "key": "y", "stolen": true}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "steal-response: running, done or unknown",
        json!({"op": "steal-response", "key": "y", "stolen": false}),
        vec![],
    ));
    cases.push(case(
        "put-data",
        json!({"op": "put-data", "request": 16, "data": {"a": [1, 2, 3], "c": {"x": 1.5}}}),
        vec![vec![ReverseIn("data")]],
    ));
    cases.push(case(
        "data-stored",
        json!({"op": "data-stored", "request": 16, "nbytes": {"a": 4, "c": 12}}),
        vec![vec![ReverseIn("nbytes"), Wide("nbytes")]],
    ));
    cases.push(case(
        "add-keys",
        json!({"op": "add-keys", "nbytes": {"x": 1}}),
        vec![vec![Wide("nbytes")]],
    ));
    cases.push(case(
        "missing-data",
        json!({"op": "missing-data", "key": "x", "addresses": [A2], "task": "y"}),
        vec![vec![Reversed]],
    ));

    // --- worker <-> peer (and scheduler -> worker) --------------------
    cases.push(case(
        "get-data",
        json!({"op": "get-data", "request": 17, "keys": ["x"]}),
        vec![vec![Wide("request")]],
    ));
    cases.push(case(
        "data: one value held, nothing missing",
        json!({"op": "data", "request": 17, "data": {"x": 2}, "missing": []}),
        vec![],
    ));
    cases.push(case(
        "data: a 300-byte binary value (bin 16) and a missing key",
        json!({"op": "data", "request": 18, "data": {"blob": {"$bin": bytes_pattern(300)}},
               "missing": ["nope"]}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "data: a value nested 100 levels deep (the limit)",
        json!({"op": "data", "request": 19, "data": {"deep": nested(99, json!([1]))}, "missing": []}),
        vec![],
    ));
    cases.push(case(
        "busy",
        json!({"op": "busy", "request": 17}),
        vec![vec![Wide("request")]],
    ));

    json!({
        "description": "dask/1.0 messages: for each, its JSON form and its msgpack encodings (canonical first, then other encodings a decoder must accept). See README.md.",
        "version": [1, 0],
        "cases": cases,
    })
}

// ---------------------------------------------------------------------------
// values.json

fn values() -> Json {
    let mut cases = Vec::new();
    let mut v = |d: &str, j: Json, alts: &[&str]| {
        cases.push(value_case(d, j, alts.iter().map(|h| unhex(h)).collect()));
    };
    v("nil", json!(null), &[]);
    v("true", json!(true), &[]);
    v("false", json!(false), &[]);
    v(
        "0: positive fixint",
        json!(0),
        &[
            "cc00",
            "cd0000",
            "ce00000000",
            "cf0000000000000000",
            "d000",
            "d10000",
            "d200000000",
            "d30000000000000000",
        ],
    );
    v(
        "127: the largest positive fixint",
        json!(127),
        &["cc7f", "d07f"],
    );
    v("128: uint 8", json!(128), &["cd0080", "d10080"]);
    v("255", json!(255), &["cd00ff"]);
    v("256: uint 16", json!(256), &["ce00000100"]);
    v("65535", json!(65535), &[]);
    v(
        "65536: uint 32",
        json!(65536),
        &["cf0000000000010000", "d200010000"],
    );
    v("4294967295", json!(4294967295u64), &[]);
    v(
        "4294967296: uint 64",
        json!(4294967296u64),
        &["d30000000100000000"],
    );
    v(
        "18446744073709551615: the largest integer",
        json!(u64::MAX),
        &[],
    );
    v(
        "-1: negative fixint",
        json!(-1),
        &["d0ff", "d1ffff", "d3ffffffffffffffff"],
    );
    v("-32: the smallest negative fixint", json!(-32), &["d0e0"]);
    v("-33: int 8", json!(-33), &["d1ffdf"]);
    v("-128", json!(-128), &[]);
    v("-129: int 16", json!(-129), &[]);
    v("-32768", json!(-32768), &[]);
    v("-32769: int 32", json!(-32769), &[]);
    v("-2147483648", json!(-2147483648i64), &[]);
    v("-2147483649: int 64", json!(-2147483649i64), &[]);
    v(
        "-9223372036854775808: the smallest integer",
        json!(i64::MIN),
        &[],
    );
    v("1.5: floats are float 64", json!(1.5), &["ca3fc00000"]);
    v(
        "1.0: a float with an integral value stays a float",
        json!(1.0),
        &["ca3f800000"],
    );
    v("-0.0", json!(-0.0), &[]);
    v("1e300", json!(1e300), &[]);
    v("5e-324: the smallest subnormal", json!(5e-324), &[]);
    v(
        "NaN",
        json!({"$float": "NaN"}),
        &["ca7fc00000", "cb7ff8000000000001"],
    );
    v("infinity", json!({"$float": "inf"}), &["ca7f800000"]);
    v("minus infinity", json!({"$float": "-inf"}), &["caff800000"]);
    v("empty string", json!(""), &["d900", "da0000", "db00000000"]);
    v(
        "string",
        json!("a"),
        &["d90161", "da000161", "db0000000161"],
    );
    v("31 bytes: the longest fixstr", json!("a".repeat(31)), &[]);
    v("32 bytes: str 8", json!("a".repeat(32)), &[]);
    v("256 bytes: str 16", json!("b".repeat(256)), &[]);
    v("multi-byte UTF-8", json!("é☃😀"), &[]);
    v(
        "empty binary",
        json!({"$bin": ""}),
        &["c50000", "c600000000"],
    );
    v("binary", json!({"$bin": "00ff10"}), &["c5000300ff10"]);
    v(
        "task reference, 1-byte key: fixext 1",
        json!({"$ref": "x"}),
        &["c7010178", "c800010178", "c90000000101 78"],
    );
    v(
        "task reference, 3-byte key: ext 8",
        json!({"$ref": "abc"}),
        &["c900000003 01 616263"],
    );
    v(
        "task reference, 16-byte key: fixext 16",
        json!({"$ref": "0123456789abcdef"}),
        &[],
    );
    v(
        "task reference, non-ASCII key",
        json!({"$ref": "données"}),
        &[],
    );
    v(
        "other ext type (5)",
        json!({"$ext": [5, "01"]}),
        &["c7010501"],
    );
    v(
        "negative ext type (-1, msgpack timestamp 32)",
        json!({"$ext": [-1, "00000000"]}),
        &[],
    );
    v("empty array", json!([]), &["dc0000", "dd00000000"]);
    v(
        "array",
        json!([1, [2, [3]]]),
        &["dc0002 01 dc0002 02 dd00000001 03"],
    );
    v(
        "16 elements: array 16",
        json!((0..16).collect::<Vec<u32>>()),
        &[],
    );
    v("empty map", json!({}), &["de0000", "df00000000"]);
    v(
        "map: entries keep their order (values are not sorted)",
        json!({"b": 1, "a": [true]}),
        &["de0002 a162 01 a161 91c3"],
    );
    v(
        "16 entries: map 16",
        Json::Object((0..16).map(|i| (format!("k{i:02}"), json!(i))).collect()),
        &[],
    );
    v(
        "map with integer keys",
        json!({"$map": [[1, "one"], [2, "two"]]}),
        &[],
    );
    v(
        "map whose only key is \"$ref\": not a task reference",
        json!({"$map": [["$ref", "x"]]}),
        &[],
    );
    v(
        "map with a task reference as a key",
        json!({"$map": [[{"$ref": "k"}, 1]]}),
        &[],
    );
    v(
        "map with an array key and a nil key",
        json!({"$map": [[[1, 2], null], [null, 0]]}),
        &[],
    );
    v(
        "task references nested in arrays and maps",
        json!([{"$ref": "a"}, {"k": [{"$ref": "b"}, {"deeper": {"$ref": "c"}}]}]),
        &[],
    );
    v(
        "nesting 100 levels deep (the limit)",
        nested(99, json!([1])),
        &[],
    );
    json!({
        "description": "The JSON form of msgpack values (PROTOCOL.md#json-form) and their encodings: canonical first, then other encodings a decoder must accept. Every value here is a valid task argument or result.",
        "cases": cases,
    })
}

// ---------------------------------------------------------------------------
// frames.json

fn frames() -> Json {
    let hello = json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "client"});
    let worker_hello = json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "worker",
                              "name": "w1", "features": []});
    let register = json!({"op": "register-worker", "name": "w1", "address": A1, "nthreads": 2,
                          "functions": ["add", "inc"]});
    let finished: Vec<Json> = ["a", "b", "c"]
        .iter()
        .map(|k| json!({"op": "key-finished", "key": k, "nbytes": 1}))
        .collect();
    let mut cases = Vec::new();
    cases.push(json!({
        "description": "an empty batch (valid, nothing to do)",
        "messages": [],
        "frame": [hex(&frame(&[0x90])), hex(&frame(&[0xdc, 0, 0])), hex(&frame(&[0xdd, 0, 0, 0, 0]))],
    }));
    cases.push(json!({
        "description": "one message: a client's hello",
        "messages": [hello],
        "frame": [hex(&frame_of(std::slice::from_ref(&hello)))],
    }));
    let pipelined = [worker_hello.clone(), register.clone()];
    cases.push(json!({
        "description": "a worker's first frame: hello and register-worker pipelined in one batch",
        "messages": pipelined,
        "frame": [hex(&frame_of(&pipelined))],
    }));
    let wide_batch = {
        let mut p = vec![0xdc, 0x00, 0x03];
        for m in &finished {
            p.extend_from_slice(&canonical(m));
        }
        frame(&p)
    };
    cases.push(json!({
        "description": "a batch of three events; also accepted with an array 16 header",
        "messages": finished,
        "frame": [hex(&frame_of(&finished)), hex(&wide_batch)],
    }));
    let close = json!({"op": "close"});
    let at_limit = frame_of(std::slice::from_ref(&close));
    cases.push(json!({
        "description": "a frame exactly at the receiver's limit (frame_bytes_max = its length) is accepted",
        "frame_bytes_max": at_limit.len() - 4,
        "messages": [close],
        "frame": [hex(&at_limit)],
    }));
    let mut stream = frame_of(std::slice::from_ref(&worker_hello));
    stream.extend_from_slice(&frame_of(std::slice::from_ref(&register)));
    stream.extend_from_slice(&frame(&[0x90]));
    cases.push(json!({
        "description": "a stream of three frames: each frame is one batch",
        "stream": hex(&stream),
        "batches": [[worker_hello], [register], []],
    }));
    json!({
        "description": "Whole frames (4-byte big-endian length, then one msgpack array of messages) and the batches they hold. See README.md.",
        "cases": cases,
    })
}

// ---------------------------------------------------------------------------
// invalid.json

fn invalid() -> Json {
    let mut cases = vec![json!({
        "description": "length prefix over the receiver's limit (frame_bytes_max 16): refused before the payload arrives",
        "frame": hex(&frame(&[0x90; 17])[..5]),
        "frame_bytes_max": 16,
        "error": "frame-too-large",
        "code": 1002,
    })];
    let mut bad = |d: &str, frame: Vec<u8>, error: &str, code: u32| {
        cases.push(json!({"description": d, "frame": hex(&frame), "error": error, "code": code}));
    };
    let msg = |j: Json| canonical(&j);
    let one = |m: Vec<u8>| frame(&batch(&[m]));
    let gather = json!({"op": "gather", "request": 1, "keys": ["x"]});
    // A message map from raw (name, value bytes) entries.
    let raw_msg = |fields: &[(&str, Vec<u8>)]| {
        let e: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter()
            .map(|(k, v)| (key_bytes(k), v.clone()))
            .collect();
        map_bytes(&e, false)
    };
    let s = |x: &str| key_bytes(x);

    // 1xxx framing
    bad(
        "length prefix of 256 MiB + 1 with the default limit: refused with no payload at all",
        (268435457u32).to_be_bytes().to_vec(),
        "frame-too-large",
        1002,
    );
    bad(
        "length prefix 0xffffffff",
        vec![0xff; 4],
        "frame-too-large",
        1002,
    );
    bad(
        "a frame of length 0 (no array)",
        frame(&[]),
        "malformed-frame",
        1001,
    );
    bad(
        "payload is a map, not an array",
        frame(&msg(gather.clone())),
        "malformed-frame",
        1001,
    );
    bad(
        "payload is an integer",
        frame(&[0x01]),
        "malformed-frame",
        1001,
    );
    bad(
        "a message that is an array, not a map",
        frame(&[0x91, 0x91, 0x01]),
        "malformed-frame",
        1001,
    );
    bad(
        "a message that is a string",
        frame(&[0x91, 0xa2, b'o', b'p']),
        "malformed-frame",
        1001,
    );
    bad(
        "array header announces two messages, one is present",
        frame(&{
            let mut p = vec![0x92];
            p.extend_from_slice(&msg(gather.clone()));
            p
        }),
        "malformed-frame",
        1001,
    );
    bad(
        "a string that runs past the end of the frame",
        one(raw_msg(&[("op", vec![0xa6, b'g', b'a', b't'])])),
        "malformed-frame",
        1001,
    );
    bad(
        "bytes after the array of messages (trailing bytes)",
        frame(&{
            let mut p = batch(&[msg(gather.clone())]);
            p.push(0xc0);
            p
        }),
        "malformed-frame",
        1001,
    );
    bad(
        "reserved byte 0xc1 as a field value",
        one(raw_msg(&[("op", s("close")), ("reason", vec![0xc1])])),
        "malformed-frame",
        1001,
    );
    bad(
        "reserved byte 0xc1 as the payload",
        frame(&[0xc1]),
        "malformed-frame",
        1001,
    );
    bad(
        "invalid UTF-8 in a string field",
        one(raw_msg(&[
            ("op", s("close")),
            ("reason", vec![0xa2, 0xc3, 0x28]),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "invalid UTF-8 in a field name",
        one({
            let mut m = vec![0x82];
            m.extend_from_slice(&s("op"));
            m.extend_from_slice(&s("close"));
            m.extend_from_slice(&[0xa1, 0xff, 0xc0]);
            m
        }),
        "malformed-frame",
        1001,
    );
    bad(
        "invalid UTF-8 inside a value (args)",
        one(raw_msg(&[
            ("op", s("compute-task")),
            ("key", s("k")),
            ("function", s("f")),
            ("args", vec![0x91, 0xa1, 0x80]),
            ("who_has", vec![0x80]),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "task reference whose key is not UTF-8",
        one(raw_msg(&[
            ("op", s("compute-task")),
            ("key", s("k")),
            ("function", s("f")),
            ("args", vec![0x91, 0xd4, 0x01, 0xff]),
            ("who_has", vec![0x80]),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "a value nested 101 levels deep",
        one(raw_msg(&[
            ("op", s("compute-task")),
            ("key", s("k")),
            ("function", s("f")),
            ("args", {
                let mut a = vec![0x91; 100];
                a.push(0x90);
                a
            }),
            ("who_has", vec![0x80]),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "args nested 101 levels deep inside update-graph's tasks",
        one(raw_msg(&[
            ("op", s("update-graph")),
            ("request", vec![0x01]),
            ("tasks", {
                let mut t = vec![0x91, 0x83];
                t.extend_from_slice(&s("key"));
                t.extend_from_slice(&s("k"));
                t.extend_from_slice(&s("function"));
                t.extend_from_slice(&s("f"));
                t.extend_from_slice(&s("args"));
                t.extend_from_slice(&[0x91; 100]);
                t.push(0x90);
                t
            }),
            ("wanted", vec![0x90]),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "a data value nested 101 levels deep",
        one(raw_msg(&[
            ("op", s("put-data")),
            ("request", vec![0x01]),
            ("data", {
                let mut d = vec![0x81];
                d.extend_from_slice(&s("a"));
                d.extend_from_slice(&[0x91; 100]);
                d.push(0x90);
                d
            }),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "an unknown field nested 103 levels deep",
        one(raw_msg(&[
            ("op", s("close")),
            ("x-deep", {
                let mut a = vec![0x91; 102];
                a.push(0x90);
                a
            }),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "a field appears twice",
        one(raw_msg(&[
            ("op", s("gather")),
            ("request", vec![0x01]),
            ("keys", vec![0x90]),
            ("request", vec![0x02]),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "op appears twice",
        one(raw_msg(&[
            ("op", s("gather")),
            ("request", vec![0x01]),
            ("keys", vec![0x90]),
            ("op", s("gather")),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "a key appears twice in a map of keys (data)",
        one(raw_msg(&[
            ("op", s("put-data")),
            ("request", vec![0x01]),
            ("data", {
                let mut d = vec![0x82];
                d.extend_from_slice(&s("a"));
                d.push(0x01);
                d.extend_from_slice(&s("a"));
                d.push(0x02);
                d
            }),
        ])),
        "malformed-frame",
        1001,
    );
    bad(
        "a message map of 65 entries (more than 64)",
        one({
            let mut fields: Vec<(String, Vec<u8>)> = vec![("op".into(), s("close"))];
            for i in 0..64 {
                fields.push((format!("x{i}"), vec![0xc0]));
            }
            let e: Vec<(Vec<u8>, Vec<u8>)> = fields
                .iter()
                .map(|(k, v)| (key_bytes(k), v.clone()))
                .collect();
            map_bytes(&e, false)
        }),
        "malformed-frame",
        1001,
    );
    bad(
        "a good message then a bad one: the whole frame is refused",
        frame(&batch(&[msg(gather.clone()), vec![0x91, 0x01]])),
        "malformed-frame",
        1001,
    );

    // 2xxx messages
    bad(
        "a map without op",
        one(msg(json!({"request": 1, "keys": ["x"]}))),
        "missing-field",
        2002,
    );
    bad("an empty map", one(vec![0x80]), "missing-field", 2002);
    bad(
        "op is not a string",
        one(raw_msg(&[("op", vec![0x01])])),
        "wrong-type",
        2003,
    );
    bad(
        "op is nil",
        one(raw_msg(&[("op", vec![0xc0])])),
        "wrong-type",
        2003,
    );
    bad(
        "hello's reserved tls that is not a boolean (tls: 5): a field of the wrong type like any other",
        one(msg(json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "client", "tls": 5}))),
        "wrong-type",
        2003,
    );
    bad(
        "unknown op",
        one(msg(json!({"op": "frobnicate", "request": 1}))),
        "unknown-op",
        2001,
    );
    bad(
        "op names are case-sensitive",
        one(msg(json!({"op": "Gather", "request": 1, "keys": []}))),
        "unknown-op",
        2001,
    );
    bad(
        "missing required field (gather without keys)",
        one(msg(json!({"op": "gather", "request": 1}))),
        "missing-field",
        2002,
    );
    bad(
        "missing required field in a nested struct (metrics without ready)",
        one(msg(json!({"op": "heartbeat",
            "metrics": {"executing": 0, "stored_keys": 0, "stored_bytes": 0}}))),
        "missing-field",
        2002,
    );
    bad(
        "wrong field type: request as a string",
        one(msg(json!({"op": "gather", "request": "1", "keys": ["x"]}))),
        "wrong-type",
        2003,
    );
    bad(
        "wrong field type: an unsigned field given a float",
        one(msg(json!({"op": "gather", "request": 1.0, "keys": ["x"]}))),
        "wrong-type",
        2003,
    );
    bad(
        "wrong field type: keys as a map",
        one(msg(json!({"op": "gather", "request": 1, "keys": {"x": 1}}))),
        "wrong-type",
        2003,
    );
    bad(
        "wrong field type: a boolean given 1",
        one(msg(
            json!({"op": "steal-response", "key": "y", "stolen": 1}),
        )),
        "wrong-type",
        2003,
    );
    bad(
        "wrong field type: a string field given binary",
        one(msg(json!({"op": "close", "reason": {"$bin": "6869"}}))),
        "wrong-type",
        2003,
    );
    bad(
        "nil for a required field",
        one(msg(json!({"op": "gather", "request": null, "keys": ["x"]}))),
        "wrong-type",
        2003,
    );
    bad(
        "a field name that is not a string",
        one({
            let mut m = vec![0x82];
            m.extend_from_slice(&s("op"));
            m.extend_from_slice(&s("close"));
            m.extend_from_slice(&[0x01, 0xc0]);
            m
        }),
        "wrong-type",
        2003,
    );
    bad(
        "integer out of range: a negative request id",
        one(msg(json!({"op": "gather", "request": -1, "keys": ["x"]}))),
        "wrong-type",
        2003,
    );
    bad(
        "integer out of range: nthreads of 2^32 (a u32 field)",
        one(msg(json!({"op": "register-worker", "name": "w",
            "address": A1, "nthreads": 4294967296u64, "functions": []}))),
        "wrong-type",
        2003,
    );
    bad(
        "integer out of range: priority of 2^63 (an i64 field)",
        one(msg(json!({"op": "compute-task", "key": "k",
            "function": "f", "args": [], "who_has": {}, "priority": 9223372036854775808u64}))),
        "wrong-type",
        2003,
    );
    bad(
        "an empty key",
        one(msg(json!({"op": "gather", "request": 1, "keys": [""]}))),
        "wrong-type",
        2003,
    );
    bad(
        "a key of 4097 bytes",
        one(msg(json!({"op": "key-cancelled", "key": "k".repeat(4097)}))),
        "wrong-type",
        2003,
    );
    bad(
        "a task reference with an empty key",
        one(raw_msg(&[
            ("op", s("compute-task")),
            ("key", s("k")),
            ("function", s("f")),
            ("args", vec![0x91, 0xc7, 0x00, 0x01]),
            ("who_has", vec![0x80]),
        ])),
        "wrong-type",
        2003,
    );
    bad(
        "role not one of client, worker, peer, scheduler",
        one(msg(json!({"op": "hello", "protocol": "dask",
            "version": [1, 0], "role": "admin"}))),
        "wrong-type",
        2003,
    );
    bad(
        "version not a [major, minor] pair",
        one(msg(json!({"op": "hello", "protocol": "dask",
            "version": [1, 0, 0], "role": "client"}))),
        "wrong-type",
        2003,
    );
    bad(
        "a map-of-keys key that is not a string",
        one(msg(json!({"op": "add-keys", "nbytes": {"$map": [[1, 1]]}}))),
        "wrong-type",
        2003,
    );

    // Incomplete: the decoder wants more bytes, no error yet.
    let mut incomplete = |d: &str, frame: Vec<u8>| {
        cases.push(json!({"description": d, "frame": hex(&frame), "incomplete": true}));
    };
    incomplete("nothing received", vec![]);
    incomplete("half a length prefix", vec![0x00, 0x00]);
    incomplete(
        "a length prefix and no payload",
        5u32.to_be_bytes().to_vec(),
    );
    let full = frame_of(&[json!({"op": "close"})]);
    incomplete(
        "a truncated frame: the payload's last byte has not arrived",
        full[..full.len() - 1].to_vec(),
    );
    incomplete(
        "a length prefix at the limit (256 MiB) and a partial payload",
        {
            let mut f = 268435456u32.to_be_bytes().to_vec();
            f.push(0xdd);
            f
        },
    );
    json!({
        "description": "Bytes a receiver must refuse, with the error code it sends (all fatal), and truncated input that is not yet an error. Each case holds one fault. See README.md.",
        "cases": cases,
    })
}

// ---------------------------------------------------------------------------
// handshake.json

fn hello(role: &str, minor: u32) -> Json {
    json!({"op": "hello", "protocol": "dask", "version": [1, minor], "role": role})
}

fn handshake() -> Json {
    let sched = json!(["client", "worker"]);
    let data_port = json!(["peer"]);
    let reply = |role: &str, id: u64| json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": role, "id": id, "features": []});
    let reply_1_1 = |role: &str, id: u64| json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": role, "id": id, "features": []});
    // Acceptors speaking dask/1.1 (as dask-rs does), unless `speaking` says.
    let speaks = json!([1, 1]);
    let ok = |d: &str, serves: &Json, role: &str, id: u64, first: Json, reply: Json| json!({"description": d, "speaks": speaks, "serves": serves, "role": role, "id": id, "first": first, "reply": reply});
    let speaking = |version: Json, mut case: Json| {
        case["speaks"] = version;
        case
    };
    let err = |d: &str, serves: &Json, role: &str, first: Json, error: &str, code: u32| {
        json!({"description": d, "speaks": speaks, "serves": serves, "role": role, "id": 1,
               "first": first, "error": error, "code": code})
    };
    let accept = vec![
        ok(
            "a client connects to the scheduler",
            &sched,
            "scheduler",
            1,
            hello("client", 0),
            reply("scheduler", 1),
        ),
        ok(
            "a worker connects to the scheduler",
            &sched,
            "scheduler",
            2,
            json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "worker", "name": "w1", "features": []}),
            reply("scheduler", 2),
        ),
        ok(
            "a peer connects to a worker's data address: the worker answers with role worker",
            &data_port,
            "worker",
            7,
            hello("peer", 0),
            reply("worker", 7),
        ),
        ok(
            "a dask/1.1 client and a dask/1.1 scheduler speak 1.1",
            &sched,
            "scheduler",
            8,
            hello("client", 1),
            reply_1_1("scheduler", 8),
        ),
        ok(
            "a peer speaking a later minor (1.4): both speak the lower, 1.1",
            &sched,
            "scheduler",
            3,
            hello("client", 4),
            reply_1_1("scheduler", 3),
        ),
        speaking(
            json!([1, 0]),
            ok(
                "a dask/1.0 acceptor answers a dask/1.1 connector: both speak 1.0",
                &sched,
                "scheduler",
                9,
                hello("client", 1),
                reply("scheduler", 9),
            ),
        ),
        ok(
            "features the acceptor does not support are left out of the reply",
            &sched,
            "scheduler",
            4,
            json!({"op": "hello", "protocol": "dask", "version": [1, 2], "role": "client", "features": ["x-compression", "x-tls"]}),
            reply_1_1("scheduler", 4),
        ),
        ok(
            "auth (reserved) is ignored, tls true is treated as false",
            &sched,
            "scheduler",
            5,
            json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "client",
                  "auth": {"token": "abc"}, "tls": true}),
            reply("scheduler", 5),
        ),
        ok(
            "an id in the connector's hello is ignored",
            &sched,
            "scheduler",
            6,
            json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "client", "id": 99}),
            reply("scheduler", 6),
        ),
        err(
            "major version 2",
            &sched,
            "scheduler",
            json!({"op": "hello", "protocol": "dask", "version": [2, 0], "role": "client"}),
            "version-mismatch",
            3001,
        ),
        err(
            "major version 0",
            &sched,
            "scheduler",
            json!({"op": "hello", "protocol": "dask", "version": [0, 9], "role": "client"}),
            "version-mismatch",
            3001,
        ),
        err(
            "protocol is not \"dask\"",
            &sched,
            "scheduler",
            json!({"op": "hello", "protocol": "http", "version": [1, 0], "role": "client"}),
            "bad-handshake",
            3002,
        ),
        err(
            "protocol is checked before version",
            &sched,
            "scheduler",
            json!({"op": "hello", "protocol": "DASK", "version": [2, 0], "role": "client"}),
            "bad-handshake",
            3002,
        ),
        err(
            "a peer connecting to the scheduler (role not served)",
            &sched,
            "scheduler",
            hello("peer", 0),
            "bad-handshake",
            3002,
        ),
        err(
            "a connector claiming the scheduler's role",
            &sched,
            "scheduler",
            hello("scheduler", 0),
            "bad-handshake",
            3002,
        ),
        err(
            "a client connecting to a worker's data address",
            &data_port,
            "worker",
            hello("client", 0),
            "bad-handshake",
            3002,
        ),
        err(
            "version is checked before role",
            &data_port,
            "worker",
            json!({"op": "hello", "protocol": "dask", "version": [3, 0], "role": "client"}),
            "version-mismatch",
            3001,
        ),
        err(
            "first message is not hello",
            &sched,
            "scheduler",
            json!({"op": "register-worker", "name": "w1", "address": A1, "nthreads": 1, "functions": []}),
            "bad-handshake",
            3002,
        ),
    ];
    // What dask-rs offers: dask/1.1.
    let offer = json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "client", "features": []});
    let c_ok = |d: &str, expect: &str, reply: Json| {
        let version = reply["version"].clone();
        json!({"description": d, "offer": offer, "expect_role": expect, "reply": reply,
               "version": version, "features": []})
    };
    let c_err = |d: &str, expect: &str, reply: Json, error: &str, code: u32| {
        json!({"description": d, "offer": offer, "expect_role": expect, "reply": reply,
               "error": error, "code": code})
    };
    let connect = vec![
        c_ok(
            "the scheduler accepts",
            "scheduler",
            reply_1_1("scheduler", 1),
        ),
        c_ok(
            "a dask/1.0 scheduler accepts: both speak 1.0",
            "scheduler",
            reply("scheduler", 2),
        ),
        c_ok(
            "a reply listing no features at all (absent)",
            "scheduler",
            json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "scheduler", "id": 3}),
        ),
        c_ok(
            "a worker's data address accepts a peer",
            "worker",
            reply("worker", 9),
        ),
        c_err(
            "the reply names another role",
            "scheduler",
            reply("worker", 1),
            "bad-handshake",
            3002,
        ),
        c_err(
            "the reply's major differs",
            "scheduler",
            json!({"op": "hello", "protocol": "dask", "version": [2, 0], "role": "scheduler", "id": 1}),
            "version-mismatch",
            3001,
        ),
        c_err(
            "the reply's minor is higher than the one offered",
            "scheduler",
            json!({"op": "hello", "protocol": "dask", "version": [1, 2], "role": "scheduler", "id": 1}),
            "bad-handshake",
            3002,
        ),
        c_err(
            "the reply's protocol is not dask",
            "scheduler",
            json!({"op": "hello", "protocol": "other", "version": [1, 0], "role": "scheduler", "id": 1}),
            "bad-handshake",
            3002,
        ),
        c_err(
            "the acceptor refuses: the error's code is the outcome",
            "scheduler",
            json!({"op": "error", "code": 3001, "message": "peer speaks dask/2.0, this side speaks dask/1.0", "fatal": true}),
            "version-mismatch",
            3001,
        ),
        c_err(
            "the first message back is neither hello nor error",
            "scheduler",
            json!({"op": "ok", "request": 1}),
            "bad-handshake",
            3002,
        ),
    ];
    json!({
        "description": "The handshake (PROTOCOL.md#handshake) for endpoints supporting no optional feature. accept: the acceptor's side, given the highest version it speaks (speaks), the roles it serves, its own role, the id it gives the connection and the first message received. connect: the connector's side, given what it offered (its version is the highest it speaks) and the first message received back. See README.md.",
        "accept": accept,
        "connect": connect,
    })
}
