//! How a connection's bytes reach its socket: plain TCP today.
//!
//! TLS (rustls) slots in as a second variant: `read` becomes `read_tls`
//! from the socket, `process_new_packets` and a read of the plaintext;
//! `write_vectored` goes into the session's writer, and `flush` pushes the
//! records out with `write_tls` (`Ok(false)` while some wait); `interest`
//! follows `wants_read` / `wants_write`; `shutdown_write` sends
//! `close_notify` first. Nothing above [`Conn`](crate::Conn) changes: the
//! state machines never know whether a connection is encrypted.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// The byte pipe under one connection.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Plain TCP: bytes go to the socket as they are.
    Plain(TcpStream),
}

impl Transport {
    /// Reads bytes of the stream into `buf` (`Ok(0)`: the peer closed).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
        }
    }

    /// Writes some of `bufs`, in order; how many bytes were taken.
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
        }
    }

    /// Pushes out what the transport itself holds (TLS records); whether
    /// nothing is left. Plain TCP holds nothing.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
        }
    }

    /// Ends our direction of the stream; the peer reads EOF after what was
    /// written.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown(Shutdown::Write),
        }
    }

    /// Ends both directions at once.
    pub(crate) fn shutdown(&mut self) {
        match self {
            Transport::Plain(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    /// The readiness to wait for, given whether bytes wait to be written.
    pub(crate) fn interest(&self, have_output: bool) -> Interest {
        match self {
            Transport::Plain(_) if have_output => Interest::READABLE | Interest::WRITABLE,
            Transport::Plain(_) => Interest::READABLE,
        }
    }

    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Plain(s) => registry.register(s, token, interest),
        }
    }

    pub(crate) fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Plain(s) => registry.reregister(s, token, interest),
        }
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        match self {
            Transport::Plain(s) => {
                let _ = registry.deregister(s);
            }
        }
    }

    /// How a non-blocking connect went: `Ok(true)` connected, `Ok(false)`
    /// still in progress, `Err` failed.
    pub(crate) fn connect_result(&self) -> io::Result<bool> {
        match self {
            Transport::Plain(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Plain(s) => s.peer_addr().ok(),
        }
    }
}
