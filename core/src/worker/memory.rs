//! The data store: values in memory or spilled, least recently used first, and the pause.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Level, LogRecord, WorkerOutput, WorkerState};
use crate::messages::Heartbeat;
use crate::{Key, Message, RawValue};

/// How long after a failed spill write no other write is tried: a full or
/// broken disk would otherwise cost a failing write on every wakeup.
pub const SPILL_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Where values go when memory is over the target: one entry per key,
/// written and read whole (see the module docs). Called synchronously from
/// the state machine, so an implementation should be quick; the worker's
/// binary writes one file per key, a test keeps a map.
pub trait SpillStore: Send {
    /// Writes `value` under `key`, replacing nothing (the machine removes
    /// an entry before it puts the key again). On `Err` nothing must be
    /// kept: the value stays in memory.
    fn put(&mut self, key: &Key, value: &RawValue) -> Result<(), String>;
    /// Reads back the value put under `key`; the entry stays until
    /// [`SpillStore::remove`]. `Err` when it cannot be read whole.
    fn get(&mut self, key: &Key) -> Result<RawValue, String>;
    /// Drops the entry of `key`, if there is one.
    fn remove(&mut self, key: &Key);
    /// Reads back bytes `start..end` of the value put under `key` (within
    /// its length). By default the whole value is read and sliced; a store
    /// that can read a range alone should (a large value is relayed a range
    /// at a time).
    fn get_range(&mut self, key: &Key, start: u64, end: u64) -> Result<bytes::Bytes, String> {
        let value = self.get(key)?.into_shared();
        let range = usize::try_from(start).unwrap_or(usize::MAX)
            ..usize::try_from(end).unwrap_or(usize::MAX);
        if range.start > range.end || range.end > value.len() {
            return Err(format!(
                "bytes {start}..{end} asked of a value of {} bytes",
                value.len()
            ));
        }
        Ok(value.slice(range))
    }
}

/// A [`SpillStore`] in a map: it moves nothing out of the process, so it is
/// for tests (and for checking the accounting), not for saving memory.
#[derive(Debug, Default)]
pub struct MemorySpillStore {
    entries: HashMap<Key, RawValue>,
}

impl MemorySpillStore {
    /// An empty store.
    pub fn new() -> MemorySpillStore {
        MemorySpillStore::default()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl SpillStore for MemorySpillStore {
    fn put(&mut self, key: &Key, value: &RawValue) -> Result<(), String> {
        self.entries.insert(key.clone(), value.clone());
        Ok(())
    }

    fn get(&mut self, key: &Key) -> Result<RawValue, String> {
        self.entries
            .get(key)
            .cloned()
            .ok_or_else(|| format!("no spilled value for {key}"))
    }

    fn remove(&mut self, key: &Key) {
        self.entries.remove(key);
    }
}

/// Where the worker's values are, and what spilling did so far (a local
/// view: the heartbeat's [`Metrics`](crate::messages::Metrics) counts spilled values as stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Values in memory.
    pub memory_keys: u64,
    /// Their bytes (sum of nbytes): what the target and pause compare.
    pub memory_bytes: u64,
    /// Values in the spill store.
    pub spilled_keys: u64,
    /// Their bytes.
    pub spilled_bytes: u64,
    /// Whether task starts are paused now.
    pub paused: bool,
    /// Times the worker paused so far.
    pub pauses: u64,
    /// Values written to the spill store so far.
    pub spill_writes: u64,
    /// Their bytes.
    pub spill_write_bytes: u64,
    /// Values read back from the spill store so far (for tasks or replies).
    pub spill_reads: u64,
    /// Writes that failed (the value stayed in memory).
    pub spill_write_failures: u64,
    /// Reads that failed (the key was lost here and reported missing).
    pub spill_read_failures: u64,
    /// The last failure's message.
    pub last_spill_error: Option<String>,
}

/// What the log and the scheduler were last told about the memory: each
/// change of these is one log line, and a change of the pause or of a
/// failing spill store is one heartbeat at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct MemoryTold {
    /// Some value is spilled.
    spilling: bool,
    /// Spill writes fail.
    spill_failing: bool,
    /// Task starts are paused.
    paused: bool,
}

