//! Keys: generated names, and the state and local reference count of every
//! key the session holds.

use super::events::{ClientEvent, KeyState, RequestId};
use super::{ClientSession, KeyEntry, Pending};
use crate::msgpack::RawValue;
use crate::msgpack::KEY_BYTES_MAX;
use crate::wire::Key;

/// Makes keys unique to one client: `{function}-{seed in hex}-{n}`.
///
/// The seed comes from the caller (core reads no clock and has no RNG): a
/// client that shares a scheduler with others should pass a random one.
#[derive(Debug, Clone)]
pub struct KeyGenerator {
    seed: u64,
    next: u64,
}

/// Most bytes of a function name copied into a generated key.
pub const KEY_FUNCTION_BYTES_MAX: usize = 200;

impl KeyGenerator {
    /// A generator whose keys carry `seed`.
    pub fn new(seed: u64) -> Self {
        KeyGenerator { seed, next: 0 }
    }

    /// The next key for a task running `function`.
    pub fn next_key(&mut self, function: &str) -> Key {
        let n = self.next;
        self.next += 1;
        format_key(function, self.seed, n)
    }
}

/// The key `{function}-{seed:x}-{n}`, the function name cut (at a char
/// boundary) to [`KEY_FUNCTION_BYTES_MAX`] bytes and never empty.
pub fn format_key(function: &str, seed: u64, n: u64) -> Key {
    let mut end = function.len().min(KEY_FUNCTION_BYTES_MAX);
    while !function.is_char_boundary(end) {
        end -= 1;
    }
    let name = if end == 0 { "task" } else { &function[..end] };
    Key(format!("{name}-{seed:x}-{n}"))
}

/// Whether `key` is a valid key (1 to [`KEY_BYTES_MAX`] bytes).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= KEY_BYTES_MAX
}

impl ClientSession {
    /// The state of a held key; `None` when the client holds no reference.
    pub fn key_state(&self, key: &str) -> Option<&KeyState> {
        self.keys.get(key).map(|e| &e.state)
    }

    /// The result of a finished key, when its `key-finished` carried it
    /// (dask/1.1 inline results): a client answers its user from it
    /// without a `gather`.
    pub fn inline_result(&self, key: &str) -> Option<&RawValue> {
        self.keys.get(key).and_then(|e| e.inline.as_ref())
    }

    /// Local references to a key (0 when not held).
    pub fn ref_count(&self, key: &str) -> u64 {
        self.keys.get(key).map_or(0, |e| e.refs)
    }

    /// Number of keys held.
    pub fn held_keys(&self) -> usize {
        self.keys.len()
    }

    /// Adds a reference to a held key. Returns false (and does nothing)
    /// when the key is not held: a reference can only be copied from one.
    pub fn retain(&mut self, key: &str) -> bool {
        match self.keys.get_mut(key) {
            Some(e) => {
                e.refs += 1;
                true
            }
            None => false,
        }
    }

