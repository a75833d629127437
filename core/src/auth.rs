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

use crate::error::{ErrorCode, WireError};
use crate::messages::{Auth, AuthProof, Bin32, Hello, Role};

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

/// What the dashboard's token is the HMAC of (no transcript starts so:
/// theirs start with `dask/1 auth`).
const DASHBOARD_TOKEN_LABEL: &[u8] = b"dask-rs dashboard token";

/// The token the scheduler's dashboard, JSON API and `/metrics` ask for
/// when the cluster has a client secret: the 64 hex digits of
/// HMAC-SHA256(client secret, `dask-rs dashboard token`). Whoever holds
/// the client secret (the credentials file) can compute it; the token
/// lets one read the dashboard, and is no proof for a handshake.
pub fn dashboard_token(client_secret: &Secret) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&client_secret.0)
        .expect("HMAC takes a key of any length");
    mac.update(DASHBOARD_TOKEN_LABEL);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A host's tag for the hello's `local` (spec "Values on one host"):
/// HMAC-SHA256(the 32 bytes of the host's id file, `dask-rs value-local`).
/// Two processes tell the same tag only if both read that file: one user on
/// one host; the tag gives the file's bytes away to no one.
pub fn local_host_tag(host_id: &[u8; 32]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(host_id).expect("HMAC takes a key of any length");
    mac.update(b"dask-rs value-local");
    mac.finalize().into_bytes().into()
}

/// Fresh nonces for an acceptor's handshakes, from one random seed the
/// edge draws once: the nth nonce is HMAC-SHA256(seed, n), unpredictable
/// to anyone without the seed, never repeated. (A state machine takes no
/// randomness from the OS; its edge hands it this seed instead of one
/// nonce per connection.)
#[derive(Clone)]
pub struct NonceSource {
    seed: [u8; NONCE_BYTES],
    next: u64,
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceSource(..)")
    }
}

impl NonceSource {
    /// A source seeded by 32 random bytes.
    pub fn new(seed: [u8; NONCE_BYTES]) -> NonceSource {
        NonceSource { seed, next: 0 }
    }

    /// The next nonce.
    pub fn next_nonce(&mut self) -> [u8; NONCE_BYTES] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.seed)
            .expect("HMAC takes a key of any length");
        mac.update(b"dask/1 nonce");
        mac.update(&self.next.to_be_bytes());
        self.next += 1;
        mac.finalize().into_bytes().into()
    }
}

/// What an acceptor needs to require authentication: the secrets it
/// checks, and the seed of its nonces.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The cluster's secrets (a scheduler holds both; a worker's data
    /// address needs the worker secret).
    pub credentials: Credentials,
    /// 32 random bytes from the edge ([`NonceSource`]).
    pub nonce_seed: [u8; NONCE_BYTES],
}

/// The one thing an acceptor says about a failed proof (spec: nothing
/// more, so a prober learns nothing).
pub const AUTH_FAILED: &str = "authentication failed";

/// The refusal of a wrong or missing proof, or of anything sent where
/// the proof is due.
pub fn failed() -> WireError {
    WireError::new(ErrorCode::AuthFailed, AUTH_FAILED)
}

/// The refusal of a connector that did not offer to authenticate: it
/// holds no credentials, or speaks dask/1.0.
pub fn required() -> WireError {
    WireError::new(
        ErrorCode::AuthFailed,
        "authentication required: this cluster admits only connections that prove its \
         credentials (dask/1.1); give this program the cluster's credentials file \
         (--credentials FILE or DASK_CREDENTIALS)",
    )
}

fn bytes32(b: &[u8; 32]) -> Bin32 {
    Bin32(*b)
}

/// A connector's side of the proof: made with its hello, it checks the
/// acceptor's proof in the reply and answers with its own.
#[derive(Debug, Clone)]
pub struct ConnectorAuth {
    role: Role,
    secret: Secret,
    nonce: [u8; NONCE_BYTES],
}

impl ConnectorAuth {
    /// For a connection of `role` proving `secret`, with a fresh `nonce`.
    pub fn new(role: Role, secret: Secret, nonce: [u8; NONCE_BYTES]) -> ConnectorAuth {
        ConnectorAuth {
            role,
            secret,
            nonce,
        }
    }

    /// The `auth` of the connector's hello.
    pub fn offer(&self) -> Auth {
        Auth {
            method: METHOD.into(),
            nonce: bytes32(&self.nonce),
            proof: None,
        }
    }

