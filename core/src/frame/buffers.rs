//! Buffers of large frames kept for the next ones (a pool bounded in bytes).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

/// Buffers of large frames whose values are all gone, kept for the next
/// large frames of a process: a fresh buffer costs a page fault (and the
/// zeroing of a page) per 4 KiB when the stream is first read into it,
/// which at memory speed is most of a large transfer's time. Bounded in
/// bytes; [`FrameBuffers::trim_unused`] gives them back once idle.
#[derive(Debug)]
pub struct FrameBuffers {
    free: Mutex<FreeBuffers>,
    bytes_max: usize,
}

#[derive(Debug, Default)]
struct FreeBuffers {
    /// Each fully initialised to its length (its last frame's).
    buffers: Vec<Vec<u8>>,
    bytes: usize,
    /// A buffer was taken since the last trim.
    taken: bool,
}

impl FrameBuffers {
    /// A pool keeping at most `bytes_max` bytes of free buffers.
    pub fn new(bytes_max: usize) -> Arc<FrameBuffers> {
        Arc::new(FrameBuffers {
            free: Mutex::new(FreeBuffers::default()),
            bytes_max,
        })
    }

    fn lock(&self) -> MutexGuard<'_, FreeBuffers> {
        // A panic while locked leaves a list of buffers: still a list.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept buffer of at least `len` bytes (and not much more), cut to
    /// `len`: its pages are mapped, its bytes are an old value's, to be
    /// overwritten whole (a spill read uses one as a received value does).
    pub fn take(&self, len: usize) -> Option<Vec<u8>> {
        let mut free = self.lock();
        let at = free
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len && b.len() / 2 <= len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i)?;
        let mut buffer = free.buffers.swap_remove(at);
        free.bytes -= buffer.len();
        free.taken = true;
        buffer.truncate(len);
        Some(buffer)
    }

    /// Keeps `buffer` if it fits under the bound.
    fn give(&self, buffer: Vec<u8>) {
        let mut free = self.lock();
        if free.bytes + buffer.len() <= self.bytes_max {
            free.bytes += buffer.len();
            free.buffers.push(buffer);
        }
    }

    /// Drops the kept buffers if none was taken since the last call (an
    /// event loop calls it every few seconds while some are kept).
    pub fn trim_unused(&self) {
        let mut free = self.lock();
        if !std::mem::take(&mut free.taken) {
            free.buffers = Vec::new();
            free.bytes = 0;
        }
    }

    /// Bytes of the buffers kept.
    pub fn kept_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// `buffer` as shared bytes that go back to `home` when the last
    /// reference to them is dropped.
    pub fn share(home: &Arc<FrameBuffers>, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(PooledPayload {
            buffer,
            home: Arc::downgrade(home),
        })
    }
}

/// A frame's payload (or a value that arrived in parts) in a buffer that
/// goes back to its [`FrameBuffers`] when the last value sharing it is
/// dropped.
struct PooledPayload {
    buffer: Vec<u8>,
    home: Weak<FrameBuffers>,
}

impl AsRef<[u8]> for PooledPayload {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledPayload {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give(std::mem::take(&mut self.buffer));
        }
    }
}
