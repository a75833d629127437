"""dask_rs: Python for dask-rs, a distributed task scheduler in Rust in the
line of Dask's.

- ``Client``: submit, map, gather, as_completed, wait, cancel, scatter,
  datasets, who_has, and ``Client.get``, the scheduler Dask's collections
  (dask.array, dask.dataframe, dask.bag, dask.delayed) run on;
- ``LocalCluster``: a scheduler and Python workers on this machine;
- ``Worker`` and ``python -m dask_rs.worker``: Python workers, offering
  named Python functions to every client and running cloudpickled callables.

The import name is ``dask_rs``, not ``dask``: the ``dask`` name belongs to
Dask's own package, which this one works with (its collections run on
dask-rs through ``Client.get``), so both must be importable side by side.
"""

from ._errors import (
    CancelledError,
    DaskConnectionError,
    DaskError,
    DaskTimeoutError,
    LostError,
    RefusedError,
    RemoteError,
)
from .client import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    Client,
    Future,
    as_completed,
    wait,
)
from .cluster import LocalCluster
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "CancelledError",
    "Client",
    "DaskConnectionError",
    "DaskError",
    "DaskTimeoutError",
    "Future",
    "LocalCluster",
    "LostError",
    "RefusedError",
    "RemoteError",
    "Worker",
    "as_completed",
    "wait",
]
