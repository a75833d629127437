//! A scripted stand-in for the scheduler: real TCP on 127.0.0.1, one
//! connection, the test reads what the client sent and writes replies.

#![allow(dead_code)]

use std::net::TcpListener;
use std::time::Duration;

use dask_client::{Client, ClientOptions};
use dask_core::handshake;
use dask_core::messages::Role;
use dask_core::Message;
use dask_net::BlockingConn;

/// Generous limit for any single wait: tests never depend on speed.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The scheduler's end of a client connection.
pub struct Mock {
    pub conn: BlockingConn,
}

impl Mock {
    /// The next message the client sent, skipping heartbeats.
    pub fn recv(&mut self) -> Message {
        self.conn
            .recv_until(&mut |m| !matches!(m, Message::Heartbeat(_)))
            .expect("the client sent a message")
    }

    /// Sends messages in one frame.
    pub fn send(&mut self, messages: &[Message]) {
        self.conn.send(messages).expect("send to the client");
    }
}

/// A client connected to a mock scheduler that completed the handshake.
pub fn connect() -> (Client, Mock) {
    connect_with(ClientOptions {
        request_timeout: Some(PATIENCE),
        ..Default::default()
    })
}

/// Like [`connect`] with options.
pub fn connect_with(options: ClientOptions) -> (Client, Mock) {
    connect_speaking(handshake::VERSION, options)
}

/// Like [`connect`], the mock scheduler speaking at most `version` (a
/// dask/1.0 scheduler, say).
pub fn connect_speaking(
    version: dask_core::messages::Version,
    options: ClientOptions,
) -> (Client, Mock) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("tcp://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut conn = BlockingConn::from_stream(stream);
        conn.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let hello = match conn.recv().expect("hello") {
            Message::Hello(h) => h,
            other => panic!("expected hello, got {other:?}"),
        };
        let (reply, _) =
            handshake::accept_speaking(version, &hello, Role::Scheduler, &[Role::Client], 42, None)
                .expect("accept");
        conn.send(&[Message::from(reply)]).expect("reply");
        Mock { conn }
    });
    let client = Client::connect_with(&address, options).expect("connect");
    let mock = server.join().expect("mock thread");
    (client, mock)
}
