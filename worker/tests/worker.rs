//! The worker over real TCP on 127.0.0.1: the test plays the scheduler
//! (and, where needed, a peer holding data), speaking dask/1 through
//! `BlockingConn`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_core::handshake;
use dask_core::messages::{
    Close, Data, ErrorReport, FreeKeys, GetData, Hello, RegisterWorker, Role, StealRequest,
    StealResponse, WorkerRegistered,
};
use dask_core::msgpack::task_ref_value;
use dask_core::{Key, Message, RawValue};
use dask_net::BlockingConn;
use dask_worker::builtins::conformance_sleep;
use dask_worker::{FunctionRegistry, WorkerConfig, WorkerHandle};
use rmpv::Value;

/// Generous: tests must not fail on a slow machine.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A heartbeat interval long enough that beats do not show up in a test.
const QUIET_HEARTBEAT_MS: u64 = 600_000;

struct Setup {
    worker: Option<WorkerHandle>,
    scheduler: BlockingConn,
    registration: RegisterWorker,
}

impl Setup {
    fn worker(&self) -> &WorkerHandle {
        self.worker.as_ref().unwrap()
    }

    /// The next message that is not a heartbeat.
    fn recv(&mut self) -> Message {
        self.scheduler
            .recv_until(&mut |m| !matches!(m, Message::Heartbeat(_)))
            .expect("a message from the worker")
    }

    fn send(&mut self, messages: Vec<Message>) {
        self.scheduler.send(&messages).expect("send to the worker");
    }

    /// The result of `key` (task-finished or task-erred), from `others`
    /// (messages read earlier) or the connection; messages about other
    /// keys are kept in `others`.
    fn outcome(&mut self, key: &str, others: &mut Vec<Message>) -> Message {
        let is_outcome = |m: &Message| match m {
            Message::TaskFinished(f) => f.key.as_str() == key,
            Message::TaskErred(e) => e.key.as_str() == key,
            _ => false,
        };
        if let Some(at) = others.iter().position(is_outcome) {
            return others.remove(at);
        }
        loop {
            let m = self.recv();
            if is_outcome(&m) {
                return m;
            }
            others.push(m);
        }
    }

    /// Fetches values over the scheduler connection.
    fn get(&mut self, keys: &[&str]) -> Data {
        self.send(vec![Message::GetData(GetData {
            request: 777,
            keys: keys.iter().map(|k| Key::from(*k)).collect(),
        })]);
        loop {
            if let Message::Data(d) = self.recv() {
                if d.request == 777 {
                    return d;
                }
            }
        }
    }

    /// Stops the worker and checks it ended.
    fn stop(mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

/// Starts a worker against a scheduler played by the test.
fn start(nthreads: usize, functions: FunctionRegistry, heartbeat_ms: u64) -> Setup {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let accept = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut conn = BlockingConn::from_stream(stream);
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let Message::Hello(hello) = conn.recv().unwrap() else {
            panic!("the worker's first message is not hello");
        };
        assert_eq!(hello.role, Role::Worker);
        let (reply, _) =
            handshake::accept(&hello, Role::Scheduler, &[Role::Worker], 1, None).unwrap();
        conn.send(&[Message::from(reply)]).unwrap();
        let Message::RegisterWorker(registration) = conn.recv().unwrap() else {
            panic!("register-worker expected after hello");
        };
        conn.send(&[Message::WorkerRegistered(WorkerRegistered {
            id: 1,
            heartbeat_interval_ms: heartbeat_ms,
            inline_bytes_max: None,
        })])
        .unwrap();
        (conn, registration)
    });
    let worker = WorkerHandle::start(WorkerConfig {
        scheduler: address,
        nthreads,
        functions,
        ..WorkerConfig::default()
    })
    .expect("the worker registers");
    let (scheduler, registration) = accept.join().unwrap();
    Setup {
        worker: Some(worker),
        scheduler,
        registration,
    }
}

/// A worker that has computed x = range(3).
fn start_holding_x() -> Setup {
    let mut s = start_default();
    s.send(vec![compute("x", "range", vec![Value::from(3)])]);
    let mut others = Vec::new();
    assert!(matches!(
        s.outcome("x", &mut others),
        Message::TaskFinished(_)
    ));
    s
}

