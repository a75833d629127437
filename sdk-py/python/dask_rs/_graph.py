"""Dask graphs on a dask-rs cluster: the body of ``Client.get``.

Dask hands its scheduler a graph (a mapping of keys to ``dask._task_spec``
nodes, or old-style tuples, which ``convert_legacy_graph`` turns into
nodes) and the keys it wants. Each node becomes one dask/1 task:

- a ``Task`` (or anything else computed): ``codec:cloudpickle``, its
  callable a ``GraphCall`` holding the node, its arguments task references
  to the node's dependencies, so the scheduler sees every edge and workers
  fetch inputs from each other;
- a ``DataNode``: ``identity(value)``, and an ``Alias``:
  ``identity(reference)``, which any worker runs.

Keys: a dask/1 key is a string. A Dask key that is a string stays as it is
(with a ``\\`` in front when it starts with ``(`` or ``\\``); a tuple key is
its ``repr`` (which starts with ``(``); another key ``(type:repr)``. So
names are readable in ``who_has`` and cluster dumps, and distinct Dask keys
stay distinct.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Mapping

from ._codec import dumps
from ._runtime import GraphCall
from .client import CLOUDPICKLE_FUNCTION

_KEY_BYTES_MAX = 4096


def wire_key(key: Any) -> str:
    """The dask/1 key of a Dask key (see the module docs)."""
    if type(key) is str:
        text = "\\" + key if key[:1] in ("(", "\\") else key
    elif type(key) is tuple:
        text = repr(key)
    else:
        text = f"({type(key).__name__}:{key!r})"
    if not text or len(text.encode()) > _KEY_BYTES_MAX:
        digest = hashlib.sha1(text.encode()).hexdigest()
        text = f"(long:{text[:64]}...{digest})"
    return text


def _ref(key: Any) -> Any:
    # The client turns Futures into task references; a bare reference to a
    # key of the graph is an ExtType(1, key).
    from ._codec import ExtType

    return ExtType(1, wire_key(key).encode())


def graph_tasks(dsk: Mapping[Any, Any]) -> List[tuple]:
    """The dask/1 tasks (as the native client takes them) of a Dask graph."""
    from dask._task_spec import Alias, DataNode, convert_legacy_graph

    nodes = convert_legacy_graph(dict(dsk))
    tasks = []
    for key, node in nodes.items():
        k = wire_key(key)
        if isinstance(node, DataNode):
            tasks.append((k, "identity", [node.value], None, None, None, None, None))
        elif isinstance(node, Alias):
            tasks.append((k, "identity", [_ref(node.target)], None, None, None, None, None))
        else:
            deps = tuple(node.dependencies)
            call = GraphCall(node, deps)
            args = [dumps(call), *(_ref(d) for d in deps)]
            tasks.append((k, CLOUDPICKLE_FUNCTION, args, None, None, None, None, None))
    return tasks


def _flatten(keys: Any, out: List[Any]) -> None:
    if isinstance(keys, list):
        for k in keys:
            _flatten(k, out)
    else:
        out.append(keys)


def _pack(keys: Any, values: Dict[Any, Any]) -> Any:
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]


def run_graph(client: Any, dsk: Any, keys: Any) -> Any:
    """Runs ``dsk`` on ``client``'s cluster; the values of ``keys``, nested
    as ``keys`` is."""
    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    wanted: List[Any] = []
    _flatten(keys, wanted)
    wanted = list(dict.fromkeys(wanted))
    tasks = graph_tasks(dsk)
    natives = client._native.submit(tasks, [wire_key(k) for k in wanted])
    values = client._native.gather(natives, None)
    # The futures go here: the keys are released once the values are home.
    del natives
    return _pack(keys, dict(zip(wanted, values)))
