use super::*;
use dask_core::handshake;
use dask_core::messages::{ComputeTask, GetData, Hello, Role, WorkerRegistered};
use dask_core::{ErrorCode, Message, WireError};

/// The scheduler connection: the machine's first.
const SCHEDULER: u32 = 1;
use dask_core::msgpack::task_ref_value;
use rmpv::Value;

const NOW: f64 = 1000.0;

fn decode(bytes: &[u8]) -> Value {
    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
}

fn frames(bytes: &[u8]) -> Vec<Vec<Message>> {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    std::iter::from_fn(|| d.poll().unwrap()).collect()
}

fn frame(messages: &[Message]) -> Vec<u8> {
    dask_core::frame::encode_frame(messages).unwrap()
}

/// Writes of one drain by connection.
fn writes(drained: &Value) -> BTreeMap<u64, Vec<Message>> {
    drained["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let messages = frames(w[1].as_slice().unwrap()).concat();
            (w[0].as_u64().unwrap(), messages)
        })
        .collect()
}

fn new_worker() -> WorkerDriver {
    let mut config = Vec::new();
    MapWriter::new(&mut config, 6)
        .str("scheduler", "tcp://127.0.0.1:1")
        .str("name", "js-1")
        .str("address", "tcp://127.0.0.1:2")
        .uint("nthreads", 2)
        .with("functions", |w| {
            write::array_len(w, 1);
            write::str(w, "echo");
        })
        .with("now_ms", |w| write::f64(w, NOW));
    WorkerDriver::new(&config).unwrap()
}

fn registered() -> WorkerDriver {
    let mut d = new_worker();
    let _ = d.drain(NOW);
    let mut hello = handshake::offer(Role::Scheduler, None);
    hello.id = Some(1);
    d.receive(
        SCHEDULER,
        NOW,
        &frame(&[
            Message::from(Hello { ..hello }),
            Message::WorkerRegistered(WorkerRegistered {
                id: 7,
                heartbeat_interval_ms: 500,
                inline_bytes_max: None,
            }),
        ]),
    );
    d
}

#[test]
fn registration_goes_out_in_two_frames_and_the_reply_registers() {
    let mut d = new_worker();
    let out = decode(&d.drain(NOW));
    assert_eq!(out["connects"][0][1].as_str(), Some("tcp://127.0.0.1:1"));
    let bytes = out["writes"][0][1].as_slice().unwrap();
    let f = frames(bytes);
    assert_eq!(f.len(), 2);
    assert!(matches!(&f[0][..], [Message::Hello(h)] if h.role == Role::Worker));
    assert!(matches!(&f[1][..], [Message::RegisterWorker(r)] if r.functions == ["echo"]));

    let mut d = registered();
    let out = decode(&d.drain(NOW));
    assert_eq!(out["events"][0]["type"].as_str(), Some("registered"));
    assert_eq!(out["timeout_ms"].as_f64(), Some(NOW + 500.0));
}

#[test]
fn a_refused_registration_finishes_the_worker() {
    let mut d = new_worker();
    let _ = d.drain(NOW);
    let e = WireError::new(ErrorCode::NameInUse, "taken");
    d.receive(SCHEDULER, NOW, &frame(&[Message::error(&e, None)]));
    let out = decode(&d.drain(NOW));
    let types: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["refused", "finished"]);
    assert_eq!(out["closes"].as_array().unwrap().len(), 1);
    assert!(d.is_finished());
}

