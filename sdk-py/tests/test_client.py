"""The client's habits (Dask's and concurrent.futures'), on the real
cluster of conftest.py."""

import gc
import operator
import threading
import time

import pytest

import dask_rs
from conftest import addresses_of, wait_until


def inc(x):
    return x + 1


def slow_identity(x, seconds=0.3):
    time.sleep(seconds)
    return x


def test_submit_runs_a_callable_and_a_named_function(client):
    assert client.submit(inc, 41).result() == 42
    assert client.submit(lambda x, y=0: x * 10 + y, 4, y=2).result() == 42
    assert client.submit("add", 40, 2).result() == 42  # any worker's built-in
    assert client.submit("py.word_count", "one two three").result() == 3


def test_map_and_gather_keep_order_and_structure(client):
    futures = client.map(operator.mul, range(100), range(100))
    assert client.gather(futures) == [i * i for i in range(100)]
    nested = {"a": futures[2], "b": [futures[3], (futures[4], 7)]}
    assert client.gather(nested) == {"a": 4, "b": [9, (16, 7)]}
    assert client.map(inc, [1, 2], key=["k-one", "k-two"])[1].key == "k-two"


def test_futures_as_arguments_move_between_workers(client):
    a = client.submit(inc, 1)
    b = client.submit(operator.add, a, 10)
    c = client.submit(lambda t, d: t[0] + t[1] + d["x"], (a, b), {"x": b})  # in a tuple and a dict
    assert c.result() == 2 + 12 + 12
    total = client.submit(sum, [client.submit(inc, i) for i in range(10)])
    assert total.result() == 55
    assert client.submit("add", a, b).result() == 14  # a Python result into a Rust function


def test_pure_keys_are_shared_and_fresh_keys_are_not(client):
    assert client.submit(inc, 5, pure=True).key == client.submit(inc, 5, pure=True).key
    assert client.submit(inc, 5).key != client.submit(inc, 5).key
    assert client.submit(inc, 1, key="my-key").key == "my-key"


def test_as_completed_yields_in_completion_order(client):
    py0, py1 = sorted(addresses_of(client, "py-"))
    slow = client.submit(slow_identity, "slow", 1.0, workers=py0)
    fast = client.submit(slow_identity, "fast", 0.0, workers=py1)
    order = [f.result() for f in dask_rs.as_completed([slow, fast])]
    assert order == ["fast", "slow"]
    pairs = list(client.as_completed(client.map(inc, range(5)), with_results=True))
    assert sorted(r for _, r in pairs) == [1, 2, 3, 4, 5]
    ac = dask_rs.as_completed([client.submit(inc, 1)])
    first = next(ac)
    ac.add(client.submit(inc, first.result()))
    assert next(ac).result() == 3
    with pytest.raises(StopIteration):
        next(ac)


def test_wait_returns_done_and_not_done(client):
    py0, py1 = sorted(addresses_of(client, "py-"))
    slow = client.submit(slow_identity, 1, 5.0, workers=py0)
    fast = client.submit(inc, 1, workers=py1)
    done, not_done = dask_rs.wait([fast, slow], return_when=dask_rs.FIRST_COMPLETED)
    assert fast in done and slow in not_done
    with pytest.raises(TimeoutError):
        dask_rs.wait([slow], timeout=0.1)
    client.cancel([slow])


def test_cancel_ends_a_running_key(client):
    f = client.submit(slow_identity, 1, 30.0)
    time.sleep(0.2)
    f.cancel()
    with pytest.raises(dask_rs.CancelledError):
        f.result(timeout=10)
    assert f.cancelled()
    import concurrent.futures

    g = client.submit(slow_identity, 1, 30.0)
    client.cancel(g)
    with pytest.raises(concurrent.futures.CancelledError):  # concurrent.futures' habit
        g.result(timeout=10)


