//! dask-conformance (filled in by a later issue).
