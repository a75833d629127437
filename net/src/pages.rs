//! Mapping fresh memory before reading into it. A large frame, or a large
//! value arriving in parts, is read into memory the allocator has just
//! mapped: the kernel backs each 4 KiB page at its first write, one page
//! fault at a time, which on a VM costs more than copying the page's bytes
//! (measured here: 1 GiB read into fresh pages 1.6-2.0 s, into pages
//! mapped ahead with `MADV_POPULATE_WRITE` 0.6-0.7 s plus 0.25 s).

use std::ops::Range;

/// Rooms smaller than this are read as they are (a frame's first bytes,
/// small frames): the pages are few.
const POPULATE_ROOM_BYTES_MIN: usize = 1 << 20;

/// Bytes mapped ahead of a read at once: real memory runs at most this far
/// ahead of the bytes received.
const POPULATE_AHEAD_BYTES: usize = 16 << 20;

/// Maps the pages of large rooms before they are read into, a few MiB
/// ahead of the reads.
///
/// Not transparent huge pages (`MADV_HUGEPAGE`), tried for 1 GB values
/// (issue 19): on this project's VMs a huge page's first touch in a process
/// costs ~10x a 4 KiB page's (a 1 GB buffer populated in 2.8-4.7 s against
/// 0.3-0.8 s, under load; the host seems to back freed 2 MiB blocks anew),
/// faster only when reused, which kept buffers already give.
#[derive(Debug, Default)]
pub(crate) struct Populator {
    /// The addresses mapped ahead last (only a hint: memory freed and
    /// reused there is not mapped again until reads pass its end, which
    /// costs page faults, nothing else).
    mapped: Range<usize>,
}

impl Populator {
    /// Called with the room the next read goes into.
    pub(crate) fn before_read(&mut self, room: &mut [u8]) {
        if room.len() < POPULATE_ROOM_BYTES_MIN {
            return;
        }
        let at = room.as_ptr() as usize;
        if self.mapped.contains(&at) {
            return;
        }
        let ahead = room.len().min(POPULATE_AHEAD_BYTES);
        populate(&mut room[..ahead]);
        self.mapped = at..at + ahead;
    }
}

/// Asks the kernel to back the whole pages of `room` now, in one call
/// (`MADV_POPULATE_WRITE`, Linux 5.14). Best effort: where it is refused
/// the pages fault in as they are written.
#[cfg(target_os = "linux")]
fn populate(room: &mut [u8]) {
    const PAGE: usize = 4096;
    let start = (room.as_ptr() as usize).next_multiple_of(PAGE);
    let end = (room.as_ptr() as usize + room.len()) / PAGE * PAGE;
    if end <= start {
        return;
    }
    // SAFETY: the range is inside `room`, which this thread holds
    // mutably; populating pages changes no byte of them (fresh pages read
    // as zero either way, mapped ones are left as they are).
    unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            end - start,
            libc::MADV_POPULATE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn populate(_room: &mut [u8]) {}