fn start_default() -> Setup {
    start(2, FunctionRegistry::builtins(), QUIET_HEARTBEAT_MS)
}

fn raw(v: Value) -> RawValue {
    RawValue::from_value(&v)
}

fn compute(key: &str, function: &str, args: Vec<Value>) -> Message {
    compute_with(key, function, args, &[])
}

fn compute_with(key: &str, function: &str, args: Vec<Value>, who_has: &[(&str, &str)]) -> Message {
    dask_testkit::wire::compute_task(key, function, args, who_has)
}

fn value_of(data: &Data, key: &str) -> Value {
    data.data
        .get(key)
        .unwrap_or_else(|| panic!("{key} not in {data:?}"))
        .to_value()
        .unwrap()
}

/// A peer holding `values`: accepts connections, answers the handshake as
/// a worker and get-data with what it has. Reports each request's keys.
struct FakePeer {
    address: String,
    requests: mpsc::Receiver<(Role, Vec<Key>)>,
    _thread: JoinHandle<()>,
}

fn fake_peer(values: Vec<(&str, Value)>) -> FakePeer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let values: BTreeMap<Key, RawValue> = values
        .into_iter()
        .map(|(k, v)| (Key::from(k), raw(v)))
        .collect();
    let (tx, requests) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut conn = BlockingConn::from_stream(stream);
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let Ok(Message::Hello(hello)) = conn.recv() else {
            return;
        };
        let role = hello.role;
        let (reply, _) = handshake::accept(&hello, Role::Worker, &[Role::Peer], 9, None).unwrap();
        conn.send(&[Message::from(reply)]).unwrap();
        while let Ok(Message::GetData(GetData { request, keys })) = conn.recv() {
            let _ = tx.send((role, keys.clone()));
            let mut data = BTreeMap::new();
            let mut missing = Vec::new();
            for key in keys {
                match values.get(&key) {
                    Some(v) => {
                        data.insert(key, v.clone());
                    }
                    None => missing.push(key),
                }
            }
            if conn
                .send(&[Message::Data(Data {
                    request,
                    data,
                    missing,
                })])
                .is_err()
            {
                return;
            }
        }
    });
    FakePeer {
        address,
        requests,
        _thread: thread,
    }
}

/// Connects to the worker's data address as a peer.
fn connect_peer(address: &str) -> BlockingConn {
    let (conn, negotiated) = BlockingConn::connect(
        address,
        Role::Peer,
        Role::Worker,
        Some("test".into()),
        TIMEOUT,
    )
    .expect("peer handshake");
    assert_eq!(negotiated.peer_role, Role::Worker);
    conn
}

/// Runs `f` on a thread and waits at most TIMEOUT for it.
fn within_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(TIMEOUT).expect("finished in time")
}

#[test]
fn registration_announces_name_address_threads_and_functions() {
    let setup = start(3, FunctionRegistry::builtins(), QUIET_HEARTBEAT_MS);
    let r = &setup.registration;
    assert_eq!(r.nthreads, 3);
    assert_eq!(r.address, setup.worker().address());
    assert!(r.address.starts_with("tcp://127.0.0.1:"));
    assert_eq!(r.name, setup.worker().name());
    assert!(r.name.starts_with("worker-"));
    assert_eq!(r.pid, Some(std::process::id()));
    for f in ["conformance.echo", "conformance.bytes", "add", "exec"] {
        assert!(r.functions.iter().any(|n| n == f), "{f}");
    }
    setup.stop();
}

