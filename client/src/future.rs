//! [`Future`]: a handle to a key's result on the cluster, and
//! [`AsCompleted`], which yields futures in the order they complete.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dask_core::client::{ClientEvent, KeyState, Waiting};
use dask_core::{Key, RawValue};

use crate::error::{Error, Result};
use crate::shared::{Shared, Watcher};

/// Where a future's key is, as this client last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not finished yet.
    Pending,
    /// The result is in memory on a worker.
    Finished,
    /// The task (or a dependency) raised an error.
    Erred,
    /// The key was cancelled.
    Cancelled,
    /// The key's data is gone.
    Lost,
    /// The request that wanted the key failed, or the connection closed.
    Failed,
}

impl Status {
    fn of(state: Option<&KeyState>) -> Status {
        match state {
            None => Status::Failed,
            Some(KeyState::Pending) => Status::Pending,
            Some(KeyState::Finished { .. }) => Status::Finished,
            Some(KeyState::Erred(_)) => Status::Erred,
            Some(KeyState::Cancelled) => Status::Cancelled,
            Some(KeyState::Lost { .. }) => Status::Lost,
            Some(KeyState::Failed(_)) => Status::Failed,
        }
    }

    /// Whether the key reached a final state.
    pub fn is_done(self) -> bool {
        self != Status::Pending
    }
}

/// A handle to the result of one key on the cluster.
///
/// Each handle holds one local reference to the key: cloning adds one,
/// dropping removes one, and when the last handle of a key is dropped the
/// client tells the scheduler it no longer wants the key (`release-keys`),
/// so the result may be freed.
pub struct Future {
    key: Key,
    shared: Arc<Shared>,
}

