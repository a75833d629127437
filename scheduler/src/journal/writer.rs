//! Group commit off the event loop's thread.
//!
//! A `fdatasync` takes a millisecond or more on this project's disks (8 ms
//! at the 90th percentile under load): made on the loop's thread, once per
//! wakeup, it stopped every connection for that long, workers included,
//! and cost a third of the task throughput. So a thread of its own writes
//! and syncs the records while the loop goes on; the loop hands it each
//! wakeup's records as one batch, and whatever batches queued while a sync
//! was in flight go out together in the next write and sync.
//!
//! The loop learns how far the file is durable from [`JournalWriter::durable`]
//! (records are counted from 1 in the order they were appended) and is
//! woken through the reactor's waker each time that count moves or the
//! thread fails. What it may send before that is the event loop's rule
//! (see `event_loop.rs`, "What waits for the journal").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_net::Waker;

use super::{compaction_due, format, Journal, JournalError};

/// Syncs start at least this far apart. Each `fdatasync` costs the
/// process CPU as well as time (about 50 µs here: the virtual disk's
/// doorbell, the inode's new size): under a stream of results, syncing as
/// fast as the disk allows spent an eighth of the scheduler's CPU on it.
/// The price is latency: a reply that waits for a record waits up to this
/// long more.
const COMMIT_INTERVAL_MIN: Duration = Duration::from_millis(2);

/// What the loop hands the writing thread.
enum Job {
    /// Records to append; `through` is the count of the last one.
    Append { records: Vec<Vec<u8>>, through: u64 },
    /// Replace the file by this snapshot (after what came before it).
    Compact(Vec<u8>),
    /// Commit what came before, then end.
    Finish,
}

/// What the thread tells the loop.
#[derive(Debug, Default)]
struct Progress {
    /// Count of the last record that is durable.
    durable: AtomicU64,
    /// The write or sync that failed; the thread ended on it.
    failed: Mutex<Option<JournalError>>,
}

/// The loop's side of the writing thread (see the module docs).
#[derive(Debug)]
pub struct JournalWriter {
    jobs: Sender<JobBox>,
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
    /// Records of this wakeup, not handed over yet.
    batch: Vec<Vec<u8>>,
    /// Records appended so far (the count of the last one).
    appended: u64,
    /// Bytes handed over since the last snapshot, and the snapshot's, for
    /// [`JournalWriter::should_compact`].
    event_bytes: u64,
    snapshot_bytes: u64,
}

/// `Job` behind a newtype so `JournalWriter` can derive `Debug`.
struct JobBox(Job);

impl std::fmt::Debug for JobBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl JournalWriter {
    /// Starts the thread that owns `journal` from now on; it wakes `waker`
    /// whenever more is durable or it failed.
    pub fn start(journal: Journal, waker: Waker) -> std::io::Result<JournalWriter> {
        let (jobs, rx) = channel();
        let progress = Arc::new(Progress::default());
        let snapshot_bytes = journal.snapshot_bytes;
        let event_bytes = journal.event_bytes;
        let shared = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || write_loop(journal, &rx, &shared, &waker))?;
        Ok(JournalWriter {
            jobs,
            progress,
            thread: Some(thread),
            batch: Vec::new(),
            appended: 0,
            event_bytes,
            snapshot_bytes,
        })
    }

    /// Queues one record; returns its count.
    pub fn append(&mut self, record: Vec<u8>) -> u64 {
        self.event_bytes += (record.len() + format::RECORD_HEADER_BYTES) as u64;
        self.batch.push(record);
        self.appended += 1;
        self.appended
    }

    /// Count of the last record appended.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// Count of the last record that is durable.
    pub fn durable(&self) -> u64 {
        self.progress.durable.load(Ordering::Acquire)
    }

    /// Hands this wakeup's records to the thread (one batch).
    pub fn submit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.batch);
        let through = self.appended;
        // A send fails only when the thread ended, on an error that
        // `check` reports.
        let _ = self.jobs.send(JobBox(Job::Append { records, through }));
    }

    /// Whether the events since the last snapshot outweigh it enough that
    /// a new snapshot should replace them.
    pub fn should_compact(&self) -> bool {
        compaction_due(self.event_bytes, self.snapshot_bytes)
    }

    /// Replaces the file by `snapshot` (the whole live state, covering
    /// every record appended so far), after what was submitted before.
    pub fn compact(&mut self, snapshot: Vec<u8>) {
        self.submit();
        self.snapshot_bytes = (snapshot.len() + format::RECORD_HEADER_BYTES) as u64;
        self.event_bytes = 0;
        let _ = self.jobs.send(JobBox(Job::Compact(snapshot)));
    }

    /// The error the thread ended on, if it did.
    pub fn check(&self) -> Result<(), JournalError> {
        match self.progress.failed.lock() {
            Ok(mut failed) => failed.take().map_or(Ok(()), Err),
            Err(_) => Err(thread_died()),
        }
    }

    /// Submits what is left, waits until it is durable and ends the thread.
    pub fn finish(mut self) -> Result<(), JournalError> {
        self.submit();
        let _ = self.jobs.send(JobBox(Job::Finish));
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                return Err(thread_died());
            }
        }
        self.check()?;
        if self.durable() < self.appended {
            return Err(thread_died());
        }
        Ok(())
    }
}

fn thread_died() -> JournalError {
    JournalError::Io(
        std::path::PathBuf::from("(journal thread)"),
        std::io::Error::other("the journal's writing thread ended without committing"),
    )
}

/// The thread: takes every job queued, commits them in one write and one
/// `fdatasync` (a compaction in between commits what came before it),
/// publishes the count, and waits for more.
fn write_loop(mut journal: Journal, rx: &Receiver<JobBox>, progress: &Progress, waker: &Waker) {
    let fail = |e: JournalError| {
        if let Ok(mut failed) = progress.failed.lock() {
            *failed = Some(e);
        }
        let _ = waker.wake();
    };
    let mut last_commit: Option<Instant> = None;
    while let Ok(JobBox(first)) = rx.recv() {
        // Records that come while the last sync is young wait a little and
        // share the next one.
        if let Some(at) = last_commit {
            let young = COMMIT_INTERVAL_MIN.saturating_sub(at.elapsed());
            if !young.is_zero() {
                std::thread::sleep(young);
            }
        }
        last_commit = Some(Instant::now());
        let mut through = None;
        let mut finish = false;
        let mut job = Some(first);
        while let Some(j) = job.take() {
            match j {
                Job::Append {
                    records,
                    through: t,
                } => {
                    for r in &records {
                        journal.append(r);
                    }
                    through = Some(t);
                }
                Job::Compact(snapshot) => {
                    if let Err(e) = journal.compact(&snapshot) {
                        return fail(e);
                    }
                }
                Job::Finish => finish = true,
            }
            if !finish {
                job = rx.try_recv().ok().map(|JobBox(j)| j);
            }
        }
        if let Err(e) = journal.commit() {
            return fail(e);
        }
        if let Some(t) = through {
            progress.durable.store(t, Ordering::Release);
            let _ = waker.wake();
        }
        if finish {
            return;
        }
    }
}
