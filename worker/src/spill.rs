//! The worker's spill store on disk: one file per spilled value in a
//! directory of the worker's own, removed with it.
//!
//! File names are a counter (`<n>.spill`), never the key: keys come from
//! the network and may hold `/`, `..` or anything else. The store knows
//! each file's length, so a read allocates exactly what was written and a
//! file changed behind the worker's back (truncated, grown, not msgpack)
//! is a failed read, never a panic or an unbounded allocation.
//!
//! Writes and reads are synchronous, from the event loop (as Dask's zict
//! buffer does it); the state machine spills only past its memory target.
//! Neither copies a value in memory: a write goes from the stored bytes
//! (one contiguous slice) to the file, a read from the file straight into
//! the value's final buffer: a dropped value's buffer kept by the reactor
//! where one fits (pages mapped already, 2-3x faster than fresh memory for
//! 1 GB; it goes back there when the value is dropped, as a received
//! value's does), else fresh memory.
//! Failures are printed here, at the edge, and counted by the state
//! machine ([`dask_core::worker::MemoryUsage`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dask_core::frame::FrameBuffers;
use dask_core::worker::SpillStore;
use dask_core::{Key, RawValue};

/// Name of the directory made under the system's temporary directory when
/// no local directory is given (Dask's is `dask-scratch-space`).
pub const LOCAL_DIRECTORY_DEFAULT_NAME: &str = "dask-worker-space";

/// Attempts at finding an unused `worker-<pid>-<n>` name.
const DIRECTORY_ATTEMPTS_MAX: u64 = 1000;

/// The default parent of workers' spill directories:
/// `<temp dir>/dask-worker-space`.
pub fn default_local_directory() -> PathBuf {
    std::env::temp_dir().join(LOCAL_DIRECTORY_DEFAULT_NAME)
}

/// Spilled values as files in a directory this store created and removes
/// when dropped.
#[derive(Debug)]
pub struct FileSpillStore {
    directory: PathBuf,
    /// File number and length of each spilled key.
    files: HashMap<Key, (u64, u64)>,
    next_file: u64,
    /// Where values read back take their buffers from (and give them back
    /// to when dropped), if anywhere: the reactor's.
    buffers: Option<Arc<FrameBuffers>>,
}

impl FileSpillStore {
    /// Creates a fresh directory `worker-<pid>-<n>` under `parent` (made
    /// if missing) for this store alone.
    pub fn create_in(parent: &Path) -> io::Result<FileSpillStore> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(parent).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", parent.display()))
        })?;
        let pid = std::process::id();
        for _ in 0..DIRECTORY_ATTEMPTS_MAX {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let directory = parent.join(format!("worker-{pid}-{n}"));
            match private_dir(&directory) {
                Ok(()) => {
                    return Ok(FileSpillStore {
                        directory,
                        files: HashMap::new(),
                        next_file: 0,
                        buffers: None,
                    })
                }
                // Left by an earlier process of the same pid: take another.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot create {}: {e}", directory.display()),
                    ))
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free worker directory name in {}", parent.display()),
        ))
    }

    /// Values read back go into buffers of dropped values kept in
    /// `buffers` where one fits, and their buffers go back there.
    pub fn use_buffers(&mut self, buffers: Arc<FrameBuffers>) {
        self.buffers = Some(buffers);
    }

    /// The directory holding the files.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Values spilled now.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is spilled.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn path(&self, file: u64) -> PathBuf {
        self.directory.join(format!("{file}.spill"))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        // No fsync: a spill file does not outlive the process, so a crash
        // loses it either way.
        Ok(())
    }

    fn read(&self, path: &Path, len: u64) -> Result<RawValue, String> {
        let mut file = File::open(path).map_err(|e| e.to_string())?;
        let on_disk = file.metadata().map_err(|e| e.to_string())?.len();
        if on_disk != len {
            return Err(format!("{on_disk} bytes on disk, {len} were written"));
        }
        let len = usize::try_from(len).map_err(|e| e.to_string())?;
        // The length is the one this store wrote, not the network's.
        let mut bytes = match self.buffers.as_ref().and_then(|b| b.take(len)) {
            Some(kept) => kept,
            // Mapping fresh pages ahead of the reads (as sockets' reads do)
            // was no faster here: the file's copy faults them in as cheaply.
            None => vec![0; len],
        };
        file.read_exact(&mut bytes).map_err(|e| e.to_string())?;
        let bytes = match &self.buffers {
            Some(home) => FrameBuffers::share(home, bytes),
            None => bytes::Bytes::from(bytes),
        };
        RawValue::from_shared_bytes(bytes)
            .map_err(|e| format!("not a value any more: {}", e.message))
    }
}

