//! Which credentials a Python client or worker proves, found as the Rust
//! programs find theirs (`dask_net::credentials`): a file given
//! (`credentials=PATH`, `--credentials FILE`), else the cluster this
//! process embeds at that address (`LocalCluster`: secrets made in memory,
//! never written where others could look), else `DASK_CREDENTIALS`, else
//! the default file (`$DASK_RS_HOME/credentials.json`, else
//! `~/.dask-rs/credentials.json`, which dask-scheduler creates). Only the
//! role's own secret is kept: a worker never holds the client secret.

use std::path::PathBuf;
use std::sync::Mutex;

use dask_core::auth::Credentials;
use dask_core::messages::Role;
use dask_net::credentials;
use pyo3::exceptions::PyPermissionError;
use pyo3::prelude::*;

/// The credentials of the schedulers this process embeds, by address.
static EMBEDDED: Mutex<Vec<(String, Credentials)>> = Mutex::new(Vec::new());

/// Records the credentials of a scheduler this process runs at `address`.
pub fn embed(address: &str, credentials: &Credentials) {
    let mut embedded = EMBEDDED.lock().unwrap_or_else(|p| p.into_inner());
    embedded.retain(|(a, _)| a != address);
    embedded.push((address.to_owned(), credentials.clone()));
}

/// Forgets them (the scheduler stopped).
pub fn unembed(address: &str) {
    let mut embedded = EMBEDDED.lock().unwrap_or_else(|p| p.into_inner());
    embedded.retain(|(a, _)| a != address);
}

fn embedded(address: &str) -> Option<Credentials> {
    // "127.0.0.1:8786" names the same scheduler as "tcp://127.0.0.1:8786".
    let plain = |a: &str| a.strip_prefix("tcp://").unwrap_or(a).to_owned();
    let embedded = EMBEDDED.lock().unwrap_or_else(|p| p.into_inner());
    embedded
        .iter()
        .find(|(a, _)| plain(a) == plain(address))
        .map(|(_, c)| c.clone())
}

/// What the Python `credentials=` argument says.
pub enum Lookup {
    /// `None`: look as the Rust programs do.
    Discover,
    /// A path: that file, which must exist.
    File(PathBuf),
    /// `False`: prove nothing (a scheduler started with
    /// `--no-auth-anyone-can-connect`).
    Nothing,
}

impl<'py> FromPyObject<'_, 'py> for Lookup {
    type Error = PyErr;

    fn extract(ob: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if ob.is_none() {
            Ok(Lookup::Discover)
        } else if let Ok(flag) = ob.extract::<bool>() {
            Ok(if flag {
                Lookup::Discover
            } else {
                Lookup::Nothing
            })
        } else {
            Ok(Lookup::File(ob.extract::<PathBuf>()?))
        }
    }
}

/// The credentials `role` proves to the scheduler at `address`.
pub fn member_credentials(
    lookup: &Lookup,
    address: &str,
    role: Role,
) -> PyResult<Option<Credentials>> {
    let file = match lookup {
        Lookup::Nothing => return Ok(None),
        Lookup::File(path) => credentials::discover(Some(path)),
        Lookup::Discover => match embedded(address) {
            Some(own) => return Ok(credentials::for_role(&own, role)),
            None => credentials::discover(None),
        },
    };
    let Some(file) = file.map_err(|e| PyPermissionError::new_err(e.to_string()))? else {
        return Ok(None);
    };
    match credentials::for_role(&file.credentials, role) {
        Some(own) => Ok(Some(own)),
        None => Err(PyPermissionError::new_err(format!(
            "the credentials file {} holds no {} secret (it was exported for another role): \
             give this program the {} file (`dask-rs credentials export`)",
            file.path.display(),
            role.as_str(),
            role.as_str()
        ))),
    }
}
