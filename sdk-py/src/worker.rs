//! `NativeWorker`: a dask-rs worker (the `dask-worker` crate's event loop,
//! fetching, data store and executor threads) whose functions are Python
//! callables, as `sdk-c/src/worker.rs` does with C callbacks. Each task
//! takes the GIL only while its Python code runs and its values are
//! converted; the worker's loop never takes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use dask_core::auth::Credentials;
use dask_core::messages::Role;
use dask_worker::{FunctionRegistry, TaskError, TaskResult, WorkerConfig, WorkerHandle};
use pyo3::exceptions::{PyPermissionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use rmpv::Value;

use crate::errors::io_error;
use crate::security::{self, member_credentials, Lookup};
use crate::value::{to_python, to_value, Refs};

/// The function name of tasks that carry their own cloudpickled callable
/// (PROTOCOL.md, "Python codec").
pub const CLOUDPICKLE_FUNCTION: &str = "codec:cloudpickle";

static DESCRIBE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static RUN_PICKLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A Python exception as a task error: its type name, message and the
/// traceback text (`dask_rs._errors.describe`).
fn task_error(py: Python<'_>, error: PyErr) -> TaskError {
    let described = DESCRIBE
        .import(py, "dask_rs._errors", "describe")
        .and_then(|describe| describe.call1((error.value(py), error.traceback(py))))
        .and_then(|d| d.extract::<(String, String, String)>());
    match described {
        Ok((error_type, message, traceback)) => {
            TaskError::new(error_type, message).with_traceback(traceback)
        }
        Err(_) => TaskError::new("Exception", error.to_string()),
    }
}

/// Calls `callable(*args, **kwargs)` with the values as Python objects and
/// converts what it returns.
fn call(callable: &Py<PyAny>, args: &[Value], kwargs: &[(String, Value)]) -> TaskResult {
    Python::attach(|py| {
        let outcome = (|| -> PyResult<Value> {
            let args = args
                .iter()
                .map(|a| to_python(py, a))
                .collect::<PyResult<Vec<_>>>()?;
            let args = PyTuple::new(py, args)?;
            let kwargs = if kwargs.is_empty() {
                None
            } else {
                let d = PyDict::new(py);
                for (name, v) in kwargs {
                    d.set_item(name, to_python(py, v)?)?;
                }
                Some(d)
            };
            let out = callable.bind(py).call(args, kwargs.as_ref())?;
            to_value(py, &out, Refs::None)
        })();
        outcome.map_err(|e| task_error(py, e))
    })
}

/// The built-in library (the standard library and the conformance
/// functions), `codec:cloudpickle`, and `functions` by name.
fn registry(py: Python<'_>, functions: &Bound<'_, PyDict>) -> PyResult<FunctionRegistry> {
    let mut registry = FunctionRegistry::builtins();
    for (name, f) in functions.iter() {
        let name: String = name.extract()?;
        let f: Py<PyAny> = f.unbind();
        registry.register(name, move |args: &[Value], kwargs: &[(String, Value)]| {
            call(&f, args, kwargs)
        });
    }
    let run_pickled = RUN_PICKLED
        .import(py, "dask_rs._runtime", "run_pickled")?
        .clone()
        .unbind();
    registry.register(
        CLOUDPICKLE_FUNCTION,
        move |args: &[Value], kwargs: &[(String, Value)]| match args.first() {
            Some(Value::Binary(_)) => call(&run_pickled, args, kwargs),
            _ => Err(TaskError::type_error(format!(
                "{CLOUDPICKLE_FUNCTION}: the first argument must be the pickled callable (binary)"
            ))),
        },
    );
    Ok(registry)
}

/// A worker connected to a scheduler, running Python functions.
#[pyclass(module = "dask_rs._native", frozen)]
pub struct NativeWorker {
    handle: Mutex<Option<WorkerHandle>>,
    name: String,
    address: String,
    functions: Vec<String>,
}

#[pymethods]
impl NativeWorker {
    /// Connects to `scheduler`, registers (offering the built-in library,
    /// `codec:cloudpickle` and `functions`) and returns once registered.
    /// `reconnect_timeout` (seconds): how long it keeps registering again
    /// after losing the scheduler (a restart from its journal), keeping
    /// its values; `None` or 0: it finishes at once, as before.
    #[new]
    #[pyo3(signature = (scheduler, functions, nthreads=1, name=None, host=None, memory_limit=None, local_directory=None, resources=None, credentials=Lookup::Discover, reconnect_timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        scheduler: String,
        functions: &Bound<'_, PyDict>,
        nthreads: usize,
        name: Option<String>,
        host: Option<String>,
        memory_limit: Option<u64>,
        local_directory: Option<PathBuf>,
        resources: Option<BTreeMap<String, f64>>,
        credentials: Lookup,
        reconnect_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let reconnect_timeout = match reconnect_timeout {
            None => Duration::ZERO,
            Some(s) => Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!(
                    "reconnect_timeout is {s}: expected seconds, 0 or more (0 or None: no reconnecting)"
                ))
            })?,
        };
        let functions = registry(py, functions)?;
        let names = functions.names();
        let credentials = member_credentials(&credentials, &scheduler, Role::Worker)?;
        let mut config = WorkerConfig {
            credentials,
            scheduler,
            nthreads: nthreads.max(1),
            name,
            memory_limit: memory_limit.filter(|&m| m > 0),
            local_directory,
            resources: resources.unwrap_or_default(),
            functions,
            reconnect_timeout,
            ..WorkerConfig::default()
        };
        if let Some(host) = host {
            config.host = host;
        }
        let handle = py
            .detach(|| WorkerHandle::start(config))
            .map_err(io_error)?;
        Ok(NativeWorker {
            name: handle.name().to_owned(),
            address: handle.address(),
            handle: Mutex::new(Some(handle)),
            functions: names,
        })
    }

    /// The worker's name.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Its data address (where peers fetch its results).
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// The function names it offers, sorted.
    #[getter]
    fn functions(&self) -> Vec<String> {
        self.functions.clone()
    }

    /// Whether it has stopped (closed by the scheduler, lost it, or stopped).
    fn is_finished(&self) -> bool {
        self.handle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|h| h.is_finished())
    }

    /// Waits up to `timeout` seconds (None: for ever) for the worker to
    /// stop by itself; returns whether it has.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> bool {
        let deadline =
            timeout.map(|t| std::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        py.detach(|| loop {
            if self.is_finished() {
                return true;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        })
    }

    /// Waits for a worker that stopped by itself ([`NativeWorker::wait`]):
    /// returns when the scheduler closed it; raises `OSError` when the
    /// connection was lost or broken.
    fn join(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        match handle {
            Some(handle) => py.detach(|| handle.join()).map_err(io_error),
            None => Ok(()),
        }
    }

    /// Says `close` to the scheduler, stops, and waits for the threads
    /// (a running task's thread is not waited for past its end).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            py.detach(|| handle.stop());
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("<NativeWorker {} at {}>", self.name, self.address)
    }
}

