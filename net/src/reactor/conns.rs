//! Connecting, sending, closing and the life of a connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use dask_core::{ConnId, Message, WireError};
use mio::net::TcpStream;
use mio::Token;

#[cfg(doc)]
use super::ReactorConfig;
use super::{conn_index, CloseReason, Entry, ListenerId, NetEvent, Phase, Reactor, Slot};
use crate::conn::{Conn, ConnError};
use crate::transport::Transport;

impl Reactor {
    /// Starts connecting to `addr` without waiting. The outcome comes as
    /// [`NetEvent::Connected`] or [`NetEvent::ConnectFailed`] (also for a
    /// connect that fails at once, or one past
    /// [`ReactorConfig::connections_max`]). Messages may be sent at once:
    /// they go out when connected.
    pub fn connect(&mut self, addr: SocketAddr) -> ConnId {
        self.connect_with(addr, false)
    }

    /// As [`Reactor::connect`], over TLS ([`ReactorConfig::tls`] must be
    /// able to connect: a CA). [`NetEvent::Connected`] comes once the TLS
    /// handshake is done; a certificate refused either way is a
    /// [`NetEvent::ConnectFailed`] that says which.
    pub fn connect_tls(&mut self, addr: SocketAddr) -> ConnId {
        self.connect_with(addr, true)
    }

    /// [`Reactor::connect`] or [`Reactor::connect_tls`], as `endpoint` says.
    pub fn connect_to(&mut self, endpoint: crate::Endpoint) -> ConnId {
        self.connect_with(endpoint.addr, endpoint.tls)
    }

