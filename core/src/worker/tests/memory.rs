//! Memory: spill, read back, pause.

use super::*;

/// What a [`TestStore`] holds and did, shared with the test.
#[derive(Debug, Default)]
struct TestStoreState {
    entries: BTreeMap<Key, RawValue>,
    /// Keys put, in order.
    puts: Vec<Key>,
    fail_puts: bool,
    fail_gets: bool,
}

/// A spill store the test can look into and make fail.
#[derive(Debug, Clone, Default)]
struct TestStore(Arc<std::sync::Mutex<TestStoreState>>);

impl TestStore {
    fn with<R>(&self, f: impl FnOnce(&mut TestStoreState) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
    fn keys(&self) -> Vec<String> {
        self.with(|s| s.entries.keys().map(|k| k.to_string()).collect())
    }
    fn puts(&self) -> Vec<String> {
        self.with(|s| s.puts.iter().map(|k| k.to_string()).collect())
    }
}

impl SpillStore for TestStore {
    fn put(&mut self, key: &Key, value: &RawValue) -> Result<(), String> {
        self.with(|s| {
            if s.fail_puts {
                return Err("disk full".into());
            }
            assert!(
                s.entries.insert(key.clone(), value.clone()).is_none(),
                "{key} put twice"
            );
            s.puts.push(key.clone());
            Ok(())
        })
    }
    fn get(&mut self, key: &Key) -> Result<RawValue, String> {
        self.with(|s| {
            if s.fail_gets {
                return Err("bad sector".into());
            }
            s.entries.get(key).cloned().ok_or_else(|| "gone".into())
        })
    }
    fn remove(&mut self, key: &Key) {
        self.with(|s| s.entries.remove(key));
    }
}

/// One thread, no dispatch-ahead, a limit of 1000 bytes (target 600,
/// pause 800 unless changed) and a [`TestStore`].
fn spilling_worker(target: Option<f64>, pause: Option<f64>) -> (WorkerState, TestStore, Timestamp) {
    let (w, now) = worker(1);
    let mut config = w.config.clone();
    config.memory_limit = Some(1000);
    config.memory_target_fraction = target;
    config.memory_pause_fraction = pause;
    let store = TestStore::default();
    let w = WorkerState::new(config, now).with_spill_store(Box::new(store.clone()));
    (register(w, now), store, now)
}

/// A value whose encoding is exactly `nbytes` long (2..=257), byte
/// `fill` repeated.
fn blob(nbytes: usize, fill: u8) -> RawValue {
    let value = raw(Value::Binary(vec![fill; nbytes - 2]));
    assert_eq!(value.as_bytes().len(), nbytes);
    value
}

fn put(w: &mut WorkerState, now: Timestamp, key: &str, value: RawValue) {
    w.handle_scheduler_message(
        now,
        Message::PutData(PutData {
            request: 0,
            data: [(Key::from(key), value)].into_iter().collect(),
        }),
    );
    let _ = drain(w);
}

/// Memory and spilled bytes add up to what the heartbeat reports, and
/// the store holds exactly the spilled keys.
fn assert_accounting(w: &WorkerState, store: &TestStore) {
    if let Some(mismatch) = accounting_mismatch(w, store) {
        panic!("{mismatch}");
    }
}

/// What is off in the memory accounting, if anything.
fn accounting_mismatch(w: &WorkerState, store: &TestStore) -> Option<String> {
    let usage = w.memory();
    let metrics = w.metrics();
    let in_memory: u64 = w
        .data
        .values()
        .filter(|h| h.value.is_some())
        .map(|h| h.nbytes)
        .sum();
    let mut spilled: Vec<String> = w
        .data
        .iter()
        .filter(|(_, h)| h.value.is_none())
        .map(|(k, _)| k.to_string())
        .collect();
    spilled.sort();
    let lru_len = if w.spilling() { usage.memory_keys } else { 0 };
    [
        (
            usage.memory_bytes + usage.spilled_bytes == metrics.stored_bytes,
            "memory + spilled bytes are not the stored bytes",
        ),
        (
            usage.memory_keys + usage.spilled_keys == metrics.stored_keys,
            "memory + spilled keys are not the stored keys",
        ),
        (
            usage.memory_bytes == in_memory,
            "memory bytes are not the values' sum",
        ),
        (
            store.keys() == spilled,
            "the store does not hold the spilled keys",
        ),
        (
            usage.spilled_keys as usize == spilled.len(),
            "spilled keys miscounted",
        ),
        (
            w.lru.len() as u64 == lru_len,
            "the LRU order is not the values in memory",
        ),
    ]
    .into_iter()
    .find(|(ok, _)| !ok)
    .map(|(_, what)| format!("{what}: {usage:?}, {metrics:?}"))
}

/// a, b, c, d of 200 bytes each, in that order: 800 bytes, so a (the
/// least recently used) is spilled under the 600-byte target.
fn put_abcd(w: &mut WorkerState, now: Timestamp) {
    for (key, fill) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
        put(w, now, key, blob(200, fill));
    }
}

