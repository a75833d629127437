//! What the user threads of a client and its I/O thread share: the
//! [`ClientSession`] behind one mutex, replies by request, `as_completed`
//! watchers. User threads wait on a condvar and wake the I/O thread
//! ([`crate::event_loop`]) with the reactor's [`Waker`] when they queued
//! something to send.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use dask_core::client::{ClientAuth, ClientEvent, ClientSession, RequestId};
use dask_core::Key;
use dask_net::Waker;

use crate::error::{Error, Result};

/// Keys an `as_completed` iterator waits for, and those that completed.
#[derive(Default)]
pub(crate) struct Watcher {
    pub(crate) waiting: HashSet<Key>,
    pub(crate) done: VecDeque<Key>,
}

/// Everything user threads and the loop share, behind one mutex.
pub(crate) struct State {
    pub(crate) session: ClientSession,
    /// Replies by request, until their requester takes them.
    replies: HashMap<RequestId, ClientEvent>,
    /// Requests whose requester gave up (timed out): their replies are dropped.
    abandoned: HashSet<RequestId>,
    pub(crate) watchers: HashMap<u64, Watcher>,
    pub(crate) next_watcher: u64,
    /// The last non-fatal error the scheduler sent that named no request.
    pub(crate) last_server_error: Option<String>,
    /// The loop was woken and has not yet drained the session.
    pub(crate) wake_pending: bool,
    /// The user asked the loop to close the connection and stop.
    pub(crate) shutdown: bool,
    /// The loop has stopped.
    pub(crate) io_done: bool,
}

impl State {
    /// A fresh session (its hello queued), nothing waiting.
    pub(crate) fn new(name: Option<String>, auth: Option<ClientAuth>) -> State {
        State {
            session: ClientSession::with_auth(name, random_seed(), auth),
            replies: HashMap::new(),
            abandoned: HashSet::new(),
            watchers: HashMap::new(),
            next_watcher: 0,
            last_server_error: None,
            wake_pending: false,
            shutdown: false,
            io_done: false,
        }
    }

    /// Moves the session's events to where waiters look for them. Returns
    /// whether there were any.
    pub(crate) fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.session.poll_event() {
            any = true;
            let request = match &event {
                ClientEvent::KeyUpdated { key, state } => {
                    if state.is_terminal() {
                        for w in self.watchers.values_mut() {
                            if w.waiting.remove(key) {
                                w.done.push_back(key.clone());
                            }
                        }
                    }
                    continue;
                }
                ClientEvent::ServerError(e) => {
                    self.last_server_error = Some(e.to_string());
                    continue;
                }
                // Kept on the key by the session (Future::waiting).
                ClientEvent::KeyWaiting { .. } => continue,
                ClientEvent::Connected { .. } | ClientEvent::Closed { .. } => continue,
                ClientEvent::WaitingKeys { request, .. }
                | ClientEvent::Gathered { request, .. }
                | ClientEvent::WhoHas { request, .. }
                | ClientEvent::ClusterInfo { request, .. }
                | ClientEvent::Dataset { request, .. }
                | ClientEvent::Datasets { request, .. }
                | ClientEvent::Done { request }
                | ClientEvent::RequestFailed { request, .. } => *request,
            };
            if self.abandoned.remove(&request) {
                // Nobody will wrap a dataset's keys in futures: drop the
                // references the session took for them.
                if let ClientEvent::Dataset { keys, .. } = &event {
                    for k in keys {
                        self.session.release(k.as_str());
                    }
                }
                continue;
            }
            self.replies.insert(request, event);
        }
        any
    }
}

/// The shared half of a client, held by the client, its futures and the
/// I/O thread.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Counts the notifications of `changed`, so a waiter can look for one
    /// without the lock while it busy-polls.
    changes: AtomicU64,
    /// How long a waiter looks for a change before it sleeps on `changed`
    /// (the client's `busy_poll`).
    busy_poll: Duration,
    pub(crate) waker: Waker,
}

