"""The client: Dask's ``Client`` and ``concurrent.futures`` habits on a
dask-rs scheduler.

Every wait releases the GIL (the native layer waits with it released), so
other Python threads run meanwhile.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import namedtuple
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _native
from ._codec import dumps
from ._errors import DaskTimeoutError
from ._runtime import BoundCall, Slot

CLOUDPICKLE_FUNCTION: str = _native.CLOUDPICKLE_FUNCTION

FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"

DoneAndNotDoneFutures = namedtuple("DoneAndNotDoneFutures", "done not_done")

_SEED = os.urandom(6).hex()
_counter = itertools.count()
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.]+")


def _new_key(name: str) -> str:
    return f"{_NAME_CHARS.sub('_', name)[:64] or 'task'}-{_SEED}-{next(_counter)}"


def _function_name(func: Any) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


try:  # Dask's own reference type, so Dask's graphs see our futures as it sees its own
    from dask._task_spec import TaskRef as _FutureBase
except ImportError:  # Dask is optional
    class _FutureBase:  # type: ignore[no-redef]
        __slots__ = ("key",)


class Future(_FutureBase):
    """A key's result on the cluster (as ``distributed.Future``).

    The key is released on the cluster when the last Python reference to
    every Future of that key is gone. A Future can be passed as an
    argument of ``submit``/``map`` (and sits in Dask graphs): the task then
    gets its result, moved from worker to worker, never through the client.
    """

    __slots__ = ("_native", "_client", "__weakref__")
    # Dask's graph conversion treats such objects as references to `key`.
    __dask_future__ = True
    key: str  # the task's key

    def __init__(self, native: Any, client: "Client") -> None:
        self.key = native.key
        self._native = native
        self._client = client

    @property
    def status(self) -> str:
        """``"pending"``, ``"finished"``, ``"error"``, ``"cancelled"``,
        ``"lost"``, or ``"failed"`` (the connection is gone)."""
        return self._native.status

    @property
    def client(self) -> "Client":
        return self._client

    def done(self) -> bool:
        """Whether the task is done (finished, erred, cancelled or lost)."""
        return self._native.done()

    def cancelled(self) -> bool:
        return self._native.status == "cancelled"

    def result(self, timeout: Optional[float] = None) -> Any:
        """Waits (at most ``timeout`` seconds) and returns the result, or
        raises the task's error (a RemoteError, also an instance of the
        remote built-in exception type)."""
        return self._native.result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The task's error once done, or None when it finished."""
        try:
            self._native.wait(timeout)
        except DaskTimeoutError:
            raise
        except Exception as e:  # the task's own error
            return e
        return None

    def traceback(self, timeout: Optional[float] = None) -> Optional[str]:
        """The remote traceback text of a failed task."""
        e = self.exception(timeout)
        return getattr(e, "traceback", None)

    def cancel(self) -> None:
        """Cancels the key for this client."""
        self._native.cancel()

    def add_done_callback(self, fn: Callable[["Future"], Any]) -> None:
        """Calls ``fn(self)`` from a helper thread once the future is done."""
        import threading

        def run() -> None:
            try:
                self._native.wait(None)
            except Exception:
                pass
            fn(self)

        threading.Thread(target=run, daemon=True, name=f"done-{self.key}").start()

    def __repr__(self) -> str:
        return f"<Future: {self.status}, key: {self.key}>"

    def __reduce__(self) -> Any:
        # Inside a Dask graph node a future is a reference to its key (the
        # node lists the key among its dependencies); elsewhere it cannot be
        # rebuilt, as it holds a connection.
        if _FutureBase is object or not hasattr(_FutureBase, "substitute"):
            raise TypeError("a dask_rs Future cannot be pickled; pass it as an argument of submit/map")
        return (_FutureBase, (self.key,))

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


def _is_future(x: Any) -> bool:
    return type(x) is Future


