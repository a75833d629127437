//! The scheduler's HTTP side: the live dashboard (static files), its JSON
//! API (`/api/v1/...`), Prometheus `/metrics` and `/health`, served by a
//! thread of its own that never touches the scheduler's state.
//!
//! The event loop publishes a [`Published`] snapshot at most every
//! [`PUBLISH_INTERVAL`] (aggregates only: workers, task groups, clients,
//! the last finished tasks; see [`crate::state::observe`]); requests read
//! the latest one. What a snapshot cannot hold (one task's details, the
//! list of waiting tasks) is asked of the loop as a [`Query`] whose answer
//! costs a bounded amount (one task, one page), and the loop answers at
//! most [`QUERIES_PER_WAKEUP`] of them per wakeup: however hard the HTTP
//! side is polled, the scheduler's work per request does not grow with its
//! number of tasks.
//!
//! Every URL the pages use is relative, so the dashboard works behind a
//! reverse proxy or an SSH tunnel; `--dashboard-prefix` serves it under a
//! path prefix.

mod metrics;
mod routes;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_core::auth::{dashboard_token, Credentials};
use dask_net::Waker;
use serde::Serialize;

use crate::state::observe::StateSnapshot;

pub use metrics::render as render_metrics;

/// The dashboard's default port: next to the scheduler's 8796, and not
/// Python Dask's 8787, so both dashboards can run on one machine.
pub const DEFAULT_DASHBOARD_PORT: u16 = 8797;

/// Most often the loop publishes a snapshot.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// Most queries the loop answers per wakeup.
pub const QUERIES_PER_WAKEUP: usize = 8;

/// Queries waiting for the loop, at most; a request past this is answered
/// 503 at once.
pub const QUERIES_QUEUED_MAX: usize = 64;

/// How long a request waits for the loop's answer to its query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// `/health` answers 503 when the loop has published nothing for this
/// long (it is stuck).
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// Who may read the dashboard.
#[derive(Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone who can reach the port (the cluster has no credentials).
    Open,
    /// Requests carry this token: `Authorization: Bearer TOKEN`, the
    /// `dask-rs-token` cookie, or `?token=TOKEN` (which sets the cookie,
    /// so a browser needs it once). `/health` stays open.
    Token(String),
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Open => f.write_str("Open"),
            Access::Token(_) => f.write_str("Token(..)"),
        }
    }
}

impl Access {
    /// What a dashboard of a cluster with `credentials` requires when its
    /// config says `self`: an open one asks for the token derived from the
    /// client secret (the same credentials as everything else); a token
    /// given explicitly stays.
    pub fn for_cluster(self, credentials: Option<&Credentials>) -> Access {
        match (self, credentials.and_then(|c| c.client.as_ref())) {
            (Access::Open, Some(secret)) => Access::Token(dashboard_token(secret)),
            (access, _) => access,
        }
    }
}

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Interface to listen on.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// When the port is taken, listen on a free one instead (with a
    /// warning) rather than fail: the default port, not one the user gave.
    pub fall_back_to_any_port: bool,
    /// Path prefix every route is under (`""` or `/something`).
    pub prefix: String,
    /// Who may read it. The scheduler turns `Open` into the token derived
    /// from its client secret when it has credentials
    /// ([`Access::for_cluster`]).
    pub access: Access,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            host: "127.0.0.1".into(),
            port: DEFAULT_DASHBOARD_PORT,
            fall_back_to_any_port: true,
            prefix: String::new(),
            access: Access::Open,
        }
    }
}

/// The event loop's own measures, published with each snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoopStats {
    /// Share of the last publish interval the loop spent handling events
    /// (0 to 1).
    pub busy_fraction: f64,
    /// Seconds spent handling events since the start.
    pub busy_seconds_total: f64,
    /// Longest single wakeup's handling in the last publish interval.
    pub longest_event_seconds: f64,
    /// Wakeups since the start.
    pub wakeups_total: u64,
    /// Dashboard queries the loop answered since the start.
    pub queries_total: u64,
}

/// What the loop publishes for the HTTP side.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The scheduler's dask/1 address.
    pub address: String,
    /// The state's aggregates.
    #[serde(flatten)]
    pub state: StateSnapshot,
    /// The loop's measures.
    pub event_loop: LoopStats,
    /// When it was published (not serialized).
    #[serde(skip)]
    pub at: Option<Instant>,
}

/// A question only the live state can answer, at a bounded cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKind {
    /// One task's details.
    Task(String),
    /// One page of the tasks that wait (not processing, not done).
    Waiting {
        /// Where the page starts (the previous page's `next`).
        cursor: u64,
        /// Most tasks on the page.
        limit: usize,
        /// Only tasks in this state (`waiting`, `no-worker`, `queued`).
        state: Option<String>,
    },
}

