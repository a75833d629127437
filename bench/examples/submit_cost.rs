//! Times the client's side of submitting a large graph alone, no sockets:
//! `ClientSession::submit` (cutting the graph into parts, the key table)
//! and the encoding of every message it queues into frames; and when the
//! first part was queued (from then the Rust client's I/O thread sends it).
//! `cargo run --release -p dask-bench --example submit_cost -- tree 1000000`
//! (shapes of `dask-bench --scale`); a third argument `build` stops once
//! the graph is built. Under callgrind, the inclusive counts of
//! `ClientSession::submit` and `FrameEncoder::push` over the tasks are the
//! client's instructions per task.

use std::time::Instant;

use dask_core::client::{ClientSession, SubmitPlan};
use dask_core::frame::FrameEncoder;
use dask_core::Message;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shape = args.get(1).map_or("tree", String::as_str);
    let n: usize = args.get(2).map_or(1_000_000, |s| s.parse().expect("tasks"));
    let t = Instant::now();
    let (specs, wanted, _) = dask_bench::scale_graph(shape, n);
    let built = t.elapsed();
    if args.get(3).is_some_and(|a| a == "build") {
        // The graph alone: perf stat of this, less that of a full run, is
        // what submitting it costs.
        std::process::exit(0);
    }
    let mut session = ClientSession::new(None, 1);
    let t = Instant::now();
    // As the Rust client does: planned, then handed over part by part (its
    // I/O thread can send the first part from when it is queued).
    let mut plan = SubmitPlan::new(specs, wanted, session.submit_part_bytes());
    let mut first_queued = None;
    while let Some(part) = plan.next_part() {
        session.submit_part(part);
        first_queued.get_or_insert_with(|| t.elapsed());
    }
    let submitted = t.elapsed();
    let t = Instant::now();
    let mut first = None;
    let (mut bytes, mut messages) = (0usize, 0usize);
    while let Some(m) = session.poll_transmit() {
        let mut enc = FrameEncoder::default();
        enc.push(&m).expect("encode");
        enc.finish();
        bytes += enc.take().len();
        messages += 1;
        if matches!(m, Message::UpdateGraph(_)) && first.is_none() {
            first = Some(t.elapsed());
        }
    }
    let encoded = t.elapsed();
    println!(
        "{shape} {n}: built {:.3} s; submit (split, keys) {:.3} s, first part queued at {:.4} s; encode {:.3} s ({messages} messages, {:.0} MB; first part encoded at {:.3} s)",
        built.as_secs_f64(),
        submitted.as_secs_f64(),
        first_queued.map_or(0.0, |d| d.as_secs_f64()),
        encoded.as_secs_f64(),
        bytes as f64 / 1e6,
        first.map_or(0.0, |d| d.as_secs_f64())
    );
    // Not dropped: freeing the graph is not the submission's cost.
    std::process::exit(0);
}
