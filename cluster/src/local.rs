//! [`LocalCluster`]: a scheduler and workers running inside this process,
//! the equivalent of Dask's `LocalCluster(processes=False)`.
//!
//! Defaults: one scheduler on 127.0.0.1 (a free port) and ONE worker with
//! as many threads as the machine has cores (`available_parallelism`).
//! One multi-threaded worker is the fastest in-process layout: every
//! dependency is already local, so no data moves between workers. Ask for
//! more workers with [`LocalClusterBuilder::workers`] to exercise transfers.
//!
//! Secure with no setup: the cluster makes fresh credentials in memory
//! (no file), its scheduler requires them and its workers and clients
//! ([`LocalCluster::client`], [`LocalCluster::client_options`]) prove
//! them; a program that did not get them from the cluster cannot connect.

use std::collections::BTreeMap;
use std::io;
use std::ops::Deref;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dask_client::{Client, ClientOptions, Result};
use dask_core::auth::Credentials;
use dask_core::messages::Role;
use dask_scheduler::{SchedulerConfig, SchedulerHandle};
use dask_worker::{FunctionRegistry, WorkerConfig, WorkerHandle};

/// The credentials of the embedded clusters running in this process, by
/// scheduler address (see [`credentials_of_local_cluster`]).
static RUNNING: Mutex<Vec<(String, Credentials)>> = Mutex::new(Vec::new());

/// The credentials of the embedded cluster of this process whose
/// scheduler is at `address`, if one runs: what a client or worker this
/// process starts by address alone (the C SDK's `dask_client_connect`
/// and `dask_worker_start`) proves, with no file, since the cluster's
/// secrets never leave the process.
pub fn credentials_of_local_cluster(address: &str) -> Option<Credentials> {
    let running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    running
        .iter()
        .find(|(a, _)| a == address)
        .map(|(_, c)| c.clone())
}

/// How long [`LocalClusterBuilder::build`] waits for every worker to register.
const WORKERS_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A scheduler and workers in this process. Dropping it stops them.
pub struct LocalCluster {
    workers: Vec<WorkerHandle>,
    scheduler: Option<SchedulerHandle>,
    address: String,
    /// Made in memory for this cluster alone.
    credentials: Credentials,
}

/// Options of a [`LocalCluster`].
#[derive(Clone)]
pub struct LocalClusterBuilder {
    workers: usize,
    threads_per_worker: usize,
    functions: Option<FunctionRegistry>,
    host: String,
    port: u16,
    resources: BTreeMap<String, f64>,
    memory_limit: Option<u64>,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for LocalClusterBuilder {
    fn default() -> Self {
        LocalClusterBuilder {
            workers: 1,
            threads_per_worker: cores(),
            functions: None,
            host: "127.0.0.1".into(),
            port: 0,
            resources: BTreeMap::new(),
            memory_limit: None,
        }
    }
}

impl LocalClusterBuilder {
    /// Number of workers (default 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Threads of each worker (default: the number of cores).
    pub fn threads_per_worker(mut self, n: usize) -> Self {
        self.threads_per_worker = n.max(1);
        self
    }

    /// The functions every worker offers (default: the built-in library).
    pub fn functions(mut self, registry: FunctionRegistry) -> Self {
        self.functions = Some(registry);
        self
    }

    /// The interface to listen on (default 127.0.0.1).
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    /// The scheduler's port (default 0: any free port).
    pub fn scheduler_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// A resource every worker offers, e.g. `("GPU", 1.0)`.
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.resources.insert(name.to_owned(), amount);
        self
    }