#[test]
fn every_conformance_function_computes_with_literal_args() {
    let mut s = start_default();
    let echoed = Value::Map(vec![(
        Value::from("k"),
        Value::Array(vec![Value::Nil, Value::Binary(vec![1, 2]), Value::from(-3)]),
    )]);
    s.send(vec![
        compute("echo", "conformance.echo", vec![echoed.clone()]),
        compute(
            "add-int",
            "conformance.add",
            vec![Value::from(2), Value::from(3)],
        ),
        compute(
            "add-float",
            "conformance.add",
            vec![Value::from(2), Value::from(0.5)],
        ),
        compute(
            "add-overflow",
            "conformance.add",
            vec![Value::from(i64::MAX), Value::from(1)],
        ),
        compute(
            "add-type",
            "conformance.add",
            vec![Value::from("a"), Value::from(1)],
        ),
        compute("fail", "conformance.fail", vec![Value::from("on purpose")]),
        compute(
            "sleep",
            "conformance.sleep",
            vec![Value::from(20), Value::from("woke")],
        ),
        compute("sleep-nil", "conformance.sleep", vec![Value::from(1)]),
        compute("bytes", "conformance.bytes", vec![Value::from(1000)]),
        compute("nope", "no.such.function", vec![]),
    ]);
    let mut others = Vec::new();
    for key in [
        "echo",
        "add-int",
        "add-float",
        "sleep",
        "sleep-nil",
        "bytes",
    ] {
        let m = s.outcome(key, &mut others);
        assert!(matches!(m, Message::TaskFinished(_)), "{key}: {m:?}");
    }
    for (key, error_type) in [
        ("add-overflow", "OverflowError"),
        ("add-type", "TypeError"),
        ("fail", "ConformanceError"),
        ("nope", "UnknownFunction"),
    ] {
        match s.outcome(key, &mut others) {
            Message::TaskErred(e) => assert_eq!(e.error_type, error_type, "{key}"),
            m => panic!("{key}: {m:?}"),
        }
    }
    let data = s.get(&[
        "echo",
        "add-int",
        "add-float",
        "sleep",
        "sleep-nil",
        "bytes",
        "fail",
    ]);
    assert_eq!(value_of(&data, "echo"), echoed);
    assert_eq!(value_of(&data, "add-int"), Value::from(5));
    assert_eq!(value_of(&data, "add-float"), Value::from(2.5));
    assert_eq!(value_of(&data, "sleep"), Value::from("woke"));
    assert_eq!(value_of(&data, "sleep-nil"), Value::Nil);
    let bytes = value_of(&data, "bytes");
    let bytes = bytes.as_slice().unwrap();
    assert_eq!(bytes.len(), 1000);
    assert!(bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b as usize == i % 251));
    assert_eq!(data.missing, vec![Key::from("fail")]);
    s.stop();
}

