//! A non-blocking framed connection driven by a mio event loop.

use std::io::{self, Read, Write};

use dask_core::frame::{FrameDecoder, FrameEncoder};
use dask_core::{Message, WireError};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// Bytes read from a socket per `read` call.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Most bytes queued for a peer that does not read; past it the
/// connection is failed rather than the process running out of memory.
pub const SEND_QUEUE_BYTES_MAX: usize = 2 * 1024 * 1024 * 1024;

/// What a read pass found.
#[derive(Debug, PartialEq)]
pub enum ReadStatus {
    /// The socket is drained for now.
    Open,
    /// The peer closed its side (cleanly, between frames).
    Closed,
    /// The peer closed in the middle of a frame.
    ClosedMidFrame,
}

/// One TCP connection speaking dask/1 frames.
///
/// Usage per readiness event: [`Conn::read`] (which hands complete frames
/// to a callback), then queue replies with [`Conn::send`], then
/// [`Conn::flush`]; re-register with [`Conn::interest`] when it changes.
pub struct Conn {
    stream: TcpStream,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    out: Vec<u8>,
    out_pos: usize,
    registered_writable: bool,
    /// Close once the send queue is written.
    closing: bool,
}

impl Conn {
    /// Wraps a connected (or connecting) stream.
    pub fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            decoder: FrameDecoder::default(),
            encoder: FrameEncoder::default(),
            out: Vec::new(),
            out_pos: 0,
            registered_writable: false,
            closing: false,
        }
    }

    /// The underlying stream, to register with a poll.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The peer's address, if connected.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// Registers with `registry` for reading (and writing if bytes wait).
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.registered_writable = self.wants_write();
        let interest = self.interest();
        registry.register(&mut self.stream, token, interest)
    }

    /// Re-registers when whether it wants to write changed.
    pub fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wants = self.wants_write();
        if wants != self.registered_writable {
            self.registered_writable = wants;
            let interest = self.interest();
            registry.reregister(&mut self.stream, token, interest)?;
        }
        Ok(())
    }

    /// The interest matching the current send queue.
    pub fn interest(&self) -> Interest {
        if self.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Whether queued bytes wait for the socket.
    pub fn wants_write(&self) -> bool {
        self.out_pos < self.out.len() || !self.encoder.is_empty()
    }

    /// Reads until the socket would block, calling `on_frame` with the
    /// messages of each complete frame. A decoding error is returned after
    /// the frames before it were delivered; the caller reports it and closes.
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        on_frame: &mut dyn FnMut(Vec<Message>),
    ) -> Result<ReadStatus, ConnError> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    return Ok(if self.decoder.is_mid_frame() {
                        ReadStatus::ClosedMidFrame
                    } else {
                        ReadStatus::Closed
                    })
                }
                Ok(n) => {
                    self.decoder.push(&scratch[..n]);
                    while let Some(frame) = self.decoder.poll().map_err(ConnError::Wire)? {
                        on_frame(frame);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadStatus::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// Queues a message in the open batch. Messages too large for a frame
    /// are refused (the caller reports value-too-large instead).
    pub fn send(&mut self, message: &Message) -> Result<(), WireError> {
        self.encoder.push(message)
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes queued frames until done or the socket would block. Returns
    /// whether everything was written.
    pub fn flush(&mut self) -> Result<bool, ConnError> {
        if !self.encoder.is_empty() {
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
            self.encoder.drain_into(&mut self.out);
        }
        if self.queued_bytes() > SEND_QUEUE_BYTES_MAX {
            return Err(ConnError::Io(io::Error::other(
                "peer does not read: send queue over its limit",
            )));
        }
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(ConnError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > 4 << 20 {
            self.out.shrink_to(64 * 1024);
        }
        Ok(true)
    }

    /// Marks the connection to be closed once its queue is written.
    pub fn close_after_flush(&mut self) {
        self.closing = true;
    }

    /// Whether [`Conn::close_after_flush`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Shuts the socket down in both directions.
    pub fn shutdown(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Why a connection failed.
#[derive(Debug)]
pub enum ConnError {
    /// The socket failed.
    Io(io::Error),
    /// The peer sent bytes that break the protocol; report and close.
    Wire(WireError),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "i/o error: {e}"),
            ConnError::Wire(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl std::error::Error for ConnError {}
