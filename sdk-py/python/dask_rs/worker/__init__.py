"""Python workers: ``Worker`` (in this process) and the command
``python -m dask_rs.worker tcp://HOST:PORT``.

A Python worker is a dask-rs worker (the Rust worker: fetching from peers,
data store, spilling, heartbeats) whose functions are Python: it offers

- the named Python functions it was given, callable by name from any
  client (Rust, C, JS, Python): their arguments and results travel as
  msgpack (see ``dask_rs._codec`` for which Python types do);
- ``codec:cloudpickle``: tasks carrying their own cloudpickled callable,
  which only Python workers offer, so the scheduler places them on no
  other worker;
- the built-in library of every dask-rs worker (``add``, ``sum``, the
  ``conformance.*`` functions, ...).
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any, Callable, Dict, List, Optional, Union

from .. import _native


class Worker:
    """A worker in this process, registered with ``scheduler`` once the
    constructor returns. ``functions``: name -> callable.

    ``credentials``: the cluster's worker secret, found as ``Client``'s
    (``None``: this process's ``LocalCluster`` at that address, then
    ``DASK_CREDENTIALS``, then the default file; a path; ``False``: prove
    nothing). A scheduler that requires a secret this worker does not
    prove refuses it (``PermissionError`` here).

    ``reconnect_timeout``: seconds it keeps registering again (every
    second, keeping the values it holds) after losing the scheduler, as
    ``dask-worker`` does, so a scheduler restarted from its journal
    (``--journal``) gets it back and adopts its results; ``None`` (the
    default in a program) or 0: it stops at once (``join`` raises
    ``OSError``). ``python -m dask_rs.worker`` waits 60 s by default."""

    def __init__(
        self,
        scheduler: str,
        functions: Optional[Dict[str, Callable[..., Any]]] = None,
        nthreads: int = 1,
        name: Optional[str] = None,
        host: Optional[str] = None,
        memory_limit: Optional[int] = None,
        local_directory: Optional[str] = None,
        resources: Optional[Dict[str, float]] = None,
        credentials: Union[str, "os.PathLike[str]", None, bool] = None,
        reconnect_timeout: Optional[float] = None,
    ) -> None:
        self._native = _native.NativeWorker(
            scheduler, dict(functions or {}), nthreads, name, host, memory_limit, local_directory, resources,
            credentials, reconnect_timeout,
        )
        self.scheduler = scheduler

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def address(self) -> str:
        """The worker's data address."""
        return self._native.address

    @property
    def functions(self) -> List[str]:
        """The function names it offers."""
        return self._native.functions

    def is_finished(self) -> bool:
        return self._native.is_finished()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits for the worker to stop by itself (the scheduler closed it,
        or was lost for longer than ``reconnect_timeout``); returns whether
        it has."""
        return self._native.wait(timeout)

    def join(self) -> None:
        """Waits until the worker stops by itself; returns if the scheduler
        closed it, raises ``OSError`` if the connection was lost."""
        self._native.join()

    def stop(self) -> None:
        """Says ``close`` to the scheduler and stops."""
        self._native.stop()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Worker {self.name} at {self.address}>"


def load_functions(spec: str) -> Dict[str, Callable[..., Any]]:
    """Functions named by a command-line spec:

    - ``module``: the module's ``__dask_functions__`` (a dict name ->
      callable, or a list of callables) if it has one, else every public
      function defined in it, by name;
    - ``module:function``: that function, by its name;
    - ``name=module:function``: that function, under ``name``.
    """
    name = None
    if "=" in spec:
        name, spec = spec.split("=", 1)
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    if attribute:
        f = module
        for part in attribute.split("."):
            f = getattr(f, part)
        return {name or attribute.rsplit(".", 1)[-1]: f}  # type: ignore[dict-item]
    declared = getattr(module, "__dask_functions__", None)
    if isinstance(declared, dict):
        return dict(declared)
    if declared is not None:
        return {f.__name__: f for f in declared}
    return {
        n: f
        for n, f in vars(module).items()
        if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == module.__name__
    }
