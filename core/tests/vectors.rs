//! The golden vectors in `spec/vectors/` against the codec, and the
//! examples in `spec/PROTOCOL.md` against the vectors.
//!
//! These tests read the committed files, so what they assert is what
//! another implementation would be held to; `tests/generated.rs` checks
//! the files are what `vectors_gen` builds.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use dask_core::error::ErrorCode;
use dask_core::handshake::{accept_speaking, check_reply_offered};
use dask_core::json::{json_to_msgpack, msgpack_to_json, unhex};
use dask_core::messages::Version;
use dask_core::messages::{Role, OPS};
use dask_core::{Message, FRAME_BYTES_MAX};
use dask_testkit::wire::{decode_pieces, Decoded, DECODER_CODES};
use serde_json::Value as Json;

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec")
}

fn load(name: &str) -> Json {
    let path = spec_dir().join("vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn cases<'a>(doc: &'a Json, list: &str) -> &'a [Json] {
    doc[list]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("no `{list}` list"))
}

fn text(v: &Json) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v}"))
}

fn bytes(v: &Json) -> Vec<u8> {
    unhex(text(v)).unwrap_or_else(|e| panic!("{e}"))
}

/// JSON text with the keys in their order (serde_json's map equality
/// ignores order; the JSON form's key order is part of the vector).
fn ordered(v: &Json) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn decode_one(bytes: &[u8], context: &str) -> Message {
    Message::from_bytes(bytes).unwrap_or_else(|e| panic!("{context}: {e}"))
}

/// A `[major, minor]` of a vector.
fn version(v: &Json, context: &str) -> Version {
    let pair = v
        .as_array()
        .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)))
        .unwrap_or_else(|| panic!("{context}: expected [major, minor], found {v}"));
    Version {
        major: pair.0 as u32,
        minor: pair.1 as u32,
    }
}

fn role(name: &str) -> Role {
    match name {
        "client" => Role::Client,
        "worker" => Role::Worker,
        "peer" => Role::Peer,
        "scheduler" => Role::Scheduler,
        other => panic!("unknown role {other:?}"),
    }
}

/// Pushes `frame` in one piece and then byte by byte; returns the
/// outcome of the whole-piece run after checking the other agrees.
fn decode_stream(frame: &[u8], limit: usize) -> Result<Vec<Vec<Message>>, ErrorCode> {
    let run = |decoded: Decoded| match decoded.error {
        Some(code) => Err(code),
        None => Ok((decoded.batches, decoded.mid_frame)),
    };
    let whole = run(decode_pieces([frame], limit));
    let split = run(decode_pieces(frame.chunks(1), limit));
    assert_eq!(
        whole, split,
        "the outcome must not depend on how the bytes arrive"
    );
    whole.map(|(b, _)| b)
}

#[test]
fn message_vectors_encode_decode_and_round_trip() {
    let doc = load("messages.json");
    for case in cases(&doc, "cases") {
        let d = text(&case["description"]);
        let json = &case["json"];
        let encodings = case["msgpack"].as_array().expect("msgpack list");
        let canonical = bytes(&encodings[0]);
        let encoded = json_to_msgpack(json).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(encoded, canonical, "{d}: encoding the JSON form");
        assert_eq!(
            ordered(&msgpack_to_json(&canonical).expect("JSON form")),
            ordered(json),
            "{d}: JSON form of the canonical bytes"
        );
        for (i, hex) in encodings.iter().enumerate() {
            let b = bytes(hex);
            if i > 0 {
                assert_ne!(b, canonical, "{d}: alternate {i} is the canonical encoding");
            }
            let m = decode_one(&b, &format!("{d}: encoding {i}"));
            assert_eq!(Some(m.op()), json["op"].as_str(), "{d}: op");
            assert_eq!(m.to_bytes(), canonical, "{d}: encoding {i} re-encoded");
        }
    }
}

