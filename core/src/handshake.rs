//! The handshake: each side's first message is `hello`; majors must match,
//! both then speak the lower minor and the features both list.

use crate::error::{ErrorCode, WireError};
use crate::messages::{Hello, Role, Version};

/// The protocol name carried in every hello.
pub const PROTOCOL: &str = "dask";

/// The version this crate speaks: dask/1.1 (its additions to 1.0 are
/// optional fields, so a 1.0 peer is served as 1.0; see PROTOCOL.md
/// "Versioning").
pub const VERSION: Version = Version { major: 1, minor: 1 };

/// The feature of the dask/1.1 ops `key-waiting`, `waiting-keys` and
/// `waiting-keys-reply`.
pub const KEY_WAITING: &str = "key-waiting";

/// The feature of the dask/1.1 op `value-part`: values larger than a
/// frame travel in parts ([`crate::parts`]).
pub const VALUE_PARTS: &str = "value-parts";

/// The feature of the dask/1.1 ops `get-value-range` and `value-range`: a
/// worker sends a range of a value's bytes, so a scheduler can relay a
/// large value to a client without holding it whole.
pub const VALUE_RANGES: &str = "value-ranges";

/// The feature of the dask/1.1 ops `data-local` and `value-local-done`
/// and the hello's `local`: peers on one host read large values from each
/// other's memory (spec "Values on one host"). Listed only in peer hellos
/// (worker data connections), and only by a worker whose edge can read a
/// peer's memory, so it is not in [`FEATURES`].
pub const VALUE_LOCAL: &str = "value-local";

/// Optional features this crate supports.
pub const FEATURES: &[&str] = &[KEY_WAITING, VALUE_PARTS, VALUE_RANGES];

/// Whether `features` (a hello's) lists [`VALUE_PARTS`].
pub fn lists_value_parts(features: &Option<Vec<String>>) -> bool {
    features
        .as_deref()
        .is_some_and(|f| f.iter().any(|f| f == VALUE_PARTS))
}

/// Whether `features` (a hello's) lists `feature`.
pub fn lists(features: &Option<Vec<String>>, feature: &str) -> bool {
    features
        .as_deref()
        .is_some_and(|f| f.iter().any(|f| f == feature))
}

/// Whether `features` (a hello's) lists [`VALUE_RANGES`].
pub fn lists_value_ranges(features: &Option<Vec<String>>) -> bool {
    features
        .as_deref()
        .is_some_and(|f| f.iter().any(|f| f == VALUE_RANGES))
}

/// Whether `version` (one both sides speak) has the dask/1.1 additions.
pub fn has_1_1(version: Version) -> bool {
    version.major == 1 && version.minor >= 1
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The version both speak.
    pub version: Version,
    /// The peer's role.
    pub peer_role: Role,
    /// Features both support.
    pub features: Vec<String>,
    /// The id the acceptor gave this connection.
    pub id: Option<u64>,
    /// The peer's name.
    pub peer_name: Option<String>,
}

/// The hello a connecting side sends.
pub fn offer(role: Role, name: Option<String>) -> Hello {
    Hello {
        protocol: PROTOCOL.into(),
        version: VERSION,
        role,
        name,
        id: None,
        features: Some(FEATURES.iter().map(|f| f.to_string()).collect()),
        auth: None,
        tls: None,
        session: None,
        local: None,
    }
}

fn check_protocol(hello: &Hello, ours: Version) -> Result<(), WireError> {
    if hello.protocol != PROTOCOL {
        return Err(WireError::new(
            ErrorCode::BadHandshake,
            format!("protocol {:?} is not {PROTOCOL:?}", hello.protocol),
        ));
    }
    if hello.version.major != ours.major {
        return Err(WireError::new(
            ErrorCode::VersionMismatch,
            format!(
                "peer speaks dask/{}.{}, this side speaks dask/{}.{}",
                hello.version.major, hello.version.minor, ours.major, ours.minor
            ),
        ));
    }
    Ok(())
}

fn common_features(theirs: &Option<Vec<String>>) -> Vec<String> {
    let theirs = theirs.as_deref().unwrap_or(&[]);
    FEATURES
        .iter()
        .filter(|f| theirs.iter().any(|t| t == *f))
        .map(|f| f.to_string())
        .collect()
}

/// The acceptor's side: checks the peer's hello and builds the reply.
/// `allowed` lists the roles this endpoint serves. On error, send
/// `Message::error(&e, None)` and close.
pub fn accept(
    peer: &Hello,
    our_role: Role,
    allowed: &[Role],
    id: u64,
    name: Option<String>,
) -> Result<(Hello, Negotiated), WireError> {
    accept_speaking(VERSION, peer, our_role, allowed, id, name)
}