impl Shared {
    pub(crate) fn new(state: State, waker: Waker, busy_poll: Duration) -> Shared {
        Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            changes: AtomicU64::new(0),
            busy_poll,
            waker,
        }
    }

    /// Wakes the waiters: something they may wait for changed.
    pub(crate) fn notify_changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
        self.changed.notify_all();
    }

    /// Looks for a change without the lock until one comes or `busy_poll`
    /// passes (or `deadline`), yielding the CPU between looks; then the
    /// lock, tried without sleeping while the notifier still holds it.
    fn look_for_change(&self, seen: u64, deadline: Option<Instant>) -> MutexGuard<'_, State> {
        let until = Instant::now() + self.busy_poll;
        let until = deadline.map_or(until, |d| d.min(until));
        while Instant::now() < until {
            if self.changes.load(Ordering::Acquire) != seen {
                match self.state.try_lock() {
                    Ok(st) => return st,
                    Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                    Err(TryLockError::WouldBlock) => {}
                }
            }
            std::thread::yield_now();
        }
        self.lock()
    }

    /// Locks the state. A panic while locked cannot leave the session in a
    /// state worse than its own invariants, so a poisoned lock is entered.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state, then hands new events to waiters and wakes
    /// the loop when the session has something to send.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.lock();
        let out = f(&mut st);
        self.after_change(&mut st);
        out
    }

    fn after_change(&self, st: &mut State) {
        if st.dispatch() {
            self.notify_changed();
        }
        if st.session.wants_transmit() && !st.wake_pending && !st.io_done {
            st.wake_pending = true;
            // A failed wake means the loop is gone; waiters notice io_done.
            let _ = self.waker.wake();
        }
    }

    /// Waits on the condvar until `ready` gives a value, the deadline
    /// passes (`Error::Timeout`), or the loop stops with nothing ready.
    pub(crate) fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T> {
        let mut st = self.lock();
        // Look for the answer without sleeping once, before the first sleep.
        let mut look = !self.busy_poll.is_zero();
        loop {
            if let Some(v) = ready(&mut st) {
                self.after_change(&mut st);
                return Ok(v);
            }
            if st.io_done {
                let reason = st
                    .session
                    .closed_reason()
                    .unwrap_or("the connection's thread stopped")
                    .to_owned();
                return Err(Error::Connection(reason));
            }
            if std::mem::take(&mut look) {
                let seen = self.changes.load(Ordering::Acquire);
                drop(st);
                st = self.look_for_change(seen, deadline);
                continue;
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::Timeout);
                    }
                    self.changed
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Starts a request with `start` and waits for its reply event.
    pub(crate) fn request(
        &self,
        timeout: Option<Duration>,
        start: impl FnOnce(&mut ClientSession) -> RequestId,
    ) -> Result<ClientEvent> {
        let id = self.with(|st| start(&mut st.session));
        let deadline = timeout.map(|t| Instant::now() + t);
        let result = self.wait_until(deadline, |st| st.replies.remove(&id));
        match result {
            Ok(ClientEvent::RequestFailed { error, .. }) => Err(Error::from_request(&error)),
            Ok(event) => Ok(event),
            Err(e) => {
                self.with(|st| {
                    if st.replies.remove(&id).is_none() {
                        st.abandoned.insert(id);
                    }
                });
                Err(e)
            }
        }
    }
}

/// A seed for generated keys that differs between processes and clients:
/// std's randomly keyed hasher over the time, the process id and a counter.
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_testkit::process::thread_sleeps;
    use std::sync::Arc;

    /// A thread waits for a change another makes 20 ms later (without
    /// busy-polling: once the waiter sleeps); how many times the waiter slept.
    fn sleeps_awaiting_a_change(busy_poll: Duration) -> u64 {
        let reactor = dask_net::Reactor::new(dask_net::ReactorConfig::default()).unwrap();
        let shared = Arc::new(Shared::new(
            State::new(None, None),
            reactor.waker(),
            busy_poll,
        ));
        let (started, start) = std::sync::mpsc::channel();
        let waiter = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("change-waiter".into())
                .spawn(move || {
                    let before = thread_sleeps(None);
                    started.send(before).unwrap();
                    let deadline = Instant::now() + Duration::from_secs(30);
                    shared
                        .wait_until(Some(deadline), |st| st.shutdown.then_some(()))
                        .unwrap();
                    thread_sleeps(None) - before
                })
                .unwrap()
        };
        let before = start.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if busy_poll.is_zero() {
            // However late the waiter started, it sleeps before the change.
            let deadline = Instant::now() + Duration::from_secs(30);
            while thread_sleeps(Some("change-waiter")) == before {
                assert!(Instant::now() < deadline, "the waiter never slept");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let mut st = shared.lock();
        st.shutdown = true;
        shared.notify_changed();
        drop(st);
        waiter.join().unwrap()
    }

    #[test]
    fn a_waiter_looks_for_the_change_before_it_sleeps() {
        assert_eq!(sleeps_awaiting_a_change(Duration::from_secs(30)), 0);
        // Without busy-polling it sleeps on the condvar.
        assert!(sleeps_awaiting_a_change(Duration::ZERO) > 0);
    }
}
