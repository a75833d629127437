//! Workers' claims about data they did not compute (issue 20 item 4).
//!
//! A registered worker is trusted to run what it is given, not to say
//! where data is: a worker that announced keys it never had was preferred
//! for gathers (its value came back instead of the true one), and a
//! `missing-data` naming another holder freed that holder's real copy.
//! - `add-keys` makes a worker a holder only of a key in memory that it
//!   was sent to fetch: a dependency of a task given to it (a *fetch
//!   permit*, used up by the announcement and dropped when the key leaves
//!   memory or the worker leaves). Any other key announced is refused: the
//!   worker is told to free it (`free-keys`) and the refusal is logged.
//! - `missing-data` about the sender's own copy is believed (it is about
//!   its own store). About another holder, it counts only from a worker
//!   processing `task`, which depends on the key; the scheduler then asks
//!   that holder for the key (`get-data`) before it drops anything, and
//!   the task waits. The holder's answer decides: the value (or a `busy`,
//!   or an error other than listing the key missing) keeps its copy and the
//!   task is placed again; listing the key missing drops the copy (freed
//!   there, recomputed when it was the last); the holder leaving drops it
//!   with everything it held. A claim that has nothing to do with a task of
//!   the sender changes nothing.

use std::collections::HashMap;

use dask_core::log::{Level, LogRecord};
use dask_core::messages::{AddKeys, Data, GetData, MissingData};

use super::tasks::plausible_nbytes;
use super::*;

/// The scheduler's record of claims it has not settled.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Per task in memory: the workers sent a task that needs it and not
    /// holding it, each of which may announce it once (`add-keys`).
    permits: HashMap<TaskId, Vec<WorkerIdx>>,
    /// `get-data` requests asking a holder whether it has a key another
    /// worker said it lacks, by request id.
    checks: HashMap<u64, Check>,
}

/// One holder asked about one key.
#[derive(Debug)]
struct Check {
    holder: WorkerIdx,
    key: Key,
    /// The tasks given back for want of the key, and their workers: each
    /// is placed again once the check is settled.
    claims: Vec<(Key, WorkerIdx)>,
}

impl SchedulerState {
    /// Worker `w` is sent `t`: it may fetch and then announce each
    /// dependency it does not hold.
    pub(crate) fn grant_fetch_permits(&mut self, t: TaskId, w: WorkerIdx) {
        for i in 0..self.tasks[t].dependencies.len() {
            let d = self.tasks[t].dependencies[i];
            if self.tasks[d].who_has.contains(&w) {
                continue;
            }
            let permits = self.claims.permits.entry(d).or_default();
            if !permits.contains(&w) {
                permits.push(w);
            }
        }
    }

    /// Gives back the capacity of a past large graph (see `shrink`).
    pub(crate) fn claims_shrink_to_fit(&mut self) {
        self.claims.permits.shrink_to_fit();
        self.claims.checks.shrink_to_fit();
    }

    /// `t` left memory: nobody may announce an old copy of it.
    pub(crate) fn drop_fetch_permits(&mut self, t: TaskId) {
        self.claims.permits.remove(&t);
    }

    /// Worker `w` left: its permits and the checks that asked it go.
    pub(crate) fn claims_worker_left(&mut self, w: WorkerIdx) {
        self.claims.permits.retain(|_, permits| {
            permits.retain(|&x| x != w);
            !permits.is_empty()
        });
        let mut asked: Vec<u64> = self
            .claims
            .checks
            .iter()
            .filter(|(_, c)| c.holder == w)
            .map(|(&r, _)| r)
            .collect();
        asked.sort_unstable();
        for request in asked {
            if let Some(check) = self.claims.checks.remove(&request) {
                // Its copy went with it (already dropped).
                self.settle(check);
            }
        }
    }

