//! `handshake.json`: hello offers and what an acceptor answers.

use super::encoding::*;
use serde_json::{json, Value as Json};

pub(super) fn hello(role: &str, minor: u32) -> Json {
    json!({"op": "hello", "protocol": "dask", "version": [1, minor], "role": role})
}

pub(super) fn handshake() -> Json {
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
            "a client listing key-waiting (and a feature the acceptor does not know) gets key-waiting",
            &sched,
            "scheduler",
            10,
            json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "client",
                   "features": ["x-later", "key-waiting"]}),
            json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "scheduler", "id": 10,
                   "features": ["key-waiting"]}),
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
            "tls true without auth changes nothing",
            &sched,
            "scheduler",
            5,
            json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "client",
                  "tls": true}),
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
    // What dask-rs offers: dask/1.1, with the features key-waiting,
    // value-parts and value-ranges.
    let offer = json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "client", "features": ["key-waiting", "value-parts", "value-ranges"]});
    let c_ok = |d: &str, expect: &str, reply: Json| {
        let version = reply["version"].clone();
        // The features both list: the reply's that were offered.
        let features: Vec<Json> = reply["features"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter(|x| *x == "key-waiting" || *x == "value-parts" || *x == "value-ranges")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        json!({"description": d, "offer": offer, "expect_role": expect, "reply": reply,
               "version": version, "features": features})
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
            "the scheduler accepts and agrees to key-waiting (a feature name not offered is ignored)",
            "scheduler",
            json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "scheduler", "id": 4,
                   "features": ["key-waiting", "x-not-offered"]}),
        ),
        c_ok(
            "the scheduler agrees to value-parts: values over a frame may go in parts both ways",
            "scheduler",
            json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "scheduler", "id": 5,
                   "features": ["value-parts"]}),
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