/// A peer's get-data of `keys`, and what the worker does about it.
fn peer_get(w: &mut WorkerState, now: Timestamp, request: u64, keys: &[&str]) -> Vec<WorkerOutput> {
    let peer = incoming(w, now);
    let keys = keys.iter().map(|k| Key::from(*k)).collect();
    w.handle_message(now, peer, Message::GetData(GetData { request, keys }));
    drain(w)
}

fn get_data(w: &mut WorkerState, now: Timestamp, keys: &[&str]) -> Data {
    w.handle_scheduler_message(
        now,
        Message::GetData(GetData {
            request: 5,
            keys: keys.iter().map(|k| Key::from(*k)).collect(),
        }),
    );
    let out = drain(w);
    match to_scheduler(&out)[..] {
        [Message::Data(d)] => d.clone(),
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn values_past_the_target_are_spilled_least_recently_used_first() {
    let (mut w, store, now) = spilling_worker(Some(0.6), None);
    for key in ["a", "b", "c", "d", "e", "f"] {
        put(&mut w, now, key, blob(100, 1));
    }
    assert!(
        store.puts().is_empty(),
        "600 bytes is the target, not over it"
    );
    // Using a makes b the least recently used.
    get_data(&mut w, now, &["a"]);
    put(&mut w, now, "g", blob(100, 2));
    assert_eq!(store.puts(), vec!["b"]);
    put(&mut w, now, "h", blob(250, 3));
    assert_eq!(store.puts(), vec!["b", "c", "d", "e"]);
    let usage = w.memory();
    assert!(usage.memory_bytes <= 600, "{usage:?}");
    assert_eq!((usage.memory_bytes, usage.spilled_bytes), (550, 400));
    assert_eq!((usage.spill_writes, usage.spill_write_bytes), (4, 400));
    assert!(w.is_spilled("b") && !w.is_spilled("a") && w.holds("b"));
    assert_eq!(w.value("b"), None, "value() is in-memory only");
    assert_accounting(&w, &store);
    // A value over the target alone goes out at once.
    put(&mut w, now, "huge", blob(257, 4));
    assert!(w.is_spilled("huge") || w.memory().memory_bytes <= 600);
    assert_accounting(&w, &store);
    // Replacing a spilled value drops its spill entry.
    put(&mut w, now, "b", blob(10, 5));
    assert!(!w.is_spilled("b"));
    assert_accounting(&w, &store);
}

#[test]
fn no_limit_or_no_target_means_no_spilling() {
    let (w, _) = worker(1);
    let store = TestStore::default();
    let w = WorkerState::new(w.config.clone(), Timestamp::ZERO)
        .with_spill_store(Box::new(store.clone()));
    let mut w = register(w, Timestamp::ZERO);
    let now = Timestamp::ZERO;
    for i in 0..20 {
        put(&mut w, now, &format!("k{i}"), blob(200, 0));
    }
    assert!(store.puts().is_empty());
    assert!(w.lru.is_empty(), "no LRU bookkeeping without a limit");

    let (mut w, store, now) = spilling_worker(None, None);
    for i in 0..20 {
        put(&mut w, now, &format!("k{i}"), blob(200, 0));
    }
    assert!(store.puts().is_empty());
    assert_eq!(w.memory().memory_bytes, 4000);
    assert!(!w.memory().paused);
}

#[test]
fn a_spilled_dependency_is_read_back_into_memory_as_most_recent() {
    let (mut w, store, now) = spilling_worker(Some(0.6), None);
    let r = task_ref_value;
    put_abcd(&mut w, now);
    assert_eq!(store.puts(), vec!["a"]);
    w.handle_scheduler_message(now, compute("t", vec![r("a")], &[("a", &[ME])]));
    let out = drain(&mut w);
    assert!(to_scheduler(&out).is_empty(), "{out:?}");
    let job = jobs(out).remove(0);
    assert_eq!(job.deps[0].1.as_bytes(), blob(200, 1).as_bytes());
    assert!(!w.is_spilled("a"), "back in memory");
    // a is held by the job; b, the least recently used, went out.
    assert_eq!(store.puts(), vec!["a", "b"]);
    assert_eq!(w.memory().spill_reads, 1);
    assert_accounting(&w, &store);
    drop(job);
    w.handle_task_done(now, done(0, Value::from(1)));
    let out = drain(&mut w);
    assert!(matches!(to_scheduler(&out)[..], [Message::TaskFinished(_)]));
    // The 1-byte result tips memory over: c, the least recently used,
    // goes; then d. a was used after both and stays.
    assert_eq!(store.puts(), vec!["a", "b", "c"]);
    put(&mut w, now, "e", blob(200, 5));
    assert_eq!(store.puts(), vec!["a", "b", "c", "d"]);
    assert!(!w.is_spilled("a"));
    assert_accounting(&w, &store);
}

#[test]
fn get_data_of_a_spilled_key_reads_it_and_leaves_it_spilled() {
    let (mut w, store, now) = spilling_worker(Some(0.6), None);
    put_abcd(&mut w, now);
    let d = get_data(&mut w, now, &["a", "b", "nope"]);
    assert_eq!(d.data[&Key::from("a")].as_bytes(), blob(200, 1).as_bytes());
    assert_eq!(d.data[&Key::from("b")].as_bytes(), blob(200, 2).as_bytes());
    assert_eq!(d.missing, vec![Key::from("nope")]);
    assert!(w.is_spilled("a"));
    let out = peer_get(&mut w, now, 1, &["a"]);
    assert!(matches!(
        &out[..],
        [WorkerOutput::Send(_, Message::Data(d))] if d.data.len() == 1
    ));
    assert!(w.is_spilled("a"));
    assert_eq!(w.memory().spill_reads, 2);
    assert_accounting(&w, &store);
}

#[test]
fn freeing_a_spilled_key_removes_its_spill_entry() {
    let (mut w, store, now) = spilling_worker(Some(0.6), None);
    put_abcd(&mut w, now);
    assert_eq!(store.keys(), vec!["a"]);
    let out = free(&mut w, now, &["a", "b"]);
    assert_eq!(logs(&out), ["spilling ended: no value is spilled any more"]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(store.keys().is_empty());
    assert!(!w.holds("a"));
    assert_eq!(w.memory().spilled_bytes, 0);
    assert_eq!(w.memory().memory_bytes, 400);
    assert_accounting(&w, &store);
}

#[test]
fn a_failed_write_keeps_the_value_in_memory_and_is_retried_later() {
    let (mut w, store, now) = spilling_worker(Some(0.6), None);
    store.with(|s| s.fail_puts = true);
    put_abcd(&mut w, now);
    let usage = w.memory();
    assert_eq!((usage.memory_bytes, usage.spilled_bytes), (800, 0));
    assert_eq!(usage.spill_write_failures, 1, "one try, then a pause");
    assert!(usage.last_spill_error.unwrap().contains("disk full"));
    assert_eq!(w.value("a").unwrap().as_bytes(), blob(200, 1).as_bytes());
    let retry = now + SPILL_RETRY_DELAY;
    assert_eq!(w.poll_timeout(), Some(retry));
    store.with(|s| s.fail_puts = false);
    w.handle_timeout(retry.checked_sub(Duration::from_millis(1)).unwrap());
    assert!(drain(&mut w).is_empty());
    assert!(store.puts().is_empty(), "not before the retry delay");
    w.handle_timeout(retry);
    let out = drain(&mut w);
    assert_eq!(
        logs(&out),
        [
            "spilling began: memory went over the target of 600 bytes (memory limit 1000); \
             least recently used values go to the spill store",
            "spilling works again"
        ]
    );
    let told = heartbeats(&out);
    assert_eq!(told.len(), 1, "the failure's end is told at once");
    assert_eq!(
        (told[0].spill_error.as_deref(), told[0].spilled_bytes),
        (None, Some(200))
    );
    // a failed first and was moved to the back: b goes instead.
    assert_eq!(store.puts(), vec!["b"]);
    assert!(!w.is_spilled("a"));
    assert_eq!(w.memory().memory_bytes, 600);
    assert_eq!(w.poll_timeout(), None);
    assert_accounting(&w, &store);
}

#[test]
fn a_failed_read_for_get_data_reports_the_key_missing_and_drops_it() {
    let (mut w, store, now) = spilling_worker(Some(0.6), None);
    put_abcd(&mut w, now);
    store.with(|s| s.fail_gets = true);
    let d = get_data(&mut w, now, &["a", "b"]);
    assert_eq!(d.missing, vec![Key::from("a")]);
    assert_eq!(d.data.keys().collect::<Vec<_>>(), vec![&Key::from("b")]);
    assert!(!w.holds("a"), "lost here");
    let usage = w.memory();
    assert_eq!(usage.spill_read_failures, 1);
    assert!(usage.last_spill_error.unwrap().contains("bad sector"));
    assert_accounting(&w, &store);
    // A peer asking later is told it is missing too.
    let out = peer_get(&mut w, now, 2, &["a"]);
    assert!(matches!(
        &out[..],
        [WorkerOutput::Send(_, Message::Data(d))] if d.missing == vec![Key::from("a")]
    ));
}

#[test]
fn a_failed_read_of_a_dependency_is_fetched_elsewhere_or_reported_missing() {
    let (mut w, store, now) = spilling_worker(Some(0.6), None);
    let r = task_ref_value;
    put_abcd(&mut w, now);
    store.with(|s| s.fail_gets = true);
    // Listed only here: given back with missing-data naming this worker.
    w.handle_scheduler_message(now, compute("t", vec![r("a")], &[("a", &[ME])]));
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::MissingData(MissingData {
            key: "a".into(),
            addresses: vec![ME.into()],
            task: "t".into(),
        })]
    );
    assert!(jobs(out).is_empty());
    assert!(!w.holds("a"));
    assert_accounting(&w, &store);

    // Listed on a peer (not here, e.g. a replica announced after the
    // compute-task was sent): fetched from the peer, and a missing-data
    // would name this worker as well.
    put(&mut w, now, "e", blob(200, 5));
    put(&mut w, now, "f", blob(200, 6));
    assert!(w.is_spilled("b"));
    w.handle_scheduler_message(now, compute("u", vec![r("b")], &[("b", &[PEER_A])]));
    let out = drain(&mut w);
    let sent = fetches(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, PEER_A);
    w.handle_peer_reply(now, PEER_A, data_reply(sent[0].1.request, &[], &["b"]));
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::MissingData(MissingData {
            key: "b".into(),
            addresses: vec![ME.into(), PEER_A.into()],
            task: "u".into(),
        })]
    );
    assert_eq!(w.memory().spill_read_failures, 2);
    assert_accounting(&w, &store);
}

