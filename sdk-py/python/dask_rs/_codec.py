"""The pickle codec: how Python objects travel as dask/1 values.

Objects that are not exactly one of msgpack's types (None, bool, int of 64
bits, float, str, bytes, list, dict with str keys) are pickled and sent as
msgpack ext type 2, whose payload this module writes and reads
(spec/PROTOCOL.md, "Python codec"):

    n        uint32 LE   number of out-of-band buffers
    size     uint64 LE   length of the pickle stream
    lengths  n x uint64 LE, the length of each buffer
    stream   the pickle stream (protocol 5)
    buffers  each preceded by zero bytes up to the next multiple of 64
             from the payload's start

Pickle protocol 5 keeps the memory of numpy arrays and pandas columns out
of the pickle stream (PEP 574): they are written once into the payload and,
on the receiving side, the arrays are built on the received buffer itself
(a bytearray, so they are writable), 64-byte aligned, without another copy.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, List, NamedTuple

import cloudpickle

ALIGN = 64
_HEAD = struct.Struct("<IQ")


class ExtType(NamedTuple):
    """A msgpack ext value other than a task reference or a pickle,
    carried unchanged (``code`` in -128..127, ``data`` its payload)."""

    code: int
    data: bytes


def _pickle(obj: Any, buffers: List[pickle.PickleBuffer]) -> bytes:
    # Plain pickle is several times faster than cloudpickle; objects it
    # can only name (a function of __main__, a lambda) go through cloudpickle,
    # which sends them by value (as Dask's own serialisation does).
    try:
        data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        if b"__main__" not in data:
            return data
    except Exception:
        pass
    buffers.clear()
    return cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)


def dumps(obj: Any) -> bytes:
    """The ext type 2 payload holding ``obj``."""
    buffers: List[pickle.PickleBuffer] = []
    stream = _pickle(obj, buffers)
    try:
        raws = [b.raw() for b in buffers]
    except BufferError:  # a non-contiguous buffer: keep everything in band
        buffers.clear()
        stream = cloudpickle.dumps(obj, protocol=5)
        raws = []
    n = len(raws)
    parts: List[Any] = [_HEAD.pack(n, len(stream))]
    if n:
        parts.append(struct.pack(f"<{n}Q", *(r.nbytes for r in raws)))
    parts.append(stream)
    offset = _HEAD.size + 8 * n + len(stream)
    for raw in raws:
        pad = -offset % ALIGN
        if pad:
            parts.append(bytes(pad))
        parts.append(raw)
        offset += pad + raw.nbytes
    return b"".join(parts)


def loads(payload: Any, start: int = 0, length: Any = None) -> Any:
    """The object an ext type 2 payload holds (``payload``: bytes-like; the
    payload is ``payload[start:start + length]``)."""
    view = memoryview(payload)
    if start or length is not None:
        view = view[start : start + (view.nbytes - start if length is None else length)]
    if view.nbytes < _HEAD.size:
        raise ValueError(f"pickle payload of {view.nbytes} bytes: shorter than its header")
    n, size = _HEAD.unpack_from(view, 0)
    offset = _HEAD.size + 8 * n
    if offset + size > view.nbytes:
        raise ValueError("pickle payload: the stream runs past the end")
    lengths = struct.unpack_from(f"<{n}Q", view, _HEAD.size) if n else ()
    stream = view[offset : offset + size]
    offset += size
    buffers = []
    for length in lengths:
        offset += -offset % ALIGN
        if offset + length > view.nbytes:
            raise ValueError("pickle payload: a buffer runs past the end")
        buffers.append(view[offset : offset + length])
        offset += length
    return pickle.loads(stream, buffers=buffers)
