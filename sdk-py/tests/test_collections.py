"""Dask's collections on dask-rs through Client.get, each compared with the
same computation on Dask's own local scheduler."""

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from conftest import addresses_of


def test_array_mean_of_x_plus_transpose_and_an_axis_reduction(client):
    x = da.random.RandomState(1234).random_sample((4000, 4000), chunks=(1000, 1000))
    y = (x + x.T).mean()
    assert y.compute(scheduler=client.get) == y.compute(scheduler="sync")
    z = x.std(axis=0)
    np.testing.assert_array_equal(z.compute(scheduler=client.get), z.compute(scheduler="sync"))
    w = (x[::2, :] @ x[:, ::2]).sum(axis=1)  # a matmul: transfers between workers
    np.testing.assert_allclose(w.compute(scheduler=client.get), w.compute(scheduler="sync"), rtol=1e-12)


def test_dataframe_groupby_mean_on_millions_of_rows(client):
    n = 3_000_000
    rng = np.random.RandomState(7)
    pdf = pd.DataFrame({"hour": rng.randint(0, 24, size=n), "value": rng.random_sample(n)})
    df = dd.from_pandas(pdf, npartitions=12)
    mean = df.groupby("hour").value.mean()
    with dask.config.set(scheduler=client.get):
        ours = mean.compute()
    theirs = mean.compute(scheduler="sync")
    pd.testing.assert_series_equal(ours.sort_index(), theirs.sort_index())
    pd.testing.assert_series_equal(ours.sort_index(), pdf.groupby("hour").value.mean(), rtol=1e-12)


def test_bag_word_count(client):
    lines = ["the quick brown fox", "jumps over the lazy dog", "the end"] * 200
    counts = db.from_sequence(lines, npartitions=6).str.split().flatten().frequencies()
    ours = dict(counts.compute(scheduler=client.get))
    assert ours == dict(counts.compute(scheduler="sync"))
    assert ours["the"] == 600 and ours["fox"] == 200


def test_delayed_and_futures_in_graphs(client):
    @dask.delayed
    def inc(x):
        return x + 1

    total = dask.delayed(sum)([inc(i) for i in range(20)])
    assert total.compute(scheduler=client.get) == 210
    # A graph holding a future of this client: its value moves to the task.
    f = client.submit(lambda: 100)
    assert dask.delayed(lambda a, b: a + b)(f, inc(1)).compute(scheduler=client.get) == 102


def test_graph_tasks_run_on_python_workers_and_errors_surface(client):
    @dask.delayed
    def boom(x):
        raise KeyError(x)

    with pytest.raises(KeyError):
        boom(1).compute(scheduler=client.get)
    # Old-style tuple graphs, keys of every kind.
    dsk = {"a": 1, ("b", 0): (lambda x: x + 1, "a"), 5: (sum, ["a", ("b", 0)]), "(odd": "a"}
    assert client.get(dsk, [5, ["(odd", ("b", 0)]]) == [3, [1, 2]]
    assert client.get(dsk, 5) == 3
    assert addresses_of(client, "py-")


class Recording:
    """The client's native half, recording what comes back to the client."""

    def __init__(self, native):
        self._native = native
        self.gathered = []

    def gather(self, futures, timeout=None):
        values = self._native.gather(futures, timeout)
        self.gathered.append([f.key for f in futures])
        return values

    def __getattr__(self, name):
        return getattr(self._native, name)


def test_intermediate_values_stay_on_the_workers(client):
    # 16 chunks of 2 MB and a matmul: chunks move between workers, and
    # only the one output comes to the client.
    x = da.random.RandomState(3).random_sample((2000, 2000), chunks=(500, 500))
    y = (x @ x.T).sum()
    recording = Recording(client._native)
    client._native = recording
    try:
        ours = y.compute(scheduler=client.get)
    finally:
        client._native = recording._native
    np.testing.assert_allclose(ours, y.compute(scheduler="sync"), rtol=1e-12)
    assert len(recording.gathered) == 1 and len(recording.gathered[0]) == 1, recording.gathered