#[test]
fn value_vectors_encode_and_decode() {
    let doc = load("values.json");
    for case in cases(&doc, "cases") {
        let d = text(&case["description"]);
        let json = &case["json"];
        let encodings = case["msgpack"].as_array().expect("msgpack list");
        let canonical = bytes(&encodings[0]);
        assert_eq!(json_to_msgpack(json).as_deref(), Ok(&canonical[..]), "{d}");
        for (i, hex) in encodings.iter().enumerate() {
            let b = bytes(hex);
            dask_core::RawValue::from_bytes(b.clone()).unwrap_or_else(|e| panic!("{d} [{i}]: {e}"));
            let back = msgpack_to_json(&b).unwrap_or_else(|e| panic!("{d} [{i}]: {e}"));
            assert_eq!(
                ordered(&back),
                ordered(json),
                "{d}: JSON form of encoding {i}"
            );
        }
    }
}

#[test]
fn frame_vectors_decode_to_their_batches() {
    let doc = load("frames.json");
    for case in cases(&doc, "cases") {
        let d = text(&case["description"]);
        let limit = case["frame_bytes_max"]
            .as_u64()
            .map_or(FRAME_BYTES_MAX, |n| n as usize);
        let (stream, batches): (Vec<Vec<u8>>, Vec<Json>) = if let Some(s) = case.get("stream") {
            (
                vec![bytes(s)],
                case["batches"].as_array().expect("batches").clone(),
            )
        } else {
            let frames = case["frame"].as_array().expect("frame list");
            (
                frames.iter().map(bytes).collect(),
                vec![case["messages"].clone()],
            )
        };
        for (i, b) in stream.iter().enumerate() {
            let got = decode_stream(b, limit).unwrap_or_else(|e| panic!("{d} [{i}]: {e}"));
            assert_eq!(got.len(), batches.len(), "{d} [{i}]: number of batches");
            for (batch, want) in got.iter().zip(&batches) {
                let want: Vec<Vec<u8>> = want
                    .as_array()
                    .expect("batch")
                    .iter()
                    .map(|m| json_to_msgpack(m).expect("message"))
                    .collect();
                let got: Vec<Vec<u8>> = batch.iter().map(Message::to_bytes).collect();
                assert_eq!(got, want, "{d} [{i}]");
            }
        }
        if case.get("stream").is_none() {
            // The canonical frame is what the encoder writes.
            let messages: Vec<Message> = cases_messages(&case["messages"]);
            let encoded = dask_core::frame::encode_frame(&messages).expect("encode");
            assert_eq!(encoded, stream[0], "{d}: encoding the batch");
        }
    }
}

fn cases_messages(list: &Json) -> Vec<Message> {
    list.as_array()
        .expect("messages")
        .iter()
        .map(|m| decode_one(&json_to_msgpack(m).expect("message"), "batch"))
        .collect()
}

#[test]
fn invalid_frames_give_their_error_code() {
    let doc = load("invalid.json");
    for case in cases(&doc, "cases") {
        let d = text(&case["description"]);
        let frame = bytes(&case["frame"]);
        let limit = case["frame_bytes_max"]
            .as_u64()
            .map_or(FRAME_BYTES_MAX, |n| n as usize);
        let got = decode_stream(&frame, limit);
        if case["incomplete"] == Json::Bool(true) {
            assert_eq!(
                got.as_ref().map(Vec::len),
                Ok(0),
                "{d}: no batch and no error yet"
            );
            continue;
        }
        let code = ErrorCode::from_number(case["code"].as_u64().expect("code") as u32)
            .unwrap_or_else(|| panic!("{d}: unknown code"));
        assert_eq!(
            ErrorCode::from_name(text(&case["error"])),
            Some(code),
            "{d}: name vs code"
        );
        assert!(code.is_fatal(), "{d}: decoder errors are fatal");
        assert_eq!(got.map(|b| b.len()), Err(code), "{d}");
    }
}