/// Why a value could not be had for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unavailable {
    /// Not held here (freed meanwhile).
    NotHeld,
    /// Spilled, and reading it back failed: lost here now.
    Unreadable,
}

/// A value the worker holds, in memory or spilled.
#[derive(Debug)]
pub(super) struct Held {
    /// The value while in memory; `None` once spilled.
    pub(super) value: Option<Arc<RawValue>>,
    pub(super) nbytes: u64,
    /// Its position in `WorkerState::lru` while in memory (when spilling).
    pub(super) tick: u64,
}

impl WorkerState {
    /// Stores a value, wakes tasks waiting for it, and returns its nbytes.
    pub(super) fn store(&mut self, key: Key, value: Arc<RawValue>) -> u64 {
        let nbytes = value.as_bytes().len() as u64;
        // Nothing is fetched while a short run computes: no hashing then.
        let fetched = match self.fetches.is_empty() {
            true => None,
            false => self.fetches.remove(&key),
        };
        if let Some(fetch) = fetched {
            for dependent in fetch.dependents {
                if !self.is_live_dependent(dependent) {
                    continue;
                }
                let task = &mut self.tasks[dependent.0];
                task.missing = task.missing.saturating_sub(1);
                if task.missing == 0 {
                    self.make_ready(dependent.0);
                }
            }
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        let held = Held {
            value: Some(value),
            nbytes,
            tick,
        };
        // One look-up for the key (a new one, nearly always) rather than a
        // removal and an insertion.
        let spilling = self.spilling();
        let key = match self.data.entry(key) {
            Entry::Vacant(entry) => {
                let key = spilling.then(|| entry.key().clone());
                entry.insert(held);
                key
            }
            Entry::Occupied(mut entry) => {
                let key = entry.key().clone();
                let old = entry.insert(held);
                self.forget_held(key.as_str(), old);
                spilling.then_some(key)
            }
        };
        if let Some(key) = key {
            self.lru.insert(tick, key);
        }
        self.stored_bytes += nbytes;
        self.memory_bytes += nbytes;
        nbytes
    }

    /// Drops the value under `key` wherever it is; its spill entry too.
    pub(super) fn remove_held<K: std::borrow::Borrow<str> + ?Sized>(&mut self, key: &K) {
        if let Some(held) = self.data.remove(key.borrow()) {
            self.forget_held(key.borrow(), held);
        }
    }

    /// The accounting of a value `key` no longer holds, and its spill entry.
    fn forget_held(&mut self, key: &str, held: Held) {
        self.stored_bytes -= held.nbytes;
        if held.value.is_some() {
            self.memory_bytes -= held.nbytes;
            self.lru.remove(&held.tick);
        } else {
            self.spilled_keys -= 1;
            if let Some(store) = self.spill.as_mut() {
                store.remove(&Key::from(key));
            }
        }
    }

    /// Whether values are spilled past the target (a store and a target).
    pub(super) fn spilling(&self) -> bool {
        self.spill.is_some() && self.target_bytes().is_some()
    }

    pub(super) fn target_bytes(&self) -> Option<u64> {
        self.config.limit_share(self.config.memory_target_fraction)
    }

    pub(super) fn over_pause(&self) -> bool {
        self.config
            .limit_share(self.config.memory_pause_fraction)
            .is_some_and(|pause| self.memory_bytes > pause)
    }

    /// Pauses or resumes by the bytes in memory now; true when paused.
    pub(super) fn update_paused(&mut self) -> bool {
        let over = self.over_pause();
        if over && !self.paused {
            self.memory_counters.pauses += 1;
        }
        self.paused = over;
        over
    }

    /// Marks an in-memory value as the most recently used.
    pub(super) fn touch(&mut self, key: &Key) {
        if !self.spilling() {
            return;
        }
        let Some(held) = self.data.get_mut(key) else {
            return;
        };
        if held.value.is_none() {
            return;
        }
        self.lru.remove(&held.tick);
        held.tick = self.next_tick;
        self.next_tick += 1;
        self.lru.insert(held.tick, key.clone());
    }

    /// Spills least recently used values until the bytes in memory are at
    /// or under the target. Values held by jobs are skipped (spilling them
    /// frees nothing while the job runs); a failed write ends the pass and
    /// holds off writes for [`SPILL_RETRY_DELAY`].
    pub(super) fn spill_to_target(&mut self) {
        let Some(target) = self.target_bytes() else {
            return;
        };
        if self.memory_bytes <= target {
            // Nothing needs spilling: an earlier failure holds nothing up.
            self.spill_error = None;
        }
        if self.spill_retry_at.is_some_and(|at| self.now < at) {
            return;
        }
        self.spill_retry_at = None;
        if self.spill.is_none() || self.memory_bytes <= target {
            return;
        }
        let mut after: Option<u64> = None;
        while self.memory_bytes > target {
            let next = match after {
                None => self.lru.iter().next(),
                Some(tick) => self
                    .lru
                    .range((std::ops::Bound::Excluded(tick), std::ops::Bound::Unbounded))
                    .next(),
            };
            let Some((&tick, key)) = next else {
                return; // everything left is held by jobs
            };
            after = Some(tick);
            let key = key.clone();
            let (Some(held), Some(store)) = (self.data.get_mut(&key), self.spill.as_mut()) else {
                self.lru.remove(&tick); // cannot happen: lru follows data
                continue;
            };
            let Some(value) = held.value.as_ref() else {
                self.lru.remove(&tick);
                continue;
            };
            if Arc::strong_count(value) > 1 {
                continue; // a job holds it
            }
            match store.put(&key, value) {
                Ok(()) => {
                    held.value = None;
                    let nbytes = held.nbytes;
                    self.lru.remove(&tick);
                    self.memory_bytes -= nbytes;
                    self.spilled_keys += 1;
                    self.memory_counters.spill_writes += 1;
                    self.memory_counters.spill_write_bytes += nbytes;
                    self.spill_error = None;
                }
                Err(e) => {
                    self.spill_error = Some(e.clone());
                    self.memory_counters.spill_write_failures += 1;
                    self.memory_counters.last_spill_error =
                        Some(format!("cannot spill {key}: {e}"));
                    self.spill_retry_at = Some(self.now + SPILL_RETRY_DELAY);
                    // The next pass tries other values first.
                    self.touch(&key);
                    return;
                }
            }
        }
    }

    /// Logs each change of spilling, of a failing spill store and of the
    /// pause since the last call (one line each), and tells the scheduler
    /// at once, with a heartbeat, when the pause or the failure changed:
    /// it stops placing tasks here and takes back those not started.
    pub(super) fn report_memory_changes(&mut self) {
        let now = MemoryTold {
            spilling: self.spilled_keys > 0,
            spill_failing: self.spill_error.is_some(),
            paused: self.paused,
        };
        let was = self.memory_told;
        if now == was {
            return;
        }
        self.memory_told = now;
        let limit = self.config.memory_limit.unwrap_or(0);
        let memory = self.memory_bytes;
        let mut records = Vec::new();
        if now.spilling != was.spilling {
            records.push(if now.spilling {
                let target = self.target_bytes().unwrap_or(0);
                LogRecord::new(
                    Level::Info,
                    "spilling-began",
                    format!(
                        "spilling began: memory went over the target of {target} bytes (memory \
                         limit {limit}); least recently used values go to the spill store"
                    ),
                )
            } else {
                LogRecord::new(
                    Level::Info,
                    "spilling-ended",
                    "spilling ended: no value is spilled any more",
                )
            });
        }
        if now.spill_failing != was.spill_failing {
            records.push(match &self.spill_error {
                Some(e) => LogRecord::new(
                    Level::Error,
                    "spill-failing",
                    format!("spilling fails: {e}; values stay in memory"),
                )
                .with("error", e.as_str()),
                None => LogRecord::new(Level::Info, "spill-recovered", "spilling works again"),
            });
        }
        if now.paused != was.paused {
            let pause = self
                .config
                .limit_share(self.config.memory_pause_fraction)
                .unwrap_or(0);
            records.push(
                if now.paused {
                    let why = match &self.spill_error {
                        Some(e) => format!("; it cannot spill: {e}"),
                        None => String::new(),
                    };
                    LogRecord::new(
                        Level::Warn,
                        "paused",
                        format!(
                            "paused: {memory} bytes in memory are over the pause threshold of \
                         {pause} bytes (memory limit {limit}): no task starts and nothing is \
                         fetched until memory falls under it{why}"
                        ),
                    )
                } else {
                    LogRecord::new(
                        Level::Info,
                        "resumed",
                        format!(
                        "resumed: {memory} bytes in memory, under the pause threshold of {pause} \
                         bytes"
                    ),
                    )
                }
                .with("memory_bytes", memory),
            );
        }
        for record in records {
            self.outputs.push_back(WorkerOutput::Log(record));
        }
        if now.paused != was.paused || now.spill_failing != was.spill_failing {
            let metrics = Some(self.metrics());
            self.emit(Message::Heartbeat(Heartbeat { metrics }));
        }
    }

    /// Reads a spilled value back; on failure the key is lost here
    /// (removed, counted) and `None` is returned.
    pub(super) fn read_spilled(&mut self, key: &Key) -> Option<RawValue> {
        let nbytes = self.data.get(key)?.nbytes;
        let read = match self.spill.as_mut() {
            Some(store) => store.get(key),
            None => Err("no spill store".to_string()),
        };
        let error = match read {
            Ok(value) if value.as_bytes().len() as u64 == nbytes => {
                self.memory_counters.spill_reads += 1;
                return Some(value);
            }
            Ok(value) => format!(
                "read {} bytes, {nbytes} were spilled",
                value.as_bytes().len()
            ),
            Err(e) => e,
        };
        self.spill_read_failed(key, error);
        None
    }

    /// Bytes `start..end` of the spilled value of `key`, read back for a
    /// `get-value-range` (it stays spilled). A failed read loses the value
    /// here, as [`WorkerState::read_spilled`] does.
    pub(super) fn read_spilled_range(
        &mut self,
        key: &Key,
        start: u64,
        end: u64,
    ) -> Option<bytes::Bytes> {
        let read = match self.spill.as_mut() {
            Some(store) => store.get_range(key, start, end),
            None => Err("no spill store".to_string()),
        };
        match read {
            Ok(bytes) if bytes.len() as u64 == end - start => {
                self.memory_counters.spill_reads += 1;
                Some(bytes)
            }
            Ok(bytes) => {
                self.spill_read_failed(
                    key,
                    format!("read {} bytes of {}..{}", bytes.len(), start, end),
                );
                None
            }
            Err(e) => {
                self.spill_read_failed(key, e);
                None
            }
        }
    }

    fn spill_read_failed(&mut self, key: &Key, error: String) {
        self.memory_counters.spill_read_failures += 1;
        self.memory_counters.last_spill_error = Some(format!("cannot read back {key}: {error}"));
        self.remove_held(key);
        self.add_keys.remove(key);
    }

    /// The value of `key` for a job: from memory (now the most recently
    /// used), or read back into memory when spilled.
    pub(super) fn value_for_job(&mut self, key: &Key) -> Result<Arc<RawValue>, Unavailable> {
        let held = self.data.get(key).ok_or(Unavailable::NotHeld)?;
        if let Some(value) = &held.value {
            let value = Arc::clone(value);
            self.touch(key);
            return Ok(value);
        }
        let value = Arc::new(self.read_spilled(key).ok_or(Unavailable::Unreadable)?);
        if let Some(store) = self.spill.as_mut() {
            store.remove(key);
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        let Some(held) = self.data.get_mut(key) else {
            return Err(Unavailable::Unreadable); // cannot happen: read_spilled found it
        };
        held.value = Some(Arc::clone(&value));
        held.tick = tick;
        self.memory_bytes += held.nbytes;
        self.spilled_keys -= 1;
        if self.spilling() {
            self.lru.insert(tick, key.clone());
        }
        Ok(value)
    }
}
