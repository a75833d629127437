//! Values on one host (dask/1.1 feature `value-local`) with real
//! processes over real TCP: the test plays the scheduler of two
//! `dask-worker` processes (and, for hostile lending, a holder), reads
//! their heartbeats' transfer counters, and checks every value whole.
//!
//! Behaviour, not speed: every wait has a deadline, no time is asserted.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dask_core::handshake;
use dask_core::messages::{
    Bin32, Data, DataLocal, GetData, LocalHost, LocalValue, Metrics, RegisterWorker, Role,
    ValueLocalDone, WorkerRegistered,
};
use dask_core::msgpack::task_ref_value;
use dask_core::{Key, Message, RawValue};
use dask_net::BlockingConn;
use dask_testkit::home::DaskHome;
use dask_testkit::process::{binary, Process};
use rmpv::Value;

/// Generous: tests must not fail on a slow machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// 8 MiB: over the 1 MiB from which values are lent.
const VALUE_BYTES: u64 = 8 << 20;

fn raw(v: Value) -> RawValue {
    RawValue::from_value(&v)
}

use dask_testkit::wire::compute_task as compute;

/// A `dask-worker` process registered with the scheduler the test plays.
struct Worker {
    process: Process,
    conn: BlockingConn,
    address: String,
    /// The last metrics its heartbeats told.
    metrics: Option<Metrics>,
}

impl Worker {
    /// The next message that is not a heartbeat (heartbeats' metrics are
    /// kept), within [`TIMEOUT`].
    fn recv(&mut self) -> Message {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "only heartbeats for {TIMEOUT:?}");
            match self.conn.recv().expect("a message from the worker") {
                Message::Heartbeat(h) => self.metrics = h.metrics.or(self.metrics.take()),
                m => return m,
            }
        }
    }

    fn finished(&mut self, key: &str) {
        loop {
            match self.recv() {
                Message::TaskFinished(f) if f.key.as_str() == key => return,
                Message::TaskErred(e) if e.key.as_str() == key => panic!("{key} erred: {e:?}"),
                _ => {}
            }
        }
    }

    fn get(&mut self, key: &str) -> RawValue {
        let request = GetData {
            request: 777,
            keys: vec![key.into()],
        };
        self.conn.send(&[Message::GetData(request)]).unwrap();
        loop {
            if let Message::Data(mut d) = self.recv() {
                return d.data.remove(key).expect("the value");
            }
        }
    }

    /// The metrics of a heartbeat once `ready` holds for them.
    fn metrics_when(&mut self, ready: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(m) = self.metrics.as_ref().filter(|m| ready(m)) {
                return m.clone();
            }
            assert!(Instant::now() < deadline, "metrics: {:?}", self.metrics);
            if let Message::Heartbeat(h) = self.conn.recv().expect("a heartbeat") {
                self.metrics = h.metrics;
            }
        }
    }
}

/// Starts a `dask-worker` (no authentication: the test plays its
/// scheduler) with `runtime_dir` as its `XDG_RUNTIME_DIR` and `env`, and
/// accepts its registration on `listener`.
fn start_worker(
    listener: &TcpListener,
    name: &str,
    runtime_dir: &Path,
    env: &[(&str, &str)],
) -> Worker {
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let mut cmd = Command::new(binary("dask-worker"));
    DaskHome::apply_none(&mut cmd)
        .args([&address, "--nthreads", "1", "--name", name])
        .arg(dask_net::cli::NO_AUTH_FLAG)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env_remove(dask_worker::local::VALUE_LOCAL_ENV)
        .envs(env.iter().copied());
    let process = Process::spawn(&format!("dask-worker {name}"), &mut cmd);
    let (stream, _) = listener.accept().unwrap();
    let mut conn = BlockingConn::from_stream(stream);
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let Message::Hello(hello) = conn.recv().unwrap() else {
        panic!("hello expected");
    };
    let (reply, _) = handshake::accept(&hello, Role::Scheduler, &[Role::Worker], 1, None).unwrap();
    conn.send(&[Message::from(reply)]).unwrap();
    let Message::RegisterWorker(RegisterWorker { address, .. }) = conn.recv().unwrap() else {
        panic!("register-worker expected");
    };
    let registered = WorkerRegistered {
        id: 1,
        heartbeat_interval_ms: 50,
        inline_bytes_max: None,
    };
    conn.send(&[Message::WorkerRegistered(registered)]).unwrap();
    Worker {
        process,
        conn,
        address,
        metrics: None,
    }
}

