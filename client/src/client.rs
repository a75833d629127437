//! [`Client`]: the user-facing handle to a scheduler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dask_core::auth::Credentials;
use dask_core::client::{ClientEvent, Progress, SubmitPlan};
use dask_core::messages::{ClusterInfoReply, TaskSpec, WaitingKey, WorkerInfo};
use dask_core::{Key, RawValue};
use dask_net::TlsConfig;

use crate::delayed::{build_graph, delayed, new_key, Arg, Delayed};
use crate::error::{Error, Result};
use crate::event_loop::Connection;
use crate::future::{decode, gather_raw, AsCompleted, Future};
use crate::shared::Shared;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The name sent in the hello (for the scheduler's logs).
    pub name: Option<String>,
    /// Limit on the TCP connect plus the handshake.
    pub connect_timeout: Duration,
    /// Limit on each request that waits for a reply (gather, datasets,
    /// cluster info...). `None`: wait until the reply or the connection ends.
    pub request_timeout: Option<Duration>,
    /// The cluster's credentials: the client proves the client secret and
    /// requires the scheduler to prove it too (a scheduler that proves
    /// nothing is refused). `None`: connect without (to a scheduler that
    /// requires none). See `dask_net::credentials` for finding them.
    pub credentials: Option<Credentials>,
    /// TLS settings for a `tls://` address (the cluster's CA, and this
    /// client's certificate when the scheduler requires one).
    pub tls: Option<TlsConfig>,
    /// Largest frame the client sends (default and most: the protocol's
    /// 256 MiB). Lower only for tests: larger values then go in parts
    /// (dask/1.1 `value-parts`) as values over 256 MiB do.
    pub frame_bytes_max: usize,
    /// The largest part, in bytes (estimated encoding), of a graph
    /// submitted as several `update-graph`s (default 4 MiB, core's
    /// `SUBMIT_PART_BYTES`; spec: "A graph larger than a frame"). A graph
    /// over 128 KiB goes in parts, the first of 64 KiB, each next twice the
    /// last up to this (which also bounds the first).
    pub submit_part_bytes: usize,
    /// How long the connection's thread, and a thread waiting for a
    /// result, look for news without sleeping after their last
    /// ([`dask_net::ReactorConfig::busy_poll`]): a small task's result
    /// comes back within tens of µs, about what waking a sleeping thread
    /// costs. Zero: never. Default [`dask_net::BUSY_POLL`].
    pub busy_poll: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            name: Some(format!("dask-client-{}", std::process::id())),
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            credentials: None,
            tls: None,
            frame_bytes_max: dask_core::FRAME_BYTES_MAX,
            submit_part_bytes: dask_core::client::SUBMIT_PART_BYTES,
            busy_poll: dask_net::BUSY_POLL,
        }
    }
}

/// A connection to a scheduler. Submitting never blocks on the network: a
/// background thread sends and receives. `Client` is `Send + Sync`; share
/// it by reference or in an `Arc`.
pub struct Client {
    connection: Connection,
    address: String,
    request_timeout: Option<Duration>,
}

impl Client {
    /// Connects to the scheduler at `address` (`tcp://HOST:PORT`) with
    /// default options, waiting for the handshake.
    pub fn connect(address: &str) -> Result<Client> {
        Client::connect_with(address, ClientOptions::default())
    }

    /// Connects with a limit on the connect and handshake.
    pub fn connect_timeout(address: &str, timeout: Duration) -> Result<Client> {
        Client::connect_with(
            address,
            ClientOptions {
                connect_timeout: timeout,
                ..Default::default()
            },
        )
    }