#[test]
fn a_dependency_is_fetched_from_the_peer_that_holds_it() {
    let peer = fake_peer(vec![("d", Value::from(41))]);
    let mut s = start_default();
    s.send(vec![compute_with(
        "t",
        "inc",
        vec![task_ref_value("d")],
        &[("d", &peer.address)],
    )]);
    // task-finished and add-keys (the fetched copy, kept) in any order.
    let mut finished = None;
    let mut add_keys = None;
    while finished.is_none() || add_keys.is_none() {
        match s.recv() {
            Message::TaskFinished(f) if f.key.as_str() == "t" => finished = Some(f),
            Message::AddKeys(a) => add_keys = Some(a.nbytes),
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!(add_keys.unwrap().get("d"), Some(&1));
    let (role, keys) = peer.requests.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(role, Role::Peer);
    assert_eq!(keys, vec![Key::from("d")]);
    let data = s.get(&["t", "d"]);
    assert_eq!(value_of(&data, "t"), Value::from(42));
    assert_eq!(value_of(&data, "d"), Value::from(41));
    s.stop();
}

#[test]
fn a_dependency_nobody_has_gives_missing_data_and_the_task_is_dropped() {
    let peer = fake_peer(vec![]);
    // A port nothing listens on: bound, then closed.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let mut s = start_default();
    s.send(vec![compute_with(
        "t",
        "inc",
        vec![task_ref_value("d")],
        &[("d", &peer.address), ("d", &closed)],
    )]);
    let m = s.recv();
    let Message::MissingData(missing) = m else {
        panic!("expected missing-data, got {m:?}");
    };
    assert_eq!(missing.key.as_str(), "d");
    assert_eq!(missing.task.as_str(), "t");
    let mut addresses = missing.addresses.clone();
    addresses.sort();
    let mut expected = vec![peer.address.clone(), closed.clone()];
    expected.sort();
    assert_eq!(addresses, expected);
    // Dropped: a steal finds nothing to take.
    s.send(vec![Message::StealRequest(StealRequest {
        key: "t".into(),
    })]);
    assert_eq!(
        s.recv(),
        Message::StealResponse(StealResponse {
            key: "t".into(),
            stolen: false
        })
    );
    s.stop();
}

#[test]
fn free_keys_then_get_data_reports_missing() {
    let mut s = start_default();
    s.send(vec![compute("x", "identity", vec![Value::from("v")])]);
    let mut others = Vec::new();
    assert!(matches!(
        s.outcome("x", &mut others),
        Message::TaskFinished(_)
    ));
    assert_eq!(value_of(&s.get(&["x"]), "x"), Value::from("v"));
    s.send(vec![Message::FreeKeys(FreeKeys { keys: ["x"].into() })]);
    let data = s.get(&["x"]);
    assert!(data.data.is_empty());
    assert_eq!(data.missing, vec![Key::from("x")]);
    s.stop();
}

#[test]
fn peers_get_data_and_bad_peer_input_closes_only_that_connection() {
    let mut s = start_holding_x();
    let mut peer = connect_peer(&s.worker().address());
    peer.set_read_timeout(Some(TIMEOUT)).unwrap();
    peer.send(&[Message::GetData(GetData {
        request: 5,
        keys: vec!["x".into(), "y".into()],
    })])
    .unwrap();
    let Message::Data(data) = peer.recv().unwrap() else {
        panic!("data expected");
    };
    assert_eq!(data.request, 5);
    assert_eq!(
        value_of(&data, "x"),
        Value::Array(vec![Value::from(0), Value::from(1), Value::from(2)])
    );
    assert_eq!(data.missing, vec![Key::from("y")]);

    // A message a peer may not send: error, then that connection closes.
    peer.send(&[Message::FreeKeys(FreeKeys { keys: [].into() })])
        .unwrap();
    let Message::ErrorReport(ErrorReport { code, fatal, .. }) = peer.recv().unwrap() else {
        panic!("error expected");
    };
    assert_eq!((code, fatal), (2004, true));
    assert!(peer.recv().is_err(), "closed after the error");

    // Garbage bytes on a new connection: same.
    let mut raw_peer = connect_peer(&s.worker().address());
    raw_peer.send_raw(&[0, 0, 0, 2, 0xc1, 0xc1]).unwrap();
    let Message::ErrorReport(ErrorReport { code, .. }) = raw_peer.recv().unwrap() else {
        panic!("error expected");
    };
    assert_eq!(code, 1001);
    assert!(raw_peer.recv().is_err());

    // A first message that is not hello: bad handshake.
    let mut no_hello = BlockingConn::connect_raw(&s.worker().address(), TIMEOUT).expect("connect");
    no_hello.set_read_timeout(Some(TIMEOUT)).unwrap();
    no_hello
        .send(&[Message::GetData(GetData {
            request: 1,
            keys: vec![],
        })])
        .unwrap();
    let Message::ErrorReport(ErrorReport { code, .. }) = no_hello.recv().unwrap() else {
        panic!("error expected");
    };
    assert_eq!(code, 3002);

    // The worker itself is fine.
    assert_eq!(
        value_of(&s.get(&["x"]), "x"),
        Value::Array(vec![Value::from(0), Value::from(1), Value::from(2)])
    );
    s.stop();
}

#[test]
fn a_peer_that_half_closes_after_its_request_still_gets_the_reply() {
    use std::io::{Read, Write};
    let mut s = start_holding_x();
    let address = s.worker().address();
    let addr = address.trim_start_matches("tcp://");
    for round in 0..5 {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        // Hello and get-data in one frame, then the write side shut: the
        // worker usually reads the request and the end of the stream in
        // the same wakeup.
        let frame = dask_testkit::wire::messages_frame(&[
            Message::from(handshake::offer(Role::Peer, None)),
            Message::GetData(GetData {
                request: round,
                keys: vec!["x".into(), "nope".into()],
            }),
        ]);
        stream.write_all(&frame).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        let mut decoder = dask_core::frame::FrameDecoder::default();
        decoder.push(&bytes);
        let mut messages = Vec::new();
        while let Some(batch) = decoder.poll().unwrap() {
            messages.extend(batch);
        }
        assert!(
            matches!(messages.first(), Some(Message::Hello(_))),
            "{messages:?}"
        );
        let Some(Message::Data(data)) = messages.get(1) else {
            panic!("round {round}: no data reply before the close: {messages:?}");
        };
        assert_eq!(data.request, round);
        assert_eq!(data.missing, vec![Key::from("nope")]);
        assert_eq!(
            value_of(data, "x"),
            Value::Array(vec![Value::from(0), Value::from(1), Value::from(2)])
        );
    }
    // The worker is fine and its peer connections are gone.
    assert_eq!(
        value_of(&s.get(&["x"]), "x").as_array().map(Vec::len),
        Some(3)
    );
}

#[test]
fn the_data_port_refuses_roles_other_than_peer() {
    let s = start_default();
    let refused = BlockingConn::connect(
        &s.worker().address(),
        Role::Client,
        Role::Worker,
        None,
        TIMEOUT,
    );
    assert!(refused.is_err());
    s.stop();
}

#[test]
fn never_more_than_nthreads_tasks_at_once() {
    let current = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut functions = FunctionRegistry::builtins();
    {
        let (current, most) = (Arc::clone(&current), Arc::clone(&most));
        functions.register("tracked.sleep", move |args, kwargs| {
            let now = current.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let result = conformance_sleep(args, kwargs);
            current.fetch_sub(1, Ordering::SeqCst);
            result
        });
    }
    let mut s = start(2, functions, QUIET_HEARTBEAT_MS);
    let keys: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    s.send(
        keys.iter()
            .map(|k| compute(k, "tracked.sleep", vec![Value::from(30)]))
            .collect(),
    );
    let mut others = Vec::new();
    for key in &keys {
        assert!(matches!(
            s.outcome(key, &mut others),
            Message::TaskFinished(_)
        ));
    }
    let most = most.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} tasks ran at once");
    s.stop();
}

#[test]
fn a_64_mib_value_is_stored_and_fetched() {
    const N: u64 = 64 * 1024 * 1024;
    let mut s = start_default();
    s.send(vec![compute(
        "big",
        "conformance.bytes",
        vec![Value::from(N)],
    )]);
    let mut others = Vec::new();
    match s.outcome("big", &mut others) {
        // bin32 header: 5 bytes.
        Message::TaskFinished(f) => assert_eq!(f.nbytes, N + 5),
        m => panic!("{m:?}"),
    }
    let mut peer = connect_peer(&s.worker().address());
    peer.set_read_timeout(Some(TIMEOUT)).unwrap();
    peer.send(&[Message::GetData(GetData {
        request: 1,
        keys: vec!["big".into()],
    })])
    .unwrap();
    let Message::Data(data) = peer.recv().unwrap() else {
        panic!("data expected");
    };
    let value = data.data.get("big").expect("big");
    let mut r = dask_core::msgpack::Reader::new(value.as_bytes());
    let bytes = r.read_bin().unwrap();
    assert_eq!(bytes.len() as u64, N);
    assert!(bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b as usize == i % 251));
    // A dependent task on the same worker uses it without a fetch.
    s.send(vec![compute_with(
        "n",
        "len",
        vec![task_ref_value("big")],
        &[("big", &s.worker().address())],
    )]);
    assert!(matches!(
        s.outcome("n", &mut others),
        Message::TaskFinished(_)
    ));
    assert_eq!(value_of(&s.get(&["n"]), "n"), Value::from(N));
    s.stop();
}

