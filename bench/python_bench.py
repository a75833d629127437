"""dask-rs with two Python workers beside Dask distributed's
LocalCluster(n_workers=2, threads_per_worker=1), in one run: the same
dask.array and dask.dataframe workloads and 20,000 tiny Python tasks.
Prints a markdown table (paste into BENCHMARKS.md). Run by bench/python.sh.

    python bench/python_bench.py [--quick] [--only NAME]
"""

import argparse
import time
from collections.abc import Mapping

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd


def inc(x):
    return x + 1


def array_workload(size, chunk):
    x = da.random.RandomState(0).random_sample((size, size), chunks=(chunk, chunk))
    return [(x + x.T).mean(), x.sum(axis=0)], size * size


def dataframe_workload(rows, partitions):
    rng = np.random.RandomState(0)
    pdf = pd.DataFrame({"hour": rng.randint(0, 24, size=rows), "value": rng.random_sample(rows)})
    df = dd.from_pandas(pdf, npartitions=partitions)
    return [df.groupby("hour").value.mean()], rows


def run_collection(get, collections):
    """Seconds, results, and the number of tasks in the graph(s) the
    scheduler was given (after Dask's optimisation)."""
    tasks = []

    def counting_get(dsk, keys, **kwargs):
        if not isinstance(dsk, Mapping):  # Dask hands an expression
            dsk = dsk.__dask_graph__()
        tasks.append(len(dsk))
        return get(dsk, keys, **kwargs)

    start = time.perf_counter()
    results = dask.compute(*collections, scheduler=counting_get)
    return time.perf_counter() - start, results, sum(tasks)


def run_tiny(client, n):
    start = time.perf_counter()
    futures = client.map(inc, range(n), pure=False)
    total = sum(client.gather(futures))
    elapsed = time.perf_counter() - start
    assert total == n * (n + 1) // 2, total
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", choices=["array", "dataframe", "tiny"])
    args = parser.parse_args()
    q = args.quick
    workloads = {
        "array": lambda: array_workload(4000 if q else 10000, 1000),
        "dataframe": lambda: dataframe_workload(1_000_000 if q else 5_000_000, 10 if q else 20),
    }
    tiny = 2_000 if q else 20_000

    import dask_rs
    import distributed

    rows = []
    names = [args.only] if args.only else ["array", "dataframe", "tiny"]
    systems = []
    with dask_rs.Client(n_workers=2, threads_per_worker=1) as rs:
        systems.append(("dask-rs", rs))
        results = {}
        for name in names:
            if name == "tiny":
                run_tiny(rs, 200)  # warm the workers' imports
                results[name] = (run_tiny(rs, tiny), None, tiny)
            else:
                colls, _ = workloads[name]()
                run_collection(rs.get, colls)  # warm-up
                results[name] = run_collection(rs.get, colls)
        ours = results
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as dc:
        results = {}
        for name in names:
            if name == "tiny":
                run_tiny(dc, 200)
                results[name] = (run_tiny(dc, tiny), None, tiny)
            else:
                colls, _ = workloads[name]()
                run_collection(dc.get, colls)
                results[name] = run_collection(dc.get, colls)
        theirs = results
    for name in names:
        (t1, r1, n1), (t2, r2, n2) = ours[name], theirs[name]
        if r1 is not None:
            for a, b in zip(r1, r2):
                if isinstance(a, pd.Series):
                    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())
                else:
                    np.testing.assert_allclose(a, b, rtol=1e-12)
        rows.append((name, n1, t1, n1 / t1, t2, n2 / t2, t2 / t1))
    labels = {
        "array": f"dask.array (x + x.T).mean() and x.sum(axis=0), {'4000' if q else '10000'}² in 1000² chunks",
        "dataframe": f"dask.dataframe groupby mean, {'1M' if q else '5M'} rows",
        "tiny": f"{tiny} tiny Python tasks (client.map(inc) + gather)",
    }
    print("| workload | tasks | dask-rs s | dask-rs tasks/s | Dask s | Dask tasks/s | Dask time / dask-rs time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, t1, r1, t2, r2, ratio in rows:
        print(f"| {labels[name]} | {n} | {t1:.2f} | {r1:,.0f} | {t2:.2f} | {r2:,.0f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
