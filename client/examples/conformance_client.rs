//! The Rust client's harness for client conformance
//! (`dask-conformance client -- target/debug/examples/conformance_client
//! {scheduler}`): it connects to the runner, then takes the driver
//! protocol's commands on stdin, one JSON object a line, and answers on
//! stdout (spec/CONFORMANCE.md, "Client conformance"). Everything it does
//! goes through the public API of `dask-client`.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use dask_client::{Arg, Client, ClientOptions, Error, Future};
use dask_core::json::{to_hex, unhex};
use dask_core::RawValue;
use serde_json::{json, Value as Json};

fn say(line: Json) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// How a failed result is reported: its kind, and what it carries.
fn failure(key: &str, e: &Error) -> Json {
    match e {
        Error::Remote {
            error_type,
            message,
            ..
        } => json!({"key": key, "error": "remote", "error_type": error_type, "message": message}),
        Error::Cancelled { .. } => json!({"key": key, "error": "cancelled"}),
        Error::Lost { message, .. } => json!({"key": key, "error": "lost", "message": message}),
        Error::Refused { code, message, .. } => {
            json!({"key": key, "error": "refused", "code": code, "message": message})
        }
        Error::Connection(m) => json!({"key": key, "error": "connection", "message": m}),
        other => json!({"key": key, "error": "other", "message": other.to_string()}),
    }
}

fn main() {
    let address = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DASK_SCHEDULER_ADDRESS").ok())
        .unwrap_or_default();
    // The credentials as every dask-rs program finds them (the runner's
    // DASK_RS_HOME under `--auth`); none: no authentication.
    let credentials = match dask_net::credentials::discover(None) {
        Ok(found) => found.map(|f| f.credentials),
        Err(e) => {
            say(json!({"error": "connection", "message": e.to_string()}));
            std::process::exit(1);
        }
    };
    let options = ClientOptions {
        credentials,
        ..ClientOptions::default()
    };
    let client = match Client::connect_with(&address, options) {
        Ok(client) => client,
        Err(e) => {
            say(json!({"error": "connection", "message": e.to_string()}));
            std::process::exit(1);
        }
    };
    say(json!({"ready": true}));
    let mut futures: HashMap<String, Future> = HashMap::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(command) = serde_json::from_str::<Json>(&line) else {
            say(json!({"error": "bad-command", "message": line}));
            continue;
        };
        let key = command["key"].as_str().unwrap_or_default().to_owned();
        match command["do"].as_str().unwrap_or_default() {
            "submit" => {
                let args = unhex(command["args_hex"].as_str().unwrap_or("90"))
                    .ok()
                    .and_then(|bytes| RawValue::from_bytes(bytes).ok())
                    .and_then(|raw| raw.to_value().ok());
                let Some(rmpv::Value::Array(items)) = args else {
                    say(json!({"error": "bad-command", "message": "args_hex is not an array"}));
                    continue;
                };
                let function = command["function"].as_str().unwrap_or_default();
                let args: Vec<Arg> = items.into_iter().map(Arg::Value).collect();
                let future = client.submit(function, args);
                let key = future.key().to_string();
                futures.insert(key.clone(), future);
                say(json!({"submitted": key}));
            }
            "result" => match futures.get(&key).map(Future::result_raw) {
                Some(Ok(raw)) => say(json!({"key": key, "result_hex": to_hex(raw.as_bytes())})),
                Some(Err(e)) => say(failure(&key, &e)),
                None => say(json!({"key": key, "error": "unknown-key"})),
            },
            "release" => {
                futures.remove(&key);
                say(json!({"released": key}));
            }
            "cancel" => {
                if let Some(f) = futures.get(&key) {
                    f.cancel();
                }
                say(json!({"cancelled": key}));
            }
            "close" => {
                futures.clear();
                client.close();
                say(json!({"closed": true}));
                return;
            }
            other => say(json!({"error": "bad-command", "message": other})),
        }
    }
}
