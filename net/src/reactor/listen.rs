//! Listeners, accepting connections, and the TLS handshake of accepted ones.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use dask_core::Message;
use mio::net::TcpListener;
use mio::{Interest, Token};

#[cfg(doc)]
use super::ReactorConfig;
use super::{
    conn_index, listener_token, Entry, Listener, ListenerId, NetEvent, Phase, Reactor, Slot,
    TLS_HANDSHAKE_CHARGE,
};
use crate::conn::ConnError;
use crate::transport::Transport;

impl Reactor {
    /// Listens on `addr` (port 0: a free one); connections come as
    /// [`NetEvent::Accepted`].
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        self.listen_with(addr, false)
    }

    /// Listens on `addr` with TLS ([`ReactorConfig::tls`] must be able to
    /// listen: a certificate and key); connections come as
    /// [`NetEvent::Accepted`] once their TLS handshake is done.
    pub fn listen_tls(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        if !self.config.tls.as_ref().is_some_and(|t| t.can_listen()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "listening with TLS needs a certificate and key (--tls-cert, --tls-key)",
            ));
        }
        self.listen_with(addr, true)
    }

    pub(super) fn listen_with(&mut self, addr: SocketAddr, tls: bool) -> io::Result<ListenerId> {
        let mut socket = TcpListener::bind(addr)?;
        let id = ListenerId(self.listeners.len());
        self.poll
            .registry()
            .register(&mut socket, listener_token(id), Interest::READABLE)?;
        self.listeners.push(Some(Listener {
            socket,
            accept_failing: false,
            tls,
        }));
        Ok(id)
    }

    /// The address a listener is bound to (with the real port).
    pub fn local_addr(&self, listener: ListenerId) -> io::Result<SocketAddr> {
        match self.listeners.get(listener.0) {
            Some(Some(l)) => l.socket.local_addr(),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such listener")),
        }
    }

    /// Stops listening (connections already accepted stay).
    pub fn close_listener(&mut self, listener: ListenerId) {
        if let Some(slot) = self.listeners.get_mut(listener.0) {
            if let Some(mut l) = slot.take() {
                let _ = self.poll.registry().deregister(&mut l.socket);
            }
        }
    }

    pub(super) fn accept(&mut self, listener: ListenerId) {
        loop {
            let Some(Some(l)) = self.listeners.get_mut(listener.0) else {
                return;
            };
            let tls = l.tls;
            let stream = match l.socket.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.accept_failing = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    if !l.accept_failing {
                        self.pending
                            .push_back(NetEvent::AcceptFailed { listener, error });
                    }
                    l.accept_failing = true;
                    let at = Instant::now() + self.config.accept_retry_interval;
                    self.accept_retry_at = Some(self.accept_retry_at.map_or(at, |t| t.min(at)));
                    return;
                }
            };
            if self.live_count() >= self.config.connections_max {
                drop(stream);
                continue;
            }
            if tls && self.handshake_bytes + TLS_HANDSHAKE_CHARGE > self.config.handshake_bytes_max
            {
                drop(stream); // too many half-done handshakes: try again later
                continue;
            }
            let _ = stream.set_nodelay(true);
            let acceptor = self.config.tls.as_ref().and_then(|t| t.acceptor());
            let transport = match (tls, acceptor) {
                (true, Some(config)) => match Transport::tls_acceptor(stream, config.clone()) {
                    Ok(t) => t,
                    Err(_) => continue,
                },
                _ => Transport::Plain(stream),
            };
            let mut conn = self.new_conn(transport);
            let index = self.conns.vacant_key();
            if conn.register(self.poll.registry(), Token(index)).is_err() {
                continue;
            }
            if !tls {
                conn.limit_until_hello(
                    self.config.hello_frame_bytes_max,
                    &self.config.python_dask_refusal,
                );
            }
            let phase = if tls { Phase::Securing } else { Phase::Open };
            let id = self.insert(|id| {
                let mut slot = Slot::new(conn, id, phase);
                slot.listener = Some(listener);
                Entry::Live(Box::new(slot))
            });
            if tls {
                if let Some(Entry::Live(slot)) = self.conns.get_mut(index) {
                    slot.handshake_bytes = TLS_HANDSHAKE_CHARGE;
                }
                self.handshake_bytes += TLS_HANDSHAKE_CHARGE;
                let at = Instant::now() + self.config.tls_handshake_timeout;
                self.securing.push_back((at, id));
            } else {
                self.pending
                    .push_back(NetEvent::Accepted { conn: id, listener });
            }
        }
    }

    /// Drives the TLS handshake of an accepted connection; once done, the
    /// loop hears of the connection and its frames are read.
    pub(super) fn secure(&mut self, index: usize) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        match slot.conn.secure() {
            Ok(true) => {
                slot.phase = Phase::Open;
                slot.conn.limit_until_hello(
                    self.config.hello_frame_bytes_max,
                    &self.config.python_dask_refusal,
                );
                let (id, listener) = (slot.id, slot.listener.unwrap_or(ListenerId(0)));
                self.release_handshake_bytes(index);
                self.pending
                    .push_back(NetEvent::Accepted { conn: id, listener });
                self.touch(index);
                // The first frames may have come with the handshake's end.
                self.read(index);
            }
            Ok(false) => self.touch(index),
            Err(ConnError::Wire(refusal)) => {
                // A plain dask/1 peer: told in plain, then closed. Nothing
                // it sent is read.
                let _ = slot.conn.send(&Message::error(&refusal, None));
                self.begin_close(index);
            }
            Err(ConnError::Io(_)) => self.remove(index),
        }
    }

    pub(super) fn expire_securing(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.securing.front() {
            if at > now {
                return;
            }
            self.securing.pop_front();
            if self.live(id).is_some_and(|s| s.phase == Phase::Securing) {
                self.remove(conn_index(id));
            }
        }
    }
}