#[test]
fn handshake_accept_vectors() {
    let doc = load("handshake.json");
    for case in cases(&doc, "accept") {
        let d = text(&case["description"]);
        let serves: Vec<Role> = case["serves"]
            .as_array()
            .expect("serves")
            .iter()
            .map(|r| role(text(r)))
            .collect();
        let our_role = role(text(&case["role"]));
        let speaks = version(&case["speaks"], d);
        let id = case["id"].as_u64().expect("id");
        let first = decode_one(&json_to_msgpack(&case["first"]).expect("first"), d);
        // The first message must be a hello (PROTOCOL.md#handshake).
        let outcome = match &first {
            Message::Hello(h) => accept_speaking(speaks, h, our_role, &serves, id, None)
                .map(|(reply, _)| Message::from(reply))
                .map_err(|e| e.code),
            _ => Err(ErrorCode::BadHandshake),
        };
        match case.get("reply") {
            Some(reply) => {
                let got = outcome.unwrap_or_else(|c| panic!("{d}: refused with {c}"));
                assert_eq!(
                    got.to_bytes(),
                    json_to_msgpack(reply).expect("reply"),
                    "{d}"
                );
            }
            None => {
                let code = ErrorCode::from_number(case["code"].as_u64().expect("code") as u32);
                assert_eq!(
                    ErrorCode::from_name(text(&case["error"])),
                    code,
                    "{d}: name vs code"
                );
                assert_eq!(outcome.err(), code, "{d}");
            }
        }
    }
}

#[test]
fn handshake_connect_vectors() {
    let doc = load("handshake.json");
    for case in cases(&doc, "connect") {
        let d = text(&case["description"]);
        let offer = decode_one(&json_to_msgpack(&case["offer"]).expect("offer"), d);
        let Message::Hello(offer) = offer else {
            panic!("{d}: offer is not a hello")
        };
        assert_eq!(
            *offer,
            dask_core::handshake::offer(offer.role, None),
            "{d}: what dask-rs offers"
        );
        let expected = role(text(&case["expect_role"]));
        let reply = decode_one(&json_to_msgpack(&case["reply"]).expect("reply"), d);
        let outcome = match &reply {
            Message::Hello(h) => {
                check_reply_offered(offer.version, h, expected).map_err(|e| e.code)
            }
            Message::ErrorReport(e) => Err(ErrorCode::from_number(e.code).expect("known code")),
            _ => Err(ErrorCode::BadHandshake),
        };
        match case.get("version") {
            Some(version) => {
                let n = outcome.unwrap_or_else(|c| panic!("{d}: refused with {c}"));
                assert_eq!(
                    serde_json::json!([n.version.major, n.version.minor]),
                    *version,
                    "{d}: version"
                );
                assert_eq!(
                    serde_json::json!(n.features),
                    case["features"],
                    "{d}: features"
                );
            }
            None => {
                let code = ErrorCode::from_number(case["code"].as_u64().expect("code") as u32);
                assert_eq!(
                    ErrorCode::from_name(text(&case["error"])),
                    code,
                    "{d}: name vs code"
                );
                assert_eq!(outcome.err(), code, "{d}");
            }
        }
    }
}

#[test]
fn every_op_has_a_valid_vector() {
    let doc = load("messages.json");
    let covered: HashSet<&str> = cases(&doc, "cases")
        .iter()
        .filter_map(|c| c["json"]["op"].as_str())
        .collect();
    let missing: Vec<&str> = OPS
        .iter()
        .map(|(op, _)| *op)
        .filter(|op| !covered.contains(op))
        .collect();
    assert!(missing.is_empty(), "ops without a vector: {missing:?}");
}

#[test]
fn every_decoder_error_code_has_an_invalid_vector() {
    let doc = load("invalid.json");
    let covered: HashSet<u64> = cases(&doc, "cases")
        .iter()
        .filter_map(|c| c["code"].as_u64())
        .collect();
    for code in DECODER_CODES {
        assert!(
            covered.contains(&(code.number() as u64)),
            "no invalid vector for {code}"
        );
    }
    for case in cases(&doc, "cases") {
        if let Some(n) = case["code"].as_u64() {
            let code = ErrorCode::from_number(n as u32).expect("known code");
            assert!(
                DECODER_CODES.contains(&code),
                "{code} is not a decoder error"
            );
        }
    }
}

