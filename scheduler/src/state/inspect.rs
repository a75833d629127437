//! Questions about single tasks, each answered at a bounded cost: why a
//! task waits ([`WaitReason`]), one task's details, and one page of the
//! tasks that wait. The dashboard asks them through the event loop; the
//! reasons also go to clients (`key-waiting`) and to `dask-rs info`.

use serde_json::{json, Value};

use super::*;

/// Most related tasks (dependencies, dependents, holders) one task's
/// details list; the counts are always whole.
pub const DETAIL_LIST_MAX: usize = 100;

/// Most task slots one page of waiting tasks looks at: a page costs at
/// most this much however many tasks there are (the next page goes on
/// from where it stopped).
pub const WAITING_SCAN_MAX: usize = 65_536;

/// Why a task that is not running waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitReason {
    /// `no-workers`, `no-function`, `no-allowed-worker`, `no-resources`,
    /// `spill-failed` (it cannot run on any connected worker: the last
    /// because every one that could is paused and cannot spill),
    /// `dependencies` (inputs not computed yet), `busy` (ready; every
    /// worker that can run it is full), `paused` (ready; every worker that
    /// can run it is paused).
    pub code: &'static str,
    /// The sentence a person reads.
    pub message: String,
}

impl WaitReason {
    fn new(code: &'static str, message: String) -> WaitReason {
        WaitReason { code, message }
    }

    /// Whether it waits for a worker that is not there (no-worker).
    pub fn needs_a_worker(&self) -> bool {
        self.code.starts_with("no-") || self.code == "spill-failed"
    }
}

