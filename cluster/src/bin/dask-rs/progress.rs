//! `run` and `submit` on a cluster: submitting, the progress line, why keys
//! wait, the results.

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dask_client::{Client, Error, Future};
use dask_cluster::graph_file::GraphFile;
use dask_core::messages::TaskSpec;
use dask_core::Key;

use crate::*;

/// Graphs of at most this many tasks want every task, so progress counts
/// each; larger ones want only their wanted keys (a want per task cost the
/// scheduler and this client memory and time per task: 10M futures were
/// ~8 GB here).
pub(crate) const PROGRESS_PER_TASK_MAX: usize = 100_000;

/// Submits the graph, waits (showing progress and why keys wait), prints
/// the results sorted by key and the errors on stderr.
///
/// A graph of at most [`PROGRESS_PER_TASK_MAX`] tasks has every task
/// wanted, so progress counts this graph's own tasks (not other clients');
/// a task that is not in `wanted` is released as soon as it is done, so
/// its result is freed as it would have been. A larger graph wants only
/// its wanted keys, and progress counts those.
pub(crate) fn execute(
    client: &Client,
    file: GraphFile,
    progress: Option<Duration>,
) -> Result<(), Failure> {
    let mut wanted = file.wanted;
    wanted.sort();
    wanted.dedup();
    let tasks = file.graph.into_tasks();
    let Some(every) = every_key(&tasks, &wanted) else {
        if progress.is_some() {
            eprintln!(
                "dask-rs: {} tasks (over {PROGRESS_PER_TASK_MAX}): progress counts the {} wanted \
                 keys",
                tasks.len(),
                wanted.len()
            );
        }
        let futures = client.submit_tasks(tasks, wanted);
        let (finished, errors) = follow(futures, None, progress);
        return print_results(client, finished, errors);
    };
    let wanted_set: HashSet<Key> = wanted.into_iter().collect();
    let futures = client.submit_tasks(tasks, every);
    let (finished, errors) = follow(futures, Some(&wanted_set), progress);
    print_results(client, finished, errors)
}

/// Every key of the graph and the wanted keys it does not define, or
/// `None` for a graph of more than [`PROGRESS_PER_TASK_MAX`] tasks (only
/// its wanted keys are asked for).
pub(crate) fn every_key(tasks: &[TaskSpec], wanted: &[Key]) -> Option<Vec<Key>> {
    if tasks.len() > PROGRESS_PER_TASK_MAX {
        return None;
    }
    let mut every: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    let defined: HashSet<&Key> = tasks.iter().map(|t| &t.key).collect();
    let elsewhere: Vec<Key> = wanted
        .iter()
        .filter(|k| !defined.contains(k))
        .cloned()
        .collect();
    every.extend(elsewhere);
    Some(every)
}