    /// Each worker's memory limit in bytes.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Starts the scheduler and the workers, and waits until every worker
    /// has registered.
    pub fn build(self) -> io::Result<LocalCluster> {
        let credentials = dask_net::credentials::generate();
        let scheduler = SchedulerHandle::start(SchedulerConfig {
            host: self.host.clone(),
            port: self.port,
            credentials: Some(credentials.clone()),
            ..Default::default()
        })?;
        let address = scheduler.address();
        let mut cluster = LocalCluster {
            workers: Vec::new(),
            scheduler: Some(scheduler),
            address,
            credentials,
        };
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((cluster.address.clone(), cluster.credentials.clone()));
        let worker_credentials =
            dask_net::credentials::for_role(&cluster.credentials, Role::Worker);
        let functions = self.functions.unwrap_or_else(FunctionRegistry::builtins);
        for i in 0..self.workers {
            let worker = WorkerHandle::start(WorkerConfig {
                scheduler: cluster.address.clone(),
                nthreads: self.threads_per_worker,
                name: Some(format!("local-{i}")),
                host: self.host.clone(),
                resources: self.resources.clone(),
                memory_limit: self.memory_limit,
                functions: functions.clone(),
                credentials: worker_credentials.clone(),
                ..WorkerConfig::default()
            })?;
            cluster.workers.push(worker);
        }
        cluster.wait_for_workers(self.workers, WORKERS_READY_TIMEOUT)?;
        Ok(cluster)
    }
}

impl LocalCluster {
    /// Starts the default cluster: one worker with a thread per core.
    pub fn start() -> io::Result<LocalCluster> {
        LocalCluster::builder().build()
    }

    /// Options for a cluster.
    pub fn builder() -> LocalClusterBuilder {
        LocalClusterBuilder::default()
    }

    /// The scheduler's address, `tcp://127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The workers' data addresses.
    pub fn worker_addresses(&self) -> Vec<String> {
        self.workers.iter().map(WorkerHandle::address).collect()
    }

    /// A new client of this cluster (it does not own the cluster).
    pub fn client(&self) -> Result<Client> {
        Client::connect_with(&self.address, self.client_options())
    }

    /// The default client options with this cluster's client secret: what
    /// a client built with options of its own starts from.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            credentials: dask_net::credentials::for_role(&self.credentials, Role::Client),
            ..ClientOptions::default()
        }
    }

    /// The cluster's credentials (both secrets), for programs started
    /// beside it (write them with `dask_net::credentials::write_new`).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A client that owns this cluster and stops it when dropped, like
    /// Dask's `Client()` with no arguments.
    pub fn into_client(self) -> Result<LocalClient> {
        let client = self.client()?;
        Ok(LocalClient {
            client,
            cluster: self,
        })
    }

    /// Stops the workers, then the scheduler.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(address, _)| *address != self.address);
        for w in self.workers.drain(..) {
            w.stop();
        }
        if let Some(s) = self.scheduler.take() {
            s.stop();
        }
    }

    /// Polls the scheduler until `n` workers are connected.
    fn wait_for_workers(&self, n: usize, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let probe = Client::connect_with(
            &self.address,
            ClientOptions {
                name: Some("local-cluster-probe".into()),
                connect_timeout: timeout,
                request_timeout: Some(timeout),
                ..self.client_options()
            },
        )
        .map_err(io::Error::other)?;
        loop {
            if probe.workers().map_err(io::Error::other)?.len() >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{n} workers did not all register within {timeout:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A [`Client`] that owns the [`LocalCluster`] it is connected to (from
/// [`LocalCluster::into_client`]); it derefs to the client. Dropping or
/// closing it closes the connection, then stops the cluster.
pub struct LocalClient {
    // Field order is drop order: the connection closes before the cluster
    // stops.
    client: Client,
    cluster: LocalCluster,
}

impl LocalClient {
    /// The embedded cluster.
    pub fn cluster(&self) -> &LocalCluster {
        &self.cluster
    }

    /// Closes the connection (as [`Client::close`]), then stops the cluster.
    pub fn close(self) {
        let LocalClient { client, cluster } = self;
        client.close();
        cluster.stop();
    }
}

impl Deref for LocalClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::fmt::Debug for LocalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClient")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}