#[test]
fn descriptions_are_unique_within_each_file() {
    for (name, lists) in [
        ("messages.json", &["cases"][..]),
        ("values.json", &["cases"]),
        ("frames.json", &["cases"]),
        ("invalid.json", &["cases"]),
        ("handshake.json", &["accept", "connect"]),
    ] {
        let doc = load(name);
        let mut seen = BTreeSet::new();
        for list in lists {
            for case in cases(&doc, list) {
                let d = text(&case["description"]);
                assert!(
                    !d.is_empty() && d.len() <= 120,
                    "{name}: description length: {d:?}"
                );
                assert!(
                    seen.insert(d.to_owned()),
                    "{name}: duplicate description {d:?}"
                );
            }
        }
    }
}

/// The ```json / ```hex pairs of PROTOCOL.md.
fn spec_examples() -> Vec<(usize, Json, Vec<u8>)> {
    spec_blocks().0
}

/// The ```json blocks of PROTOCOL.md with no ```hex after them.
fn spec_json_blocks() -> Vec<(usize, String)> {
    spec_blocks().1
}

#[allow(clippy::type_complexity)]
fn spec_blocks() -> (Vec<(usize, Json, Vec<u8>)>, Vec<(usize, String)>) {
    let path = spec_dir().join("PROTOCOL.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    let block = |start: usize| -> (String, usize) {
        let end = (start + 1..lines.len())
            .find(|&i| lines[i].trim() == "```")
            .unwrap_or_else(|| panic!("PROTOCOL.md:{}: unclosed block", start + 1));
        (lines[start + 1..end].join("\n"), end)
    };
    let mut out = Vec::new();
    let mut alone = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "```json" {
            let (json, end) = block(i);
            let mut j = end + 1;
            while j < lines.len() && lines[j].trim().is_empty() {
                j += 1;
            }
            if j < lines.len() && lines[j].trim() == "```hex" {
                let (hex, hex_end) = block(j);
                let json: Json = serde_json::from_str(&json)
                    .unwrap_or_else(|e| panic!("PROTOCOL.md:{}: {e}", i + 1));
                let bytes = unhex(&hex).unwrap_or_else(|e| panic!("PROTOCOL.md:{}: {e}", j + 1));
                out.push((i + 1, json, bytes));
                i = hex_end;
            } else {
                alone.push((i + 1, json));
                i = end;
            }
        }
        i += 1;
    }
    (out, alone)
}

#[test]
fn spec_graph_file_example_is_a_valid_graph_file() {
    let blocks = spec_json_blocks();
    let graphs: Vec<&(usize, String)> = blocks
        .iter()
        .filter(|(_, text)| text.trim_start().starts_with("{\"tasks\""))
        .collect();
    assert_eq!(
        graphs.len(),
        1,
        "one graph file example in PROTOCOL.md#graph-file"
    );
    let (line, text) = graphs[0];
    let (graph, wanted) = dask_core::client::Graph::from_json(text)
        .unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: {e}"));
    assert_eq!(graph.len(), 3);
    let wanted: Vec<&str> = wanted.iter().map(|k| k.as_str()).collect();
    assert_eq!(wanted, ["y", "z"]);
    // Without `wanted`: the keys no task of the file references.
    let doc: Json = serde_json::from_str(text).expect("JSON");
    let mut without = doc.clone();
    without.as_object_mut().expect("object").remove("wanted");
    let (_, leaves) = dask_core::client::Graph::from_json(&without.to_string()).expect("graph");
    let leaves: Vec<&str> = leaves.iter().map(|k| k.as_str()).collect();
    assert_eq!(leaves, ["y", "z"]);
}

