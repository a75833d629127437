//! `/metrics`: the published snapshot in Prometheus's text exposition
//! format (0.0.4). Names follow Prometheus's rules: a `dask_scheduler_` or
//! `dask_worker_` prefix, base units (`_seconds`, `_bytes`), `_total` on
//! counters. Labels are bounded: task states, task groups (at most
//! [`TASK_GROUPS_MAX`](crate::state::observe::TASK_GROUPS_MAX)), removal
//! reasons and error-code names; never a key or a worker id.
//!
//! Workers' metrics come through the scheduler (their heartbeats) and are
//! summed over the cluster here: one scrape target, one set of
//! credentials, no port per worker to open and discover, and bounded
//! series however many workers come and go; per-worker figures are on the
//! dashboard and `/api/v1/workers`.

use std::fmt::Write;
use std::time::Instant;

use super::Published;
use crate::state::observe::GroupView;

/// A counter by task group: name, help, the value of a group.
type GroupCounter = (&'static str, &'static str, fn(&GroupView) -> f64);

/// A metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() {
        // Integers print without a fraction; Prometheus reads both.
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        }
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// The exposition of `p`.
pub fn render(p: &Published, _now: Instant) -> String {
    let s = &p.state;
    let mut out = String::with_capacity(4096 + 256 * s.groups.len());
    let o = &mut out;

    let mut f = family(
        o,
        "dask_scheduler_tasks",
        "gauge",
        "Tasks the scheduler keeps, by state.",
    );
    for (state, n) in &s.tasks {
        f.sample(&[("state", state)], *n as f64);
    }
    family(
        o,
        "dask_scheduler_task_groups",
        "gauge",
        "Task groups (key prefixes) with tasks kept or counted.",
    )
    .sample(&[], s.groups.len() as f64);
    let mut f = family(
        o,
        "dask_scheduler_task_group_tasks",
        "gauge",
        "Tasks kept, by task group (key prefix) and state.",
    );
    for g in &s.groups {
        for (state, n) in &g.states {
            f.sample(&[("task_group", &g.name), ("state", state)], *n as f64);
        }
    }
    let per_group: [GroupCounter; 4] = [
        (
            "dask_scheduler_tasks_finished_total",
            "Tasks that reached memory from a worker, by task group.",
            |g| g.finished_total as f64,
        ),
        (
            "dask_scheduler_tasks_erred_total",
            "Tasks that became erred (their own error or a dependency's), by task group.",
            |g| g.erred_total as f64,
        ),
        (
            "dask_scheduler_tasks_lost_total",
            "Results lost with their last worker, by task group.",
            |g| g.lost_total as f64,
        ),
        (
            "dask_scheduler_tasks_compute_seconds_total",
            "Seconds finished tasks ran on workers, as they reported, by task group.",
            |g| g.compute_seconds_total,
        ),
    ];
    for (name, help, value) in per_group {
        let mut f = family(o, name, "counter", help);
        for g in &s.groups {
            f.sample(&[("task_group", &g.name)], value(g));
        }
    }
    let c = &s.counters;
    let scalars: [(&'static str, &str, &str, f64); 13] = [
        (
            "dask_scheduler_graphs_total",
            "counter",
            "Graphs accepted.",
            c.graphs_total as f64,
        ),
        (
            "dask_scheduler_tasks_submitted_total",
            "counter",
            "New tasks in accepted graphs.",
            c.tasks_submitted_total as f64,
        ),
        (
            "dask_scheduler_killed_worker_total",
            "counter",
            "Tasks erred with KilledWorker (lost with too many workers).",
            c.killed_worker_total as f64,
        ),
        (
            "dask_scheduler_workers",
            "gauge",
            "Registered workers.",
            s.workers.len() as f64,
        ),
        (
            "dask_scheduler_workers_added_total",
            "counter",
            "Workers that registered.",
            c.workers_added as f64,
        ),
        (
            "dask_scheduler_clients",
            "gauge",
            "Connected clients.",
            s.clients.len() as f64,
        ),
        (
            "dask_scheduler_clients_added_total",
            "counter",
            "Clients that connected.",
            c.clients_added as f64,
        ),
        (
            "dask_scheduler_clients_removed_total",
            "counter",
            "Clients that left.",
            c.clients_removed as f64,
        ),
        (
            "dask_scheduler_stored_bytes",
            "gauge",
            "Bytes of results held on workers, as the scheduler counts them (one per copy).",
            s.stored_bytes as f64,
        ),
        (
            "dask_scheduler_memory_limit_bytes",
            "gauge",
            "Sum of the workers' memory limits (workers without one add nothing).",
            s.memory_limit as f64,
        ),
        (
            "dask_scheduler_event_loop_busy_seconds_total",
            "counter",
            "Seconds the event loop spent handling events.",
            p.event_loop.busy_seconds_total,
        ),
        (
            "dask_scheduler_event_loop_busy_ratio",
            "gauge",
            "Share of the last half second the event loop was busy (0 to 1).",
            p.event_loop.busy_fraction,
        ),
        (
            "dask_scheduler_event_handling_maximum_seconds",
            "gauge",
            "Longest single wakeup of the event loop in the last half second.",
            p.event_loop.longest_event_seconds,
        ),
    ];
    for (name, kind, help, value) in scalars {
        family(o, name, kind, help).sample(&[], value);
    }
    family(
        o,
        "dask_scheduler_uptime_seconds",
        "gauge",
        "Seconds since the scheduler started.",
    )
    .sample(&[], s.uptime_seconds);
    let mut f = family(
        o,
        "dask_scheduler_workers_removed_total",
        "counter",
        "Workers removed, by reason: closed (said close), lost (connection dropped or broke \
         the protocol), timeout (heartbeat).",
    );
    for reason in ["closed", "lost", "timeout"] {
        let n = c.workers_removed.get(reason).copied().unwrap_or(0);
        f.sample(&[("reason", reason)], n as f64);
    }
    let mut f = family(
        o,
        "dask_scheduler_connections_refused_total",
        "counter",
        "Connections closed before they were a client or a registered worker, by error code name.",
    );
    for (reason, n) in &c.connections_refused {
        f.sample(&[("reason", reason)], *n as f64);
    }

    // Workers, summed over the cluster (their heartbeats).
    let threads: u64 = s.workers.iter().map(|w| u64::from(w.nthreads)).sum();
    family(
        o,
        "dask_worker_threads",
        "gauge",
        "Threads of all registered workers.",
    )
    .sample(&[], threads as f64);
    let executing: u64 = s
        .workers
        .iter()
        .filter_map(|w| w.executing)
        .map(u64::from)
        .sum();
    let ready: u64 = s
        .workers
        .iter()
        .filter_map(|w| w.ready)
        .map(u64::from)
        .sum();
    let mut f = family(
        o,
        "dask_worker_tasks",
        "gauge",
        "Tasks on workers by state, as their last heartbeats said: executing, or ready \
         (assigned, waiting for dependencies or a thread).",
    );
    f.sample(&[("state", "executing")], executing as f64);
    f.sample(&[("state", "ready")], ready as f64);
    family(
        o,
        "dask_worker_memory_bytes",
        "gauge",
        "Bytes of values workers hold (spilled included), as their last heartbeats said.",
    )
    .sample(&[], s.reported_bytes as f64);
    family(
        o,
        "dask_worker_spilled_bytes",
        "gauge",
        "Of those, bytes spilled out of memory (to disk), as their last heartbeats said.",
    )
    .sample(&[], s.spilled_bytes as f64);
    let paused = s.workers.iter().filter(|w| w.paused).count();
    let stuck = s.workers.iter().filter(|w| w.stuck).count();
    let mut f = family(
        o,
        "dask_worker_paused",
        "gauge",
        "Workers paused (memory over their pause threshold: no task is placed on them), by \
         whether they can spill: spill_failed=\"true\" cannot (a full disk), so they run \
         nothing until that changes.",
    );
    f.sample(
        &[("spill_failed", "false")],
        paused.saturating_sub(stuck) as f64,
    );
    f.sample(&[("spill_failed", "true")], stuck as f64);
    family(
        o,
        "dask_worker_transfer_seconds_total",
        "counter",
        "Seconds workers spent fetching values from peers (get-data sent to its last data \
         reply, summed over requests), as their heartbeats said; departed workers included.",
    )
    .sample(&[], s.transfers.us as f64 / 1e6);
    family(
        o,
        "dask_worker_transfer_bytes_total",
        "counter",
        "Bytes of values workers fetched from peers, as their heartbeats said; departed \
         workers included.",
    )
    .sample(&[], s.transfers.bytes as f64);
    family(
        o,
        "dask_worker_transfer_local_bytes_total",
        "counter",
        "Of those, bytes read from peers' memory on the same host (value-local) rather than \
         by their connections, as their heartbeats said; departed workers included.",
    )
    .sample(&[], s.transfers.local_bytes as f64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_labels_are_written_as_prometheus_reads_them() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
