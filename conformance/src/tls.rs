//! The runner's side of TLS, for `--tls`: the runner makes a cluster CA
//! and a certificate for the run (`dask-rs credentials tls`'s files: a CA
//! and a certificate with its key), gives the worker under test the
//! files (`{tls_ca_file}` / `DASK_TLS_CA_FILE`, `{tls_cert}` /
//! `DASK_TLS_CERT`, the key inside it), listens on `tls://` and connects
//! to the worker's data address over TLS, requiring the worker's
//! certificate (mutual TLS) as a cluster does.
//!
//! The session reads and writes plain frames on ordinary sockets: each
//! TLS connection is terminated here, after its handshake, by two threads
//! that move bytes between the TLS socket and one end of a loopback
//! socket pair whose other end the session gets. The channel binding of
//! the connection (RFC 9266 `tls-exporter`) comes with it, for the
//! proofs of `--auth`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use dask_core::auth::{CHANNEL_BINDING_BYTES, CHANNEL_BINDING_LABEL};
use dask_net::TlsConfig;

/// How long a TLS handshake may take before the runner gives up on it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes moved per read, each way.
const PUMP_BUFFER_BYTES: usize = 64 * 1024;

/// A channel binding (the TLS exporter value of one connection).
pub type ChannelBinding = [u8; CHANNEL_BINDING_BYTES];

/// The TLS material of one run.
pub struct RunnerTls {
    /// The CA certificate (`{tls_ca_file}`).
    pub ca_file: PathBuf,
    /// The certificate and its key (`{tls_cert}`, `{tls_key}`).
    pub cert_file: PathBuf,
    dir: PathBuf,
    config: TlsConfig,
}

impl std::fmt::Debug for RunnerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerTls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .finish()
    }
}

/// A TLS connection after its handshake: the plain socket the session
/// uses, and the connection's channel binding.
#[derive(Debug)]
pub struct Terminated {
    /// Plain bytes in and out; closing it closes the TLS connection.
    pub stream: TcpStream,
    /// The connection's TLS exporter value.
    pub channel_binding: ChannelBinding,
}

impl RunnerTls {
    /// A new CA and certificate, in an owner-only directory of their own
    /// (removed when this is dropped).
    pub fn create() -> Result<RunnerTls, String> {
        let tag = crate::auth::random32().map_err(|e| format!("no random bytes: {e}"))?;
        let dir = std::env::temp_dir().join(format!(
            "dask-conformance-tls-{}-{:02x}{:02x}{:02x}{:02x}",
            std::process::id(),
            tag[0],
            tag[1],
            tag[2],
            tag[3]
        ));
        let files = dask_net::tls::write_cluster_files(&dir, &["127.0.0.1".to_string()], 1)
            .map_err(|e| e.to_string())?;
        let config = TlsConfig::from_files(Some(&files.ca), Some(&files.cert), None)
            .map_err(|e| e.to_string())?;
        Ok(RunnerTls {
            ca_file: files.ca,
            cert_file: files.cert,
            dir,
            config,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The acceptor's TLS handshake on a connection the runner accepted.
    pub fn accept(&self, outer: TcpStream) -> io::Result<Terminated> {
        let config = self.config.acceptor().cloned().ok_or_else(no_config)?;
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        terminate(conn.into(), outer)
    }

    /// The connector's TLS handshake on a connection the runner opened.
    pub fn connect(&self, outer: TcpStream) -> io::Result<Terminated> {
        let config = self.config.connector().cloned().ok_or_else(no_config)?;
        let ip = outer.peer_addr()?.ip();
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        terminate(conn.into(), outer)
    }
}

impl Drop for RunnerTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn no_config() -> io::Error {
    io::Error::other("the run's TLS settings lack a certificate or CA")
}

/// Two connected loopback sockets.
fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let a = TcpStream::connect(listener.local_addr()?)?;
    let (b, _) = listener.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a, b))
}

fn terminate(mut conn: rustls::Connection, mut outer: TcpStream) -> io::Result<Terminated> {
    outer.set_nodelay(true)?;
    outer.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    outer.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut outer)?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut outer)?;
    }
    outer.set_read_timeout(None)?;
    let channel_binding = conn
        .export_keying_material([0; CHANNEL_BINDING_BYTES], CHANNEL_BINDING_LABEL, None)
        .map_err(io::Error::other)?;
    // The plaintext is moved on as soon as it is read: no bound needed.
    conn.set_buffer_limit(None);
    // What came with the end of the handshake (the peer's first frame in
    // the same segment as its Finished) is already decrypted: pass it on.
    let mut early = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = conn.reader().read(&mut chunk) {
        early.extend_from_slice(&chunk[..n]);
    }
    let (session_end, mut ours) = loopback_pair()?;
    ours.write_all(&early)?;
    let conn = Arc::new(Mutex::new(conn));
    let (outer_in, ours_out) = (outer.try_clone()?, ours.try_clone()?);
    let from_tls = conn.clone();
    thread::spawn(move || tls_to_plain(&from_tls, outer_in, ours_out));
    thread::spawn(move || plain_to_tls(&conn, outer, ours));
    Ok(Terminated {
        stream: session_end,
        channel_binding,
    })
}

/// Decrypts what the worker sends and writes it to the session's socket;
/// at the worker's close (or a TLS error) ends the session's socket.
fn tls_to_plain(conn: &Mutex<rustls::Connection>, mut outer: TcpStream, mut ours: TcpStream) {
    let mut buf = vec![0u8; PUMP_BUFFER_BYTES];
    let mut plain = vec![0u8; PUMP_BUFFER_BYTES];
    'pump: loop {
        let n = match outer.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut out = Vec::new();
        let mut ended = false;
        {
            let Ok(mut c) = conn.lock() else { break };
            let mut rest = &buf[..n];
            while !rest.is_empty() && !ended {
                if c.read_tls(&mut rest).is_err() || c.process_new_packets().is_err() {
                    // Send the alert rustls queued, then stop.
                    let _ = c.write_tls(&mut outer);
                    ended = true;
                    break;
                }
                loop {
                    match c.reader().read(&mut plain) {
                        Ok(0) => {
                            ended = true; // close_notify
                            break;
                        }
                        Ok(k) => out.extend_from_slice(&plain[..k]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            ended = true;
                            break;
                        }
                    }
                }
            }
        }
        if !out.is_empty() && ours.write_all(&out).is_err() {
            break 'pump;
        }
        if ended {
            break;
        }
    }
    let _ = ours.shutdown(Shutdown::Write);
}

/// Encrypts what the session writes and sends it to the worker; at the
/// session's close sends close_notify and ends the TLS socket.
fn plain_to_tls(conn: &Mutex<rustls::Connection>, mut outer: TcpStream, mut ours: TcpStream) {
    let mut buf = vec![0u8; PUMP_BUFFER_BYTES];
    loop {
        let n = match ours.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut records = Vec::new();
        {
            let Ok(mut c) = conn.lock() else { return };
            if c.writer().write_all(&buf[..n]).is_err() {
                break;
            }
            while c.wants_write() {
                if c.write_tls(&mut records).is_err() {
                    break;
                }
            }
        }
        if outer.write_all(&records).is_err() {
            let _ = ours.shutdown(Shutdown::Both);
            return;
        }
    }
    if let Ok(mut c) = conn.lock() {
        c.send_close_notify();
        let mut records = Vec::new();
        while c.wants_write() {
            if c.write_tls(&mut records).is_err() {
                break;
            }
        }
        let _ = outer.write_all(&records);
    }
    let _ = outer.shutdown(Shutdown::Both);
}
