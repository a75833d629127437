//! The edge of values on one host (dask/1.1 feature `value-local`, spec
//! "Values on one host"; the protocol side is `dask_core::worker`'s
//! `local.rs`): who this worker is on its host ([`identity`]: the host's
//! id file, the probe), and the copies from a holder's memory
//! ([`LocalReader`], one thread beside the loop: a 1 GB copy takes a few
//! hundred milliseconds the loop must not wait).
//!
//! Linux only (`process_vm_readv`); elsewhere [`identity`] is `None` and
//! the worker does not list the feature. `DASK_RS_VALUE_LOCAL=off` (or
//! `0`) turns it off too: values then go by the connection, as between
//! hosts (the benchmarks show both).

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use dask_core::frame::FrameBuffers;
use dask_core::messages::LocalHost;
use dask_core::worker::LocalRead;
use dask_core::RawValue;
use dask_net::Waker;

/// The environment variable that turns the same-host path off (`off` or `0`).
pub const VALUE_LOCAL_ENV: &str = "DASK_RS_VALUE_LOCAL";

/// A read of at least this many bytes is split between threads (two, or
/// [`READ_THREADS_ENV`]): into fresh memory each faults its own part's
/// pages (a process's page faults run in parallel), which is most of such a
/// copy's time.
const SPLIT_READ_BYTES_MIN: usize = 64 << 20;

/// The environment variable that sets how many threads copy a value of
/// 64 MiB or more (1 to 4; default 2), for measuring the split.
pub const READ_THREADS_ENV: &str = "DASK_RS_LOCAL_READ_THREADS";

/// This worker's `local` for its peer hellos: `None` where it cannot read
/// peers' memory (not Linux, turned off, no host id file, or the kernel
/// refuses `process_vm_readv` even on this process).
pub fn identity() -> Option<LocalHost> {
    if matches!(
        std::env::var(VALUE_LOCAL_ENV).as_deref(),
        Ok("off" | "0" | "false")
    ) {
        return None;
    }
    imp::identity()
}

/// A finished read and its outcome.
pub type ReadDone = (LocalRead, Result<RawValue, String>);

/// Copies values from holders' memory on a thread of its own, in order,
/// and hands the results to the loop (waking it).
pub struct LocalReader {
    buffers: Arc<FrameBuffers>,
    waker: Waker,
    results: Arc<Mutex<Vec<ReadDone>>>,
    /// Started at the first read.
    reads: Option<mpsc::Sender<LocalRead>>,
}

impl LocalReader {
    /// A reader that takes kept buffers from `buffers` (and gives values'
    /// buffers back there once dropped) and wakes the loop with `waker`.
    pub fn new(buffers: Arc<FrameBuffers>, waker: Waker) -> LocalReader {
        LocalReader {
            buffers,
            waker,
            results: Arc::new(Mutex::new(Vec::new())),
            reads: None,
        }
    }

    /// Starts `read`; its result comes from [`LocalReader::take`].
    pub fn start(&mut self, read: LocalRead) {
        if self.reads.is_none() {
            let (tx, rx) = mpsc::channel::<LocalRead>();
            let buffers = Arc::clone(&self.buffers);
            let results = Arc::clone(&self.results);
            let waker = self.waker.clone();
            let spawned = std::thread::Builder::new()
                .name("local-reads".into())
                .spawn(move || {
                    for read in rx {
                        let result = imp::read_value(&read, &buffers);
                        push(&results, read, result);
                        let _ = waker.wake();
                    }
                });
            if spawned.is_ok() {
                self.reads = Some(tx);
            }
        }
        let refused = match &self.reads {
            Some(tx) => match tx.send(read) {
                Ok(()) => return,
                Err(mpsc::SendError(read)) => read,
            },
            None => read,
        };
        let why = "no thread to read with".to_owned();
        push(&self.results, refused, Err(why));
        let _ = self.waker.wake();
    }

