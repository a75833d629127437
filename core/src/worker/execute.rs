//! Tasks on this worker: compute-task, the ready queue, runs on the executor, steal and free-keys.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

use super::memory::Unavailable;
use super::{Job, TaskDone, TaskError, WorkerOutput, WorkerState};
use crate::messages::{ComputeTask, Resources, StealResponse, TaskErred, TaskFinished};
use crate::{Key, Message, RawValue, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskState {
    Waiting,
    Ready,
    Executing(u64),
}

#[derive(Debug)]
pub(super) struct Task {
    pub(super) key: Key,
    pub(super) function: String,
    pub(super) args: RawValue,
    pub(super) kwargs: Option<RawValue>,
    pub(super) priority: i64,
    /// Arrival number: orders equal priorities and tells a task from a
    /// later one in the same slab slot.
    pub(super) seq: u64,
    pub(super) resources: Option<Resources>,
    pub(super) deps: Vec<Key>,
    pub(super) who_has: BTreeMap<Key, Vec<String>>,
    /// Dependencies not in the data store yet.
    pub(super) missing: usize,
    pub(super) state: TaskState,
}

/// An entry of the ready heap; stale entries are skipped when popped.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ReadyEntry {
    pub(super) priority: i64,
    pub(super) seq: u64,
    pub(super) slot: usize,
}

impl Ord for ReadyEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ReadyEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The ready tasks, popped highest priority first, then by arrival.
/// Tasks nearly always become ready in that order (equal priorities,
/// rising arrival numbers): those wait in a FIFO, a push and a pop without
/// sifting (a heap's pop sifted through ~8 levels for every task of a short
/// run); an entry that goes before the FIFO's last goes into a heap, and a
/// pop takes the greater of the two heads.
#[derive(Debug, Default)]
pub(super) struct ReadyQueue {
    /// Entries in pop order (non-increasing).
    in_order: VecDeque<ReadyEntry>,
    out_of_order: BinaryHeap<ReadyEntry>,
}

impl ReadyQueue {
    pub(super) fn push(&mut self, entry: ReadyEntry) {
        match self.in_order.back() {
            Some(last) if entry > *last => self.out_of_order.push(entry),
            _ => self.in_order.push_back(entry),
        }
    }

    pub(super) fn pop(&mut self) -> Option<ReadyEntry> {
        let from_heap = match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(first), Some(top)) => top > first,
            (None, top) => top.is_some(),
            (Some(_), None) => false,
        };
        match from_heap {
            true => self.out_of_order.pop(),
            false => self.in_order.pop_front(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    pub(super) fn clear(&mut self) {
        self.in_order.clear();
        self.out_of_order.clear();
    }
}

impl Extend<ReadyEntry> for ReadyQueue {
    fn extend<I: IntoIterator<Item = ReadyEntry>>(&mut self, entries: I) {
        for entry in entries {
            self.push(entry);
        }
    }
}

/// A run given to the executor and not finished yet.
#[derive(Debug)]
pub(super) struct Run {
    /// Its task's slot, not its key: no key copy and no look-up by key
    /// per task. The slot is checked for `Executing(run_id)` on the way
    /// back (run ids are never reused, so a task freed meanwhile, or
    /// another task in the same slot, is never taken for this run's).
    pub(super) slot: usize,
    pub(super) resources: Option<Resources>,
}

/// Past this many distinct references a task's are told apart by a set;
/// below it by a scan of those so far (nearly every task: no hashing).
const REFS_SCANNED_MAX: usize = 16;

/// The keys of `refs` without repeats, in order of first appearance.
fn distinct_refs<'a>(mut refs: impl Iterator<Item = &'a str>) -> Vec<Key> {
    let Some(first) = refs.next() else {
        return Vec::new();
    };
    let mut distinct: Vec<&str> = Vec::with_capacity(4);
    distinct.push(first);
    let mut seen: Option<foldhash::HashSet<&str>> = None;
    for key in refs {
        let new = match &mut seen {
            Some(seen) => seen.insert(key),
            None if distinct.len() < REFS_SCANNED_MAX => !distinct.contains(&key),
            None => {
                let mut set: foldhash::HashSet<&str> = distinct.iter().copied().collect();
                let new = set.insert(key);
                seen = Some(set);
                new
            }
        };
        if new {
            distinct.push(key);
        }
    }
    distinct.into_iter().map(Key::from).collect()
}

