//! dask-client (filled in by a later issue).
