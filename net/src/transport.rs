//! How a connection's bytes reach its socket: plain TCP, or TLS (rustls)
//! driven the way its mio examples do: readable -> `read_tls` ->
//! `process_new_packets` -> plaintext from `reader()`; plaintext goes into
//! `writer()` and out with `write_tls` when the socket takes it; the
//! readiness asked for follows `wants_write`. Nothing above
//! [`Conn`](crate::Conn) changes: the state machines never know whether a
//! connection is encrypted.
//!
//! rustls holds at most its buffer limit of plaintext or records at once,
//! so a large frame goes through in pieces: [`Transport::write_vectored`]
//! takes what fits, pushes records to the socket, and takes more.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use dask_core::auth::{CHANNEL_BINDING_BYTES, CHANNEL_BINDING_LABEL};
use dask_core::{ErrorCode, WireError};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;

use crate::tls::explain;

/// Plaintext and records rustls may hold per connection: large enough
/// that a big frame costs few writes, small enough not to matter per
/// connection.
const TLS_BUFFER_BYTES: usize = 1024 * 1024;

/// The first byte of a TLS record carrying a handshake message (every
/// ClientHello and ServerHello starts with it), and of an alert.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const TLS_ALERT_RECORD: u8 = 0x15;

/// The byte pipe under one connection.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Plain TCP: bytes go to the socket as they are.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream>),
}

/// A TLS session and its socket.
#[derive(Debug)]
pub(crate) struct TlsStream {
    sock: TcpStream,
    session: rustls::Connection,
    /// No byte has come from the peer yet: the first one tells a TLS
    /// peer from a plain one.
    first_byte_seen: bool,
    /// The peer speaks plain dask/1 on a TLS address: nothing it sends is
    /// read as TLS or frames; the refusal goes to it in plain.
    plain_peer: bool,
}

/// A refusal that is the protocol's business (the peer speaks plain
/// dask/1 at a TLS address), carried in an `io::Error` up to
/// [`Conn`](crate::Conn), which reports it as a
/// [`ConnError::Wire`](crate::ConnError::Wire).
#[derive(Debug)]
pub(crate) struct Refusal(pub WireError);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refusal {}

fn tls_failure(e: &rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, explain(e))
}

impl Transport {
    /// TLS as the acceptor of `sock`.
    pub(crate) fn tls_acceptor(
        sock: TcpStream,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Transport> {
        let mut session = rustls::ServerConnection::new(config).map_err(|e| tls_failure(&e))?;
        session.set_buffer_limit(Some(TLS_BUFFER_BYTES));
        Ok(Transport::Tls(Box::new(TlsStream {
            sock,
            session: session.into(),
            first_byte_seen: false,
            plain_peer: false,
        })))
    }

    /// TLS as the connector of `sock` (connecting to `addr`).
    pub(crate) fn tls_connector(
        sock: TcpStream,
        config: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
    ) -> io::Result<Transport> {
        // The name is not checked (see `tls`); the address stands in.
        let name = ServerName::IpAddress(addr.ip().into());
        let mut session =
            rustls::ClientConnection::new(config, name).map_err(|e| tls_failure(&e))?;
        session.set_buffer_limit(Some(TLS_BUFFER_BYTES));
        Ok(Transport::Tls(Box::new(TlsStream {
            sock,
            session: session.into(),
            first_byte_seen: false,
            plain_peer: false,
        })))
    }

    /// Reads bytes of the stream into `buf` (`Ok(0)`: the peer closed).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }

    /// Writes some of `bufs`, in order; how many bytes were taken.
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            Transport::Tls(t) => match bufs.iter().find(|b| !b.is_empty()) {
                Some(buf) => t.write(buf),
                None => Ok(0),
            },
        }
    }

    /// Pushes out what the transport itself holds (TLS records); whether
    /// nothing is left. Plain TCP holds nothing.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => match t.push_records() {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Whether the transport holds bytes for the socket (TLS records).
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => !t.plain_peer && t.session.wants_write(),
        }
    }

    /// Ends our direction of the stream; the peer reads EOF after what was
    /// written (over TLS, after a `close_notify`).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown(Shutdown::Write),
            Transport::Tls(t) => {
                if !t.plain_peer {
                    t.session.send_close_notify();
                    let _ = t.push_records();
                }
                t.sock.shutdown(Shutdown::Write)
            }
        }
    }

    /// Ends both directions at once.
    pub(crate) fn shutdown(&mut self) {
        let _ = self.socket().shutdown(Shutdown::Both);
    }

    /// The readiness to wait for, given whether bytes wait to be written.
    pub(crate) fn interest(&self, have_output: bool) -> Interest {
        if have_output || self.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &mut t.sock,
        }
    }

    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(self.socket(), token, interest)
    }

    pub(crate) fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(self.socket(), token, interest)
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(self.socket());
    }

    /// How a non-blocking connect went: `Ok(true)` connected (over TLS:
    /// the TLS handshake done too), `Ok(false)` still in progress, `Err`
    /// failed (over TLS: with the reason in one line).
    pub(crate) fn connect_result(&mut self) -> io::Result<bool> {
        if !tcp_connected(self.socket())? {
            return Ok(false);
        }
        self.secure()
    }

    /// Drives a TLS handshake as far as the socket allows: `Ok(true)` once
    /// it is done (at once for plain TCP). An acceptor reached by a plain
    /// dask/1 peer fails with a [`Refusal`] to send it in plain.
    pub(crate) fn secure(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.handshake(),
        }
    }

    /// The channel binding of a TLS connection whose handshake is done
    /// (RFC 9266 `tls-exporter`); `None` for plain TCP.
    pub(crate) fn channel_binding(&self) -> Option<[u8; CHANNEL_BINDING_BYTES]> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) if t.plain_peer || t.session.is_handshaking() => None,
            Transport::Tls(t) => t
                .session
                .export_keying_material([0; CHANNEL_BINDING_BYTES], CHANNEL_BINDING_LABEL, None)
                .ok(),
        }
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Plain(s) => s.peer_addr().ok(),
            Transport::Tls(t) => t.sock.peer_addr().ok(),
        }
    }
}

