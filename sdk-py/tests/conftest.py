"""A real cluster for the tests: a ``dask-scheduler`` process, two Python
worker processes (``python -m dask_rs.worker``, offering ``pyfuncs``) and
one Rust ``dask-worker`` process.

The binaries come from ``DASK_BIN_DIR``, else ``target/release`` or
``target/debug`` of this repository (``cargo build -p dask-scheduler -p
dask-worker -p dask-cluster``).

Credentials: the session runs in a ``DASK_RS_HOME`` of its own (set here,
before anything starts), so every program finds credentials as a user's
would (the file dask-scheduler creates, found with no flag) without
reading or writing the user's ``~/.dask-rs``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import dask_rs
from dask_rs.cluster import stop_processes

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

DASK_RS_HOME = Path(tempfile.mkdtemp(prefix="dask-rs-home-"))
os.environ["DASK_RS_HOME"] = str(DASK_RS_HOME)
os.environ.pop("DASK_CREDENTIALS", None)
atexit.register(shutil.rmtree, DASK_RS_HOME, True)


def binary(name: str) -> Path:
    candidates = []
    if os.environ.get("DASK_BIN_DIR"):
        candidates.append(Path(os.environ["DASK_BIN_DIR"]) / name)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    candidates += [target / "release" / name, target / "debug" / name]
    for c in candidates:
        if c.exists():
            return c
    pytest.fail(f"{name} not found in {[str(c) for c in candidates]}: run `cargo build -p dask-scheduler -p dask-worker -p dask-cluster` or set DASK_BIN_DIR")


def require_tool(tool: str) -> None:
    """Skips without ``tool`` unless DASK_PY_REQUIRE_ALL is set (CI sets it)."""
    import shutil

    if shutil.which(tool) is None:
        if os.environ.get("DASK_PY_REQUIRE_ALL"):
            pytest.fail(f"{tool} is required (DASK_PY_REQUIRE_ALL is set) and not on PATH")
        pytest.skip(f"{tool} is not on PATH")


class Processes:
    """Processes started for a test, stopped (then killed) at its end."""

    def __init__(self) -> None:
        self.all: List[subprocess.Popen] = []

    def start(self, command: List[str], **kwargs) -> subprocess.Popen:
        p = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, **kwargs)
        self.all.append(p)
        return p

    def scheduler(self) -> str:
        p = self.start([str(binary("dask-scheduler")), "--port", "0"])
        line = p.stdout.readline()
        assert line.startswith("Scheduler at "), f"dask-scheduler printed {line!r}"
        return line.split()[-1]

    def python_worker(self, address: str, name: str, nthreads: int = 1, *flags: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        p = self.start(
            [sys.executable, "-m", "dask_rs.worker", address, "--name", name, "--nthreads", str(nthreads),
             "--functions", "pyfuncs", *flags],
            env=env,
        )
        line = p.stdout.readline()
        assert line.startswith(f"Worker {name} at "), f"the Python worker printed {line!r}"
        return p

    def rust_worker(self, address: str, name: str) -> subprocess.Popen:
        p = self.start([str(binary("dask-worker")), address, "--name", name, "--nthreads", "1"])
        line = p.stdout.readline()
        assert line.startswith(f"Worker {name} at "), f"dask-worker printed {line!r}"
        return p

    def stop(self) -> None:
        stop_processes(self.all)


class Cluster:
    def __init__(self, address: str, workers: Dict[str, subprocess.Popen]) -> None:
        self.address = address
        self.workers = workers
        self.home = DASK_RS_HOME


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    procs = Processes()
    try:
        address = procs.scheduler()
        workers = {
            "py-0": procs.python_worker(address, "py-0"),
            "py-1": procs.python_worker(address, "py-1"),
            "rust-0": procs.rust_worker(address, "rust-0"),
        }
        yield Cluster(address, workers)
    finally:
        procs.stop()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[dask_rs.Client]:
    with dask_rs.Client(cluster.address) as c:
        c.wait_for_workers(3, timeout=30)
        yield c


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop()


def addresses_of(client: dask_rs.Client, prefix: str) -> set:
    return {w["address"] for w in client.cluster_info()["workers"] if w["name"].startswith(prefix)}


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
