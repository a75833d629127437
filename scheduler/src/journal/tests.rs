use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dask-journal-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn events(r: &Recovered) -> Vec<&[u8]> {
    r.events.iter().map(Vec::as_slice).collect()
}

#[test]
fn committed_events_come_back_in_order() {
    let dir = TempDir::new();
    let (mut j, r) = Journal::open(&dir.0).unwrap();
    assert!(r.snapshot.is_none() && r.events.is_empty() && r.cut_bytes == 0);
    j.append(b"one");
    j.append(b"two");
    j.commit().unwrap();
    j.append(b"three");
    j.commit().unwrap();
    j.append(b"never committed");
    drop(j);
    let (_j, r) = Journal::open(&dir.0).unwrap();
    assert_eq!(events(&r), [&b"one"[..], b"two", b"three"]);
    assert_eq!(r.cut_bytes, 0);
}

#[test]
fn a_second_scheduler_is_refused_while_the_first_holds_the_directory() {
    let dir = TempDir::new();
    let (j, _) = Journal::open(&dir.0).unwrap();
    let e = Journal::open(&dir.0).unwrap_err();
    assert!(matches!(e, JournalError::Locked(_)), "{e}");
    assert!(e.to_string().contains("another running scheduler"), "{e}");
    drop(j);
    Journal::open(&dir.0).unwrap();
}

#[test]
fn a_torn_tail_is_cut_wherever_the_file_ends() {
    let dir = TempDir::new();
    let (mut j, _) = Journal::open(&dir.0).unwrap();
    j.append(b"first");
    j.commit().unwrap();
    let first_end = j.committed_bytes();
    j.append(b"second, torn");
    j.commit().unwrap();
    let full_end = j.committed_bytes();
    drop(j);
    let path = dir.0.join(JOURNAL_FILE);
    let full = std::fs::read(&path).unwrap();
    for cut in first_end..full_end {
        std::fs::write(&path, &full[..cut as usize]).unwrap();
        let (mut j, r) = Journal::open(&dir.0).unwrap();
        assert_eq!(events(&r), [&b"first"[..]], "cut at {cut}");
        assert_eq!(r.cut_bytes, cut - first_end, "cut at {cut}");
        // The cut file takes new records after the good prefix.
        j.append(b"after");
        j.commit().unwrap();
        drop(j);
        let (_j, r) = Journal::open(&dir.0).unwrap();
        assert_eq!(events(&r), [&b"first"[..], b"after"], "cut at {cut}");
    }
}

#[test]
fn random_bytes_and_other_versions_are_refused_naming_the_file() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join(JOURNAL_FILE);
    std::fs::write(&path, b"\x89PNG\r\n\x1a\n not a journal at all").unwrap();
    let e = Journal::open(&dir.0).unwrap_err();
    assert!(matches!(e, JournalError::NotAJournal(_)), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    let mut v9 = format::header();
    v9[16] = 9;
    std::fs::write(&path, v9).unwrap();
    let e = Journal::open(&dir.0).unwrap_err();
    assert!(matches!(e, JournalError::Version(_, 9)), "{e}");
    assert!(e.to_string().contains("version 9"), "{e}");
    // Neither was changed.
    assert_eq!(std::fs::read(&path).unwrap(), v9);
}

#[test]
fn a_header_cut_short_starts_an_empty_journal() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join(JOURNAL_FILE), &format::header()[..7]).unwrap();
    let (mut j, r) = Journal::open(&dir.0).unwrap();
    assert!(r.events.is_empty());
    j.append(b"x");
    j.commit().unwrap();
    drop(j);
    assert_eq!(events(&Journal::open(&dir.0).unwrap().1), [&b"x"[..]]);
}

#[test]
fn compaction_replaces_history_by_the_snapshot() {
    let dir = TempDir::new();
    let (mut j, _) = Journal::open(&dir.0).unwrap();
    let event = vec![7u8; 64 * 1024];
    let mut n = 0;
    while !j.should_compact(0) {
        j.append(&event);
        n += 1;
        if n % 64 == 0 {
            j.commit().unwrap();
        }
    }
    j.commit().unwrap();
    assert!(n >= 512, "compaction suggested after {n} events of 64 KiB");
    let before = j.committed_bytes();
    j.append(b"pending, in the snapshot's state");
    j.compact(b"live state").unwrap();
    assert!(j.committed_bytes() < 100, "{} bytes", j.committed_bytes());
    assert!(before > 32 << 20);
    j.append(b"after the snapshot");
    j.commit().unwrap();
    drop(j);
    let (_j, r) = Journal::open(&dir.0).unwrap();
    assert_eq!(r.snapshot.as_deref(), Some(&b"live state"[..]));
    assert_eq!(events(&r), [&b"after the snapshot"[..]]);
    assert!(!dir.0.join(COMPACTING_FILE).exists());
}