    /// Connects with explicit options.
    pub fn connect_with(address: &str, options: ClientOptions) -> Result<Client> {
        let connection = Connection::open(address, &options)?;
        Ok(Client {
            connection,
            address: address.to_owned(),
            request_timeout: options.request_timeout,
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.connection.shared
    }

    /// The scheduler's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The id the scheduler gave this client.
    pub fn id(&self) -> Option<u64> {
        self.shared().lock().session.negotiated().and_then(|n| n.id)
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.shared().lock().session.is_connected()
    }

    /// The last non-fatal error the scheduler sent that named no request.
    pub fn last_server_error(&self) -> Option<String> {
        self.shared().lock().last_server_error.clone()
    }

    // ---- building and submitting graphs ------------------------------

    /// A lazy call bound to nothing yet: same as [`crate::delayed`].
    pub fn call(&self, function: &str, args: Vec<Arg>) -> Delayed {
        delayed(function, args)
    }

    /// Submits one call of `function`: returns its future at once.
    pub fn submit(&self, function: &str, args: Vec<Arg>) -> Future {
        self.compute(&delayed(function, args))
    }

    /// Submits a delayed call and every call it depends on; only the
    /// result of `d` is kept (intermediates are freed once used).
    pub fn compute(&self, d: &Delayed) -> Future {
        self.compute_all(std::slice::from_ref(d)).remove(0)
    }

    /// Submits several delayed calls as one graph.
    pub fn compute_all(&self, ds: &[Delayed]) -> Vec<Future> {
        let tasks = build_graph(ds);
        let wanted: Vec<Key> = ds.iter().map(|d| d.key().clone()).collect();
        self.submit_tasks(tasks, wanted)
    }

    /// One call of `function` per item of `args`, submitted as one graph.
    pub fn map<I>(&self, function: &str, args: I) -> Vec<Future>
    where
        I: IntoIterator<Item = Vec<Arg>>,
    {
        let calls: Vec<Delayed> = args.into_iter().map(|a| delayed(function, a)).collect();
        self.compute_all(&calls)
    }

    /// Submits raw task specs and wants `wanted` (one future per entry).
    pub fn submit_tasks(&self, tasks: Vec<TaskSpec>, wanted: Vec<Key>) -> Vec<Future> {
        let keys = wanted.clone();
        // Planned without the lock, and handed over part by part, the lock
        // released and the I/O thread woken after each: the first part of
        // a large graph is on the wire while the next ones are built (under
        // the lock, 100k independent tasks sent nothing for ~80 ms).
        let part_bytes = self.shared().lock().session.submit_part_bytes();
        let mut plan = SubmitPlan::new(tasks, wanted, part_bytes);
        while let Some(part) = plan.next_part() {
            self.shared().with(|st| st.session.submit_part(part));
        }
        keys.into_iter()
            .map(|k| Future::adopt(Arc::clone(self.shared()), k))
            .collect()
    }

    // ---- results ---------------------------------------------------------

    /// Waits for every future and fetches all results in one request.
    pub fn gather(&self, futures: &[Future]) -> Result<Vec<rmpv::Value>> {
        self.gather_raw(futures)?.iter().map(decode).collect()
    }

    /// Like [`Client::gather`], the results in their msgpack encoding.
    pub fn gather_raw(&self, futures: &[Future]) -> Result<Vec<RawValue>> {
        self.check_own(futures)?;
        let refs: Vec<&Future> = futures.iter().collect();
        gather_raw(self.shared(), &refs, self.request_timeout)
    }

    fn check_own(&self, futures: &[Future]) -> Result<()> {
        match futures
            .iter()
            .find(|f| !Arc::ptr_eq(f.shared(), self.shared()))
        {
            Some(f) => Err(Error::Graph(format!(
                "future {} belongs to another client",
                f.key()
            ))),
            None => Ok(()),
        }
    }

    /// Yields the futures as they complete; more can be added on the way.
    pub fn as_completed(&self, futures: Vec<Future>) -> AsCompleted {
        AsCompleted::new(Arc::clone(self.shared()), futures)
    }

    /// Cancels the futures' keys for this client.
    pub fn cancel(&self, futures: &[Future]) {
        let keys: Vec<Key> = futures.iter().map(|f| f.key().clone()).collect();
        self.shared().with(|st| st.session.cancel(keys, false));
    }

    /// Stores values on the cluster and waits until they are stored (as
    /// Dask's `scatter` does, so the futures can be used in graphs at
    /// once): one future per value.
    pub fn scatter(&self, values: Vec<rmpv::Value>) -> Result<Vec<Future>> {
        self.scatter_with(values, None, false)
    }

    /// Like [`Client::scatter`], on the given workers (names or
    /// addresses), or on every worker with `broadcast`.
    pub fn scatter_with(
        &self,
        values: Vec<rmpv::Value>,
        workers: Option<Vec<String>>,
        broadcast: bool,
    ) -> Result<Vec<Future>> {
        let keys: Vec<Key> = values.iter().map(|_| new_key("data")).collect();
        let data: BTreeMap<Key, RawValue> = keys
            .iter()
            .cloned()
            .zip(values.iter().map(RawValue::from_value))
            .collect();
        self.shared()
            .with(|st| st.session.scatter(data, workers, broadcast));
        let futures: Vec<Future> = keys
            .into_iter()
            .map(|k| Future::adopt(Arc::clone(self.shared()), k))
            .collect();
        let deadline = self.request_timeout.map(|t| std::time::Instant::now() + t);
        for f in &futures {
            f.wait_deadline(deadline)?;
        }
        Ok(futures)
    }

    // ---- datasets ----------------------------------------------------------

    /// Publishes futures under `name` so other clients can get them; the
    /// dataset keeps the keys alive until unpublished.
    pub fn publish_dataset(&self, name: &str, futures: &[Future], overwrite: bool) -> Result<()> {
        let keys: Vec<Key> = futures.iter().map(|f| f.key().clone()).collect();
        self.shared()
            .request(self.request_timeout, |s| {
                s.publish_dataset(name, keys, overwrite)
            })
            .map(|_| ())
    }

    /// Futures for the keys of a published dataset.
    pub fn get_dataset(&self, name: &str) -> Result<Vec<Future>> {
        match self
            .shared()
            .request(self.request_timeout, |s| s.get_dataset(name))?
        {
            ClientEvent::Dataset { keys, .. } => Ok(keys
                .into_iter()
                .map(|k| Future::adopt(Arc::clone(self.shared()), k))
                .collect()),
            other => Err(unexpected(&other)),
        }
    }

    /// Names of all published datasets, sorted.
    pub fn list_datasets(&self) -> Result<Vec<String>> {
        match self
            .shared()
            .request(self.request_timeout, |s| s.list_datasets())?
        {
            ClientEvent::Datasets { names, .. } => Ok(names),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes a published dataset.
    pub fn unpublish_dataset(&self, name: &str) -> Result<()> {
        self.shared()
            .request(self.request_timeout, |s| s.unpublish_dataset(name))
            .map(|_| ())
    }

    // ---- cluster -------------------------------------------------------------

    /// The scheduler's description of the cluster.
    pub fn cluster_info(&self) -> Result<ClusterInfoReply> {
        match self
            .shared()
            .request(self.request_timeout, |s| s.cluster_info())?
        {
            ClientEvent::ClusterInfo { info, .. } => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    /// Counts of `futures` by state (finished, erred, failed, pending and,
    /// of those, waiting for a worker that can run them), as this client
    /// knows them now: what a progress bar draws.
    pub fn progress<'a>(&self, futures: impl IntoIterator<Item = &'a Future>) -> Progress {
        let st = self.shared().lock();
        st.session.progress(futures.into_iter().map(Future::key))
    }

    /// One page of the tasks that wait on the scheduler (only those in
    /// `state`, one of `waiting`, `no-worker`, `queued`, when given), with
    /// why each waits, from `cursor` (0: the first page); `next` in the
    /// answer is the following page's cursor. Needs a dask/1.1 scheduler
    /// (feature `key-waiting`).
    pub fn waiting_keys(
        &self,
        state: Option<&str>,
        cursor: u64,
        limit: Option<u32>,
    ) -> Result<(Vec<WaitingKey>, Option<u64>)> {
        match self.shared().request(self.request_timeout, |s| {
            s.waiting_keys(state, cursor, limit)
        })? {
            ClientEvent::WaitingKeys { tasks, next, .. } => Ok((tasks, next)),
            other => Err(unexpected(&other)),
        }
    }

    /// The connected workers.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>> {
        Ok(self.cluster_info()?.workers)
    }

    /// Waits until the scheduler has accepted, or refused, every graph and
    /// scatter this client sent before the call (a dask/1.1 barrier: an
    /// acknowledged empty graph). A refused graph's futures have then
    /// failed. Against a dask/1.0 scheduler it fails with
    /// [`Error::Connection`] saying so.
    pub fn wait_accepted(&self) -> Result<()> {
        match self
            .shared()
            .request(self.request_timeout, |s| s.barrier())?
        {
            ClientEvent::Done { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// The scheduler state of each future's key (dask/1.1): `waiting`,
    /// `processing`, `memory`, `erred`..., `forgotten` when the scheduler
    /// keeps no task of that key. Against a dask/1.0 scheduler it fails
    /// with [`Error::Connection`] saying so.
    pub fn status(&self, futures: &[Future]) -> Result<BTreeMap<Key, String>> {
        let keys: Vec<Key> = futures.iter().map(|f| f.key().clone()).collect();
        match self
            .shared()
            .request(self.request_timeout, |s| s.who_has(keys))?
        {
            ClientEvent::WhoHas {
                status: Some(status),
                ..
            } => Ok(status),
            ClientEvent::WhoHas { status: None, .. } => Err(Error::Connection(
                "the scheduler speaks dask/1.0, which tells no key states (dask/1.1 does)".into(),
            )),
            other => Err(unexpected(&other)),
        }
    }

    /// The data addresses of the workers holding each future's key.
    pub fn who_has(&self, futures: &[Future]) -> Result<BTreeMap<Key, Vec<String>>> {
        let keys: Vec<Key> = futures.iter().map(|f| f.key().clone()).collect();
        match self
            .shared()
            .request(self.request_timeout, |s| s.who_has(keys))?
        {
            ClientEvent::WhoHas { who_has, .. } => Ok(who_has),
            other => Err(unexpected(&other)),
        }
    }

    /// Closes the connection (the scheduler releases everything this client
    /// wanted). Futures of this client then fail. Also done on drop.
    pub fn close(mut self) {
        self.connection.close();
    }
}

fn unexpected(event: &ClientEvent) -> Error {
    Error::Connection(format!("unexpected reply: {event:?}"))
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("id", &self.id())
            .finish()
    }
}