/// Why a run is being withdrawn.
#[derive(Debug)]
pub(super) enum Withdrawal {
    /// A steal-request for this key waits for the answer.
    Steal(Key),
    /// The key was freed; the thread is better used elsewhere.
    Free,
}

impl WorkerState {
    /// A run finished on the executor.
    pub fn handle_task_done(&mut self, now: Timestamp, done: TaskDone) {
        self.now = now;
        let Some(run) = self.running.remove(&done.run_id) else {
            return;
        };
        self.dirty = true;
        if !self.withdrawals.is_empty() {
            self.withdrawals.remove(&done.run_id);
        }
        self.release_resources(&run);
        if !self.is_executing(run.slot, done.run_id) {
            // Freed while running (then maybe assigned again): the result
            // is discarded.
            return;
        }
        let task = self.remove_task(run.slot);
        if !self.is_registered() {
            return;
        }
        let reply = match done.result {
            Ok(value) if value.as_bytes().len() > self.config.value_bytes_max => {
                Message::TaskErred(TaskErred {
                    key: task.key,
                    error_type: "ValueTooLarge".into(),
                    message: format!(
                        "result of {} bytes is over the {} bytes one message can carry",
                        value.as_bytes().len(),
                        self.config.value_bytes_max
                    ),
                    traceback: String::new(),
                })
            }
            Ok(value) => {
                // Small enough for the scheduler's inline bound: it goes
                // with the report too (a reference count, not a copy).
                let inline = self
                    .inline_bytes_max
                    .filter(|&max| value.len() as u64 <= max)
                    .map(|_| value.clone());
                let nbytes = self.store(task.key.clone(), Arc::new(value));
                Message::TaskFinished(TaskFinished {
                    key: task.key,
                    nbytes,
                    duration_us: Some(done.duration_us),
                    value: inline,
                })
            }
            Err(e) => Message::TaskErred(TaskErred {
                key: task.key,
                error_type: e.error_type,
                message: e.message,
                traceback: e.traceback,
            }),
        };
        self.emit(reply);
    }

    /// The answer to [`WorkerOutput::Withdraw`]: whether the executor took the
    /// run back before any thread started it.
    pub fn handle_withdrawn(&mut self, now: Timestamp, run_id: u64, withdrawn: bool) {
        self.now = now;
        let Some(reason) = self.withdrawals.remove(&run_id) else {
            return;
        };
        if withdrawn {
            if let Some(run) = self.running.remove(&run_id) {
                self.dirty = true;
                self.release_resources(&run);
                if self.is_executing(run.slot, run_id) {
                    self.remove_task(run.slot);
                }
            }
        }
        if let Withdrawal::Steal(key) = reason {
            if self.is_registered() {
                self.emit(Message::StealResponse(StealResponse {
                    key,
                    stolen: withdrawn,
                }));
            }
        }
    }

    pub(super) fn task_erred(&mut self, key: Key, error_type: &str, message: String) {
        self.emit(Message::TaskErred(TaskErred {
            key,
            error_type: error_type.into(),
            message,
            traceback: String::new(),
        }));
    }

    pub(super) fn compute_task(&mut self, ct: ComputeTask) {
        if !self.offered.contains(&ct.function) {
            let e = TaskError::unknown_function(&ct.function);
            return self.task_erred(ct.key, &e.error_type, e.message);
        }
        if let Some(resources) = &ct.resources {
            for (name, amount) in resources {
                let offered = self.config.resources.get(name).copied().unwrap_or(0.0);
                if *amount > offered {
                    return self.task_erred(
                        ct.key,
                        "ResourceError",
                        format!("task needs {name}={amount}, this worker offers {offered}"),
                    );
                }
            }
        }
        if let Some(held) = self.data.get(&ct.key) {
            // Already computed here (e.g. a resend): report it again.
            let nbytes = held.nbytes;
            return self.emit(Message::TaskFinished(TaskFinished {
                key: ct.key,
                nbytes,
                duration_us: None,
                value: None,
            }));
        }
        if self.by_key.get(&self.tasks, ct.key.as_str()).is_some() {
            return; // already assigned here: one record per key
        }
        let refs = ct.args.refs();
        let kwarg_refs = ct.kwargs.as_ref().map(|k| k.refs()).unwrap_or_default();
        let deps = distinct_refs(refs.into_iter().chain(kwarg_refs));
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.tasks.insert(Task {
            key: ct.key,
            function: ct.function,
            args: ct.args,
            kwargs: ct.kwargs,
            priority: ct.priority.unwrap_or(0),
            seq,
            resources: ct.resources,
            deps,
            who_has: ct.who_has,
            missing: 0,
            state: TaskState::Waiting,
        });
        self.by_key.insert(&self.tasks, slot);
        self.request_missing_deps(slot);
    }

