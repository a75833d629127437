//! Group commit off the event loop's thread.
//!
//! A `fdatasync` takes a millisecond or more on this project's disks (8 ms
//! at the 90th percentile under load): made on the loop's thread, once per
//! wakeup, it stopped every connection for that long, workers included,
//! and cost a third of the task throughput. So a thread of its own writes
//! and syncs the records while the loop goes on; the loop hands it each
//! wakeup's records as one batch, and whatever batches queued while the
//! thread was busy go out together in its next write.
//!
//! A record needs to be durable only once something that depends on it is
//! to leave: a message to a client (see `event_loop.rs`, "What waits for
//! the journal"). So the thread writes every batch at once (a written
//! record survives the scheduler's own crash: it is in the kernel's page
//! cache) and syncs only when the loop asks for records to be durable
//! ([`JournalWriter::want_durable`]), or a second after a write nobody
//! waited for (so a crash of the machine loses at most that second, which
//! only means results computed again). Each sync cost this process about
//! 100 µs of CPU (the virtual disk's doorbell, the flush's completion):
//! syncing every batch of a stream of results nobody waited for (a tree
//! whose client wants its root) was two thirds of the journal's cost.
//!
//! The loop learns how far the file is durable from [`JournalWriter::durable`]
//! (records are counted from 1 in the order they were appended) and is
//! woken through the reactor's waker each time that count moves or the
//! thread fails. What it may send before that is the event loop's rule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_net::Waker;

use super::{compaction_due, format, Journal, JournalError};

/// The thread's turns (a write, and a sync if one is wanted) start at
/// least this far apart, so a stream of results shares them: each costs
/// the process CPU (a wakeup, a `write`; a sync about 100 µs). The price
/// is latency: a reply that waits for a record waits up to this long more.
const COMMIT_INTERVAL_MIN: Duration = Duration::from_millis(2);

/// Bytes a live task is taken to add to a snapshot until one with many
/// tasks was made (then its own mean is used): a small `inc` task with its
/// key wanted writes about 70.
const SNAPSHOT_BYTES_PER_TASK: u64 = 64;

/// A snapshot of at least this many tasks sets the bytes per task.
const SNAPSHOT_TASKS_TO_MEASURE: usize = 1000;

