//! The scheduler file, as Dask's `--scheduler-file`: a scheduler writes its
//! address into a JSON file on a filesystem its workers and clients share;
//! they read it, waiting for it to appear, so nobody copies an address by
//! hand and start order does not matter.
//!
//! ```json
//! {"type": "Scheduler", "protocol": "dask/1", "address": "tcp://10.0.0.5:8786", "pid": 4242}
//! ```
//!
//! Dask's own scheduler file has `type` and `address` too, but no
//! `protocol`: reading one says so, rather than connecting to a scheduler
//! this side cannot speak to.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a reader looks again for a file not there yet.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Largest scheduler file read (a real one is under 200 bytes).
const FILE_BYTES_MAX: u64 = 64 * 1024;

/// Writes `address` to `path`, atomically (a temporary file beside it,
/// then a rename), so a reader never sees half a file.
pub fn write(path: &Path, address: &str) -> io::Result<()> {
    let text = serde_json::json!({
        "type": "Scheduler",
        "protocol": "dask/1",
        "address": address,
        "pid": std::process::id(),
    })
    .to_string();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}

/// Removes the file if it still names `address` (a scheduler started later
/// with the same file keeps its own).
pub fn remove(path: &Path, address: &str) {
    if parse(path).ok().flatten().as_deref() == Some(address) {
        let _ = std::fs::remove_file(path);
    }
}

/// The scheduler address in `path`, waiting up to `wait` for the file to
/// appear. Errors say what was wrong with the file.
pub fn read(path: &Path, wait: Duration) -> Result<String, String> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(address) = parse(path)? {
            return Ok(address);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no scheduler file at {} after {wait:?}: start `dask-scheduler --scheduler-file {}` \
                 (on a filesystem this machine shares), or give the scheduler's address",
                path.display(),
                path.display()
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `Ok(None)` while the file does not exist.
fn parse(path: &Path) -> Result<Option<String>, String> {
    let shown = path.display();
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the scheduler file {shown}: {e}")),
    };
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, FILE_BYTES_MAX), &mut text)
        .map_err(|e| format!("cannot read the scheduler file {shown}: {e}"))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("the scheduler file {shown} is not JSON: {e}"))?;
    let address = doc
        .get("address")
        .and_then(|a| a.as_str())
        .ok_or_else(|| format!("the scheduler file {shown} has no \"address\""))?;
    match doc.get("protocol").and_then(|p| p.as_str()) {
        Some("dask/1") => Ok(Some(address.to_owned())),
        Some(other) => Err(format!(
            "the scheduler file {shown} names a {other:?} scheduler, not a dask/1 one"
        )),
        None => Err(format!(
            "the scheduler file {shown} was written by a Python Dask scheduler (it has no \
             \"protocol\": \"dask/1\"), not by dask-rs's dask-scheduler; its address {address} \
             is for Python Dask's clients and workers"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("dask-scheduler-file-{}-{name}", std::process::id()))
    }

    #[test]
    fn written_then_read_then_removed() {
        let path = temp("round-trip");
        write(&path, "tcp://127.0.0.1:4242").unwrap();
        assert_eq!(read(&path, Duration::ZERO).unwrap(), "tcp://127.0.0.1:4242");
        remove(&path, "tcp://127.0.0.1:9");
        assert!(path.exists(), "another scheduler's file is kept");
        remove(&path, "tcp://127.0.0.1:4242");
        assert!(!path.exists());
    }

    #[test]
    fn a_reader_waits_for_the_file_and_says_what_is_wrong_with_it() {
        let path = temp("late");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                write(&path, "tcp://127.0.0.1:1").unwrap();
            })
        };
        assert_eq!(
            read(&path, Duration::from_secs(60)).unwrap(),
            "tcp://127.0.0.1:1"
        );
        writer.join().unwrap();
        std::fs::remove_file(&path).unwrap();
        let missing = read(&path, Duration::from_millis(150)).unwrap_err();
        assert!(missing.starts_with("no scheduler file at "), "{missing}");
        let python = r#"{"type": "Scheduler", "id": "Scheduler-1", "address": "tcp://127.0.0.1:8786",
                         "services": {"dashboard": 8787}, "started": 1.0, "workers": {}}"#;
        for (text, says) in [
            (python, "written by a Python Dask scheduler"),
            ("not json", "is not JSON"),
            (r#"{"type": "Scheduler"}"#, "has no \"address\""),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = read(&path, Duration::ZERO).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
