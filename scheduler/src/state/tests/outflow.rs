//! Gathers of clients that do not read (issue 20 item 3): a client's
//! gathers are answered one at a time, none starts while its connection
//! is backlogged, and large ones wait while all output is over the total
//! bound; small ones and other clients go on.

use super::*;
use crate::state::outflow::{CLIENT_OUTPUT_BYTES_MAX, GATHERS_HELD_BYTES_MAX, GATHER_SMALL_BYTES};

const LARGE: u64 = 50_000_000;

/// `big` (`nbytes` LARGE) and `small` (1 byte) in memory on one worker.
fn cluster(sim: &mut Sim) -> (ConnId, ConnId) {
    let c = sim.client();
    let w = sim.worker("w1", &["f"], 2);
    sim.submit(
        c,
        1,
        vec![spec("big", "f", vec![]), spec("small", "f", vec![])],
        &["big", "small"],
    );
    let got = sim.recv(w);
    assert_eq!(compute_keys(&got).len(), 2, "{got:?}");
    sim.finish(w, "big", LARGE);
    sim.finish(w, "small", 1);
    sim.recv(c);
    (c, w)
}

fn gather(sim: &mut Sim, c: ConnId, request: u64, key: &str) {
    sim.send(
        c,
        Gather {
            request,
            keys: keys(&[key]),
        },
    );
}

/// The get-data requests sent to `w` since the last look.
fn gets(sim: &mut Sim, w: ConnId) -> Vec<u64> {
    sim.recv(w)
        .iter()
        .filter_map(|m| match m {
            Message::GetData(g) => Some(g.request),
            _ => None,
        })
        .collect()
}

fn answer(sim: &mut Sim, w: ConnId, request: u64, key: &str) {
    sim.send(
        w,
        Data {
            request,
            data: [(Key::from(key), raw(Value::from(1)))].into(),
            missing: vec![],
        },
    );
}

fn replies(sim: &mut Sim, c: ConnId) -> Vec<u64> {
    sim.recv(c)
        .iter()
        .filter_map(|m| match m {
            Message::GatherReply(g) => Some(g.request),
            _ => None,
        })
        .collect()
}

#[test]
fn a_clients_gathers_are_answered_one_at_a_time_in_order() {
    let mut sim = Sim::new();
    let (c, w) = cluster(&mut sim);
    for request in 10..13 {
        gather(&mut sim, c, request, "big");
    }
    let first = gets(&mut sim, w);
    assert_eq!(first.len(), 1, "only the first gather asks the worker");
    assert_eq!(sim.s.gathers_waiting(), 2);
    answer(&mut sim, w, first[0], "big");
    assert_eq!(replies(&mut sim, c), vec![10]);
    let second = gets(&mut sim, w);
    assert_eq!(second.len(), 1, "the next one starts once it is answered");
    answer(&mut sim, w, second[0], "big");
    assert_eq!(replies(&mut sim, c), vec![11]);
    let third = gets(&mut sim, w);
    answer(&mut sim, w, third[0], "big");
    assert_eq!(replies(&mut sim, c), vec![12]);
    assert_eq!(sim.s.gathers_waiting(), 0);
}

/// `c` gathered `key` once and was answered: what waits for it is
/// watched from now on.
fn gathered_once(sim: &mut Sim, c: ConnId, w: ConnId, key: &str) {
    gather(sim, c, 100, key);
    let got = gets(sim, w);
    answer(sim, w, got[0], key);
    assert_eq!(replies(sim, c), vec![100]);
    assert!(sim.s.clients_with_output().any(|x| x == c));
}

fn report(sim: &mut Sim, c: ConnId, bytes: u64) {
    sim.s.handle_output_queued(sim.now, &[(c, bytes)]);
    sim.pump();
}

#[test]
fn no_gather_starts_while_its_client_leaves_output_unread_and_others_go_on() {
    let mut sim = Sim::new();
    let (slow, w) = cluster(&mut sim);
    let other = sim.client();
    gathered_once(&mut sim, slow, w, "small");
    report(&mut sim, slow, CLIENT_OUTPUT_BYTES_MAX + 1);
    gather(&mut sim, slow, 1, "small");
    assert_eq!(
        gets(&mut sim, w),
        Vec::<u64>::new(),
        "the slow reader waits"
    );
    gather(&mut sim, other, 2, "big");
    let got = gets(&mut sim, w);
    assert_eq!(got.len(), 1, "another client is served");
    answer(&mut sim, w, got[0], "big");
    assert_eq!(replies(&mut sim, other), vec![2]);
    // It read down to the bound: its gather goes.
    report(&mut sim, slow, CLIENT_OUTPUT_BYTES_MAX);
    let got = gets(&mut sim, w);
    assert_eq!(got.len(), 1);
    answer(&mut sim, w, got[0], "small");
    assert_eq!(replies(&mut sim, slow), vec![1]);
    // All of it written: no longer watched.
    report(&mut sim, slow, 0);
    assert!(!sim.s.clients_with_output().any(|x| x == slow));
}

#[test]
fn large_gathers_wait_while_too_much_is_held_and_small_ones_go() {
    let mut sim = Sim::new();
    let (slow, w) = cluster(&mut sim);
    let (c, other) = (sim.client(), sim.client());
    gathered_once(&mut sim, slow, w, "small");
    report(&mut sim, slow, GATHERS_HELD_BYTES_MAX - LARGE / 2);
    gather(&mut sim, c, 1, "big");
    assert_eq!(gets(&mut sim, w), Vec::<u64>::new(), "a large gather waits");
    gather(&mut sim, other, 2, "small");
    let got = gets(&mut sim, w);
    assert_eq!(
        got.len(),
        1,
        "a small one goes ({GATHER_SMALL_BYTES} bytes at most)"
    );
    answer(&mut sim, w, got[0], "small");
    assert_eq!(replies(&mut sim, other), vec![2]);
    report(&mut sim, slow, 0);
    let got = gets(&mut sim, w);
    assert_eq!(got.len(), 1, "the large one goes once the slow reader read");
    answer(&mut sim, w, got[0], "big");
    assert_eq!(replies(&mut sim, c), vec![1]);
}

#[test]
fn a_client_that_leaves_takes_its_waiting_gathers_with_it() {
    let mut sim = Sim::new();
    let (c, w) = cluster(&mut sim);
    let slow = sim.client();
    for request in 1..5 {
        gather(&mut sim, slow, request, "small");
    }
    let got = gets(&mut sim, w);
    assert_eq!(got.len(), 1);
    sim.close(slow);
    assert_eq!(sim.s.gathers_waiting(), 0);
    // The answer to its gather in progress goes nowhere; others go on.
    answer(&mut sim, w, got[0], "small");
    gather(&mut sim, c, 9, "small");
    let got = gets(&mut sim, w);
    answer(&mut sim, w, got[0], "small");
    assert_eq!(replies(&mut sim, c), vec![9]);
}
