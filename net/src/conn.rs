//! One non-blocking framed connection: a [`Transport`] under a frame
//! decoder and encoder, the hello gate and the send queue. The
//! [`Reactor`](crate::Reactor) owns these; the `pub` methods are for the
//! worker's loop until it moves onto the reactor.

use std::io::{self, IoSlice};
use std::sync::Arc;

use dask_core::foreign;
use dask_core::frame::{FrameBuffers, FrameDecoder, FrameEncoder, LENGTH_PREFIX_BYTES};
use dask_core::{ErrorCode, Message, WireError};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::pages::Populator;
use crate::transport::{Refusal, Transport};

/// Bytes read from a socket per `read` call.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Most bytes queued for a peer that does not read; past it the
/// connection is failed rather than the process running out of memory.
pub const SEND_QUEUE_BYTES_MAX: usize = 2 * 1024 * 1024 * 1024;

/// Chunks handed to one vectored write (a frame's headers, its messages
/// and its large values are separate chunks).
const WRITE_SLICES_MAX: usize = 64;

/// Largest frame an acceptor takes from a connector before its `hello`
/// (spec/PROTOCOL.md "Limits": `hello_frame_bytes_max`). A hello is a few
/// hundred bytes; messages pipelined after it go in later frames.
pub const HELLO_FRAME_BYTES_MAX: usize = 64 * 1024;

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

/// One connection speaking dask/1 frames.
///
/// Usage per readiness event: [`Conn::read`] (which hands complete frames
/// to a callback), then queue replies with [`Conn::send`], then
/// [`Conn::flush`]; re-register with [`Conn::interest`] when it changes.
/// Event loops use a [`Reactor`](crate::Reactor), which does all this.
#[derive(Debug)]
pub struct Conn {
    transport: Transport,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    registered_writable: bool,
    /// Close once the send queue is written.
    closing: bool,
    /// Set by [`Conn::limit_until_hello`] until the connector's handshake
    /// is over: a frame holding a `hello` without `auth`, or one holding
    /// its `auth-proof` (spec: "Authentication").
    before_hello: Option<HelloGate>,
    /// [`Conn::read`] stopped at a handshake frame with input maybe left.
    paused: bool,
    /// See [`Conn::take_yielded`].
    yielded: bool,
    read_bytes_per_call: usize,
    /// Past this many bytes queued, [`Conn::flush`] fails.
    send_queue_bytes_max: usize,
    /// What a Python Dask connector is told (see [`Conn::limit_until_hello`]).
    python_dask_refusal: String,
    /// Whether this side's hello, and the peer's, listed the feature
    /// `value-parts`, once each has gone by: with both, values too large
    /// for a frame are sent in parts.
    value_parts: (Option<bool>, Option<bool>),
    /// Maps the pages of large frames and values ahead of the reads.
    populator: Populator,
    /// Bytes written to the socket so far.
    written: u64,
}

/// Where the reads of a connection still in its handshake stand: reads
/// stop at each frame's end, so the decoder never holds more than the
/// frame being read, and a length prefix over the limit is refused
/// before its payload is read.
#[derive(Debug)]
struct HelloGate {
    frame_bytes_max: usize,
    prefix: [u8; LENGTH_PREFIX_BYTES],
    prefix_len: usize,
    /// Payload bytes of the current frame still to read (after its prefix).
    payload_left: usize,
    /// The refusal, repeated if the caller reads again.
    failed: Option<WireError>,
    /// Whether a frame has begun after the first (only the connection's
    /// first bytes can be another protocol's).
    past_first_frame: bool,
    /// The first bytes, kept while an over-long first prefix may be Python
    /// Dask's framing (dask_core::foreign), with the refusal it gets if not.
    sniff: Option<Sniff>,
}

/// An over-long first prefix being looked at: the bytes so far.
#[derive(Debug)]
struct Sniff {
    bytes: [u8; foreign::RECOGNISE_BYTES],
    len: usize,
    too_large: WireError,
}

