//! The settings of a scheduler process.

use std::path::PathBuf;
use std::time::Duration;

use dask_core::auth::Credentials;
use dask_net::log::Logger;
use dask_net::{TlsConfig, HANDSHAKE_BYTES_MAX};

use crate::dashboard::DashboardConfig;

/// The scheduler's default port: 8796, not Python Dask's 8786, so both
/// schedulers can run on one machine with their defaults and a client given
/// one's usual address never reaches the other by accident (see the guide,
/// "Living beside Python Dask").
pub const DEFAULT_PORT: u16 = 8796;

/// Settings of a scheduler process.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Interface to listen on. Default "127.0.0.1".
    pub host: String,
    /// Port to listen on; 0 picks a free one. Default [`DEFAULT_PORT`].
    pub port: u16,
    /// A worker silent for this long is declared dead. Default 10 s.
    pub heartbeat_timeout: Duration,
    /// A connection that sends no `hello` for this long gets 3002 and is
    /// closed. Default 10 s.
    pub handshake_timeout: Duration,
    /// Check the state's invariants after every event (slow; for tests and
    /// debugging). A violation panics the loop. Default false.
    pub validate: bool,
    /// Lost workers a task may be processing on before it errs with
    /// `KilledWorker` (see [`SchedulerStateConfig::allowed_failures`](crate::state::SchedulerStateConfig::allowed_failures)). Default 3.
    pub allowed_failures: u32,
    /// How long a worker may stay paused and unable to spill before the
    /// tasks only such workers could run err with `SpillFailed` (see
    /// [`SchedulerStateConfig::spill_failed_timeout`](crate::state::SchedulerStateConfig::spill_failed_timeout)). Default 10 s.
    pub spill_failed_timeout: Duration,
    /// Most bytes held in all for the unfinished frames of connections
    /// that have not sent their `hello` (each holds at most
    /// [`dask_net::HELLO_FRAME_BYTES_MAX`]); a connection whose bytes take
    /// the sum over it gets 1002 and is closed. Without it, a flood of slow
    /// connections could each hold a frame's worth. Default
    /// [`HANDSHAKE_BYTES_MAX`].
    pub handshake_bytes_max: usize,
    /// The cluster's secrets: every connection must prove one (clients
    /// the client secret, workers the worker secret) before it can do
    /// anything. `None` serves anyone who reaches the port (the opt-out:
    /// `--no-auth-anyone-can-connect`). Default `None`; `dask-scheduler`
    /// always sets it unless told not to.
    pub credentials: Option<Credentials>,
    /// Serve TLS (`tls://`): a certificate and key, and with a CA,
    /// require clients' and workers' certificates. Default `None`.
    pub tls: Option<TlsConfig>,
    /// The dashboard, JSON API and `/metrics` on HTTP; `None` (the
    /// library's default) serves none. The binary serves one on
    /// [`DEFAULT_DASHBOARD_PORT`](crate::dashboard::DEFAULT_DASHBOARD_PORT)
    /// unless `--no-dashboard`.
    pub dashboard: Option<DashboardConfig>,
    /// Where operator log records go. Default: nowhere (the binary logs
    /// at `info` to stderr).
    pub logger: Logger,
    /// Largest frame the scheduler sends ([`dask_net::ReactorConfig::frame_bytes_max`]:
    /// lower only for tests). Default [`dask_core::FRAME_BYTES_MAX`].
    pub frame_bytes_max: usize,
    /// Keep a journal in this directory (`--journal DIR`): every change a
    /// client may rely on is durable there before it is acknowledged, and
    /// a scheduler started on it after a crash restores its graphs,
    /// results' locations, datasets and client sessions (see
    /// [`crate::journal`] and [`crate::state::durable`]). Default `None`.
    pub journal: Option<PathBuf>,
    /// The write timeout (`--write-timeout`, [`dask_net::ReactorConfig::write_timeout`]):
    /// a connection with over 1 MiB unwritten of which no byte could be
    /// written for this long is closed, and logged. `None`: never. Default
    /// [`WRITE_TIMEOUT_DEFAULT`].
    pub write_timeout: Option<Duration>,
    /// How long the loop looks for more input without sleeping after its
    /// last activity (`--busy-poll-us`, [`dask_net::ReactorConfig::busy_poll`]).
    /// Default [`dask_net::BUSY_POLL`].
    pub busy_poll: Duration,
}

/// The default write timeout: long enough for a client that stops to
/// think, or a paused process, short enough that peers that do not read
/// free what is held for them within a minute.
pub const WRITE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            heartbeat_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            validate: false,
            allowed_failures: crate::state::ALLOWED_FAILURES_DEFAULT,
            spill_failed_timeout: crate::state::SPILL_FAILED_TIMEOUT_DEFAULT,
            handshake_bytes_max: HANDSHAKE_BYTES_MAX,
            credentials: None,
            tls: None,
            dashboard: None,
            logger: Logger::off("dask-scheduler"),
            frame_bytes_max: dask_core::FRAME_BYTES_MAX,
            journal: None,
            write_timeout: Some(WRITE_TIMEOUT_DEFAULT),
            busy_poll: dask_net::BUSY_POLL,
        }
    }
}
