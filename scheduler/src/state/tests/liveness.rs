//! Peers are judged on time the scheduler ran (issue 20 item 1): a stall
//! of the loop (the process or the whole machine paused) does not count
//! against workers or handshakes, and a worker declared dead is asked to
//! register again rather than exit.

use super::*;
use dask_core::log::{Level, LogRecord};

fn stall_logs(sim: &mut Sim) -> Vec<LogRecord> {
    std::iter::from_fn(|| sim.s.poll_log())
        .filter(|r| r.event == "loop-stalled")
        .collect()
}

fn close_of(messages: &[Message]) -> &Close {
    match messages {
        [Message::Close(close)] => close,
        other => panic!("expected one close, got {other:?}"),
    }
}

#[test]
fn a_stall_of_the_whole_machine_does_not_kill_the_workers() {
    // The machine stops for 12 s with the scheduler and its workers on it:
    // no heartbeat waits when the scheduler runs again. Before the fix
    // both workers were declared dead at once and their work lost.
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let w2 = sim.worker("w2", &["f"], 1);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
    assert_eq!(compute_keys(&sim.recv(w1)), ["a"]);
    sim.advance(Duration::from_secs(3));
    sim.stall(Duration::from_secs(12));
    assert!(!sim.is_closed(w1) && !sim.is_closed(w2));
    let [record] = &stall_logs(&mut sim)[..] else {
        panic!("one loop-stalled record")
    };
    assert_eq!(record.level, Level::Warn);
    // The workers run again and beat: nothing was lost.
    sim.send(w1, Heartbeat { metrics: None });
    sim.send(w2, Heartbeat { metrics: None });
    sim.advance(Duration::from_secs(5));
    sim.finish(w1, "a", 1);
    assert_eq!(finished(&sim.recv(c)), ["a"]);
    assert_eq!(sim.s.worker_count(), 2);
}

#[test]
fn a_worker_silent_after_a_stall_is_declared_dead_once_the_scheduler_ran_its_timeout() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    sim.advance(Duration::from_secs(4));
    sim.stall(Duration::from_secs(30));
    // The heartbeat timeout (10 s) starts again at the end of the stall.
    sim.advance(Duration::from_millis(9_900));
    assert!(!sim.is_closed(w));
    sim.advance(Duration::from_millis(200));
    assert!(sim.is_closed(w));
}

#[test]
fn a_late_wakeup_within_a_heartbeat_interval_is_not_a_stall() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    // The deadline is 10 s; the loop wakes 0.9 s late: w is dead.
    sim.stall(Duration::from_millis(10_900));
    assert!(sim.is_closed(w));
    assert!(stall_logs(&mut sim).is_empty());
}

#[test]
fn a_connection_waiting_for_its_hello_gets_the_stall_too() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.advance(Duration::from_secs(2));
    sim.stall(Duration::from_secs(60));
    assert!(!sim.is_closed(c));
    sim.send(c, handshake::offer(Role::Client, None));
    assert!(matches!(&sim.recv(c)[..], [Message::Hello(_)]));
}

#[test]
fn a_worker_declared_dead_is_told_to_register_again() {
    let (mut sim, w1, _w2, _c) = Sim::with_a_running_on_w1_and_w1_gone_silent();
    assert!(sim.is_closed(w1));
    assert_eq!(close_of(&sim.recv(w1)).reconnect, Some(true));
}

#[test]
fn a_dask_1_0_worker_declared_dead_gets_a_plain_close() {
    let mut sim = Sim::new();
    let w = sim.connect();
    let mut hello = handshake::offer(Role::Worker, Some("old".into()));
    hello.version = Version { major: 1, minor: 0 };
    sim.send(w, hello);
    sim.send(
        w,
        RegisterWorker {
            name: "old".into(),
            address: address("old"),
            nthreads: 1,
            memory_limit: None,
            resources: None,
            functions: vec![],
            pid: None,
            held: None,
        },
    );
    sim.recv(w);
    sim.advance(Duration::from_secs(11));
    assert!(sim.is_closed(w));
    assert_eq!(close_of(&sim.recv(w)).reconnect, None);
}

#[test]
fn a_scheduler_shutting_down_says_a_final_close() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    sim.s.handle_shutdown(sim.now);
    sim.pump();
    assert_eq!(close_of(&sim.recv(w)).reconnect, None);
}

/// A heartbeat of a worker paused on a full spill disk.
fn stuck_heartbeat() -> Heartbeat {
    Heartbeat {
        metrics: Some(Metrics {
            executing: 0,
            ready: 0,
            stored_keys: 1,
            stored_bytes: 1 << 20,
            spilled_bytes: Some(4 << 20),
            paused: Some(true),
            spill_error: Some("No space left on device (os error 28)".into()),
            transfer_us: None,
            transfer_bytes: None,
            transfer_local_bytes: None,
        }),
    }
}

fn spill_failed(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::KeyErred(e) if e.error_type == "SpillFailed" => Some(e.key.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stall_does_not_count_against_a_stuck_workers_wait_for_spill_failed() {
    // The scheduler ran 4 s of the lone worker's 10 s wait, then did not
    // run for 60 s: the wait starts again, as heartbeats' do, so other
    // workers have time to be heard or join. Before the fix the tasks
    // erred as the scheduler woke.
    let mut sim = Sim::new();
    let w = sim.worker("w1", &["f"], 1);
    let c = sim.client();
    sim.send(w, stuck_heartbeat());
    sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
    sim.advance(Duration::from_secs(4));
    sim.stall(Duration::from_secs(60));
    sim.send(w, stuck_heartbeat());
    let got = sim.recv(c);
    assert!(spill_failed(&got).is_empty(), "erred as it woke: {got:?}");
    for _ in 0..9 {
        sim.advance(Duration::from_secs(1));
        sim.send(w, stuck_heartbeat());
    }
    let got = sim.recv(c);
    assert!(spill_failed(&got).is_empty(), "erred early: {got:?}");
    for _ in 0..2 {
        sim.advance(Duration::from_secs(1));
        sim.send(w, stuck_heartbeat());
    }
    assert_eq!(spill_failed(&sim.recv(c)), ["a"], "the wait ends");
}
