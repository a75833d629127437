"""The Python client across a scheduler restart (issue 16): a real
``dask-scheduler --journal DIR`` is killed with SIGKILL and started again on
the same port and journal. The native (Rust) client under ``dask_rs.Client``
connects again and resumes its session, so the Python futures get their
outcomes; a scheduler that kept no session makes them lost.

Workers come back too: ``dask-worker`` and ``python -m dask_rs.worker``
register again (for 60 s by default) keeping their values, which the
restarted scheduler adopts instead of computing them again.
"""

import signal
import socket
import subprocess
import time

import pytest

import dask_rs
from conftest import binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_scheduler(processes, port: int, journal) -> subprocess.Popen:
    p = processes.start([str(binary("dask-scheduler")), "--host", "127.0.0.1", "--port", str(port),
                         "--no-dashboard", "--journal", str(journal)])
    line = p.stdout.readline()
    assert line.startswith("Scheduler at "), f"dask-scheduler printed {line!r}"
    return p


def kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)


def test_futures_survive_a_scheduler_restart_from_its_journal(processes, tmp_path):
    port = free_port()
    journal = tmp_path / "journal"
    scheduler = start_scheduler(processes, port, journal)
    address = f"tcp://127.0.0.1:{port}"
    processes.rust_worker(address, "rust-r")
    with dask_rs.Client(address) as client:
        done = client.submit("inc", 41)
        assert done.result(timeout=60) == 42
        # Running when the scheduler dies: sleep 1.5 s then 7, and what needs it.
        slow = client.submit("sleep", 1.5, 7)
        total = client.submit("add", slow, done)
        # Over the inline bound (4 KiB): fetched from the worker after the restart.
        big = client.submit("sleep", 0, "x" * 100_000)
        time.sleep(0.3)
        kill(scheduler)
        assert total.status == "pending"
        scheduler = start_scheduler(processes, port, journal)
        assert total.result(timeout=60) == 49
        assert done.result(timeout=60) == 42
        assert len(big.result(timeout=60)) == 100_000
        # The resumed session takes new work.
        assert client.submit("inc", 1).result(timeout=60) == 2


def test_futures_are_lost_when_the_restarted_scheduler_kept_no_session(processes, tmp_path):
    port = free_port()
    scheduler = start_scheduler(processes, port, tmp_path / "first")
    address = f"tcp://127.0.0.1:{port}"
    processes.rust_worker(address, "rust-l")
    with dask_rs.Client(address) as client:
        # One graph: the quick task's event shows the scheduler accepted it
        # (a graph nothing acknowledged would be sent again, and run anew).
        quick, slow = client.map("sleep", [0, 30])
        quick.result(timeout=60)
        kill(scheduler)
        # Another journal: it knows nothing of this client's session.
        start_scheduler(processes, port, tmp_path / "second")
        with pytest.raises(dask_rs.LostError, match="did not keep this client's session"):
            slow.result(timeout=60)
        assert slow.status == "lost"


def test_a_python_worker_registers_again_and_its_results_are_adopted(processes, tmp_path):
    port = free_port()
    journal = tmp_path / "journal"
    scheduler = start_scheduler(processes, port, journal)
    address = f"tcp://127.0.0.1:{port}"
    worker = processes.python_worker(address, "py-r")  # --reconnect-timeout: 60 s by default
    runs = tmp_path / "runs"

    def make(n, path=str(runs)):
        with open(path, "a") as f:
            f.write("run\n")
        return "x" * n

    with dask_rs.Client(address) as client:
        # Over the inline bound (4 KiB): the value stays on the worker.
        held = client.submit(make, 100_000)
        assert len(held.result(timeout=60)) == 100_000
        kill(scheduler)
        scheduler = start_scheduler(processes, port, journal)
        # Only a Python worker runs cloudpickled callables: this one came back.
        assert client.submit(lambda s: len(s), held).result(timeout=60) == 100_000
        assert client.submit("py.word_count", "one two three").result(timeout=60) == 3
        assert worker.poll() is None, "the same worker process, registered again"
    # Adopted from the worker, not computed again.
    assert runs.read_text() == "run\n"
