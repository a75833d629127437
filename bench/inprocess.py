"""The in-process scheduler's overhead beside Dask's threaded and
synchronous schedulers, in one run (bench/inprocess.sh runs this).

    python bench/inprocess.py OVERHEAD_BINARY [--quick] [--no-scale]

OVERHEAD_BINARY is the dask-bench `inprocess_overhead` binary. Shapes: a
binary tree reduction of 32,767 tasks and 100,000 independent tasks, every
task a no-op function; each timed from the graph as given to the results
(Dask: dask.threaded.get with 2 workers, dask.get; dask-rs: compute() with
Scheduler::Threads(2), Scheduler::Sync), best of several runs, as
microseconds per task. Then dask-rs alone on growing graphs (up to about
10 million tasks), each in a process of its own: microseconds and bytes of
peak resident memory per task. Prints markdown tables.
"""

import json
import subprocess
import sys
import time

import dask
import dask.threaded

import dask_bench


def noop(*args):
    return None


def tree(tasks):
    return dask_bench.tree((tasks + 1) // 2, leaf=lambda i: (noop,), node=noop)


def independent(tasks):
    dsk = {("i", i): (noop,) for i in range(tasks)}
    return dsk, list(dsk)


def best_of(repeat, run):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def dask_rows(repeat):
    rows = []
    for shape, tasks, build in [("tree", 32_767, tree), ("independent", 100_000, independent)]:
        dsk, keys = build(tasks)
        runners = [
            ("threads-2", lambda: dask.threaded.get(dsk, keys, num_workers=2)),
            ("sync", lambda: dask.get(dsk, keys)),
        ]
        for scheduler, run in runners:
            seconds = best_of(repeat, run)
            rows.append({"shape": shape, "tasks": tasks, "scheduler": scheduler, "us_per_task": seconds * 1e6 / tasks})
    return rows


def rust_lines(binary, *args):
    out = subprocess.run([binary, *args], stdout=subprocess.PIPE, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def main():
    binary = sys.argv[1]
    quick = "--quick" in sys.argv
    repeat = 2 if quick else 5
    ours = {(r["shape"], r["scheduler"]): r for r in rust_lines(binary, "shapes", "--repeat", str(repeat))}
    theirs = {(r["shape"], r["scheduler"]): r for r in dask_rows(repeat)}
    print(f"dask {dask.__version__}; microseconds per task (wall), best of {repeat}, no-op tasks;")
    print("dask-rs's CPU time (all its threads, best of as many) beside: on a loaded machine the")
    print("wall time also counts the time its threads waited for a core\n")
    print("| shape | tasks | scheduler | Dask | dask-rs | Dask / dask-rs | dask-rs CPU |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for (shape, scheduler), r in ours.items():
        d = theirs[(shape, scheduler)]
        print(
            f"| {shape} | {r['tasks']:,} | {scheduler} | {d['us_per_task']:.1f} | "
            f"{r['us_per_task']:.2f} | {d['us_per_task'] / r['us_per_task']:.0f}x | {r['cpu_us_per_task']:.2f} |"
        )
    if "--no-scale" in sys.argv:
        return
    sizes = ["16383", "131071", "1048575"] + ([] if quick else ["8388607"])
    independent_sizes = ["10000", "100000", "1000000"] + ([] if quick else ["10000000"])
    rows = rust_lines(binary, "scale", "tree", *sizes) + rust_lines(binary, "scale", "independent", *independent_sizes)
    print("\ndask-rs, 2 threads, each size in a process of its own (peak resident memory over the tasks,")
    print("the task specs as the caller built them included)\n")
    print("| shape | tasks | us per task (wall) | CPU us per task | bytes per task |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['shape']} | {r['tasks']:,} | {r['us_per_task']:.2f} | {r['cpu_us_per_task']:.2f} "
            f"| {r['bytes_per_task']} |"
        )


if __name__ == "__main__":
    main()
