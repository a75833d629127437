//! Random inputs to a spilling worker with a tiny limit: the
//! accounting stays exact, memory is at or under the target unless
//! nothing can be spilled, and the pause follows memory.
use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Put { key: u8, size: u8 },
    Free { key: u8 },
    Compute { task: u8, deps: u8, here: bool },
    GetData { keys: u8 },
    PeerGet { keys: u8 },
    Done { which: u8, size: u8 },
    Answer { which: u8, missing: bool },
    FailPuts(bool),
    FailGets(bool),
    Tick { millis: u16 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..8u8, 2..250u8).prop_map(|(key, size)| Step::Put { key, size }),
        2 => (0..8u8).prop_map(|key| Step::Free { key }),
        5 => (0..4u8, any::<u8>(), any::<bool>())
            .prop_map(|(task, deps, here)| Step::Compute { task, deps, here }),
        2 => any::<u8>().prop_map(|keys| Step::GetData { keys }),
        2 => any::<u8>().prop_map(|keys| Step::PeerGet { keys }),
        5 => (any::<u8>(), 2..250u8).prop_map(|(which, size)| Step::Done { which, size }),
        3 => (any::<u8>(), any::<bool>())
            .prop_map(|(which, missing)| Step::Answer { which, missing }),
        1 => any::<bool>().prop_map(Step::FailPuts),
        1 => any::<bool>().prop_map(Step::FailGets),
        2 => (0..3000u16).prop_map(|millis| Step::Tick { millis }),
    ]
}

fn key(i: u8) -> String {
    format!("k{}", i % 8)
}

fn keys(mask: u8) -> Vec<Key> {
    (0..8)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| Key::from(key(i)))
        .collect()
}

struct Sim {
    w: WorkerState,
    store: TestStore,
    now: Timestamp,
    jobs: Vec<Job>,
    fetches: Vec<(String, GetData)>,
    /// A peer's connection, for its get-data.
    peer: ConnId,
}

impl Sim {
    fn drain(&mut self) {
        while let Some(out) = self.w.poll_output() {
            match out {
                WorkerOutput::Execute(job) => self.jobs.push(job),
                WorkerOutput::Send(conn, Message::GetData(request)) => {
                    if let Some(address) = self.w.holder_address(conn) {
                        self.fetches.push((address.to_string(), request))
                    }
                }
                WorkerOutput::Withdraw { run_id } => {
                    let at = self.jobs.iter().position(|j| j.run_id == run_id);
                    let withdrawn = at.is_some();
                    if let Some(at) = at {
                        drop(self.jobs.remove(at));
                    }
                    self.w.handle_withdrawn(self.now, run_id, withdrawn);
                }
                _ => {}
            }
        }
    }

    fn play(&mut self, step: &Step) {
        let now = self.now;
        match step {
            Step::Put { key: k, size } => {
                self.w.handle_scheduler_message(
                    now,
                    Message::PutData(PutData {
                        request: 0,
                        data: [(Key::from(key(*k)), blob(*size as usize, *k))]
                            .into_iter()
                            .collect(),
                    }),
                );
            }
            Step::Free { key: k } => self.w.handle_scheduler_message(
                now,
                Message::FreeKeys(FreeKeys {
                    keys: vec![Key::from(key(*k))].into(),
                }),
            ),
            Step::Compute { task, deps, here } => {
                let deps = keys(*deps);
                let holder: &[&str] = if *here { &[ME] } else { &[PEER_A] };
                let who_has: Vec<(&str, &[&str])> =
                    deps.iter().map(|k| (k.as_str(), holder)).collect();
                let args = deps.iter().map(|k| task_ref_value(k.as_str())).collect();
                self.w
                    .handle_scheduler_message(now, compute(&format!("t{task}"), args, &who_has));
            }
            Step::GetData { keys: mask } => self.w.handle_scheduler_message(
                now,
                Message::GetData(GetData {
                    request: 1,
                    keys: keys(*mask),
                }),
            ),
            Step::PeerGet { keys: mask } => {
                let get = GetData {
                    request: 1,
                    keys: keys(*mask),
                };
                self.w.handle_message(now, self.peer, Message::GetData(get));
                self.w.handle_drained(now, self.peer);
            }
            Step::Done { which, size } => {
                if !self.jobs.is_empty() {
                    let job = self.jobs.remove(*which as usize % self.jobs.len());
                    let run_id = job.run_id;
                    drop(job);
                    self.w.handle_task_done(
                        now,
                        TaskDone {
                            run_id,
                            result: Ok(blob(*size as usize, 9)),
                            duration_us: 1,
                        },
                    );
                }
            }
            Step::Answer { which, missing } => {
                if !self.fetches.is_empty() {
                    let (address, request) =
                        self.fetches.remove(*which as usize % self.fetches.len());
                    let data = if *missing {
                        BTreeMap::new()
                    } else {
                        request
                            .keys
                            .iter()
                            .map(|k| (k.clone(), blob(50, 7)))
                            .collect()
                    };
                    let missing = if *missing {
                        request.keys.clone()
                    } else {
                        Vec::new()
                    };
                    self.w.handle_peer_reply(
                        now,
                        &address,
                        Message::Data(Data {
                            request: request.request,
                            data,
                            missing,
                        }),
                    );
                }
            }
            Step::FailPuts(fail) => self.store.with(|s| s.fail_puts = *fail),
            Step::FailGets(fail) => self.store.with(|s| s.fail_gets = *fail),
            Step::Tick { millis } => {
                self.now += Duration::from_millis(u64::from(*millis));
                self.w.handle_timeout(self.now);
            }
        }
        self.drain();
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let w = &self.w;
        let usage = w.memory();
        if let Some(mismatch) = accounting_mismatch(w, &self.store) {
            return Err(TestCaseError::fail(mismatch));
        }
        // Over the target only when nothing more can be spilled.
        if usage.memory_bytes > 600 && w.spill_retry_at.is_none() {
            let spillable = w
                .data
                .values()
                .filter_map(|h| h.value.as_ref())
                .any(|v| Arc::strong_count(v) == 1);
            prop_assert!(!spillable, "{usage:?}");
        }
        prop_assert_eq!(usage.paused, usage.memory_bytes > 800);
        prop_assert!(w.running() <= 1);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_keep_memory_accounting_exact(
        steps in proptest::collection::vec(step(), 1..120)
    ) {
        let (mut w, store, now) = spilling_worker(Some(0.6), Some(0.8));
        let peer = incoming(&mut w, now);
        let mut sim = Sim { w, store, now, jobs: Vec::new(), fetches: Vec::new(), peer };
        for s in &steps {
            sim.play(s);
            sim.check()?;
        }
    }
}
