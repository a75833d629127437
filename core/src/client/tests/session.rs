//! The session's lifecycle and output: the hello first, frames, bytes in and out.

use super::*;

#[test]
fn requests_pipeline_behind_the_hello() {
    let mut s = ClientSession::new(None, 1);
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    s.submit(vec![t], vec![key]);
    let ops: Vec<&str> = drain(&mut s).iter().map(Message::op).collect();
    assert_eq!(ops, vec!["hello", "update-graph"]);
}

#[test]
fn the_hello_goes_alone_in_its_frame_whatever_is_pipelined() {
    let mut s = ClientSession::new(None, 1);
    // A graph far over hello_frame_bytes_max, submitted before anything
    // was sent.
    let tasks: Vec<TaskSpec> = (0..5000).map(|i| inc(&mut s, Value::from(i))).collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    s.submit(tasks, wanted);
    let mut d = crate::frame::FrameDecoder::default();
    d.push(&s.transmit_bytes());
    let first = d.poll().ok().flatten().unwrap_or_default();
    assert_eq!(first.iter().map(Message::op).collect::<Vec<_>>(), ["hello"]);
    let second = d.poll().ok().flatten().unwrap_or_default();
    assert_eq!(
        second.iter().map(Message::op).collect::<Vec<_>>(),
        ["update-graph"]
    );
}

#[test]
fn bytes_in_bytes_out() {
    let mut s = ClientSession::new(None, 1);
    let hello_frame = s.transmit_bytes();
    let mut d = FrameDecoder::default();
    d.push(&hello_frame);
    assert!(matches!(d.poll(), Ok(Some(m)) if m.len() == 1));
    let reply = crate::frame::encode_frame(&[scheduler_hello(3)]).unwrap_or_default();
    let (a, b) = reply.split_at(3);
    s.handle_bytes(a);
    assert!(!s.is_connected());
    s.handle_bytes(b);
    assert!(s.is_connected());
    s.handle_bytes(&[0xff, 0xff, 0xff, 0xff]);
    assert!(s.is_closed());
    let out = drain(&mut s);
    assert!(
        matches!(&out[..], [Message::ErrorReport(e)] if e.code == ErrorCode::FrameTooLarge.number())
    );
}

#[test]
fn unsendable_messages_fail_their_request() {
    let mut s = connected();
    let mut data = BTreeMap::new();
    data.insert(
        Key::from("big"),
        RawValue::from_value(&Value::Binary(vec![0; 64])),
    );
    s.scatter(data, None, false);
    let mut enc = FrameEncoder::new(32);
    s.drain_transmit_into(&mut enc);
    assert!(enc.is_empty());
    assert!(
        matches!(s.key_state("big"), Some(KeyState::Failed(e)) if e.code_name() == Some("value-too-large"))
    );
}
