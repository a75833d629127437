//! `NativeClient`, `NativeFuture`, `NativeAsCompleted`: the Rust client
//! (`dask-client`) seen from Python. `dask_rs.client` builds Dask's and
//! concurrent.futures' habits on them; every wait here releases the GIL.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dask_client::{AsCompleted, Client, ClientOptions, Future, RawValue, Status};
use dask_core::messages::{Role, TaskSpec};
use dask_core::msgpack::check_key;
use dask_core::Key;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rmpv::Value;

use crate::errors::to_pyerr;
use crate::security::{member_credentials, Lookup};
use crate::value::{to_python, to_value, Refs};

fn timeout_of(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(PyValueError::new_err(format!(
            "timeout must be a finite number of seconds, at least 0: got {s}"
        ))),
    }
}

fn key_of(text: String) -> PyResult<Key> {
    check_key(&text).map_err(|e| PyValueError::new_err(format!("key {text:?}: {}", e.message)))?;
    Ok(Key(text))
}

/// A connection to a dask-rs scheduler.
#[pyclass(module = "dask_rs._native", frozen)]
pub struct NativeClient {
    client: Mutex<Option<Arc<Client>>>,
    address: String,
}

impl NativeClient {
    fn client(&self) -> PyResult<Arc<Client>> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("this client is closed"))
    }
}

fn futures_of(futures: &Bound<'_, PyList>) -> PyResult<Vec<Future>> {
    futures
        .iter()
        .map(|f| Ok(f.cast::<NativeFuture>()?.get().inner.clone()))
        .collect()
}

fn wrap(py: Python<'_>, futures: Vec<Future>) -> PyResult<Vec<Py<NativeFuture>>> {
    futures
        .into_iter()
        .map(|inner| Py::new(py, NativeFuture { inner }))
        .collect()
}

fn gathered(py: Python<'_>, raws: Vec<RawValue>) -> PyResult<Vec<Py<PyAny>>> {
    // Decoding needs no interpreter: done with the GIL released.
    let values: Result<Vec<Value>, String> = py.detach(|| {
        raws.iter()
            .map(|r| r.to_value().map_err(|e| e.to_string()))
            .collect()
    });
    let values =
        values.map_err(|e| PyValueError::new_err(format!("cannot decode a result: {e}")))?;
    values.iter().map(|v| to_python(py, v)).collect()
}

#[pymethods]
impl NativeClient {
    /// Connects to `address` (`tcp://HOST:PORT`) and waits for the handshake,
    /// proving the client secret found as `security::member_credentials` says.
    #[new]
    #[pyo3(signature = (address, name=None, connect_timeout=10.0, credentials=Lookup::Discover))]
    fn new(
        py: Python<'_>,
        address: String,
        name: Option<String>,
        connect_timeout: f64,
        credentials: Lookup,
    ) -> PyResult<Self> {
        let mut options = ClientOptions {
            connect_timeout: timeout_of(Some(connect_timeout))?.unwrap_or_default(),
            credentials: member_credentials(&credentials, &address, Role::Client)?,
            ..ClientOptions::default()
        };
        if name.is_some() {
            options.name = name;
        }
        let client = py
            .detach(|| Client::connect_with(&address, options))
            .map_err(|e| to_pyerr(py, e))?;
        Ok(NativeClient {
            client: Mutex::new(Some(Arc::new(client))),
            address,
        })
    }

    /// The scheduler's address.
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// The id the scheduler gave this client.
    #[getter]
    fn id(&self) -> PyResult<Option<u64>> {
        Ok(self.client()?.id())
    }

    /// Whether the connection is up.
    fn is_connected(&self) -> bool {
        self.client().map(|c| c.is_connected()).unwrap_or(false)
    }

    /// Submits tasks, each `(key, function, args, kwargs, priority,
    /// resources, retries, workers)`, and wants `wanted`: one future each.
    fn submit(
        &self,
        py: Python<'_>,
        tasks: &Bound<'_, PyList>,
        wanted: Vec<String>,
    ) -> PyResult<Vec<Py<NativeFuture>>> {
        let client = self.client()?;
        let mut specs = Vec::with_capacity(tasks.len());
        for task in tasks.iter() {
            specs.push(task_spec(py, &task)?);
        }
        let wanted = wanted
            .into_iter()
            .map(key_of)
            .collect::<PyResult<Vec<_>>>()?;
        let futures = py.detach(|| client.submit_tasks(specs, wanted));
        wrap(py, futures)
    }