#[test]
fn past_the_pause_no_task_starts_until_memory_is_freed() {
    // No spilling: only freeing brings memory down.
    let (mut w, store, now) = spilling_worker(None, Some(0.8));
    let r = task_ref_value;
    put(&mut w, now, "big", blob(250, 1));
    put(&mut w, now, "big2", blob(250, 2));
    put(&mut w, now, "big3", blob(250, 3));
    assert!(!w.memory().paused, "750 is under the pause at 800");
    put(&mut w, now, "big4", blob(100, 4));
    assert!(w.memory().paused);
    assert_eq!(w.memory().pauses, 1);
    w.handle_scheduler_message(now, compute("t", vec![], &[]));
    w.handle_scheduler_message(now, compute("u", vec![r("far")], &[("far", &[PEER_A])]));
    let out = drain(&mut w);
    assert!(jobs(out).is_empty(), "paused: nothing starts");
    assert_eq!(w.metrics().ready, 2);
    // Paused, it still serves data and stores what it is given.
    assert_eq!(get_data(&mut w, now, &["big"]).data.len(), 1);
    put(&mut w, now, "small", blob(10, 5));
    // Heartbeat ticks change nothing while memory stays up.
    w.handle_timeout(now + Duration::from_secs(5));
    assert!(drain(&mut w).is_empty());
    w.handle_scheduler_message(
        now,
        Message::FreeKeys(FreeKeys {
            keys: ["big"].into(),
        }),
    );
    let out = drain(&mut w);
    assert!(!w.memory().paused, "resumed under the pause");
    assert_eq!(fetches(&out).len(), 1, "the fetch goes out on resume");
    let started: Vec<String> = jobs(out).iter().map(|j| job_key(&w, j)).collect();
    assert_eq!(started, vec!["t"]);
    assert!(store.puts().is_empty());
}

