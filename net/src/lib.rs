//! dask-net (filled in by a later issue).
