//! dask/1.1: ack, the want's request on events, key states (issue 18.7),
//! inline results.

use super::data::put_request;
use super::*;

impl Sim {
    /// A client that offers dask/1.0: it gets the 1.0 protocol.
    pub(super) fn client_1_0(&mut self) -> ConnId {
        let c = self.connect();
        let mut hello = handshake::offer(Role::Client, None);
        hello.version.minor = 0;
        self.send(c, hello);
        let got = self.recv(c);
        assert!(
            matches!(&got[..], [Message::Hello(h)] if h.version.minor == 0),
            "{got:?}"
        );
        c
    }

    pub(super) fn submit_acked(
        &mut self,
        c: ConnId,
        request: u64,
        tasks: Vec<TaskSpec>,
        wanted: &[&str],
    ) {
        self.send(
            c,
            UpdateGraph {
                request,
                tasks,
                wanted: keys(wanted),
                ack: Some(true),
            },
        );
    }
}

/// (key, request) of each event in `messages`.
pub(super) fn event_requests(messages: &[Message]) -> Vec<(&str, Option<u64>)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::KeyFinished(e) => Some((e.key.as_str(), e.request)),
            Message::KeyErred(e) => Some((e.key.as_str(), e.request)),
            Message::KeyLost(e) => Some((e.key.as_str(), e.request)),
            Message::KeyCancelled(e) => Some((e.key.as_str(), e.request)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_acked_graph_gets_ok_before_the_events_it_causes() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f"], 1);
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    compute(&mut sim, w, "x");
    sim.recv(c);
    // x is in memory: its event comes at once, after the ok.
    sim.submit_acked(c, 2, vec![spec("y", "f", vec![r("x")])], &["x", "y"]);
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::OkReply(ok), Message::KeyFinished(f)]
            if ok.request == 2 && f.key.as_str() == "x"),
        "{got:?}"
    );
    sim.recv(w);
    // A refused graph gets its error, and no ok.
    sim.submit_acked(c, 3, vec![spec("z", "f", vec![r("nope")])], &["z"]);
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::ErrorReport(e)] if e.request == Some(3) && e.code == 4001),
        "{got:?}"
    );
    // An acked scatter is acknowledged once its put-data are sent.
    sim.send(
        c,
        Scatter {
            request: 4,
            data: [(Key::from("s"), raw(Value::from(1)))].into(),
            workers: None,
            broadcast: None,
            ack: Some(true),
        },
    );
    assert!(matches!(&sim.recv(c)[..], [Message::OkReply(ok)] if ok.request == 4));
    let request = put_request(&mut sim, w);
    sim.send(
        w,
        DataStored {
            request,
            nbytes: [(Key::from("s"), 1)].into(),
        },
    );
    assert_eq!(event_requests(&sim.recv(c)), [("s", Some(4))]);
}

#[test]
fn a_dask_1_0_client_gets_the_1_0_protocol() {
    let mut sim = Sim::new();
    let c = sim.client_1_0();
    let w = sim.worker("w", &["f"], 1);
    sim.submit_acked(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    assert!(
        sim.recv(c).is_empty(),
        "no ok: a 1.0 scheduler does not know ack"
    );
    compute(&mut sim, w, "x");
    assert_eq!(event_requests(&sim.recv(c)), [("x", None)]);
    sim.send(
        c,
        WhoHas {
            request: 2,
            keys: keys(&["x"]),
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::WhoHasReply(r)] if r.status.is_none()),
        "{got:?}"
    );
}

#[test]
fn events_carry_the_request_that_started_their_want() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f", "g"], 1);
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    // Wanted again while pending: the same want, its events answer 1.
    sim.submit(c, 2, vec![], &["x"]);
    compute(&mut sim, w, "x");
    assert_eq!(event_requests(&sim.recv(c)), [("x", Some(1))]);
    // Wanted again after its event: a new want, the event comes again.
    sim.submit(c, 3, vec![], &["x"]);
    assert_eq!(event_requests(&sim.recv(c)), [("x", Some(3))]);
    // Released, then wanted anew with another definition: an event for
    // the old want still in flight is told apart by its request.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["x"]),
        },
    );
    sim.submit(c, 4, vec![spec("x", "g", vec![])], &["x"]);
    compute(&mut sim, w, "x");
    assert_eq!(event_requests(&sim.recv(c)), [("x", Some(4))]);
    // Errors and cancellations carry it too.
    sim.submit(c, 5, vec![spec("bad", "f", vec![])], &["bad"]);
    let got = sim.recv(w);
    assert_eq!(computes(&got)[0].key.as_str(), "bad");
    sim.fail(w, "bad", "boom");
    assert_eq!(event_requests(&sim.recv(c)), [("bad", Some(5))]);
    sim.submit(c, 6, vec![spec("slow", "f", vec![])], &["slow"]);
    sim.send(
        c,
        CancelKeys {
            keys: keys(&["slow"]),
            force: None,
        },
    );
    assert_eq!(event_requests(&sim.recv(c)), [("slow", Some(6))]);
}

