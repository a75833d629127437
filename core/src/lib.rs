//! # dask-core
//!
//! The dask/1 wire protocol, sans-IO: message types ([`messages`]), the
//! msgpack codec ([`msgpack`], [`wire`]), framing ([`frame`]), the
//! handshake ([`handshake`]), Python Dask recognised on first bytes
//! ([`foreign`]), the JSON form of values ([`json`]) and the
//! generated JSON Schema ([`schema`]), the client session state machine
//! that every client drives ([`client`]), the worker state machine that
//! every worker drives ([`worker`]), and the memory-sparing graph order of
//! both schedulers ([`order`]), and operator log records ([`log`]).
//!
//! Architecture invariant: this crate touches no socket, clock or thread;
//! it builds for `wasm32-unknown-unknown`.
#![deny(missing_docs)]

pub mod auth;
pub mod client;
pub mod error;
pub mod foreign;
pub mod frame;
pub mod handshake;
pub mod json;
pub mod log;
pub mod messages;
pub mod msgpack;
pub mod order;
pub mod parts;
pub mod refusal;
pub mod schema;
pub mod time;
pub mod wire;
pub mod worker;

pub use error::{ErrorCode, WireError};

/// A connection, as the edge that owns it names it: `dask-net`'s
/// `Reactor` packs a slot index and a generation (so an id is never reused
/// for another connection), tests simply count. State machines only
/// compare, hash and hand it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

pub use frame::{FrameDecoder, FrameEncoder, FRAME_BYTES_MAX};
pub use messages::Message;
pub use msgpack::RawValue;
pub use time::Timestamp;
pub use wire::Key;
