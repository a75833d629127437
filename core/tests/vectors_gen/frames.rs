//! `frames.json`: batches and the frames around them.

use super::encoding::*;
use serde_json::{json, Value as Json};

pub(super) fn frames() -> Json {
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
    // Values in parts (dask/1.1, feature value-parts): the decoder puts x's
    // value, whose 9 bytes came in two parts, into the data that follows.
    let part =
        |bytes: &str| json!({"op": "value-part", "key": "x", "nbytes": 9, "part": {"$bin": bytes}});
    let parts = [part("c4070001"), part("0203040506")];
    let rest = json!({"op": "data", "request": 17, "data": {"y": 1}, "missing": []});
    let mut stream = frame_of(&parts);
    stream.extend_from_slice(&frame_of(std::slice::from_ref(&rest)));
    cases.push(json!({
        "description": "a value in parts (dask/1.1): two value-parts, then the data without x; the receiver puts x into it",
        "stream": hex(&stream),
        "batches": [[], [{"op": "data", "request": 17,
                          "data": {"x": {"$bin": "00010203040506"}, "y": 1}, "missing": []}]],
    }));
    json!({
        "description": "Whole frames (4-byte big-endian length, then one msgpack array of messages) and the batches they hold. See README.md.",
        "cases": cases,
    })
}