impl SpillStore for FileSpillStore {
    fn put(&mut self, key: &Key, value: &RawValue) -> Result<(), String> {
        let file = self.next_file;
        self.next_file += 1;
        let path = self.path(file);
        let bytes = value.as_bytes();
        if let Err(e) = self.write(&path, bytes) {
            let _ = fs::remove_file(&path);
            // The machine logs the failure once (spill-failing), not
            // once per try.
            return Err(format!("cannot write {}: {e}", path.display()));
        }
        if let Some((old, _)) = self.files.insert(key.clone(), (file, bytes.len() as u64)) {
            // The state machine removes before it puts again; be safe anyway.
            let _ = fs::remove_file(self.path(old));
        }
        Ok(())
    }

    fn get(&mut self, key: &Key) -> Result<RawValue, String> {
        let Some(&(file, len)) = self.files.get(key) else {
            return Err("not spilled here".into());
        };
        let path = self.path(file);
        self.read(&path, len).map_err(|e| {
            let message = format!("cannot read {}: {e}", path.display());
            eprintln!("dask-worker: reading back {key}: {message}");
            message
        })
    }

    /// One range of the file alone: a large value is relayed to a client
    /// a range at a time, and reading it whole for each would be quadratic.
    fn get_range(&mut self, key: &Key, start: u64, end: u64) -> Result<bytes::Bytes, String> {
        let Some(&(file, len)) = self.files.get(key) else {
            return Err("not spilled here".into());
        };
        if start > end || end > len {
            return Err(format!(
                "bytes {start}..{end} asked of a value of {len} bytes"
            ));
        }
        let path = self.path(file);
        let read = || -> io::Result<Vec<u8>> {
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(start))?;
            let mut bytes = vec![0; (end - start) as usize];
            file.read_exact(&mut bytes)?;
            Ok(bytes)
        };
        read().map(bytes::Bytes::from).map_err(|e| {
            let message = format!("cannot read {}: {e}", path.display());
            eprintln!("dask-worker: reading back {key}: {message}");
            message
        })
    }

    fn remove(&mut self, key: &Key) {
        if let Some((file, _)) = self.files.remove(key) {
            let _ = fs::remove_file(self.path(file));
        }
    }
}

impl Drop for FileSpillStore {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.directory);
    }
}