/// Prints the finished keys' results sorted by key, and fails with the
/// errors when there are any.
pub(crate) fn print_results(
    client: &Client,
    finished: Vec<Future>,
    errors: Vec<(Key, Error)>,
) -> Result<(), Failure> {
    let values = client.gather_raw(&finished).map_err(failed)?;
    let mut out = std::io::stdout().lock();
    for (f, raw) in finished.iter().zip(&values) {
        let json = dask_core::json::msgpack_to_json(raw.as_bytes())
            .map(|j| j.to_string())
            .unwrap_or_else(|e| format!("<undecodable: {e}>"));
        let _ = writeln!(out, "{} = {json}", f.key());
    }
    let _ = out.flush();
    if errors.is_empty() {
        return Ok(());
    }
    let message = errors
        .iter()
        .map(|(k, e)| format!("{k}: {e}"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(failed(message))
}

/// Follows the graph's futures until all are done: draws progress (see
/// [`Reporter`]), prints why keys wait as soon as the scheduler says,
/// drops the futures of keys not wanted once done (`None`: every key is).
/// Returns the wanted futures that finished, sorted by key, and the wanted
/// keys' errors.
pub(crate) fn follow(
    futures: Vec<Future>,
    wanted: Option<&HashSet<Key>>,
    progress: Option<Duration>,
) -> (Vec<Future>, Vec<(Key, Error)>) {
    let total = futures.len();
    let is_wanted = |k: &Key| wanted.is_none_or(|w| w.contains(k));
    // The graph's own keys, to tell a key waiting on another of them
    // apart; when only the wanted keys are followed (a large graph) every
    // waiting key is told.
    let all: HashSet<Key> = match wanted {
        Some(_) => futures.iter().map(|f| f.key().clone()).collect(),
        None => HashSet::new(),
    };
    let reporter = Reporter::new(progress);
    let mut pending = futures;
    let mut finished: Vec<Future> = Vec::new();
    let mut errors: Vec<(Key, Error)> = Vec::new();
    let (mut done, mut erred) = (0usize, 0usize);
    let mut told: HashSet<Key> = HashSet::new();
    loop {
        let mut still = Vec::with_capacity(pending.len());
        let mut newly_waiting: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for f in pending {
            if !f.done() {
                if let Some(w) = f.waiting() {
                    // A key of this graph that waits on another of its
                    // tasks: that task is told about itself.
                    let own = w.task.as_ref().is_some_and(|t| all.contains(t));
                    if told.insert(f.key().clone()) && !own {
                        newly_waiting
                            .entry(w.to_string())
                            .or_default()
                            .push(f.key().clone());
                    }
                }
                still.push(f);
                continue;
            }
            done += 1;
            match f.wait() {
                Ok(()) if is_wanted(f.key()) => finished.push(f),
                Ok(()) => {}
                Err(e) => {
                    erred += 1;
                    if is_wanted(f.key()) {
                        errors.push((f.key().clone(), e));
                    }
                }
            }
        }
        pending = still;
        if !newly_waiting.is_empty() {
            reporter.break_line();
            print_waiting(&newly_waiting);
        }
        if pending.is_empty() {
            break;
        }
        reporter.update(done, total, erred);
        std::thread::sleep(PROGRESS_INTERVAL);
    }
    reporter.finish(done, total, erred);
    finished.sort_by(|a, b| a.key().cmp(b.key()));
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    (finished, errors)
}

/// Progress on stderr, for a cluster's run and the in-process one alike:
/// on a terminal a bar redrawn at most every [`PROGRESS_INTERVAL`];
/// otherwise a line every `every` (none for a run shorter than that:
/// scripts see only what matters); nothing when `every` is `None`
/// (--quiet). It may be told from several threads at once.
pub(crate) struct Reporter {
    every: Option<Duration>,
    tty: bool,
    started: Instant,
    drawn: Mutex<Drawn>,
}

#[derive(Default)]
pub(crate) struct Drawn {
    /// When the bar was drawn or the line printed last.
    last: Option<Instant>,
    /// Lines printed (not a terminal).
    lines: usize,
    /// The bar is on the current line of the terminal.
    bar_shown: bool,
}

impl Reporter {
    pub(crate) fn new(every: Option<Duration>) -> Reporter {
        Reporter {
            every,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: Mutex::new(Drawn::default()),
        }
    }

    pub(crate) fn update(&self, done: usize, total: usize, erred: usize) {
        let Some(every) = self.every else {
            return;
        };
        // Another thread is drawing: this update is not needed.
        let Ok(mut drawn) = self.drawn.try_lock() else {
            return;
        };
        let period = if self.tty { PROGRESS_INTERVAL } else { every };
        let since = drawn.last.unwrap_or(self.started);
        if since.elapsed() < period {
            return;
        }
        self.draw(&mut drawn, done, total, erred);
    }

    /// The last update: the bar at its end, or the last line when lines
    /// were printed.
    pub(crate) fn finish(&self, done: usize, total: usize, erred: usize) {
        if self.every.is_none() {
            return;
        }
        let Ok(mut drawn) = self.drawn.lock() else {
            return;
        };
        if self.tty || drawn.lines > 0 {
            self.draw(&mut drawn, done, total, erred);
        }
        if drawn.bar_shown {
            eprintln!();
            drawn.bar_shown = false;
        }
    }

    /// Ends the bar's line, so that a message printed next has its own.
    pub(crate) fn break_line(&self) {
        if let Ok(mut drawn) = self.drawn.lock() {
            if drawn.bar_shown {
                eprintln!();
                drawn.bar_shown = false;
            }
        }
    }

    pub(crate) fn draw(&self, drawn: &mut Drawn, done: usize, total: usize, erred: usize) {
        let line = progress_line(done, total, erred, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        if self.tty {
            let filled = (done * PROGRESS_WIDTH)
                .checked_div(total)
                .unwrap_or(PROGRESS_WIDTH)
                .min(PROGRESS_WIDTH);
            let _ = write!(
                err,
                "\r[{}{}] {line}",
                "#".repeat(filled),
                ".".repeat(PROGRESS_WIDTH - filled)
            );
            drawn.bar_shown = true;
        } else {
            let _ = writeln!(err, "dask-rs: {line}");
            drawn.lines += 1;
        }
        let _ = err.flush();
        drawn.last = Some(Instant::now());
    }
}

/// `12/50 tasks, 2 erred, 3.4 tasks/s, 12 s elapsed`.
pub(crate) fn progress_line(done: usize, total: usize, erred: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let errors = if erred > 0 {
        format!(", {erred} erred")
    } else {
        String::new()
    };
    let elapsed = if secs < 60.0 {
        format!("{secs:.0} s")
    } else {
        format!("{}:{:02}", elapsed.as_secs() / 60, elapsed.as_secs() % 60)
    };
    format!("{done}/{total} tasks{errors}, {rate:.1} tasks/s, {elapsed} elapsed")
}

/// `dask-rs: waiting: KEY: REASON`, a few keys per reason.
pub(crate) fn print_waiting(by_reason: &BTreeMap<String, Vec<Key>>) {
    let mut err = std::io::stderr().lock();
    for (why, keys) in by_reason {
        let shown: Vec<&str> = keys
            .iter()
            .take(WAITING_KEYS_SHOWN)
            .map(Key::as_str)
            .collect();
        let more = keys.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = writeln!(err, "dask-rs: waiting: {}{more}: {why}", shown.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::client::task_spec;

    fn specs(n: usize) -> Vec<TaskSpec> {
        (0..n)
            .map(|i| task_spec(Key(format!("t-{i}")), "inc", &[i.into()], &[]))
            .collect()
    }

    #[test]
    fn a_small_graph_wants_every_task_and_a_large_one_only_its_wanted_keys() {
        let wanted = vec![Key::from("t-1"), Key::from("elsewhere")];
        let every = every_key(&specs(3), &wanted).expect("small: every key");
        let names: Vec<&str> = every.iter().map(Key::as_str).collect();
        assert_eq!(names, ["t-0", "t-1", "t-2", "elsewhere"]);
        assert_eq!(every_key(&specs(PROGRESS_PER_TASK_MAX + 1), &wanted), None);
    }

    #[test]
    fn a_progress_line_says_done_of_total_errors_rate_and_elapsed_time() {
        let line = |done, erred, secs| progress_line(done, 50, erred, Duration::from_secs(secs));
        assert_eq!(line(12, 0, 4), "12/50 tasks, 3.0 tasks/s, 4 s elapsed");
        assert_eq!(
            line(12, 2, 4),
            "12/50 tasks, 2 erred, 3.0 tasks/s, 4 s elapsed"
        );
        assert_eq!(line(50, 0, 125), "50/50 tasks, 0.4 tasks/s, 2:05 elapsed");
        assert_eq!(line(0, 0, 0), "0/50 tasks, 0.0 tasks/s, 0 s elapsed");
    }
}