fn tcp_connected(s: &TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(peer) => refuse_self_connect(s.local_addr()?, peer).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// A connect to a local port nobody listens on can meet itself: when
/// the kernel picks that same port as the ephemeral source, TCP's
/// simultaneous open connects the socket to itself. A peer reconnecting
/// to a scheduler that is restarting on an ephemeral port would then hold
/// the port the scheduler wants and read its own hello; it is a failed
/// connect instead, tried again like any other.
pub(crate) fn refuse_self_connect(local: SocketAddr, peer: SocketAddr) -> io::Result<()> {
    if local == peer {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("nothing listens at {peer} (the connection reached itself); try again once it listens"),
        ));
    }
    Ok(())
}

impl TlsStream {
    fn is_acceptor(&self) -> bool {
        matches!(self.session, rustls::Connection::Server(_))
    }

    /// Looks at the peer's first byte (without taking it): a TLS peer's
    /// first record is a handshake (or, from an acceptor, an alert).
    fn check_first_byte(&mut self) -> io::Result<()> {
        if self.first_byte_seen {
            return Ok(());
        }
        let mut first = [0u8; 1];
        let n = self.sock.peek(&mut first)?;
        if n == 0 {
            return Ok(()); // EOF: read_tls will say so
        }
        self.first_byte_seen = true;
        let tls = first[0] == TLS_HANDSHAKE_RECORD
            || (!self.is_acceptor() && first[0] == TLS_ALERT_RECORD);
        if tls {
            return Ok(());
        }
        if self.is_acceptor() {
            self.plain_peer = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Refusal(WireError::new(
                    ErrorCode::BadHandshake,
                    "this address speaks TLS and the connection is plain: connect with \
                     tls://HOST:PORT (and the cluster's CA, --tls-ca-file)",
                )),
            ));
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TLS: the peer answered in plain bytes, not TLS: it is probably a plain \
             dask/1 address (connect with tcp://HOST:PORT)",
        ))
    }

    /// Reads TLS records from the socket into the session and processes
    /// them; `Ok(0)` at EOF.
    fn read_records(&mut self) -> io::Result<usize> {
        self.check_first_byte()?;
        let n = loop {
            match self.session.read_tls(&mut self.sock) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if let Err(e) = self.session.process_new_packets() {
            // Tell the peer why (an alert), then fail.
            let _ = self.push_records();
            return Err(tls_failure(&e));
        }
        Ok(n)
    }

    fn handshake(&mut self) -> io::Result<bool> {
        if self.plain_peer {
            return Ok(false);
        }
        loop {
            match self.push_records() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.session.is_handshaking() {
                return Ok(true);
            }
            match self.read_records() {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "TLS: the peer closed the connection during the TLS handshake \
                         (it may require a certificate signed by its CA: --tls-cert, \
                         --tls-key)",
                    ))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.plain_peer {
            return self.sock.read(buf);
        }
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the frame layer knows
                // whether that cut a frame.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.read_records()? == 0 {
                // EOF: whatever plaintext the last records held was read above.
                return match self.session.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(_) => Ok(0),
                };
            }
            // Records read may ask for an answer (a key update).
            if self.session.wants_write() {
                let _ = self.push_records();
            }
        }
    }

    fn write(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        if self.plain_peer {
            return self.sock.write(plaintext);
        }
        loop {
            let taken = self.session.writer().write(plaintext)?;
            if taken > 0 {
                match self.push_records() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                return Ok(taken);
            }
            // Full: room comes from the socket taking records; during the
            // handshake it comes once the handshake is done (the reactor
            // flushes again after reads).
            if !self.session.wants_write() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.push_records()?;
        }
    }

    /// Writes the session's records to the socket until none is left
    /// (`WouldBlock` when the socket is full).
    fn push_records(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    /// A socket bound to 127.0.0.1:P that connects to 127.0.0.1:P: the
    /// simultaneous open with itself that a reconnect can meet by chance.
    fn self_connected() -> std::net::TcpStream {
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: plain socket calls on a descriptor this function owns,
        // with addresses of the size given; the descriptor is handed to
        // the TcpStream, which closes it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let at = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
            assert_eq!(
                libc::bind(fd, at, len),
                0,
                "bind: {}",
                io::Error::last_os_error()
            );
            let mut got = len;
            assert_eq!(libc::getsockname(fd, at, &mut got), 0);
            let connected = libc::connect(fd, at, len);
            assert_eq!(connected, 0, "connect: {}", io::Error::last_os_error());
            std::net::TcpStream::from_raw_fd(fd)
        }
    }

    #[test]
    fn a_connection_that_reached_itself_is_a_failed_connect() {
        let stream = TcpStream::from_std(self_connected());
        let error = tcp_connected(&stream).expect_err("a self-connect is refused");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert!(error.to_string().contains("reached itself"), "{error}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let to = listener.local_addr().expect("its address");
        let stream = TcpStream::from_std(std::net::TcpStream::connect(to).expect("a connect"));
        assert!(tcp_connected(&stream).expect("an ordinary connection"));
    }
}