impl HelloGate {
    fn new(frame_bytes_max: usize) -> HelloGate {
        HelloGate {
            frame_bytes_max,
            prefix: [0; LENGTH_PREFIX_BYTES],
            prefix_len: 0,
            payload_left: 0,
            failed: None,
            past_first_frame: false,
            sniff: None,
        }
    }

    /// Whether the bytes read are kept here to decide what the peer is,
    /// not for the decoder (every outcome is a refusal).
    fn sniffing(&self) -> bool {
        self.sniff.is_some()
    }

    fn fail(&mut self, e: WireError) -> Result<(), WireError> {
        self.failed = Some(e.clone());
        Err(e)
    }
}

impl HelloGate {
    /// How many bytes the next read may take without crossing a frame end.
    fn next_read_len(&self) -> usize {
        if let Some(sniff) = &self.sniff {
            return foreign::RECOGNISE_BYTES - sniff.len;
        }
        if self.prefix_len < LENGTH_PREFIX_BYTES {
            LENGTH_PREFIX_BYTES - self.prefix_len
        } else {
            self.payload_left
        }
    }

    /// Follows `bytes` (at most [`HelloGate::next_read_len`] of them).
    fn advance(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some(sniff) = &mut self.sniff {
            sniff.bytes[sniff.len..sniff.len + bytes.len()].copy_from_slice(bytes);
            sniff.len += bytes.len();
            if sniff.len < foreign::RECOGNISE_BYTES {
                return Ok(());
            }
            let e = if foreign::is_python_dask(&sniff.bytes) {
                foreign::python_dask_peer_error()
            } else {
                sniff.too_large.clone()
            };
            return self.fail(e);
        }
        if self.prefix_len < LENGTH_PREFIX_BYTES {
            self.prefix[self.prefix_len..self.prefix_len + bytes.len()].copy_from_slice(bytes);
            self.prefix_len += bytes.len();
            if self.prefix_len == LENGTH_PREFIX_BYTES {
                let len = u32::from_be_bytes(self.prefix) as usize;
                if dask_core::foreign::is_tls_handshake(&self.prefix) {
                    let e = dask_core::foreign::tls_peer_error();
                    self.failed = Some(e.clone());
                    return Err(e);
                }
                if len > self.frame_bytes_max {
                    let e = WireError::new(
                        ErrorCode::FrameTooLarge,
                        format!(
                            "frame of {len} bytes before the hello is over the limit of {} bytes",
                            self.frame_bytes_max
                        ),
                    );
                    // Python Dask's first length is little-endian and
                    // small: its high bytes come second here. Look at a
                    // few more bytes before saying which refusal it is.
                    if !self.past_first_frame && self.prefix[2..] == [0, 0] {
                        let mut bytes = [0; foreign::RECOGNISE_BYTES];
                        bytes[..LENGTH_PREFIX_BYTES].copy_from_slice(&self.prefix);
                        self.sniff = Some(Sniff {
                            bytes,
                            len: LENGTH_PREFIX_BYTES,
                            too_large: e,
                        });
                        return Ok(());
                    }
                    return self.fail(e);
                }
                self.payload_left = len;
            }
        } else {
            self.payload_left -= bytes.len();
        }
        if self.prefix_len == LENGTH_PREFIX_BYTES && self.payload_left == 0 {
            self.prefix_len = 0;
            self.past_first_frame = true;
        }
        Ok(())
    }
}

