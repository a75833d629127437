//! `spec/vectors/functions.json` against the built-in library: every
//! standard-library function behaves as PROTOCOL.md#standard-library says
//! (the vectors are written by hand, the random ones computed with an
//! independent splitmix64), and the library offers every one of them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use dask_core::json::{json_to_msgpack, msgpack_to_json};
use dask_core::worker::Job;
use dask_core::RawValue;
use dask_worker::executor::run_job;
use dask_worker::FunctionRegistry;
use serde_json::Value as Json;

fn vectors() -> Vec<Json> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/functions.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let doc: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    doc["cases"].as_array().cloned().expect("a cases array")
}

/// A value in JSON form, as the worker gets it off the wire.
fn raw(json: &Json) -> RawValue {
    let bytes = json_to_msgpack(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    RawValue::from_bytes(bytes).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn the_standard_library_behaves_as_the_vectors_say() {
    let registry = FunctionRegistry::builtins();
    let mut failures = Vec::new();
    for case in vectors() {
        let description = case["description"].as_str().unwrap_or("?");
        let name = case["function"].as_str().expect("function");
        if !registry.contains(name) {
            failures.push(format!("{description}: no function {name:?}"));
            continue;
        }
        // Through the executor, as a task runs: its arguments decoded the
        // way the function takes them (owned or borrowed trees).
        let job = Job {
            run_id: 1,
            priority: 0,
            seq: 0,
            function: name.to_string(),
            args: raw(&case["args"]),
            kwargs: case.get("kwargs").map(raw),
            deps: Vec::new(),
        };
        let got = run_job(&registry, &job).result;
        match (got, case.get("result"), case.get("error_type")) {
            (Ok(got), Some(expected), None) => {
                // Compared as their canonical encodings: 1 and 1.0 differ.
                if got.as_bytes() != json_to_msgpack(expected).unwrap() {
                    let got = msgpack_to_json(got.as_bytes()).unwrap();
                    failures.push(format!("{description}: expected {expected}, got {got}"));
                }
            }
            (Err(e), None, Some(expected)) => {
                if e.error_type != expected.as_str().unwrap_or("?") {
                    failures.push(format!(
                        "{description}: expected error {expected}, got {} ({})",
                        e.error_type, e.message
                    ));
                }
            }
            (Ok(got), _, Some(expected)) => {
                let got = msgpack_to_json(got.as_bytes()).unwrap();
                failures.push(format!(
                    "{description}: expected error {expected}, got {got}"
                ))
            }
            (Err(e), Some(expected), _) => failures.push(format!(
                "{description}: expected {expected}, got error {}: {}",
                e.error_type, e.message
            )),
            _ => panic!("{description}: a case has a result or an error_type"),
        }
    }
    assert!(failures.is_empty(), "\n  {}", failures.join("\n  "));
}

#[test]
fn every_standard_function_has_vectors_and_is_offered() {
    let standard = [
        "add",
        "sub",
        "mul",
        "inc",
        "neg",
        "sum",
        "min",
        "max",
        "mean",
        "concat",
        "len",
        "getitem",
        "identity",
        "range",
        "sleep",
        "random_bytes",
        "random_floats",
        "random_ints",
    ];
    let covered: BTreeSet<String> = vectors()
        .iter()
        .filter_map(|c| c["function"].as_str().map(String::from))
        .collect();
    let registry = FunctionRegistry::builtins();
    for name in standard {
        assert!(covered.contains(name), "no vector calls {name}");
        assert!(registry.contains(name), "dask-worker does not offer {name}");
    }
    let extra: Vec<&String> = covered
        .iter()
        .filter(|n| !standard.contains(&n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "vectors of non-standard functions: {extra:?}"
    );
}
