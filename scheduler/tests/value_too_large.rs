//! A value no message can carry, made by a real worker of another
//! implementation: `conformance/fixtures/pyworker.py` (pure Python, written
//! from the spec) stores values up to frame_bytes_max when told to, as the
//! spec allows, and answers a `get-data` it cannot fit in a frame with
//! 5002. The scheduler must relay that to the client's `gather` (it used
//! to wait forever), and keep serving the client.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dask_core::client::task_spec;
use dask_core::messages::*;
use dask_core::{Key, Message, FRAME_BYTES_MAX};
use dask_net::BlockingConn;
use dask_scheduler::{SchedulerConfig, SchedulerHandle};
use rmpv::Value;

/// Generous: Python builds and encodes a 256 MiB value.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Kills the worker when the test ends, whatever happened.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pyworker(scheduler: &str) -> Worker {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures/pyworker.py");
    let child = Command::new("python3")
        .arg(script)
        .arg(scheduler)
        .args(["--value-bytes-max", &FRAME_BYTES_MAX.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs the fixture worker");
    Worker(child)
}

fn task(key: &str, function: &str, args: Vec<Value>) -> TaskSpec {
    task_spec(Key::from(key), function, &args, &[])
}

/// The next message from the scheduler.
fn next(client: &mut BlockingConn) -> Message {
    client.recv().expect("the scheduler answers")
}

#[test]
fn a_value_no_message_can_carry_gets_5002_relayed_to_the_gather() {
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        validate: true,
        ..SchedulerConfig::default()
    })
    .expect("scheduler starts");
    let (mut client, _) = BlockingConn::connect(
        &scheduler.address(),
        Role::Client,
        Role::Scheduler,
        Some("client".into()),
        TIMEOUT,
    )
    .expect("handshake");
    let _worker = pyworker(&scheduler.address());

    // A binary whose encoding is exactly frame_bytes_max: a `data` message
    // holding it is larger than any frame.
    let n = FRAME_BYTES_MAX - 5;
    client
        .send(&[Message::UpdateGraph(UpdateGraph {
            request: 1,
            tasks: vec![
                task("big", "conformance.bytes", vec![Value::from(n)]),
                task("small", "conformance.echo", vec![Value::from(7)]),
            ],
            wanted: vec!["big".into(), "small".into()],
            ack: None,
        })])
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut finished = Vec::new();
    while finished.len() < 2 {
        assert!(Instant::now() < deadline, "no key-finished for both keys");
        match next(&mut client) {
            Message::KeyFinished(f) => finished.push((f.key.0, f.nbytes)),
            // The graph may come before the worker: the client is told
            // why its keys wait, and they run when it joins.
            Message::KeyWaiting(w) => assert_eq!(w.reason, "no-workers"),
            other => panic!("expected key-finished, got {other:?}"),
        }
    }
    finished.sort();
    assert_eq!(
        finished,
        [("big".into(), FRAME_BYTES_MAX as u64), ("small".into(), 1)]
    );

    client
        .send(&[Message::Gather(Gather {
            request: 2,
            keys: vec!["big".into(), "small".into()],
        })])
        .unwrap();
    match next(&mut client) {
        Message::ErrorReport(e) => {
            assert_eq!(
                (e.code, e.fatal, e.request, e.keys),
                (5002, false, Some(2), Some(vec![Key::from("big")]))
            );
            assert!(e.message.contains("\"big\""), "{}", e.message);
        }
        other => panic!("expected error 5002, got {other:?}"),
    }

    // The connection still serves, and the other value is still there.
    client
        .send(&[Message::Gather(Gather {
            request: 3,
            keys: vec!["small".into()],
        })])
        .unwrap();
    match next(&mut client) {
        Message::GatherReply(g) => {
            assert_eq!(g.request, 3);
            assert_eq!(g.data[&Key::from("small")].as_bytes(), [7]);
        }
        other => panic!("expected gather-reply, got {other:?}"),
    }
    scheduler.stop();
}
