"""Dask distributed on the benchmark shapes, printed as JSON lines.

Run by bench/run.sh inside a venv with dask[distributed]; each shape is run
on a fresh LocalCluster(n_workers=2, threads_per_worker=1), matching
dask-rs's 2 workers x 1 thread. Sizes come from the command line, since
Dask needs smaller instances than dask-rs to finish in reasonable time.
"""

import json
import operator
import random
import sys
import time

import dask
from distributed import Client, LocalCluster, wait


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def total(*xs):
    return sum(xs)


def independent(n):
    return {("inc", i): (inc, i) for i in range(n)}, [("inc", i) for i in range(n)]


def tree(leaves, leaf=lambda i: (inc, i), node=add):
    """A binary reduction: leaf i is `leaf(i)`, each node `node` of two."""
    dsk = {("t", 0, i): leaf(i) for i in range(leaves)}
    level, width = 0, leaves
    while width > 1:
        for i in range(width // 2):
            dsk[("t", level + 1, i)] = (node, ("t", level, 2 * i), ("t", level, 2 * i + 1))
        level, width = level + 1, width // 2
    return dsk, [("t", level, 0)]


def chain(n):
    dsk = {("c", 0): (inc, 0)}
    for i in range(1, n):
        dsk[("c", i)] = (inc, ("c", i - 1))
    return dsk, [("c", n - 1)]


def all_to_all(n):
    dsk = {("a", i): (inc, i) for i in range(n)}
    for j in range(n):
        dsk[("b", j)] = (total,) + tuple(("a", i) for i in range(n))
    return dsk, [("b", j) for j in range(n)]


SHAPES = {"independent": independent, "tree": tree, "chain": chain, "all_to_all": all_to_all}


def scheduler_cpu(client):
    # The scheduler's event-loop thread CPU time (LocalCluster runs the
    # scheduler inside this process, so process time would include the client).
    return client.run_on_scheduler(lambda: time.thread_time())


def run_shape(name, size):
    dsk, keys = SHAPES[name](size)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.get({("warm", 0): (inc, 1)}, [("warm", 0)])
            cpu0 = scheduler_cpu(client)
            t0 = time.perf_counter()
            client.get(dsk, keys, sync=True)
            wall = time.perf_counter() - t0
            cpu = scheduler_cpu(client) - cpu0
    return {"shape": name, "size": size, "tasks": len(dsk), "seconds": wall,
            "tasks_per_s": len(dsk) / wall, "scheduler_cpu_us_per_task": cpu * 1e6 / len(dsk)}


def round_trip(n):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.submit(inc, 0, pure=False).result()
            samples = []
            for i in range(n):
                t0 = time.perf_counter()
                client.submit(inc, i, pure=False).result()
                samples.append(time.perf_counter() - t0)
    samples.sort()
    return {"shape": "round_trip", "size": n, "median_us": samples[len(samples) // 2] * 1e6,
            "p90_us": samples[int(len(samples) * 0.9)] * 1e6}


def make_bytes(n, seed):
    # In 64 MiB pieces: randbytes(n) overflows a C int of bits past 256 MiB.
    r = random.Random(seed)
    piece = 1 << 26
    return b"".join(r.randbytes(min(piece, n - i)) for i in range(0, n, piece))


def transfer(sizes, runs=5):
    """A value made on one worker, `len` of it on the other: best MB/s."""
    results = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            w0, w1 = sorted(client.scheduler_info()["workers"])
            client.submit(inc, 0, pure=False).result()
            for n in sizes:
                best = 0.0
                for run in range(runs):
                    made = client.submit(make_bytes, n, run, workers=[w0], pure=False)
                    wait(made)
                    t0 = time.perf_counter()
                    used = client.submit(len, made, workers=[w1], pure=False)
                    assert used.result() == n
                    best = max(best, n / (time.perf_counter() - t0) / 1e6)
                    del made, used
                results.append({"shape": f"transfer-{n}", "size": n, "mb_per_s": best})
    return results


def mixed(fast, slow, seconds, threads=2):
    """Issue 19's mixed workload: `slow` x sleep(seconds) right after
    `fast` incs, on 2 workers x `threads` threads; the sleeps are timed."""
    with LocalCluster(n_workers=2, threads_per_worker=threads, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.get({("warm", 0): (inc, 1)}, [("warm", 0)])
            client.get({("inc", i): (inc, i) for i in range(fast)}, [("inc", i) for i in range(fast)], sync=True)
            dsk = {("sleep", i): (nap, seconds, i) for i in range(slow)}
            t0 = time.perf_counter()
            client.get(dsk, list(dsk), sync=True)
            wall = time.perf_counter() - t0
    return {"shape": "mixed", "size": slow, "seconds": wall}


def bimodal(slow, slow_seconds, fast, fast_seconds, threads=2):
    """One slow sleep then fast ones, over and over, on 2 workers x
    `threads` threads; neither duration known at submission."""
    per_slow = fast // slow
    dsk = {}
    for i in range(slow):
        dsk[("slow", i)] = (nap, slow_seconds, len(dsk))
        for j in range(per_slow):
            dsk[("fast", i * per_slow + j)] = (nap, fast_seconds, len(dsk))
    with LocalCluster(n_workers=2, threads_per_worker=threads, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.get({("warm", 0): (inc, 1)}, [("warm", 0)])
            t0 = time.perf_counter()
            client.get(dsk, list(dsk), sync=True)
            wall = time.perf_counter() - t0
    return {"shape": "bimodal", "size": len(dsk), "seconds": wall}


def nap(seconds, value):
    time.sleep(seconds)
    return value


def main():
    sizes = json.loads(sys.argv[1])
    label = sys.argv[2] if len(sys.argv) > 2 else "default"
    for name, size in sizes.items():
        if name == "transfer":
            results = transfer(size)
        elif name == "mixed":
            results = [mixed(*size)]
        elif name == "bimodal":
            results = [bimodal(*size)]
        elif name == "round_trip":
            results = [round_trip(size)]
        else:
            results = [run_shape(name, size)]
        for result in results:
            result["dask"] = label
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