    /// Checks the acceptor's reply (its hello, already checked by
    /// `handshake::check_reply`) and gives the `auth-proof` to send.
    /// `channel_binding`: this connection's TLS exporter value, `None`
    /// on plain TCP. On error, send `error{3003}` (with
    /// [`AUTH_FAILED`]) and close; the error's text is for this side's
    /// user.
    pub fn answer(
        &self,
        reply: &Hello,
        channel_binding: Option<&[u8; CHANNEL_BINDING_BYTES]>,
    ) -> Result<AuthProof, WireError> {
        let peer = reply.role.as_str();
        let Some(auth) = &reply.auth else {
            return Err(WireError::new(
                ErrorCode::AuthFailed,
                format!(
                    "the {peer} did not prove it holds the cluster's credentials (it runs \
                     without authentication, or speaks dask/1.0): not trusting it with this \
                     connection"
                ),
            ));
        };
        let Some(proof) = &auth.proof else {
            return Err(WireError::new(
                ErrorCode::AuthFailed,
                format!("the {peer}'s hello has auth without a proof"),
            ));
        };
        if auth.method != METHOD {
            return Err(WireError::new(
                ErrorCode::AuthFailed,
                format!(
                    "the {peer} proves with {:?}, this side knows {METHOD:?}",
                    auth.method
                ),
            ));
        }
        let transcript = Transcript {
            role: self.role,
            connector_nonce: &self.nonce,
            acceptor_nonce: &auth.nonce.0,
            channel_binding: channel_binding.map_or(&[], |b| &b[..]),
        };
        if !transcript.verify(&self.secret, Side::Acceptor, &proof.0) {
            let tls_between = reply.tls.unwrap_or(false) != channel_binding.is_some();
            return Err(WireError::new(
                ErrorCode::AuthFailed,
                if tls_between {
                    format!(
                        "the {peer}'s proof does not match: its end of the connection is \
                         {} and this end's is {}, so something between the two ends TLS \
                         (a proxy), which proofs bound to the TLS session do not allow",
                        if reply.tls.unwrap_or(false) {
                            "TLS"
                        } else {
                            "plain"
                        },
                        if channel_binding.is_some() {
                            "TLS"
                        } else {
                            "plain"
                        },
                    )
                } else {
                    format!(
                        "the {peer} failed to prove it holds this side's credentials (its \
                         secret differs: another cluster's credentials file, or not the \
                         cluster at all)"
                    )
                },
            ));
        }
        Ok(AuthProof {
            proof: bytes32(&transcript.proof(&self.secret, Side::Connector)),
        })
    }
}

/// An acceptor's side of the proof for one connection: made from the
/// connector's hello, it gives the `auth` of the reply and then checks
/// the connector's `auth-proof`.
#[derive(Debug, Clone)]
pub struct AcceptorAuth {
    role: Role,
    secret: Secret,
    connector_nonce: [u8; NONCE_BYTES],
    acceptor_nonce: [u8; NONCE_BYTES],
    channel_binding: Option<[u8; CHANNEL_BINDING_BYTES]>,
}

impl AcceptorAuth {
    /// Answers a connector's `hello` (checked by `handshake::accept`):
    /// the `auth` to put in the reply, and the state that checks the
    /// connector's proof. A hello without `auth`, with another method, or
    /// of a role whose secret `credentials` lack, is refused (3003).
    pub fn challenge(
        hello: &Hello,
        credentials: &Credentials,
        nonce: [u8; NONCE_BYTES],
        channel_binding: Option<[u8; CHANNEL_BINDING_BYTES]>,
    ) -> Result<(Auth, AcceptorAuth), WireError> {
        let Some(offer) = &hello.auth else {
            return Err(required());
        };
        if offer.method != METHOD {
            return Err(WireError::new(
                ErrorCode::AuthFailed,
                format!(
                    "authentication method {:?} is not known here (this side proves with \
                     {METHOD:?})",
                    offer.method
                ),
            ));
        }
        let Some(secret) = credentials.secret_for(hello.role) else {
            return Err(failed());
        };
        let acceptor = AcceptorAuth {
            role: hello.role,
            secret: secret.clone(),
            connector_nonce: offer.nonce.0,
            acceptor_nonce: nonce,
            channel_binding,
        };
        let proof = acceptor.transcript().proof(secret, Side::Acceptor);
        let auth = Auth {
            method: METHOD.into(),
            nonce: bytes32(&nonce),
            proof: Some(bytes32(&proof)),
        };
        Ok((auth, acceptor))
    }

