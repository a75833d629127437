//! Authentication (spec: "Authentication"): nothing a connection sends
//! is acted on before its proof, each role proves its own secret, and a
//! refusal says nothing beyond 3003.

use dask_core::auth::{AuthConfig, ConnectorAuth, Credentials, Secret, AUTH_FAILED};

use dask_core::WireError;

use super::*;

fn credentials() -> Credentials {
    Credentials {
        client: Some(Secret::from_bytes([1; 32])),
        worker: Some(Secret::from_bytes([2; 32])),
    }
}

fn sim() -> Sim {
    Sim::with_config(SchedulerStateConfig {
        validate: true,
        auth: Some(AuthConfig {
            credentials: credentials(),
            nonce_seed: [9; 32],
        }),
        ..SchedulerStateConfig::default()
    })
}

/// A connection that offers to prove `secret` as `role`: its hello sent,
/// the scheduler's reply checked; the proof it answers with.
fn offer(sim: &mut Sim, role: Role, secret: Secret) -> (ConnId, Result<AuthProof, WireError>) {
    let c = sim.connect();
    let auth = ConnectorAuth::new(role, secret, [7; 32]);
    let mut hello = handshake::offer(role, Some("w".into()));
    hello.auth = Some(auth.offer());
    sim.send(c, hello);
    let got = sim.recv(c);
    let [Message::Hello(reply)] = &got[..] else {
        panic!("expected the reply, got {got:?}")
    };
    (c, auth.answer(reply, None))
}

fn refused_with(sim: &mut Sim, c: ConnId) -> ErrorReport {
    let got = sim.recv(c);
    assert!(sim.is_closed(c), "closed after {got:?}");
    match &got[..] {
        [Message::ErrorReport(e)] => {
            assert_eq!((e.code, e.fatal), (3003, true));
            e.clone()
        }
        other => panic!("expected one 3003, got {other:?}"),
    }
}

#[test]
fn a_client_that_proves_the_client_secret_is_served() {
    let mut sim = sim();
    let (c, proof) = offer(&mut sim, Role::Client, Secret::from_bytes([1; 32]));
    sim.send(c, proof.expect("the scheduler proved the secret"));
    sim.send(c, ClusterInfo { request: 1 });
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::ClusterInfoReply(r)] if r.request == 1),
        "{got:?}"
    );
}

#[test]
fn a_stranger_without_auth_is_refused_before_anything() {
    let mut sim = sim();
    let c = sim.connect();
    // The hello and a pipelined request in one frame: only the refusal comes.
    sim.send_frame(
        c,
        vec![
            handshake::offer(Role::Client, None).into(),
            ClusterInfo { request: 1 }.into(),
        ],
    );
    let e = refused_with(&mut sim, c);
    assert!(
        e.message.starts_with("authentication required"),
        "{}",
        e.message
    );
}

#[test]
fn nothing_is_acted_on_before_the_proof_and_a_wrong_one_says_only_3003() {
    let mut sim = sim();
    // A request where the proof is due: refused, not answered.
    let (c, _) = offer(&mut sim, Role::Client, Secret::from_bytes([1; 32]));
    sim.send(c, ClusterInfo { request: 1 });
    assert_eq!(refused_with(&mut sim, c).message, AUTH_FAILED);
    // A made-up proof.
    let (c, _) = offer(&mut sim, Role::Client, Secret::from_bytes([1; 32]));
    sim.send(
        c,
        AuthProof {
            proof: Bin32([0; 32]),
        },
    );
    assert_eq!(refused_with(&mut sim, c).message, AUTH_FAILED);
    // Silent past the handshake timeout after the reply: closed.
    let (c, _) = offer(&mut sim, Role::Client, Secret::from_bytes([1; 32]));
    sim.advance(Duration::from_secs(11));
    assert!(sim.is_closed(c));
}

#[test]
fn a_worker_credential_cannot_submit_and_a_client_one_cannot_register() {
    let mut sim = sim();
    // The worker secret, claiming role client: the scheduler's proof (made
    // with the client secret) does not check out, so the connector stops.
    let (c, proof) = offer(&mut sim, Role::Client, Secret::from_bytes([2; 32]));
    let e = proof.unwrap_err();
    assert!(e.message.contains("failed to prove"), "{e}");
    // A proof sent anyway (it cannot make the client one): refused.
    sim.send(
        c,
        AuthProof {
            proof: Bin32([1; 32]),
        },
    );
    assert_eq!(refused_with(&mut sim, c).message, AUTH_FAILED);
    // The client secret, claiming role worker: likewise.
    let (_, proof) = offer(&mut sim, Role::Worker, Secret::from_bytes([1; 32]));
    assert!(proof.is_err());
    // The worker secret as a worker: registered.
    let (w, proof) = offer(&mut sim, Role::Worker, Secret::from_bytes([2; 32]));
    sim.send(w, proof.unwrap());
    sim.send(
        w,
        RegisterWorker {
            name: "w".into(),
            address: address("w"),
            nthreads: 1,
            memory_limit: None,
            resources: None,
            functions: vec!["inc".into()],
            pid: None,
            held: None,
        },
    );
    let got = sim.recv(w);
    assert!(
        matches!(&got[..], [Message::WorkerRegistered(_), ..]),
        "{got:?}"
    );
}