#[test]
fn values_held_by_running_jobs_are_not_spilled_and_can_pause_the_worker() {
    let (mut w, store, now) = spilling_worker(Some(0.6), Some(0.8));
    let r = task_ref_value;
    // 900 bytes in all, over the target: spilled as they come.
    for (key, fill) in [("x", 1), ("y", 2), ("z", 3)] {
        put(&mut w, now, key, blob(250, fill));
    }
    put(&mut w, now, "w", blob(150, 4));
    assert_eq!(store.puts(), vec!["x", "y"]);
    // One task needs all four: read back, held by the job, 900 bytes in
    // memory that nothing can spill: paused.
    w.handle_scheduler_message(
        now,
        compute(
            "all",
            vec![r("x"), r("y"), r("z"), r("w")],
            &[("x", &[ME]), ("y", &[ME]), ("z", &[ME]), ("w", &[ME])],
        ),
    );
    let job = jobs(drain(&mut w)).remove(0);
    assert_eq!(job.deps.len(), 4);
    let usage = w.memory();
    assert_eq!((usage.memory_bytes, usage.spilled_bytes), (900, 0));
    assert!(usage.paused);
    w.handle_scheduler_message(now, compute("next", vec![], &[]));
    assert!(jobs(drain(&mut w)).is_empty(), "paused");
    assert_accounting(&w, &store);
    // The job ends and lets go of its values: they spill, and the
    // worker resumes.
    drop(job);
    w.handle_task_done(now, done(0, Value::from(0)));
    let out = drain(&mut w);
    let started: Vec<String> = jobs(out).iter().map(|j| job_key(&w, j)).collect();
    assert_eq!(started, vec!["next"]);
    let usage = w.memory();
    assert!(!usage.paused);
    assert!(usage.memory_bytes <= 600, "{usage:?}");
    assert_eq!(usage.pauses, 1);
    assert_accounting(&w, &store);
}

