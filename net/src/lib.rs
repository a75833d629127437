//! # dask-net
//!
//! The thin I/O edge shared by the scheduler, the worker and the clients:
//! a non-blocking framed connection over mio ([`Conn`]), a blocking one
//! for simple tools and tests ([`BlockingConn`]), and address parsing.
//!
//! Architecture invariant: this is the only crate that reads or writes a
//! socket's bytes; a TLS layer would wrap the stream here and nowhere else.
#![deny(missing_docs)]

mod blocking;
mod clock;
mod conn;
#[cfg(feature = "testing")]
pub mod testing;

pub use blocking::BlockingConn;
pub use clock::Clock;
pub use conn::{
    Conn, ConnError, ReadStatus, HELLO_FRAME_BYTES_MAX, READ_CHUNK_BYTES, SEND_QUEUE_BYTES_MAX,
};

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses `tcp://HOST:PORT` (or `HOST:PORT`) into a socket address,
/// resolving host names such as `localhost`.
pub fn parse_address(address: &str) -> Result<SocketAddr, String> {
    let rest = match address.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme {scheme:?} in {address:?} (only tcp://)"
            ))
        }
        None => address,
    };
    let rest = rest.trim_end_matches('/');
    rest.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address:?} resolves to no address"))
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
        assert!(parse_address("tcp://nohost").is_err());
        assert!(format_address(parse_address("localhost:5").unwrap()).starts_with("tcp://"));
    }
}
