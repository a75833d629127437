"""dask-rs and Python Dask reaching each other: each says what it reached.

Run by scripts/ci/python-dask.sh with a virtualenv's Python that has
dask[distributed]; argv[1] is the directory of the dask-rs binaries. Every
process is on 127.0.0.1 and stopped at the end.
"""

import asyncio
import os
import subprocess
import sys
import threading

from distributed import Client, Scheduler, Worker

BIN = sys.argv[1]
TIMEOUT = 60
failures = []


def check(name, ok, detail):
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        print("     " + detail.replace("\n", "\n     "))
        failures.append(name)


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def python_scheduler():
    """A Python Dask scheduler in a thread of its own; returns its address and a stopper."""
    ready = threading.Event()
    box = {}

    async def serve():
        async with Scheduler(host="127.0.0.1", port=0, dashboard=False, dashboard_address=None) as s:
            box["address"] = s.address
            box["stop"] = asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    ready.wait(TIMEOUT)

    def stop():
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(TIMEOUT)

    return box["address"], stop


# ---- dask-rs reaching a Python Dask scheduler -----------------------------------
address, stop = python_scheduler()
o = run(os.path.join(BIN, "dask-rs"), "info", "--scheduler", address)
check(
    "dask-rs info -> Python Dask scheduler: 'this is a Python Dask scheduler, not a dask/1 one'",
    o.returncode == 1 and "this is a Python Dask scheduler, not a dask/1 one" in o.stderr,
    f"exit {o.returncode}; stderr: {o.stderr}",
)
o = run(os.path.join(BIN, "dask-worker"), address, "--no-reconnect")
check(
    "dask-worker -> Python Dask scheduler: 'the peer speaks Python Dask's protocol'",
    o.returncode == 1 and "the peer speaks Python Dask's protocol" in o.stderr,
    f"exit {o.returncode}; stderr: {o.stderr}",
)
stop()

# ---- Python Dask reaching a dask-rs scheduler ----------------------------------
ours = subprocess.Popen(
    [os.path.join(BIN, "dask-scheduler"), "--port", "0"],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
)
try:
    line = ours.stdout.readline()
    address = line.strip().removeprefix("Scheduler at ")
    said = "this is a dask-rs (dask/1) scheduler, not a Python Dask one"
    try:
        Client(address, timeout=TIMEOUT).close()
        check("Python Client -> dask-rs scheduler", False, "it connected")
    except Exception as e:  # the one line, as the exception's text
        check(f"Python Client -> dask-rs scheduler: {type(e).__name__}: '{said}...'", said in str(e), repr(e))

    async def python_worker():
        try:
            async with Worker(address, nthreads=1, dashboard=False):
                return "it started"
        except Exception as e:
            return repr(e) + repr(e.__cause__)

    outcome = asyncio.run(python_worker())
    check(f"Python Worker -> dask-rs scheduler: '{said}...'", said in outcome, outcome)
finally:
    ours.terminate()
    ours.wait(TIMEOUT)

print(f"python-dask: {'ok' if not failures else str(len(failures)) + ' failed'}")
sys.exit(1 if failures else 0)
