//! Data connections: the hello exchange and which message may come on which end.

use super::WorkerState;
use crate::handshake;
use crate::messages::Role;
use crate::{ErrorCode, Message, Timestamp, WireError};

/// Identifies a connection from a peer (a process fetching data from this
/// worker); chosen by the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// Which end of a data connection this worker is (see
/// [`WorkerState::handle_peer_message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerLink<'a> {
    /// A peer connected to this worker's data address: it fetches from us.
    Incoming(PeerId),
    /// This worker connected to the holder at this data address: we fetch.
    Outgoing(&'a str),
}

/// What the event loop does with a data connection after a message on it.
#[derive(Debug)]
pub enum PeerVerdict {
    /// Handled (any reply comes through [`WorkerState::poll_output`]).
    Continue,
    /// The hello exchange is complete: the connection is handshaken from
    /// now on; send this `hello` reply on it first when there is one (an
    /// incoming connection).
    Handshaken(Option<Message>),
    /// Close it without a word (the other end said `close` or `error`).
    Close,
    /// Send this fatal error on it, then close it.
    Reject(WireError),
}

impl WorkerState {
    /// A message on a data connection (after the framing): the hello
    /// exchange while `handshaken` is false (the worker, named `name`,
    /// accepts role `peer` on incoming connections and expects a worker to
    /// answer on outgoing ones), then `get-data` from peers, `data` /
    /// `busy` from holders, and `heartbeat`. Anything else, or a message
    /// in the wrong direction, is a protocol error (`Reject`). Every
    /// worker's event loop shares this, so they answer alike.
    pub fn handle_peer_message(
        &mut self,
        now: Timestamp,
        link: PeerLink<'_>,
        handshaken: bool,
        name: &str,
        message: Message,
    ) -> PeerVerdict {
        if !handshaken {
            let hello = match message {
                Message::Hello(hello) => hello,
                Message::ErrorReport(_) => return PeerVerdict::Close,
                other => {
                    return PeerVerdict::Reject(WireError::new(
                        ErrorCode::BadHandshake,
                        format!("expected hello, got `{}`", other.op()),
                    ))
                }
            };
            let checked = match link {
                PeerLink::Incoming(peer) => handshake::accept(
                    &hello,
                    Role::Worker,
                    &[Role::Peer],
                    peer.0,
                    Some(name.to_string()),
                )
                .map(|(reply, _)| Some(Message::Hello(reply))),
                PeerLink::Outgoing(_) => handshake::check_reply(&hello, Role::Worker).map(|_| None),
            };
            return match checked {
                Ok(reply) => PeerVerdict::Handshaken(reply),
                Err(e) => PeerVerdict::Reject(e),
            };
        }
        match (link, message) {
            (PeerLink::Incoming(peer), Message::GetData(request)) => {
                self.handle_peer_request(now, peer, request);
                PeerVerdict::Continue
            }
            (PeerLink::Incoming(_), Message::Heartbeat(_)) => PeerVerdict::Continue,
            (PeerLink::Outgoing(address), m @ (Message::Data(_) | Message::Busy(_))) => {
                self.handle_peer_reply(now, address, m);
                PeerVerdict::Continue
            }
            (_, Message::Close(_) | Message::ErrorReport(_)) => PeerVerdict::Close,
            (_, other) => PeerVerdict::Reject(WireError::new(
                ErrorCode::UnexpectedMessage,
                format!("`{}` is not allowed on a data connection", other.op()),
            )),
        }
    }
}
