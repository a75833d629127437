//! dask-sdk-js (filled in by a later issue).
