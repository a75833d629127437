"""``LocalCluster``: a dask-rs scheduler in this process and Python workers,
as worker processes (the default, as Dask's) or threads of this process."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Any, Dict, List, Optional

from . import _native
from .worker import Worker

_live: "weakref.WeakSet[LocalCluster]" = weakref.WeakSet()


class LocalCluster:
    """A scheduler bound to ``host`` (a free port unless ``scheduler_port``)
    and ``n_workers`` Python workers of ``threads_per_worker`` threads each.

    ``processes=True`` starts each worker as ``python -m dask_rs.worker``
    (Python code runs in parallel, one interpreter per worker);
    ``processes=False`` runs them in this process (they share its GIL).
    Workers offer the built-in library, ``codec:cloudpickle`` and
    ``functions`` (a dict of name -> callable; with processes, each
    callable must be importable by name: ``module.function``).

    Secure with no setup, as the Rust ``LocalCluster``: the scheduler
    requires credentials made in memory for this cluster alone. Clients
    and workers of this process find them by the scheduler's address;
    worker processes get the worker secret in an owner-only file of a
    private temporary directory, removed at ``close``; another process's
    client needs ``export_credentials``.
    """

    def __init__(
        self,
        n_workers: Optional[int] = None,
        threads_per_worker: int = 1,
        processes: bool = True,
        host: str = "127.0.0.1",
        scheduler_port: int = 0,
        functions: Optional[Dict[str, Any]] = None,
        memory_limit: Optional[int] = None,
    ) -> None:
        if n_workers is None:
            n_workers = max(1, min(4, os.cpu_count() or 1))
        self._secrets: Optional[str] = None
        self._scheduler = _native.NativeScheduler(host, scheduler_port)
        self.scheduler_address: str = self._scheduler.address
        self.processes = processes
        self._threads: List[Worker] = []
        self._procs: List[subprocess.Popen] = []
        try:
            worker_file = None
            if processes and n_workers:
                self._secrets = tempfile.mkdtemp(prefix="dask-rs-cluster-")  # mode 0700
                worker_file = os.path.join(self._secrets, "worker-credentials.json")
                self._scheduler.export_credentials(worker_file, "worker")
            for i in range(n_workers):
                name = f"local-{os.getpid()}-{i}"
                if processes:
                    self._procs.append(
                        _spawn(self.scheduler_address, name, threads_per_worker, functions, memory_limit, worker_file)
                    )
                else:
                    self._threads.append(Worker(self.scheduler_address, functions=functions, nthreads=threads_per_worker,
                                                name=name, memory_limit=memory_limit))
            for p in self._procs:
                _await_registration(p)
        except BaseException:
            self.close()
            raise
        _live.add(self)

    def export_credentials(self, path: str, role: str = "client") -> None:
        """Writes this cluster's ``role`` secret (``"client"`` or
        ``"worker"``) to a new owner-only file at ``path``, for another
        process: ``Client(address, credentials=path)`` or ``python -m
        dask_rs.worker ADDRESS --credentials path``."""
        if self._scheduler is None:
            raise RuntimeError("this cluster is closed")
        self._scheduler.export_credentials(path, role)

    @property
    def worker_processes(self) -> List[subprocess.Popen]:
        """The worker processes (``processes=True``)."""
        return list(self._procs)

    def close(self) -> None:
        """Stops the workers and the scheduler."""
        for w in self._threads:
            w.stop()
        self._threads = []
        stop_processes(self._procs)
        self._procs = []
        scheduler, self._scheduler = getattr(self, "_scheduler", None), None
        if scheduler is not None:
            scheduler.stop()
        secrets, self._secrets = getattr(self, "_secrets", None), None
        if secrets is not None:
            shutil.rmtree(secrets, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LocalCluster {self.scheduler_address}, {len(self._procs) + len(self._threads)} workers>"


def stop_processes(processes: List[subprocess.Popen], timeout: float = 10.0) -> None:
    """SIGTERM (a worker then says ``close`` and exits), then SIGKILL for
    any process still running after ``timeout`` seconds."""
    for p in processes:
        if p.poll() is None:
            p.terminate()
    for p in processes:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _spawn(
    address: str,
    name: str,
    nthreads: int,
    functions: Optional[Dict[str, Any]],
    memory_limit: Optional[int],
    credentials: Optional[str],
) -> subprocess.Popen:
    # --no-reconnect: the scheduler lives in this process and has no journal,
    # so it never comes back; a worker outliving it should not wait for it.
    command = [sys.executable, "-m", "dask_rs.worker", address, "--nthreads", str(nthreads), "--name", name,
               "--no-reconnect"]
    if credentials:
        command += ["--credentials", credentials]
    for fname, f in (functions or {}).items():
        command += ["--functions", f"{fname}={f.__module__}:{f.__qualname__}"]
    if memory_limit:
        command += ["--memory-limit", str(memory_limit)]
    # As multiprocessing does for Dask's worker processes: the workers import
    # what this process can (functions pickled by reference, test modules).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def _await_registration(process: subprocess.Popen, timeout: float = 60.0) -> None:
    # The worker prints "Worker NAME at ADDRESS, connected to SCHEDULER"
    # once registered (as dask-worker does).
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = process.stdout.readline()
    if not line.startswith("Worker ") or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f"a worker process did not register (it printed {line!r}, exit status {process.poll()})")


@atexit.register
def _close_all() -> None:
    for cluster in list(_live):
        cluster.close()
