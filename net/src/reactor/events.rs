//! What a [`Reactor`] hands its event loop, and its waker.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use dask_core::{ConnId, Message, WireError};

#[cfg(doc)]
use super::{Reactor, ReactorConfig};

/// A listening socket of a [`Reactor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub usize);

/// What happened on the network, handed to the event loop by
/// [`Reactor::next_event`].
#[derive(Debug)]
pub enum NetEvent {
    /// A listener accepted a connection (on a TLS listener: and its TLS
    /// handshake is done). Until a frame holding its `hello` has been
    /// read, its frames are held to [`ReactorConfig::hello_frame_bytes_max`].
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// The listener that accepted it.
        listener: ListenerId,
    },
    /// An outgoing connection ([`Reactor::connect`]) is established (over
    /// TLS: its TLS handshake is done too); what was sent on it meanwhile
    /// goes out now.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// An outgoing connection could not be established; it is gone.
    ConnectFailed {
        /// The connection.
        conn: ConnId,
        /// Why (the OS error, e.g. connection refused; over TLS, a line
        /// on what failed, e.g. the acceptor's certificate).
        error: io::Error,
    },
    /// The messages of one frame, in order.
    Frame {
        /// Where they came from.
        conn: ConnId,
        /// The frame's messages.
        messages: Vec<Message>,
    },
    /// The connection is over for the state machine: nothing more comes
    /// from it. Unless `reason` is [`CloseReason::Io`] or [`CloseReason::WriteTimeout`], what is sent to it
    /// in the same wakeup (an `error` answering a protocol error, replies
    /// to a peer that half-closed after its requests) is still written
    /// before it is shut; [`Reactor::close`] is not needed.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A listener's `accept` failed for want of descriptors or memory
    /// (EMFILE, ENFILE, ENOBUFS, ENOMEM); the reactor retries every
    /// [`ReactorConfig::accept_retry_interval`] until it works. Reported
    /// once per episode, for the log.
    AcceptFailed {
        /// The listener.
        listener: ListenerId,
        /// The error.
        error: io::Error,
    },
}

/// Why a connection ended ([`NetEvent::Closed`]).
#[derive(Debug)]
pub enum CloseReason {
    /// The peer closed its side between frames.
    PeerClosed,
    /// The peer closed its side in the middle of a frame.
    PeerClosedMidFrame,
    /// The peer broke the protocol (bytes that do not decode, a frame over
    /// a limit); its further input is discarded. Answer with an `error`.
    Protocol(WireError),
    /// The socket failed (reset, write error, or the send queue went over
    /// [`ReactorConfig::send_queue_bytes_max`]); the connection is gone.
    Io(io::Error),
    /// The peer read nothing for [`ReactorConfig::write_timeout`] while
    /// `unwritten` bytes waited for it; the connection is gone.
    WriteTimeout {
        /// Bytes that waited unwritten.
        unwritten: usize,
        /// How long no byte could be written.
        idle: Duration,
    },
}

/// Wakes a [`Reactor`]'s [`poll`](Reactor::poll) from another thread (or
/// a signal handler: it only writes to an eventfd).
#[derive(Debug, Clone)]
pub struct Waker(pub(super) Arc<mio::Waker>);

impl Waker {
    /// Makes the reactor's current or next `poll` return.
    pub fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }
}
