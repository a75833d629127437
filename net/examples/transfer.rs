//! The connection layer alone moving large values: a server [`Reactor`]
//! holding one value of N bytes answers `get-data` requests from a client
//! [`Reactor`] on another thread, over loopback TCP, as a worker serves a
//! peer. No scheduler, no executor: this is the I/O path's own speed (the
//! `transfer` shape of `bench/` measures a whole worker-to-worker fetch).
//!
//! `cargo run --release -p dask-net --example transfer [MB...]`
//! (default 10 100), prints the best of 10 fetches per size in MB/s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dask_core::handshake;
use dask_core::messages::{Data, GetData, Role};
use dask_core::{Key, Message, RawValue};
use dask_net::{NetEvent, Reactor, ReactorConfig};

const FETCHES: usize = 10;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a size in MB"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100]
    } else {
        sizes
    };
    for mb in sizes {
        let bytes = mb * 1_000_000;
        println!("{mb} MB: {:.0} MB/s", fetch_rate(bytes));
    }
}

/// Best MB/s of [`FETCHES`] fetches of a value of `bytes` bytes.
fn fetch_rate(bytes: usize) -> f64 {
    let value = RawValue::from_value(&rmpv::Value::Binary(
        (0..bytes).map(|i| (i % 251) as u8).collect(),
    ));
    let mut server = Reactor::new(ReactorConfig::default()).expect("reactor");
    let listener = server
        .listen("127.0.0.1:0".parse().unwrap())
        .expect("listen");
    let addr = server.local_addr(listener).expect("address");
    let stop = server.waker();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server_done = std::sync::Arc::clone(&done);
    let serving = std::thread::spawn(move || {
        while !server_done.load(std::sync::atomic::Ordering::SeqCst) {
            server.poll(None).expect("poll");
            while let Some(event) = server.next_event() {
                let NetEvent::Frame { conn, messages } = event else {
                    continue;
                };
                for m in messages {
                    if let Message::GetData(get) = m {
                        let reply = Message::Data(Data {
                            request: get.request,
                            data: BTreeMap::from([(Key::from("x"), value.clone())]),
                            missing: vec![],
                        });
                        server.send(conn, &reply).expect("fits a frame");
                    }
                }
            }
        }
    });

    let mut client = Reactor::new(ReactorConfig::default()).expect("reactor");
    let conn = client.connect(addr);
    client
        .send(conn, &Message::from(handshake::offer(Role::Peer, None)))
        .unwrap();
    client.end_frame(conn);
    let mut best = 0f64;
    for request in 0..FETCHES as u64 {
        let start = Instant::now();
        let get = Message::GetData(GetData {
            request,
            keys: vec![Key::from("x")],
        });
        client.send(conn, &get).unwrap();
        let got = 'wait: loop {
            client
                .poll(Some(Instant::now() + Duration::from_secs(30)))
                .expect("poll");
            while let Some(event) = client.next_event() {
                match event {
                    NetEvent::Frame { messages, .. } => {
                        for m in messages {
                            if let Message::Data(d) = m {
                                break 'wait d;
                            }
                        }
                    }
                    NetEvent::ConnectFailed { error, .. } => panic!("connect: {error}"),
                    NetEvent::Closed { reason, .. } => panic!("closed: {reason:?}"),
                    _ => {}
                }
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(got.data[&Key::from("x")].as_bytes().len(), bytes + 5);
        best = best.max(bytes as f64 / seconds / 1e6);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    stop.wake().unwrap();
    serving.join().unwrap();
    best
}