/// A worker of one thread offering `gated`, which runs until the returned
/// mutex can be locked (lock it before sending the task), and says on the
/// flag that it started.
fn start_gated() -> (Setup, Arc<AtomicBool>, Arc<Mutex<()>>) {
    let started = Arc::new(AtomicBool::new(false));
    let release = Arc::new(Mutex::new(()));
    let mut functions = FunctionRegistry::builtins();
    {
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        functions.register("gated", move |_, _| {
            started.store(true, Ordering::SeqCst);
            let _open = release.lock();
            Ok(Value::from("ran"))
        });
    }
    (start(1, functions, QUIET_HEARTBEAT_MS), started, release)
}

/// Waits until `gated` started.
fn wait_started(started: &AtomicBool) {
    let deadline = Instant::now() + TIMEOUT;
    while !started.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(started.load(Ordering::SeqCst), "gated never started");
}

#[test]
fn steal_takes_a_queued_task_but_not_a_running_one() {
    let (mut s, started, release) = start_gated();
    // `gated` runs until the test releases the gate.
    let gate = release.lock().unwrap();
    s.send(vec![
        compute("running", "gated", vec![]),
        compute("queued", "identity", vec![Value::from(1)]),
    ]);
    wait_started(&started);
    s.send(vec![
        Message::StealRequest(StealRequest {
            key: "queued".into(),
        }),
        Message::StealRequest(StealRequest {
            key: "running".into(),
        }),
    ]);
    assert_eq!(
        s.recv(),
        Message::StealResponse(StealResponse {
            key: "queued".into(),
            stolen: true
        })
    );
    assert_eq!(
        s.recv(),
        Message::StealResponse(StealResponse {
            key: "running".into(),
            stolen: false
        })
    );
    drop(gate);
    let mut others = Vec::new();
    assert!(matches!(
        s.outcome("running", &mut others),
        Message::TaskFinished(_)
    ));
    s.send(vec![compute("after", "identity", vec![Value::from(2)])]);
    assert!(matches!(
        s.outcome("after", &mut others),
        Message::TaskFinished(_)
    ));
    assert!(
        others.is_empty(),
        "the stolen task never reported: {others:?}"
    );
    s.stop();
}

