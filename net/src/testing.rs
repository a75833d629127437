//! Raw-connection helpers for tests that feed a dask/1 endpoint bad bytes
//! (the scheduler's and the worker's hostile-input tests). Behind the
//! `testing` feature: not part of the library API.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dask_core::frame::{encode_frame, FrameDecoder};
use dask_core::msgpack::write;
use dask_core::Message;
use rmpv::Value;

/// Connect timeout of [`connect_raw`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What came back on a connection.
#[derive(Debug)]
pub struct Outcome {
    /// Every message received.
    pub messages: Vec<Message>,
    /// Whether the peer closed (EOF or reset) before the wait ended.
    pub closed: bool,
}

impl Outcome {
    /// The (code, fatal) of every `error` received.
    pub fn error_codes(&self) -> Vec<(u32, bool)> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::ErrorReport(e) => Some((e.code, e.fatal)),
                _ => None,
            })
            .collect()
    }

    /// Exactly this fatal error (after a hello or registration reply, if
    /// any), then the close.
    pub fn assert_fatal(&self, code: u32, case: &str) {
        let rest: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| !matches!(m, Message::Hello(_) | Message::WorkerRegistered(_)))
            .collect();
        assert!(
            matches!(rest[..], [Message::ErrorReport(e)] if e.code == code && e.fatal),
            "{case}: expected one fatal error {code}, got {:?}",
            self.messages
        );
        assert!(self.closed, "{case}: the peer did not close");
    }
}

/// A plain TCP connection to `address`.
pub fn connect_raw(address: &str) -> TcpStream {
    let addr = crate::parse_address(address).expect("address");
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends `bytes` on a new connection (write errors ignored: the peer may
/// close before reading everything), shuts our write side when
/// `shut_write`, then reads until the peer closes or `wait` passes.
pub fn exchange(address: &str, bytes: &[u8], shut_write: bool, wait: Duration) -> Outcome {
    let mut stream = connect_raw(address);
    let _ = stream.write_all(bytes);
    if shut_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    read_outcome(&mut stream, wait)
}

/// Reads frames until EOF (or a reset) or `wait` passes.
pub fn read_outcome(stream: &mut TcpStream, wait: Duration) -> Outcome {
    let deadline = Instant::now() + wait;
    let mut decoder = FrameDecoder::default();
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                decoder.push(&buf[..n]);
                while let Some(batch) = decoder.poll().expect("the peer sends valid frames") {
                    messages.extend(batch);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true, // reset: closed
        }
    };
    Outcome { messages, closed }
}

/// One frame around `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A frame holding exactly this msgpack value (which need not be a batch).
pub fn value_frame(v: &Value) -> Vec<u8> {
    let mut payload = Vec::new();
    write::value(&mut payload, v);
    frame(&payload)
}

/// A well-formed frame holding `messages`.
pub fn messages_frame(messages: &[Message]) -> Vec<u8> {
    encode_frame(messages).expect("encodes")
}

/// A map with string keys.
pub fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

/// A seeded xorshift generator for reproducible random input.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A binary under test (`dask-scheduler`, `dask-worker`) in a child
/// process: checked alive, its memory read from /proc, killed (by its id)
/// when dropped.
pub struct Process {
    child: Child,
    name: String,
}

impl Process {
    /// Spawns `command` with its stdout piped and returns it with the first
    /// line it prints (the binaries print their address first), without
    /// the line end.
    pub fn spawn(name: &str, command: &mut Command) -> (Process, String) {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let process = Process {
            child,
            name: name.to_string(),
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read {name}'s first line: {e}"));
        (process, line.trim_end().to_string())
    }

    /// Fails the test if the process has exited.
    pub fn assert_alive(&mut self, during: &str) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited ({status}) during {during}", self.name);
        }
    }

    /// Resident set size, from /proc (Linux); `None` elsewhere.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Fails the test if the resident set size is `max` or more (where it
    /// can be read).
    pub fn assert_rss_below(&self, max: u64, during: &str) {
        if let Some(rss) = self.rss_bytes() {
            assert!(
                rss < max,
                "{} uses {} MiB after {during}",
                self.name,
                rss >> 20
            );
        }
    }

    /// Kills the process (by its id) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The soft limit on open files, from /proc (Linux).
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