def test_scatter_lists_dicts_and_broadcast(client):
    import numpy as np

    [a, b] = client.scatter([np.arange(5), {"x": 1}])
    assert client.submit(lambda arr, d: int(arr.sum()) + d["x"], a, b).result() == 11
    d = client.scatter({"p": 1, "q": (2, 3)})
    assert client.gather(d) == {"p": 1, "q": (2, 3)}
    one = client.scatter(7, broadcast=True)
    assert len(client.who_has([one])[one.key]) == 3
    py = sorted(addresses_of(client, "py-"))
    on = client.scatter([1], workers=[py[0]])[0]
    assert client.who_has([on])[on.key] == [py[0]]


def test_datasets_between_clients(client, cluster):
    f = client.submit(inc, 99)
    client.publish_dataset(answer=f)
    client.publish_dataset([client.submit(inc, 1), client.submit(inc, 2)], name="pair")
    assert {"answer", "pair"} <= set(client.list_datasets())
    with pytest.raises(dask_rs.RefusedError) as e:
        client.publish_dataset(answer=f)
    assert e.value.code == 4005
    with dask_rs.Client(cluster.address) as other:
        assert [x.result() for x in other.get_dataset("answer")] == [100]
        assert other.gather(other.get_dataset("pair")) == [2, 3]
        other.unpublish_dataset("pair")
    client.unpublish_dataset("answer")
    with pytest.raises(dask_rs.RefusedError):
        client.get_dataset("answer")


def test_who_has_and_cluster_info(client):
    info = client.scheduler_info()
    names = sorted(w["name"] for w in info["workers"].values())
    assert names == ["py-0", "py-1", "rust-0"]
    for w in info["workers"].values():
        if w["name"].startswith("py-"):
            assert "codec:cloudpickle" in w["functions"] and "py.word_count" in w["functions"]
            assert "conformance.echo" in w["functions"]
        else:
            assert "codec:cloudpickle" not in w["functions"]
    f = client.submit(inc, 1)
    f.result()
    assert client.who_has([f])[f.key][0] in addresses_of(client, "py-")
    assert sum(client.nthreads().values()) == 3


def test_results_are_released_with_the_last_reference(client):
    f = client.submit(inc, 1)
    key = f.key
    f.result()
    g = f  # a second reference to the same Future keeps it
    del f
    gc.collect()
    assert client.who_has([g])[key]
    del g
    gc.collect()

    def forgotten():
        probe = client.submit(inc, 0)  # any request: who_has of a key we no longer hold
        probe.result()
        return client.cluster_info()["tasks"].get("memory", 0) <= 1

    wait_until(forgotten, what="the released key to leave the scheduler")


def test_the_gil_is_released_while_waiting(client):
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    t = threading.Thread(target=tick)
    t.start()
    client.submit(slow_identity, 1, 1.0).result()
    stop.set()
    t.join()
    assert len(ticks) >= 20  # about 100 if the thread ran the whole second


def test_context_manager_closes_the_connection(cluster):
    with dask_rs.Client(cluster.address) as c:
        f = c.submit(inc, 1)
        assert f.result() == 2
    assert c.status == "closed"
    with pytest.raises(RuntimeError):
        c.submit(inc, 1)


def test_client_without_address_starts_a_local_cluster():
    with dask_rs.Client(n_workers=2, threads_per_worker=1) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        assert c.gather(c.map(inc, range(4))) == [1, 2, 3, 4]
        procs = c.cluster.worker_processes
    assert all(p.poll() is not None for p in procs)
    with dask_rs.LocalCluster(n_workers=1, processes=False) as cluster, dask_rs.Client(cluster) as c:
        assert c.submit(inc, 1).result() == 2


def test_connecting_to_nothing_fails_with_a_connection_error():
    with pytest.raises(ConnectionError) as e:
        dask_rs.Client("tcp://127.0.0.1:1", timeout=5)
    assert "127.0.0.1:1" in str(e.value)


def test_the_readme_quickstart_runs():
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "sum of squares 285" in out.stdout and "40 + 2 = 42" in out.stdout
    mean = float(out.stdout.split("mean")[1])
    assert 0.99 < mean < 1.01
