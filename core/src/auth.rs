//! Authentication: a cluster's secrets and the proofs of the dask/1.1
//! handshake (spec/PROTOCOL.md "Authentication").
//!
//! A cluster has two secrets, one for clients and one for workers, so
//! that a worker's credential cannot submit work: a connection with role
//! `client` proves the client secret, `worker` and `peer` the worker
//! secret. Each side proves it holds the secret without sending it: an
//! HMAC-SHA256, keyed by the secret, over both sides' fresh nonces, the
//! connector's role and (over TLS) the TLS session's exporter value, with
//! a label per side so that one side's proof is never the other's.
//!
//! Pure: nonces and channel bindings come from the edges (`dask-net`
//! reads the OS's random source and the TLS session); this module only
//! computes and compares (in constant time).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::messages::Role;

/// Bytes of a secret.
pub const SECRET_BYTES: usize = 32;

/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 32;

/// Bytes of a proof (an HMAC-SHA256).
pub const PROOF_BYTES: usize = 32;

/// Bytes of a TLS channel binding (RFC 9266 `tls-exporter`, label
/// [`CHANNEL_BINDING_LABEL`], no context).
pub const CHANNEL_BINDING_BYTES: usize = 32;

/// The exporter label of the channel binding (RFC 9266).
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// The proof method of dask/1.1, named in `hello.auth.method`.
pub const METHOD: &str = "hmac-sha256";

/// A secret of the cluster: 32 random bytes, written as 64 hex digits.
/// Its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_BYTES]);

impl Secret {
    /// A secret made of these bytes (the edge draws them from the OS).
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Secret {
        Secret(bytes)
    }

    /// Reads 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Secret, String> {
        let text = text.trim();
        if text.len() != 2 * SECRET_BYTES {
            return Err(format!(
                "a secret is {} hex digits, this one has {} characters",
                2 * SECRET_BYTES,
                text.len()
            ));
        }
        let mut bytes = [0; SECRET_BYTES];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => bytes[i] = (h * 16 + l) as u8,
                _ => return Err("a secret holds hex digits only (0-9, a-f)".into()),
            }
        }
        Ok(Secret(bytes))
    }

    /// The 64 lowercase hex digits, for the credentials file.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The secrets one program holds: the scheduler both, a client the
/// client secret, a worker the worker secret (a credentials file may hold
/// either or both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Proves role `client` (submit, gather, scatter, datasets).
    pub client: Option<Secret>,
    /// Proves role `worker` (register with the scheduler) and `peer`
    /// (read values from a worker's data address).
    pub worker: Option<Secret>,
}

impl Credentials {
    /// The secret a connection of `role` proves, if these credentials
    /// hold it.
    pub fn secret_for(&self, role: Role) -> Option<&Secret> {
        match role {
            Role::Client => self.client.as_ref(),
            Role::Worker | Role::Peer => self.worker.as_ref(),
            Role::Scheduler => None,
        }
    }

    /// Whether no secret is held.
    pub fn is_empty(&self) -> bool {
        self.client.is_none() && self.worker.is_none()
    }
}

/// Which side of a connection a proof comes from. Each side's proof has
/// its own label, so one side's proof can never be sent back as the
/// other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that opened the connection (client, worker, peer).
    Connector,
    /// The side that accepted it (scheduler, a worker's data address).
    Acceptor,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Connector => b"dask/1 auth connector",
            Side::Acceptor => b"dask/1 auth acceptor",
        }
    }
}

/// What a proof covers: both nonces, the connector's role and the
/// channel binding (empty on plain TCP).
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    /// The connector's role, from its hello.
    pub role: Role,
    /// The nonce of the connector's hello.
    pub connector_nonce: &'a [u8; NONCE_BYTES],
    /// The nonce of the acceptor's reply.
    pub acceptor_nonce: &'a [u8; NONCE_BYTES],
    /// The TLS exporter value of this connection as the computing side
    /// sees it, or empty on plain TCP.
    pub channel_binding: &'a [u8],
}