#[test]
fn a_quick_task_runs_while_the_only_thread_is_busy() {
    let (mut s, started, release) = start_gated();
    let gate = release.lock().unwrap();
    s.send(vec![compute("running", "gated", vec![])]);
    wait_started(&started);
    // `inc` is quick: it runs on the loop's thread, not behind `gated`;
    // so does a task that needs its result.
    s.send(vec![compute("one", "inc", vec![Value::from(1)])]);
    let mut others = Vec::new();
    assert!(matches!(
        s.outcome("one", &mut others),
        Message::TaskFinished(_)
    ));
    s.send(vec![compute_with(
        "two",
        "inc",
        vec![task_ref_value("one")],
        &[("one", &s.worker().address())],
    )]);
    assert!(matches!(
        s.outcome("two", &mut others),
        Message::TaskFinished(_)
    ));
    assert_eq!(value_of(&s.get(&["two"]), "two"), Value::from(3));
    assert!(others.is_empty(), "{others:?}");
    // A quick function given a large input goes to the thread: it waits,
    // and a quick task sent after it reports first.
    let big = Value::Array(vec![Value::from(1); 2000]);
    s.send(vec![compute("big", "inc", vec![big])]);
    s.send(vec![compute("three", "inc", vec![Value::from(2)])]);
    assert!(matches!(
        s.outcome("three", &mut others),
        Message::TaskFinished(_)
    ));
    assert!(others.is_empty(), "big reported first: {others:?}");
    drop(gate);
    assert!(matches!(
        s.outcome("running", &mut others),
        Message::TaskFinished(_)
    ));
    match s.outcome("big", &mut others) {
        Message::TaskErred(e) => assert_eq!(e.error_type, "TypeError"),
        m => panic!("{m:?}"),
    }
    s.stop();
}

