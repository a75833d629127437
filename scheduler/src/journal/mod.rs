//! The scheduler's journal on disk (`dask-scheduler --journal DIR`): an
//! append-only file of records, made durable in groups, cut at a torn
//! tail, compacted by a snapshot, held by one scheduler at a time.
//!
//! What a record holds is the caller's business (opaque bytes here); this
//! module promises only: a record given to [`Journal::append`] is durable
//! once the [`Journal::commit`] after it returned `Ok` (one write and one
//! `fdatasync` for everything appended since the last commit: group
//! commit; [`Journal::write`] and [`Journal::sync`] are its two halves),
//! and [`Journal::open`] gives back exactly the written records since the
//! last snapshot, in order. A
//! record half-written when the process died is cut, never a reason not to
//! start; a file that is not a journal, or one of another format version,
//! is refused with a one-line error naming the file.
//!
//! Layout of `DIR`: `journal` (the records, [`format`]), `lock` (held with
//! an advisory lock while a scheduler uses the directory, released by the
//! kernel when the process dies, so a crash never leaves it locked), and,
//! only during a compaction, `journal.tmp` (the new file, renamed over the
//! old one once durable; one left behind by a crash is discarded).

pub mod format;
pub mod holdback;
pub mod record;
pub mod writer;

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use format::{HeaderError, RecordKind, HEADER_BYTES};

/// Name of the records file in the journal directory.
pub const JOURNAL_FILE: &str = "journal";
/// Name of the lock file in the journal directory.
pub const LOCK_FILE: &str = "lock";
const COMPACTING_FILE: &str = "journal.tmp";

/// Event bytes since the last snapshot below which compaction is never
/// suggested: replaying 32 MiB takes well under a second, and each
/// compaction encodes the whole live state on the event loop's thread, so
/// a small floor made a single large graph pay for its own snapshot (5%
/// of the scheduler's time on 100,000 independent tasks).
const COMPACT_BYTES_MIN: u64 = 32 << 20;

/// A snapshot is cheap beside the events it replaces when the live state
/// is at most this fraction of them (1/8): then it is made as soon as the
/// events are due. A larger live state waits: a graph in flight is
/// usually released soon after (a snapshot of 100,000 live tasks held the
/// event loop for 110-310 ms, most of a run of that graph).
const COMPACT_CHEAP_RATIO: u64 = 8;

/// Events past this many times [`COMPACT_BYTES_MIN`] (and twice the live
/// state) are compacted whatever the live state costs: a large graph that
/// stays does not make the file grow without bound.
const COMPACT_FORCED_FLOOR_TIMES: u64 = 4;

