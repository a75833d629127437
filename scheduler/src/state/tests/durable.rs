//! The journal's records and a restore from them (issue 16): what a
//! client may rely on comes back in a new state, results held by workers
//! are adopted rather than computed again, and a snapshot replaces the
//! records it covers.

use super::*;
use crate::journal::record::{snapshot_records, JournalRecord, RecordKind};

fn journaling() -> Sim {
    Sim::with_config(SchedulerStateConfig {
        validate: true,
        journal: true,
        ..SchedulerStateConfig::default()
    })
}

/// A new scheduler restored from `sim`'s journal records (the old one
/// crashed: its connections are gone).
fn restart(sim: &Sim) -> Sim {
    let mut new = journaling();
    new.now = sim.now;
    new.s.set_now(sim.now);
    let summary = new.s.restore(None, &sim.journal).expect("restore");
    assert!(summary.records == sim.journal.len());
    new
}

fn restart_from_snapshot(sim: &Sim) -> Sim {
    let snapshot = sim.s.journal_snapshot();
    let mut new = journaling();
    new.now = sim.now;
    new.s.restore(Some(&snapshot), &[]).expect("restore");
    new
}

fn kinds(records: &[Vec<u8>]) -> Vec<RecordKind> {
    records
        .iter()
        .map(|r| JournalRecord::decode(r).expect("a record").kind)
        .collect()
}

/// Worker `name` registers again, listing `held` (dask/1.1).
fn worker_holding(sim: &mut Sim, name: &str, held: &[(&str, u64)]) -> ConnId {
    let held = held.iter().map(|&(k, n)| (Key::from(k), n)).collect();
    sim.worker_holding(name, &["inc"], 1, Some(held))
}

fn chain() -> Vec<TaskSpec> {
    vec![
        spec("x", "inc", vec![Value::from(1)]),
        spec("y", "inc", vec![r("x")]),
        spec("z", "inc", vec![r("y")]),
    ]
}

#[test]
fn every_change_a_client_relies_on_is_a_record_before_its_reply() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    sim.send(
        c,
        UpdateGraph {
            request: 1,
            tasks: chain(),
            wanted: keys(&["z"]),
            ack: Some(true),
        },
    );
    // The ok and the record come out of one event, the record first.
    assert_eq!(kinds(&sim.journal), [RecordKind::Graph]);
    assert!(matches!(&sim.recv(c)[..], [Message::OkReply(_)]));
    sim.finish(w, "x", 8);
    sim.finish(w, "y", 8);
    sim.fail(w, "z", "boom");
    sim.send(
        c,
        PublishDataset {
            request: 2,
            name: "d".into(),
            keys: keys(&["z"]),
            overwrite: None,
        },
    );
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["z"]),
        },
    );
    sim.send(
        c,
        UnpublishDataset {
            request: 3,
            name: "d".into(),
        },
    );
    sim.close(c);
    assert_eq!(
        kinds(&sim.journal),
        [
            RecordKind::Graph,
            RecordKind::Finished,
            RecordKind::Finished,
            RecordKind::Erred,
            RecordKind::Put,
            RecordKind::Release,
            RecordKind::Delete,
            RecordKind::Gone,
        ]
    );
    let JournalRecord {
        holders, message, ..
    } = JournalRecord::decode(&sim.journal[1]).unwrap();
    assert_eq!(holders, ["w1"]);
    assert!(matches!(message, Message::TaskFinished(f) if f.key.as_str() == "x" && f.nbytes == 8));
}

#[test]
fn without_the_journal_option_nothing_is_recorded() {
    let mut sim = Sim::new();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    sim.submit(c, 1, chain(), &["z"]);
    sim.finish(w, "x", 8);
    assert!(sim.journal.is_empty());
}

