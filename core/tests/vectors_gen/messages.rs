//! `messages.json`: every message, canonical and also-accepted encodings.

use super::encoding::*;
use dask_core::msgpack::write;
use serde_json::{json, Value as Json};

pub(super) fn messages() -> Json {
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
        "hello (dask/1.1): a scheduler with a journal tells the client its session",
        json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "scheduler",
               "id": 3, "features": [], "session": "5f0c1d9e8a7b6c5d4e3f2a1b0c9d8e7f"}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "hello (dask/1.1): a client resuming its session after the scheduler restarted",
        json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "client",
               "session": "5f0c1d9e8a7b6c5d4e3f2a1b0c9d8e7f"}),
        vec![vec![Wide("session")]],
    ));
    cases.push(case(
        "hello: tls sent as false (the only value dask/1.0 defines)",
        json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "peer", "tls": false}),
        vec![],
    ));
    let first = &super::auth::auth_cases()[0];
    cases.push(case(
        "hello: a client's offer with auth (dask/1.1)",
        json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "client",
               "auth": {"method": "hmac-sha256", "nonce": super::auth::bin(&first.connector_nonce)},
               "tls": false}),
        vec![vec![Reversed], vec![Nil("name"), Nil("id")]],
    ));
    cases.push(case(
        "hello: the scheduler's reply with its nonce and proof (dask/1.1)",
        json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "scheduler",
               "id": 1, "features": [],
               "auth": {"method": "hmac-sha256", "nonce": super::auth::bin(&first.acceptor_nonce),
                        "proof": super::auth::bin(&first.acceptor_proof())},
               "tls": false}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "auth-proof: the client's proof (dask/1.1)",
        json!({"op": "auth-proof", "proof": super::auth::bin(&first.connector_proof())}),
        vec![vec![Map16, WideNames]],
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
        "close (dask/1.1): reconnect, from a scheduler that declared the worker dead",
        json!({"op": "close", "reason": "no message for 10000 ms (heartbeat timeout)",
               "reconnect": true}),
        vec![vec![Reversed]],
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
    cases.push(case(
        "heartbeat (dask/1.1): a worker paused that cannot spill (its disk is full)",
        json!({"op": "heartbeat", "metrics": {"executing": 1, "ready": 0, "stored_keys": 9,
               "stored_bytes": 9000000, "spilled_bytes": 2000000, "paused": true,
               "spill_error": "cannot write /tmp/dask-spill/3.spill: No space left on device (os error 28)"}}),
        vec![vec![ReverseIn("metrics")]],
    ));
    cases.push(case(
        "heartbeat (dask/1.1): a worker that fetched 3 MB from peers in 0.25 s since it registered",
        json!({"op": "heartbeat", "metrics": {"executing": 2, "ready": 1, "stored_keys": 4,
               "stored_bytes": 4000000, "transfer_us": 250000, "transfer_bytes": 3000000}}),
        vec![vec![ReverseIn("metrics")]],
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
        "key-finished (dask/1.1): a small result inline, no gather needed",
        json!({"op": "key-finished", "key": "y", "nbytes": 1, "request": 1, "value": 12}),
        vec![vec![Reversed]],
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
    cases.push(case(
        "key-waiting (dask/1.1, feature key-waiting): a dependency no worker can run",
        json!({"op": "key-waiting", "key": "y", "reason": "no-function",
               "message": "no connected worker offers function `gpu_fft`", "task": "x",
               "request": 1}),
        vec![vec![Reversed], vec![Wide("request")]],
    ));
    cases.push(case(
        "key-waiting (dask/1.1): the key's own task, no worker connected",
        json!({"op": "key-waiting", "key": "x", "reason": "no-workers",
               "message": "no worker is connected; it runs when one joins"}),
        vec![
            vec![Unknown("since", json!("later versions may add fields"))],
            vec![Nil("task"), Nil("request")],
        ],
    ));
    cases.push(case(
        "waiting-keys (dask/1.1, feature key-waiting): the first page, all states",
        json!({"op": "waiting-keys", "request": 12}),
        vec![vec![Nil("state"), Nil("cursor"), Nil("limit")]],
    ));
    cases.push(case(
        "waiting-keys (dask/1.1): a later page of no-worker tasks",
        json!({"op": "waiting-keys", "request": 13, "state": "no-worker", "cursor": 4096,
               "limit": 50}),
        vec![vec![Reversed], vec![Wide("limit")]],
    ));
    cases.push(case(
        "waiting-keys-reply (dask/1.1, feature key-waiting): a page and the next cursor",
        json!({"op": "waiting-keys-reply", "request": 12, "tasks": [
            {"key": "x", "state": "no-worker", "reason": "no-resources",
             "message": "it needs GPU=1 (the most a worker offers is 0), which no worker offering `inc` has"},
            {"key": "y", "state": "waiting", "reason": "dependencies",
             "message": "for 1 of its 1 inputs: x (no-worker)"}],
            "next": 4096}),
        vec![vec![Wide("next")]],
    ));
    cases.push(case(
        "waiting-keys-reply (dask/1.1): the last page, empty",
        json!({"op": "waiting-keys-reply", "request": 13, "tasks": []}),
        vec![vec![Nil("next")]],
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
        "register-worker (dask/1.1): a worker back after losing its scheduler lists what it held",
        json!({"op": "register-worker", "name": "w1", "address": A1, "nthreads": 2,
               "functions": ["add", "inc"], "held": {"inc-1": 9, "x": 1048576}}),
        vec![vec![Nil("pid"), ReverseIn("held")]],
    ));
    cases.push(case(
        "worker-registered",
        json!({"op": "worker-registered", "id": 2, "heartbeat_interval_ms": 1000}),
        vec![
            vec![Wide("id"), Wide("heartbeat_interval_ms")],
            vec![Nil("inline_bytes_max")],
        ],
    ));
    cases.push(case(
        "worker-registered (dask/1.1): results up to 4096 bytes may go inline",
        json!({"op": "worker-registered", "id": 2, "heartbeat_interval_ms": 1000,
               "inline_bytes_max": 4096}),
        vec![vec![Reversed]],
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
        vec![vec![Nil("duration_us"), Nil("value")]],
    ));
    cases.push(case(
        "task-finished (dask/1.1): a small result inline",
        json!({"op": "task-finished", "key": "y", "nbytes": 3, "duration_us": 52,
               "value": [1, 2]}),
        vec![vec![Reversed]],
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

    // --- values in parts (dask/1.1, feature value-parts) ---------------
    // The value: a bin of 7 bytes, 9 bytes encoded (c4 07 00 01 .. 06).
    cases.push(case(
        "value-part (dask/1.1): the first 4 bytes of the 9 of x's value",
        json!({"op": "value-part", "key": "x", "nbytes": 9, "part": {"$bin": "c4070001"}}),
        vec![vec![Reversed], vec![Wide("nbytes")]],
    ));
    cases.push(case(
        "value-part (dask/1.1): the last 5 bytes; the data after it carries x",
        json!({"op": "value-part", "key": "x", "nbytes": 9, "part": {"$bin": "0203040506"}}),
        vec![],
    ));

    // --- value ranges (dask/1.1, feature value-ranges) ------------------
    cases.push(case(
        "get-value-range (dask/1.1): bytes 4 to 8 of x's value (at most 5)",
        json!({"op": "get-value-range", "request": 21, "key": "x", "offset": 4, "bytes_max": 5}),
        vec![vec![Reversed], vec![Wide("offset")]],
    ));
    cases.push(case(
        "value-range (dask/1.1): the answer, the last 5 of the 9 bytes of x's value",
        json!({"op": "value-range", "request": 21, "key": "x", "nbytes": 9, "offset": 4,
               "part": {"$bin": "0203040506"}}),
        vec![vec![Reversed], vec![Wide("nbytes")]],
    ));
    cases.push(case(
        "value-range (dask/1.1): an offset at the end of the value gets an empty part",
        json!({"op": "value-range", "request": 22, "key": "x", "nbytes": 9, "offset": 9,
               "part": {"$bin": ""}}),
        vec![],
    ));

    // --- values on one host (dask/1.1, feature value-local) -------------
    cases.push(case(
        "hello (dask/1.1): a worker's reply to a peer on its host, with its local identity",
        json!({"op": "hello", "protocol": "dask", "version": [1, 1], "role": "worker", "id": 3,
               "features": ["value-local"],
               "local": {"host": {"$bin": "1111111111111111111111111111111111111111111111111111111111111111"}, "pid": 4242, "probe_at": 140000000000000u64,
                         "probe": {"$bin": "2222222222222222222222222222222222222222222222222222222222222222"}}}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "data-local (dask/1.1): x's 2 MiB encoding lent at an address of the holder",
        json!({"op": "data-local", "request": 17,
               "values": {"x": {"at": 140000000004096u64, "nbytes": 2097157, "lease": 0}}}),
        vec![vec![Reversed], vec![Wide("request")]],
    ));
    cases.push(case(
        "value-local-done (dask/1.1): lease 0 read",
        json!({"op": "value-local-done", "leases": [0]}),
        vec![vec![Reversed]],
    ));
    cases.push(case(
        "value-local-done (dask/1.1): the read of lease 1 failed: no more data-local",
        json!({"op": "value-local-done", "leases": [1], "failed": true}),
        vec![],
    ));

    json!({
        "description": "dask/1.0 messages: for each, its JSON form and its msgpack encodings (canonical first, then other encodings a decoder must accept). See README.md.",
        "version": [1, 0],
        "cases": cases,
    })
}
