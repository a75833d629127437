//! Prints the canonical msgpack encoding of JSON forms, as hex.
//!
//! ```text
//! echo '{"op": "close"}' | cargo run -p dask-core --example canonical_hex
//! cargo run -p dask-core --example canonical_hex -- --frame < batch.json
//! cargo run -p dask-core --example canonical_hex -- --markdown spec/vectors/messages.json
//! ```
//!
//! Each input line is one JSON form (a value, or a message with `op`).
//! Messages are also decoded, so an invalid one is reported. `--frame`
//! treats each line as a batch (an array of messages) and prints the
//! whole frame, length prefix included. `--markdown FILE` prints, for each
//! op in spec order, the first case of a messages vector file as the
//! json/hex example pair PROTOCOL.md uses.

use std::io::BufRead;
use std::process::ExitCode;

use dask_core::json::json_to_msgpack;
use dask_core::messages::OPS;
use dask_core::Message;
use serde_json::Value as Json;

/// Hex in lines of 16 space-separated bytes.
fn spaced(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compact JSON with a space after each `:` and `,`.
fn inline(v: &Json) -> String {
    match v {
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
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

fn encode(v: &Json, frame: bool) -> Result<Vec<u8>, String> {
    let bytes = json_to_msgpack(v)?;
    let messages: Vec<&Json> = match (frame, v) {
        (true, Json::Array(items)) => items.iter().collect(),
        (true, _) => return Err("--frame takes an array of messages".into()),
        (false, _) if v.get("op").is_some() => vec![v],
        (false, _) => vec![],
    };
    for m in messages {
        let b = json_to_msgpack(m)?;
        Message::from_bytes(&b).map_err(|e| format!("{}: {e}", inline(m)))?;
    }
    if !frame {
        return Ok(bytes);
    }
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    Ok(out)
}

fn markdown(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let doc: Json = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let cases = doc["cases"].as_array().ok_or("no cases")?;
    for (op, _) in OPS {
        let Some(case) = cases.iter().find(|c| c["json"]["op"] == *op) else {
            return Err(format!("no vector for {op}"));
        };
        let bytes = encode(&case["json"], false)?;
        println!(
            "<!-- {op} -->\n```json\n{}\n```\n\n```hex\n{}\n```\n",
            inline(&case["json"]),
            spaced(&bytes)
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [flag, path] if flag == "--markdown" => markdown(path),
        [] | [_] => {
            let frame = args.first().is_some_and(|a| a == "--frame");
            std::io::stdin()
                .lock()
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .try_for_each(|line| {
                    let v: Json = serde_json::from_str(&line).map_err(|e| e.to_string())?;
                    println!("{}", spaced(&encode(&v, frame)?));
                    Ok(())
                })
        }
        _ => Err("usage: canonical_hex [--frame | --markdown VECTORS.json]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("canonical_hex: {e}");
            ExitCode::FAILURE
        }
    }
}