#[test]
fn a_restart_restores_graphs_wants_datasets_and_failures_and_adopts_held_results() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    sim.submit(c, 1, chain(), &["z"]);
    sim.submit(c, 2, vec![spec("bad", "inc", vec![])], &["bad"]);
    sim.send(
        c,
        PublishDataset {
            request: 3,
            name: "d".into(),
            keys: keys(&["y"]),
            overwrite: None,
        },
    );
    sim.finish(w, "x", 8);
    sim.finish(w, "y", 16);
    sim.fail(w, "bad", "no argument");
    assert_eq!(sim.state("z"), Some("processing"));

    // The scheduler dies; a new one reads the journal.
    let mut new = restart(&sim);
    assert_eq!(new.state("bad"), Some("erred"));
    assert_eq!(new.state("z"), Some("waiting"));
    assert_eq!(new.s.datasets.len(), 1);
    assert_eq!(
        new.s.durable.sessions.len(),
        1,
        "the client's session waits"
    );
    // The worker comes back holding y (x was freed): y is adopted, and z
    // is placed on it; x is not computed again.
    let w = worker_holding(&mut new, "w1", &[("y", 16), ("gone", 3)]);
    assert_eq!(new.state("y"), Some("memory"));
    let got = new.recv(w);
    assert_eq!(compute_keys(&got), ["z"]);
    assert_eq!(freed(&got), ["gone"], "a value of no known task is freed");
    assert_eq!(new.state("x"), Some("released"));
    new.finish(w, "z", 4);
    assert_eq!(new.state("z"), Some("memory"));
}

#[test]
fn a_client_that_comes_back_gets_its_futures_and_the_outcomes_it_missed() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    sim.submit(c, 1, chain(), &["z", "x"]);
    sim.finish(w, "x", 8);
    let session = sim.s.session_of(c).to_owned();
    assert_eq!(session.len(), 32);

    let mut new = restart(&sim);
    let w = worker_holding(&mut new, "w1", &[("x", 8)]);
    assert_eq!(compute_keys(&new.recv(w)), ["y"]);
    new.finish(w, "y", 8);
    new.finish(w, "z", 8);
    // Nobody was told: the session is detached. Its client comes back
    // (the handshake's part is in the reconnection stories).
    let c = ConnId(99);
    assert!(new.s.reattach(c, &session, true, false));
    assert!(!new.s.reattach(c, &session, true, false), "taken once");
    new.s.finish_event();
    new.pump();
    let got = new.recv(c);
    let mut done = finished(&got);
    done.sort();
    assert_eq!(done, ["x", "z"], "{got:?}");
}

#[test]
fn placement_waits_for_the_workers_the_journal_named_at_most_the_restore_wait() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    sim.submit(c, 1, chain(), &["z"]);
    sim.finish(w, "x", 8);
    let mut new = restart(&sim);
    // Another worker comes: it does not compute x again while w1 may come.
    let v = new.worker("w2", &["inc"], 1);
    assert!(compute_keys(&new.recv(v)).is_empty());
    new.advance(RESTORE_WORKER_WAIT_DEFAULT);
    assert_eq!(compute_keys(&new.recv(v)), ["x"], "w1 never came back");
}

#[test]
fn a_session_whose_client_does_not_come_back_ends_after_the_grace() {
    let mut sim = journaling();
    let c = sim.client();
    sim.submit(c, 1, chain(), &["z"]);
    let mut new = restart(&sim);
    assert_eq!(new.s.task_count(), 3);
    new.advance(CLIENT_GRACE_DEFAULT);
    assert_eq!(
        new.s.task_count(),
        0,
        "its wants ended: the graph is forgotten"
    );
    assert!(new.s.durable.sessions.is_empty());
}

#[test]
fn a_snapshot_restores_the_same_state_as_the_records_it_replaces() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    let d = sim.client();
    sim.submit(c, 1, chain(), &["z"]);
    sim.submit(
        d,
        7,
        vec![spec("bad", "inc", vec![]), spec("q", "inc", vec![r("bad")])],
        &["q", "y"],
    );
    sim.send(
        d,
        PublishDataset {
            request: 8,
            name: "d".into(),
            keys: keys(&["x"]),
            overwrite: None,
        },
    );
    sim.finish(w, "x", 8);
    sim.fail(w, "bad", "no argument");
    let from_records = restart(&sim);
    let from_snapshot = restart_from_snapshot(&sim);
    for key in ["x", "y", "z", "bad", "q"] {
        assert_eq!(from_records.state(key), from_snapshot.state(key), "{key}");
    }
    assert_eq!(from_snapshot.state("q"), Some("erred"));
    assert_eq!(from_snapshot.s.datasets.len(), 1);
    assert_eq!(from_snapshot.s.durable.sessions.len(), 2);
    let wants = |s: &Sim| {
        let mut w: Vec<(String, Vec<String>)> =
            s.s.clients
                .values()
                .map(|c| {
                    let mut keys: Vec<String> = c
                        .wants
                        .keys()
                        .map(|t| s.s.tasks[t].key().to_owned())
                        .collect();
                    keys.sort();
                    (c.session.clone(), keys)
                })
                .collect();
        w.sort();
        w
    };
    assert_eq!(wants(&from_records), wants(&from_snapshot));
    // A snapshot of a restored state keeps the results still awaited.
    let again = restart_from_snapshot(&from_snapshot);
    let mut again = again;
    let v = again.worker("w2", &["inc"], 1);
    assert!(compute_keys(&again.recv(v)).is_empty(), "w1 is awaited");
    worker_holding(&mut again, "w1", &[("x", 8)]);
    assert_eq!(again.state("x"), Some("memory"));
}