/// A fresh directory for `XDG_RUNTIME_DIR` (0700, as the real one is).
fn runtime_dir(label: &str) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let dir =
        std::env::temp_dir().join(format!("dask-rs-local-test-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    dir
}

/// `conformance.bytes`'s value of `n` bytes: byte i is i % 251.
fn expected_bytes(n: u64) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Makes an 8 MiB value on `maker`, has `taker` copy it (`identity`),
/// checks the copy byte for byte and returns the taker's transfer
/// counters once they count it.
fn move_value(maker: &mut Worker, taker: &mut Worker) -> Metrics {
    move_bytes(maker, taker, VALUE_BYTES, "")
}

/// [`move_value`] of `bytes` bytes, its keys ending in `tag`.
fn move_bytes(maker: &mut Worker, taker: &mut Worker, bytes: u64, tag: &str) -> Metrics {
    let (blob, copy) = (format!("blob{tag}"), format!("copy{tag}"));
    let make = compute(&blob, "conformance.bytes", vec![bytes.into()], &[]);
    maker.conn.send(&[make]).unwrap();
    maker.finished(&blob);
    let task = compute(
        &copy,
        "identity",
        vec![task_ref_value(&blob)],
        &[(&blob, &maker.address)],
    );
    taker.conn.send(&[task]).unwrap();
    taker.finished(&copy);
    let value = taker.get(&copy).to_value().unwrap();
    assert!(
        value == Value::Binary(expected_bytes(bytes)),
        "the copy is not the value made"
    );
    taker.metrics_when(|m| m.transfer_bytes.unwrap_or(0) >= bytes)
}

#[test]
fn an_8_mib_value_moves_between_worker_processes_of_one_host_through_memory() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = runtime_dir("same");
    let mut maker = start_worker(&listener, "maker", &dir, &[]);
    let mut taker = start_worker(&listener, "taker", &dir, &[]);
    let metrics = move_value(&mut maker, &mut taker);
    assert!(
        metrics.transfer_local_bytes >= Some(VALUE_BYTES),
        "read from the maker's memory: {metrics:?}"
    );
    // Over 64 MiB the copy is split between threads (3 here: parts of
    // whole pages, the last one longer): still the same bytes.
    let mut split = start_worker(
        &listener,
        "split",
        &dir,
        &[("DASK_RS_LOCAL_READ_THREADS", "3")],
    );
    let odd = (80 << 20) + 12_345;
    let metrics = move_bytes(&mut maker, &mut split, odd, "-80m");
    assert!(
        metrics.transfer_local_bytes >= Some(odd),
        "read from the maker's memory: {metrics:?}"
    );
    // Both share one host id, made by the first, private to the user.
    use std::os::unix::fs::PermissionsExt;
    let id = dir.join("dask-rs/host-id");
    let mode = std::fs::metadata(&id).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{id:?}");
    maker.process.assert_alive("after the transfer");
    taker.process.assert_alive("after the transfer");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn different_host_ids_or_the_path_turned_off_move_values_by_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (one, other) = (runtime_dir("one"), runtime_dir("other"));
    // Another host id (another XDG_RUNTIME_DIR: as another host would).
    let mut maker = start_worker(&listener, "maker", &one, &[]);
    let mut taker = start_worker(&listener, "taker", &other, &[]);
    let metrics = move_value(&mut maker, &mut taker);
    assert_eq!(metrics.transfer_local_bytes, Some(0), "{metrics:?}");
    // One host, the path turned off on the taker.
    let mut maker = start_worker(&listener, "maker-2", &one, &[]);
    let off = [("DASK_RS_VALUE_LOCAL", "off")];
    let mut taker = start_worker(&listener, "taker-2", &one, &off);
    let metrics = move_value(&mut maker, &mut taker);
    assert_eq!(metrics.transfer_local_bytes, Some(0), "{metrics:?}");
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&other);
}

/// How a hostile holder lends `d`.
#[derive(Clone, Copy, Debug)]
enum Lending {
    /// Where the value really is in this process: read.
    Honest,
    /// At an address mapped nowhere.
    BadAddress,
    /// Over any value bound: never read, never reserved.
    Huge,
    /// With a probe that is not what is at `probe_at`.
    WrongProbe,
}