def _nested_futures(obj: Any, found: List[Future], inside_foreign: bool) -> bool:
    """Collects futures; returns whether one sits inside a container that
    msgpack cannot carry (a tuple, a set), which then needs slots."""
    t = type(obj)
    if t is Future:
        found.append(obj)
        return inside_foreign
    if t is list:
        return any([_nested_futures(x, found, inside_foreign) for x in obj])
    if t is dict:
        return any([_nested_futures(v, found, inside_foreign) for v in obj.values()])
    if t in (tuple, set, frozenset):
        return any([_nested_futures(x, found, True) for x in obj])
    return False


def _slotted(obj: Any, futures: List[Future]) -> Any:
    t = type(obj)
    if t is Future:
        futures.append(obj)
        return Slot(len(futures) - 1)
    if t in (list, tuple, set, frozenset):
        return t(_slotted(x, futures) for x in obj)
    if t is dict:
        return {k: _slotted(v, futures) for k, v in obj.items()}
    return obj


def _call_args(func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], pickled: Optional[bytes]) -> Tuple[str, List[Any], Dict[str, Any]]:
    """The wire function, args and kwargs of one call."""
    if isinstance(func, str):
        return func, list(args), kwargs
    found: List[Future] = []
    needs_slots = _nested_futures(list(args), found, False) or _nested_futures(dict(kwargs), found, False)
    if needs_slots:
        futures: List[Future] = []
        bound = BoundCall(func, _slotted(tuple(args), futures), _slotted(dict(kwargs), futures))
        return CLOUDPICKLE_FUNCTION, [dumps(bound), *futures], {}
    return CLOUDPICKLE_FUNCTION, [pickled if pickled is not None else dumps(func), *args], kwargs


def _flatten_futures(obj: Any, out: List[Future]) -> None:
    if type(obj) is Future:
        out.append(obj)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            _flatten_futures(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _flatten_futures(x, out)


def _rebuild(obj: Any, results: Dict[str, Any]) -> Any:
    if type(obj) is Future:
        return results[obj.key]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_rebuild(x, results) for x in obj)
    if isinstance(obj, dict):
        return {k: _rebuild(v, results) for k, v in obj.items()}
    return obj


