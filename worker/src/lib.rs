//! dask-worker (filled in by a later issue).
