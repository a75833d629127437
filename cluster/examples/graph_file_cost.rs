//! Times reading a large graph file, the first thing `dask-rs submit`
//! does, with no cluster: a tree of N tasks (`dask-bench --scale tree N`'s
//! shape, keys `t-LEVEL-I`, the root wanted) encoded as a msgpack graph
//! file in memory, then `graph_file::parse` of it, then the client
//! session's submit of its tasks (cutting them into parts).
//! `cargo run --release -p dask-cluster --example graph_file_cost -- 1000000`

use std::time::Instant;

use dask_core::client::{task_spec, ClientSession};
use dask_core::msgpack::{task_ref_value, WriteBuf};
use dask_core::wire::Wire;
use dask_core::Key;
use rmpv::Value;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |s| s.parse().expect("tasks"));
    let bytes = tree_file(n);
    let t = Instant::now();
    let file = dask_cluster::graph_file::parse(&bytes, true).expect("a valid graph file");
    let parsed = t.elapsed();
    let tasks = file.graph.len();
    let t = Instant::now();
    let mut session = ClientSession::new(None, 1);
    session.submit(file.graph.into_tasks(), file.wanted);
    let submitted = t.elapsed();
    println!(
        "tree {tasks} tasks, {:.0} MB: parse {:.3} s; submit (split, keys) {:.3} s",
        bytes.len() as f64 / 1e6,
        parsed.as_secs_f64(),
        submitted.as_secs_f64()
    );
    // Not dropped: freeing is not the cost measured.
    std::process::exit(0);
}

/// A graph file of a binary reduction over n/2 leaves, leaves first.
fn tree_file(n: usize) -> Vec<u8> {
    let leaves = (n / 2).max(1);
    let name = |level: u32, i: usize| Key::from(format!("t-{level}-{i}"));
    let mut bytes = Vec::with_capacity(16);
    bytes.push(0x82); // a map of 2
    bytes.extend_from_slice(b"\xa5tasks");
    let count_at = bytes.len();
    bytes.push(0xdd); // array 32, its length written at the end
    bytes.extend_from_slice(&[0; 4]);
    let mut count = 0u32;
    let mut tail = Vec::with_capacity(n * 48);
    let mut w = WriteBuf::new(&mut tail);
    for i in 0..leaves {
        task_spec(name(0, i), "inc", &[Value::from(i)], &[]).write(&mut w);
        count += 1;
    }
    let mut level_keys: Vec<Key> = (0..leaves).map(|i| name(0, i)).collect();
    let mut level = 0;
    while level_keys.len() > 1 {
        level += 1;
        let mut next = Vec::with_capacity(level_keys.len().div_ceil(2));
        for (i, pair) in level_keys.chunks(2).enumerate() {
            if let [a, b] = pair {
                let key = name(level, i);
                let args = [task_ref_value(a.as_str()), task_ref_value(b.as_str())];
                task_spec(key.clone(), "add", &args, &[]).write(&mut w);
                count += 1;
                next.push(key);
            } else {
                next.push(pair[0].clone());
            }
        }
        level_keys = next;
    }
    bytes[count_at + 1..count_at + 5].copy_from_slice(&count.to_be_bytes());
    bytes.extend_from_slice(&tail);
    bytes.extend_from_slice(b"\xa6wanted\x91");
    let mut w = WriteBuf::new(&mut bytes);
    level_keys[0].write(&mut w);
    bytes
}
