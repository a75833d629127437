//! The bounds and timings of a [`Reactor`] and their defaults.

use std::time::Duration;

#[cfg(doc)]
use super::{CloseReason, Reactor};
use crate::tls::TlsConfig;
use crate::{HELLO_FRAME_BYTES_MAX, SEND_QUEUE_BYTES_MAX};

/// Default of [`ReactorConfig::connections_max`].
pub const CONNECTIONS_MAX: usize = 16 * 1024;

/// Default of [`ReactorConfig::handshake_bytes_max`].
pub const HANDSHAKE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Default of [`ReactorConfig::output_bytes_max`].
pub const OUTPUT_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Default of [`ReactorConfig::output_bytes_total_max`].
pub const OUTPUT_BYTES_TOTAL_MAX: usize = 256 * 1024 * 1024;

/// Default of [`ReactorConfig::output_bytes_share`].
pub const OUTPUT_BYTES_SHARE: usize = 1024 * 1024;

/// Default of [`ReactorConfig::read_bytes_per_wakeup`]: a few large
/// frames' worth, so a peer that streams (a client sending a 10M-task
/// graph in parts) is handled a part at a time between the others.
pub const READ_BYTES_PER_WAKEUP: usize = 4 * 1024 * 1024;

/// Default of [`ReactorConfig::busy_poll`] (chosen by measurement: see
/// BENCHMARKS.md, "Session 7: busy-polling").
pub const BUSY_POLL: Duration = Duration::from_micros(200);

/// Default of [`ReactorConfig::close_linger`].
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Default of [`ReactorConfig::accept_retry_interval`].
pub const ACCEPT_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Default of [`ReactorConfig::tls_handshake_timeout`].
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an accepted connection in its TLS handshake counts against
/// [`ReactorConfig::handshake_bytes_max`]: about what rustls may buffer
/// for it (a handshake message is at most 64 KiB), so a flood of
/// half-done TLS handshakes is held to the same bound as one of
/// connections that never send their hello.
pub const TLS_HANDSHAKE_CHARGE: usize = 64 * 1024;

/// Default of [`ReactorConfig::frame_buffers_bytes_max`]: one frame of
/// the largest size.
pub const FRAME_BUFFERS_BYTES_MAX: usize = dask_core::FRAME_BYTES_MAX;

/// Default of [`ReactorConfig::frame_buffers_idle`].
pub const FRAME_BUFFERS_IDLE: Duration = Duration::from_secs(2);