    fn transcript(&self) -> Transcript<'_> {
        Transcript {
            role: self.role,
            connector_nonce: &self.connector_nonce,
            acceptor_nonce: &self.acceptor_nonce,
            channel_binding: self.channel_binding.as_ref().map_or(&[], |b| &b[..]),
        }
    }

    /// Checks the connector's proof (in constant time). On error, send
    /// `error{3003, "authentication failed"}` and close.
    pub fn verify(&self, proof: &AuthProof) -> Result<(), WireError> {
        if self
            .transcript()
            .verify(&self.secret, Side::Connector, &proof.proof.0)
        {
            Ok(())
        } else {
            Err(failed())
        }
    }

    /// The role the connector proved (once [`AcceptorAuth::verify`] passed).
    pub fn role(&self) -> Role {
        self.role
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

    #[test]
    fn the_dashboard_token_is_hmac_sha256_of_its_label() {
        // hmac.new(bytes([7])*32, b"dask-rs dashboard token",
        // "sha256").hexdigest()
        assert_eq!(
            dashboard_token(&Secret::from_bytes([7; 32])),
            "d7f1ce7f1ea2405fb75600225f6eac69b99f8484abdca57f1ea5b535620e3648"
        );
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

    fn hello(role: Role, auth: Option<Auth>) -> Hello {
        let mut h = crate::handshake::offer(role, None);
        h.auth = auth;
        h
    }

    fn secrets() -> Credentials {
        Credentials {
            client: Some(Secret::from_bytes([1; 32])),
            worker: Some(Secret::from_bytes([2; 32])),
        }
    }

    /// The three messages, as `ConnectorAuth` and `AcceptorAuth` make
    /// and check them; the acceptor's error if any step fails.
    fn exchange(
        role: Role,
        connector_secret: Secret,
        acceptor: &Credentials,
        binding: (Option<[u8; 32]>, Option<[u8; 32]>),
    ) -> Result<(), WireError> {
        let connector = ConnectorAuth::new(role, connector_secret, [3; 32]);
        let offer = hello(role, Some(connector.offer()));
        let (auth, pending) = AcceptorAuth::challenge(&offer, acceptor, [4; 32], binding.1)?;
        let mut reply = crate::handshake::offer(Role::Scheduler, None);
        reply.auth = Some(auth);
        reply.tls = Some(binding.1.is_some());
        let proof = connector.answer(&reply, binding.0.as_ref())?;
        pending.verify(&proof)
    }

    #[test]
    fn each_role_proves_its_own_secret_both_ways() {
        let all = secrets();
        let client = all.client.clone().unwrap();
        let worker = all.worker.clone().unwrap();
        exchange(Role::Client, client.clone(), &all, (None, None)).unwrap();
        exchange(Role::Worker, worker.clone(), &all, (None, None)).unwrap();
        exchange(Role::Peer, worker.clone(), &all, (None, None)).unwrap();
        let tls = Some([9; 32]);
        exchange(Role::Client, client.clone(), &all, (tls, tls)).unwrap();
        // A worker's credential cannot pass as a client: the acceptor's
        // proof (made with the client secret) fails at the connector.
        let e = exchange(Role::Client, worker, &all, (None, None)).unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthFailed);
        assert!(e.message.contains("failed to prove"), "{e}");
        // An acceptor without the role's secret refuses it, saying nothing.
        let workers_only = Credentials {
            client: None,
            ..all.clone()
        };
        let e = exchange(Role::Client, client.clone(), &workers_only, (None, None)).unwrap_err();
        assert_eq!(e.message, AUTH_FAILED);
        // Different TLS sessions at the two ends: named as such.
        let e = exchange(Role::Client, client, &all, (Some([9; 32]), None)).unwrap_err();
        assert!(e.message.contains("something between"), "{e}");
    }

    #[test]
    fn a_wrong_proof_or_a_missing_auth_is_refused() {
        let all = secrets();
        let e =
            AcceptorAuth::challenge(&hello(Role::Client, None), &all, [4; 32], None).unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthFailed);
        assert!(e.message.starts_with("authentication required"), "{e}");
        let connector = ConnectorAuth::new(Role::Client, all.client.clone().unwrap(), [3; 32]);
        let (_, pending) = AcceptorAuth::challenge(
            &hello(Role::Client, Some(connector.offer())),
            &all,
            [4; 32],
            None,
        )
        .unwrap();
        let e = pending
            .verify(&AuthProof {
                proof: Bin32([0; 32]),
            })
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::AuthFailed, AUTH_FAILED)
        );
        let mut other = connector.offer();
        other.method = "plaintext".into();
        let e = AcceptorAuth::challenge(&hello(Role::Client, Some(other)), &all, [4; 32], None)
            .unwrap_err();
        assert!(e.message.contains("\"plaintext\" is not known"), "{e}");
        // A reply that proves nothing is not trusted.
        let reply = crate::handshake::offer(Role::Scheduler, None);
        let e = connector.answer(&reply, None).unwrap_err();
        assert!(e.message.contains("did not prove"), "{e}");
    }

    #[test]
    fn nonces_never_repeat_and_follow_their_seed() {
        let mut a = NonceSource::new([5; 32]);
        let mut b = NonceSource::new([5; 32]);
        let first = a.next_nonce();
        assert_ne!(first, a.next_nonce());
        assert_eq!(first, b.next_nonce());
        assert_ne!(first, NonceSource::new([6; 32]).next_nonce());
    }
}
