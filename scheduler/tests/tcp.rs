//! The scheduler over real TCP on 127.0.0.1: tests play a client and a
//! worker with `BlockingConn`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dask_core::handshake;
use dask_core::messages::*;
use dask_core::msgpack::task_ref_value;
use dask_core::{Key, Message, RawValue};
use dask_net::BlockingConn;
use dask_scheduler::{SchedulerConfig, SchedulerHandle};
use dask_testkit::home::DaskHome;
use rmpv::Value;

/// Generous: tests must not fail on a slow machine.
const TIMEOUT: Duration = Duration::from_secs(20);

fn start() -> SchedulerHandle {
    SchedulerHandle::start(SchedulerConfig {
        port: 0,
        validate: true,
        ..SchedulerConfig::default()
    })
    .expect("scheduler starts")
}

fn connect(address: &str, role: Role, name: &str) -> BlockingConn {
    let (conn, negotiated) =
        BlockingConn::connect(address, role, Role::Scheduler, Some(name.into()), TIMEOUT)
            .expect("handshake");
    assert!(negotiated.id.is_some());
    conn
}

fn raw(v: Value) -> RawValue {
    RawValue::from_value(&v)
}

/// Reads until the peer closes; returns what came before.
fn read_to_close(conn: &mut BlockingConn) -> Vec<Message> {
    let mut got = Vec::new();
    loop {
        match conn.recv() {
            Ok(m) => got.push(m),
            Err(_) => return got,
        }
    }
}

fn error_code(m: &Message) -> Option<u32> {
    match m {
        Message::ErrorReport(e) => Some(e.code),
        _ => None,
    }
}

#[test]
fn a_client_handshake_gets_a_hello_with_an_id() {
    let scheduler = start();
    assert!(scheduler.address().starts_with("tcp://127.0.0.1:"));
    let mut c = connect(&scheduler.address(), Role::Client, "c");
    c.send(&[Message::ClusterInfo(ClusterInfo { request: 1 })])
        .unwrap();
    let Message::ClusterInfoReply(info) = c.recv().unwrap() else {
        panic!("expected cluster-info-reply")
    };
    assert_eq!((info.request, info.clients), (1, 1));
    scheduler.stop();
    // Stopping says close to everyone.
    assert!(matches!(c.recv(), Ok(Message::Close(_))));
}

#[test]
fn another_major_version_gets_3001_and_the_connection_closes() {
    let scheduler = start();
    let mut c = BlockingConn::connect_raw(&scheduler.address(), TIMEOUT).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut hello = handshake::offer(Role::Client, None);
    hello.version.major = 2;
    c.send(&[Message::from(hello)]).unwrap();
    let got = read_to_close(&mut c);
    assert_eq!(got.len(), 1, "{got:?}");
    let Message::ErrorReport(e) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!((e.code, e.fatal), (3001, true));
}