/// Why a journal cannot be used; `Display` is the one line a person reads.
#[derive(Debug)]
pub enum JournalError {
    /// Another running scheduler holds the directory.
    Locked(PathBuf),
    /// The file is not a dask-rs journal.
    NotAJournal(PathBuf),
    /// A journal of a format version this scheduler does not read.
    Version(PathBuf, u32),
    /// Reading or writing failed.
    Io(PathBuf, io::Error),
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Locked(dir) => write!(
                f,
                "journal {}: another running scheduler holds it (its lock file is locked); stop \
                 that scheduler or give this one another --journal directory",
                dir.display()
            ),
            JournalError::NotAJournal(path) => write!(
                f,
                "{}: not a dask-rs journal (its first bytes are not \"dask-rs journal\"); give \
                 --journal a directory of its own, or move the file away",
                path.display()
            ),
            JournalError::Version(path, v) => write!(
                f,
                "{}: a journal of format version {v}, and this scheduler reads version {}; use \
                 the dask-scheduler that wrote it, or start with an empty --journal directory",
                path.display(),
                format::FORMAT_VERSION
            ),
            JournalError::Io(path, e) => write!(f, "journal {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for JournalError {}

/// What [`Journal::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The last snapshot, if one was written.
    pub snapshot: Option<Vec<u8>>,
    /// The events committed after it, in order.
    pub events: Vec<Vec<u8>>,
    /// Bytes of a torn or corrupt tail that were cut (0 when clean).
    pub cut_bytes: u64,
}

/// An open journal (see the module docs).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    _lock: File,
    pending: Vec<u8>,
    /// Length of the file: everything written (durable after the next
    /// sync).
    committed_bytes: u64,
    snapshot_bytes: u64,
    event_bytes: u64,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, locks it, cuts a
    /// torn tail and returns what it holds.
    pub fn open(dir: &Path) -> Result<(Journal, Recovered), JournalError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e| JournalError::Io(path, e)
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(JournalError::Locked(dir.to_path_buf())),
            Err(TryLockError::Error(e)) => return Err(JournalError::Io(lock_path, e)),
        }
        // A compaction cut short: the old file is whole (the rename is
        // what makes the new one count).
        let compacting = dir.join(COMPACTING_FILE);
        if compacting.exists() {
            std::fs::remove_file(&compacting).map_err(io_err(&compacting))?;
        }
        let path = dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let mut recovered = Recovered::default();
        let whole = match format::check_header(&bytes) {
            Err(HeaderError::NotAJournal) => return Err(JournalError::NotAJournal(path)),
            Err(HeaderError::Version(v)) => return Err(JournalError::Version(path, v)),
            Ok(whole) => whole,
        };
        let (mut snapshot_bytes, mut event_bytes) = (0, 0);
        let good_len = if whole {
            let body = &bytes[HEADER_BYTES..];
            let (records, good) = format::decode_records(body);
            for record in records {
                let payload = body[record.payload.clone()].to_vec();
                let size = (record.payload.len() + format::RECORD_HEADER_BYTES) as u64;
                match record.kind {
                    RecordKind::Snapshot => {
                        recovered.snapshot = Some(payload);
                        recovered.events.clear();
                        snapshot_bytes = size;
                        event_bytes = 0;
                    }
                    RecordKind::Event => {
                        recovered.events.push(payload);
                        event_bytes += size;
                    }
                }
            }
            HEADER_BYTES + good
        } else {
            // Empty, or a header cut short: start the file afresh.
            file.set_len(0).map_err(io_err(&path))?;
            file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
            file.write_all(&format::header()).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            sync_dir(dir).map_err(io_err(dir))?;
            HEADER_BYTES
        };
        if whole && good_len < bytes.len() {
            recovered.cut_bytes = (bytes.len() - good_len) as u64;
            file.set_len(good_len as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        file.seek(SeekFrom::Start(good_len as u64))
            .map_err(io_err(&path))?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            file,
            _lock: lock,
            pending: Vec::new(),
            committed_bytes: good_len as u64,
            snapshot_bytes,
            event_bytes,
        };
        Ok((journal, recovered))
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the file (everything written).
    pub fn committed_bytes(&self) -> u64 {
        self.committed_bytes
    }

    /// Queues one event for the next [`Journal::commit`].
    pub fn append(&mut self, event: &[u8]) {
        format::encode_record(&mut self.pending, RecordKind::Event, event);
    }

    /// Queues events framed already (by [`format::encode_record`], as
    /// [`Journal::append`] frames them) for the next write.
    pub fn append_framed(&mut self, framed: Vec<u8>) {
        if self.pending.is_empty() {
            self.pending = framed;
        } else {
            self.pending.extend_from_slice(&framed);
        }
    }

    /// Whether events wait for a commit.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Makes every appended event durable: [`Journal::write`] then
    /// [`Journal::sync`].
    pub fn commit(&mut self) -> Result<(), JournalError> {
        self.write()?;
        self.sync()
    }

    /// Writes every appended event to the file (one `write`), without
    /// waiting for the disk: written events survive the scheduler's own
    /// crash (they are in the kernel's page cache), not the machine's
    /// until [`Journal::sync`]. On an error nothing appended since the
    /// last write counts (the file is cut back, if it can be).
    pub fn write(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.pending) {
            let _ = self.file.set_len(self.committed_bytes);
            let _ = self.file.seek(SeekFrom::Start(self.committed_bytes));
            self.pending.clear();
            return Err(JournalError::Io(self.dir.join(JOURNAL_FILE), e));
        }
        self.committed_bytes += self.pending.len() as u64;
        self.event_bytes += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Makes everything written durable: one `fdatasync`.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file
            .sync_data()
            .map_err(|e| JournalError::Io(self.dir.join(JOURNAL_FILE), e))
    }

    /// Whether the events since the last snapshot outweigh it enough that
    /// a new snapshot should replace them (so the file tracks live state,
    /// not history), with a live state of about `live_bytes` to write.
    pub fn should_compact(&self, live_bytes: u64) -> bool {
        compaction_due(self.event_bytes, self.snapshot_bytes, live_bytes)
    }

    /// Replaces the file by one holding `snapshot` alone: the caller's
    /// whole live state, including every event committed so far (pending
    /// events are committed first). Durable when it returns `Ok`; if it
    /// fails, the old file stands.
    pub fn compact(&mut self, snapshot: &[u8]) -> Result<(), JournalError> {
        self.commit()?;
        let tmp = self.dir.join(COMPACTING_FILE);
        let path = self.dir.join(JOURNAL_FILE);
        let mut bytes = format::header().to_vec();
        format::encode_record(&mut bytes, RecordKind::Snapshot, snapshot);
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)?;
            let mut f = OpenOptions::new().read(true).write(true).open(&path)?;
            f.seek(SeekFrom::End(0))?;
            Ok(f)
        })();
        match written {
            Ok(file) => {
                self.file = file;
                self.committed_bytes = bytes.len() as u64;
                self.snapshot_bytes = (bytes.len() - HEADER_BYTES) as u64;
                self.event_bytes = 0;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(JournalError::Io(path, e))
            }
        }
    }
}

/// Whether `event_bytes` of records since a snapshot of `snapshot_bytes`
/// outweigh it enough that a new snapshot, of about `live_bytes`, should
/// replace them: they must outweigh the last snapshot twice (and the
/// floor), and the new one must be cheap beside them, or they must have
/// grown past the forced bound. Either way the file stays within a few
/// times the live state (and the floor).
fn compaction_due(event_bytes: u64, snapshot_bytes: u64, live_bytes: u64) -> bool {
    if event_bytes < COMPACT_BYTES_MIN.max(snapshot_bytes.saturating_mul(2)) {
        return false;
    }
    let cheap = live_bytes.saturating_mul(COMPACT_CHEAP_RATIO) <= event_bytes;
    let forced = event_bytes
        >= (COMPACT_FORCED_FLOOR_TIMES * COMPACT_BYTES_MIN).max(live_bytes.saturating_mul(2));
    cheap || forced
}

/// Makes a rename or a creation in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