    pub(super) fn connect_with(&mut self, addr: SocketAddr, tls: bool) -> ConnId {
        let connector = match (tls, self.config.tls.as_ref().and_then(|t| t.connector())) {
            (false, _) => None,
            (true, Some(c)) => Some(c.clone()),
            (true, None) => {
                let id = self.insert(Entry::FailedConnect);
                self.pending.push_back(NetEvent::ConnectFailed {
                    conn: id,
                    error: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a tls:// address needs the cluster's CA certificate (--tls-ca-file)",
                    ),
                });
                return id;
            }
        };
        let started = if self.live_count() >= self.config.connections_max {
            Err(io::Error::other(format!(
                "too many connections ({} open)",
                self.config.connections_max
            )))
        } else {
            TcpStream::connect(addr)
        };
        let transport = started.and_then(|stream| {
            let _ = stream.set_nodelay(true);
            match connector {
                Some(config) => Transport::tls_connector(stream, config, addr),
                None => Ok(Transport::Plain(stream)),
            }
        });
        let transport = match transport {
            Ok(transport) => transport,
            Err(error) => {
                let id = self.insert(Entry::FailedConnect);
                self.pending
                    .push_back(NetEvent::ConnectFailed { conn: id, error });
                return id;
            }
        };
        let mut conn = self.new_conn(transport);
        let index = self.conns.vacant_key();
        if let Err(error) = conn.register_connecting(self.poll.registry(), Token(index)) {
            let id = self.insert(Entry::FailedConnect);
            self.pending
                .push_back(NetEvent::ConnectFailed { conn: id, error });
            return id;
        }
        self.insert(|id| Entry::Live(Box::new(Slot::new(conn, id, Phase::Connecting))))
    }

    /// Queues `message` on `conn`, in the frame being built for it this
    /// wakeup (flushed by the next [`Reactor::poll`] or
    /// [`Reactor::flush`]). A message too large for any frame is refused
    /// (`value-too-large`; the caller reports it instead). A message for a
    /// connection that is gone, or closing with its write side shut, is
    /// dropped.
    pub fn send(&mut self, conn: ConnId, message: &Message) -> Result<(), WireError> {
        let Some(slot) = self.live_mut(conn) else {
            return Ok(());
        };
        if slot.write_shut || slot.failed {
            return Ok(());
        }
        slot.conn.send(message)?;
        self.touch(conn_index(conn));
        Ok(())
    }

    /// Ends the frame being built for `conn`: what is sent next goes in a
    /// new frame (a connector's `hello` goes alone in its first frame,
    /// under `hello_frame_bytes_max`, before pipelined requests).
    pub fn end_frame(&mut self, conn: ConnId) {
        if let Some(slot) = self.live_mut(conn) {
            slot.conn.end_frame();
        }
    }

    /// Closes `conn` gracefully: no more of its frames are handed out; what
    /// is queued for it is written, then its write side is shut, then its
    /// input is read and dropped until the peer hangs up or
    /// [`ReactorConfig::close_linger`] passes (closing with unread input
    /// would reset the connection and could destroy our last message
    /// before the peer reads it). No event follows. A connect still in
    /// progress is abandoned.
    pub fn close(&mut self, conn: ConnId) {
        let index = conn_index(conn);
        let Some(slot) = self.live_mut(conn) else {
            // A failed connect whose event is not out yet: no event now.
            if self.conns.get(index).is_some_and(|e| e.id() == conn) {
                self.conns.remove(index);
            }
            return;
        };
        match slot.phase {
            Phase::Closing => {}
            _ if slot.failed => self.remove(index),
            Phase::Connecting | Phase::Securing => self.remove(index),
            Phase::Open => self.begin_close(index),
        }
    }

    /// Whether `conn` is connected or connecting and not closing.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.live(conn)
            .is_some_and(|s| s.phase != Phase::Closing && !s.input_over)
    }

    /// Whether everything queued for `conn` was written (or it is gone).
    pub fn is_flushed(&self, conn: ConnId) -> bool {
        self.live(conn)
            .is_none_or(|s| s.failed || (s.phase != Phase::Connecting && !s.conn.wants_write()))
    }

    /// Bytes queued for `conn` and not yet written.
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.live(conn).map_or(0, |s| s.conn.queued_bytes())
    }

    /// The TLS channel binding of `conn` (RFC 9266 `tls-exporter`, what
    /// `dask_core::auth` proofs cover), known from its
    /// [`NetEvent::Accepted`] or [`NetEvent::Connected`] on; `None` for
    /// plain TCP.
    pub fn channel_binding(
        &self,
        conn: ConnId,
    ) -> Option<[u8; dask_core::auth::CHANNEL_BINDING_BYTES]> {
        self.live(conn).and_then(|s| s.conn.channel_binding())
    }

    /// The peer's address.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.live(conn).and_then(|s| s.conn.peer_addr())
    }

    /// Connections held, closing ones included.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Closes every connection gracefully and stops listening, then waits
    /// until each has written what was queued for it and its peer hung up,
    /// or until `deadline`; what is left then is dropped.
    pub fn close_all(&mut self, deadline: Instant) {
        for i in 0..self.listeners.len() {
            self.close_listener(ListenerId(i));
        }
        let ids: Vec<ConnId> = self.conns.iter().map(|(_, e)| e.id()).collect();
        for id in ids {
            self.close(id);
        }
        self.pending.clear();
        while !self.conns.is_empty() && Instant::now() < deadline {
            if self.poll(Some(deadline)).is_err() {
                break;
            }
            while self.next_event().is_some() {}
        }
        self.flush();
    }

    pub(super) fn new_conn(&self, transport: Transport) -> Conn {
        let mut conn = Conn::over(transport);
        conn.set_send_queue_bytes_max(self.config.send_queue_bytes_max);
        conn.set_read_bytes_per_call(self.config.read_bytes_per_wakeup);
        if self.config.frame_bytes_max != dask_core::FRAME_BYTES_MAX {
            conn.set_frame_bytes_max(self.config.frame_bytes_max);
        }
        conn.use_frame_buffers(Arc::clone(&self.frame_buffers));
        conn
    }

    pub(super) fn begin_close(&mut self, index: usize) {
        self.release_handshake_bytes(index);
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.phase == Phase::Closing {
            return;
        }
        slot.phase = Phase::Closing;
        slot.conn.discard_buffered();
        let id = slot.id;
        self.lingering
            .push_back((Instant::now() + self.config.close_linger, id));
        self.touch(index);
        // Input that came before the close is read and dropped now.
        self.read(index);
    }

    /// The socket of `index` failed: an open connection is reported closed
    /// (and removed when that event is handed out), a closing one removed.
    pub(super) fn fail(&mut self, index: usize, error: ConnError) {
        let error = match error {
            ConnError::Io(e) => e,
            ConnError::Wire(e) => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        };
        self.fail_with(index, CloseReason::Io(error));
    }

    /// The connection is gone, for `reason`: its loop hears it once.
    pub(super) fn fail_with(&mut self, index: usize, reason: CloseReason) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.phase != Phase::Open || slot.input_over {
            return self.remove(index);
        }
        slot.failed = true;
        slot.input_over = true;
        slot.stalled_since = None;
        slot.conn.deregister(self.poll.registry());
        let id = slot.id;
        self.release_handshake_bytes(index);
        self.pending
            .push_back(NetEvent::Closed { conn: id, reason });
    }

    pub(super) fn expire_lingering(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.lingering.front() {
            if at > now {
                return;
            }
            self.lingering.pop_front();
            if self.live(id).is_some_and(|s| s.phase == Phase::Closing) {
                self.remove(conn_index(id));
            }
        }
    }

    pub(super) fn remove(&mut self, index: usize) {
        self.release_handshake_bytes(index);
        if let Some(Entry::Live(mut slot)) = self.conns.try_remove(index) {
            self.queued_total -= slot.queued_counted;
            if !slot.failed {
                slot.conn.deregister(self.poll.registry());
            }
        }
    }
}