#[test]
fn a_snapshot_of_released_work_holds_only_what_is_live() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 4);
    let c = sim.client();
    for i in 0..200 {
        let k = format!("k-{i}");
        sim.submit(c, i, vec![spec(&k, "inc", vec![Value::from(i)])], &[&k]);
        sim.finish(w, &k, 8);
        sim.send(
            c,
            ReleaseKeys {
                keys: key_list(&[&k]),
            },
        );
    }
    sim.submit(c, 1000, chain(), &["z"]);
    let history: usize = sim.journal.iter().map(Vec::len).sum();
    let snapshot = sim.s.journal_snapshot();
    assert!(
        snapshot.len() * 20 < history,
        "snapshot {} bytes, history {history}",
        snapshot.len()
    );
    let records = snapshot_records(&snapshot).unwrap();
    assert!(records.len() < 10, "{} records", records.len());
    let new = restart_from_snapshot(&sim);
    assert_eq!(new.s.task_count(), 3);
}

#[test]
fn a_clean_shutdown_journals_no_session_as_gone() {
    let mut sim = journaling();
    let c = sim.client();
    sim.submit(c, 1, chain(), &["z"]);
    sim.s.handle_shutdown(sim.now);
    sim.pump();
    assert_eq!(kinds(&sim.journal), [RecordKind::Graph]);
    let new = restart(&sim);
    assert_eq!(new.s.durable.sessions.len(), 1);
}

#[test]
fn a_record_that_cannot_be_read_is_refused_naming_it() {
    let mut sim = journaling();
    let mut events = vec![JournalRecord::gone("s").encode()];
    events.push(b"\x94\xa5graph".to_vec());
    let e = sim.s.restore(None, &events).unwrap_err();
    assert!(e.starts_with("event record 2 after the snapshot"), "{e}");
}

/// A client that names `session` in its hello (to resume it): its
/// connection and everything it was sent.
fn resume(sim: &mut Sim, session: &str) -> (ConnId, Vec<Message>) {
    let c = sim.connect();
    let mut hello = handshake::offer(Role::Client, None);
    hello.features = Some(Vec::new());
    hello.session = Some(session.to_owned());
    sim.send(c, hello);
    let got = sim.recv(c);
    (c, got)
}

/// [`resume`]: the session token of the reply, and the keys it was told
/// finished.
fn client_resuming(sim: &mut Sim, session: &str) -> (ConnId, Option<String>, Vec<String>) {
    let (c, got) = resume(sim, session);
    let done = finished(&got).into_iter().map(str::to_owned).collect();
    match got.first() {
        Some(Message::Hello(h)) => (c, h.session.clone(), done),
        _ => panic!("{got:?}"),
    }
}

