//! # dask-net
//!
//! The connection layer of every Rust process of dask-rs: [`Reactor`] owns
//! the mio `Poll`, the listeners and every connection, and all their socket
//! bytes (accept with a connection cap and the retry when descriptors run
//! out, non-blocking connects, framing, the bounds on connections before
//! their hello, one write per connection per wakeup, the send-queue bound,
//! backpressure on peers that do not read what they asked for, closing
//! with linger and half-close). A binary's event loop
//! (`event_loop.rs`, struct `EventLoop`) drives it: it moves
//! [`NetEvent`]s into its state machine and the state machine's messages
//! back with [`Reactor::send`] and [`Reactor::close`]; nothing else.
//! [`BlockingConn`] is a blocking connection for tools and tests;
//! [`Clock`] turns `Instant`s into the state machines' timestamps;
//! [`scheduler_file`] is how workers and clients find a scheduler;
//! [`log`] writes operator log lines (text or JSON) to standard error.
//!
//! Security lives here too: [`tls`] (TLS under any connection,
//! `tls://` addresses, a cluster CA in one step) and [`credentials`] (the
//! credentials file every program finds, and the random source of
//! secrets and nonces; `dask_core::auth` computes the proofs).
//!
//! **Architecture invariant:** this is the only crate that reads or writes
//! a dask/1 socket's bytes (`testkit/tests/architecture.rs` checks the
//! other crates' sources). TLS is a variant of the per-connection
//! transport: nothing above the reactor knows whether a connection is
//! encrypted (it can ask for the channel binding, which auth proofs cover).
//!
//! ## An event loop
//!
//! The shape of the scheduler's and the client's loops. The state machine
//! takes events with a timestamp, gives messages to send and connections
//! to close through `poll_output`, and its next deadline through
//! `poll_timeout`:
//!
//! ```no_run
//! use dask_core::{ConnId, Message, Timestamp};
//! use dask_net::{Clock, CloseReason, NetEvent, Reactor, ReactorConfig};
//!
//! # struct Machine;
//! # enum Output { Send(ConnId, Message), Close(ConnId) }
//! # impl Machine {
//! #     fn handle_connected(&mut self, _: Timestamp, _: ConnId) {}
//! #     fn handle_frame(&mut self, _: Timestamp, _: ConnId, _: Vec<Message>) {}
//! #     fn handle_closed(&mut self, _: Timestamp, _: ConnId) {}
//! #     fn handle_timeout(&mut self, _: Timestamp) {}
//! #     fn poll_output(&mut self) -> Option<Output> { None }
//! #     fn poll_timeout(&self) -> Option<Timestamp> { None }
//! # }
//! # fn main() -> std::io::Result<()> {
//! # let mut machine = Machine;
//! let clock = Clock::new();
//! let mut reactor = Reactor::new(ReactorConfig::default())?;
//! reactor.listen("127.0.0.1:0".parse().unwrap())?;
//! loop {
//!     // Flushes what the last round sent (one write per connection), then
//!     // sleeps until a socket is ready or the machine's deadline.
//!     let deadline = machine.poll_timeout().map(|t| clock.instant(t));
//!     reactor.poll(deadline)?;
//!     // Every event first: input that waited is read before any timeout
//!     // is judged.
//!     while let Some(event) = reactor.next_event() {
//!         let now = clock.now();
//!         match event {
//!             NetEvent::Accepted { conn, .. } => machine.handle_connected(now, conn),
//!             NetEvent::Frame { conn, messages } => machine.handle_frame(now, conn, messages),
//!             NetEvent::Closed { conn, reason } => {
//!                 if let CloseReason::Protocol(e) = &reason {
//!                     let _ = reactor.send(conn, &Message::error(e, None));
//!                 }
//!                 machine.handle_closed(now, conn);
//!             }
//!             NetEvent::AcceptFailed { error, .. } => eprintln!("accept failed: {error}"),
//!             NetEvent::Connected { .. } | NetEvent::ConnectFailed { .. } => {}
//!         }
//!         drain(&mut machine, &mut reactor);
//!     }
//!     if machine.poll_timeout().is_some_and(|t| t <= clock.now()) {
//!         machine.handle_timeout(clock.now());
//!         drain(&mut machine, &mut reactor);
//!     }
//! }
//!
//! fn drain(machine: &mut Machine, reactor: &mut Reactor) {
//!     while let Some(output) = machine.poll_output() {
//!         match output {
//!             Output::Send(conn, message) => {
//!                 if let Err(e) = reactor.send(conn, &message) {
//!                     // Too large for any frame: say so instead.
//!                     let _ = reactor.send(conn, &Message::error(&e, None));
//!                 }
//!             }
//!             Output::Close(conn) => reactor.close(conn),
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! A connector (a worker fetching from a peer, a client) calls
//! [`Reactor::connect`], may send at once (its hello, then
//! [`Reactor::end_frame`] so the hello goes alone in its frame, then
//! requests), and gets [`NetEvent::Connected`] or
//! [`NetEvent::ConnectFailed`]. Other threads (an executor pool, user
//! threads of a client) wake the loop with [`Reactor::waker`].
#![deny(missing_docs)]