#[test]
fn a_compaction_cut_short_leaves_the_old_journal() {
    let dir = TempDir::new();
    let (mut j, _) = Journal::open(&dir.0).unwrap();
    j.append(b"kept");
    j.commit().unwrap();
    drop(j);
    // The new file was being written when the process died.
    std::fs::write(dir.0.join(COMPACTING_FILE), b"dask-rs journal\n partial").unwrap();
    let (_j, r) = Journal::open(&dir.0).unwrap();
    assert_eq!(events(&r), [&b"kept"[..]]);
    assert!(!dir.0.join(COMPACTING_FILE).exists());
}

/// Records in the file at `dir` (read while the writer holds it).
fn records_in_file(dir: &Path) -> usize {
    let bytes = std::fs::read(dir.join(JOURNAL_FILE)).unwrap_or_default();
    bytes
        .get(HEADER_BYTES..)
        .map_or(0, |body| format::decode_records(body).0.len())
}

/// Waits (at most 10 s) until `done`; whether it came.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    done()
}

fn start_writer(dir: &Path, sync_within: std::time::Duration) -> writer::JournalWriter {
    let (journal, _) = Journal::open(dir).unwrap();
    let reactor = dask_net::Reactor::new(dask_net::ReactorConfig::default()).unwrap();
    writer::JournalWriter::start_syncing_within(journal, reactor.waker(), sync_within).unwrap()
}

#[test]
fn the_writer_writes_at_once_and_syncs_what_is_waited_for() {
    let dir = TempDir::new();
    // Records nobody waits for are synced an hour later: never, here.
    let mut w = start_writer(&dir.0, std::time::Duration::from_secs(3600));
    w.append(b"one".to_vec());
    w.append(b"two".to_vec());
    w.submit();
    w.want_durable(2);
    assert!(eventually(|| w.durable() == 2), "durable {}", w.durable());
    // Written (a crash of the scheduler keeps it), not synced: nothing
    // waits for it.
    w.append(b"three".to_vec());
    w.submit();
    assert!(eventually(|| records_in_file(&dir.0) == 3));
    assert_eq!(w.durable(), 2);
    // Ending syncs everything.
    w.finish().unwrap();
    let (_, recovered) = Journal::open(&dir.0).unwrap();
    assert_eq!(events(&recovered), [&b"one"[..], b"two", b"three"]);
}

#[test]
fn records_nobody_waits_for_are_synced_within_the_interval() {
    let dir = TempDir::new();
    let mut w = start_writer(&dir.0, std::time::Duration::from_millis(20));
    w.append(b"one".to_vec());
    w.submit();
    assert!(eventually(|| w.durable() == 1), "durable {}", w.durable());
    w.finish().unwrap();
}

#[test]
fn a_snapshot_of_a_large_live_state_waits_until_it_is_cheap_or_history_is_long() {
    const MIB: u64 = 1 << 20;
    // Under the floor, or under twice the last snapshot: never.
    assert!(!compaction_due(31 * MIB, 0, 0));
    assert!(!compaction_due(40 * MIB, 21 * MIB, 0));
    // Due, and the live state small beside the events: now.
    assert!(compaction_due(32 * MIB, 0, 4 * MIB));
    // Due, but a graph in flight would make a snapshot of 7 MiB: it waits
    // (the graph is usually released soon)...
    assert!(!compaction_due(40 * MIB, 0, 7 * MIB));
    // ...and is made once it is released,
    assert!(compaction_due(41 * MIB, 0, 0));
    // or once the events reach the forced bound, whatever it costs.
    assert!(!compaction_due(127 * MIB, 0, 60 * MIB));
    assert!(compaction_due(128 * MIB, 0, 60 * MIB));
    // A live state larger than the forced floor: at twice its size.
    assert!(!compaction_due(399 * MIB, 0, 200 * MIB));
    assert!(compaction_due(400 * MIB, 0, 200 * MIB));
}