/// Records written and not waited for are synced at most this long after
/// they were written.
const SYNC_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// What the loop hands the writing thread.
enum Job {
    /// Records to append, framed (`format::encode_record`); `through` is
    /// the count of the last one.
    Append { framed: Vec<u8>, through: u64 },
    /// Make the records through this count durable.
    Sync(u64),
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
    /// Records of this wakeup, framed, not handed over yet (the state
    /// frames its records itself, in a buffer that becomes this one).
    batch: Vec<u8>,
    /// Records appended so far (the count of the last one).
    appended: u64,
    /// The highest count asked to be durable ([`JournalWriter::want_durable`]).
    sync_asked: u64,
    /// Bytes handed over since the last snapshot, and the snapshot's, for
    /// [`JournalWriter::should_compact`].
    event_bytes: u64,
    snapshot_bytes: u64,
    /// Bytes per live task of the last snapshot of many tasks, to judge
    /// what one would cost now.
    snapshot_bytes_per_task: u64,
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
        JournalWriter::start_syncing_within(journal, waker, SYNC_INTERVAL_MAX)
    }

    /// [`JournalWriter::start`], syncing records nobody waits for at most
    /// `sync_within` after they were written.
    pub fn start_syncing_within(
        journal: Journal,
        waker: Waker,
        sync_within: Duration,
    ) -> std::io::Result<JournalWriter> {
        let (jobs, rx) = channel();
        let progress = Arc::new(Progress::default());
        let snapshot_bytes = journal.snapshot_bytes;
        let event_bytes = journal.event_bytes;
        let shared = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || write_loop(journal, &rx, &shared, &waker, sync_within))?;
        Ok(JournalWriter {
            jobs,
            progress,
            thread: Some(thread),
            batch: Vec::new(),
            appended: 0,
            sync_asked: 0,
            event_bytes,
            snapshot_bytes,
            snapshot_bytes_per_task: SNAPSHOT_BYTES_PER_TASK,
        })
    }

    /// Queues one record; returns its count.
    pub fn append(&mut self, record: Vec<u8>) -> u64 {
        self.event_bytes += (record.len() + format::RECORD_HEADER_BYTES) as u64;
        format::encode_record(&mut self.batch, format::RecordKind::Event, &record);
        self.appended += 1;
        self.appended
    }

    /// Counts one record framed elsewhere (by the state, in the buffer
    /// [`JournalWriter::add_framed`] takes before the next submit);
    /// returns its count.
    pub fn count_framed(&mut self) -> u64 {
        self.appended += 1;
        self.appended
    }

    /// Adds records framed elsewhere, each counted by
    /// [`JournalWriter::count_framed`], to this wakeup's batch.
    pub fn add_framed(&mut self, framed: Vec<u8>) {
        self.event_bytes += framed.len() as u64;
        if self.batch.is_empty() {
            self.batch = framed;
        } else {
            self.batch.extend_from_slice(&framed);
        }
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
        let framed = std::mem::take(&mut self.batch);
        let through = self.appended;
        // A send fails only when the thread ended, on an error that
        // `check` reports.
        let _ = self.jobs.send(JobBox(Job::Append { framed, through }));
    }

    /// Asks for the records through count `through` (submitted already)
    /// to be made durable: something waits for them.
    pub fn want_durable(&mut self, through: u64) {
        if through > self.sync_asked {
            self.sync_asked = through;
            let _ = self.jobs.send(JobBox(Job::Sync(through)));
        }
    }

    /// Whether the events since the last snapshot outweigh it enough that
    /// a new snapshot should replace them, with `live_tasks` tasks in the
    /// state now (a snapshot of many waits until it is cheap beside the
    /// events, or they grew large: see `compaction_due`).
    pub fn should_compact(&self, live_tasks: usize) -> bool {
        let live_bytes = (live_tasks as u64).saturating_mul(self.snapshot_bytes_per_task);
        compaction_due(self.event_bytes, self.snapshot_bytes, live_bytes)
    }

    /// Replaces the file by `snapshot` (the whole live state, covering
    /// every record appended so far, `live_tasks` tasks), after what was
    /// submitted before.
    pub fn compact(&mut self, snapshot: Vec<u8>, live_tasks: usize) {
        if live_tasks >= SNAPSHOT_TASKS_TO_MEASURE {
            self.snapshot_bytes_per_task = (snapshot.len() / live_tasks) as u64;
        }
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

/// The thread: takes every job queued, writes their records in one
/// `write` (a compaction in between commits what came before it), syncs
/// when asked to or a write has waited `sync_within`, publishes the
/// durable count, and waits for more.
fn write_loop(
    mut journal: Journal,
    rx: &Receiver<JobBox>,
    progress: &Progress,
    waker: &Waker,
    sync_within: Duration,
) {
    let fail = |e: JournalError| {
        if let Ok(mut failed) = progress.failed.lock() {
            *failed = Some(e);
        }
        let _ = waker.wake();
    };
    let mut last_turn: Option<Instant> = None;
    // Counts of the last record written, made durable, asked durable.
    let (mut written, mut durable, mut wanted) = (0u64, 0u64, 0u64);
    // When the oldest write not synced yet was made.
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let first = match unsynced_since {
            None => match rx.recv() {
                Ok(JobBox(j)) => Some(j),
                Err(_) => return,
            },
            Some(at) => match rx.recv_timeout(sync_within.saturating_sub(at.elapsed())) {
                Ok(JobBox(j)) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        // Jobs that come while the last turn is young wait a little and
        // share the next one.
        if first.is_some() {
            if let Some(at) = last_turn {
                let young = COMMIT_INTERVAL_MIN.saturating_sub(at.elapsed());
                if !young.is_zero() {
                    std::thread::sleep(young);
                }
            }
            last_turn = Some(Instant::now());
        }
        let mut finish = false;
        // Count of the last record durable after this turn.
        let mut now_durable = durable;
        let mut job = first;
        while let Some(j) = job.take() {
            match j {
                Job::Append { framed, through } => {
                    journal.append_framed(framed);
                    written = through;
                }
                Job::Sync(through) => wanted = wanted.max(through),
                Job::Compact(snapshot) => {
                    // Commits what came before: all of it durable after.
                    if let Err(e) = journal.compact(&snapshot) {
                        return fail(e);
                    }
                    now_durable = written;
                }
                Job::Finish => finish = true,
            }
            if !finish {
                job = rx.try_recv().ok().map(|JobBox(j)| j);
            }
        }
        if let Err(e) = journal.write() {
            return fail(e);
        }
        let overdue = unsynced_since.is_some_and(|at| at.elapsed() >= sync_within);
        if written > now_durable && (wanted > now_durable || finish || overdue) {
            if let Err(e) = journal.sync() {
                return fail(e);
            }
            now_durable = written;
        }
        if now_durable > durable {
            durable = now_durable;
            progress.durable.store(durable, Ordering::Release);
            let _ = waker.wake();
        }
        if written == durable {
            unsynced_since = None;
        } else if unsynced_since.is_none() {
            unsynced_since = Some(Instant::now());
        }
        if finish {
            return;
        }
    }
}
