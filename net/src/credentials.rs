//! Credentials: the files that hold a cluster's secrets, where programs
//! find them, and the random source of secrets and nonces. This is the
//! API every program of dask-rs uses (scheduler, worker, clients, the C
//! and Python SDKs, tools); `dask_core::auth` computes the proofs.
//!
//! ## The file
//!
//! A JSON object, readable by its owner only (mode 0600), written
//! atomically (a temporary file, then linked into place):
//!
//! ```json
//! {"dask_rs_credentials": 1, "client_secret": "<64 hex digits>", "worker_secret": "<64 hex digits>"}
//! ```
//!
//! `dask-scheduler` creates one with both secrets on its first start
//! (32 bytes each from the OS's random source) and reuses it after.
//! A role file holds one secret: `client_secret` for a client's machine,
//! `worker_secret` for a worker's (`dask-rs credentials export`); a worker's
//! file cannot submit work. Unknown fields are ignored.
//!
//! ## Where programs look ([`discover`])
//!
//! 1. the path given on the command line (`--credentials FILE`);
//! 2. the path in `DASK_CREDENTIALS`;
//! 3. the default file, `$DASK_RS_HOME/credentials.json`, or
//!    `~/.dask-rs/credentials.json` when `DASK_RS_HOME` is not set
//!    ([`default_path`]): a scheduler, client and workers run by one
//!    user on one machine share it with no setup.
//!
//! A file named in 1 or 2 must exist; the default file may be absent
//! (the program then holds no credentials). A file others can read is
//! refused, naming the `chmod` that fixes it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use dask_core::auth::{Credentials, Secret, NONCE_BYTES, SECRET_BYTES};

/// The environment variable naming a credentials file.
pub const CREDENTIALS_ENV: &str = "DASK_CREDENTIALS";

/// The environment variable naming the directory of the default file.
pub const HOME_ENV: &str = "DASK_RS_HOME";

/// The default file's name in its directory.
pub const FILE_NAME: &str = "credentials.json";

/// The format version written in the file's `dask_rs_credentials` field.
const FORMAT: u64 = 1;

/// A credentials file that could not be used: what was reached, what was
/// expected, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError(pub String);

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CredentialsError {}

fn error(path: &Path, what: impl fmt::Display) -> CredentialsError {
    CredentialsError(format!("credentials file {}: {what}", path.display()))
}

/// Credentials read from (or written to) a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsFile {
    /// Where they are.
    pub path: PathBuf,
    /// The secrets in it.
    pub credentials: Credentials,
}

/// Fills `buf` from the OS's random source.
///
/// # Panics
/// When the OS has no random source to give (never on Linux, macOS or
/// Windows once booted): continuing without one would make guessable
/// secrets.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS random source failed");
}

/// A fresh nonce for one handshake.
pub fn nonce() -> [u8; NONCE_BYTES] {
    let mut n = [0; NONCE_BYTES];
    fill_random(&mut n);
    n
}

/// New random client and worker secrets, in memory (what an embedded
/// local cluster hands its own client and workers).
pub fn generate() -> Credentials {
    let secret = || {
        let mut b = [0; SECRET_BYTES];
        fill_random(&mut b);
        Secret::from_bytes(b)
    };
    Credentials {
        client: Some(secret()),
        worker: Some(secret()),
    }
}

/// The default file: `$DASK_RS_HOME/credentials.json`, else
/// `$HOME/.dask-rs/credentials.json`; `None` with neither variable set.
pub fn default_path() -> Option<PathBuf> {
    default_path_from(
        std::env::var_os(HOME_ENV).map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn default_path_from(dask_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    match (dask_home, home) {
        (Some(dir), _) if !dir.as_os_str().is_empty() => Some(dir.join(FILE_NAME)),
        (_, Some(home)) if !home.as_os_str().is_empty() => {
            Some(home.join(".dask-rs").join(FILE_NAME))
        }
        _ => None,
    }
}

/// Where a program's credentials file is: `flag` (a path given on its
/// command line), else `DASK_CREDENTIALS`, else the default file. The
/// second value says whether the file must exist (it need not when it is
/// the default one).
pub fn locate(flag: Option<&Path>) -> Option<(PathBuf, bool)> {
    locate_from(
        flag,
        std::env::var_os(CREDENTIALS_ENV).map(PathBuf::from),
        default_path(),
    )
}

fn locate_from(
    flag: Option<&Path>,
    env: Option<PathBuf>,
    default: Option<PathBuf>,
) -> Option<(PathBuf, bool)> {
    if let Some(path) = flag {
        return Some((path.to_path_buf(), true));
    }
    match env {
        Some(path) if !path.as_os_str().is_empty() => Some((path, true)),
        _ => default.map(|path| (path, false)),
    }
}

/// A connecting program's credentials (a client's, a worker's): the file
/// [`locate`] finds, read with [`load`]. `Ok(None)`: no file was named
/// and the default file does not exist.
pub fn discover(flag: Option<&Path>) -> Result<Option<CredentialsFile>, CredentialsError> {
    let Some((path, required)) = locate(flag) else {
        return Ok(None);
    };
    if !required && !path.exists() {
        return Ok(None);
    }
    load(&path).map(|credentials| Some(CredentialsFile { path, credentials }))
}

/// Reads a credentials file, refusing one that others can read.
pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(error(
                path,
                "does not exist (dask-scheduler creates one on its first start; \
                 `dask-rs credentials export` writes one for another machine)",
            ))
        }
        Err(e) => return Err(error(path, format!("cannot be read: {e}"))),
    };
    check_owner_only(path)?;
    parse(&text).map_err(|e| error(path, e))
}

