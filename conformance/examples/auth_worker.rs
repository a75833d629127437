//! A dask-rs worker that proves the worker secret of the credentials file
//! in `DASK_CREDENTIALS`: what `dask-conformance worker --auth` runs in
//! its own tests (tests/auth.rs), built on the worker library alone so the
//! test does not depend on dask-worker's command line (scripts/ci/
//! conformance.sh runs dask-worker --credentials too). Usage: auth_worker
//! SCHEDULER NTHREADS.

use std::path::PathBuf;
use std::process::ExitCode;

use dask_worker::{WorkerConfig, WorkerHandle};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(scheduler), Some(nthreads)) = (args.next(), args.next()) else {
        eprintln!("usage: auth_worker SCHEDULER NTHREADS (credentials in DASK_CREDENTIALS)");
        return ExitCode::FAILURE;
    };
    let Some(path) = std::env::var_os("DASK_CREDENTIALS").map(PathBuf::from) else {
        eprintln!("auth_worker: DASK_CREDENTIALS is not set");
        return ExitCode::FAILURE;
    };
    let credentials = match dask_net::credentials::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("auth_worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = WorkerConfig {
        scheduler,
        nthreads: nthreads.parse().unwrap_or(1),
        credentials: Some(credentials),
        ..WorkerConfig::default()
    };
    let result = WorkerHandle::start(config).and_then(WorkerHandle::join);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auth_worker: {e}");
            ExitCode::FAILURE
        }
    }
}