mod properties;

/// The lines logged among `out`.
fn logs(out: &[WorkerOutput]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            WorkerOutput::Log(record) => Some(record.message.clone()),
            _ => None,
        })
        .collect()
}

/// The metrics of the heartbeats among `out`.
fn heartbeats(out: &[WorkerOutput]) -> Vec<Metrics> {
    to_scheduler(out)
        .into_iter()
        .filter_map(|m| match m {
            Message::Heartbeat(h) => h.metrics.clone(),
            _ => None,
        })
        .collect()
}

/// Frees `keys` (free-keys) and returns what came out.
fn free(w: &mut WorkerState, now: Timestamp, keys: &[&str]) -> Vec<WorkerOutput> {
    let keys = keys.iter().copied().collect();
    w.handle_scheduler_message(now, Message::FreeKeys(FreeKeys { keys }));
    drain(w)
}

/// Puts `key` and returns what came out.
fn put_out(w: &mut WorkerState, now: Timestamp, key: &str, value: RawValue) -> Vec<WorkerOutput> {
    w.handle_scheduler_message(
        now,
        Message::PutData(PutData {
            request: 0,
            data: [(Key::from(key), value)].into_iter().collect(),
        }),
    );
    drain(w)
}

#[test]
fn a_failing_store_and_the_pause_are_told_at_once_and_logged_once_each() {
    let (mut w, store, now) = spilling_worker(Some(0.6), Some(0.8));
    store.with(|s| s.fail_puts = true);
    for (key, fill) in [("a", 1), ("b", 2), ("c", 3)] {
        let out = put_out(&mut w, now, key, blob(200, fill));
        assert!(
            logs(&out).is_empty() && heartbeats(&out).is_empty(),
            "{out:?}"
        );
    }
    // 800 bytes: over the target, the write fails; not over the pause.
    let out = put_out(&mut w, now, "d", blob(200, 4));
    assert_eq!(
        logs(&out),
        ["spilling fails: disk full; values stay in memory"]
    );
    let told = heartbeats(&out);
    assert_eq!(told.len(), 1);
    assert_eq!(
        (
            told[0].paused,
            told[0].spill_error.as_deref(),
            told[0].spilled_bytes
        ),
        (Some(false), Some("disk full"), Some(0))
    );
    // 900: paused, and it cannot spill.
    let out = put_out(&mut w, now, "e", blob(100, 5));
    assert_eq!(
        logs(&out),
        [
            "paused: 900 bytes in memory are over the pause threshold of 800 bytes (memory limit \
          1000): no task starts and nothing is fetched until memory falls under it; it cannot \
          spill: disk full"
        ]
    );
    let told = heartbeats(&out);
    assert_eq!(told.len(), 1);
    assert_eq!(
        (told[0].paused, told[0].spill_error.as_deref()),
        (Some(true), Some("disk full"))
    );
    // Nothing new: nothing logged, nothing told before the next beat.
    let out = put_out(&mut w, now, "f", blob(10, 6));
    assert!(
        logs(&out).is_empty() && heartbeats(&out).is_empty(),
        "{out:?}"
    );
    // Room again: the retry spills b and c (a failed first and went to
    // the back; 910 -> 510), and it resumes.
    store.with(|s| s.fail_puts = false);
    let retry = now + SPILL_RETRY_DELAY;
    w.handle_timeout(retry);
    let out = drain(&mut w);
    assert_eq!(
        logs(&out),
        [
            "spilling began: memory went over the target of 600 bytes (memory limit 1000); \
             least recently used values go to the spill store",
            "spilling works again",
            "resumed: 510 bytes in memory, under the pause threshold of 800 bytes",
        ]
    );
    let told = heartbeats(&out);
    assert_eq!(told.len(), 1);
    assert_eq!(
        (
            told[0].paused,
            told[0].spill_error.as_deref(),
            told[0].spilled_bytes
        ),
        (Some(false), None, Some(400))
    );
    // Freed: nothing spilled any more.
    let out = free(&mut w, retry, &["b", "c"]);
    assert_eq!(logs(&out), ["spilling ended: no value is spilled any more"]);
    assert!(
        heartbeats(&out).is_empty(),
        "spilling alone waits for the next beat"
    );
    assert_accounting(&w, &store);
}