    /// The reads done since the last call.
    pub fn take(&mut self) -> Vec<ReadDone> {
        std::mem::take(&mut *self.results.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn push(results: &Mutex<Vec<ReadDone>>, read: LocalRead, result: Result<RawValue, String>) {
    let mut done = results.lock().unwrap_or_else(PoisonError::into_inner);
    done.push((read, result));
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::{self, File, OpenOptions};
    use std::io::{self, Read, Write};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, OnceLock};

    use dask_core::frame::FrameBuffers;
    use dask_core::messages::{Bin32, LocalHost};
    use dask_core::worker::LocalRead;
    use dask_core::RawValue;

    use super::SPLIT_READ_BYTES_MIN;

    /// 32 random bytes at a fixed address for the process's life: a reader
    /// checks them before it reads values, so a pid reused by another
    /// process (or a namesake pid on another host) is never read from.
    fn probe() -> &'static [u8; 32] {
        static PROBE: OnceLock<Box<[u8; 32]>> = OnceLock::new();
        PROBE.get_or_init(|| {
            let mut bytes = [0u8; 32];
            dask_net::credentials::fill_random(&mut bytes);
            Box::new(bytes)
        })
    }

    pub(super) fn identity() -> Option<LocalHost> {
        let probe = probe();
        let at = probe.as_ptr() as u64;
        let pid = std::process::id();
        // Where the kernel refuses (seccomp), even our own memory.
        let mut back = [0u8; 32];
        copy(pid as libc::pid_t, at, back.as_mut_ptr(), back.len()).ok()?;
        if &back != probe {
            return None;
        }
        let host_id = host_id().ok()?;
        Some(LocalHost {
            host: Bin32(dask_core::auth::local_host_tag(&host_id)),
            pid: u64::from(pid),
            probe_at: at,
            probe: Bin32(*probe),
        })
    }

    /// The host's id for this user: 32 random bytes in
    /// `$XDG_RUNTIME_DIR/dask-rs/host-id`, else
    /// `/dev/shm/dask-rs-<uid>/host-id`, made by the first worker (written
    /// whole to a file of its own, then linked into place, so a racing
    /// worker reads the whole id or makes none); directory 0700 and file
    /// 0600 of this user, checked on the opened file.
    fn host_id() -> io::Result<[u8; 32]> {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(runtime) => PathBuf::from(runtime).join("dask-rs"),
            None => PathBuf::from(format!("/dev/shm/dask-rs-{uid}")),
        };
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = fs::symlink_metadata(&dir)?;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
            return Err(io::Error::other(format!(
                "{}: not a directory of this user's alone",
                dir.display()
            )));
        }
        let path = dir.join("host-id");
        for _ in 0..3 {
            match read_id(&path, uid) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => return other,
            }
            let mut id = [0u8; 32];
            dask_net::credentials::fill_random(&mut id);
            let own = dir.join(format!("host-id.{}", std::process::id()));
            let _ = fs::remove_file(&own);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&own)?;
            file.write_all(&id)?;
            drop(file);
            let linked = fs::hard_link(&own, &path);
            let _ = fs::remove_file(&own);
            match linked {
                Ok(()) => return Ok(id),
                // Another worker's came first: read it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        read_id(&path, uid)
    }

    fn read_id(path: &Path, uid: u32) -> io::Result<[u8; 32]> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let meta = File::metadata(&file)?;
        if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o077 != 0 || meta.len() != 32 {
            return Err(io::Error::other(format!(
                "{}: not a 32-byte file of this user's alone",
                path.display()
            )));
        }
        let mut id = [0u8; 32];
        file.read_exact(&mut id)?;
        Ok(id)
    }

    /// How many threads copy a large value: `DASK_RS_LOCAL_READ_THREADS`
    /// (1 to 4, read once), else 2: into fresh memory each faults its own
    /// part's pages, and a 2-core machine has two.
    fn read_threads() -> usize {
        static THREADS: OnceLock<usize> = OnceLock::new();
        *THREADS.get_or_init(|| {
            std::env::var(super::READ_THREADS_ENV)
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
                .map_or(2, |n| n.clamp(1, 4))
        })
    }

    /// `len` bytes at `remote` in process `pid` to `local`, whole.
    fn copy(pid: libc::pid_t, remote: u64, local: *mut u8, len: usize) -> Result<(), String> {
        let mut done = 0;
        while done < len {
            let into = libc::iovec {
                // SAFETY (of the pointer arithmetic): done < len, inside
                // the caller's range.
                iov_base: unsafe { local.add(done) }.cast(),
                iov_len: len - done,
            };
            let from = libc::iovec {
                iov_base: (remote as usize).wrapping_add(done) as *mut libc::c_void,
                iov_len: len - done,
            };
            // SAFETY: `local..local + len` is memory the caller gives this
            // call to write; the remote range is only read, by the kernel,
            // which checks it (EFAULT when it is not the holder's).
            let n = unsafe { libc::process_vm_readv(pid, &into, 1, &from, 1, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("process_vm_readv: {e}"));
            }
            if n == 0 {
                return Err(format!("short read: {done} bytes of {len}"));
            }
            done += n as usize;
        }
        Ok(())
    }

    pub(super) fn read_value(
        read: &LocalRead,
        buffers: &Arc<FrameBuffers>,
    ) -> Result<RawValue, String> {
        let pid = libc::pid_t::try_from(read.pid).map_err(|_| "no such process id".to_owned())?;
        let mut probe = [0u8; 32];
        copy(pid, read.probe_at, probe.as_mut_ptr(), probe.len())?;
        if probe != read.probe {
            return Err(format!("process {pid} is not the peer: its probe differs"));
        }
        let len = usize::try_from(read.nbytes).map_err(|_| "too large".to_owned())?;
        // A kept buffer (pages mapped) if one fits, else fresh memory.
        let mut buffer = buffers.take(len).unwrap_or_default();
        buffer.clear();
        buffer
            .try_reserve_exact(len)
            .map_err(|e| format!("no memory for {len} bytes: {e}"))?;
        let local = buffer.as_mut_ptr() as usize;
        let threads = if len >= SPLIT_READ_BYTES_MIN {
            read_threads()
        } else {
            1
        };
        // Parts of whole pages, the last one taking the rest; this thread
        // copies the first.
        let part = (len / threads) & !4095;
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let others: Vec<_> = (1..threads)
                .map(|i| {
                    let start = i * part;
                    let end = if i + 1 == threads { len } else { start + part };
                    s.spawn(move || {
                        let remote = read.at.wrapping_add(start as u64);
                        copy(pid, remote, (local + start) as *mut u8, end - start)
                    })
                })
                .collect();
            let first_len = if threads == 1 { len } else { part };
            let mut results = vec![copy(pid, read.at, local as *mut u8, first_len)];
            for other in others {
                let joined = other.join();
                results.push(joined.unwrap_or_else(|_| Err("a reading thread failed".to_owned())));
            }
            results
        });
        results.into_iter().collect::<Result<(), String>>()?;
        // SAFETY: the copies above wrote all `len` bytes of the capacity
        // reserved (each returned Ok only once whole).
        unsafe { buffer.set_len(len) };
        let bytes = FrameBuffers::share(buffers, buffer);
        RawValue::from_shared_bytes(bytes).map_err(|e| format!("not one value: {e}"))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::sync::Arc;

    use dask_core::frame::FrameBuffers;
    use dask_core::messages::LocalHost;
    use dask_core::worker::LocalRead;
    use dask_core::RawValue;

    pub(super) fn identity() -> Option<LocalHost> {
        None
    }

    pub(super) fn read_value(_: &LocalRead, _: &Arc<FrameBuffers>) -> Result<RawValue, String> {
        Err("values on one host are read on Linux only".to_owned())
    }
}