/// Bounds and timings of a [`Reactor`].
#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// Most connections at once (accepted, connected and closing); one
    /// accepted past it is closed at once, a connect past it fails.
    /// Default [`CONNECTIONS_MAX`].
    pub connections_max: usize,
    /// Largest frame an accepted connection may send before a frame
    /// holding its `hello` (spec: `hello_frame_bytes_max`); over it, 1002.
    /// Default [`HELLO_FRAME_BYTES_MAX`].
    pub hello_frame_bytes_max: usize,
    /// Most bytes held in all for the unfinished frames of accepted
    /// connections that have not sent their `hello`; the connection whose
    /// bytes take the sum over it is refused (1002). Without it, a flood
    /// of slow connections could each hold a frame's worth. Default
    /// [`HANDSHAKE_BYTES_MAX`].
    pub handshake_bytes_max: usize,
    /// Most bytes queued for a peer that does not read; past it the
    /// connection fails ([`CloseReason::Io`]). Default
    /// [`SEND_QUEUE_BYTES_MAX`].
    pub send_queue_bytes_max: usize,
    /// Most bytes queued for an accepted connection before it is
    /// *backlogged*: its input is no longer read (its requests wait in the
    /// kernel, and TCP pushes back on the peer) until its output is
    /// written down to the bound again ([`Reactor::queued_bytes`] tells a
    /// loop what waits, to make no more large output meanwhile). Only
    /// accepted connections are held: the connecting side always reads, so
    /// two peers never both wait for the other to read. Default
    /// [`OUTPUT_BYTES_MAX`].
    pub output_bytes_max: usize,
    /// Most bytes queued for all connections together: past it, every
    /// accepted connection with more than
    /// [`ReactorConfig::output_bytes_share`] queued is backlogged too,
    /// while connections with little queued (peers that read) are served
    /// as before. Default [`OUTPUT_BYTES_TOTAL_MAX`].
    pub output_bytes_total_max: usize,
    /// See [`ReactorConfig::output_bytes_total_max`]. Default
    /// [`OUTPUT_BYTES_SHARE`].
    pub output_bytes_share: usize,
    /// Longest a closing connection is kept to deliver its last bytes and
    /// read the peer's until it hangs up. Default [`CLOSE_LINGER`].
    pub close_linger: Duration,
    /// How often an `accept` that failed for want of descriptors or memory
    /// is tried again (readiness is edge-triggered: the connections
    /// already waiting would otherwise wait for a new one). Default
    /// [`ACCEPT_RETRY_INTERVAL`].
    pub accept_retry_interval: Duration,
    /// What an accepted connection that speaks Python Dask's protocol is
    /// told, in its own framing, before the close (say what this endpoint
    /// is). Default [`PYTHON_DASK_REFUSAL`].
    pub python_dask_refusal: String,
    /// TLS settings for [`Reactor::listen_tls`] and
    /// [`Reactor::connect_tls`]. Default none.
    pub tls: Option<TlsConfig>,
    /// Longest an accepted TLS connection may take over its TLS handshake;
    /// then it is dropped (the event loop never heard of it). Default
    /// [`TLS_HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeout: Duration,
    /// Most bytes of buffers kept after large frames' values are dropped,
    /// for the next large frames (reading into fresh memory costs a page
    /// fault per 4 KiB, most of a large transfer's time), and for values
    /// arriving in parts (dask/1.1 `value-parts`). Kept buffers are given
    /// back once none was used for [`ReactorConfig::frame_buffers_idle`].
    /// 0: keep none. Default [`FRAME_BUFFERS_BYTES_MAX`].
    pub frame_buffers_bytes_max: usize,
    /// How long kept buffers stay while none is used (see
    /// [`ReactorConfig::frame_buffers_bytes_max`]). Default
    /// [`FRAME_BUFFERS_IDLE`].
    pub frame_buffers_idle: Duration,
    /// Largest frame this side sends (a receiver still takes frames up to
    /// the protocol's frame_bytes_max). Lower than the default only for
    /// tests: a value over it goes in parts to a peer that takes them
    /// (dask/1.1 `value-parts`), so a few MB exercise what a 1 GB value
    /// does. Default [`dask_core::FRAME_BYTES_MAX`].
    pub frame_bytes_max: usize,
    /// Bytes read from one connection per wakeup, at least: once a read
    /// took this many, it stops at the end of a frame, and the rest is
    /// read on the next wakeup, after the other connections. Without it a
    /// peer that keeps sending was read (and every frame decoded) in one
    /// wakeup, however long: 90 s of a 10M-task graph's parts while no
    /// worker was answered. Default [`READ_BYTES_PER_WAKEUP`].
    pub read_bytes_per_wakeup: usize,
    /// The write timeout: an accepted connection with more than
    /// [`ReactorConfig::output_bytes_share`] unwritten of which not a byte
    /// could be written for this long is closed
    /// ([`CloseReason::WriteTimeout`]), so peers that do not read cannot
    /// hold the output bounds (and what their owner holds for them) for
    /// ever. Judged after a write is tried, so time this process did not
    /// run does not count against a peer that reads. Default `None`
    /// (never; `dask-scheduler` sets it).
    pub write_timeout: Option<Duration>,
    /// How long after its last activity (readiness, or bytes sent)
    /// [`Reactor::poll`] keeps looking for readiness without sleeping,
    /// yielding the CPU between looks, before it blocks. An idle vCPU
    /// halts, and waking it takes tens of µs, while the answer to what
    /// was just sent (a task's result, the next task) often comes within
    /// that. Spent only after activity: a reactor idle for longer blocks
    /// at once. Zero: never. Default [`BUSY_POLL`].
    pub busy_poll: Duration,
}

/// What a Python Dask client or worker that reached a dask-rs endpoint is
/// told by default.
pub const PYTHON_DASK_REFUSAL: &str =
    "this is a dask-rs (dask/1) endpoint, not a Python Dask one: Python Dask's clients and \
     workers cannot use it (dask-rs has clients for Rust, C, C++ and Node)";

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            connections_max: CONNECTIONS_MAX,
            hello_frame_bytes_max: HELLO_FRAME_BYTES_MAX,
            handshake_bytes_max: HANDSHAKE_BYTES_MAX,
            send_queue_bytes_max: SEND_QUEUE_BYTES_MAX,
            output_bytes_max: OUTPUT_BYTES_MAX,
            output_bytes_total_max: OUTPUT_BYTES_TOTAL_MAX,
            output_bytes_share: OUTPUT_BYTES_SHARE,
            close_linger: CLOSE_LINGER,
            accept_retry_interval: ACCEPT_RETRY_INTERVAL,
            python_dask_refusal: PYTHON_DASK_REFUSAL.to_owned(),
            tls: None,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            frame_buffers_bytes_max: FRAME_BUFFERS_BYTES_MAX,
            frame_buffers_idle: FRAME_BUFFERS_IDLE,
            frame_bytes_max: dask_core::FRAME_BYTES_MAX,
            read_bytes_per_wakeup: READ_BYTES_PER_WAKEUP,
            write_timeout: None,
            busy_poll: BUSY_POLL,
        }
    }
}
