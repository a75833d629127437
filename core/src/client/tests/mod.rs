//! The client session's tests, one file per concern; the helpers here.

use std::collections::BTreeMap;

use super::*;
use crate::error::ErrorCode;
use crate::frame::{FrameDecoder, FrameEncoder};
use crate::messages::{
    Dataset, Datasets, ErrorReport, GatherReply, Hello, KeyCancelled, KeyErred, KeyFinished,
    KeyLost, OkReply, TaskSpec, Version,
};
use crate::msgpack::{task_ref_value, RawValue};
use rmpv::Value;

fn scheduler_hello(id: u64) -> Message {
    Message::from(Hello {
        protocol: "dask".into(),
        version: Version { major: 1, minor: 0 },
        role: Role::Scheduler,
        name: None,
        id: Some(id),
        features: Some(vec![]),
        auth: None,
        tls: None,
        session: None,
        local: None,
    })
}

fn drain(s: &mut ClientSession) -> Vec<Message> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn events(s: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn connected() -> ClientSession {
    let mut s = ClientSession::new(Some("test".into()), 0xabc);
    let out = drain(&mut s);
    assert!(matches!(&out[..], [Message::Hello(h)] if h.role == Role::Client));
    s.handle_message(scheduler_hello(7));
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::Connected { client_id: Some(7) }]
    );
    s
}

fn inc(s: &mut ClientSession, x: Value) -> TaskSpec {
    let key = s.new_key("inc");
    task_spec(key, "inc", &[x], &[])
}

fn finished(key: &Key) -> Message {
    Message::KeyFinished(KeyFinished {
        key: key.clone(),
        nbytes: 1,
        request: None,
        value: None,
    })
}

mod graph;
mod input;
mod keys;
mod parts;
mod requests;
mod resume;
mod session;
mod v1_1;
mod waiting;