/// A query with where to answer it.
#[derive(Debug)]
pub struct Query {
    /// The question.
    pub kind: QueryKind,
    /// The answer (JSON; `null` for an unknown task).
    pub reply: SyncSender<serde_json::Value>,
}

/// What the event loop holds of the HTTP side: where to publish, where
/// queries come from.
pub struct DashboardLink {
    latest: Arc<Mutex<Option<Arc<Published>>>>,
    queries: Receiver<Query>,
}

impl DashboardLink {
    /// Makes `published` the snapshot requests read.
    pub fn publish(&self, published: Published) {
        let published = Arc::new(published);
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(published);
        }
    }

    /// The next query waiting, if any.
    pub fn next_query(&self) -> Option<Query> {
        self.queries.try_recv().ok()
    }
}

/// What the HTTP thread shares with the request handlers.
pub(crate) struct Shared {
    pub(crate) latest: Arc<Mutex<Option<Arc<Published>>>>,
    pub(crate) queries: SyncSender<Query>,
    pub(crate) waker: Waker,
    pub(crate) prefix: String,
    pub(crate) access: Access,
}

impl Shared {
    pub(crate) fn latest(&self) -> Option<Arc<Published>> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }

    /// Asks the loop; `None` when it is too busy or does not answer in
    /// time.
    pub(crate) fn ask(&self, kind: QueryKind) -> Option<serde_json::Value> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.queries.try_send(Query { kind, reply }).ok()?;
        let _ = self.waker.wake();
        answer.recv_timeout(QUERY_TIMEOUT).ok()
    }
}

/// The running HTTP side; dropping it stops the thread.
pub struct Dashboard {
    address: SocketAddr,
    prefix: String,
    access: Access,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What [`Dashboard::start`] says besides the handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FellBack {
    /// The port that was taken.
    pub wanted: u16,
}

impl Dashboard {
    /// Binds and starts the HTTP thread; the loop wakes through `waker`
    /// when a query comes.
    pub fn start(
        config: &DashboardConfig,
        waker: Waker,
    ) -> io::Result<(Dashboard, DashboardLink, Option<FellBack>)> {
        let host = config.host.trim_start_matches('[').trim_end_matches(']');
        let (server, fell_back) = match tiny_http::Server::http((host, config.port)) {
            Ok(server) => (server, None),
            Err(e) if config.fall_back_to_any_port && config.port != 0 => {
                let in_use = e
                    .downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::AddrInUse);
                if !in_use {
                    return Err(io::Error::other(e));
                }
                let server = tiny_http::Server::http((host, 0)).map_err(io::Error::other)?;
                (
                    server,
                    Some(FellBack {
                        wanted: config.port,
                    }),
                )
            }
            Err(e) => return Err(io::Error::other(e)),
        };
        let address = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the dashboard listens on no IP address"))?;
        let latest = Arc::new(Mutex::new(None));
        let (queries_tx, queries_rx) = mpsc::sync_channel(QUERIES_QUEUED_MAX);
        let shared = Shared {
            latest: latest.clone(),
            queries: queries_tx,
            waker,
            prefix: normalize_prefix(&config.prefix),
            access: config.access.clone(),
        };
        let (prefix, access) = (shared.prefix.clone(), shared.access.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dask-dashboard".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(200)) {
                        Ok(Some(request)) => routes::handle(&shared, request),
                        Ok(None) => {}
                        // The accept thread ended (it stops on an accept
                        // error): nothing more will come.
                        Err(_) => break,
                    }
                }
            })?;
        Ok((
            Dashboard {
                address,
                prefix,
                access,
                stop,
                thread: Some(thread),
            },
            DashboardLink {
                latest,
                queries: queries_rx,
            },
            fell_back,
        ))
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The URL people open: `http://HOST:PORT/PREFIX/status`, with
    /// `?token=TOKEN` when it needs one (a browser needs it once: it sets
    /// a cookie).
    pub fn url(&self) -> String {
        let page = page_url(self.address, &self.prefix);
        match &self.access {
            Access::Open => page,
            Access::Token(token) => format!("{page}?token={token}"),
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// `""` or `/a/b` (leading slash, no trailing one).
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// The URL people open: `http://HOST:PORT/PREFIX/status`.
pub fn page_url(address: SocketAddr, prefix: &str) -> String {
    format!("http://{address}{}/status", normalize_prefix(prefix))
}
