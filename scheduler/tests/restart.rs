//! The scheduler survives its own crash (issue 16), on a virtual clock:
//! the real scheduler and worker state machines wired by
//! `dask_testkit::sim::Sim`, the scheduler killed at a moment each seed
//! picks and started again from the journal records it emitted. The
//! client gets every result, exact, without submitting again, and no task
//! whose result a surviving worker held runs twice. Each story runs under
//! several seeds; `DASK_SIM_SEED=N` replays one.

use std::collections::BTreeMap;
use std::time::Duration;

use dask_core::messages::TaskSpec;
use dask_core::{Key, Message};
use dask_scheduler::{SchedulerState, SchedulerStateConfig};
use dask_testkit::sim::{run_seeds, Sim};
use dask_testkit::Rng;

const SEEDS: u64 = 12;
const LIMIT: Duration = Duration::from_secs(120);

/// A tree reduction: `inc(i)` leaves, `add` pairwise, the root `sum`
/// (= leaves * (leaves + 1) / 2).
fn tree(leaves: usize) -> Vec<TaskSpec> {
    tree_named("", leaves)
}

/// [`tree`] with every key prefixed by `prefix`.
fn tree_named(prefix: &str, leaves: usize) -> Vec<TaskSpec> {
    dask_testkit::graphs::tree_reduction(prefix, leaves)
}

/// Workers that register again after losing the scheduler, a journaling
/// scheduler, and a client.
fn cluster(seed: u64, workers: usize) -> Sim {
    let mut sim = Sim::new(seed);
    sim.scheduler = SchedulerState::new(
        SchedulerStateConfig {
            validate: true,
            journal: true,
            ..SchedulerStateConfig::default()
        },
        sim.now,
    );
    for _ in 0..workers {
        sim.add_worker(2, |c| c.reconnect_timeout = Duration::from_secs(60));
    }
    assert!(
        sim.run_until(|s| s.scheduler.worker_count() == workers, LIMIT),
        "seed {seed}: the workers did not register"
    );
    sim.add_client();
    sim.set_job_duration(|job| match job.function.as_str() {
        "inc" => Duration::from_millis(10),
        _ => Duration::from_millis(2),
    });
    sim
}

/// How many times each key's job started, over every worker.
fn runs(sim: &Sim) -> BTreeMap<Key, usize> {
    let mut runs = BTreeMap::new();
    for w in &sim.workers {
        for key in &w.started {
            *runs.entry(key.clone()).or_insert(0) += 1;
        }
    }
    runs
}

fn running(sim: &Sim) -> usize {
    sim.workers.iter().map(|w| w.running().count()).sum()
}

#[test]
fn a_crash_in_the_middle_of_a_tree_loses_no_result_and_runs_no_held_result_again() {
    run_seeds(SEEDS, |seed| {
        let leaves = 400;
        let mut sim = cluster(seed, 3);
        let tasks = tree(leaves);
        let n = tasks.len();
        sim.submit(0, tasks, &["sum"]);
        // Kill it somewhere between a tenth and nine tenths of the way.
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let at = n / 10 + (rng.next_u64() as usize) % (n * 8 / 10);
        assert!(
            sim.run_until(|s| runs(s).len() >= at, LIMIT),
            "seed {seed}: the tree did not get going"
        );
        let in_flight = running(&sim);
        sim.crash_scheduler();
        sim.reconnect_client(0);
        assert!(
            sim.run_until(|s| s.finished_key(0, "sum"), LIMIT),
            "seed {seed}: the root never finished after the restart"
        );
        let data = sim.gather(0, &["sum"], LIMIT);
        let sum = data[&Key::from("sum")].to_value().unwrap();
        assert_eq!(sum.as_u64(), Some((leaves * (leaves + 1) / 2) as u64));
        let runs = runs(&sim);
        let again: Vec<&Key> = runs
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(k, _)| k)
            .collect();
        // Only what was running when the scheduler died runs again (its
        // run was dropped with the scheduler); held results are adopted.
        assert!(
            again.len() <= in_flight,
            "seed {seed}: {} tasks ran again, {in_flight} were running at the crash: {again:?}",
            again.len()
        );
        assert_eq!(runs.len(), n, "seed {seed}: every task ran");
    });
}

#[test]
fn crashes_at_random_moments_in_a_loop_of_small_graphs_lose_nothing() {
    run_seeds(4, |seed| {
        let mut sim = cluster(seed, 2);
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let mut expected: Vec<(String, u64)> = Vec::new();
        for round in 0..6 {
            let leaves = 8 + (rng.next_u64() % 24) as usize;
            let tasks = tree_named(&format!("r{round}-"), leaves);
            let root = format!("r{round}-sum");
            sim.submit(0, tasks, &[&root]);
            expected.push((root, (leaves * (leaves + 1) / 2) as u64));
            // Let the submission and a few results out, then maybe crash.
            let steps = rng.next_u64() % 40;
            for _ in 0..steps {
                sim.step();
            }
            if rng.chance(50) {
                sim.crash_scheduler();
                sim.reconnect_client(0);
            }
        }
        for (root, value) in &expected {
            assert!(
                sim.run_until(|s| s.finished_key(0, root), LIMIT),
                "seed {seed}: {root} never finished"
            );
            let data = sim.gather(0, &[root], LIMIT);
            assert_eq!(
                data[&Key::from(root.as_str())].to_value().unwrap().as_u64(),
                Some(*value),
                "seed {seed}: {root}"
            );
        }
    });
}