impl Conn {
    /// Wraps a connected (or connecting) stream.
    pub fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn::over(Transport::Plain(stream))
    }

    pub(crate) fn over(transport: Transport) -> Conn {
        Conn {
            transport,
            decoder: FrameDecoder::default(),
            encoder: FrameEncoder::default(),
            registered_writable: false,
            closing: false,
            before_hello: None,
            paused: false,
            yielded: false,
            read_bytes_per_call: usize::MAX,
            send_queue_bytes_max: SEND_QUEUE_BYTES_MAX,
            python_dask_refusal: String::new(),
            value_parts: (None, None),
            populator: Populator::default(),
            written: 0,
        }
    }

    /// Keeps the frames this side sends within `frame_bytes_max` (less
    /// than the protocol's, for tests: values then go in parts sooner).
    /// Call it before anything is sent.
    pub(crate) fn set_frame_bytes_max(&mut self, frame_bytes_max: usize) {
        self.encoder = FrameEncoder::new(frame_bytes_max);
    }

    /// Notes whether a hello (this side's, or the peer's) lists the
    /// feature `value-parts`; with both, the encoder sends values too large
    /// for a frame in parts.
    fn saw_hello(&mut self, message: &Message, ours: bool) {
        let Message::Hello(hello) = message else {
            return;
        };
        let lists = dask_core::handshake::lists_value_parts(&hello.features);
        if ours {
            self.value_parts.0 = Some(lists);
        } else {
            self.value_parts.1 = Some(lists);
        }
        if let (Some(a), Some(b)) = self.value_parts {
            self.encoder.send_value_parts(a && b);
        }
    }

    /// Takes large frames' buffers from `buffers` and gives them back
    /// there (see [`FrameBuffers`]).
    pub(crate) fn use_frame_buffers(&mut self, buffers: Arc<FrameBuffers>) {
        self.decoder.use_buffers(buffers);
    }

    /// Sets the bound on queued bytes past which [`Conn::flush`] fails.
    pub(crate) fn set_send_queue_bytes_max(&mut self, bytes: usize) {
        self.send_queue_bytes_max = bytes;
    }

    /// For an acceptor: until the connector's handshake is over (a frame
    /// whose first message is a `hello` without `auth`, or, after a
    /// `hello` with `auth`, a frame whose first message is `auth-proof`),
    /// refuse frames over `frame_bytes_max` (1002, without reading their
    /// payload) and read no further than the end of each frame: nothing a
    /// connector pipelines before its proof can take more. [`Conn::read`]
    /// returns right after each of those frames, even if more bytes wait
    /// ([`Conn::take_paused`]): the caller acts on it (the handshake may
    /// fail) and then reads again.
    ///
    /// A connector whose first bytes are Python Dask's framing is refused
    /// with [`dask_core::foreign::python_dask_peer_error`], and is sent
    /// first, in its own framing, what makes it fail with
    /// `python_dask_refusal` (say what this endpoint is).
    pub fn limit_until_hello(&mut self, frame_bytes_max: usize, python_dask_refusal: &str) {
        self.before_hello = Some(HelloGate::new(frame_bytes_max));
        self.python_dask_refusal = python_dask_refusal.to_owned();
    }

    /// Whether [`Conn::limit_until_hello`] is in force: the connector's
    /// handshake is not over.
    pub fn awaiting_hello(&self) -> bool {
        self.before_hello.is_some()
    }

    /// Whether the last [`Conn::read`] stopped after a handshake frame
    /// (input may wait: read again once it is acted on); clears it.
    pub fn take_paused(&mut self) -> bool {
        std::mem::take(&mut self.paused)
    }

    /// Once a [`Conn::read`] has read `bytes`, it returns at the end of
    /// the frames it has, even if more bytes wait ([`Conn::take_yielded`]):
    /// the caller reads again later (a wakeup is not spent on one peer).
    pub fn set_read_bytes_per_call(&mut self, bytes: usize) {
        self.read_bytes_per_call = bytes.max(1);
    }

    /// Whether the last [`Conn::read`] stopped at its budget (input may
    /// wait: read again); clears it.
    pub fn take_yielded(&mut self) -> bool {
        std::mem::take(&mut self.yielded)
    }

    /// Bytes received and not yet handed out as frames (an unfinished frame).
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Forgets the bytes of an unfinished frame (for a connection being
    /// closed: what it still sends is discarded unread).
    pub fn discard_buffered(&mut self) {
        if self.decoder.buffered() > 0 {
            self.decoder = FrameDecoder::default();
        }
    }

    /// The underlying stream, for the worker's loop until it moves onto
    /// the [`Reactor`](crate::Reactor) (which never hands it out).
    #[doc(hidden)]
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        self.transport.socket()
    }

    /// The peer's address, if connected.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.transport.peer_addr()
    }

    /// Registers with `registry` for reading (and writing if bytes wait).
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.registered_writable = self.wants_write();
        let interest = self.interest();
        self.transport.register(registry, token, interest)
    }

    /// Registers for reading and writing: a connect in progress completes
    /// with a writable event.
    pub(crate) fn register_connecting(
        &mut self,
        registry: &Registry,
        token: Token,
    ) -> io::Result<()> {
        self.registered_writable = true;
        self.transport
            .register(registry, token, Interest::READABLE | Interest::WRITABLE)
    }

    /// Re-registers when whether it wants to write changed.
    pub fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wants = self.wants_write();
        if wants != self.registered_writable {
            self.registered_writable = wants;
            let interest = self.interest();
            self.transport.reregister(registry, token, interest)?;
        }
        Ok(())
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        self.transport.deregister(registry);
    }

    /// How a non-blocking connect went: `Ok(true)` connected, `Ok(false)`
    /// still in progress.
    pub(crate) fn connect_result(&mut self) -> io::Result<bool> {
        self.transport.connect_result()
    }

    /// Drives an accepted TLS connection's handshake: `Ok(true)` once done
    /// (at once for plain TCP). A plain dask/1 peer at a TLS address is a
    /// [`ConnError::Wire`] to answer in plain.
    pub(crate) fn secure(&mut self) -> Result<bool, ConnError> {
        self.transport.secure().map_err(conn_error)
    }

    /// The TLS channel binding, once the TLS handshake is done; `None`
    /// on plain TCP.
    pub fn channel_binding(&self) -> Option<[u8; dask_core::auth::CHANNEL_BINDING_BYTES]> {
        self.transport.channel_binding()
    }

    /// The interest matching the current send queue.
    pub fn interest(&self) -> Interest {
        self.transport.interest(self.wants_write())
    }

    /// Whether queued bytes wait for the socket.
    pub fn wants_write(&self) -> bool {
        !self.encoder.is_empty() || self.transport.wants_write()
    }

    /// Reads until the socket would block, calling `on_frame` with the
    /// messages of each complete frame. A decoding error is returned after
    /// the frames before it were delivered; the caller reports it and closes.
    /// Under [`Conn::limit_until_hello`] it also returns right after the
    /// frame holding the `hello`.
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        on_frame: &mut dyn FnMut(Vec<Message>),
    ) -> Result<ReadStatus, ConnError> {
        let mut read_total = 0usize;
        loop {
            if read_total >= self.read_bytes_per_call {
                // Every whole frame read was handed out above.
                self.yielded = true;
                return Ok(ReadStatus::Open);
            }
            let limit = match &self.before_hello {
                Some(HelloGate {
                    failed: Some(e), ..
                }) => return Err(ConnError::Wire(e.clone())),
                Some(gate) => Some(gate.next_read_len()),
                None => None,
            };
            // A large frame is read straight into its own buffer, a large
            // value's part into the value's; other bytes go through the
            // loop's scratch buffer.
            let mapped = self.decoder.frame_room_is_mapped();
            let read = match self.decoder.frame_room() {
                Some(room) => {
                    let want = limit.map_or(room.len(), |l| l.min(room.len()));
                    if !mapped {
                        self.populator.before_read(&mut room[..want]);
                    }
                    match self.transport.read(&mut room[..want]) {
                        Ok(n) => {
                            let sniffing = advance_gate(
                                &mut self.before_hello,
                                &room[..n],
                                &mut self.encoder,
                                &self.python_dask_refusal,
                            )?;
                            Ok((n, true, sniffing))
                        }
                        Err(e) => Err(e),
                    }
                }
                None => {
                    let want = limit.map_or(scratch.len(), |l| l.min(scratch.len()));
                    match self.transport.read(&mut scratch[..want]) {
                        Ok(n) => {
                            let sniffing = advance_gate(
                                &mut self.before_hello,
                                &scratch[..n],
                                &mut self.encoder,
                                &self.python_dask_refusal,
                            )?;
                            Ok((n, false, sniffing))
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match read {
                Ok((0, _, _)) => {
                    return Ok(if self.decoder.is_mid_frame() {
                        ReadStatus::ClosedMidFrame
                    } else {
                        ReadStatus::Closed
                    })
                }
                // Kept by the hello gate to tell what the peer speaks.
                Ok((_, _, true)) => continue,
                Ok((n, direct, false)) => {
                    read_total += n;
                    if direct {
                        self.decoder.filled(n);
                    } else {
                        self.decoder.push(&scratch[..n]);
                    }
                    while let Some(frame) = self.decoder.poll().map_err(ConnError::Wire)? {
                        if let (Some(first), None) = (frame.first(), self.value_parts.1) {
                            self.saw_hello(first, false);
                        }
                        let step = match frame.first() {
                            Some(Message::Hello(h)) => Some(h.auth.is_none()),
                            Some(Message::AuthProof(_)) => Some(true),
                            _ => None,
                        };
                        on_frame(frame);
                        if let (Some(over), Some(_)) = (step, &self.before_hello) {
                            if over {
                                self.before_hello = None;
                            }
                            self.paused = true;
                            return Ok(ReadStatus::Open);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadStatus::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(conn_error(e)),
            }
        }
    }

    /// Queues a message in the open batch. Messages too large for a frame
    /// are refused (the caller reports value-too-large instead).
    pub fn send(&mut self, message: &Message) -> Result<(), WireError> {
        if self.value_parts.0.is_none() {
            self.saw_hello(message, true);
        }
        self.encoder.push(message)
    }

    /// Closes the open batch: what is sent next goes in a new frame (e.g.
    /// a connector's `hello` alone in its first frame, which must stay
    /// under `hello_frame_bytes_max`, before pipelined requests).
    pub fn end_frame(&mut self) {
        self.encoder.finish();
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.encoder.finished_bytes()
    }

    /// Bytes written to the socket so far (progress, for the write
    /// timeout).
    pub(crate) fn written_bytes(&self) -> u64 {
        self.written
    }

    /// Writes queued frames until done or the socket would block, with
    /// vectored writes: large values go from where they are kept, never
    /// copied into a send buffer. Returns whether everything was written.
    pub fn flush(&mut self) -> Result<bool, ConnError> {
        self.encoder.finish();
        if self.queued_bytes() > self.send_queue_bytes_max {
            return Err(ConnError::Io(io::Error::other(
                "peer does not read: send queue over its limit",
            )));
        }
        while self.encoder.finished_bytes() > 0 {
            let written = {
                let mut chunks = self.encoder.chunks();
                let first = chunks.next().unwrap_or_default();
                match chunks.next() {
                    // Frames of small messages: one chunk.
                    None => self.transport.write_vectored(&[IoSlice::new(first)]),
                    Some(second) => {
                        let mut slices = [IoSlice::new(&[]); WRITE_SLICES_MAX];
                        slices[0] = IoSlice::new(first);
                        slices[1] = IoSlice::new(second);
                        let mut count = 2;
                        for (slot, chunk) in slices[2..].iter_mut().zip(chunks) {
                            *slot = IoSlice::new(chunk);
                            count += 1;
                        }
                        self.transport.write_vectored(&slices[..count])
                    }
                }
            };
            match written {
                Ok(0) => return Err(ConnError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.encoder.consume(n);
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        self.transport.flush().map_err(ConnError::Io)
    }

    /// Reads and drops what the peer still sends (a connection being
    /// closed); whether it reached EOF (or the socket failed).
    pub(crate) fn discard_input(&mut self, scratch: &mut [u8]) -> bool {
        loop {
            match self.transport.read(scratch) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }

    /// Ends our direction: the peer reads EOF after what was written.
    pub(crate) fn shutdown_write(&mut self) {
        let _ = self.transport.shutdown_write();
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
        self.transport.shutdown();
    }
}

/// An error of the transport as the connection's error: a refusal the
/// peer is to be told about is a protocol error, the rest are the socket's.
fn conn_error(e: io::Error) -> ConnError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Refusal>())
    {
        Some(Refusal(wire)) => ConnError::Wire(wire.clone()),
        None => ConnError::Io(e),
    }
}

/// Follows `bytes` through the hello gate, if one is in force; whether the
/// gate keeps them (to tell whether the peer speaks Python Dask's
/// protocol) rather than the decoder. A Python Dask peer is refused in its
/// own framing first: it cannot read a dask/1 error.
fn advance_gate(
    gate: &mut Option<HelloGate>,
    bytes: &[u8],
    encoder: &mut FrameEncoder,
    python_dask_refusal: &str,
) -> Result<bool, ConnError> {
    let Some(gate) = gate else {
        return Ok(false);
    };
    if let Err(e) = gate.advance(bytes) {
        if foreign::is_python_dask_peer_error(&e) {
            encoder.push_raw(&foreign::python_dask_refusal(python_dask_refusal));
        }
        return Err(ConnError::Wire(e));
    }
    Ok(gate.sniffing())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(frame_bytes_max: usize) -> HelloGate {
        HelloGate::new(frame_bytes_max)
    }

    #[test]
    fn a_python_dask_connector_is_told_apart_from_an_over_long_dask_1_frame() {
        let python = foreign::python_dask_refusal("x");
        let mut g = gate(64 * 1024);
        g.advance(&python[..4]).unwrap();
        assert_eq!(g.next_read_len(), 12, "a few more bytes to look at");
        g.advance(&python[4..10]).unwrap();
        let e = g.advance(&python[10..16]).unwrap_err();
        assert!(foreign::is_python_dask_peer_error(&e), "{e}");
        // Over-long but not Python Dask's: the usual 1002 once looked at.
        let mut g = gate(64 * 1024);
        g.advance(&[9, 0, 0, 0]).unwrap();
        let e = g.advance(&[0x91; 12]).unwrap_err();
        assert_eq!(e.code, ErrorCode::FrameTooLarge);
        // Other over-long prefixes, and any after the first frame: at once.
        let mut g = gate(64 * 1024);
        assert!(g.advance(&[0, 1, 0, 1]).is_err());
        let mut g = gate(64 * 1024);
        g.advance(&[0, 0, 0, 1]).unwrap();
        g.advance(&[0x90]).unwrap();
        assert!(g.advance(&python[..4]).is_err());
    }

    #[test]
    fn the_hello_gate_reads_to_each_frame_end_and_refuses_a_long_prefix() {
        let mut g = gate(10);
        assert_eq!(g.next_read_len(), 4);
        g.advance(&[0, 0]).unwrap();
        assert_eq!(g.next_read_len(), 2);
        g.advance(&[0, 10]).unwrap();
        assert_eq!(g.next_read_len(), 10);
        g.advance(&[1; 7]).unwrap();
        assert_eq!(g.next_read_len(), 3);
        g.advance(&[1; 3]).unwrap();
        assert_eq!(g.next_read_len(), 4, "the next frame's prefix");
        g.advance(&[0, 0, 0, 0]).unwrap();
        assert_eq!(g.next_read_len(), 4, "an empty frame has no payload");
        let e = g.advance(&[0, 0, 0, 11]).unwrap_err();
        assert_eq!(e.code, ErrorCode::FrameTooLarge);
        assert_eq!(g.advance(&[0]).unwrap_err().code, ErrorCode::FrameTooLarge);
    }
}
