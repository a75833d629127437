"""Peak memory of dask-rs's graph order beside dask.order's, on the same graphs.

Run by bench/order.sh in a venv with dask, pytest and numpy:

    python bench/order_pressure.py ORDER_BINARY [--quick]

For every graph, the peak "pressure" (the most results held at once in a
sequential run, as dask.order.diagnostics counts it) of three orders:
dask.order's; dask-rs's (dask_core::order, computed by ORDER_BINARY, the
dask-bench `order_pressure` binary); and the depth-first order the
dask-rs scheduler used before. All three are measured by Dask's own
diagnostics(), so they are measured alike.

Graphs: scalable shapes written here (trees, fan-out/fan-in, stacked
reductions, map-overlap, random DAGs, some also with their keys submitted
in shuffled order) and every graph Dask's own dask/tests/test_order.py
passes to dask.order.order (captured while running that test file).
Prints a markdown table; exits 1 when dask-rs's peak is higher than
dask.order's on any graph (scripts/ci/python-dask.sh runs it --quick).
"""

import json
import os
import random
import subprocess
import sys
import time

import dask
import dask.order
from dask.core import get_deps


def f(*args):
    return None


# ---------------------------------------------------------------- shapes


def reduce_into(dsk, names, split, prefix):
    """Adds a reduction of `names`, `split` at a time, keys `prefix` +
    (level, index); returns the final key."""
    level = 0
    while len(names) > 1:
        level += 1
        nxt = []
        for j in range(0, len(names), split):
            key = (*prefix, level, j // split)
            dsk[key] = (f, *names[j : j + split])
            nxt.append(key)
        names = nxt
    return names[0]


def tree(leaves, split=2):
    """A reduction: `leaves` leaves combined `split` at a time."""
    dsk = {("leaf", i): (f,) for i in range(leaves)}
    reduce_into(dsk, [("leaf", i) for i in range(leaves)], split, ("node",))
    return dsk


def fan_out_fan_in(width):
    """One root, `width` tasks on it, one sink on them all."""
    dsk = {"root": (f,)}
    for i in range(width):
        dsk[("mid", i)] = (f, "root")
    dsk["sink"] = (f, *[("mid", i) for i in range(width)])
    return dsk


def shared_root_chains(width, length):
    """One root feeding `width` chains of `length` tasks, each a result."""
    dsk = {"root": (f,)}
    for i in range(width):
        prev = "root"
        for j in range(length):
            dsk[("c", i, j)] = (f, prev)
            prev = ("c", i, j)
    return dsk


def chains_fan_in(width, length):
    """`width` independent chains of `length` tasks summed by one sink."""
    dsk = {}
    for i in range(width):
        prev = None
        for j in range(length):
            dsk[("c", i, j)] = (f, prev) if prev else (f,)
            prev = ("c", i, j)
    dsk["sink"] = (f, *[("c", i, length - 1) for i in range(width)])
    return dsk


def stacked_reductions(chunks, reductions, split=4):
    """Several reductions of the same chunks, computed together (the
    xarray-like reduction of dask/dask#10384: `mean` of a Dataset holding
    several variables derived from the same data)."""
    dsk = {("x", i): (f,) for i in range(chunks)}
    for r in range(reductions):
        names = []
        for i in range(chunks):
            dsk[("map", r, i)] = (f, ("x", i))
            names.append(("map", r, i))
        reduce_into(dsk, names, split, ("red", r))
    return dsk


def anomaly(chunks, layers, split=4):
    """Reductions stacked in layers: each layer subtracts the previous
    layer's mean from every chunk (x - x.mean(), repeated)."""
    dsk = {("y", 0, i): (f,) for i in range(chunks)}
    for layer in range(layers):
        names = [("y", layer, i) for i in range(chunks)]
        mean = reduce_into(dsk, names, split, ("mean", layer))
        for i in range(chunks):
            dsk[("y", layer + 1, i)] = (f, ("y", layer, i), mean)
    return dsk


def map_overlap_1d(chunks):
    """dask.array map_overlap in one dimension: each chunk gets slivers of
    its neighbours, is mapped, then trimmed."""
    dsk = {}
    for i in range(chunks):
        dsk[("x", i)] = (f,)
        dsk[("left", i)] = (f, ("x", i))
        dsk[("right", i)] = (f, ("x", i))
    for i in range(chunks):
        parts = [("x", i)]
        if i > 0:
            parts.insert(0, ("right", i - 1))
        if i + 1 < chunks:
            parts.append(("left", i + 1))
        dsk[("overlap", i)] = (f, *parts)
        dsk[("mapped", i)] = (f, ("overlap", i))
        dsk[("trim", i)] = (f, ("mapped", i))
    return dsk


def map_overlap_2d(n):
    """map_overlap on an n x n grid of chunks: each chunk takes the
    borders of its eight neighbours."""
    dsk = {}
    for i in range(n):
        for j in range(n):
            dsk[("x", i, j)] = (f,)
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if (di, dj) != (0, 0):
                        dsk[("edge", i, j, di, dj)] = (f, ("x", i, j))
    for i in range(n):
        for j in range(n):
            parts = [("x", i, j)]
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if (di, dj) != (0, 0) and 0 <= a < n and 0 <= b < n:
                        parts.append(("edge", a, b, -di, -dj))
            dsk[("overlap", i, j)] = (f, *parts)
            dsk[("mapped", i, j)] = (f, ("overlap", i, j))
            dsk[("trim", i, j)] = (f, ("mapped", i, j))
    return dsk


def map_overlap_test_shape(chunks):
    """The shape of test_map_overlap in dask/tests/test_order.py, made
    longer: e_i -> d_i -> c_i for odd i, d_i alone for even i, each c
    joining neighbouring d's, each b joining neighbouring c's."""
    dsk = {}
    for i in range(1, chunks + 1):
        if i % 2:
            dsk[("e", i)] = (f,)
            dsk[("d", i)] = (f, ("e", i))
            dsk[("c", i)] = (f, ("d", i))
        else:
            dsk[("d", i)] = (f,)
            dsk[("c", i)] = (f, *[("d", k) for k in (i - 1, i, i + 1) if 1 <= k <= chunks])
    for i in range(1, chunks + 1, 2):
        dsk[("b", i)] = (f, *[("c", k) for k in (i - 1, i, i + 1) if 1 <= k <= chunks])
    return dsk


def random_dag(n, seed, window=None, fan=3):
    """Each task depends on up to `fan` earlier tasks, picked among the
    last `window` (locality) or anywhere (window None)."""
    rng = random.Random(seed)
    dsk = {}
    for i in range(n):
        lo = 0 if window is None else max(0, i - window)
        k = rng.randint(0, min(fan, i - lo)) if i > lo else 0
        deps = rng.sample(range(lo, i), k) if k else []
        dsk[("r", i)] = (f, *[("r", d) for d in deps])
    return dsk


def shuffled(dsk, seed=0):
    """The same graph with its keys in a random submission order."""
    items = list(dsk.items())
    random.Random(seed).shuffle(items)
    return dict(items)


def shapes(quick):
    s = 4 if quick else 1
    yield "tree, 4,096 leaves", tree(4096 // s)
    yield "tree, 4,096 leaves, split 8", tree(4096 // s, 8)
    yield "fan-out/fan-in, 1,000 wide", fan_out_fan_in(1000 // s)
    yield "shared root, 500 chains of 4", shared_root_chains(500 // s, 4)
    yield "500 chains of 4, one sink", chains_fan_in(500 // s, 4)
    yield "stacked reductions, 3 over 1,000 chunks", stacked_reductions(1000 // s, 3)
    yield "stacked reductions, 3 over 1,000 chunks, shuffled", shuffled(stacked_reductions(1000 // s, 3))
    yield "anomaly, 3 layers of 500 chunks", anomaly(500 // s, 3)
    yield "map-overlap 1-d, 1,000 chunks", map_overlap_1d(1000 // s)
    yield "map-overlap 1-d, 1,000 chunks, shuffled", shuffled(map_overlap_1d(1000 // s))
    yield "map-overlap 2-d, 30 x 30", map_overlap_2d(30 // (2 if quick else 1))
    yield "map-overlap 2-d, 30 x 30, shuffled", shuffled(map_overlap_2d(30 // (2 if quick else 1)))
    yield "test_map_overlap shape, 1,001 chunks", map_overlap_test_shape(1001 // s)
    for seed in range(3):
        yield f"random DAG, 5,000 tasks, local (seed {seed})", random_dag(5000 // s, seed, window=50)
    for seed in range(3):
        yield f"random DAG, 2,000 tasks, anywhere (seed {seed})", random_dag(2000 // s, seed)


# ------------------------------------------- graphs of Dask's own tests


def dask_test_graphs():
    """Every graph dask/tests/test_order.py orders, by test id."""
    import pytest

    captured = []
    original = dask.order.order
    current = {"test": "?"}

    def capturing(dsk, *args, **kwargs):
        try:
            captured.append((current["test"], dict(dsk)))
        except Exception:
            pass
        return original(dsk, *args, **kwargs)

    class Plugin:
        def pytest_runtest_setup(self, item):
            current["test"] = item.name

    import dask.tests.test_order as test_order

    dask.order.order = capturing
    test_order.order = capturing
    here = os.getcwd()
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"order-pressure-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    try:
        # Quiet, no cache, tests run in a scratch directory (some write files).
        os.chdir(tmp)
        with open(os.devnull, "w") as devnull:
            stdout = sys.stdout
            sys.stdout = devnull
            try:
                pytest.main(
                    ["-q", "-p", "no:cacheprovider", test_order.__file__],
                    plugins=[Plugin()],
                )
            finally:
                sys.stdout = stdout
    finally:
        os.chdir(here)
        dask.order.order = original
        test_order.order = original
    seen = set()
    for name, dsk in captured:
        deps, _ = get_deps(dsk)
        if any(d not in dsk for ds in deps.values() for d in ds):
            continue  # refers to keys outside the graph
        keys = list(dsk)
        index = {k: i for i, k in enumerate(keys)}
        signature = tuple(tuple(sorted(index[d] for d in deps[k])) for k in keys)
        if len(keys) < 3 or signature in seen:
            continue
        seen.add(signature)
        yield f"test_order: {name}", dsk


# ------------------------------------------------------------ measuring


def dependency_lists(dsk):
    deps, _ = get_deps(dsk)
    keys = list(dsk)
    index = {k: i for i, k in enumerate(keys)}
    # Sets have no order: each task's dependencies in submission order.
    return keys, [sorted(index[d] for d in deps[k]) for k in keys]


def peak(dsk, o):
    return max(dask.order.diagnostics(dsk, o=o)[1], default=0)


def main():
    binary = sys.argv[1]
    quick = "--quick" in sys.argv
    graphs = list(shapes(quick)) + list(dask_test_graphs())
    keys_of = []
    lines = []
    for _, dsk in graphs:
        keys, lists = dependency_lists(dsk)
        keys_of.append(keys)
        lines.append(json.dumps(lists))
    out = subprocess.run(
        [binary], input="\n".join(lines) + "\n", stdout=subprocess.PIPE, text=True, check=True
    ).stdout.splitlines()
    rows = []
    for (name, dsk), keys, line in zip(graphs, keys_of, out):
        ours = json.loads(line)
        if "error" in ours:
            continue  # a cycle (test_order_cycle)
        started = time.perf_counter()
        dask_order = dask.order.order(dsk)
        dask_ms = (time.perf_counter() - started) * 1000
        rows.append(
            {
                "name": name,
                "tasks": len(dsk),
                "dask": peak(dsk, dask_order),
                "ours": peak(dsk, dict(zip(keys, ours["order"]))),
                "depth_first": peak(dsk, dict(zip(keys, ours["depth_first"]))),
                "dask_ms": dask_ms,
                "ours_ms": ours["micros"] / 1000,
            }
        )
    print(f"dask {dask.__version__}; peak results held in a sequential run (dask.order.diagnostics)\n")
    print("| graph | tasks | dask.order | dask-rs order | depth-first (old scheduler order) | dask.order ms | dask-rs ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    tests = [r for r in rows if r["name"].startswith("test_order")]
    for r in rows:
        if r in tests:
            continue
        mark = " **lower**" if r["ours"] < r["dask"] else (" **higher**" if r["ours"] > r["dask"] else "")
        print(
            f"| {r['name']} | {r['tasks']:,} | {r['dask']} | {r['ours']}{mark} | {r['depth_first']} "
            f"| {r['dask_ms']:.1f} | {r['ours_ms']:.2f} |"
        )
    lower = [r for r in tests if r["ours"] < r["dask"]]
    higher = [r for r in tests if r["ours"] > r["dask"]]
    df_higher = [r for r in tests if r["depth_first"] > r["dask"]]
    print(
        f"\nDask's test_order.py graphs: {len(tests)} distinct; dask-rs order lower on {len(lower)}, "
        f"equal on {len(tests) - len(lower) - len(higher)}, higher on {len(higher)} "
        f"(depth-first higher on {len(df_higher)})."
    )
    for r in lower + higher:
        print(f"- {r['name']} ({r['tasks']} tasks): dask.order {r['dask']}, dask-rs {r['ours']}, depth-first {r['depth_first']}")
    if "--json" in sys.argv:
        json.dump(rows, sys.stderr)
    worse = [r["name"] for r in rows if r["ours"] > r["dask"]]
    if worse:
        # The goal (issue 14): never a higher peak than dask.order's.
        print(f"order_pressure: dask-rs's order holds more than dask.order's on: {', '.join(worse)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