/// [`accept`] for an endpoint whose highest version is `ours` (the test
/// vectors hold acceptors of several versions to the rules).
pub fn accept_speaking(
    ours: Version,
    peer: &Hello,
    our_role: Role,
    allowed: &[Role],
    id: u64,
    name: Option<String>,
) -> Result<(Hello, Negotiated), WireError> {
    check_protocol(peer, ours)?;
    if !allowed.contains(&peer.role) {
        return Err(WireError::new(
            ErrorCode::BadHandshake,
            format!(
                "role {:?} is not served here: {}",
                peer.role.as_str(),
                what_is_served(our_role, allowed, peer.role)
            ),
        ));
    }
    // Both speak the lower minor.
    let version = Version {
        major: ours.major,
        minor: ours.minor.min(peer.version.minor),
    };
    let features = common_features(&peer.features);
    let reply = Hello {
        protocol: PROTOCOL.into(),
        version,
        role: our_role,
        name,
        id: Some(id),
        features: Some(features.clone()),
        auth: None,
        tls: None,
        session: None,
        local: None,
    };
    let negotiated = Negotiated {
        version,
        peer_role: peer.role,
        features,
        id: Some(id),
        peer_name: peer.name.clone(),
    };
    Ok((reply, negotiated))
}

/// For a refused role: what this endpoint is, what it serves, and where
/// the refused connector should go instead (a client that dialled a
/// worker's data address must learn it reached a worker, not a scheduler).
fn what_is_served(our_role: Role, allowed: &[Role], refused: Role) -> String {
    let served: Vec<String> = allowed
        .iter()
        .map(|r| format!("{:?}", r.as_str()))
        .collect();
    let this = match our_role {
        Role::Scheduler => "this is a dask/1 scheduler".to_string(),
        Role::Worker => "this is a dask/1 worker's data address".to_string(),
        other => format!("this is a dask/1 {}", other.as_str()),
    };
    let instead = match refused {
        Role::Client | Role::Worker => "; clients and workers connect to the scheduler's address",
        Role::Peer => "; peers connect to a worker's data address",
        Role::Scheduler => "; no endpoint serves the scheduler's role",
    };
    format!("{this}, serving {}{instead}", served.join(" and "))
}

/// The connecting side: checks the acceptor's reply to [`offer`].
pub fn check_reply(reply: &Hello, expected_role: Role) -> Result<Negotiated, WireError> {
    check_reply_offered(VERSION, reply, expected_role)
}

/// [`check_reply`] for a connector that offered version `offered`.
pub fn check_reply_offered(
    offered: Version,
    reply: &Hello,
    expected_role: Role,
) -> Result<Negotiated, WireError> {
    check_protocol(reply, offered)?;
    if reply.role != expected_role {
        return Err(WireError::new(
            ErrorCode::BadHandshake,
            format!(
                "expected a {} to answer, got a {}",
                expected_role.as_str(),
                reply.role.as_str()
            ),
        ));
    }
    if reply.version.minor > offered.minor {
        return Err(WireError::new(
            ErrorCode::BadHandshake,
            "reply names a minor version higher than the one offered",
        ));
    }
    Ok(Negotiated {
        version: reply.version,
        peer_role: reply.role,
        features: common_features(&reply.features),
        id: reply.id,
        peer_name: reply.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_minor_wins_and_major_must_match() {
        let mut peer = offer(Role::Worker, None);
        peer.version.minor = 7;
        let (reply, n) = accept(&peer, Role::Scheduler, &[Role::Worker], 3, None).unwrap();
        assert_eq!(reply.version, VERSION);
        assert_eq!(n.id, Some(3));
        assert!(check_reply(&reply, Role::Scheduler).is_ok());
        peer.version.major = 2;
        let e = accept(&peer, Role::Scheduler, &[Role::Worker], 3, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::VersionMismatch);
    }

    #[test]
    fn unserved_role_and_wrong_protocol_are_bad_handshakes() {
        let peer = offer(Role::Client, None);
        let e = accept(&peer, Role::Worker, &[Role::Peer], 1, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadHandshake);
        assert_eq!(
            e.message,
            "role \"client\" is not served here: this is a dask/1 worker's data address, \
             serving \"peer\"; clients and workers connect to the scheduler's address"
        );
        let peer = offer(Role::Peer, None);
        let served = [Role::Client, Role::Worker];
        let e = accept(&peer, Role::Scheduler, &served, 1, None).unwrap_err();
        assert_eq!(
            e.message,
            "role \"peer\" is not served here: this is a dask/1 scheduler, serving \"client\" \
             and \"worker\"; peers connect to a worker's data address"
        );
        let mut other = offer(Role::Peer, None);
        other.protocol = "http".into();
        assert_eq!(
            accept(&other, Role::Worker, &[Role::Peer], 1, None)
                .unwrap_err()
                .code,
            ErrorCode::BadHandshake
        );
    }
}