/// A holder of `d` played by this process: answers the worker's hello as
/// a worker of its host (the worker's own host tag, this process's pid
/// and a probe here), lends `d` as `lending` says, then answers the
/// get-data that follows a failed read with `data`. Returns what the
/// worker sent it after its first `get-data`.
fn hostile_holder(
    listener: TcpListener,
    value: RawValue,
    lending: Lending,
) -> std::thread::JoinHandle<Vec<Message>> {
    std::thread::spawn(move || {
        let probe = Box::new([0x5au8; 32]);
        let (stream, _) = listener.accept().unwrap();
        let mut conn = BlockingConn::from_stream(stream);
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let Ok(Message::Hello(hello)) = conn.recv() else {
            panic!("hello expected");
        };
        let theirs = hello.local.clone().expect("the worker lists value-local");
        let (mut reply, _) =
            handshake::accept(&hello, Role::Worker, &[Role::Peer], 9, None).unwrap();
        reply
            .features
            .get_or_insert_with(Vec::new)
            .push(handshake::VALUE_LOCAL.into());
        reply.local = Some(LocalHost {
            host: theirs.host,
            pid: u64::from(std::process::id()),
            probe_at: probe.as_ptr() as u64,
            probe: Bin32(match lending {
                Lending::WrongProbe => [0xa5; 32],
                _ => *probe,
            }),
        });
        conn.send(&[Message::from(reply)]).unwrap();
        let Ok(Message::GetData(GetData { request, keys })) = conn.recv() else {
            panic!("get-data expected");
        };
        assert_eq!(keys, vec![Key::from("d")]);
        let (at, nbytes) = match lending {
            Lending::BadAddress => (8, value.len() as u64),
            Lending::Huge => (value.as_bytes().as_ptr() as u64, u64::MAX / 2),
            _ => (value.as_bytes().as_ptr() as u64, value.len() as u64),
        };
        let lent = LocalValue {
            at,
            nbytes,
            lease: 3,
        };
        let values = [(Key::from("d"), lent)].into_iter().collect();
        conn.send(&[Message::DataLocal(DataLocal { request, values })])
            .unwrap();
        let mut seen = Vec::new();
        loop {
            let Ok(m) = conn.recv() else {
                return seen;
            };
            seen.push(m.clone());
            match m {
                Message::ValueLocalDone(ValueLocalDone { failed: None, .. }) => return seen,
                Message::GetData(GetData { request, .. }) => {
                    let data = [(Key::from("d"), value.clone())].into_iter().collect();
                    let reply = Data {
                        request,
                        data,
                        missing: Vec::new(),
                    };
                    conn.send(&[Message::Data(reply)]).unwrap();
                    return seen;
                }
                _ => {}
            }
        }
    })
}

#[test]
fn hostile_lending_falls_back_to_the_connection_and_the_value_arrives_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = runtime_dir("hostile");
    let mut worker = start_worker(&listener, "taker", &dir, &[]);
    let bytes = expected_bytes(2 << 20);
    let value = raw(Value::Binary(bytes.clone()));
    let cases = [
        Lending::Honest,
        Lending::BadAddress,
        Lending::Huge,
        Lending::WrongProbe,
    ];
    for (i, lending) in cases.into_iter().enumerate() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("tcp://{}", holder.local_addr().unwrap());
        let played = hostile_holder(holder, value.clone(), lending);
        let key = format!("t{i}");
        let task = compute(&key, "len", vec![task_ref_value("d")], &[("d", &address)]);
        worker.conn.send(&[task]).unwrap();
        worker.finished(&key);
        let n = worker.get(&key).to_value().unwrap();
        assert_eq!(n, Value::from(bytes.len() as u64), "{lending:?}");
        let seen = played.join().expect("the holder's script");
        let done = |failed| {
            Message::ValueLocalDone(ValueLocalDone {
                leases: vec![3],
                failed,
            })
        };
        match lending {
            Lending::Honest => assert_eq!(seen, vec![done(None)]),
            _ => {
                assert_eq!(seen.len(), 2, "{lending:?}: {seen:?}");
                assert_eq!(seen[0], done(Some(true)), "{lending:?}");
                assert!(
                    matches!(&seen[1], Message::GetData(g) if g.keys == vec![Key::from("d")]),
                    "{lending:?}: asked again: {seen:?}"
                );
            }
        }
        // The value is dropped so the next case fetches it again.
        let free = dask_core::messages::FreeKeys {
            keys: ["d", key.as_str()].into(),
        };
        worker.conn.send(&[Message::FreeKeys(free)]).unwrap();
    }
    let metrics = worker.metrics_when(|m| m.transfer_bytes >= Some(4 * (2 << 20)));
    assert!(
        (2 << 20..4 << 20).contains(&metrics.transfer_local_bytes.unwrap_or(0)),
        "only the honest one read locally: {metrics:?}"
    );
    worker.process.assert_alive("after hostile lending");
    let _ = std::fs::remove_dir_all(&dir);
}
