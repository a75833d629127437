//! Seeded random stories: clients submit, release, cancel, scatter,
//! gather and publish; model workers compute, fail, fetch, miss data, give
//! up tasks, store scattered data late, and die. `validate()` runs after every event. Then the cluster
//! heals (one reliable worker that offers everything) and the story must
//! end well: every want got its event, and once everything is released the
//! scheduler knows no task and no worker holds any data.
//!
//! A failure names its seed; `CHAOS_SEED=n cargo test chaos` replays it.

use std::collections::{BTreeMap, BTreeSet};

use dask_testkit::Rng;

use super::*;

/// A worker as the test plays it.
struct ModelWorker {
    conn: ConnId,
    address: String,
    functions: Vec<String>,
    /// Tasks assigned and not yet answered: key -> who_has.
    assigned: BTreeMap<Key, BTreeMap<Key, Vec<String>>>,
    data: BTreeSet<Key>,
    /// `put-data` not answered yet (a slow worker).
    held_puts: Vec<PutData>,
    /// Always computes, never fails or misbehaves (the healing phase).
    reliable: bool,
}

/// A client as the test plays it.
struct ModelClient {
    conn: ConnId,
    /// Wanted keys that have had no event yet.
    pending: BTreeSet<Key>,
    /// Wanted keys (any state), to pick releases from.
    wanted: BTreeSet<Key>,
    next_request: u64,
}

struct Chaos {
    sim: Sim,
    rng: Rng,
    workers: Vec<ModelWorker>,
    clients: Vec<ModelClient>,
    worker_serial: usize,
    seed: u64,
}

const KEY_POOL: usize = 24;
const FUNCTIONS: [&str; 2] = ["f", "g"];
/// Offered only by the reliable worker of the healing phase.
const RARE_FUNCTION: &str = "other";

impl Chaos {
    fn new(seed: u64) -> Chaos {
        let mut c = Chaos {
            sim: Sim::new(),
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            workers: Vec::new(),
            clients: Vec::new(),
            worker_serial: 0,
            seed,
        };
        for _ in 0..2 {
            c.add_client();
        }
        c.add_worker(false);
        c
    }

    fn add_client(&mut self) {
        let conn = self.sim.client();
        self.clients.push(ModelClient {
            conn,
            pending: BTreeSet::new(),
            wanted: BTreeSet::new(),
            next_request: 1,
        });
    }

    fn add_worker(&mut self, reliable: bool) {
        self.worker_serial += 1;
        let name = format!("w{}", self.worker_serial);
        let functions: Vec<String> = if reliable {
            FUNCTIONS
                .iter()
                .chain([&RARE_FUNCTION])
                .map(|f| f.to_string())
                .collect()
        } else {
            FUNCTIONS
                .iter()
                .filter(|_| self.rng.chance(70))
                .map(|f| f.to_string())
                .collect()
        };
        let nthreads = if reliable {
            4
        } else {
            1 + self.rng.below(2) as u32
        };
        let names: Vec<&str> = functions.iter().map(|s| s.as_str()).collect();
        let conn = self.sim.worker(&name, &names, nthreads);
        self.workers.push(ModelWorker {
            conn,
            address: address(&name),
            functions,
            assigned: BTreeMap::new(),
            data: BTreeSet::new(),
            held_puts: Vec::new(),
            reliable,
        });
        self.deliver();
    }

    fn key(&mut self) -> Key {
        Key::from(format!("k{}", self.rng.below(KEY_POOL)))
    }

