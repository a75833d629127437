//! dask-sdk-c (filled in by a later issue).
