//! The security options every dask-rs program takes on its command line
//! (feature `cli`): where the cluster's credentials are, the loudly named
//! opt-out, and Dask's three TLS files; and the logging options of
//! `dask-scheduler` and `dask-worker`. One definition, so that the
//! programs spell and explain them the same way.

use std::net::IpAddr;
use std::path::PathBuf;

use dask_core::auth::Credentials;
use dask_core::messages::Role;

use crate::credentials;
use crate::log::{LogFormat, Logger};
use crate::TlsConfig;
use dask_core::log::Level;

/// The end of `--help` of `dask-scheduler`, `dask-worker` and `dask-rs
/// credentials`: a secure cluster on several machines in three commands
/// (README.md has the same; dask-cluster's tests/secure_cluster.rs runs
/// them on loopback).
pub const SECURE_CLUSTER_HELP: &str = "\
A secure cluster on several machines, in three commands (authentication is always on; these add TLS):
  1. on the scheduler's machine (here 10.0.0.5), a cluster CA and certificate:
       dask-rs credentials tls --host 10.0.0.5
  2. the scheduler, which creates ~/.dask-rs/credentials.json on its first start:
       dask-scheduler --host 0.0.0.0 --tls-ca-file ~/.dask-rs/tls/ca.pem --tls-cert ~/.dask-rs/tls/cluster.pem
     then `dask-rs credentials export --worker worker.json`, and copy worker.json,
     ~/.dask-rs/tls/ca.pem and ~/.dask-rs/tls/cluster.pem to each worker machine;
  3. on each worker machine:
       dask-worker tls://10.0.0.5:8796 --host 10.0.0.7 --credentials worker.json --tls-ca-file ca.pem --tls-cert cluster.pem
Clients take the same flags (a client's file: `dask-rs credentials export --client client.json`).";

/// How a program logs: `--log-level` and `--log-format`, spelled once for
/// `dask-scheduler` and `dask-worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Log events at this level and above: debug, info, warn, error
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = log_level)]
    pub log_level: Level,
    /// Log lines as text or as one JSON object each
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = log_format)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// The logger these options ask for, for `component`.
    pub fn logger(&self, component: &'static str) -> Logger {
        Logger::new(component, self.log_level, self.log_format)
    }
}

fn log_level(v: &str) -> Result<Level, String> {
    Level::from_name(v).ok_or_else(|| format!("{v:?}: expected debug, info, warn or error"))
}

fn log_format(v: &str) -> Result<LogFormat, String> {
    LogFormat::from_name(v).ok_or_else(|| format!("{v:?}: expected text or json"))
}

/// The flag that turns authentication off.
pub const NO_AUTH_FLAG: &str = "--no-auth-anyone-can-connect";

/// Credentials and TLS options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// The cluster's credentials file [default: $DASK_CREDENTIALS, else
    /// $DASK_RS_HOME/credentials.json, else ~/.dask-rs/credentials.json].
    /// dask-scheduler creates it on its first start (owner-only); clients
    /// and workers of the same user on the same machine find it with no
    /// flag; `dask-rs credentials export` writes one for another machine
    #[arg(long, value_name = "FILE", global = true)]
    pub credentials: Option<PathBuf>,
    /// Turn authentication off: anyone who reaches the ports can submit
    /// work, run programs as this user and read every value. For
    /// throwaway use on a trusted machine only
    #[arg(long, global = true)]
    pub no_auth_anyone_can_connect: bool,
    /// The cluster's CA certificate (PEM): connect to tls:// addresses,
    /// and with a certificate, require peers' certificates (mutual TLS)
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_ca_file: Option<PathBuf>,
    /// This process's certificate (PEM; may also hold the key): serve
    /// tls:// addresses. `dask-rs credentials tls` makes a CA and one
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_key: Option<PathBuf>,
}

impl SecurityArgs {
    /// The TLS settings, when any TLS file is given.
    pub fn tls(&self) -> Result<Option<TlsConfig>, String> {
        if self.tls_ca_file.is_none() && self.tls_cert.is_none() && self.tls_key.is_none() {
            return Ok(None);
        }
        TlsConfig::from_files(
            self.tls_ca_file.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
        .map(Some)
        .map_err(|e| e.to_string())
    }

    /// A scheduler's credentials: the file found as a client's would be
    /// (flag, `DASK_CREDENTIALS`, the default file), created with fresh
    /// secrets when absent; with the path, and whether it was created.
    /// `None` with the opt-out.
    pub fn scheduler_credentials(&self) -> Result<Option<(Credentials, PathBuf, bool)>, String> {
        if self.no_auth_anyone_can_connect {
            return Ok(None);
        }
        let Some((path, _)) = credentials::locate(self.credentials.as_deref()) else {
            return Err(format!(
                "no place for the credentials file: neither HOME nor DASK_RS_HOME is set; \
                 give --credentials FILE (or {NO_AUTH_FLAG} to run without authentication)"
            ));
        };
        let (found, created) = credentials::load_or_create(&path).map_err(|e| e.to_string())?;
        Ok(Some((found, path, created)))
    }

    /// The credentials a client or worker proves (`role`'s secret), found
    /// with no flag on the scheduler's machine: `None` with the opt-out,
    /// or when no file is given and the default one does not exist (the
    /// scheduler then says that it requires them, if it does).
    pub fn member_credentials(&self, role: Role) -> Result<Option<Credentials>, String> {
        if self.no_auth_anyone_can_connect {
            return Ok(None);
        }
        let Some(file) =
            credentials::discover(self.credentials.as_deref()).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        match credentials::for_role(&file.credentials, role) {
            Some(own) => Ok(Some(own)),
            None => Err(format!(
                "the credentials file {} holds no {} secret (it was exported for another \
                 role): give this machine the {} file (`dask-rs credentials export`)",
                file.path.display(),
                role.as_str(),
                role.as_str()
            )),
        }
    }
}

/// The warnings a program listening on `host` prints at start: with
/// authentication off, and beyond loopback without TLS.
pub fn listen_warnings(host: &str, authenticated: bool, tls: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !authenticated {
        lines.push(format!(
            "WARNING: authentication is off ({NO_AUTH_FLAG}): anyone who reaches {host} can \
             submit work, run programs as this user and read every value"
        ));
    }
    if !loopback && !tls {
        lines.push(format!(
            "WARNING: listening on {host}, beyond this machine, without TLS: secrets are never \
             sent, but tasks and values cross the network in clear; give --tls-cert, --tls-key \
             and --tls-ca-file (`dask-rs credentials tls` makes them)"
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_name_the_opt_out_and_a_public_address_without_tls() {
        assert!(listen_warnings("127.0.0.1", true, false).is_empty());
        assert!(listen_warnings("localhost", true, false).is_empty());
        assert!(listen_warnings("::1", true, false).is_empty());
        let open = listen_warnings("127.0.0.1", false, false);
        assert!(open[0].contains(NO_AUTH_FLAG), "{open:?}");
        let public = listen_warnings("0.0.0.0", true, false);
        assert!(public[0].contains("without TLS"), "{public:?}");
        assert!(listen_warnings("0.0.0.0", true, true).is_empty());
    }
}