#[test]
fn a_client_that_does_not_name_its_session_starts_a_new_one() {
    run_seeds(2, |seed| {
        let mut sim = cluster(seed, 1);
        sim.submit(0, tree(4), &["sum"]);
        sim.drive();
        sim.crash_scheduler();
        let session_before = sim.clients[0].received.iter().find_map(|m| match m {
            Message::Hello(h) => h.session.clone(),
            _ => None,
        });
        assert!(
            session_before.is_some(),
            "a journaling scheduler gives a session"
        );
        // A second client (no session named) gets a session of its own and
        // none of the first one's keys.
        let other = sim.add_client();
        let hello = sim.clients[other].received.iter().find_map(|m| match m {
            Message::Hello(h) => h.session.clone(),
            _ => None,
        });
        assert!(
            hello.is_some() && hello != session_before,
            "{hello:?} {session_before:?} {:?}",
            sim.clients[other].received
        );
        sim.reconnect_client(0);
        assert!(
            sim.run_until(|s| s.finished_key(0, "sum"), LIMIT),
            "seed {seed}"
        );
        assert!(!sim.finished_key(other, "sum"));
    });
}

/// Moves what `session` sends to client 0 of `sim` (but its hellos: the
/// simulated client says its own) and hands it what client 0 received
/// since `seen`.
fn pump(sim: &mut Sim, session: &mut dask_core::client::ClientSession, seen: &mut usize) {
    while let Some(m) = session.poll_transmit() {
        if !matches!(m, Message::Hello(_)) {
            sim.client_send(0, m);
        }
    }
    let received = sim.clients[0].received[*seen..].to_vec();
    *seen += received.len();
    for m in received {
        session.handle_message(m);
    }
}

#[test]
fn a_graph_sent_in_parts_and_cut_by_a_crash_is_completed_once_after_the_resume() {
    use dask_core::client::{ClientSession, KeyState};
    run_seeds(SEEDS, |seed| {
        let leaves = 128;
        let mut sim = cluster(seed, 2);
        let mut session = ClientSession::new(None, 1);
        session.set_resumable(true);
        let mut seen = 0;
        // Its hello: the simulated client said its own, and got a session.
        pump(&mut sim, &mut session, &mut seen);
        assert!(session.session_token().is_some(), "seed {seed}");
        session.set_submit_part_bytes(1500);
        let tasks = tree(leaves);
        let n = tasks.len();
        let keys: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
        session.submit(tasks, vec![Key::from("sum")]);
        let sent: Vec<Message> = std::iter::from_fn(|| session.poll_transmit()).collect();
        let parts: Vec<u64> = sent
            .iter()
            .filter_map(|m| match m {
                Message::UpdateGraph(g) => Some(g.request),
                _ => None,
            })
            .collect();
        assert!(parts.len() >= 4, "seed {seed}: {} parts", parts.len());
        // The scheduler reads the first `k` messages (parts, then the
        // release) and runs a while; the rest dies with it.
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let k = (rng.next_u64() as usize) % (sent.len() + 1);
        for m in sent.into_iter().take(k) {
            sim.client_send(0, m);
        }
        for _ in 0..rng.next_u64() % 30 {
            sim.step();
            pump(&mut sim, &mut session, &mut seen);
        }
        let acknowledged: Vec<u64> = sim.clients[0].received[..seen]
            .iter()
            .filter_map(|m| match m {
                Message::OkReply(ok) if parts.contains(&ok.request) => Some(ok.request),
                _ => None,
            })
            .collect();
        let in_flight = running(&sim);
        sim.crash_scheduler();
        session.handle_close("the scheduler was killed");
        assert!(session.wants_reconnect(), "seed {seed}");
        session.resume(None);
        // The new connection (its hello said by the simulated client).
        sim.reconnect_client(0);
        let again: Vec<u64> = std::iter::from_fn(|| session.poll_transmit())
            .filter_map(|m| {
                let request = match &m {
                    Message::UpdateGraph(g) => Some(g.request),
                    _ => None,
                };
                if !matches!(m, Message::Hello(_)) {
                    sim.client_send(0, m);
                }
                request
            })
            .collect();
        // No acknowledged part goes again, and every other one does.
        let last_ok = acknowledged.iter().max().copied().unwrap_or(0);
        let expected: Vec<u64> = parts.iter().copied().filter(|p| *p > last_ok).collect();
        assert_eq!(
            again, expected,
            "seed {seed}: acknowledged {acknowledged:?}"
        );
        let done = |s: &mut Sim, session: &mut ClientSession, seen: &mut usize| {
            for _ in 0..100_000 {
                pump(s, session, seen);
                if matches!(session.key_state("sum"), Some(KeyState::Finished { .. })) {
                    return true;
                }
                if !s.step() && !s.advance(s.now + LIMIT) {
                    return false;
                }
            }
            false
        };
        assert!(
            done(&mut sim, &mut session, &mut seen),
            "seed {seed}: the root never finished: {:?}",
            session.key_state("sum")
        );
        sim.drive();
        let data = sim.gather(0, &["sum"], LIMIT);
        let sum = data[&Key::from("sum")].to_value().unwrap();
        assert_eq!(sum.as_u64(), Some((leaves * (leaves + 1) / 2) as u64));
        // Every task ran, and only what was running at the crash again.
        let runs = runs(&sim);
        assert_eq!(runs.len(), n, "seed {seed}: every task ran");
        let twice = runs.values().filter(|&&r| r > 1).count();
        assert!(twice <= in_flight, "seed {seed}: {twice} ran again");
        // The keys wanted only so later parts could refer to them were
        // released, the release sent again if the crash may have lost it:
        // nothing but the root is kept.
        pump(&mut sim, &mut session, &mut seen);
        sim.drive();
        for k in keys.iter().filter(|k| k.as_str() != "sum") {
            let state = sim.scheduler.task_state(k.as_str());
            assert!(
                matches!(state, None | Some("released")),
                "seed {seed}: {k} is {state:?}"
            );
        }
    });
}
