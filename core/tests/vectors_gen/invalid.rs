//! `invalid.json`: frames a receiver must refuse, with their error codes.

use super::encoding::*;
use serde_json::{json, Value as Json};

pub(super) fn invalid() -> Json {
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

    // Values in parts (dask/1.1, feature value-parts).
    let part = |nbytes: u64, bytes: &str| json!({"op": "value-part", "key": "x", "nbytes": nbytes, "part": {"$bin": bytes}});
    bad(
        "a value-part, then a heartbeat before the value is whole (dask/1.1)",
        frame_of(&[part(9, "c4070001"), json!({"op": "heartbeat"})]),
        "unexpected-message",
        2004,
    );
    bad(
        "a whole value in parts, then a message that carries no values (dask/1.1)",
        frame_of(&[part(1, "01"), json!({"op": "heartbeat"})]),
        "unexpected-message",
        2004,
    );
    bad(
        "value-parts whose bytes are two values, not one (dask/1.1)",
        frame_of(&[part(2, "0102")]),
        "malformed-frame",
        1001,
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
