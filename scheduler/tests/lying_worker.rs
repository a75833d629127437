//! A registered worker that lies about data (issue 20 item 4), over real
//! TCP: a real worker computes x = 42; the liar, never given x, announces
//! it (`add-keys`) and then claims the real holder lacks it
//! (`missing-data`). Before the fix the liar became a holder, was
//! preferred for the gather (its 666 came back instead of 42), and the
//! real copy was freed. Now the announcement is refused (the liar is told
//! to drop the key), the claim is checked with the real holder, which
//! keeps its copy, and x and its dependents keep their true values.

use std::time::Duration;

use dask_client::Client;
use dask_core::client::task_spec;
use dask_core::messages::*;
use dask_core::{Key, Message, RawValue};
use dask_net::BlockingConn;
use dask_scheduler::{SchedulerConfig, SchedulerHandle};
use dask_worker::{WorkerConfig, WorkerHandle};
use rmpv::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

fn spec(key: &str, function: &str, args: Vec<Value>) -> TaskSpec {
    task_spec(Key::from(key), function, &args, &[])
}

/// Waits for the `free-keys` naming `key` on the liar's connection,
/// answering any `get-data` with the liar's own value meanwhile.
fn expect_freed(liar: &mut BlockingConn, key: &str) {
    loop {
        match liar.recv() {
            Ok(Message::FreeKeys(f)) if f.keys.iter().any(|k| k == key) => return,
            Ok(Message::GetData(g)) => {
                let lie = RawValue::from_value(&Value::from(666));
                liar.send(&[Message::Data(Data {
                    request: g.request,
                    data: g.keys.iter().map(|k| (k.clone(), lie.clone())).collect(),
                    missing: vec![],
                })])
                .expect("the liar answers");
            }
            Ok(_) => continue,
            Err(e) => panic!("the liar was never told to drop {key}: {e}"),
        }
    }
}

#[test]
fn a_worker_cannot_substitute_a_value_it_was_never_given() {
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        validate: true,
        heartbeat_timeout: Duration::from_secs(120),
        ..SchedulerConfig::default()
    })
    .expect("scheduler starts");
    let honest = WorkerHandle::start(WorkerConfig {
        scheduler: scheduler.address(),
        name: Some("honest".into()),
        nthreads: 1,
        ..WorkerConfig::default()
    })
    .expect("worker registers");
    let client = Client::connect(&scheduler.address()).expect("client connects");
    let x = client.submit_tasks(
        vec![spec("x", "identity", vec![42.into()])],
        vec!["x".into()],
    );
    assert_eq!(client.gather(&x).expect("x"), [Value::from(42)]);

    let (mut liar, _) = BlockingConn::connect(
        &scheduler.address(),
        Role::Worker,
        Role::Scheduler,
        Some("liar".into()),
        TIMEOUT,
    )
    .expect("the liar connects");
    liar.send(&[Message::RegisterWorker(RegisterWorker {
        name: "liar".into(),
        address: "tcp://127.0.0.1:9".into(),
        nthreads: 1,
        memory_limit: None,
        resources: None,
        functions: vec!["nothing".into()],
        pid: None,
        held: None,
    })])
    .expect("the liar registers");
    let announce = Message::AddKeys(AddKeys {
        nbytes: [(Key::from("x"), 1)].into(),
    });
    liar.send(std::slice::from_ref(&announce)).expect("lie 1");
    expect_freed(&mut liar, "x");
    // The claim, then the announcement again: its refusal comes after the
    // scheduler has handled both.
    let claim = Message::MissingData(MissingData {
        key: "x".into(),
        addresses: vec![honest.address()],
        task: "nothing".into(),
    });
    liar.send(&[claim, announce]).expect("lie 2");
    expect_freed(&mut liar, "x");

    let who_has = client.who_has(&x).expect("who-has");
    assert_eq!(who_has[&Key::from("x")], [honest.address()]);
    assert_eq!(client.gather(&x).expect("x again"), [Value::from(42)]);
    let y = client.submit_tasks(
        vec![spec(
            "y",
            "inc",
            vec![dask_core::msgpack::task_ref_value("x")],
        )],
        vec!["y".into()],
    );
    assert_eq!(client.gather(&y).expect("y"), [Value::from(43)]);
    client.close();
    honest.stop();
}