    pub(super) fn make_ready(&mut self, slot: usize) {
        let task = &mut self.tasks[slot];
        task.state = TaskState::Ready;
        self.ready.push(ReadyEntry {
            priority: task.priority,
            seq: task.seq,
            slot,
        });
    }

    pub(super) fn is_live_dependent(&self, (slot, seq): (usize, u64)) -> bool {
        self.tasks
            .get(slot)
            .is_some_and(|t| t.seq == seq && t.state == TaskState::Waiting)
    }

    /// Whether the task in `slot` is the one out on `run_id`.
    fn is_executing(&self, slot: usize, run_id: u64) -> bool {
        self.tasks
            .get(slot)
            .is_some_and(|t| t.state == TaskState::Executing(run_id))
    }

    pub(super) fn remove_task(&mut self, slot: usize) -> Task {
        let task = self.tasks.remove(slot);
        self.by_key.remove(task.key.as_str(), slot);
        task
    }

    pub(super) fn release_resources(&mut self, run: &Run) {
        for (name, amount) in run.resources.iter().flatten() {
            if let Some(used) = self.resources_used.get_mut(name) {
                *used -= amount;
            }
        }
    }

    pub(super) fn free_keys(&mut self, keys: crate::messages::KeyList) {
        for key in keys.iter() {
            self.remove_held(key);
            self.add_keys.remove(key);
            if let Some(slot) = self.by_key.get(&self.tasks, key) {
                // A run out on the executor stays in `running` until it ends
                // (its result then finds no task and is discarded) or is
                // withdrawn before it starts.
                if let TaskState::Executing(run_id) = self.tasks[slot].state {
                    if let std::collections::hash_map::Entry::Vacant(e) =
                        self.withdrawals.entry(run_id)
                    {
                        e.insert(Withdrawal::Free);
                        self.outputs.push_back(WorkerOutput::Withdraw { run_id });
                    }
                }
                self.remove_task(slot);
            }
        }
    }

    /// A task not started yet is dropped (stolen); one out on the executor
    /// is withdrawn if no thread has started it, and the answer waits for
    /// [`WorkerState::handle_withdrawn`].
    pub(super) fn steal(&mut self, key: Key) {
        let state = self
            .by_key
            .get(&self.tasks, key.as_str())
            .map(|slot| (slot, self.tasks[slot].state));
        let stolen = match state {
            Some((slot, TaskState::Waiting | TaskState::Ready)) => {
                self.remove_task(slot);
                true
            }
            Some((_, TaskState::Executing(run_id))) if !self.withdrawals.contains_key(&run_id) => {
                self.withdrawals.insert(run_id, Withdrawal::Steal(key));
                self.outputs.push_back(WorkerOutput::Withdraw { run_id });
                return;
            }
            _ => false,
        };
        self.emit(Message::StealResponse(StealResponse { key, stolen }));
    }

    pub(super) fn resources_fit(&self, wanted: &Option<Resources>) -> bool {
        wanted.iter().flatten().all(|(name, amount)| {
            let offered = self.config.resources.get(name).copied().unwrap_or(0.0);
            let used = self.resources_used.get(name).copied().unwrap_or(0.0);
            used + amount <= offered + 1e-9
        })
    }