#[cfg(unix)]
fn check_owner_only(path: &Path) -> Result<(), CredentialsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| error(path, format!("cannot be read: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(error(
            path,
            format!(
                "other users can read or write it (mode {:04o}): run `chmod 600 {}`",
                mode & 0o7777,
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_: &Path) -> Result<(), CredentialsError> {
    Ok(())
}

fn parse(text: &str) -> Result<Credentials, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or("is not a JSON object of dask-rs credentials")?;
    match object.get("dask_rs_credentials").and_then(|v| v.as_u64()) {
        Some(FORMAT) => {}
        Some(n) => {
            return Err(format!(
                "has format {n}, this program reads format {FORMAT} (a newer dask-rs wrote it)"
            ))
        }
        None => {
            return Err(
                "lacks \"dask_rs_credentials\": 1 (it is not a dask-rs credentials file)".into(),
            )
        }
    }
    let secret = |name: &str| -> Result<Option<Secret>, String> {
        match object.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(hex)) => Secret::from_hex(hex)
                .map(Some)
                .map_err(|e| format!("{name:?}: {e}")),
            Some(_) => Err(format!("{name:?} is not a string of hex digits")),
        }
    };
    let credentials = Credentials {
        client: secret("client_secret")?,
        worker: secret("worker_secret")?,
    };
    if credentials.is_empty() {
        return Err("holds neither \"client_secret\" nor \"worker_secret\"".into());
    }
    Ok(credentials)
}

fn render(credentials: &Credentials) -> String {
    let mut object = serde_json::Map::new();
    object.insert("dask_rs_credentials".into(), FORMAT.into());
    if let Some(s) = &credentials.client {
        object.insert("client_secret".into(), s.to_hex().into());
    }
    if let Some(s) = &credentials.worker {
        object.insert("worker_secret".into(), s.to_hex().into());
    }
    let mut text = serde_json::to_string_pretty(&object).expect("a map of strings");
    text.push('\n');
    text
}

/// Writes `credentials` to a new file at `path`, owner-only, creating
/// its directory (owner-only too) when missing. The file appears whole
/// or not at all; an existing file is never replaced
/// ([`io::ErrorKind::AlreadyExists`] in the error then).
pub fn write_new(path: &Path, credentials: &Credentials) -> Result<(), CredentialsError> {
    match write_new_io(path, credentials) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(error(path, "already exists (it is never overwritten)"))
        }
        Err(e) => Err(error(path, format!("cannot be written: {e}"))),
    }
}