#[test]
fn spec_examples_match_the_vectors() {
    let canonical_of = |doc: &Json| -> HashSet<Vec<u8>> {
        cases(doc, "cases")
            .iter()
            .filter_map(|c| c.get("msgpack").and_then(|m| m.get(0)).map(bytes))
            .collect()
    };
    let messages = canonical_of(&load("messages.json"));
    let values = canonical_of(&load("values.json"));
    let frames: HashSet<Vec<u8>> = cases(&load("frames.json"), "cases")
        .iter()
        .filter_map(|c| c.get("frame").and_then(|f| f.get(0)).map(bytes))
        .collect();
    let examples = spec_examples();
    let mut ops = HashSet::new();
    for (line, json, hex) in &examples {
        let encoded = json_to_msgpack(json).unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: {e}"));
        let is_batch = json
            .as_array()
            .is_some_and(|items| !items.is_empty() && items.iter().all(|m| m.get("op").is_some()));
        if is_batch {
            // A batch: the hex is the whole frame.
            let mut frame = (encoded.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&encoded);
            assert_eq!(
                *hex, frame,
                "PROTOCOL.md:{line}: the hex is not this batch's frame"
            );
            assert!(
                frames.contains(hex),
                "PROTOCOL.md:{line}: frame not in frames.json"
            );
        } else if let Some(op) = json.get("op").and_then(Json::as_str) {
            assert_eq!(
                *hex, encoded,
                "PROTOCOL.md:{line}: the hex is not this JSON's encoding"
            );
            assert!(
                messages.contains(hex),
                "PROTOCOL.md:{line}: example not in messages.json"
            );
            ops.insert(op.to_owned());
        } else {
            assert_eq!(
                *hex, encoded,
                "PROTOCOL.md:{line}: the hex is not this JSON's encoding"
            );
            assert!(
                values.contains(hex),
                "PROTOCOL.md:{line}: example not in values.json"
            );
        }
    }
    let missing: Vec<&str> = OPS
        .iter()
        .map(|(op, _)| *op)
        .filter(|op| !ops.contains(*op))
        .collect();
    assert!(
        missing.is_empty(),
        "ops without an example in PROTOCOL.md: {missing:?}"
    );
}

/// GitHub's anchor for a heading: lowercase, punctuation other than `-`
/// and `_` dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn spec_links_resolve_to_headings() {
    let spec = std::fs::read_to_string(spec_dir().join("PROTOCOL.md")).expect("PROTOCOL.md");
    let anchors: HashSet<String> = spec
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| anchor(h.trim_start_matches('#').trim()))
        .collect();
    let readme = std::fs::read_to_string(spec_dir().join("vectors/README.md")).expect("README");
    let mut broken = Vec::new();
    for (text, marker) in [(&spec, "](#"), (&readme, "PROTOCOL.md#")] {
        for (i, _) in text.match_indices(marker) {
            let rest = &text[i + marker.len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-')
                .collect();
            if !anchors.contains(&target) {
                broken.push(target);
            }
        }
    }
    assert!(broken.is_empty(), "links to missing headings: {broken:?}");
    for section in [
        "framing",
        "handshake",
        "error-codes",
        "canonical-encoding",
        "json-form",
    ] {
        assert!(
            anchors.contains(section),
            "PROTOCOL.md#{section} is linked from elsewhere"
        );
    }
}

/// `auth.json` against HMAC-SHA256 computed here from the bytes the spec
/// lists (not through `dask_core::auth`, which generated the file).
#[test]
fn auth_vectors_are_hmac_sha256_of_the_documented_bytes() {
    use hmac::{Hmac, KeyInit, Mac};
    let doc = load("auth.json");
    let proofs = cases(&doc, "proofs");
    assert!(proofs.len() >= 3);
    for case in proofs {
        let d = text(&case["description"]);
        let field = |name: &str| dask_core::json::unhex(text(&case[name])).expect("hex");
        let proof = |label: &str| {
            let mut mac =
                <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&field("secret")).unwrap();
            for part in [
                label.as_bytes(),
                &[0],
                text(&case["role"]).as_bytes(),
                &[0],
                &field("connector_nonce"),
                &field("acceptor_nonce"),
                &field("channel_binding"),
            ] {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        };
        assert_eq!(
            proof("dask/1 auth acceptor"),
            field("acceptor_proof"),
            "{d}"
        );
        assert_eq!(
            proof("dask/1 auth connector"),
            field("connector_proof"),
            "{d}"
        );
    }
}
