"""Named Python functions the test cluster's Python workers offer
(``python -m dask_rs.worker ADDRESS --functions pyfuncs``)."""

import collections
import os


def word_count(text):
    """Number of words in ``text`` (called from Rust, C and JS)."""
    return len(text.split())


def word_frequencies(text):
    """``{word: count}``: a msgpack map for any client."""
    return dict(collections.Counter(text.split()))


def worker_pid():
    return os.getpid()


def fail(message):
    raise ValueError(message)


__dask_functions__ = {
    "py.word_count": word_count,
    "py.word_frequencies": word_frequencies,
    "py.worker_pid": worker_pid,
    "py.fail": fail,
}
