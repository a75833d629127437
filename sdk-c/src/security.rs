//! `dask_security`: the credentials and TLS files a client or worker uses,
//! for dask_client_connect_secure and dask_worker_start_secure (the plain
//! functions find the credentials as every dask-rs program does and use
//! no TLS).

use std::ffi::c_char;
use std::path::Path;

use dask_core::auth::Credentials;
use dask_core::messages::Role;
use dask_net::credentials;
use dask_net::TlsConfig;

use crate::error::{Failure, Fallible};
use crate::ffi::opt_c_str;

/// Where a client or worker finds its credentials and TLS files. Every
/// field may be NULL (or false): a NULL `credentials_file` finds them as
/// dask_client_connect does; no TLS file: plain TCP (`tcp://` only).
/// The strings are read during the call only.
#[repr(C)]
pub struct dask_security {
    /// The cluster's credentials file (a role's file from `dask-rs
    /// credentials export`, or the scheduler's), as `--credentials`.
    pub credentials_file: *const c_char,
    /// The cluster's CA certificate (PEM), as `--tls-ca-file`: needed to
    /// reach `tls://` addresses.
    pub tls_ca_file: *const c_char,
    /// This program's certificate (PEM; may also hold the key), as
    /// `--tls-cert`: presented to acceptors that require one (mutual TLS),
    /// and a worker's data address is then `tls://`.
    pub tls_cert_file: *const c_char,
    /// The key of `tls_cert_file` (PEM), as `--tls-key`.
    pub tls_key_file: *const c_char,
    /// Prove no credentials (a scheduler started with
    /// `--no-auth-anyone-can-connect`); `credentials_file` is ignored.
    pub no_auth: bool,
}

/// The credentials of `role` and the TLS settings `security` asks for, to
/// reach `address`; NULL `security`: the defaults of the plain functions.
pub(crate) fn resolve(
    address: &str,
    role: Role,
    security: *const dask_security,
) -> Fallible<(Option<Credentials>, Option<TlsConfig>)> {
    // SAFETY: a non-NULL pointer argument points to a valid value (rule 5).
    let Some(security) = (unsafe { security.as_ref() }) else {
        return Ok((crate::client::credentials_for(address, role)?, None));
    };
    let file = opt_c_str(security.credentials_file, "credentials_file")?;
    let credentials = match (security.no_auth, file) {
        (true, _) => None,
        (false, None) => crate::client::credentials_for(address, role)?,
        (false, Some(file)) => {
            let all =
                credentials::load(Path::new(file)).map_err(|e| Failure::invalid(e.to_string()))?;
            Some(credentials::for_role(&all, role).ok_or_else(|| {
                Failure::invalid(format!(
                    "the credentials file {file} holds no {} secret (it was exported for \
                     another role)",
                    role.as_str()
                ))
            })?)
        }
    };
    let ca = opt_c_str(security.tls_ca_file, "tls_ca_file")?;
    let cert = opt_c_str(security.tls_cert_file, "tls_cert_file")?;
    let key = opt_c_str(security.tls_key_file, "tls_key_file")?;
    let tls = if ca.is_none() && cert.is_none() && key.is_none() {
        None
    } else {
        let tls = TlsConfig::from_files(ca.map(Path::new), cert.map(Path::new), key.map(Path::new))
            .map_err(|e| Failure::invalid(e.to_string()))?;
        Some(tls)
    };
    Ok((credentials, tls))
}
