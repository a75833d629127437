"""A worker killed in the middle of a computation: the result is still exact."""

import signal
import time

import dask.array as da
import numpy as np

import dask_rs


def slow_block(block):
    time.sleep(0.05)
    return block * 2


def test_a_python_worker_killed_mid_computation(processes):
    address = processes.scheduler()
    victim = processes.python_worker(address, "victim")
    processes.python_worker(address, "survivor")
    with dask_rs.Client(address) as client:
        client.wait_for_workers(2, timeout=30)
        x = da.random.RandomState(5).random_sample((1200, 1200), chunks=(100, 100))
        y = x.map_blocks(slow_block).sum(axis=0)
        expected = x.map_blocks(lambda b: b * 2).sum(axis=0).compute(scheduler="sync")
        futures = client.map(lambda i: time.sleep(0.02) or i, range(60))
        done = []

        def kill_when_started():
            # Kill once the victim holds results, so some are lost with it.
            while not any(w["name"] == "victim" and w["stored_keys"] > 3 for w in client.cluster_info()["workers"]):
                time.sleep(0.02)
            victim.send_signal(signal.SIGKILL)
            done.append(True)

        import threading

        killer = threading.Thread(target=kill_when_started)
        killer.start()
        result = y.compute(scheduler=client.get)
        killer.join(timeout=60)
        assert done, "the victim was never killed"
        np.testing.assert_array_equal(result, expected)
        assert client.gather(futures) == list(range(60))
        assert [w["name"] for w in client.cluster_info()["workers"]] == ["survivor"]


def test_the_worker_command_lists_functions_and_exits_1_when_the_scheduler_is_lost(processes):
    import os
    import subprocess
    import sys

    from conftest import HERE

    env = dict(os.environ, PYTHONPATH=str(HERE))
    listing = subprocess.run([sys.executable, "-m", "dask_rs.worker", "tcp://127.0.0.1:1", "--functions", "pyfuncs",
                              "--list-functions"], capture_output=True, text=True, env=env, timeout=60)
    assert listing.returncode == 0 and "py.word_count" in listing.stdout.split()
    unreachable = subprocess.run([sys.executable, "-m", "dask_rs.worker", "tcp://127.0.0.1:1"],
                                 capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 1 and "tcp://127.0.0.1:1" in unreachable.stderr
    address = processes.scheduler()
    orphan = processes.python_worker(address, "orphan", 1, "--no-reconnect")
    waiting = processes.python_worker(address, "waiting", 1, "--reconnect-timeout", "2")
    processes.all[0].send_signal(signal.SIGKILL)  # the scheduler
    assert orphan.wait(timeout=30) == 1
    # It tries to register again for 2 s, then gives up.
    assert waiting.wait(timeout=30) == 1