    /// Waits for the futures (at most `timeout` seconds in all) and fetches
    /// their results in one request.
    #[pyo3(signature = (futures, timeout=None))]
    fn gather(
        &self,
        py: Python<'_>,
        futures: &Bound<'_, PyList>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let client = self.client()?;
        let futures = futures_of(futures)?;
        let timeout = timeout_of(timeout)?;
        let raws = py
            .detach(|| {
                if let Some(t) = timeout {
                    let deadline = Instant::now() + t;
                    for f in &futures {
                        f.wait_timeout(deadline.saturating_duration_since(Instant::now()))?;
                    }
                }
                client.gather_raw(&futures)
            })
            .map_err(|e| to_pyerr(py, e))?;
        gathered(py, raws)
    }

    /// Stores `values` on workers (waiting until they are stored): one
    /// future each.
    #[pyo3(signature = (values, workers=None, broadcast=false))]
    fn scatter(
        &self,
        py: Python<'_>,
        values: &Bound<'_, PyList>,
        workers: Option<Vec<String>>,
        broadcast: bool,
    ) -> PyResult<Vec<Py<NativeFuture>>> {
        let client = self.client()?;
        let values = values
            .iter()
            .map(|v| to_value(py, &v, Refs::None))
            .collect::<PyResult<Vec<_>>>()?;
        let futures = py
            .detach(|| client.scatter_with(values, workers, broadcast))
            .map_err(|e| to_pyerr(py, e))?;
        wrap(py, futures)
    }

    /// Cancels the futures' keys for this client.
    fn cancel(&self, py: Python<'_>, futures: &Bound<'_, PyList>) -> PyResult<()> {
        let client = self.client()?;
        let futures = futures_of(futures)?;
        py.detach(|| client.cancel(&futures));
        Ok(())
    }

    /// Holders' data addresses by key.
    fn who_has(
        &self,
        py: Python<'_>,
        futures: &Bound<'_, PyList>,
    ) -> PyResult<BTreeMap<String, Vec<String>>> {
        let client = self.client()?;
        let futures = futures_of(futures)?;
        let who_has = py
            .detach(|| client.who_has(&futures))
            .map_err(|e| to_pyerr(py, e))?;
        Ok(who_has.into_iter().map(|(k, v)| (k.0, v)).collect())
    }

    /// The scheduler's description of the cluster, as a dict.
    fn cluster_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let client = self.client()?;
        let info = py
            .detach(|| client.cluster_info())
            .map_err(|e| to_pyerr(py, e))?;
        let workers = PyList::empty(py);
        for w in &info.workers {
            let d = PyDict::new(py);
            d.set_item("id", w.id)?;
            d.set_item("name", &w.name)?;
            d.set_item("address", &w.address)?;
            d.set_item("nthreads", w.nthreads)?;
            d.set_item("memory_limit", w.memory_limit)?;
            d.set_item("resources", w.resources.clone())?;
            d.set_item("functions", w.functions.clone())?;
            d.set_item("processing", w.processing)?;
            d.set_item("stored_keys", w.stored_keys)?;
            d.set_item("stored_bytes", w.stored_bytes)?;
            workers.append(d)?;
        }
        let out = PyDict::new(py);
        out.set_item("workers", workers)?;
        out.set_item("tasks", info.tasks.clone())?;
        out.set_item("clients", info.clients)?;
        Ok(out)
    }

    /// Publishes the futures' keys under `name`.
    fn publish_dataset(
        &self,
        py: Python<'_>,
        name: String,
        futures: &Bound<'_, PyList>,
        overwrite: bool,
    ) -> PyResult<()> {
        let client = self.client()?;
        let futures = futures_of(futures)?;
        py.detach(|| client.publish_dataset(&name, &futures, overwrite))
            .map_err(|e| to_pyerr(py, e))
    }

    /// Futures for the keys of a published dataset.
    fn get_dataset(&self, py: Python<'_>, name: String) -> PyResult<Vec<Py<NativeFuture>>> {
        let client = self.client()?;
        let futures = py
            .detach(|| client.get_dataset(&name))
            .map_err(|e| to_pyerr(py, e))?;
        wrap(py, futures)
    }

    /// Names of the published datasets, sorted.
    fn list_datasets(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let client = self.client()?;
        py.detach(|| client.list_datasets())
            .map_err(|e| to_pyerr(py, e))
    }

    /// Removes a published dataset.
    fn unpublish_dataset(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let client = self.client()?;
        py.detach(|| client.unpublish_dataset(&name))
            .map_err(|e| to_pyerr(py, e))
    }

    /// An iterator over the futures as they complete.
    fn as_completed(&self, futures: &Bound<'_, PyList>) -> PyResult<NativeAsCompleted> {
        let client = self.client()?;
        let futures = futures_of(futures)?;
        Ok(NativeAsCompleted {
            inner: Mutex::new(client.as_completed(futures)),
        })
    }

    /// Closes the connection; the scheduler releases what this client held.
    fn close(&self, py: Python<'_>) {
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        py.detach(move || drop(client));
    }
}