#[test]
fn a_session_in_use_cannot_be_taken_by_another_client_that_names_it() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 1);
    let owner = sim.client();
    sim.submit(owner, 1, chain(), &["z"]);
    let token = sim.s.session_of(owner).to_owned();
    // Another client (it holds the cluster's credentials) names the token
    // while its owner is connected: it gets a session of its own.
    let (thief, told, _) = client_resuming(&mut sim, &token);
    assert!(told.as_ref().is_some_and(|t| *t != token), "{told:?}");
    assert_eq!(sim.s.session_of(owner), token);
    for key in ["x", "y", "z"] {
        sim.finish(w, key, 8);
    }
    assert!(sim.recv(thief).is_empty(), "the thief hears nothing of it");
    assert_eq!(finished(&sim.recv(owner)), ["z"]);

    // After a restart the owner resumes first; a second claim is refused
    // the same way, and the owner keeps the outcomes.
    let mut new = restart(&sim);
    worker_holding(&mut new, "w1", &[("x", 8), ("y", 8), ("z", 8)]);
    let (back, told, done) = client_resuming(&mut new, &token);
    assert_eq!(told.as_deref(), Some(token.as_str()), "the owner resumes");
    assert_eq!(done, ["z"]);
    let (thief, told, done) = client_resuming(&mut new, &token);
    assert!(told.as_ref().is_some_and(|t| *t != token), "{told:?}");
    assert!(done.is_empty(), "the thief is told nothing: {done:?}");
    assert_eq!(new.s.session_of(back), token);
    assert!(new.recv(thief).is_empty());
}

/// SplitMix64's finalizer and its inverse: the token scheme before this
/// one, `mix(seed ^ mix(2n))`, let a client recover the seed from its own
/// token and compute everyone else's.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unsplitmix(z: u64) -> u64 {
    let unshift = |y: u64, s: u32| (0..64 / s + 1).fold(y, |x, _| y ^ (x >> s));
    // Inverse of an odd multiplier mod 2^64 by Newton's iteration.
    let inverse = |a: u64| {
        (0..6).fold(a, |x, _| {
            x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)))
        })
    };
    let mut x = unshift(z, 31);
    x = unshift(x.wrapping_mul(inverse(0x94D0_49BB_1331_11EB)), 27);
    x = unshift(x.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9)), 30);
    x.wrapping_sub(0x9E37_79B9_7F4A_7C15)
}

#[test]
fn a_client_cannot_compute_another_clients_token_from_its_own() {
    assert_eq!(unsplitmix(splitmix(12345)), 12345, "the attack's inverse");
    let mut sim = Sim::with_config(SchedulerStateConfig {
        journal: true,
        session_seed: [7; 32],
        ..SchedulerStateConfig::default()
    });
    let mine = sim.client();
    let other = sim.client();
    let mine = sim.s.session_of(mine).to_owned();
    let other = sim.s.session_of(other).to_owned();
    assert_eq!(mine.len(), 32);
    // The attack on the old scheme: recover the seed from the first half
    // of one's own token at each plausible count, predict the next token.
    let a = u64::from_str_radix(&mine[..16], 16).unwrap();
    for n in 0..64u64 {
        let seed = unsplitmix(a) ^ splitmix(2 * n);
        let predicted = format!("{:016x}", splitmix(seed ^ splitmix(2 * (n + 1))));
        assert_ne!(
            predicted,
            other[..16],
            "the token of session {} was predicted",
            n + 1
        );
    }
    // Another key, other tokens.
    let mut elsewhere = Sim::with_config(SchedulerStateConfig {
        journal: true,
        session_seed: [8; 32],
        ..SchedulerStateConfig::default()
    });
    let c = elsewhere.client();
    assert_ne!(elsewhere.s.session_of(c), mine);
}

#[test]
fn retries_used_and_workers_lost_before_a_crash_still_count_after_it() {
    let mut sim = journaling();
    let c = sim.client();
    let mut flaky = spec("flaky", "f", vec![]);
    flaky.retries = Some(2);
    sim.submit(
        c,
        1,
        vec![flaky, spec("poison", "f", vec![])],
        &["flaky", "poison"],
    );
    // flaky fails once (a retry used); poison's worker is lost twice.
    let w = sim.worker("w0", &["f"], 2);
    assert_eq!(compute_keys(&sim.recv(w)).len(), 2);
    sim.fail(w, "flaky", "boom");
    sim.close(w);
    let w = sim.worker("w1", &["f"], 2);
    assert_eq!(compute_keys(&sim.recv(w)).len(), 2);
    sim.close(w);
    let snapshot = sim.s.journal_snapshot();
    let token = sim.s.session_of(c).to_owned();

    for (how, mut new) in [
        ("records", restart(&sim)),
        ("snapshot", {
            let mut new = journaling();
            new.now = sim.now;
            new.s.restore(Some(&snapshot), &[]).expect("restore");
            new
        }),
    ] {
        // One retry left for flaky: one more failure is retried, the next
        // is final. One more lost worker for poison is allowed (3), the
        // next errs it with KilledWorker.
        for round in 0..2 {
            let w = new.worker(&format!("v{round}"), &["f"], 2);
            let mut computing = compute_keys(&new.recv(w))
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            computing.sort();
            assert_eq!(computing, ["flaky", "poison"], "{how}, round {round}");
            new.fail(w, "flaky", "boom again");
            new.close(w);
        }
        // The client comes back and hears the outcomes.
        let (_, got) = resume(&mut new, &token);
        let mut erred: Vec<(&str, &str)> = got
            .iter()
            .filter_map(|m| match m {
                Message::KeyErred(e) => Some((e.key.as_str(), e.error_type.as_str())),
                _ => None,
            })
            .collect();
        erred.sort();
        assert_eq!(
            erred,
            [("flaky", "ValueError"), ("poison", "KilledWorker")],
            "{how}: {got:?}"
        );
    }
}

