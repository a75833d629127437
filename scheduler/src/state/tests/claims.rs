//! Workers' claims about data they did not compute (issue 20 item 4): a
//! worker becomes a holder only of keys it was given or sent to fetch, and
//! a `missing-data` naming another holder is checked with that holder
//! before its copy is dropped.

use super::*;

/// `a` computed on w1 (value bytes 1); `b` depends on it, restricted to
/// `runner`. Returns the client.
fn a_on_w1_and_b_on(sim: &mut Sim, w1: ConnId, runner: &str) -> ConnId {
    let c = sim.client();
    let mut b = spec("b", "f", vec![r("a")]);
    b.workers = Some(vec![runner.to_owned()]);
    sim.submit(c, 1, vec![spec("a", "f", vec![]), b], &["a", "b"]);
    compute(sim, w1, "a");
    c
}

fn who_has(sim: &mut Sim, c: ConnId, key: &str) -> Vec<String> {
    sim.send(
        c,
        WhoHas {
            request: 50,
            keys: keys(&[key]),
        },
    );
    let got = sim.recv(c);
    let reply = got
        .iter()
        .find_map(|m| match m {
            Message::WhoHasReply(r) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no who-has-reply: {got:?}"));
    let mut holders = reply.who_has[&Key::from(key)].clone();
    holders.sort();
    holders
}

fn get_requests(messages: &[Message]) -> Vec<&GetData> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::GetData(g) => Some(g),
            _ => None,
        })
        .collect()
}

#[test]
fn add_keys_from_a_worker_never_sent_to_fetch_the_key_is_refused() {
    // Before the fix the liar became a holder and was preferred for
    // gathers (fewest tasks): a client got its 666 instead of 42.
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let liar = sim.worker("liar", &["g"], 1);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
    compute(&mut sim, w1, "a");
    sim.recv(c);
    sim.send(
        liar,
        AddKeys {
            nbytes: [(Key::from("a"), 1)].into(),
        },
    );
    assert_eq!(freed(&sim.recv(liar)), ["a"], "the liar is told to drop it");
    assert_eq!(who_has(&mut sim, c, "a"), [address("w1")]);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["a"]),
        },
    );
    assert!(get_requests(&sim.recv(liar)).is_empty());
    assert_eq!(get_requests(&sim.recv(w1)).len(), 1);
}

#[test]
fn add_keys_for_a_dependency_the_worker_was_sent_to_fetch_makes_it_a_holder() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let w2 = sim.worker("w2", &["f"], 1);
    let c = a_on_w1_and_b_on(&mut sim, w1, "w2");
    let got = sim.recv(w2);
    assert_eq!(compute_keys(&got), ["b"]);
    sim.send(
        w2,
        AddKeys {
            nbytes: [(Key::from("a"), 1)].into(),
        },
    );
    assert!(freed(&sim.recv(w2)).is_empty());
    assert_eq!(who_has(&mut sim, c, "a"), [address("w1"), address("w2")]);
    // The permit is used up: once w2's copy is gone, announcing it again
    // is refused.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["b"]),
        },
    );
    sim.send(
        w2,
        MissingData {
            key: "a".into(),
            addresses: vec![address("w2")],
            task: "b".into(),
        },
    );
    assert!(freed(&sim.recv(w2)).contains(&"a"));
    assert_eq!(who_has(&mut sim, c, "a"), [address("w1")]);
    sim.send(
        w2,
        AddKeys {
            nbytes: [(Key::from("a"), 1)].into(),
        },
    );
    assert!(freed(&sim.recv(w2)).contains(&"a"));
    assert_eq!(who_has(&mut sim, c, "a"), [address("w1")]);
}

#[test]
fn a_key_that_leaves_memory_takes_the_fetch_permits_with_it() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let w2 = sim.worker("w2", &["f"], 1);
    let c = a_on_w1_and_b_on(&mut sim, w1, "w2");
    assert_eq!(compute_keys(&sim.recv(w2)), ["b"]);
    // w1 dies before w2 fetched a: a is computed again (w2 is the only
    // worker left), and w2's announcement of the old copy is refused.
    sim.close(w1);
    assert_eq!(sim.state("a"), Some("processing"));
    sim.send(
        w2,
        AddKeys {
            nbytes: [(Key::from("a"), 1)].into(),
        },
    );
    assert!(freed(&sim.recv(w2)).contains(&"a"));
    assert_eq!(sim.state("a"), Some("processing"));
    sim.recv(c);
}