fn task_spec(py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<TaskSpec> {
    #[allow(clippy::type_complexity)]
    let (key, function, args, kwargs, priority, resources, retries, workers): (
        String,
        String,
        Bound<'_, PyList>,
        Option<Bound<'_, PyDict>>,
        Option<i64>,
        Option<BTreeMap<String, f64>>,
        Option<u32>,
        Option<Vec<String>>,
    ) = task.extract()?;
    let args = args
        .iter()
        .map(|a| to_value(py, &a, Refs::Futures))
        .collect::<PyResult<Vec<_>>>()?;
    let kwargs = match kwargs {
        Some(d) if !d.is_empty() => {
            let mut entries = Vec::with_capacity(d.len());
            for (k, v) in d.iter() {
                let name: String = k
                    .extract()
                    .map_err(|_| PyTypeError::new_err("keyword argument names must be str"))?;
                entries.push((Value::from(name), to_value(py, &v, Refs::Futures)?));
            }
            Some(RawValue::from_value(&Value::Map(entries)))
        }
        _ => None,
    };
    Ok(TaskSpec {
        key: key_of(key)?,
        function,
        args: RawValue::from_value(&Value::Array(args)),
        kwargs,
        priority: priority.filter(|&p| p != 0),
        resources: resources.filter(|r| !r.is_empty()),
        retries: retries.filter(|&r| r != 0),
        workers,
    })
}

/// One key's result on the cluster; the key is released when the last
/// reference goes.
#[pyclass(module = "dask_rs._native", frozen)]
pub struct NativeFuture {
    inner: Future,
}

#[pymethods]
impl NativeFuture {
    /// The task's key.
    #[getter]
    fn key(&self) -> String {
        self.inner.key().0.clone()
    }

    /// "pending", "finished", "error", "cancelled", "lost", or "failed"
    /// (the connection or a request failed).
    #[getter]
    fn status(&self) -> &'static str {
        match self.inner.status() {
            Status::Pending => "pending",
            Status::Finished => "finished",
            Status::Erred => "error",
            Status::Cancelled => "cancelled",
            Status::Lost => "lost",
            Status::Failed => "failed",
        }
    }

    /// Whether the key is done (finished, erred, cancelled or lost).
    fn done(&self) -> bool {
        self.inner.done()
    }

    /// Waits until the key is finished; raises its error otherwise.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = timeout_of(timeout)?;
        py.detach(|| match timeout {
            None => self.inner.wait(),
            Some(t) => self.inner.wait_timeout(t),
        })
        .map_err(|e| to_pyerr(py, e))
    }

    /// Waits, then fetches the result.
    #[pyo3(signature = (timeout=None))]
    fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let timeout = timeout_of(timeout)?;
        let raw = py
            .detach(|| {
                if let Some(t) = timeout {
                    self.inner.wait_timeout(t)?;
                }
                self.inner.result_raw()
            })
            .map_err(|e| to_pyerr(py, e))?;
        Ok(gathered(py, vec![raw])?.remove(0))
    }

    /// Cancels the key for this client.
    fn cancel(&self) {
        self.inner.cancel();
    }

    fn __repr__(&self) -> String {
        format!("<NativeFuture {} {}>", self.inner.key(), self.status())
    }
}

/// Futures in the order they complete.
#[pyclass(module = "dask_rs._native", frozen)]
pub struct NativeAsCompleted {
    inner: Mutex<AsCompleted>,
}

#[pymethods]
impl NativeAsCompleted {
    /// Adds a future to wait for.
    fn add(&self, future: &Bound<'_, NativeFuture>) {
        let f = future.get().inner.clone();
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).add(f);
    }

    /// Futures not yet returned.
    fn count(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        AsCompleted::count(&inner)
    }

    /// The next completed future, or None when none is left. Waits at most
    /// `timeout` seconds (then raises TimeoutError).
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<NativeFuture>>> {
        let timeout = timeout_of(timeout)?;
        let next = py.detach(|| {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.is_empty() {
                return Ok(None);
            }
            inner.next_before(timeout.map(|t| Instant::now() + t))
        });
        match next.map_err(|e| to_pyerr(py, e))? {
            None => Ok(None),
            Some(inner) => Ok(Some(Py::new(py, NativeFuture { inner })?)),
        }
    }
}