#[test]
fn garbage_and_oversized_frames_get_an_error_and_others_are_still_served() {
    let scheduler = start();
    let address = scheduler.address();
    let mut good = connect(&address, Role::Client, "good");

    // A frame that is not an array of messages.
    let mut garbage = BlockingConn::connect_raw(&address, TIMEOUT).unwrap();
    garbage.set_read_timeout(Some(TIMEOUT)).unwrap();
    garbage.send_raw(&[0, 0, 0, 3, b'a', b'b', b'c']).unwrap();
    let got = read_to_close(&mut garbage);
    assert_eq!(
        got.iter().filter_map(error_code).collect::<Vec<_>>(),
        [1001]
    );

    // A length prefix over the limit, then more bytes the scheduler never
    // reads: the error must still arrive.
    let mut big = BlockingConn::connect_raw(&address, TIMEOUT).unwrap();
    big.set_read_timeout(Some(TIMEOUT)).unwrap();
    big.send_raw(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let _ = big.send_raw(&vec![0x90; 64 * 1024]);
    let got = read_to_close(&mut big);
    assert_eq!(
        got.iter().filter_map(error_code).collect::<Vec<_>>(),
        [1002]
    );

    // An unknown op after a good handshake.
    let mut odd = connect(&address, Role::Client, "odd");
    let mut bytes = vec![0, 0, 0, 0];
    let payload = [0x91, 0x81, 0xa2, b'o', b'p', 0xa4, b'n', b'o', b'p', b'e'];
    bytes[3] = payload.len() as u8;
    bytes.extend_from_slice(&payload);
    odd.send_raw(&bytes).unwrap();
    let got = read_to_close(&mut odd);
    assert_eq!(
        got.iter().filter_map(error_code).collect::<Vec<_>>(),
        [2001]
    );

    good.send(&[Message::ListDatasets(ListDatasets { request: 5 })])
        .unwrap();
    assert!(matches!(good.recv().unwrap(), Message::Datasets(d) if d.request == 5));
}

fn register(conn: &mut BlockingConn, name: &str, functions: &[&str]) {
    conn.send(&[Message::RegisterWorker(RegisterWorker {
        name: name.into(),
        address: format!("tcp://127.0.0.1:1/{name}"),
        nthreads: 1,
        memory_limit: None,
        resources: None,
        functions: functions.iter().map(|f| f.to_string()).collect(),
        pid: Some(std::process::id()),
        held: None,
    })])
    .unwrap();
    match conn.recv().unwrap() {
        Message::WorkerRegistered(r) => assert_eq!(r.heartbeat_interval_ms, 1000),
        other => panic!("expected worker-registered, got {other:?}"),
    }
}

/// Plays a worker for one compute-task: checks it and reports `value`.
fn run_one(worker: &mut BlockingConn, key: &str, value: i64) -> ComputeTask {
    let task = match worker.recv_until(&mut |m| matches!(m, Message::ComputeTask(_))) {
        Ok(Message::ComputeTask(t)) => t,
        other => panic!("expected compute-task, got {other:?}"),
    };
    assert_eq!(task.key.as_str(), key);
    worker
        .send(&[Message::TaskFinished(TaskFinished {
            key: task.key.clone(),
            nbytes: raw(Value::from(value)).as_bytes().len() as u64,
            duration_us: Some(1),
            value: None,
        })])
        .unwrap();
    task
}

#[test]
fn a_tiny_graph_is_computed_by_a_test_played_worker_and_gathered() {
    let scheduler = start();
    let address = scheduler.address();
    let mut worker = connect(&address, Role::Worker, "w");
    register(&mut worker, "w", &["inc", "add"]);
    let mut client = connect(&address, Role::Client, "c");
    client
        .send(&[Message::UpdateGraph(UpdateGraph {
            request: 1,
            tasks: vec![
                TaskSpec {
                    key: "total".into(),
                    function: "add".into(),
                    args: raw(Value::Array(vec![task_ref_value("one"), Value::from(10)])),
                    kwargs: None,
                    priority: None,
                    resources: None,
                    retries: None,
                    workers: None,
                },
                TaskSpec {
                    key: "one".into(),
                    function: "inc".into(),
                    args: raw(Value::Array(vec![Value::from(0)])),
                    kwargs: None,
                    priority: None,
                    resources: None,
                    retries: None,
                    workers: None,
                },
            ],
            wanted: vec!["total".into()],
            ack: None,
        })])
        .unwrap();
    run_one(&mut worker, "one", 1);
    let task = run_one(&mut worker, "total", 11);
    assert_eq!(
        task.who_has[&Key::from("one")],
        ["tcp://127.0.0.1:1/w".to_string()]
    );
    match client.recv().unwrap() {
        Message::KeyFinished(f) => assert_eq!(f.key.as_str(), "total"),
        other => panic!("expected key-finished, got {other:?}"),
    }

    client
        .send(&[Message::Gather(Gather {
            request: 2,
            keys: vec!["total".into(), "one".into()],
        })])
        .unwrap();
    // The scheduler asks the worker over its own connection.
    let get = match worker.recv_until(&mut |m| matches!(m, Message::GetData(_))) {
        Ok(Message::GetData(g)) => g,
        other => panic!("expected get-data, got {other:?}"),
    };
    assert_eq!(get.keys, vec![Key::from("total")]);
    worker
        .send(&[Message::Data(Data {
            request: get.request,
            data: [(Key::from("total"), raw(Value::from(11)))].into(),
            missing: vec![],
        })])
        .unwrap();
    match client.recv().unwrap() {
        Message::GatherReply(g) => {
            assert_eq!(g.request, 2);
            assert_eq!(g.data[&Key::from("total")], raw(Value::from(11)));
            assert_eq!(g.missing, vec![Key::from("one")], "one was freed");
        }
        other => panic!("expected gather-reply, got {other:?}"),
    }

    // A client that sends a worker's message is closed; the worker is not.
    client
        .send(&[Message::TaskFinished(TaskFinished {
            key: "total".into(),
            nbytes: 1,
            duration_us: None,
            value: None,
        })])
        .unwrap();
    let got = read_to_close(&mut client);
    assert_eq!(
        got.iter().filter_map(error_code).collect::<Vec<_>>(),
        [2004]
    );
    // The client's want went with it: the worker is told to free the result.
    match worker.recv_until(&mut |m| matches!(m, Message::FreeKeys(_))) {
        Ok(Message::FreeKeys(f)) => assert!(f.keys.iter().any(|k| k == "total")),
        other => panic!("expected free-keys, got {other:?}"),
    }
    drop(scheduler);
    assert!(matches!(
        worker.recv_until(&mut |m| matches!(m, Message::Close(_))),
        Ok(Message::Close(_))
    ));
}

#[test]
fn the_binary_prints_its_address_and_exits_0_on_sigterm() {
    let file = std::env::temp_dir().join(format!("dask-scheduler-{}.json", std::process::id()));
    let home = DaskHome::new();
    let mut child = home
        .apply(&mut Command::new(env!("CARGO_BIN_EXE_dask-scheduler")))
        .args(["--port", "0", "--validate", "--scheduler-file"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dask-scheduler");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let address = line
        .trim_end()
        .strip_prefix("Scheduler at ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(address.starts_with("tcp://127.0.0.1:"), "{address}");
    assert!(!address.ends_with(":0"));
    // The scheduler file, as workers and clients read it.
    let from_file = dask_net::scheduler_file::read(&file, Duration::ZERO).unwrap();
    assert_eq!(from_file, address);
    // Secure by default: it created the credentials file (owner-only) and
    // said where; a client proving it is served, a stranger is not.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    stderr.read_line(&mut said).unwrap();
    let path = home.credentials_path();
    assert!(
        said.contains("credentials created at") && said.contains(&*path.to_string_lossy()),
        "{said}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let stranger = BlockingConn::connect(&address, Role::Client, Role::Scheduler, None, TIMEOUT);
    let e = stranger.err().expect("a stranger is refused");
    assert!(e.to_string().contains("(3003)"), "{e}");
    let (mut client, _) = BlockingConn::connect_proving(
        &address,
        Role::Client,
        Role::Scheduler,
        Some("c".into()),
        TIMEOUT,
        Some(&home.credentials()),
    )
    .expect("the holder of the client secret is served");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(matches!(client.recv(), Ok(Message::Close(_))));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dask-scheduler did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!file.exists(), "the scheduler file is removed at exit");
}

#[test]
fn the_binary_explains_itself() {
    let out = Command::new(env!("CARGO_BIN_EXE_dask-scheduler"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "dask-scheduler {} (dask-rs, protocol dask/1)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dask-scheduler"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: dask-scheduler"));
    let out = Command::new(env!("CARGO_BIN_EXE_dask-scheduler"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
