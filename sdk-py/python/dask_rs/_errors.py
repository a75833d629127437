"""The exceptions of dask_rs, and how worker errors are described."""

from __future__ import annotations

import builtins
import concurrent.futures
import traceback as _traceback
from typing import Any, Dict, Optional, Tuple, Type


class DaskError(Exception):
    """Base of every dask_rs exception."""


class RemoteError(DaskError):
    """A task failed on a worker.

    Attributes: ``key`` (the key asked for), ``error_type`` (the remote
    exception's type name, e.g. ``"ZeroDivisionError"``), ``message``,
    ``traceback`` (the remote traceback text, possibly empty) and ``cause``
    (the key whose task raised, when not ``key`` itself: a dependency).

    When ``error_type`` names a built-in exception, the exception raised is
    also an instance of it: ``except ZeroDivisionError`` catches a remote
    division by zero, as with Dask.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str = "",
        error_type: str = "Exception",
        traceback: str = "",
        cause: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.cause = cause

    def __str__(self) -> str:
        text = f"{self.error_type}: {self.message}"
        if self.cause and self.cause != self.key:
            text += f" (raised by task {self.cause!r})"
        return text


class CancelledError(DaskError, concurrent.futures.CancelledError):
    """The key was cancelled (by this client, or another with force)."""


class LostError(DaskError):
    """The key's data is gone and cannot be computed again (scattered data
    whose last holder was lost)."""


class RefusedError(DaskError):
    """The scheduler refused a request (``code``, ``name``: its dask/1 error
    code and name, e.g. 4002 ``duplicate-key``)."""

    def __init__(self, message: str, code: int = 0, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


class DaskConnectionError(DaskError, ConnectionError):
    """The connection to the scheduler failed or is gone."""


class DaskTimeoutError(DaskError, TimeoutError):
    """A wait ran out of time."""


_REMOTE_CLASSES: Dict[str, Type[RemoteError]] = {}


def _remote_class(error_type: str) -> Type[RemoteError]:
    cls = _REMOTE_CLASSES.get(error_type)
    if cls is not None:
        return cls
    cls = RemoteError
    base = getattr(builtins, error_type, None)
    if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
        try:
            cls = type(f"Remote{error_type}", (RemoteError, base), {"__module__": __name__})
        except TypeError:  # a layout that cannot be mixed in
            cls = RemoteError
    _REMOTE_CLASSES[error_type] = cls
    return cls


def remote_error(
    key: str, error_type: str, message: str, traceback: str, cause: Optional[str]
) -> RemoteError:
    """The exception for a remote failure (see RemoteError)."""
    cls = _remote_class(error_type)
    error = cls.__new__(cls)
    RemoteError.__init__(
        error, message, key=key, error_type=error_type, traceback=traceback, cause=cause
    )
    if traceback and hasattr(error, "add_note"):
        error.add_note("Remote traceback:\n" + traceback.rstrip("\n"))
    return error


def from_native(kind: str, fields: Dict[str, Any]) -> BaseException:
    """Called by the native layer: the exception for one of its errors."""
    text = fields.get("text", kind)
    if kind == "remote":
        return remote_error(
            fields["key"], fields["error_type"], fields["message"], fields["traceback"],
            fields.get("cause"),
        )
    if kind == "cancelled":
        return CancelledError(text)
    if kind == "lost":
        return LostError(text)
    if kind == "refused":
        return RefusedError(text, fields.get("code", 0), fields.get("name"))
    if kind == "timeout":
        return DaskTimeoutError("timed out")
    if kind == "connection":
        return DaskConnectionError(text)
    return DaskError(text)


def describe(error: BaseException, tb: Any = None) -> Tuple[str, str, str]:
    """A worker's report of an exception: type name, message, traceback text."""
    if isinstance(error, RemoteError):
        # A task that called another cluster's result: keep the first type.
        return error.error_type, error.message, error.traceback
    text = "".join(_traceback.format_exception(type(error), error, tb or error.__traceback__))
    return type(error).__name__, str(error), text