    /// Hands every message to the model peers, until nothing moves.
    fn deliver(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.workers.len() {
                let conn = self.workers[i].conn;
                let mail = self.sim.recv(conn);
                moved |= !mail.is_empty();
                for m in mail {
                    self.worker_gets(i, m);
                }
            }
            for i in 0..self.clients.len() {
                let conn = self.clients[i].conn;
                for m in self.sim.recv(conn) {
                    self.client_gets(i, m);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("seed {}: messages never settle", self.seed);
    }

    fn worker_gets(&mut self, i: usize, m: Message) {
        let conn = self.workers[i].conn;
        match m {
            Message::ComputeTask(t) => {
                let w = &mut self.workers[i];
                assert!(
                    w.functions.contains(&t.function),
                    "seed {}: {} got {} it does not offer",
                    self.seed,
                    w.address,
                    t.function
                );
                w.assigned.insert(t.key, t.who_has);
            }
            Message::FreeKeys(f) => {
                let w = &mut self.workers[i];
                for k in f.keys.iter() {
                    w.assigned.remove(k);
                    w.data.remove(k);
                }
            }
            Message::PutData(p) => {
                if !self.workers[i].reliable && self.rng.chance(30) {
                    self.workers[i].held_puts.push(p);
                } else {
                    self.store(i, p);
                }
            }
            Message::GetData(g) => {
                let w = &self.workers[i];
                let (have, missing): (Vec<Key>, Vec<Key>) =
                    g.keys.into_iter().partition(|k| w.data.contains(k));
                let data = have.into_iter().map(|k| (k, raw(Value::from(1)))).collect();
                if !w.reliable && self.rng.chance(10) {
                    self.sim.send(conn, Busy { request: g.request });
                } else {
                    self.sim.send(
                        conn,
                        Data {
                            request: g.request,
                            data,
                            missing,
                        },
                    );
                }
            }
            Message::StealRequest(s) => {
                let stolen =
                    self.rng.chance(50) && self.workers[i].assigned.remove(&s.key).is_some();
                self.sim.send(conn, StealResponse { key: s.key, stolen });
            }
            Message::Close(_) => {}
            other => panic!("seed {}: a worker got {other:?}", self.seed),
        }
    }

    /// Worker `i` stores a put's values and says so.
    fn store(&mut self, i: usize, p: PutData) {
        let w = &mut self.workers[i];
        let nbytes = p.data.keys().map(|k| (k.clone(), 1)).collect();
        w.data.extend(p.data.into_keys());
        let conn = w.conn;
        self.sim.send(
            conn,
            DataStored {
                request: p.request,
                nbytes,
            },
        );
    }

    fn client_gets(&mut self, i: usize, m: Message) {
        let c = &mut self.clients[i];
        match m {
            // key-erred does not end the want: the key is released later
            // like a finished one.
            Message::KeyFinished(KeyFinished { key, .. })
            | Message::KeyErred(KeyErred { key, .. }) => {
                c.pending.remove(&key);
            }
            Message::KeyCancelled(KeyCancelled { key, .. })
            | Message::KeyLost(KeyLost { key, .. }) => {
                c.pending.remove(&key);
                c.wanted.remove(&key);
            }
            // Why a wanted key waits: it stays pending.
            Message::KeyWaiting(KeyWaiting { key, .. }) => {
                assert!(
                    c.wanted.contains(&key),
                    "seed {}: key-waiting for {key}, which the client does not want",
                    self.seed
                );
            }
            Message::ErrorReport(e) => {
                assert!(
                    !e.fatal,
                    "seed {}: fatal error to a client: {e:?}",
                    self.seed
                );
            }
            Message::Dataset(d) => {
                for k in d.keys {
                    // Each gets its event right after this reply or later.
                    c.pending.insert(k.clone());
                    c.wanted.insert(k);
                }
            }
            Message::GatherReply(_)
            | Message::WhoHasReply(_)
            | Message::ClusterInfoReply(_)
            | Message::OkReply(_)
            | Message::Datasets(_)
            | Message::Close(_) => {}
            other => panic!("seed {}: a client got {other:?}", self.seed),
        }
    }

    /// Runs one of the worker's assigned tasks the way a worker would:
    /// fetch what it lacks from listed holders, else report missing-data.
    fn worker_runs(&mut self, i: usize, fail: bool) {
        let Some(key) = self.workers[i].assigned.keys().next().cloned() else {
            return;
        };
        let conn = self.workers[i].conn;
        let Some(who_has) = self.workers[i].assigned.remove(&key) else {
            return;
        };
        let mut fetched = BTreeMap::new();
        for (dep, addresses) in &who_has {
            if self.workers[i].data.contains(dep) {
                continue;
            }
            let found = self
                .workers
                .iter()
                .any(|w| addresses.contains(&w.address) && w.data.contains(dep));
            if !found {
                self.sim.send(
                    conn,
                    MissingData {
                        key: dep.clone(),
                        addresses: addresses.clone(),
                        task: key,
                    },
                );
                return;
            }
            fetched.insert(dep.clone(), 1u64);
        }
        if !fetched.is_empty() {
            self.workers[i].data.extend(fetched.keys().cloned());
            self.sim.send(conn, AddKeys { nbytes: fetched });
        }
        if fail {
            self.sim.send(
                conn,
                TaskErred {
                    key,
                    error_type: "E".into(),
                    message: "chaos".into(),
                    traceback: String::new(),
                },
            );
        } else {
            self.workers[i].data.insert(key.clone());
            self.sim.send(
                conn,
                TaskFinished {
                    key,
                    nbytes: 1,
                    duration_us: [None, Some(5), Some(50_000)][self.rng.below(3)],
                    value: None,
                },
            );
        }
    }

    fn submit(&mut self, ci: usize) {
        // A key and, usually, everything it depends on: key k depends on
        // k/2 and k-3, so definitions agree across submissions and shared
        // keys are common. Now and then a definition differs (refused when
        // the key is known) or a dependency is left out (refused when
        // unknown).
        let top: usize = self.rng.below(KEY_POOL);
        let mut tasks = Vec::new();
        let mut wanted = Vec::new();
        let mut stack = vec![top];
        let mut seen = BTreeSet::new();
        while let Some(k) = stack.pop() {
            if !seen.insert(k) {
                continue;
            }
            if k != top && self.rng.chance(5) {
                continue;
            }
            let mut args = Vec::new();
            if k > 0 {
                args.push(r(&format!("k{}", k / 2)));
                stack.push(k / 2);
                if k >= 3 {
                    args.push(r(&format!("k{}", k - 3)));
                    stack.push(k - 3);
                }
            }
            let key = format!("k{k}");
            let function = if k == top && self.rng.chance(3) {
                RARE_FUNCTION
            } else {
                FUNCTIONS[k % 2]
            };
            let mut s = spec(&key, function, args);
            if self.rng.chance(10) {
                s.retries = Some(1);
            }
            if self.rng.chance(5) {
                s.priority = Some(self.rng.below(3) as i64);
            }
            tasks.push(s);
            if k == top && self.rng.chance(80) || self.rng.chance(10) {
                wanted.push(Key::from(key));
            }
        }
        // Dependencies not in the graph must be known, or the graph is
        // refused: either outcome is fine.
        let c = &mut self.clients[ci];
        let request = c.next_request;
        c.next_request += 1;
        let conn = c.conn;
        self.sim.send(
            conn,
            UpdateGraph {
                request,
                tasks,
                wanted: wanted.clone(),
                ack: None,
            },
        );
        let refused = self
            .sim
            .mail_peek(conn)
            .iter()
            .any(|m| matches!(m, Message::ErrorReport(e) if e.request == Some(request)));
        if !refused {
            let c = &mut self.clients[ci];
            for k in wanted {
                // An event may already be in the mailbox; deliver() sorts it.
                c.pending.insert(k.clone());
                c.wanted.insert(k);
            }
        }
    }

    fn step(&mut self) {
        let ci = self.rng.below(self.clients.len());
        let conn = self.clients[ci].conn;
        match self.rng.below(20) {
            0..=4 => self.submit(ci),
            5 => {
                let keys: Vec<Key> = self.clients[ci].wanted.iter().cloned().collect();
                if let Some(k) = self.rng.pick(&keys).cloned() {
                    self.clients[ci].wanted.remove(&k);
                    self.clients[ci].pending.remove(&k);
                    self.sim.send(
                        conn,
                        ReleaseKeys {
                            keys: vec![k].into(),
                        },
                    );
                }
            }
            6 => {
                let key = self.key();
                let force = self.rng.chance(30).then_some(true);
                self.sim.send(
                    conn,
                    CancelKeys {
                        keys: vec![key],
                        force,
                    },
                );
            }
            7 => {
                let key = Key::from(format!("s{}", self.rng.below(6)));
                let request = self.clients[ci].next_request;
                self.clients[ci].next_request += 1;
                self.sim.send(
                    conn,
                    Scatter {
                        request,
                        data: [(key.clone(), raw(Value::from(1)))].into(),
                        workers: None,
                        broadcast: self.rng.chance(30).then_some(true),
                        ack: None,
                    },
                );
                let refused =
                    self.sim.mail_peek(conn).iter().any(
                        |m| matches!(m, Message::ErrorReport(e) if e.request == Some(request)),
                    );
                if !refused {
                    self.clients[ci].pending.insert(key.clone());
                    self.clients[ci].wanted.insert(key);
                }
            }
            8 => {
                let keys = vec![self.key(), Key::from("s1")];
                self.sim.send(conn, Gather { request: 0, keys });
            }
            9 => {
                let name = format!("d{}", self.rng.below(3));
                let keys = vec![self.key()];
                if self.rng.chance(50) {
                    let overwrite = self.rng.chance(50).then_some(true);
                    self.sim.send(
                        conn,
                        PublishDataset {
                            request: 0,
                            name,
                            keys,
                            overwrite,
                        },
                    );
                } else if self.rng.chance(50) {
                    self.sim.send(conn, UnpublishDataset { request: 0, name });
                } else {
                    self.sim.send(conn, GetDataset { request: 0, name });
                }
            }
            10..=14 => {
                if let Some(i) = self.busy_worker() {
                    let fail = self.rng.chance(15);
                    self.worker_runs(i, fail);
                }
            }
            15 => {
                if self.workers.len() > 1 || (!self.workers.is_empty() && self.rng.chance(20)) {
                    let i = self.rng.below(self.workers.len());
                    let w = self.workers.remove(i);
                    if self.rng.chance(50) {
                        self.sim.close(w.conn);
                    } else {
                        self.sim.send(
                            w.conn,
                            Close {
                                reason: None,
                                reconnect: None,
                            },
                        );
                    }
                }
            }
            16 => {
                if self.workers.len() < 4 {
                    self.add_worker(false);
                }
            }
            17 => {
                if self.rng.chance(30) {
                    // A client leaves and another comes.
                    let c = self.clients.remove(ci);
                    self.sim.close(c.conn);
                    self.add_client();
                } else {
                    self.sim.send(conn, ClusterInfo { request: 0 });
                }
            }
            18 => {
                // Time passes; every worker but one keeps beating.
                let silent = self.rng.below(self.workers.len() + 3);
                for (i, w) in self.workers.iter().enumerate() {
                    if i != silent {
                        let c = w.conn;
                        self.sim.s.handle_message(
                            self.sim.now,
                            c,
                            Heartbeat { metrics: None }.into(),
                        );
                    }
                }
                self.sim.pump();
                self.sim.advance(Duration::from_secs(4));
                let closed = &self.sim.closed;
                self.workers.retain(|w| !closed.contains(&w.conn));
            }
            _ => {
                let slow: Vec<usize> = (0..self.workers.len())
                    .filter(|&i| !self.workers[i].held_puts.is_empty())
                    .collect();
                if let (Some(&i), true) = (self.rng.pick(&slow), self.rng.chance(50)) {
                    let p = self.workers[i].held_puts.remove(0);
                    self.store(i, p);
                } else if let Some(i) = self.busy_worker() {
                    self.worker_runs(i, false);
                }
            }
        }
        self.deliver();
    }

    fn busy_worker(&mut self) -> Option<usize> {
        let busy: Vec<usize> = (0..self.workers.len())
            .filter(|&i| !self.workers[i].assigned.is_empty())
            .collect();
        self.rng.pick(&busy).copied()
    }

    /// One reliable worker joins, the others leave; everything runs.
    fn heal(&mut self) {
        self.add_worker(true);
        while self.workers.len() > 1 {
            let w = self.workers.remove(0);
            self.sim.close(w.conn);
        }
        self.deliver();
        for _ in 0..10_000 {
            if self.workers[0].assigned.is_empty() {
                break;
            }
            self.worker_runs(0, false);
            self.deliver();
        }
        assert!(
            self.workers[0].assigned.is_empty(),
            "seed {}: work never ends",
            self.seed
        );
        for c in &self.clients {
            assert!(
                c.pending.is_empty(),
                "seed {}: wanted keys without an event: {:?} (states {:?})",
                self.seed,
                c.pending,
                c.pending
                    .iter()
                    .map(|k| self.sim.state(k.as_str()))
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Everyone lets go: nothing may remain anywhere.
    fn release_all(&mut self) {
        for name in ["d0", "d1", "d2"] {
            let conn = self.clients[0].conn;
            self.sim.send(
                conn,
                UnpublishDataset {
                    request: 0,
                    name: name.into(),
                },
            );
        }
        for c in std::mem::take(&mut self.clients) {
            self.sim.close(c.conn);
        }
        self.deliver();
        assert_eq!(self.sim.s.task_count(), 0, "seed {}: tasks left", self.seed);
        for w in &self.workers {
            assert!(
                w.data.is_empty(),
                "seed {}: {} still holds {:?}",
                self.seed,
                w.address,
                w.data
            );
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut chaos = Chaos::new(seed);
    for _ in 0..steps {
        chaos.step();
    }
    chaos.heal();
    chaos.release_all();
}

#[test]
fn random_stories_keep_every_invariant_and_end_well() {
    if let Some(seed) = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return run(seed, 400);
    }
    let seeds: u64 = std::env::var("CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    for seed in 1..=seeds {
        run(seed, 300);
    }
}