class Client:
    """A connection to a dask-rs scheduler.

    ``Client("tcp://host:8786")`` connects; ``Client()`` starts a
    ``LocalCluster`` (a scheduler in this process and Python worker
    processes) and owns it; ``Client(cluster)`` connects to a cluster
    object's ``scheduler_address``. A context manager: leaving it closes
    the client (and the cluster it started).

    ``credentials``: the cluster's client secret is found as the Rust
    programs find it: ``None`` looks for the cluster this process runs at
    that address (``LocalCluster``), then ``DASK_CREDENTIALS``, then
    ``$DASK_RS_HOME/credentials.json`` or ``~/.dask-rs/credentials.json``
    (the file ``dask-scheduler`` creates); a path names the file;
    ``False`` proves nothing (a scheduler run with
    ``--no-auth-anyone-can-connect``).
    """

    def __init__(
        self,
        address: Any = None,
        *,
        name: Optional[str] = None,
        timeout: float = 10.0,
        set_as_default: bool = False,
        credentials: Union[str, "os.PathLike[str]", None, bool] = None,
        **cluster_kwargs: Any,
    ) -> None:
        self._cluster = None
        if address is None:
            from .cluster import LocalCluster

            self._cluster = LocalCluster(**cluster_kwargs)
            address = self._cluster.scheduler_address
        elif not isinstance(address, str):
            address = address.scheduler_address
        elif cluster_kwargs:
            raise TypeError(f"unexpected arguments {sorted(cluster_kwargs)} with a scheduler address")
        try:
            self._native = _native.NativeClient(address, name, timeout, credentials)
        except BaseException:
            if self._cluster is not None:
                self._cluster.close()
            raise
        if set_as_default:
            import dask

            dask.config.set(scheduler=self.get)

    # ---- connection -------------------------------------------------------

    @property
    def scheduler_address(self) -> str:
        return self._native.address

    @property
    def cluster(self) -> Any:
        """The LocalCluster this client started, if any."""
        return self._cluster

    @property
    def id(self) -> Optional[int]:
        return self._native.id

    @property
    def status(self) -> str:
        return "running" if self._native.is_connected() else "closed"

    def close(self) -> None:
        """Closes the connection (the scheduler releases this client's keys)
        and stops the cluster this client started."""
        self._native.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client: {self.scheduler_address} ({self.status})>"

    # ---- submitting ------------------------------------------------------------

    def _options(self, priority: int, resources: Optional[Dict[str, float]], retries: Optional[int], workers: Any) -> Tuple[Any, ...]:
        if isinstance(workers, str):
            workers = [workers]
        return (priority or None, resources, retries, list(workers) if workers is not None else None)

    def submit(
        self,
        func: Union[str, Callable[..., Any]],
        *args: Any,
        key: Optional[str] = None,
        workers: Any = None,
        resources: Optional[Dict[str, float]] = None,
        retries: Optional[int] = None,
        priority: int = 0,
        pure: bool = False,
        **kwargs: Any,
    ) -> Future:
        """Submits ``func(*args, **kwargs)``: returns its Future at once.

        ``func`` is a callable (cloudpickled, run by a Python worker) or the
        name of a function a worker offers (``"inc"``, or a Python worker's
        named function). Futures among the arguments, at any depth, stand
        for their results. ``key`` names the task (default: a fresh key;
        with ``pure=True`` a key derived from the function and arguments,
        so equal calls share one task, as in Dask).
        """
        function, call_args, call_kwargs = _call_args(func, args, kwargs, None)
        if key is None:
            key = self._pure_key(func, call_args, call_kwargs) if pure else _new_key(_function_name(func) if not isinstance(func, str) else func)
        task = (key, function, call_args, call_kwargs or None, *self._options(priority, resources, retries, workers))
        (native,) = self._native.submit([task], [key])
        return Future(native, self)

    def _pure_key(self, func: Any, args: List[Any], kwargs: Dict[str, Any]) -> str:
        from dask.base import tokenize

        name = func if isinstance(func, str) else _function_name(func)
        token = tokenize(func, [a.key if _is_future(a) else a for a in args],
                         {k: (v.key if _is_future(v) else v) for k, v in kwargs.items()})
        return f"{_NAME_CHARS.sub('_', name)[:64]}-{token}"

    def map(
        self,
        func: Union[str, Callable[..., Any]],
        *iterables: Iterable[Any],
        key: Union[None, str, Sequence[str]] = None,
        workers: Any = None,
        resources: Optional[Dict[str, float]] = None,
        retries: Optional[int] = None,
        priority: int = 0,
        pure: bool = False,
        **kwargs: Any,
    ) -> List[Future]:
        """``func`` over the items of ``iterables`` (zipped), submitted as one
        graph; the callable is pickled once. Returns the futures in order."""
        calls = list(zip(*iterables))
        pickled = None if isinstance(func, str) else dumps(func)
        name = func if isinstance(func, str) else _function_name(func)
        if isinstance(key, str) or key is None:
            keys: List[Optional[str]] = [None] * len(calls)
            prefix = key
        else:
            keys = list(key)
            prefix = None
            if len(keys) != len(calls):
                raise ValueError(f"{len(keys)} keys for {len(calls)} calls")
        options = self._options(priority, resources, retries, workers)
        tasks = []
        wanted = []
        for i, call in enumerate(calls):
            function, call_args, call_kwargs = _call_args(func, call, kwargs, pickled)
            k = keys[i]
            if k is None:
                if pure:
                    k = self._pure_key(func, call_args[1:] if pickled else call_args, call_kwargs)
                else:
                    k = f"{prefix}-{i}" if prefix else _new_key(name)
            tasks.append((k, function, call_args, call_kwargs or None, *options))
            wanted.append(k)
        return [Future(n, self) for n in self._native.submit(tasks, wanted)]

    # ---- results -------------------------------------------------------------------

    def gather(self, futures: Any, errors: str = "raise", timeout: Optional[float] = None) -> Any:
        """The results of ``futures`` (a Future, or lists, tuples, dicts of
        them, at any depth), fetched in one request, in the same structure.
        ``errors="skip"`` leaves failed futures out of lists instead of raising."""
        flat: List[Future] = []
        _flatten_futures(futures, flat)
        if errors == "skip":
            ok = []
            for f in flat:
                try:
                    f._native.wait(timeout)
                    ok.append(f)
                except DaskTimeoutError:
                    raise
                except Exception:
                    pass
            values = self._native.gather([f._native for f in ok], timeout)
            results = {f.key: v for f, v in zip(ok, values)}
            return _skip_rebuild(futures, results)
        values = self._native.gather([f._native for f in flat], timeout)
        return _rebuild(futures, {f.key: v for f, v in zip(flat, values)})

    def as_completed(self, futures: Iterable[Future] = (), with_results: bool = False) -> "as_completed":
        return as_completed(futures, with_results=with_results)

    def cancel(self, futures: Any, force: bool = False) -> None:
        """Cancels these futures' keys for this client."""
        flat: List[Future] = []
        _flatten_futures(futures, flat)
        self._native.cancel([f._native for f in flat])

    def scatter(self, data: Any, workers: Any = None, broadcast: bool = False) -> Any:
        """Stores ``data`` on workers and waits until it is stored: a list or
        tuple gives a list of futures, a dict a dict of futures by the same
        keys, anything else one future."""
        if isinstance(workers, str):
            workers = [workers]
        workers = list(workers) if workers is not None else None
        if isinstance(data, dict):
            names = list(data)
            natives = self._native.scatter([data[k] for k in names], workers, broadcast)
            return {k: Future(n, self) for k, n in zip(names, natives)}
        if isinstance(data, (list, tuple)):
            return [Future(n, self) for n in self._native.scatter(list(data), workers, broadcast)]
        (native,) = self._native.scatter([data], workers, broadcast)
        return Future(native, self)

    # ---- datasets ---------------------------------------------------------------------

    def publish_dataset(self, *args: Any, name: Optional[str] = None, override: bool = False, **kwargs: Any) -> None:
        """Publishes futures under names so other clients can get them:
        ``publish_dataset(x=future)``, ``publish_dataset([f1, f2], name="x")``.
        The dataset keeps the keys alive until unpublished."""
        if args:
            if name is None:
                raise TypeError("publish_dataset(value, name=...) needs a name")
            kwargs[name] = args[0] if len(args) == 1 else list(args)
        for dataset, value in kwargs.items():
            flat: List[Future] = []
            _flatten_futures(value, flat)
            self._native.publish_dataset(dataset, [f._native for f in flat], override)

    def get_dataset(self, name: str) -> List[Future]:
        """The futures of a published dataset, in published order."""
        return [Future(n, self) for n in self._native.get_dataset(name)]

    def list_datasets(self) -> List[str]:
        return self._native.list_datasets()

    def unpublish_dataset(self, name: str) -> None:
        self._native.unpublish_dataset(name)

    # ---- cluster ------------------------------------------------------------------------

    def who_has(self, futures: Any = None) -> Dict[str, List[str]]:
        """The data addresses of the workers holding each future's key."""
        flat: List[Future] = []
        _flatten_futures(futures, flat)
        return self._native.who_has([f._native for f in flat])

    def cluster_info(self) -> Dict[str, Any]:
        """The scheduler's ``cluster-info-reply``: workers, task counts by
        state, clients."""
        return self._native.cluster_info()

    def scheduler_info(self) -> Dict[str, Any]:
        """Dask's shape: ``{"address", "workers": {address: info}, ...}``."""
        info = self._native.cluster_info()
        return {
            "type": "Scheduler",
            "address": self.scheduler_address,
            "workers": {w["address"]: w for w in info["workers"]},
            "tasks": info["tasks"],
            "clients": info["clients"],
        }

    def nthreads(self) -> Dict[str, int]:
        return {w["address"]: w["nthreads"] for w in self._native.cluster_info()["workers"]}

    ncores = nthreads

    def wait_for_workers(self, n_workers: int, timeout: Optional[float] = None) -> None:
        """Waits until at least ``n_workers`` workers are registered."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._native.cluster_info()["workers"]) < n_workers:
            if deadline is not None and time.monotonic() > deadline:
                raise DaskTimeoutError(f"fewer than {n_workers} workers after {timeout} s")
            time.sleep(0.05)

    # ---- Dask collections -----------------------------------------------------------------

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """Dask's scheduler interface: runs the graph ``dsk`` on this cluster
        and returns the values of ``keys`` (same nesting). Use as
        ``x.compute(scheduler=client.get)`` or
        ``dask.config.set(scheduler=client.get)``."""
        from ._graph import run_graph

        return run_graph(self, dsk, keys)


def _skip_rebuild(obj: Any, results: Dict[str, Any]) -> Any:
    if type(obj) is Future:
        return results[obj.key]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_skip_rebuild(x, results) for x in obj if type(x) is not Future or x.key in results)
    if isinstance(obj, dict):
        return {k: _skip_rebuild(v, results) for k, v in obj.items() if type(v) is not Future or v.key in results}
    return obj


class as_completed:
    """Futures in the order they complete (as ``distributed.as_completed``).

    ``with_results=True`` yields ``(future, result)`` pairs. More futures can
    be added while iterating (``add``, ``update``).
    """

    def __init__(self, futures: Iterable[Future] = (), with_results: bool = False, raise_errors: bool = True) -> None:
        self._native = None
        self._with_results = with_results
        self._raise_errors = raise_errors
        self._futures: Dict[str, List[Future]] = {}
        self.update(futures)

    def update(self, futures: Iterable[Future]) -> None:
        for f in futures:
            self.add(f)

    def add(self, future: Future) -> None:
        if self._native is None:
            self._native = future._client._native.as_completed([future._native])
        else:
            self._native.add(future._native)
        self._futures.setdefault(future.key, []).append(future)

    def count(self) -> int:
        return 0 if self._native is None else self._native.count()

    def is_empty(self) -> bool:
        return self.count() == 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._native is None:
            raise StopIteration
        native = self._native.next(None)
        if native is None:
            raise StopIteration
        # Hand back the caller's own Future object for this key.
        futures = self._futures.get(native.key) or [Future(native, None)]  # type: ignore[arg-type]
        future = futures.pop(0)
        if not futures:
            self._futures.pop(native.key, None)
        if self._with_results:
            try:
                return future, future.result()
            except Exception as e:
                if self._raise_errors:
                    raise
                return future, e
        return future


def wait(fs: Any, timeout: Optional[float] = None, return_when: str = ALL_COMPLETED) -> DoneAndNotDoneFutures:
    """Waits for the futures (as ``concurrent.futures.wait``): returns
    ``(done, not_done)`` sets. With ``ALL_COMPLETED`` and a timeout that
    runs out, raises ``TimeoutError`` (Dask's behaviour)."""
    import time

    futures: List[Future] = []
    _flatten_futures(fs, futures)
    deadline = None if timeout is None else time.monotonic() + timeout

    def left() -> Optional[float]:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    if return_when == ALL_COMPLETED:
        for f in futures:
            try:
                f._native.wait(left())
            except DaskTimeoutError:
                raise
            except Exception:
                pass
    elif futures and not any(f.done() for f in futures):
        ac = futures[0]._client._native.as_completed([f._native for f in futures])
        while True:
            try:
                first = ac.next(left())
            except DaskTimeoutError:
                break
            if first is None:
                break
            if return_when == FIRST_COMPLETED or first.status == "error":
                break
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, set(futures) - done)