    pub(crate) fn add_keys(&mut self, w: WorkerIdx, m: AddKeys) {
        let mut refused = 0u64;
        for (key, nbytes) in m.nbytes {
            let Some(t) = self.task_id(&key) else {
                self.free_on(w, &key);
                continue;
            };
            if self.tasks[t].state() != TaskState::Memory {
                // A copy of something no longer in memory here: not needed.
                self.free_on(w, &key);
                continue;
            }
            if self.tasks[t].who_has.contains(&w) {
                continue;
            }
            let permitted = self.claims.permits.get_mut(&t).is_some_and(|permits| {
                let before = permits.len();
                permits.retain(|&x| x != w);
                permits.len() < before
            });
            if !permitted {
                refused += 1;
                self.free_on(w, &key);
                continue;
            }
            if self.claims.permits.get(&t).is_some_and(Vec::is_empty) {
                self.claims.permits.remove(&t);
            }
            if self.tasks[t].nbytes == 0 {
                self.tasks[t].nbytes = plausible_nbytes(nbytes);
            }
            self.add_replica(t, w);
        }
        if refused > 0 {
            let name = self.workers[w].name.clone();
            self.observe.log(
                LogRecord::new(
                    Level::Warn,
                    "add-keys-refused",
                    format!(
                        "worker {name} announced {refused} keys it was never given nor sent to \
                         fetch: refused, and it is told to free them"
                    ),
                )
                .with("worker", name.as_str())
                .with("count", refused),
            );
        }
    }

    pub(crate) fn missing_data(&mut self, w: WorkerIdx, m: MissingData) {
        let task = self
            .task_id(&m.task)
            .filter(|&t| self.tasks[t].state() == TaskState::Processing(w));
        let mut checking = false;
        if let Some(d) = self.task_id(&m.key) {
            let needed = task.is_some_and(|t| self.tasks[t].dependencies.contains(&d));
            for address in &m.addresses {
                let holders: Vec<WorkerIdx> = self.tasks[d]
                    .who_has
                    .iter()
                    .copied()
                    .filter(|x| {
                        self.workers
                            .get(x.ix())
                            .is_some_and(|k| &k.address == address)
                    })
                    .collect();
                for x in holders {
                    if x == w {
                        if self.remove_replica(d, x) {
                            // Keep the worker's store in step with our view.
                            self.free_on(x, &m.key);
                        }
                    } else if needed {
                        self.check_holder(x, &m.key, &m.task, w);
                        checking = true;
                    }
                }
            }
            let dep = &self.tasks[d];
            if dep.state() == TaskState::Memory && dep.who_has.is_empty() {
                self.lose_data(d);
            }
        }
        if let Some(t) = task {
            if !checking {
                self.reevaluate(t);
            }
        }
    }

    /// Asks `holder` for `key` (once for any number of claims), on behalf
    /// of `task`, given back by `claimant`.
    fn check_holder(&mut self, holder: WorkerIdx, key: &Key, task: &Key, claimant: WorkerIdx) {
        let claim = (task.clone(), claimant);
        if let Some(check) = self
            .claims
            .checks
            .values_mut()
            .find(|c| c.holder == holder && &c.key == key)
        {
            if !check.claims.contains(&claim) {
                check.claims.push(claim);
            }
            return;
        }
        let request = self.request_id();
        self.send_worker(
            holder,
            Message::GetData(GetData {
                request,
                keys: vec![key.clone()],
            }),
        );
        self.claims.checks.insert(
            request,
            Check {
                holder,
                key: key.clone(),
                claims: vec![claim],
            },
        );
    }

    /// The holder `w` of check `request` answered: its `data`, or `None`
    /// when the answer is not about having the key (busy, an error).
    /// Returns false when `request` is no check of `w`'s.
    pub(crate) fn check_answered(
        &mut self,
        w: WorkerIdx,
        request: u64,
        reply: Option<&Data>,
    ) -> bool {
        if self
            .claims
            .checks
            .get(&request)
            .is_none_or(|c| c.holder != w)
        {
            return false;
        }
        let Some(check) = self.claims.checks.remove(&request) else {
            return false;
        };
        let lacks = reply.is_some_and(|m| !m.data.contains_key(&check.key));
        if lacks {
            if let Some(d) = self.task_id(&check.key) {
                if self.remove_replica(d, w) {
                    self.free_on(w, &check.key);
                    let dep = &self.tasks[d];
                    if dep.state() == TaskState::Memory && dep.who_has.is_empty() {
                        self.lose_data(d);
                    }
                }
            }
        }
        self.settle(check);
        true
    }

    /// The tasks given back for the check's key are placed again.
    fn settle(&mut self, check: Check) {
        for (key, claimant) in check.claims {
            let Some(t) = self.task_id(&key) else {
                continue;
            };
            if self.tasks[t].state() == TaskState::Processing(claimant) {
                self.reevaluate(t);
            }
        }
    }
}
