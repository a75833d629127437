//! [`DaskHome`]: the `DASK_RS_HOME` of one test, so that the programs a
//! test starts find credentials the way users' programs do (the file the
//! scheduler creates, found with no flag) without sharing them with other
//! tests or the user's own `~/.dask-rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dask_client::ClientOptions;
use dask_core::auth::Credentials;
use dask_core::messages::Role;
use dask_net::credentials::{self, CREDENTIALS_ENV, FILE_NAME, HOME_ENV};

use crate::process::{binary, Process};

/// A fresh directory for `DASK_RS_HOME`, removed when dropped.
pub struct DaskHome {
    dir: PathBuf,
}

impl DaskHome {
    /// An empty home: a scheduler started in it creates the credentials
    /// file; a worker or client started in it before that finds none.
    pub fn new() -> DaskHome {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dask-rs-home-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary DASK_RS_HOME");
        DaskHome { dir }
    }

    /// A home holding `cluster`'s credentials file (for programs joining
    /// a scheduler the test runs in its own process).
    pub fn holding(cluster: &Credentials) -> DaskHome {
        let home = DaskHome::new();
        credentials::write_new(&home.credentials_path(), cluster).expect("credentials written");
        home
    }

    /// Makes `command` find no credentials at all (a home that does not
    /// exist, no `DASK_CREDENTIALS`): for a program joining a scheduler
    /// the test plays itself, or one that runs without authentication.
    pub fn apply_none(command: &mut Command) -> &mut Command {
        let nowhere = std::env::temp_dir().join(format!(
            "dask-rs-no-home-{}/does-not-exist",
            std::process::id()
        ));
        command.env(HOME_ENV, nowhere).env_remove(CREDENTIALS_ENV)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the credentials file is (or will be).
    pub fn credentials_path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Makes `command` use this home (and no `DASK_CREDENTIALS` of the
    /// test's environment).
    pub fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command.env(HOME_ENV, &self.dir).env_remove(CREDENTIALS_ENV)
    }

    /// The credentials file's contents (after a scheduler created it).
    pub fn credentials(&self) -> Credentials {
        credentials::load(&self.credentials_path()).expect("the scheduler's credentials file")
    }

    /// Client options proving the client secret of this home's file.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            credentials: credentials::for_role(&self.credentials(), Role::Client),
            ..ClientOptions::default()
        }
    }
}

impl DaskHome {
    /// Starts `dask-scheduler --port 0 --no-dashboard` with `args` in this
    /// home (it creates the credentials file); the process and the
    /// address it prints, once it prints it within `patience`.
    pub fn start_scheduler(&self, args: &[&str], patience: Duration) -> (Process, String) {
        let mut cmd = Command::new(binary("dask-scheduler"));
        self.apply(&mut cmd)
            .args(["--port", "0", "--no-dashboard"])
            .args(args);
        let scheduler = Process::spawn("dask-scheduler", &mut cmd);
        let line = scheduler.expect_line("Scheduler at ", patience);
        let address = line["Scheduler at ".len()..].trim().to_string();
        (scheduler, address)
    }
}

/// The dashboard of a scheduler a test started: where it listens and the
/// token its `Dashboard at` line carries.
pub struct Dashboard {
    /// `HOST:PORT`.
    pub host_port: String,
    /// The token (empty when the cluster has none).
    pub token: String,
}

impl Dashboard {
    /// The dashboard a `Dashboard at http://HOST:PORT/...[?token=T]` line
    /// (without its prefix) names.
    pub fn from_url(url: &str) -> Dashboard {
        let url = url.trim().trim_start_matches("http://");
        let (host_port, rest) = url.split_once('/').unwrap_or((url, ""));
        let token = rest.split_once("token=").map_or("", |(_, t)| t).to_owned();
        Dashboard {
            host_port: host_port.to_owned(),
            token,
        }
    }

    /// The body of `GET path` with the token, which must answer 200.
    pub fn get(&self, path: &str) -> String {
        let (head, body) = self.request(path, Some(&self.token));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "GET {path}: {head}\r\n\r\n{body}"
        );
        body
    }

    /// The status and body of `GET path` from a stranger: no token.
    pub fn get_as_stranger(&self, path: &str) -> (u16, String) {
        let (head, body) = self.request(path, None);
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: not an HTTP/1.1 status line: {head}"));
        (status, body)
    }

    /// The header block and body of `GET path`, with `token` as a bearer
    /// token if given.
    fn request(&self, path: &str, token: Option<&str>) -> (String, String) {
        let mut stream = TcpStream::connect(&self.host_port).expect("the dashboard");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("a read timeout");
        let authorization =
            token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{authorization}Connection: close\r\n\r\n",
            self.host_port
        )
        .expect("a request");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("a reply");
        let (head, body) = reply.split_once("\r\n\r\n").expect("a header block");
        (head.to_owned(), body.to_owned())
    }
}

impl DaskHome {
    /// Starts `dask-scheduler` with `args` and its dashboard on a free
    /// loopback port in this home; the process, the address it prints and
    /// its dashboard, once it prints both within `patience`.
    pub fn start_scheduler_with_dashboard(
        &self,
        args: &[&str],
        patience: Duration,
    ) -> (Process, String, Dashboard) {
        let mut cmd = Command::new(binary("dask-scheduler"));
        self.apply(&mut cmd)
            .args(["--dashboard-address", "127.0.0.1:0"])
            .args(args);
        let scheduler = Process::spawn("dask-scheduler", &mut cmd);
        let line = scheduler.expect_line("Scheduler at ", patience);
        let address = line["Scheduler at ".len()..].trim().to_string();
        let url = scheduler.expect_line("Dashboard at ", patience);
        let dashboard = Dashboard::from_url(&url["Dashboard at ".len()..]);
        (scheduler, address, dashboard)
    }
}

impl Default for DaskHome {
    fn default() -> Self {
        DaskHome::new()
    }
}

impl Drop for DaskHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