#[test]
fn a_task_runs_with_its_dependency_spliced_in_after_a_fetch() {
    let mut d = registered();
    let _ = d.drain(NOW);
    let args = RawValue::from_value(&Value::Array(vec![task_ref_value("dep"), Value::from(1)]));
    d.receive(
        SCHEDULER,
        NOW,
        &frame(&[Message::ComputeTask(ComputeTask {
            key: "t".into(),
            function: "echo".into(),
            args,
            kwargs: None,
            who_has: [(Key::from("dep"), vec!["tcp://127.0.0.1:9".to_string()])]
                .into_iter()
                .collect(),
            priority: None,
            resources: None,
        })]),
    );
    let out = decode(&d.drain(NOW));
    let conn = out["connects"][0][0].as_u64().unwrap() as u32;
    let w = writes(&out);
    assert!(matches!(
        &w[&(conn as u64)][..],
        [Message::Hello(_), Message::GetData(_)]
    ));
    // The hello alone in the first frame (hello_frame_bytes_max).
    let written = out["writes"].as_array().unwrap().iter();
    let peer_bytes = written
        .filter(|w| w[0].as_u64() == Some(conn as u64))
        .flat_map(|w| w[1].as_slice().unwrap().to_vec())
        .collect::<Vec<u8>>();
    let f = frames(&peer_bytes);
    assert!(matches!(&f[0][..], [Message::Hello(_)]), "{f:?}");
    assert_eq!(f.len(), 2, "{f:?}");
    let Message::GetData(GetData { request, .. }) = &w[&(conn as u64)][1] else {
        unreachable!()
    };
    let mut reply = handshake::offer(Role::Worker, None);
    reply.id = Some(1);
    let data = [(Key::from("dep"), RawValue::from_value(&Value::from("v")))]
        .into_iter()
        .collect();
    d.receive(
        conn,
        NOW,
        &frame(&[
            Message::from(Hello { ..reply }),
            Message::Data(dask_core::messages::Data {
                request: *request,
                data,
                missing: vec![],
            }),
        ]),
    );
    let out = decode(&d.drain(NOW));
    let run = &out["runs"][0];
    assert_eq!(run[1].as_str(), Some("echo"));
    assert_eq!(
        decode(run[2].as_slice().unwrap()),
        Value::Array(vec![Value::from("v"), Value::from(1)])
    );
    let run_id = run[0].as_u64().unwrap();

    let mut done = Vec::new();
    MapWriter::new(&mut done, 3)
        .uint("run_id", run_id)
        .uint("now_ms", 1001)
        .uint("duration_us", 5);
    d.task_done(&done, &[0x07]).unwrap();
    let out = decode(&d.drain(NOW));
    let w = writes(&out);
    assert!(w[&1]
        .iter()
        .any(|m| matches!(m, Message::TaskFinished(f) if f.nbytes == 1)));
}

#[test]
fn peers_are_greeted_and_served_and_rude_ones_are_closed() {
    let mut d = registered();
    let _ = d.drain(NOW);
    let peer = d.accept(NOW);
    assert!(peer > SCHEDULER);
    let hello = Message::from(handshake::offer(Role::Peer, None));
    let ask = Message::GetData(GetData {
        request: 4,
        keys: vec!["nothing".into()],
    });
    d.receive(peer, NOW, &frame(&[hello, ask]));
    let out = decode(&d.drain(NOW));
    let w = writes(&out);
    assert!(
        matches!(&w[&(peer as u64)][..], [Message::Hello(_), Message::Data(data)] if data.missing.len() == 1)
    );

    let rude = d.accept(NOW);
    d.receive(
        rude,
        NOW,
        &frame(&[Message::Heartbeat(dask_core::messages::Heartbeat {
            metrics: None,
        })]),
    );
    let out = decode(&d.drain(NOW));
    assert!(matches!(&writes(&out)[&(rude as u64)][..], [Message::ErrorReport(e)] if e.fatal));
    assert_eq!(out["closes"][0].as_u64(), Some(rude as u64));
    d.receive(rude, NOW, &[0, 0, 0, 1, 0x90]);
    d.conn_closed(rude, NOW, "closed");
}

#[test]
fn splicing_keeps_other_bytes_and_fails_on_unknown_refs() {
    let value = Value::Map(vec![(
        Value::from("k"),
        Value::Array(vec![
            task_ref_value("a"),
            Value::F32(1.5),
            task_ref_value("a"),
        ]),
    )]);
    let raw = RawValue::from_value(&value);
    let deps: HashMap<&str, &[u8]> = [("a", &[0x2a][..])].into_iter().collect();
    let out = splice_refs(raw.as_bytes(), &deps).unwrap();
    assert_eq!(
        decode(&out),
        Value::Map(vec![(
            Value::from("k"),
            Value::Array(vec![Value::from(42), Value::F64(1.5), Value::from(42)])
        )])
    );
    let none: HashMap<&str, &[u8]> = [("b", &[0xc0][..])].into_iter().collect();
    assert!(splice_refs(raw.as_bytes(), &none).is_err());
    assert!(splice_refs(&[0x92, 0x01], &deps).is_err(), "truncated");
}