impl SchedulerState {
    /// Why `t` waits, or `None` when it does not (running, done, released).
    pub(crate) fn wait_reason(&self, t: TaskId) -> Option<WaitReason> {
        let task = &self.tasks[t];
        match task.state() {
            TaskState::NoWorker => Some(self.no_worker_reason(task)),
            TaskState::Queued => Some(match self.all_eligible_paused(task) {
                Some(names) => WaitReason::new(
                    "paused",
                    format!(
                        "ready; every worker that can run it is paused (memory over its pause \
                         threshold): {}",
                        list(&names)
                    ),
                ),
                None => {
                    WaitReason::new("busy", "ready; every worker that can run it is busy".into())
                }
            }),
            TaskState::Waiting => {
                let pending: Vec<String> = task
                    .dependencies
                    .iter()
                    .map(|d| &self.tasks[d])
                    .filter(|d| d.state() != TaskState::Memory)
                    .take(3)
                    .map(|d| format!("{} ({})", d.key(), d.state().name()))
                    .collect();
                let more = (task.waiting_on as usize).saturating_sub(pending.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                Some(WaitReason::new(
                    "dependencies",
                    format!(
                        "for {} of its {} inputs: {}{more}",
                        task.waiting_on,
                        task.dependencies.len(),
                        pending.join(", ")
                    ),
                ))
            }
            _ => None,
        }
    }

    /// Why no connected worker can run `task`: the first missing piece of
    /// workers, function, restriction, resources.
    fn no_worker_reason(&self, task: &Task) -> WaitReason {
        let Some(def) = task.def() else {
            return WaitReason::new("no-workers", "scattered data: no worker holds it".into());
        };
        if self.workers.is_empty() {
            return WaitReason::new(
                "no-workers",
                "no worker is connected; it runs when one joins".into(),
            );
        }
        if let Some(cause) = self.stuck_cause(task, false) {
            return WaitReason::new(
                "spill-failed",
                format!(
                    "{}; it runs if that changes, and errs with SpillFailed if it does not \
                     within {} s",
                    cause.describe(),
                    self.config.spill_failed_timeout.as_secs_f64()
                ),
            );
        }
        let offering: Vec<&Worker> = self
            .workers
            .iter()
            .map(|(_, w)| w)
            .filter(|w| w.offers(def.function))
            .collect();
        if offering.is_empty() {
            return WaitReason::new(
                "no-function",
                format!(
                    "no connected worker offers function `{}`; it runs when a worker that \
                     offers it joins",
                    def.function
                ),
            );
        }
        let allowed: Vec<&Worker> = match def.workers() {
            None => offering,
            Some(names) => {
                let allowed: Vec<&Worker> = offering
                    .into_iter()
                    .filter(|w| names.iter().any(|a| *a == w.name || *a == w.address))
                    .collect();
                if allowed.is_empty() {
                    return WaitReason::new(
                        "no-allowed-worker",
                        format!(
                            "it may only run on {}: none of them is connected with function `{}`",
                            list(names),
                            def.function
                        ),
                    );
                }
                allowed
            }
        };
        let needs = def.resources().cloned().unwrap_or_default();
        let missing: Vec<String> = needs
            .iter()
            .filter(|&(_, &amount)| amount > 0.0)
            .filter(|&(name, amount)| {
                !allowed
                    .iter()
                    .any(|w| w.resources.get(name).is_some_and(|have| have >= amount))
            })
            .map(|(name, amount)| {
                let most = allowed
                    .iter()
                    .filter_map(|w| w.resources.get(name))
                    .fold(0.0f64, |a, &b| a.max(b));
                format!("{name}={amount} (the most a worker offers is {most})")
            })
            .collect();
        if !missing.is_empty() {
            return WaitReason::new(
                "no-resources",
                format!(
                    "it needs {}, which no worker offering `{}` has",
                    missing.join(", "),
                    def.function
                ),
            );
        }
        // A worker for each need, but none with all of them at once.
        WaitReason::new(
            "no-resources",
            format!(
                "it needs {}; no single worker offering `{}` has them all",
                needs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                def.function
            ),
        )
    }

    fn client_id(&self, conn: ConnId) -> u64 {
        self.conns.get(&conn).map_or(0, |c| c.id)
    }

    fn task_ref(&self, t: TaskId) -> Value {
        let task = &self.tasks[t];
        json!({"key": task.key(), "state": task.state().name()})
    }

    fn worker_ref(&self, w: WorkerIdx) -> Value {
        match self.workers.get(w.ix()) {
            Some(worker) => {
                json!({"id": worker.id, "name": worker.name, "address": worker.address})
            }
            None => Value::Null,
        }
    }

    /// One task's details as JSON (`None` when no task of `key` is kept).
    /// Lists are cut at [`DETAIL_LIST_MAX`].
    pub fn task_detail(&self, key: &str) -> Option<Value> {
        let t = self.task_id(key)?;
        let task = &self.tasks[t];
        let related = |ids: &mut dyn Iterator<Item = TaskId>, count: usize| {
            let shown: Vec<Value> = ids
                .take(DETAIL_LIST_MAX)
                .map(|d| self.task_ref(d))
                .collect();
            json!({"count": count, "shown": shown})
        };
        let processing_on = match task.state() {
            TaskState::Processing(w) => self.worker_ref(w),
            _ => Value::Null,
        };
        let error = task.rare().error.as_ref().map(|e| {
            json!({
                "type": e.error_type,
                "message": e.message,
                "traceback": e.traceback,
                "origin": e.origin.as_str(),
                "lost": e.lost,
            })
        });
        let waiting = self
            .wait_reason(t)
            .map(|r| json!({"reason": r.code, "message": r.message}));
        let def = task.def();
        Some(json!({
            "key": task.key(),
            "state": task.state().name(),
            "group": self.observe.group_name(task.group),
            "function": def.map(|d| d.function.name.as_str()),
            "priority": task.priority(),
            "resources": def.and_then(|d| d.resources()),
            "allowed_workers": def.and_then(|d| d.workers()),
            "nbytes": task.nbytes,
            "retries_left": task.rare().retries_left,
            "lost_with_workers": task.rare().lost_on,
            "processing_on": processing_on,
            "who_has": task.who_has.iter().take(DETAIL_LIST_MAX).map(|&w| self.worker_ref(w)).collect::<Vec<_>>(),
            "dependencies": related(&mut task.dependencies.iter().copied(), task.dependencies.len()),
            "dependents": related(&mut task.dependents.iter(), task.dependents.iter().count()),
            "waiters": task.waiters,
            "wanted_by_clients": task.wanted_by.iter().map(|&c| self.client_id(c)).collect::<Vec<_>>(),
            "datasets": task.rare().dataset_refs,
            "error": error,
            "waiting": waiting,
        }))
    }

    /// One page of the tasks that wait (waiting, no-worker, queued; only
    /// those in `state` when given), in slot order from `cursor`, with
    /// why each waits. At most `limit` tasks and [`WAITING_SCAN_MAX`]
    /// slots looked at; `next` is where the following page starts (absent
    /// at the end). Tasks that change meanwhile may be missed or listed
    /// twice across pages.
    pub fn waiting_page(&self, cursor: u64, limit: usize, state: Option<&str>) -> WaitingPage {
        let wanted = |s: TaskState| match state {
            Some(name) => s.name() == name,
            None => matches!(
                s,
                TaskState::Waiting | TaskState::NoWorker | TaskState::Queued
            ),
        };
        let mut tasks = Vec::new();
        let start = usize::try_from(cursor).unwrap_or(usize::MAX);
        let end = self.tasks.capacity();
        let mut i = start;
        while i < end && tasks.len() < limit && i - start < WAITING_SCAN_MAX {
            if let Some(task) = self.tasks.get(i) {
                if wanted(task.state()) {
                    if let Some(reason) = self.wait_reason(TaskId::new(i)) {
                        tasks.push(WaitingTask {
                            key: task.key_owned(),
                            state: task.state().name(),
                            reason,
                        });
                    }
                }
            }
            i += 1;
        }
        WaitingPage {
            tasks,
            next: (i < end).then_some(i as u64),
        }
    }
}

/// A task that waits, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingTask {
    /// Its key.
    pub key: Key,
    /// Its state name.
    pub state: &'static str,
    /// Why it waits.
    pub reason: WaitReason,
}

/// One page of [`SchedulerState::waiting_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingPage {
    /// The tasks, in slot order.
    pub tasks: Vec<WaitingTask>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<u64>,
}

impl WaitingPage {
    /// As JSON (the dashboard's `/api/v1/waiting`).
    pub fn to_json(&self) -> Value {
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| {
                json!({
                    "key": t.key.as_str(),
                    "state": t.state,
                    "reason": t.reason.code,
                    "message": t.reason.message,
                })
            })
            .collect();
        json!({"tasks": tasks, "next": self.next})
    }
}

fn list(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(5).map(|n| format!("{n:?}")).collect();
    let more = names.len().saturating_sub(shown.len());
    if more > 0 {
        format!("[{} and {more} more]", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}