#[test]
fn heartbeats_arrive_with_metrics() {
    let mut s = start(1, FunctionRegistry::builtins(), 20);
    let mut beats = 0;
    while beats < 3 {
        match s.scheduler.recv().expect("heartbeat") {
            Message::Heartbeat(h) => {
                assert!(h.metrics.is_some());
                beats += 1;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    s.stop();
}

#[test]
fn close_from_the_scheduler_ends_the_worker_cleanly() {
    let mut s = start_default();
    s.send(vec![Message::Close(Close {
        reason: Some("bye".into()),
        reconnect: None,
    })]);
    let worker = s.worker.take().unwrap();
    let result = within_timeout(move || worker.join());
    assert!(result.is_ok(), "{result:?}");
    assert!(s.scheduler.recv().is_err(), "the worker closed its side");
}

#[test]
fn stop_sends_close_to_the_scheduler() {
    let mut s = start_default();
    let worker = s.worker.take().unwrap();
    within_timeout(move || worker.stop());
    let m = s.recv();
    assert!(matches!(m, Message::Close(_)), "{m:?}");
    assert!(s.scheduler.recv().is_err());
}

#[test]
fn garbage_from_the_scheduler_is_reported_and_the_worker_closes() {
    let mut s = start_default();
    // A 3-byte frame that is not a msgpack array.
    s.scheduler
        .send_raw(&[0, 0, 0, 3, b'a', b'b', b'c'])
        .unwrap();
    let m = s.recv();
    let Message::ErrorReport(e) = m else {
        panic!("expected error, got {m:?}");
    };
    assert_eq!(e.code, 1001);
    assert!(e.fatal);
    assert!(s.scheduler.recv().is_err(), "closed after the error");
    let worker = s.worker.take().unwrap();
    let result = within_timeout(move || worker.join());
    assert!(result.is_err());
}

#[test]
fn an_oversized_frame_prefix_is_refused_without_reading_it() {
    let mut s = start_default();
    s.scheduler.send_raw(&u32::MAX.to_be_bytes()).unwrap();
    let Message::ErrorReport(e) = s.recv() else {
        panic!("expected error");
    };
    assert_eq!(e.code, 1002);
    let worker = s.worker.take().unwrap();
    assert!(within_timeout(move || worker.join()).is_err());
}

#[test]
fn a_panicking_function_is_a_task_error_and_the_worker_goes_on() {
    let mut functions = FunctionRegistry::builtins();
    functions.register("boom", |_, _| panic!("deliberate panic in a test"));
    let mut s = start(1, functions, QUIET_HEARTBEAT_MS);
    s.send(vec![
        compute("p", "boom", vec![]),
        compute("after", "inc", vec![Value::from(1)]),
    ]);
    let mut others = Vec::new();
    match s.outcome("p", &mut others) {
        Message::TaskErred(e) => {
            assert_eq!(e.error_type, "Panic");
            assert!(e.message.contains("deliberate"));
        }
        m => panic!("{m:?}"),
    }
    assert!(matches!(
        s.outcome("after", &mut others),
        Message::TaskFinished(_)
    ));
    s.stop();
}

#[test]
fn a_refused_registration_is_an_error_from_start() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut conn = BlockingConn::from_stream(stream);
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let Ok(Message::Hello(hello)) = conn.recv() else {
            return;
        };
        let (reply, _) =
            handshake::accept(&hello, Role::Scheduler, &[Role::Worker], 1, None).unwrap();
        let _ = conn.send(&[
            Message::from(reply),
            Message::ErrorReport(ErrorReport {
                code: 3004,
                message: "name in use".into(),
                fatal: true,
                request: None,
                keys: None,
            }),
        ]);
        let _ = conn.recv();
    });
    let result = WorkerHandle::start(WorkerConfig {
        scheduler: address,
        nthreads: 1,
        name: Some("dup".into()),
        ..WorkerConfig::default()
    });
    let err = result.err().expect("refused");
    assert!(err.to_string().contains("name in use"), "{err}");
    // The scheduler's refusal carries no operating-system error (the C
    // SDK tells DASK_REFUSED from DASK_CONNECTION by that).
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(err.raw_os_error(), None);
}

#[test]
fn an_unreachable_scheduler_fails_the_start_with_the_connects_own_error() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let err = WorkerHandle::start(WorkerConfig {
        scheduler: closed,
        nthreads: 1,
        ..WorkerConfig::default()
    })
    .err()
    .expect("nobody listens there");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(err.raw_os_error().is_some(), "the OS's error: {err:?}");
}

#[test]
fn a_wrong_role_in_the_scheduler_hello_fails_the_start() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut conn = BlockingConn::from_stream(stream);
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let Ok(Message::Hello(_)) = conn.recv() else {
            return;
        };
        let _ = conn.send(&[Message::from(Hello {
            role: Role::Client,
            ..handshake::offer(Role::Client, None)
        })]);
        let _ = conn.recv();
    });
    let result = WorkerHandle::start(WorkerConfig {
        scheduler: address,
        nthreads: 1,
        ..WorkerConfig::default()
    });
    assert!(result.is_err());
}