    /// Drops a reference. At zero the key is forgotten locally and a
    /// `release-keys` is queued. Unknown keys are ignored.
    pub fn release(&mut self, key: &str) {
        let Some(e) = self.keys.get_mut(key) else {
            return;
        };
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            return;
        }
        let Some((key, e)) = self.keys.remove_entry(key) else {
            return;
        };
        self.earlier_requests.remove(&key);
        if let Some(origin) = e.origin {
            self.settle_want(origin, false);
        }
        if !self.is_closed() {
            self.to_release.push(key);
        }
    }

    /// Adds one reference to `key`, wanted by the message with id
    /// `request`; `origin` is that request when it is a submit or scatter
    /// whose refusal would fail the key (None: a dataset).
    ///
    /// The scheduler's want of the key then answers `request` unless it is
    /// still pending (PROTOCOL.md, "Which want an event answers"): a key
    /// finished or erred is wanted anew, and its event comes again.
    pub(super) fn want(
        &mut self,
        key: &Key,
        origin: Option<RequestId>,
        request: RequestId,
    ) -> bool {
        match self.keys.get_mut(key) {
            Some(e) => {
                e.refs += 1;
                if e.state != KeyState::Pending {
                    e.want_request = request;
                }
                // A key whose want ended without a result is asked for
                // anew. An erred key stays erred: the scheduler keeps it,
                // and answers `key-erred` again.
                if matches!(
                    e.state,
                    KeyState::Cancelled | KeyState::Lost { .. } | KeyState::Failed(_)
                ) {
                    e.state = KeyState::Pending;
                    let old = std::mem::replace(&mut e.origin, origin);
                    if let Some(old) = old {
                        self.settle_want(old, false);
                    }
                    return true;
                }
                false
            }
            None => {
                self.keys.insert(
                    key.clone(),
                    KeyEntry {
                        state: KeyState::Pending,
                        refs: 1,
                        origin,
                        want_request: request,
                        waiting: None,
                        inline: None,
                    },
                );
                true
            }
        }
    }

    /// Whether an event for `key` carrying `request` (dask/1.1) answers a
    /// want other than the current one: an event still on its way when the
    /// client released the key and wanted it again. Events without a
    /// request (dask/1.0) are never stale.
    pub(super) fn is_stale(&self, key: &Key, request: Option<u64>) -> bool {
        self.keys
            .get(key)
            .is_some_and(|e| self.answers_another_want(e, key, request))
    }

    /// [`ClientSession::is_stale`] for a held key's entry `e`.
    fn answers_another_want(&self, e: &KeyEntry, key: &Key, request: Option<u64>) -> bool {
        request.is_some_and(|r| {
            r != e.want_request.0 && self.earlier_requests.get(key) != Some(&RequestId(r))
        })
    }

    /// One key of a submit/scatter got its first event (`accepted`: the
    /// scheduler accepted the graph) or was released or wanted anew.
    pub(super) fn settle_want(&mut self, request: RequestId, accepted: bool) {
        // A graph no key of which waits need not go again, unless it is a
        // part: later parts refer to its tasks.
        if accepted || !self.unacked.get(&request).is_some_and(|u| u.in_parts) {
            self.unacked.remove(&request);
        }
        if let Some(Pending::Wants { outstanding, .. }) = self.requests.get_mut(&request) {
            *outstanding = outstanding.saturating_sub(1);
            if *outstanding == 0 {
                self.requests.remove(&request);
            }
        }
    }

    pub(super) fn set_state(&mut self, key: &Key, state: KeyState) {
        let Some(e) = self.keys.get_mut(key) else {
            // Not held (released, or never ours): nothing to report.
            return;
        };
        let changed = update(e, &state);
        if let Some(origin) = e.origin.take() {
            self.settle_want(origin, true);
        }
        if changed {
            self.events.push_back(ClientEvent::KeyUpdated {
                key: key.clone(),
                state,
            });
        }
    }

    /// A `key-finished`: two look-ups of the key (the second finds it in
    /// the cache), where the stale check, [`ClientSession::set_state`] and
    /// the inline result took four, and the key moved into the event, not
    /// copied (the client's I/O thread handles one per task).
    pub(super) fn key_finished(&mut self, m: crate::messages::KeyFinished) {
        let Some(e) = self.keys.get(&m.key) else {
            return;
        };
        if self.answers_another_want(e, &m.key, m.request) {
            return;
        }
        let Some(e) = self.keys.get_mut(&m.key) else {
            return;
        };
        let state = KeyState::Finished { nbytes: m.nbytes };
        let changed = update(e, &state);
        // A key-finished sent again (after a resume) has no value: the
        // one already had is kept.
        if let Some(value) = m.value {
            e.inline = Some(value);
        }
        if let Some(origin) = e.origin.take() {
            self.settle_want(origin, true);
        }
        if changed {
            self.events
                .push_back(ClientEvent::KeyUpdated { key: m.key, state });
        }
    }
}

/// Sets a key's state; whether it changed (what it waited on and its
/// inline result then go).
fn update(e: &mut KeyEntry, state: &KeyState) -> bool {
    if e.state == *state {
        return false;
    }
    e.state = state.clone();
    e.waiting = None;
    e.inline = None;
    true
}
