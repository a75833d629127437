"""``python -m dask_rs.worker tcp://HOST:PORT``: a Python worker process."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Callable, Dict, List, Optional

from . import Worker, load_functions


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dask_rs.worker",
        description="A dask-rs worker running Python functions.",
    )
    parser.add_argument("scheduler", help="the scheduler's address, tcp://HOST:PORT")
    parser.add_argument("--nthreads", type=int, default=1, help="tasks run at once (default 1: Python holds the GIL)")
    parser.add_argument("--name", help="a unique name (default: worker-HOST-PID-N)")
    parser.add_argument("--host", help="the host the data listener binds (default 127.0.0.1)")
    parser.add_argument("--memory-limit", type=int, help="bytes of values kept in memory before spilling")
    parser.add_argument("--local-directory", help="where spilled values go")
    parser.add_argument(
        "--functions", action="append", default=[], metavar="SPEC",
        help="named functions to offer: MODULE, MODULE:FUNCTION or NAME=MODULE:FUNCTION (repeatable)",
    )
    parser.add_argument("--list-functions", action="store_true", help="print the functions offered and exit")
    parser.add_argument(
        "--credentials", metavar="FILE",
        help="the cluster's credentials file [default: $DASK_CREDENTIALS, else $DASK_RS_HOME/credentials.json, "
             "else ~/.dask-rs/credentials.json]; its worker secret is proved to the scheduler and peers",
    )
    parser.add_argument(
        "--no-auth-anyone-can-connect", action="store_true",
        help="prove nothing, for a scheduler run with this flag (anyone who reaches the ports can submit work)",
    )
    parser.add_argument(
        "--reconnect-timeout", type=float, default=60.0, metavar="SECS",
        help="after losing the scheduler, keep registering again (every second, keeping the values held) "
             "for this long, then exit 1 (default 60, as dask-worker)",
    )
    parser.add_argument("--no-reconnect", action="store_true", help="exit 1 at once when the scheduler is lost")
    args = parser.parse_args(argv)
    if args.reconnect_timeout < 0:
        parser.error(f"--reconnect-timeout is {args.reconnect_timeout}: expected seconds, 0 or more")
    if "" not in sys.path:
        sys.path.insert(0, "")
    functions: Dict[str, Callable[..., Any]] = {}
    for spec in args.functions:
        functions.update(load_functions(spec))
    if args.list_functions:
        for name in sorted(functions):
            print(name)
        return 0
    try:
        worker = Worker(
            args.scheduler, functions, nthreads=args.nthreads, name=args.name, host=args.host,
            memory_limit=args.memory_limit, local_directory=args.local_directory,
            credentials=False if args.no_auth_anyone_can_connect else args.credentials,
            reconnect_timeout=0 if args.no_reconnect else args.reconnect_timeout,
        )
    except OSError as e:  # unreachable, refused (PermissionError), a bad credentials file
        print(f"cannot start a worker for {args.scheduler}: {e}", file=sys.stderr, flush=True)
        return 1
    print(f"Worker {worker.name} at {worker.address}, connected to {args.scheduler}", flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.is_set():
        if worker.wait(0.2):
            # As dask-worker: 0 when the scheduler closed it, 1 when lost
            # (and not back within --reconnect-timeout).
            try:
                worker.join()
            except OSError as e:
                print(f"Worker {worker.name}: lost the scheduler: {e}", file=sys.stderr, flush=True)
                return 1
            return 0
    worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