mod blocking;
#[cfg(feature = "cli")]
pub mod cli;
mod clock;
mod conn;
pub mod credentials;
pub mod log;
mod pages;
mod reactor;
pub mod scheduler_file;
pub mod tls;
mod transport;

pub use blocking::BlockingConn;
pub use clock::Clock;
pub use conn::{
    Conn, ConnError, ReadStatus, HELLO_FRAME_BYTES_MAX, READ_CHUNK_BYTES, SEND_QUEUE_BYTES_MAX,
};
pub use reactor::{
    CloseReason, ListenerId, NetEvent, Reactor, ReactorConfig, Waker, ACCEPT_RETRY_INTERVAL,
    BUSY_POLL, CLOSE_LINGER, CONNECTIONS_MAX, FRAME_BUFFERS_BYTES_MAX, FRAME_BUFFERS_IDLE,
    HANDSHAKE_BYTES_MAX, OUTPUT_BYTES_MAX, OUTPUT_BYTES_SHARE, OUTPUT_BYTES_TOTAL_MAX,
    PYTHON_DASK_REFUSAL, TLS_HANDSHAKE_CHARGE, TLS_HANDSHAKE_TIMEOUT,
};
pub use tls::{TlsConfig, TlsError, TlsPem};

use std::net::{SocketAddr, ToSocketAddrs};

/// Where a dask/1 endpoint listens: a socket address, and whether it
/// speaks TLS (`tls://HOST:PORT`) or plain TCP (`tcp://HOST:PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The socket address.
    pub addr: SocketAddr,
    /// TLS from the first byte.
    pub tls: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "tls" } else { "tcp" };
        write!(f, "{scheme}://{}", self.addr)
    }
}

/// Parses `tcp://HOST:PORT`, `tls://HOST:PORT` or `HOST:PORT` (plain),
/// resolving host names such as `localhost`.
pub fn parse_endpoint(address: &str) -> Result<Endpoint, String> {
    let (tls, rest) = match address.split_once("://") {
        Some(("tcp", rest)) => (false, rest),
        Some(("tls", rest)) => (true, rest),
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme {scheme:?} in {address:?} (tcp:// or tls://)"
            ))
        }
        None => (false, address),
    };
    let rest = rest.trim_end_matches('/');
    let addr = rest
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address:?} resolves to no address"))?;
    Ok(Endpoint { addr, tls })
}

/// Parses a plain `tcp://HOST:PORT` (or `HOST:PORT`) into a socket
/// address; a `tls://` address is refused (use [`parse_endpoint`]).
pub fn parse_address(address: &str) -> Result<SocketAddr, String> {
    let endpoint = parse_endpoint(address)?;
    if endpoint.tls {
        return Err(format!(
            "{address:?} is a TLS address; this program connects with tcp:// only here"
        ));
    }
    Ok(endpoint.addr)
}

/// The `tcp://HOST:PORT` form of an address.
pub fn format_address(addr: SocketAddr) -> String {
    format!("tcp://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_and_without_scheme() {
        assert_eq!(parse_address("tcp://127.0.0.1:8786").unwrap().port(), 8786);
        assert_eq!(parse_address("127.0.0.1:1").unwrap().port(), 1);
        assert!(parse_address("udp://127.0.0.1:1").is_err());
        assert!(parse_address("tls://127.0.0.1:1").is_err());
        let tls = parse_endpoint("tls://127.0.0.1:8786").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.to_string(), "tls://127.0.0.1:8786");
        assert!(!parse_endpoint("localhost:5").unwrap().tls);
        assert!(parse_address("tcp://nohost").is_err());
        assert!(format_address(parse_address("localhost:5").unwrap()).starts_with("tcp://"));
    }
}
