//! `dask-rs info`: a cluster's workers and tasks, and the tasks that wait.

use std::collections::BTreeMap;
use std::io::Write;

use dask_client::{Client, WaitingKey};
use dask_core::messages::ClusterInfoReply;

use crate::*;

/// Most tasks `dask-rs info` pages through (without --waiting) to name
/// the keys that cannot run.
pub(crate) const INFO_WAITING_SCAN: usize = 10_000;

/// The tasks that wait, with why: every page (`all`), or the first pages
/// up to [`INFO_WAITING_SCAN`] tasks. `None` when the scheduler cannot
/// tell (dask/1.0).
pub(crate) fn waiting_tasks(
    client: &Client,
    state: Option<&str>,
    all: bool,
) -> Option<Vec<WaitingKey>> {
    let mut tasks = Vec::new();
    let mut cursor = 0;
    loop {
        let (page, next) = client.waiting_keys(state, cursor, Some(1000)).ok()?;
        tasks.extend(page);
        match next {
            Some(n) if all || tasks.len() < INFO_WAITING_SCAN => cursor = n,
            _ => return Some(tasks),
        }
    }
}

pub(crate) fn info(a: &InfoArgs) -> Result<(), Failure> {
    let client = connect(&a.scheduler)?;
    let info = client.cluster_info().map_err(failed)?;
    let waiting = if a.waiting {
        waiting_tasks(&client, None, true)
    } else if info.tasks.get("no-worker").copied().unwrap_or(0) > 0 {
        waiting_tasks(&client, Some("no-worker"), false)
    } else {
        Some(Vec::new())
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut json = info_json(client.address(), &info);
        if let Some(w) = &waiting {
            json["waiting"] = w
                .iter()
                .map(|t| {
                    serde_json::json!({"key": t.key.as_str(), "state": t.state,
                                       "reason": t.reason, "message": t.message})
                })
                .collect();
        }
        let _ = writeln!(out, "{json}");
        return Ok(());
    }
    let _ = writeln!(out, "scheduler: {}", client.address());
    let _ = writeln!(out, "clients: {}", info.clients);
    let _ = writeln!(out, "workers: {}", info.workers.len());
    for w in &info.workers {
        let _ = writeln!(
            out,
            "  {} {} threads={} functions={} processing={} stored={} keys / {} bytes",
            w.name,
            w.address,
            w.nthreads,
            w.functions.len(),
            w.processing,
            w.stored_keys,
            w.stored_bytes
        );
    }
    let total: u64 = info.tasks.values().sum();
    let _ = writeln!(out, "tasks: {total}");
    for (state, n) in &info.tasks {
        let _ = writeln!(out, "  {state}: {n}");
    }
    let count = |s: &str| info.tasks.get(s).copied().unwrap_or(0);
    if count("waiting") + count("queued") + count("no-worker") == 0 {
        return Ok(());
    }
    let _ = writeln!(out, "not running yet, and why:");
    if count("waiting") > 0 {
        let _ = writeln!(
            out,
            "  {} waiting: for their inputs to be computed",
            count("waiting")
        );
    }
    if count("queued") > 0 {
        let _ = writeln!(
            out,
            "  {} queued: ready, for a free thread on a worker",
            count("queued")
        );
    }
    match &waiting {
        None => {
            let _ = writeln!(
                out,
                "  {} no-worker: no connected worker can run them (this scheduler speaks \
                 dask/1.0: it cannot say which keys or why)",
                count("no-worker")
            );
        }
        Some(tasks) if !a.waiting => {
            let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for t in tasks.iter().filter(|t| t.state == "no-worker") {
                by_reason
                    .entry(&t.message)
                    .or_default()
                    .push(t.key.as_str());
            }
            let _ = writeln!(
                out,
                "  {} no-worker: no connected worker can run them:",
                count("no-worker")
            );
            for (why, keys) in by_reason {
                let shown: Vec<&str> = keys.iter().take(10).copied().collect();
                let more = keys.len() - shown.len();
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                let _ = writeln!(out, "    {}{more}: {why}", shown.join(", "));
            }
            let _ = writeln!(out, "  (dask-rs info --waiting lists every waiting task)");
        }
        Some(tasks) => {
            let _ = writeln!(out, "every waiting task:");
            for t in tasks {
                let _ = writeln!(out, "  {} {} {}: {}", t.key, t.state, t.reason, t.message);
            }
        }
    }
    Ok(())
}

pub(crate) fn info_json(address: &str, info: &ClusterInfoReply) -> serde_json::Value {
    let workers: Vec<serde_json::Value> = info
        .workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "id": w.id,
                "name": w.name,
                "address": w.address,
                "nthreads": w.nthreads,
                "memory_limit": w.memory_limit,
                "resources": w.resources,
                "functions": w.functions,
                "processing": w.processing,
                "stored_keys": w.stored_keys,
                "stored_bytes": w.stored_bytes,
            })
        })
        .collect();
    serde_json::json!({
        "scheduler": address,
        "clients": info.clients,
        "workers": workers,
        "tasks": info.tasks,
    })
}