#[test]
fn missing_data_naming_another_holder_is_checked_with_that_holder() {
    // The second step: the liar (given b, so sent to fetch a)
    // claims w1 lacks a. Before the fix w1's copy was freed at once.
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let liar = sim.worker("liar", &["f"], 1);
    let c = a_on_w1_and_b_on(&mut sim, w1, "liar");
    assert_eq!(compute_keys(&sim.recv(liar)), ["b"]);
    sim.send(
        liar,
        MissingData {
            key: "a".into(),
            addresses: vec![address("w1")],
            task: "b".into(),
        },
    );
    let got = sim.recv(w1);
    assert!(freed(&got).is_empty(), "w1's copy is kept: {got:?}");
    let [check] = &get_requests(&got)[..] else {
        panic!("one get-data asks w1: {got:?}")
    };
    assert_eq!(check.keys, keys(&["a"]));
    // b waits for the answer rather than going round again.
    assert!(sim.recv(liar).is_empty());
    assert_eq!(sim.state("b"), Some("processing"));
    let request = check.request;
    sim.send(
        w1,
        Data {
            request,
            data: [(Key::from("a"), raw(Value::from(42)))].into(),
            missing: vec![],
        },
    );
    assert_eq!(sim.state("a"), Some("memory"));
    assert_eq!(who_has(&mut sim, c, "a"), [address("w1")]);
    let got = sim.recv(liar);
    assert_eq!(compute_keys(&got), ["b"], "b is placed again");
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w1")]);
    assert!(sim.recv(w1).is_empty(), "nothing is recomputed");
}

/// `a` on w1, `b` given to w2, which says w1 lacks `a`.
fn w2_says_w1_lacks_a() -> (Sim, ConnId, ConnId) {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let w2 = sim.worker("w2", &["f"], 1);
    a_on_w1_and_b_on(&mut sim, w1, "w2");
    sim.recv(w2);
    sim.send(
        w2,
        MissingData {
            key: "a".into(),
            addresses: vec![address("w1")],
            task: "b".into(),
        },
    );
    (sim, w1, w2)
}

#[test]
fn a_holder_that_confirms_the_key_missing_loses_its_replica() {
    let (mut sim, w1, w2) = w2_says_w1_lacks_a();
    let got = sim.recv(w1);
    let request = get_requests(&got)[0].request;
    sim.send(
        w1,
        Data {
            request,
            data: BTreeMap::new(),
            missing: keys(&["a"]),
        },
    );
    // a had no other holder: it is computed again, then b.
    let got = sim.recv(w1);
    assert!(freed(&got).contains(&"a"));
    let mut computed = compute_keys(&got);
    let on_w2 = sim.recv(w2);
    computed.extend(compute_keys(&on_w2));
    assert_eq!(computed, ["a"]);
    assert_eq!(sim.state("b"), Some("waiting"));
}

#[test]
fn a_checked_holder_that_leaves_lets_the_task_go_again() {
    let (mut sim, w1, w2) = w2_says_w1_lacks_a();
    sim.recv(w1);
    sim.close(w1);
    // a went with w1: computed again on w2 (b waits for it).
    assert_eq!(compute_keys(&sim.recv(w2)), ["a"]);
    assert_eq!(sim.state("b"), Some("waiting"));
}

#[test]
fn a_worker_reporting_its_own_copy_lost_is_believed_at_once() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let w2 = sim.worker("w2", &["f"], 1);
    a_on_w1_and_b_on(&mut sim, w1, "w1");
    assert_eq!(compute_keys(&sim.recv(w1)), ["b"]);
    sim.send(
        w1,
        MissingData {
            key: "a".into(),
            addresses: vec![address("w1")],
            task: "b".into(),
        },
    );
    let got = sim.recv(w1);
    assert!(get_requests(&got).is_empty());
    assert!(freed(&got).contains(&"a"));
    let mut computed = compute_keys(&got);
    let on_w2 = sim.recv(w2);
    computed.extend(compute_keys(&on_w2));
    assert_eq!(computed, ["a"]);
}
