//! A scheduler that requires credentials, over TCP and over TLS, with
//! the Rust client: the holder of the client secret is served; a stranger,
//! a worker's credential and another cluster's secret are refused, each
//! with a message saying what happened, while the scheduler keeps serving.

use std::time::Duration;

use dask_client::{Client, ClientOptions};
use dask_core::auth::Credentials;
use dask_net::tls::ClusterCa;
use dask_net::{credentials, TlsConfig, TlsPem};
use dask_scheduler::{SchedulerConfig, SchedulerHandle};

fn options(credentials: Option<Credentials>, tls: Option<TlsConfig>) -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(20),
        credentials,
        tls,
        ..ClientOptions::default()
    }
}

fn connect_error(address: &str, options: ClientOptions) -> String {
    match Client::connect_with(address, options) {
        Ok(_) => panic!("connected without the right credentials"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn only_the_client_secret_gets_in_and_the_scheduler_keeps_serving() {
    let cluster = credentials::generate();
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        validate: true,
        credentials: Some(cluster.clone()),
        ..SchedulerConfig::default()
    })
    .unwrap();
    let address = scheduler.address();
    let member = Client::connect_with(&address, options(Some(cluster.clone()), None))
        .expect("the client secret gets in");
    assert!(member.cluster_info().is_ok());

    let e = connect_error(&address, options(None, None));
    assert!(e.contains("authentication required"), "{e}");

    // A worker's credential holds no client secret: it cannot even offer.
    let worker_only = credentials::for_role(&cluster, dask_core::messages::Role::Worker);
    let e = connect_error(&address, options(worker_only, None));
    assert!(e.contains("authentication required"), "{e}");

    let e = connect_error(&address, options(Some(credentials::generate()), None));
    assert!(e.contains("failed to prove"), "{e}");

    assert!(
        member.cluster_info().is_ok(),
        "still serving its own client"
    );
    drop(member);
    scheduler.stop();
}

#[test]
fn over_tls_with_a_cluster_ca_and_credentials() {
    let cluster = credentials::generate();
    let ca = ClusterCa::generate().unwrap();
    let member_tls = || {
        let cert = ca.issue(&[], 24).unwrap();
        TlsConfig::from_pem(&TlsPem {
            ca: Some(ca.cert_pem()),
            cert: Some(cert.cert),
            key: Some(cert.key),
        })
        .unwrap()
    };
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        credentials: Some(cluster.clone()),
        tls: Some(member_tls()),
        ..SchedulerConfig::default()
    })
    .unwrap();
    let address = scheduler.address();
    assert!(address.starts_with("tls://"), "{address}");
    let client = Client::connect_with(&address, options(Some(cluster.clone()), Some(member_tls())))
        .expect("a member connects over TLS");
    assert!(client.cluster_info().is_ok());

    // A plain client at the TLS address is told so.
    let plain = address.replacen("tls://", "tcp://", 1);
    let e = connect_error(&plain, options(Some(cluster.clone()), None));
    assert!(e.contains("this address speaks TLS"), "{e}");

    // A certificate of another CA is refused in one line.
    let stranger = ClusterCa::generate().unwrap().issue(&[], 24).unwrap();
    let e = connect_error(
        &address,
        options(
            Some(cluster),
            Some(
                TlsConfig::from_pem(&TlsPem {
                    ca: Some(ca.cert_pem()),
                    cert: Some(stranger.cert),
                    key: Some(stranger.key),
                })
                .unwrap(),
            ),
        ),
    );
    assert!(e.contains("refused this side's certificate"), "{e}");
    drop(client);
    scheduler.stop();
}
