//! `auth.json`: proofs of the authentication exchange
//! (PROTOCOL.md#authentication), and the cases `messages.json` takes its
//! auth examples from.

use dask_core::json::to_hex;
use serde_json::{json, Value as Json};

pub(super) fn bin(bytes: &[u8]) -> Json {
    json!({"$bin": to_hex(bytes)})
}

/// One run of the proof exchange.
pub(super) struct AuthCase {
    pub description: &'static str,
    pub role: dask_core::messages::Role,
    pub secret: [u8; 32],
    pub connector_nonce: [u8; 32],
    pub acceptor_nonce: [u8; 32],
    pub channel_binding: Vec<u8>,
}

impl AuthCase {
    fn transcript(&self) -> dask_core::auth::Transcript<'_> {
        dask_core::auth::Transcript {
            role: self.role,
            connector_nonce: &self.connector_nonce,
            acceptor_nonce: &self.acceptor_nonce,
            channel_binding: &self.channel_binding,
        }
    }

    fn secret(&self) -> dask_core::auth::Secret {
        dask_core::auth::Secret::from_bytes(self.secret)
    }

    pub fn acceptor_proof(&self) -> [u8; 32] {
        self.transcript()
            .proof(&self.secret(), dask_core::auth::Side::Acceptor)
    }

    pub fn connector_proof(&self) -> [u8; 32] {
        self.transcript()
            .proof(&self.secret(), dask_core::auth::Side::Connector)
    }
}

fn counting(from: u8) -> [u8; 32] {
    std::array::from_fn(|i| from.wrapping_add(i as u8))
}

pub(super) fn auth_cases() -> Vec<AuthCase> {
    use dask_core::messages::Role;
    vec![
        AuthCase {
            description: "a client proves the client secret, plain TCP",
            role: Role::Client,
            secret: counting(0x00),
            connector_nonce: counting(0x20),
            acceptor_nonce: counting(0x40),
            channel_binding: vec![],
        },
        AuthCase {
            description: "a worker proves the worker secret, plain TCP",
            role: Role::Worker,
            secret: counting(0x80),
            connector_nonce: counting(0x20),
            acceptor_nonce: counting(0x40),
            channel_binding: vec![],
        },
        AuthCase {
            description: "a peer proves the worker secret over TLS (the binding is covered)",
            role: Role::Peer,
            secret: counting(0x80),
            connector_nonce: counting(0x60),
            acceptor_nonce: counting(0xa0),
            channel_binding: counting(0xc0).to_vec(),
        },
    ]
}

pub(super) fn auth() -> Json {
    let cases: Vec<Json> = auth_cases()
        .iter()
        .map(|c| {
            json!({
                "description": c.description,
                "role": c.role.as_str(),
                "secret": to_hex(&c.secret),
                "connector_nonce": to_hex(&c.connector_nonce),
                "acceptor_nonce": to_hex(&c.acceptor_nonce),
                "channel_binding": to_hex(&c.channel_binding),
                "acceptor_proof": to_hex(&c.acceptor_proof()),
                "connector_proof": to_hex(&c.connector_proof()),
            })
        })
        .collect();
    json!({
        "description": "Proofs of the authentication exchange (PROTOCOL.md#authentication): HMAC-SHA256 keyed by the secret of the connector's role over label, 0, role, 0, connector_nonce, acceptor_nonce, channel_binding (empty on plain TCP); label \"dask/1 auth acceptor\" for acceptor_proof, \"dask/1 auth connector\" for connector_proof. Hex throughout.",
        "proofs": cases,
    })
}