/// A dask-rs scheduler inside this process (for `LocalCluster`).
#[pyclass(module = "dask_rs._native", frozen)]
pub struct NativeScheduler {
    handle: Mutex<Option<dask_scheduler::SchedulerHandle>>,
    address: String,
    credentials: Option<Credentials>,
}

#[pymethods]
impl NativeScheduler {
    /// Binds `host:port` (0: a free port) and starts serving. With
    /// `authenticate`, it requires fresh credentials made in memory: this
    /// process's clients and workers of its address prove them with no
    /// file; other processes need a file from `export_credentials`.
    #[new]
    #[pyo3(signature = (host="127.0.0.1".to_string(), port=0, authenticate=true))]
    fn new(py: Python<'_>, host: String, port: u16, authenticate: bool) -> PyResult<Self> {
        let credentials = authenticate.then(dask_net::credentials::generate);
        let config = dask_scheduler::SchedulerConfig {
            host,
            port,
            credentials: credentials.clone(),
            ..dask_scheduler::SchedulerConfig::default()
        };
        let handle = py
            .detach(|| dask_scheduler::SchedulerHandle::start(config))
            .map_err(io_error)?;
        let address = handle.address();
        if let Some(c) = &credentials {
            security::embed(&address, c);
        }
        Ok(NativeScheduler {
            address,
            credentials,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Writes the secret of `role` (`"client"` or `"worker"`) to a new
    /// owner-only file at `path` (refusing one that exists), for a
    /// process started with `--credentials path`.
    fn export_credentials(&self, path: PathBuf, role: &str) -> PyResult<()> {
        let role = match role {
            "client" => Role::Client,
            "worker" => Role::Worker,
            other => {
                return Err(PyValueError::new_err(format!(
                    "role must be \"client\" or \"worker\": got {other:?}"
                )))
            }
        };
        let Some(own) = self
            .credentials
            .as_ref()
            .and_then(|c| dask_net::credentials::for_role(c, role))
        else {
            return Err(PyRuntimeError::new_err(
                "this scheduler requires no credentials (authenticate=False): nothing to export",
            ));
        };
        dask_net::credentials::write_new(&path, &own)
            .map_err(|e| PyPermissionError::new_err(e.to_string()))
    }

    /// Its address, `tcp://HOST:PORT`.
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// Stops it (clients and workers are disconnected).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        match handle {
            Some(h) => {
                security::unembed(&self.address);
                py.detach(|| h.stop());
                Ok(())
            }
            None => Err(PyRuntimeError::new_err("the scheduler is already stopped")),
        }
    }
}
