//! A blocking framed connection for tools, tests and simple clients that
//! need no event loop.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dask_core::auth::{ConnectorAuth, Credentials};
use dask_core::frame::{encode_frame, FrameDecoder};
use dask_core::handshake::{self, Negotiated};
use dask_core::messages::{Hello, Role};
use dask_core::{Message, WireError};

use crate::TlsConfig;

/// A blocking dask/1 connection, over plain TCP or TLS.
pub struct BlockingConn {
    stream: Stream,
    decoder: FrameDecoder,
    pending: std::collections::VecDeque<Message>,
    populator: crate::pages::Populator,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.get_ref(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf).map_err(explain_io),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes),
            Stream::Tls(t) => t
                .write_all(bytes)
                .and_then(|_| t.flush())
                .map_err(explain_io),
        }
    }
}

/// rustls reports its errors inside `io::Error`s; say them in a line.
fn explain_io(e: io::Error) -> io::Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => io::Error::new(e.kind(), crate::tls::explain(tls)),
        None => e,
    }
}

fn wire_err(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl BlockingConn {
    /// Connects within `timeout`, without a handshake.
    pub fn connect_raw(address: &str, timeout: Duration) -> io::Result<BlockingConn> {
        let addr = crate::parse_address(address)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        crate::transport::refuse_self_connect(stream.local_addr()?, stream.peer_addr()?)?;
        stream.set_nodelay(true)?;
        Ok(BlockingConn::from_stream(stream))
    }

    /// Connects to `address` (`tcp://` or `tls://`) within `timeout`,
    /// without a dask/1 handshake; over TLS the TLS handshake is done (a
    /// refused certificate fails here, in one line).
    pub fn connect_tls_raw(
        address: &str,
        tls: &TlsConfig,
        timeout: Duration,
    ) -> io::Result<BlockingConn> {
        let endpoint = crate::parse_endpoint(address)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut stream = TcpStream::connect_timeout(&endpoint.addr, timeout)?;
        crate::transport::refuse_self_connect(stream.local_addr()?, stream.peer_addr()?)?;
        stream.set_nodelay(true)?;
        if !endpoint.tls {
            return Ok(BlockingConn::from_stream(stream));
        }
        let config = tls.connector().cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a tls:// address needs the cluster's CA certificate (--tls-ca-file)",
            )
        })?;
        let name = rustls::pki_types::ServerName::IpAddress(endpoint.addr.ip().into());
        let mut session = rustls::ClientConnection::new(config, name)
            .map_err(|e| io::Error::other(crate::tls::explain(&e)))?;
        stream.set_read_timeout(Some(timeout))?;
        while session.is_handshaking() {
            session.complete_io(&mut stream).map_err(explain_io)?;
        }
        // TLS 1.3: the acceptor checks our certificate after we are done;
        // a refusal comes as an alert with its first bytes. Its verdict is
        // read with the first reply.
        Ok(BlockingConn {
            stream: Stream::Tls(Box::new(rustls::StreamOwned::new(session, stream))),
            decoder: FrameDecoder::default(),
            pending: Default::default(),
            populator: Default::default(),
        })
    }

    /// Wraps an accepted or connected stream.
    pub fn from_stream(stream: TcpStream) -> BlockingConn {
        BlockingConn {
            stream: Stream::Plain(stream),
            decoder: FrameDecoder::default(),
            pending: Default::default(),
            populator: Default::default(),
        }
    }

    /// The TLS channel binding (RFC 9266 `tls-exporter`); `None` on plain TCP.
    pub fn channel_binding(&self) -> Option<[u8; dask_core::auth::CHANNEL_BINDING_BYTES]> {
        match &self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(t) => t
                .conn
                .export_keying_material(
                    [0; dask_core::auth::CHANNEL_BINDING_BYTES],
                    dask_core::auth::CHANNEL_BINDING_LABEL,
                    None,
                )
                .ok(),
        }
    }

    /// Connects and completes the handshake as `role`, expecting `peer_role`.
    pub fn connect(
        address: &str,
        role: Role,
        peer_role: Role,
        name: Option<String>,
        timeout: Duration,
    ) -> io::Result<(BlockingConn, Negotiated)> {
        Self::connect_proving(address, role, peer_role, name, timeout, None)
    }

    /// As [`BlockingConn::connect`] (plain TCP), proving `credentials`'
    /// secret of `role` when given (dask/1.1 authentication: the acceptor
    /// must prove it back).
    pub fn connect_proving(
        address: &str,
        role: Role,
        peer_role: Role,
        name: Option<String>,
        timeout: Duration,
        credentials: Option<&Credentials>,
    ) -> io::Result<(BlockingConn, Negotiated)> {
        let hello = handshake::offer(role, name);
        Self::connect_offering(address, hello, peer_role, timeout, credentials)
    }

    /// As [`BlockingConn::connect_proving`], offering `hello` (tests: an
    /// older peer's version or features).
    pub fn connect_offering(
        address: &str,
        mut hello: Hello,
        peer_role: Role,
        timeout: Duration,
        credentials: Option<&Credentials>,
    ) -> io::Result<(BlockingConn, Negotiated)> {
        let role = hello.role;
        let mut conn = Self::connect_raw(address, timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        let auth = credentials
            .and_then(|c| c.secret_for(role))
            .map(|secret| ConnectorAuth::new(role, secret.clone(), crate::credentials::nonce()));
        if let Some(auth) = &auth {
            hello.auth = Some(auth.offer());
            hello.tls = Some(false);
        }
        conn.send(&[Message::from(hello)])?;
        let reply = conn.recv()?;
        let negotiated = match reply {
            Message::Hello(h) => {
                let negotiated = handshake::check_reply(&h, peer_role).map_err(wire_err)?;
                if let Some(auth) = &auth {
                    let proof = auth
                        .answer(&h, None)
                        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.message))?;
                    conn.send(&[Message::AuthProof(proof)])?;
                }
                negotiated
            }
            Message::ErrorReport(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("handshake refused ({}): {}", e.code, e.message),
                ))
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected hello, got {}", other.op()),
                ))
            }
        };
        Ok((conn, negotiated))
    }

    /// Sets the read timeout (`None` blocks forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.socket().set_read_timeout(timeout)
    }

    /// Sends one frame holding `messages`.
    pub fn send(&mut self, messages: &[Message]) -> io::Result<()> {
        let bytes = encode_frame(messages).map_err(wire_err)?;
        self.stream.write_all(&bytes)
    }

    /// Sends raw bytes (for tests of bad input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next message, reading frames as needed.
    pub fn recv(&mut self) -> io::Result<Message> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(m);
            }
            let frame = self.recv_frame()?;
            self.pending.extend(frame);
        }
    }

    /// The messages of the next frame (those of a frame [`BlockingConn::recv`]
    /// began to hand out first): for tests of how a peer batches messages.
    pub fn recv_frame(&mut self) -> io::Result<Vec<Message>> {
        if !self.pending.is_empty() {
            return Ok(self.pending.drain(..).collect());
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(frame) = self.decoder.poll().map_err(wire_err)? {
                return Ok(frame);
            }
            // A large frame is read straight into its own buffer, a large
            // value's part into the value's.
            let (read, direct) = match self.decoder.frame_room() {
                Some(room) => {
                    self.populator.before_read(room);
                    (self.stream.read(room), true)
                }
                None => (self.stream.read(&mut buf), false),
            };
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if direct {
                self.decoder.filled(n);
            } else {
                self.decoder.push(&buf[..n]);
            }
        }
    }

    /// The next message for which `keep` is true; others are dropped.
    pub fn recv_until(&mut self, keep: &mut dyn FnMut(&Message) -> bool) -> io::Result<Message> {
        loop {
            let m = self.recv()?;
            if keep(&m) {
                return Ok(m);
            }
        }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        self.stream.socket()
    }
}
