//! Graph files as `dask-rs run` and `dask-rs submit` read them
//! (spec/PROTOCOL.md "Graph file"): JSON, or msgpack by file name, from a
//! path or standard input, with the fields a person may have mistyped.
//!
//! On the wire an unknown field is ignored (a later minor version may add
//! it); in a file a person typed it is more likely `"wnated"` or
//! `"retry"`, silently doing nothing. So the reader lists them, and the
//! command warns or, with `--strict`, refuses.

use std::io::Read;

use dask_core::client::Graph;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::Reader;
use dask_core::Key;

/// The fields of a graph file's top-level object.
pub const GRAPH_FIELDS: &[&str] = &["tasks", "wanted"];

/// Largest graph file read (8 GiB): it is read whole, and a large graph
/// is submitted in parts (the client session splits it), so the bound is
/// what a machine may hold, not a frame (a 10M-task graph is ~500 MB of
/// msgpack).
pub const GRAPH_FILE_BYTES_MAX: u64 = 8 << 30;

/// A graph file read.
#[derive(Debug)]
pub struct GraphFile {
    /// The tasks.
    pub graph: Graph,
    /// The wanted keys (the file's, or its leaves).
    pub wanted: Vec<Key>,
    /// Fields this version does not know, as `"name"` or `tasks[i] ("key").name`.
    pub unknown_fields: Vec<String>,
}

/// Reads `path` (`-`: standard input). msgpack when the name ends in
/// `.msgpack` or `.mpk`, else JSON (standard input: JSON, or msgpack when
/// its first byte is not `{` or white space).
pub fn read(path: &str) -> Result<GraphFile, String> {
    let mut bytes = Vec::new();
    let shown = if path == "-" { "standard input" } else { path };
    let read = if path == "-" {
        std::io::stdin()
            .lock()
            .take(GRAPH_FILE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(GRAPH_FILE_BYTES_MAX + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > GRAPH_FILE_BYTES_MAX {
        return Err(format!("{shown}: over {GRAPH_FILE_BYTES_MAX} bytes"));
    }
    let msgpack = if path == "-" {
        !matches!(
            bytes.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{') | None
        )
    } else {
        path.ends_with(".msgpack") || path.ends_with(".mpk")
    };
    parse(&bytes, msgpack).map_err(|e| format!("{shown}: {e}"))
}

/// Parses a graph file's bytes.
pub fn parse(bytes: &[u8], msgpack: bool) -> Result<GraphFile, String> {
    let encoded;
    let msgpack_bytes = if msgpack {
        bytes
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 JSON".to_string())?;
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        encoded = dask_core::json::json_to_msgpack(&doc)?;
        &encoded[..]
    };
    let (graph, wanted) = Graph::from_msgpack(msgpack_bytes).map_err(|e| e.to_string())?;
    Ok(GraphFile {
        graph,
        wanted,
        unknown_fields: unknown_fields(msgpack_bytes),
    })
}

/// Names of the fields of a (valid) graph file that are neither a graph
/// file's nor a task's.
fn unknown_fields(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut r = Reader::new(bytes);
    let Ok(len) = r.read_map_len() else {
        return out;
    };
    for _ in 0..len {
        let Ok(name) = r.read_str() else { return out };
        if name == "tasks" {
            let Ok(n) = r.read_array_len() else {
                return out;
            };
            for i in 0..n {
                task_unknown_fields(&mut r, i, &mut out);
            }
            continue;
        }
        if !GRAPH_FIELDS.contains(&name) {
            out.push(format!("{name:?}"));
        }
        if r.skip_value(&mut |_| {}).is_err() {
            return out;
        }
    }
    out
}

fn task_unknown_fields(r: &mut Reader<'_>, i: usize, out: &mut Vec<String>) {
    let Ok(len) = r.read_map_len() else { return };
    let mut key = None;
    let mut unknown = Vec::new();
    for _ in 0..len {
        let Ok(name) = r.read_str() else { return };
        if name == "key" {
            if let Ok(k) = Reader::new(r.skip_value(&mut |_| {}).unwrap_or_default()).read_str() {
                key = Some(k.to_owned());
            }
            continue;
        }
        if !TaskSpec::FIELD_NAMES.contains(&name) {
            unknown.push(name.to_owned());
        }
        if r.skip_value(&mut |_| {}).is_err() {
            return;
        }
    }
    let at = match key {
        Some(k) => format!("tasks[{i}] ({k:?})"),
        None => format!("tasks[{i}]"),
    };
    out.extend(unknown.into_iter().map(|name| format!("{at}.{name}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistyped_fields_are_listed_and_the_rest_still_reads() {
        let text = r#"{"tasks": [
              {"key": "x", "function": "inc", "args": [1], "retry": 2},
              {"key": "y", "function": "inc", "args": [{"$ref": "x"}], "priority": 1, "prority": 2}
            ], "wnated": ["y"]}"#;
        let f = parse(text.as_bytes(), false).unwrap();
        assert_eq!(
            f.unknown_fields,
            [
                r#"tasks[0] ("x").retry"#,
                r#"tasks[1] ("y").prority"#,
                r#""wnated""#
            ]
        );
        // "wnated" is not wanted: the default (the leaves) applies.
        assert_eq!(f.wanted, [Key::from("y")]);
        let clean = r#"{"tasks": [{"key": "x", "function": "inc", "args": [1],
            "kwargs": {}, "priority": 1, "resources": {"GPU": 1}, "retries": 1, "workers": ["w"]}],
            "wanted": ["x"]}"#;
        assert!(parse(clean.as_bytes(), false)
            .unwrap()
            .unknown_fields
            .is_empty());
        // A mistyped required field is an error of its own.
        let e = parse(
            br#"{"tasks": [{"key": "x", "fucntion": "inc", "args": []}]}"#,
            false,
        );
        assert!(e.unwrap_err().contains("function"));
    }
}
