"""What a Python worker runs for ``codec:cloudpickle`` tasks, and the
callables a client pickles into them."""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence, Tuple

from ._codec import loads

# Unpickled callables by payload, so that map() over many items unpickles
# its function once per worker. Only small payloads: a large one carries
# data (a Dask DataNode), which must not be held after its task.
_CACHE_PAYLOAD_MAX = 64 * 1024
_CACHE_ENTRIES_MAX = 512
_functions: Dict[bytes, Callable[..., Any]] = {}


def run_pickled(payload: bytes, *args: Any, **kwargs: Any) -> Any:
    """Runs a ``codec:cloudpickle`` task: ``args[0]`` of the task is the
    pickled callable, the rest its arguments."""
    function = _functions.get(payload)
    if function is None:
        function = loads(payload)
        if len(payload) <= _CACHE_PAYLOAD_MAX:
            if len(_functions) >= _CACHE_ENTRIES_MAX:
                _functions.clear()
            _functions[payload] = function
    return function(*args, **kwargs)


class Slot:
    """Stands for the i-th future of a call whose futures sit inside
    containers msgpack cannot carry (tuples, sets)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> Tuple[Any, ...]:
        return (Slot, (self.index,))


def _fill(obj: Any, values: Sequence[Any]) -> Any:
    if type(obj) is Slot:
        return values[obj.index]
    if type(obj) in (list, tuple, set, frozenset):
        return type(obj)(_fill(x, values) for x in obj)
    if type(obj) is dict:
        return {k: _fill(v, values) for k, v in obj.items()}
    return obj


class BoundCall:
    """``function(*args, **kwargs)`` whose arguments hold Slots; called
    with the futures' values in slot order."""

    __slots__ = ("function", "args", "kwargs")

    def __init__(self, function: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs

    def __reduce__(self) -> Tuple[Any, ...]:
        return (BoundCall, (self.function, self.args, self.kwargs))

    def __call__(self, *values: Any) -> Any:
        return self.function(*_fill(self.args, values), **_fill(self.kwargs, values))


class GraphCall:
    """One node of a Dask graph (a ``dask._task_spec`` Task or Alias),
    called with the values of its dependencies in ``dependencies`` order."""

    __slots__ = ("node", "dependencies")

    def __init__(self, node: Any, dependencies: Tuple[Any, ...]) -> None:
        self.node = node
        self.dependencies = dependencies

    def __reduce__(self) -> Tuple[Any, ...]:
        return (GraphCall, (self.node, self.dependencies))

    def __call__(self, *values: Any) -> Any:
        return self.node(dict(zip(self.dependencies, values)))