    pub(super) fn start_ready_tasks(&mut self) {
        let mut blocked = Vec::new();
        while self.running.len() < self.config.nthreads + self.config.dispatch_ahead {
            // Checked before each start: a start reads its spilled
            // dependencies back, which may reach the pause.
            if self.update_paused() {
                break;
            }
            let Some(entry) = self.ready.pop() else {
                break;
            };
            let Some(task) = self.tasks.get(entry.slot) else {
                continue;
            };
            if task.seq != entry.seq || task.state != TaskState::Ready {
                continue;
            }
            if !self.resources_fit(&task.resources) {
                blocked.push(entry);
                continue;
            }
            let ndeps = task.deps.len();
            let mut deps = Vec::with_capacity(ndeps);
            let mut lost = false;
            let mut unreadable = Vec::new();
            for i in 0..ndeps {
                let dep = self.tasks[entry.slot].deps[i].clone();
                match self.value_for_job(&dep) {
                    Ok(value) => deps.push((dep, value)),
                    Err(Unavailable::NotHeld) => lost = true,
                    Err(Unavailable::Unreadable) => {
                        lost = true;
                        unreadable.push(dep);
                    }
                }
            }
            if lost {
                // A dependency was freed while the task was queued, or its
                // spilled value could not be read back: get it again.
                self.request_missing_deps(entry.slot);
                for dep in unreadable {
                    // Whatever who_has says, this worker no longer has it,
                    // and a missing-data for it must say so.
                    if let Some(fetch) = self.fetches.get_mut(&dep) {
                        if !fetch.tried.contains(&self.config.address) {
                            fetch.tried.push(self.config.address.clone());
                        }
                    }
                }
                self.dirty = true;
                continue;
            }
            let run_id = self.next_run_id;
            self.next_run_id += 1;
            let task = &mut self.tasks[entry.slot];
            task.state = TaskState::Executing(run_id);
            if let Some(resources) = &task.resources {
                for (name, amount) in resources {
                    *self.resources_used.entry(name.clone()).or_default() += amount;
                }
            }
            self.running.insert(
                run_id,
                Run {
                    slot: entry.slot,
                    resources: task.resources.clone(),
                },
            );
            self.outputs.push_back(WorkerOutput::Execute(Job {
                run_id,
                priority: task.priority,
                seq: task.seq,
                // Like the arguments, the name goes with the run: a task
                // started is not started again from its record.
                function: std::mem::take(&mut task.function),
                args: std::mem::take(&mut task.args),
                kwargs: task.kwargs.take(),
                deps,
            }));
        }
        self.ready.extend(blocked);
    }
}

#[cfg(test)]
mod ready_queue_tests {
    use std::collections::BinaryHeap;

    use super::{ReadyEntry, ReadyQueue};

    #[test]
    fn pops_as_a_heap_would_in_order_or_not() {
        // Mostly in order (runs of equal priority, rising arrival), with
        // jumps up and down in priority, repeated entries and pops between.
        let mut queue = ReadyQueue::default();
        let mut model = BinaryHeap::new();
        let mut x: u64 = 7;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let (mut seq, mut priority) = (0u64, 0i64);
        for _ in 0..20_000 {
            match next() % 10 {
                0..=5 => {
                    if next() % 16 == 0 {
                        priority = (next() % 5) as i64 - 2;
                    }
                    let again = next() % 20 == 0 && seq > 0;
                    let entry_seq = if again { next() % seq } else { seq };
                    seq += 1;
                    let entry = || ReadyEntry {
                        priority,
                        seq: entry_seq,
                        slot: entry_seq as usize,
                    };
                    queue.push(entry());
                    model.push(entry());
                }
                _ => assert_eq!(queue.pop(), model.pop()),
            }
            assert_eq!(queue.len(), model.len());
        }
        while let Some(entry) = model.pop() {
            assert_eq!(queue.pop(), Some(entry));
        }
        assert_eq!(queue.pop(), None);
        // Entries popped in order of arrival only when nothing jumps: a
        // later, higher priority goes first.
        queue.extend([
            ReadyEntry {
                priority: 0,
                seq: 1,
                slot: 1,
            },
            ReadyEntry {
                priority: 0,
                seq: 2,
                slot: 2,
            },
            ReadyEntry {
                priority: 3,
                seq: 3,
                slot: 3,
            },
        ]);
        let order: Vec<u64> = std::iter::from_fn(|| queue.pop()).map(|e| e.seq).collect();
        assert_eq!(order, [3, 1, 2]);
    }
}

#[cfg(test)]
mod distinct_refs_tests {
    use super::{distinct_refs, REFS_SCANNED_MAX};

    #[test]
    fn repeats_are_dropped_in_order_below_and_past_the_scan() {
        assert!(distinct_refs(std::iter::empty()).is_empty());
        let few = ["b", "a", "b", "c", "a"];
        let got: Vec<String> = distinct_refs(few.into_iter())
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect();
        assert_eq!(got, ["b", "a", "c"]);
        // Past the scan: every key twice, the second round in reverse, so
        // repeats come both before and after the set takes over.
        let names: Vec<String> = (0..REFS_SCANNED_MAX * 3).map(|i| format!("k{i}")).collect();
        let refs = names.iter().chain(names.iter().rev()).map(String::as_str);
        let got: Vec<String> = distinct_refs(refs)
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect();
        assert_eq!(got, names);
    }
}