impl Future {
    /// Wraps a key the session already holds a reference for (the handle
    /// takes that reference over).
    pub(crate) fn adopt(shared: Arc<Shared>, key: Key) -> Future {
        Future { key, shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The key's status now (does not wait).
    pub fn status(&self) -> Status {
        let st = self.shared.lock();
        Status::of(st.session.key_state(self.key.as_str()))
    }

    /// Whether the key reached a final state.
    pub fn done(&self) -> bool {
        self.status().is_done()
    }

    /// Why the key cannot progress now, when the scheduler said (a task
    /// it needs cannot run on any connected worker: dask/1.1
    /// `key-waiting`). It still runs when a suitable worker joins;
    /// `None` once it left pending.
    pub fn waiting(&self) -> Option<Waiting> {
        let st = self.shared.lock();
        st.session.waiting(self.key.as_str()).cloned()
    }

    /// Waits until the key is finished; the error when it ended otherwise.
    pub fn wait(&self) -> Result<()> {
        self.wait_deadline(None)
    }

    /// Like [`Future::wait`], giving up with [`Error::Timeout`] after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_deadline(Some(Instant::now() + timeout))
    }

    pub(crate) fn wait_deadline(&self, deadline: Option<Instant>) -> Result<()> {
        let key = &self.key;
        self.shared
            .wait_until(deadline, |st| match st.session.key_state(key.as_str()) {
                Some(KeyState::Pending) => None,
                Some(KeyState::Finished { .. }) => Some(Ok(())),
                Some(state) => Error::from_key_state(key, state).map(Err),
                None => Some(Err(Error::Connection(format!("key {key} is not held")))),
            })?
    }

    /// Waits, then fetches the result from the cluster and decodes it.
    pub fn result(&self) -> Result<rmpv::Value> {
        decode(&self.result_raw()?)
    }

    /// Like [`Future::result`] with a time limit on the whole call.
    pub fn result_timeout(&self, timeout: Duration) -> Result<rmpv::Value> {
        let deadline = Instant::now() + timeout;
        self.wait_deadline(Some(deadline))?;
        let left = deadline.saturating_duration_since(Instant::now());
        decode(&gather_raw(&self.shared, &[self], Some(left))?.remove(0))
    }

    /// Waits, then fetches the result as its msgpack encoding.
    pub fn result_raw(&self) -> Result<RawValue> {
        self.wait()?;
        Ok(gather_raw(&self.shared, &[self], None)?.remove(0))
    }

    /// Cancels the key for this client; the future then ends cancelled
    /// (unless it finished first).
    pub fn cancel(&self) {
        let key = self.key.clone();
        self.shared.with(|st| st.session.cancel(vec![key], false));
    }
}

impl Clone for Future {
    fn clone(&self) -> Self {
        self.shared.with(|st| st.session.retain(self.key.as_str()));
        Future {
            key: self.key.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Future {
    fn drop(&mut self) {
        self.shared.with(|st| st.session.release(self.key.as_str()));
    }
}

impl fmt::Debug for Future {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Future({}, {:?})", self.key, self.status())
    }
}

impl PartialEq for Future {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && Arc::ptr_eq(&self.shared, &other.shared)
    }
}

pub(crate) fn decode(raw: &RawValue) -> Result<rmpv::Value> {
    raw.to_value().map_err(|e| Error::Decode(e.to_string()))
}

/// Times a gather asks again for keys that were missing because their
/// holder died and the scheduler computes them again (dask/1.1 tells).
const GATHER_RECOMPUTED_ROUNDS_MAX: usize = 3;

/// Times a gather cut by a lost connection is sent again once the session
/// is resumed (a scheduler with a journal restarted).
const GATHER_RESUMED_ROUNDS_MAX: usize = 3;

/// Scheduler states of a key missing from a gather that is worth asking
/// again for: on its way back to memory, or back already.
const ON_ITS_WAY: &[&str] = &[
    "released",
    "waiting",
    "no-worker",
    "queued",
    "processing",
    "memory",
];

/// Waits for every future, then fetches all results in one `gather`. A
/// key missing because its holder died while the scheduler computes it
/// again (a dask/1.1 scheduler says so) is waited for and asked again.
pub(crate) fn gather_raw(
    shared: &Arc<Shared>,
    futures: &[&Future],
    timeout: Option<Duration>,
) -> Result<Vec<RawValue>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    // Results that came with their key-finished (dask/1.1) need no
    // gather: most often all of them, taken here in one pass.
    let mut out = wait_and_take_inline(shared, futures, deadline)?;
    if out.iter().all(Option::is_some) {
        return Ok(out.into_iter().flatten().collect());
    }
    let mut keys: Vec<Key> = futures
        .iter()
        .zip(&out)
        .filter(|(_, v)| v.is_none())
        .map(|(f, _)| f.key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    let mut data = BTreeMap::new();
    let mut resumed = 0;
    let mut round = 0;
    loop {
        // `keys` is sorted: a search, not a scan (a scan made gathering
        // n futures cost n^2 key comparisons).
        for f in futures
            .iter()
            .filter(|f| keys.binary_search(&f.key).is_ok())
        {
            f.wait_deadline(deadline)?;
        }
        // Taken after the wait: a gather called right after submitting
        // finds them once the keys finish, where looking first sent every
        // key of a fresh graph through the scheduler's gather.
        take_inline(shared, &mut keys, &mut data);
        if keys.is_empty() {
            break;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let asked = std::mem::take(&mut keys);
        let reply = match shared.request(left, |s| s.gather(asked.clone())) {
            // Cut by a lost connection the session is resuming (its
            // scheduler keeps a journal): asked again once resumed, the
            // keys waited for again first (they may have ended lost).
            Err(Error::Connection(_))
                if resumed < GATHER_RESUMED_ROUNDS_MAX && resuming(shared, deadline)? =>
            {
                resumed += 1;
                keys = asked;
                continue;
            }
            reply => reply?,
        };
        let ClientEvent::Gathered {
            data: got,
            missing,
            status,
            ..
        } = reply
        else {
            return Err(Error::Connection("unexpected reply to gather".into()));
        };
        data.extend(got);
        let status = status.unwrap_or_default();
        keys = missing
            .into_iter()
            .filter(|k| {
                status
                    .get(k)
                    .is_some_and(|s| ON_ITS_WAY.contains(&s.as_str()))
            })
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() || round == GATHER_RECOMPUTED_ROUNDS_MAX {
            break;
        }
        round += 1;
        let again = keys.clone();
        shared.with(|st| st.session.want_again(again));
    }
    // A value is a reference-counted buffer: a key wanted by several
    // handles is shared, not copied.
    for (f, slot) in futures.iter().zip(&mut out) {
        if slot.is_some() {
            continue;
        }
        match data.get(&f.key) {
            Some(v) => *slot = Some(v.clone()),
            None => {
                return Err(Error::Lost {
                    key: f.key.clone(),
                    message: "not in memory on any worker".into(),
                })
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// Waits until every future's key finished (the error of the first, in
/// their order, that ended otherwise), then takes the results that came
/// inline, one per future (`None`: to gather). One wait under the lock for
/// all of them, each looked at once: a wait and a `take_inline` per key
/// cost the user's thread about 1 µs a key, after the last result came.
fn wait_and_take_inline(
    shared: &Arc<Shared>,
    futures: &[&Future],
    deadline: Option<Instant>,
) -> Result<Vec<Option<RawValue>>> {
    let mut finished = 0;
    shared.wait_until(deadline, |st| {
        while let Some(f) = futures.get(finished) {
            let key = &f.key;
            match st.session.key_state(key.as_str()) {
                Some(KeyState::Pending) => return None,
                Some(KeyState::Finished { .. }) => finished += 1,
                Some(state) => return Error::from_key_state(key, state).map(Err),
                None => return Some(Err(Error::Connection(format!("key {key} is not held")))),
            }
        }
        // A closed session answers nothing: what it holds is not taken.
        let open = !st.session.is_closed();
        Some(Ok(futures
            .iter()
            .map(|f| {
                open.then(|| st.session.inline_result(f.key.as_str()).cloned())
                    .flatten()
            })
            .collect()))
    })?
}

/// Moves the results that came inline with `keys`' key-finished from the
/// session into `data`, leaving in `keys` those to gather.
fn take_inline(shared: &Arc<Shared>, keys: &mut Vec<Key>, data: &mut BTreeMap<Key, RawValue>) {
    shared.with(|st| {
        if st.session.is_closed() {
            return;
        }
        keys.retain(|k| match st.session.inline_result(k.as_str()) {
            Some(v) => {
                data.insert(k.clone(), v.clone());
                false
            }
            None => true,
        })
    });
}

/// Whether the connection was lost and the session is being resumed:
/// then waits until it is (true) or closes (false).
fn resuming(shared: &Arc<Shared>, deadline: Option<Instant>) -> Result<bool> {
    if shared.with(|st| st.session.is_closed()) {
        return Ok(false);
    }
    shared.wait_until(deadline, |st| {
        (st.session.is_connected() || st.session.is_closed()).then(|| st.session.is_connected())
    })
}

/// Yields futures as they complete (finished or not), in completion order.
/// More futures may be added while iterating, which is how dynamic
/// workflows submit new work from finished results.
pub struct AsCompleted {
    shared: Arc<Shared>,
    id: u64,
    /// Handles by key, until their key completes.
    futures: HashMap<Key, Vec<Future>>,
    ready: VecDeque<Future>,
    timeout: Option<Duration>,
}

impl AsCompleted {
    /// An iterator over `futures` (which must share one client).
    pub(crate) fn new(shared: Arc<Shared>, futures: Vec<Future>) -> AsCompleted {
        let id = shared.with(|st| {
            let id = st.next_watcher;
            st.next_watcher += 1;
            st.watchers.insert(id, Watcher::default());
            id
        });
        let mut ac = AsCompleted {
            shared,
            id,
            futures: HashMap::new(),
            ready: VecDeque::new(),
            timeout: None,
        };
        ac.extend(futures);
        ac
    }

    /// Gives up waiting after `timeout` per item (the iterator then ends).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a future to wait for.
    pub fn add(&mut self, future: Future) {
        self.extend(std::iter::once(future));
    }

    /// Adds futures to wait for.
    pub fn extend(&mut self, futures: impl IntoIterator<Item = Future>) {
        // Collect first: the iterator may submit (and so lock) itself.
        let futures: Vec<Future> = futures.into_iter().collect();
        let id = self.id;
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        for f in futures {
            // A key already here is already watched: just keep the handle.
            if !self.futures.contains_key(&f.key) {
                let pending = matches!(
                    st.session.key_state(f.key.as_str()),
                    Some(KeyState::Pending)
                );
                if let Some(w) = st.watchers.get_mut(&id) {
                    if pending {
                        w.waiting.insert(f.key.clone());
                    } else {
                        w.done.push_back(f.key.clone());
                    }
                }
            }
            self.futures.entry(f.key.clone()).or_default().push(f);
        }
        drop(st);
        // Waiters of this watcher are only this iterator: no notify needed.
    }

    /// Number of futures not yet yielded.
    pub fn count(&self) -> usize {
        self.ready.len() + self.futures.values().map(Vec::len).sum::<usize>()
    }

    /// Whether every future has been yielded.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

impl AsCompleted {
    /// The next completed future: `Ok(None)` when none is left,
    /// `Err(Error::Timeout)` when none completed before `deadline` (`None`:
    /// wait as long as it takes), an error when the connection is gone.
    pub fn next_before(&mut self, deadline: Option<Instant>) -> Result<Option<Future>> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Ok(Some(f));
            }
            if self.futures.is_empty() {
                return Ok(None);
            }
            let id = self.id;
            let key = self.shared.wait_until(deadline, |st| {
                st.watchers.get_mut(&id).and_then(|w| w.done.pop_front())
            })?;
            self.ready
                .extend(self.futures.remove(&key).unwrap_or_default());
        }
    }
}

impl Iterator for AsCompleted {
    type Item = Future;

    fn next(&mut self) -> Option<Future> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        self.next_before(deadline).ok().flatten()
    }
}

impl Drop for AsCompleted {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.with(|st| st.watchers.remove(&id));
    }
}
