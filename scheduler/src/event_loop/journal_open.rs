//! Opening the journal (`--journal DIR`) at start-up, and the errors of
//! a journal that cannot be used.

use std::io;

use dask_core::log::{Level, LogRecord};
use dask_net::log::Logger;

use crate::journal::Journal;
use crate::state::SchedulerState;

/// The error that ends the loop when the journal cannot be written.
pub(super) fn journal_failed(e: crate::journal::JournalError) -> io::Error {
    io::Error::other(format!(
        "{e}; stopping without sending what it could not make durable (restart on the same \
         --journal once the disk is fixed)"
    ))
}

/// Why the journal cannot be used (inside the `io::Error` that
/// [`EventLoop::bind`](super::EventLoop::bind) returns): one line naming the file and the reason.
#[derive(Debug)]
pub struct JournalRefused(pub String);

impl std::fmt::Display for JournalRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JournalRefused {}

/// Opens the journal in `dir`, restores `state` from it and compacts it
/// to the restored state. Errors are one line naming the file.
pub(super) fn open_journal(
    dir: &std::path::Path,
    state: &mut SchedulerState,
    logger: &Logger,
) -> io::Result<Journal> {
    let refused = |message: String| io::Error::other(JournalRefused(message));
    let (mut journal, recovered) = Journal::open(dir).map_err(|e| refused(e.to_string()))?;
    let file = dir.join(crate::journal::JOURNAL_FILE);
    let summary = state
        .restore(recovered.snapshot.as_deref(), &recovered.events)
        .map_err(|e| {
            refused(format!(
                "{}: {e}: not a journal this scheduler can restore; move it away to start \
                 afresh",
                file.display()
            ))
        })?;
    if recovered.cut_bytes > 0 {
        logger.log(
            &LogRecord::new(
                Level::Warn,
                "journal-tail-cut",
                format!(
                    "{}: cut {} bytes of a torn or corrupt tail (records never acknowledged)",
                    file.display(),
                    recovered.cut_bytes
                ),
            )
            .with("bytes", recovered.cut_bytes as f64),
        );
    }
    if summary.records > 0 {
        logger.log(&LogRecord::new(
            Level::Info,
            "journal-restored",
            format!(
                "restored from {}: {} tasks, {} client sessions (waiting for their clients), {} \
                 datasets, {} results last known on {} workers (placement waits for them){}",
                file.display(),
                summary.tasks,
                summary.sessions,
                summary.datasets,
                summary.results,
                summary.workers_awaited,
                if summary.graphs_dropped > 0 {
                    format!(
                        "; {} graphs not restored (they referred to keys the journal did not \
                         know)",
                        summary.graphs_dropped
                    )
                } else {
                    String::new()
                }
            ),
        ));
    }
    journal
        .compact(&state.journal_snapshot())
        .map_err(|e| refused(e.to_string()))?;
    Ok(journal)
}