#[test]
fn a_worker_without_a_memory_limit_tells_nothing_of_spilling() {
    let (w, _) = worker(1);
    let m = w.metrics();
    assert_eq!(
        (m.spilled_bytes, m.paused, m.spill_error),
        (None, None, None)
    );
}

/// The `get-value-range` answer to the scheduler's ask.
fn value_range(
    w: &mut WorkerState,
    now: Timestamp,
    key: &str,
    offset: u64,
    bytes_max: u64,
) -> Message {
    w.handle_scheduler_message(
        now,
        Message::GetValueRange(GetValueRange {
            request: 9,
            key: Key::from(key),
            offset,
            bytes_max,
        }),
    );
    let out = drain(w);
    let replies = to_scheduler(&out);
    let [reply] = &replies[..] else {
        panic!("{out:?}")
    };
    (*reply).clone()
}

#[test]
fn a_value_range_is_a_slice_of_the_value_in_memory_or_read_back_alone_when_spilled() {
    let (mut w, store, now) = spilling_worker(Some(0.6), None);
    put_abcd(&mut w, now);
    assert!(w.is_spilled("a") && !w.is_spilled("d"));
    w.config.reply_message_bytes_max = 150;
    for key in ["a", "d"] {
        let whole = w.data.get(&Key::from(key)).map(|h| h.nbytes).expect("held");
        let expected = if key == "a" {
            blob(200, 1)
        } else {
            blob(200, 4)
        };
        let mut got = Vec::new();
        while (got.len() as u64) < whole {
            // More than a reply may hold is asked: a reply's worth comes.
            let Message::ValueRange(r) = value_range(&mut w, now, key, got.len() as u64, 1000)
            else {
                panic!("no range of {key}")
            };
            assert_eq!(
                (r.request, r.nbytes, r.offset),
                (9, whole, got.len() as u64)
            );
            assert!(!r.part.0.is_empty() && r.part.0.len() <= 150);
            got.extend_from_slice(&r.part.0);
        }
        assert_eq!(got, expected.as_bytes(), "{key}");
        // At or past the end: an empty part.
        let Message::ValueRange(r) = value_range(&mut w, now, key, whole + 5, 10) else {
            panic!("no range")
        };
        assert!(r.part.0.is_empty());
    }
    assert!(w.is_spilled("a"), "read back, left spilled");
    // A key not held is answered with data listing it missing.
    let Message::Data(d) = value_range(&mut w, now, "nope", 0, 10) else {
        panic!("no data")
    };
    assert_eq!((d.request, d.missing.clone()), (9, vec![Key::from("nope")]));
    assert_accounting(&w, &store);
}
