//! Measures how many tiny tasks per second one worker turns around, with
//! this program playing the scheduler on 127.0.0.1:
//!
//! - `burst`: all tasks sent at once (the worker's own ceiling);
//! - `window`: at most 2 x nthreads tasks in flight, as the scheduler's
//!   placement allows (bounded by round trips).
//!
//! `cargo run --release -p dask-worker --example worker_throughput [TASKS]`

use std::net::TcpListener;
use std::time::{Duration, Instant};

use dask_core::handshake;
use dask_core::messages::{ComputeTask, Role, WorkerRegistered};
use dask_core::{Key, Message, RawValue};
use dask_net::BlockingConn;
use dask_worker::{WorkerConfig, WorkerHandle};

fn task(i: usize) -> Message {
    Message::ComputeTask(ComputeTask {
        key: Key(format!("inc-{i}")),
        function: "inc".into(),
        args: RawValue::from_value(&rmpv::Value::Array(vec![rmpv::Value::from(i as u64)])),
        kwargs: None,
        who_has: Default::default(),
        priority: None,
        resources: None,
    })
}

/// The scheduler's side, reading with one reused buffer (BlockingConn
/// allocates per message, which would dominate this measurement).
struct Harness {
    stream: std::net::TcpStream,
    decoder: dask_core::FrameDecoder,
    buf: Vec<u8>,
}

impl Harness {
    fn new(conn: BlockingConn) -> Harness {
        Harness {
            stream: conn.stream().try_clone().unwrap(),
            decoder: dask_core::FrameDecoder::default(),
            buf: vec![0; 1 << 20],
        }
    }

    fn send(&mut self, messages: &[Message]) -> std::io::Result<()> {
        use std::io::Write;
        self.stream
            .write_all(&dask_core::frame::encode_frame(messages).unwrap())
    }

    /// Blocks for at least one frame; returns how many tasks it finished.
    fn finished(&mut self) -> usize {
        use std::io::Read;
        loop {
            let mut count = 0;
            let mut frames = 0;
            while let Some(frame) = self.decoder.poll().unwrap() {
                frames += 1;
                count += frame
                    .iter()
                    .filter(|m| matches!(m, Message::TaskFinished(_) | Message::TaskErred(_)))
                    .count();
            }
            if frames > 0 {
                return count;
            }
            let n = self.stream.read(&mut self.buf).unwrap();
            assert!(n > 0, "worker closed");
            self.decoder.push(&self.buf[..n]);
        }
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let accept = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut conn = BlockingConn::from_stream(stream);
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let Message::Hello(hello) = conn.recv().unwrap() else {
            panic!()
        };
        let (reply, _) =
            handshake::accept(&hello, Role::Scheduler, &[Role::Worker], 1, None).unwrap();
        conn.send(&[Message::from(reply)]).unwrap();
        let _ = conn.recv().unwrap();
        conn.send(&[Message::WorkerRegistered(WorkerRegistered {
            id: 1,
            heartbeat_interval_ms: 1000,
            inline_bytes_max: None,
        })])
        .unwrap();
        conn
    });
    let worker = WorkerHandle::start(WorkerConfig {
        scheduler: address,
        nthreads: 1,
        ..WorkerConfig::default()
    })
    .unwrap();
    let mut conn = Harness::new(accept.join().unwrap());

    let started = Instant::now();
    let batch: Vec<Message> = (0..n).map(task).collect();
    for chunk in batch.chunks(10_000) {
        conn.send(chunk).unwrap();
    }
    let mut finished = 0;
    while finished < n {
        finished += conn.finished();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "burst:  {n} tasks in {secs:.3} s = {:.0} tasks/s",
        n as f64 / secs
    );

    let window = 2;
    let started = Instant::now();
    let mut sent = 0;
    conn.send(&(n..n + window).map(task).collect::<Vec<_>>())
        .unwrap();
    sent += window;
    let mut finished = 0;
    while finished < n {
        let now = conn.finished();
        finished += now;
        let more = now.min(n - sent);
        if more > 0 {
            conn.send(&(n + sent..n + sent + more).map(task).collect::<Vec<_>>())
                .unwrap();
            sent += more;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "window: {n} tasks in {secs:.3} s = {:.0} tasks/s (2 in flight)",
        n as f64 / secs
    );
    worker.stop();
}