fn write_new_io(path: &Path, credentials: &Credentials) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            create_private_dir(dir)?;
        }
    }
    if path.exists() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    let mut suffix = [0u8; 8];
    fill_random(&mut suffix);
    let tmp = path.with_extension(format!(
        "tmp-{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let result = (|| {
        let mut file = private_file(&tmp)?;
        file.write_all(render(credentials).as_bytes())?;
        file.sync_all()?;
        // A hard link never replaces an existing file: two schedulers
        // starting at once agree on the first one's secrets.
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            // A file system without hard links: rename is atomic too.
            Err(_) if !path.exists() => fs::rename(&tmp, path),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(unix)]
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
pub(crate) fn private_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
pub(crate) fn private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// The scheduler's credentials: the file at `path` if it exists (it must
/// hold both secrets), else a new one with fresh secrets. The flag says
/// whether it was created.
pub fn load_or_create(path: &Path) -> Result<(Credentials, bool), CredentialsError> {
    let full = |credentials: Credentials| {
        if credentials.client.is_none() || credentials.worker.is_none() {
            Err(error(
                path,
                "holds one role's secret only; a scheduler needs the file with both \
                 (the one dask-scheduler created)",
            ))
        } else {
            Ok(credentials)
        }
    };
    if path.exists() {
        return full(load(path)?).map(|c| (c, false));
    }
    let credentials = generate();
    match write_new_io(path, &credentials) {
        Ok(()) => Ok((credentials, true)),
        // Another scheduler created it first: use the same secrets.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => full(load(path)?).map(|c| (c, false)),
        Err(e) => Err(error(path, format!("cannot be created: {e}"))),
    }
}

/// The credentials of one role, for a machine that needs no more:
/// `Role::Client` keeps the client secret, `Role::Worker` (and
/// `Role::Peer`) the worker secret.
pub fn for_role(credentials: &Credentials, role: dask_core::messages::Role) -> Option<Credentials> {
    use dask_core::messages::Role;
    let secret = credentials.secret_for(role)?.clone();
    Some(match role {
        Role::Client => Credentials {
            client: Some(secret),
            worker: None,
        },
        _ => Credentials {
            client: None,
            worker: Some(secret),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::messages::Role;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dask-credentials-{}-{name}-{:x}",
            std::process::id(),
            u64::from_le_bytes(nonce()[..8].try_into().unwrap())
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_scheduler_creates_an_owner_only_file_once_and_reuses_it() {
        let dir = scratch_dir("create");
        let path = dir.join("sub").join(FILE_NAME);
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert!(first.client.is_some() && first.worker.is_some());
        assert_ne!(first.client, first.worker);
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again, first);
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn schedulers_starting_at_once_agree_on_one_file() {
        let dir = scratch_dir("race");
        let path = dir.join(FILE_NAME);
        let results: Vec<Credentials> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path).unwrap().0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(|c| *c == results[0]));
        assert_eq!(load(&path).unwrap(), results[0]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch_dir("mode");
        let path = dir.join(FILE_NAME);
        load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644"), "{e}");
        assert!(e.contains(&format!("chmod 600 {}", path.display())), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn role_files_hold_one_secret_and_cannot_serve_a_scheduler() {
        let dir = scratch_dir("roles");
        let full = generate();
        let client = dir.join("client.json");
        write_new(&client, &for_role(&full, Role::Client).unwrap()).unwrap();
        let read = load(&client).unwrap();
        assert_eq!(read.client, full.client);
        assert_eq!(read.worker, None);
        let worker = dir.join("worker.json");
        write_new(&worker, &for_role(&full, Role::Peer).unwrap()).unwrap();
        assert_eq!(load(&worker).unwrap().worker, full.worker);
        assert!(load_or_create(&worker)
            .unwrap_err()
            .0
            .contains("one role's secret only"));
        let e = write_new(&worker, &full).unwrap_err();
        assert!(e.0.contains("never overwritten"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("[1]", "not a JSON object"),
            ("{", "is not JSON"),
            ("{}", "lacks \"dask_rs_credentials\""),
            (r#"{"dask_rs_credentials": 2}"#, "format 2"),
            (r#"{"dask_rs_credentials": 1}"#, "neither"),
            (
                r#"{"dask_rs_credentials": 1, "client_secret": "abc"}"#,
                "64 hex digits",
            ),
            (
                r#"{"dask_rs_credentials": 1, "worker_secret": 5}"#,
                "not a string",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
        let e = load(Path::new("/nonexistent/dask/credentials.json")).unwrap_err();
        assert!(e.0.contains("does not exist"), "{e}");
    }

    #[test]
    fn programs_look_at_the_flag_then_the_variable_then_the_default() {
        let flag = Path::new("/flag.json");
        let env = Some(PathBuf::from("/env.json"));
        let default = Some(PathBuf::from("/home/u/.dask-rs/credentials.json"));
        assert_eq!(
            locate_from(Some(flag), env.clone(), default.clone()),
            Some((flag.to_path_buf(), true))
        );
        assert_eq!(
            locate_from(None, env.clone(), default.clone()),
            Some((PathBuf::from("/env.json"), true))
        );
        assert_eq!(
            locate_from(None, Some(PathBuf::new()), default.clone()),
            Some((default.clone().unwrap(), false))
        );
        assert_eq!(locate_from(None, None, None), None);
        assert_eq!(
            default_path_from(Some("/d".into()), Some("/home/u".into())),
            Some(PathBuf::from("/d/credentials.json"))
        );
        assert_eq!(default_path_from(None, Some("/home/u".into())), default);
        assert_eq!(default_path_from(None, None), None);
    }

    #[test]
    fn secrets_are_random() {
        let (a, b) = (generate(), generate());
        assert_ne!(a.client, b.client);
        assert_ne!(nonce(), nonce());
    }
}