/// Client `c` scatters `key` to worker `w`, which stores it.
fn scatter_to(sim: &mut Sim, c: ConnId, w: ConnId, key: &str) {
    sim.send(
        c,
        Scatter {
            request: 7,
            data: [(Key::from(key), raw(Value::from(41)))].into(),
            workers: None,
            broadcast: None,
            ack: None,
        },
    );
    let got = sim.recv(w);
    let [Message::PutData(put)] = &got[..] else {
        panic!("{got:?}")
    };
    sim.send(
        w,
        DataStored {
            request: put.request,
            nbytes: [(Key::from(key), 3)].into(),
        },
    );
    assert_eq!(finished(&sim.recv(c)), [key]);
}

#[test]
fn a_graph_on_scattered_data_is_restored_and_the_data_adopted_from_its_worker() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    scatter_to(&mut sim, c, w, "d");
    sim.submit(c, 1, vec![spec("t", "inc", vec![r("d")])], &["t"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["t"]);
    let token = sim.s.session_of(c).to_owned();
    let snapshot = sim.s.journal_snapshot();

    for (how, mut new) in [
        ("records", restart(&sim)),
        ("snapshot", {
            let mut new = journaling();
            new.now = sim.now;
            new.s.restore(Some(&snapshot), &[]).expect("restore");
            new
        }),
    ] {
        assert_eq!(new.state("d"), Some("memory"), "{how}");
        assert!(new.state("t").is_some(), "{how}: the graph is back");
        // Another worker does not run t while w1, which holds d, may come.
        let v = new.worker("w2", &["inc"], 1);
        assert!(compute_keys(&new.recv(v)).is_empty(), "{how}");
        let w = worker_holding(&mut new, "w1", &[("d", 3)]);
        let (on_w, on_v) = (new.recv(w), new.recv(v));
        let on = match (&compute_keys(&on_w)[..], &compute_keys(&on_v)[..]) {
            (["t"], []) => w,
            ([], ["t"]) => v,
            placed => panic!("{how}: {placed:?}"),
        };
        new.finish(on, "t", 8);
        // The client comes back for both its keys.
        let (_, got) = resume(&mut new, &token);
        let mut done = finished(&got);
        done.sort();
        assert_eq!(done, ["d", "t"], "{how}: {got:?}");
    }
}

#[test]
fn scattered_data_whose_worker_never_comes_back_is_lost_after_the_restore_wait() {
    let mut sim = journaling();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    scatter_to(&mut sim, c, w, "d");
    sim.submit(c, 1, vec![spec("t", "inc", vec![r("d")])], &["t"]);
    let token = sim.s.session_of(c).to_owned();
    let mut new = restart(&sim);
    let v = new.worker("w2", &["inc"], 1);
    new.advance(RESTORE_WORKER_WAIT_DEFAULT);
    assert!(compute_keys(&new.recv(v)).is_empty(), "t cannot run");
    // Its client comes back and hears that both keys are lost.
    let (_, got) = resume(&mut new, &token);
    let mut lost: Vec<&str> = got
        .iter()
        .filter_map(|m| match m {
            Message::KeyLost(l) => Some(l.key.as_str()),
            _ => None,
        })
        .collect();
    lost.sort();
    assert_eq!(lost, ["d", "t"], "{got:?}");
    assert_eq!(new.s.task_count(), 0, "told once, then forgotten");
}