impl Transcript<'_> {
    fn mac(&self, secret: &Secret, side: Side) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.0)
            .expect("HMAC takes a key of any length");
        // label 0 role 0 nonce nonce binding: the labels and roles hold no
        // zero byte and the nonces have a fixed length, so no two
        // transcripts share their bytes.
        mac.update(side.label());
        mac.update(&[0]);
        mac.update(self.role.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(self.connector_nonce);
        mac.update(self.acceptor_nonce);
        mac.update(self.channel_binding);
        mac
    }

    /// The proof `side` sends: HMAC-SHA256 keyed by `secret`.
    pub fn proof(&self, secret: &Secret, side: Side) -> [u8; PROOF_BYTES] {
        self.mac(secret, side).finalize().into_bytes().into()
    }

    /// Whether `proof` is the one `side` sends for this transcript,
    /// compared in constant time.
    pub fn verify(&self, secret: &Secret, side: Side, proof: &[u8]) -> bool {
        self.mac(secret, side).verify_slice(proof).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn secrets_read_and_write_hex_and_never_show_in_debug() {
        let s = Secret::from_hex(&"Ab".repeat(32)).unwrap();
        assert_eq!(s.to_hex(), "ab".repeat(32));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(format!(
            "{:?}",
            Credentials {
                client: Some(s),
                worker: None
            }
        )
        .contains(".."));
        assert!(Secret::from_hex("ab")
            .unwrap_err()
            .contains("64 hex digits"));
        assert!(Secret::from_hex(&"zz".repeat(32))
            .unwrap_err()
            .contains("hex digits only"));
    }

    #[test]
    fn roles_prove_their_own_secret() {
        let client = Secret::from_bytes([1; 32]);
        let worker = Secret::from_bytes([2; 32]);
        let both = Credentials {
            client: Some(client.clone()),
            worker: Some(worker.clone()),
        };
        assert_eq!(both.secret_for(Role::Client), Some(&client));
        assert_eq!(both.secret_for(Role::Worker), Some(&worker));
        assert_eq!(both.secret_for(Role::Peer), Some(&worker));
        assert_eq!(both.secret_for(Role::Scheduler), None);
        let worker_only = Credentials {
            client: None,
            worker: Some(worker),
        };
        assert_eq!(worker_only.secret_for(Role::Client), None);
    }

    #[test]
    fn a_proof_binds_its_side_role_nonces_and_channel() {
        let secret = Secret::from_bytes([7; 32]);
        let (nc, na) = ([1; 32], [2; 32]);
        let t = Transcript {
            role: Role::Client,
            connector_nonce: &nc,
            acceptor_nonce: &na,
            channel_binding: &[],
        };
        let p = t.proof(&secret, Side::Acceptor);
        assert!(t.verify(&secret, Side::Acceptor, &p));
        assert!(!t.verify(&secret, Side::Connector, &p), "sides differ");
        assert!(!t.verify(&Secret::from_bytes([8; 32]), Side::Acceptor, &p));
        assert!(
            !t.verify(&secret, Side::Acceptor, &p[..31]),
            "a short proof"
        );
        let other_role = Transcript {
            role: Role::Worker,
            ..t
        };
        assert!(!other_role.verify(&secret, Side::Acceptor, &p));
        let swapped = Transcript {
            connector_nonce: &na,
            acceptor_nonce: &nc,
            ..t
        };
        assert!(!swapped.verify(&secret, Side::Acceptor, &p));
        let bound = Transcript {
            channel_binding: &[9; 32],
            ..t
        };
        assert!(!bound.verify(&secret, Side::Acceptor, &p));
    }

    /// A known answer, computed independently with Python's
    /// `hmac.new(bytes([7])*32, b"dask/1 auth acceptor\0client\0" +
    /// bytes([1])*32 + bytes([2])*32, "sha256").hexdigest()`.
    #[test]
    fn the_proof_is_hmac_sha256_of_the_documented_bytes() {
        let t = Transcript {
            role: Role::Client,
            connector_nonce: &[1; 32],
            acceptor_nonce: &[2; 32],
            channel_binding: &[],
        };
        assert_eq!(
            hex(&t.proof(&Secret::from_bytes([7; 32]), Side::Acceptor)),
            KNOWN_ACCEPTOR_PROOF
        );
    }

    const KNOWN_ACCEPTOR_PROOF: &str =
        "351f1015cd95c5003fc1827082eba739dd00b7bcd5afce5220c6d8583a4f53b6";
}