/// Creates `path` (not its parents), readable by this user only where the
/// platform says so: spilled values are the user's data.
fn private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn scratch() -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("dask-spill-test-{}-{n}", std::process::id()))
    }

    fn value(bytes: usize) -> RawValue {
        RawValue::from_value(&Value::Binary(vec![7; bytes]))
    }

    fn files_in(dir: &Path) -> usize {
        fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[test]
    fn values_round_trip_through_files_named_by_number() {
        let parent = scratch();
        let mut store = FileSpillStore::create_in(&parent).unwrap();
        let dir = store.directory().to_path_buf();
        assert!(dir.starts_with(&parent));
        let hostile = Key::from("../../etc/passwd\0/x");
        store.put(&hostile, &value(1000)).unwrap();
        store.put(&Key::from("b"), &value(10)).unwrap();
        assert_eq!(files_in(&dir), 2);
        assert_eq!(files_in(&parent), 1, "only the worker's own directory");
        assert_eq!(store.get(&hostile).unwrap(), value(1000));
        assert_eq!(store.get(&hostile).unwrap(), value(1000), "reads keep it");
        store.remove(&hostile);
        assert!(store.get(&hostile).is_err());
        assert_eq!(files_in(&dir), 1);
        drop(store);
        assert!(!dir.exists(), "removed with the store");
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn changed_or_missing_files_are_failed_reads() {
        let parent = scratch();
        let mut store = FileSpillStore::create_in(&parent).unwrap();
        for key in ["short", "long", "garbage", "gone"] {
            store.put(&Key::from(key), &value(100)).unwrap();
        }
        let path = |store: &FileSpillStore, key: &str| store.path(store.files[&Key::from(key)].0);
        fs::write(path(&store, "short"), [1, 2, 3]).unwrap();
        fs::write(path(&store, "long"), vec![0u8; 1 << 20]).unwrap();
        let mut garbage = value(100).into_bytes();
        garbage[0] = 0xc1; // never used in msgpack
        fs::write(path(&store, "garbage"), garbage).unwrap();
        fs::remove_file(path(&store, "gone")).unwrap();
        for key in ["short", "long", "garbage", "gone", "never"] {
            assert!(store.get(&Key::from(key)).is_err(), "{key}");
        }
        drop(store);
        fs::remove_dir_all(&parent).unwrap();
    }

    /// A binary of `bytes` bytes, each depending on its offset, so a byte
    /// read into the wrong place shows.
    fn patterned(bytes: usize) -> RawValue {
        RawValue::from_value(&Value::Binary(
            (0..bytes).map(|i| (i % 251) as u8).collect(),
        ))
    }

    #[test]
    fn a_large_value_reads_back_exact_into_fresh_or_kept_buffers() {
        // A 1 GB value's path, at 40 MiB.
        let big = patterned((40 << 20) + 12_345);
        let key = Key::from("big");
        let parent = scratch();
        let mut store = FileSpillStore::create_in(&parent).unwrap();
        store.put(&key, &big).unwrap();
        let file = store.path(store.files[&key].0);
        assert!(
            fs::read(&file).unwrap() == big.as_bytes(),
            "the stored bytes"
        );

        assert!(store.get(&key).unwrap() == big, "into fresh memory");

        // A kept buffer of stale bytes, larger than the value: every byte is
        // overwritten, and the buffer goes back when the value is dropped.
        let pool = FrameBuffers::new(1 << 30);
        drop(FrameBuffers::share(&pool, vec![0xab; big.len() + 4096]));
        store.use_buffers(Arc::clone(&pool));
        let back = store.get(&key).unwrap();
        assert_eq!(pool.kept_bytes(), 0, "the kept buffer was taken");
        assert!(back == big, "into a kept buffer");
        drop(back);
        assert_eq!(pool.kept_bytes(), big.len(), "and given back");

        // With none that fits (too large to take), fresh memory, given to
        // the pool when dropped.
        pool.trim_unused();
        pool.trim_unused();
        assert_eq!(pool.kept_bytes(), 0);
        drop(FrameBuffers::share(&pool, vec![0xab; 4 * big.len()]));
        let back = store.get(&key).unwrap();
        assert_eq!(pool.kept_bytes(), 4 * big.len(), "not taken");
        assert!(back == big);
        drop(back);
        assert_eq!(pool.kept_bytes(), 5 * big.len());

        // A file cut short behind the store is a failed read.
        fs::write(&file, &big.as_bytes()[..big.len() - 1]).unwrap();
        assert!(store.get(&key).is_err());
        drop(store);
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_no_file() {
        let parent = scratch();
        let mut store = FileSpillStore::create_in(&parent).unwrap();
        let dir = store.directory().to_path_buf();
        fs::remove_dir_all(&dir).unwrap();
        assert!(store.put(&Key::from("k"), &value(10)).is_err());
        assert!(store.is_empty());
        fs::create_dir(&dir).unwrap();
        store.put(&Key::from("k"), &value(10)).unwrap();
        assert_eq!(store.len(), 1);
        drop(store);
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn each_store_gets_a_directory_of_its_own() {
        let parent = scratch();
        let a = FileSpillStore::create_in(&parent).unwrap();
        let b = FileSpillStore::create_in(&parent).unwrap();
        assert_ne!(a.directory(), b.directory());
        drop((a, b));
        assert_eq!(files_in(&parent), 0);
        fs::remove_dir_all(&parent).unwrap();
    }
}
