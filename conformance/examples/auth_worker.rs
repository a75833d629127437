//! A dask-rs worker that proves the worker secret of the credentials file
//! it finds as every dask-rs program does (`DASK_CREDENTIALS`, else
//! `$DASK_RS_HOME/credentials.json`), and speaks TLS when given the
//! runner's files (`DASK_TLS_CA_FILE`, `DASK_TLS_CERT`): what
//! `dask-conformance worker --auth [--tls]` runs in its own tests
//! (tests/auth.rs), built on the worker library alone so the test does not
//! depend on dask-worker's command line (scripts/ci/conformance.sh runs
//! dask-worker too). Usage: auth_worker SCHEDULER NTHREADS.

use std::path::PathBuf;
use std::process::ExitCode;

use dask_net::TlsConfig;
use dask_worker::{WorkerConfig, WorkerHandle};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(scheduler), Some(nthreads)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: auth_worker SCHEDULER NTHREADS (credentials found as dask-rs finds them)"
        );
        return ExitCode::FAILURE;
    };
    let credentials = match dask_net::credentials::discover(None) {
        Ok(Some(found)) => found.credentials,
        Ok(None) => {
            eprintln!("auth_worker: no credentials file (DASK_CREDENTIALS or DASK_RS_HOME)");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("auth_worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let tls = match (file("DASK_TLS_CA_FILE"), file("DASK_TLS_CERT")) {
        (None, None) => None,
        (ca, cert) => match TlsConfig::from_files(ca.as_deref(), cert.as_deref(), None) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("auth_worker: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let config = WorkerConfig {
        scheduler,
        nthreads: nthreads.parse().unwrap_or(1),
        credentials: Some(credentials),
        tls,
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
