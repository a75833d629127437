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
