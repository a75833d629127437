//! A blocking framed connection for tools, tests and simple clients that
//! need no event loop.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dask_core::frame::{encode_frame, FrameDecoder};
use dask_core::handshake::{self, Negotiated};
use dask_core::messages::Role;
use dask_core::{Message, WireError};

/// A blocking dask/1 connection.
pub struct BlockingConn {
    stream: TcpStream,
    decoder: FrameDecoder,
    pending: std::collections::VecDeque<Message>,
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
        stream.set_nodelay(true)?;
        Ok(BlockingConn::from_stream(stream))
    }

    /// Wraps an accepted or connected stream.
    pub fn from_stream(stream: TcpStream) -> BlockingConn {
        BlockingConn {
            stream,
            decoder: FrameDecoder::default(),
            pending: Default::default(),
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
        let mut conn = Self::connect_raw(address, timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.send(&[Message::Hello(handshake::offer(role, name))])?;
        let reply = conn.recv()?;
        let negotiated = match reply {
            Message::Hello(h) => handshake::check_reply(&h, peer_role).map_err(wire_err)?,
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
        self.stream.set_read_timeout(timeout)
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
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(m);
            }
            if let Some(frame) = self.decoder.poll().map_err(wire_err)? {
                self.pending.extend(frame);
                continue;
            }
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.decoder.push(&buf[..n]);
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
        &self.stream
    }
}
