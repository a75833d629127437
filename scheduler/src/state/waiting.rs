//! Telling clients why their keys wait (dask/1.1, feature `key-waiting`):
//! the `key-waiting` event, once per want, when a task a wanted key needs
//! cannot run on any connected worker; and `waiting-keys`, the tasks that
//! wait with their reasons, a page at a time.
//!
//! Cost: tasks that become `no-worker` during an event are noted as they
//! move (a push); at the event's end each is walked up through its
//! waiting dependents to the wanted keys, every task at most once per
//! event. Nothing happens while no task is stuck.

use std::collections::{HashMap, HashSet};

use dask_core::messages::{KeyWaiting, WaitingKey, WaitingKeys, WaitingKeysReply};

use super::inspect::WaitReason;
use super::*;

/// Most tasks one `waiting-keys-reply` lists.
pub const WAITING_KEYS_MAX: u32 = 1000;

/// Most `key-waiting` one client is sent per event: a graph of a million
/// tasks no worker can run is told about its first keys (every want is
/// marked told); `waiting-keys` lists the rest. Without it one event
/// queued a message per task.
pub const KEY_WAITING_PER_EVENT_MAX: usize = 1000;

/// Tasks one `waiting-keys-reply` lists when the request names no limit.
pub const WAITING_KEYS_DEFAULT: u32 = 100;

impl SchedulerState {
    /// Notes that `t` became `no-worker` (its wanting clients are told at
    /// the end of the event).
    pub(crate) fn note_stuck(&mut self, t: TaskId) {
        self.stuck.push(t);
    }

    /// A graph came: the stuck tasks it may depend on are looked at again
    /// (its wants are new, and told once each).
    pub(crate) fn recheck_stuck(&mut self) {
        let stuck: Vec<TaskId> = self.no_worker.iter().copied().collect();
        self.stuck.extend(stuck);
    }

    /// Sends `key-waiting` for the wants that the tasks noted as stuck
    /// hold up and that were not told yet.
    pub(crate) fn tell_waiting(&mut self) {
        if self.stuck.is_empty() {
            return;
        }
        let origins = std::mem::take(&mut self.stuck);
        let mut seen: HashSet<TaskId> = HashSet::new();
        let mut sent: HashMap<ConnId, usize> = HashMap::new();
        for origin in origins {
            if !self.tasks.contains(origin.ix())
                || self.tasks[origin].state() != TaskState::NoWorker
                || seen.contains(&origin)
            {
                continue;
            }
            let Some(reason) = self.wait_reason(origin) else {
                continue;
            };
            let mut stack = vec![origin];
            seen.insert(origin);
            while let Some(t) = stack.pop() {
                self.tell_wanting_clients(t, origin, &reason, &mut sent);
                for d in self.tasks[t].dependents.iter() {
                    if self.tasks[d].state() == TaskState::Waiting && seen.insert(d) {
                        stack.push(d);
                    }
                }
            }
        }
    }

    /// Tells each client wanting `t` (with the feature, not yet told for
    /// this want) that `origin` cannot run.
    fn tell_wanting_clients(
        &mut self,
        t: TaskId,
        origin: TaskId,
        reason: &WaitReason,
        sent: &mut HashMap<ConnId, usize>,
    ) {
        if self.tasks[t].wanted_by.is_empty() {
            return;
        }
        for i in 0..self.tasks[t].wanted_by.len() {
            let c = self.tasks[t].wanted_by[i];
            let Some(client) = self.clients.get_mut(&c) else {
                continue;
            };
            if !client.key_waiting {
                continue;
            }
            let Some(want) = client.wants.get_mut(&t) else {
                continue;
            };
            if want.waiting_told {
                continue;
            }
            want.waiting_told = true;
            let count = sent.entry(c).or_insert(0);
            if *count >= KEY_WAITING_PER_EVENT_MAX {
                continue;
            }
            *count += 1;
            let task = &self.tasks[t];
            let m = Message::KeyWaiting(KeyWaiting {
                key: task.key_owned(),
                reason: reason.code.to_owned(),
                message: reason.message.clone(),
                task: (origin != t).then(|| self.tasks[origin].key_owned()),
                request: self.want_request(c, t),
            });
            self.send(c, m);
        }
    }

    /// `waiting-keys`: one page of the tasks that wait.
    pub(crate) fn waiting_keys(&mut self, conn: ConnId, m: WaitingKeys) {
        if let Some(state) = &m.state {
            if !matches!(state.as_str(), "waiting" | "no-worker" | "queued") {
                return self.reply_error(
                    conn,
                    ErrorCode::WrongType,
                    format!(
                        "in `waiting-keys`: field `state`: expected waiting, no-worker or queued, \
                         found {state:?}"
                    ),
                    Some(m.request),
                    None,
                );
            }
        }
        let limit = m
            .limit
            .unwrap_or(WAITING_KEYS_DEFAULT)
            .clamp(1, WAITING_KEYS_MAX);
        let page = self.waiting_page(m.cursor.unwrap_or(0), limit as usize, m.state.as_deref());
        let tasks = page
            .tasks
            .into_iter()
            .map(|t| WaitingKey {
                key: t.key,
                state: t.state.to_owned(),
                reason: t.reason.code.to_owned(),
                message: t.reason.message,
            })
            .collect();
        self.send(
            conn,
            Message::WaitingKeysReply(WaitingKeysReply {
                request: m.request,
                tasks,
                next: page.next,
            }),
        );
    }
}
