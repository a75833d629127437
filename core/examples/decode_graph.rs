//! Times encoding and decoding an update-graph the size of the benchmark's
//! tree (65,536 leaves): `cargo run --release -p dask-core --example
//! decode_graph [LEAVES]`.

use std::time::Instant;

use dask_core::messages::{TaskSpec, UpdateGraph};
use dask_core::msgpack::task_ref_value;
use dask_core::{frame, Key, Message, RawValue};

fn main() {
    let leaves: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(65_536);
    let name = |level: u32, i: usize| format!("tree-1-{level}-{i}");
    let spec = |key: String, function: &str, args: Vec<rmpv::Value>| TaskSpec {
        key: Key(key),
        function: function.into(),
        args: RawValue::from_value(&rmpv::Value::Array(args)),
        kwargs: None,
        priority: None,
        resources: None,
        retries: None,
        workers: None,
    };
    let mut tasks: Vec<TaskSpec> = (0..leaves)
        .map(|i| spec(name(0, i), "inc", vec![rmpv::Value::from(i)]))
        .collect();
    let (mut level, mut width) = (0, leaves);
    while width > 1 {
        for i in 0..width / 2 {
            let args = vec![
                task_ref_value(&name(level, 2 * i)),
                task_ref_value(&name(level, 2 * i + 1)),
            ];
            tasks.push(spec(name(level + 1, i), "add", args));
        }
        level += 1;
        width /= 2;
    }
    let n = tasks.len();
    let message = Message::UpdateGraph(UpdateGraph {
        request: 1,
        tasks,
        wanted: vec![Key(name(level, 0))],
    });
    for _ in 0..5 {
        let start = Instant::now();
        let bytes = frame::encode_frame(std::slice::from_ref(&message)).expect("encode");
        let encoded = start.elapsed();
        let start = Instant::now();
        let mut decoder = frame::FrameDecoder::default();
        decoder.push(&bytes);
        let decoded = decoder.poll().expect("decode").expect("a frame");
        let elapsed = start.elapsed();
        assert_eq!(decoded.len(), 1);
        println!(
            "{n} tasks, {} bytes: encode {:.0} ns/task, decode {:.0} ns/task",
            bytes.len(),
            encoded.as_nanos() as f64 / n as f64,
            elapsed.as_nanos() as f64 / n as f64
        );
    }
}