#[test]
fn who_has_and_gather_tell_each_keys_state() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f"], 1);
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    sim.submit(c, 2, vec![spec("y", "f", vec![])], &["y"]);
    compute(&mut sim, w, "x");
    sim.send(
        c,
        WhoHas {
            request: 3,
            keys: keys(&["x", "y", "nope"]),
        },
    );
    let got = sim.recv(c);
    let reply = got
        .iter()
        .find_map(|m| match m {
            Message::WhoHasReply(r) => Some(r),
            _ => None,
        })
        .expect("who-has-reply");
    let status: Vec<(&str, &str)> = reply
        .status
        .iter()
        .flatten()
        .map(|(k, s)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        status,
        [("nope", "forgotten"), ("x", "memory"), ("y", "processing")]
    );
    // The holder dies: gather lists x missing, and says it is being
    // computed again, not gone.
    sim.close(w);
    sim.send(
        c,
        Gather {
            request: 4,
            keys: keys(&["x", "nope"]),
        },
    );
    let got = sim.recv(c);
    let [Message::GatherReply(g)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(g.missing, keys(&["x", "nope"]));
    let status: Vec<(&str, &str)> = g
        .status
        .iter()
        .flatten()
        .map(|(k, s)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(status, [("nope", "forgotten"), ("x", "no-worker")]);
}

#[test]
fn a_task_freed_while_processing_counts_as_a_busy_thread_until_the_next_result() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    let tasks = vec![spec("a", "f", vec![]), spec("b", "f", vec![])];
    sim.submit(c, 1, tasks, &["a", "b"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["a", "b"]);
    let abandoned = |sim: &Sim| sim.s.workers.iter().next().map(|(_, x)| x.abandoned);
    // An erred task is a result, not a run left behind.
    sim.fail(w, "a", "no");
    assert_eq!(abandoned(&sim), Some(0));
    // b cancelled while processing: the worker may still be running it.
    sim.send(
        c,
        CancelKeys {
            keys: vec!["b".into()],
            force: None,
        },
    );
    assert_eq!(abandoned(&sim), Some(1));
    // The next result from the worker means its thread came free.
    sim.submit(c, 2, vec![spec("d", "f", vec![])], &["d"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["d"]);
    sim.finish(w, "d", 1);
    assert_eq!(abandoned(&sim), Some(0));
}

#[test]
fn a_small_result_goes_inline_to_clients_that_speak_1_1() {
    // dask/1.1 inline results: the worker is told the bound, sends a small
    // result with task-finished, and the wanting 1.1 client gets it with
    // key-finished; a 1.0 client gets key-finished alone; over the bound,
    // nothing goes inline.
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, handshake::offer(Role::Worker, Some("w".into())));
    sim.send(
        c,
        RegisterWorker {
            name: "w".into(),
            address: address("w"),
            nthreads: 1,
            memory_limit: None,
            resources: None,
            functions: vec!["f".into()],
            pid: None,
            held: None,
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::Hello(_), Message::WorkerRegistered(r)]
            if r.inline_bytes_max == Some(crate::state::INLINE_BYTES_MAX_DEFAULT)),
        "{got:?}"
    );
    let w = c;
    let modern = sim.client();
    let old = sim.connect();
    let mut hello = handshake::offer(Role::Client, None);
    hello.version = Version { major: 1, minor: 0 };
    sim.send(old, hello);
    let _ = sim.recv(old);
    sim.submit(modern, 1, vec![spec("k", "f", vec![])], &["k"]);
    sim.submit(old, 1, vec![spec("k", "f", vec![])], &["k"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["k"]);
    let value = RawValue::from_value(&rmpv::Value::from(42));
    sim.send(
        w,
        TaskFinished {
            key: "k".into(),
            nbytes: value.len() as u64,
            duration_us: None,
            value: Some(value.clone()),
        },
    );
    let got = sim.recv(modern);
    assert!(
        matches!(&got[..], [Message::KeyFinished(f)] if f.value.as_ref() == Some(&value)),
        "{got:?}"
    );
    let got = sim.recv(old);
    assert!(
        matches!(&got[..], [Message::KeyFinished(f)] if f.value.is_none()),
        "{got:?}"
    );
    // Over the bound: not passed on (the client gathers it).
    sim.submit(modern, 2, vec![spec("big", "f", vec![])], &["big"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["big"]);
    let big = RawValue::from_value(&rmpv::Value::Binary(vec![0; 5000]));
    sim.send(
        w,
        TaskFinished {
            key: "big".into(),
            nbytes: big.len() as u64,
            duration_us: None,
            value: Some(big),
        },
    );
    let got = sim.recv(modern);
    assert!(
        matches!(&got[..], [Message::KeyFinished(f)] if f.value.is_none()),
        "{got:?}"
    );
}
