//! dask-scheduler (filled in by a later issue).
