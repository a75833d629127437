//! Values larger than a frame between real processes (dask/1.1, feature
//! `value-parts`): a scheduler, two workers and a client whose frames are
//! held to 256 KiB (`--frame-bytes-max`, `ClientOptions::frame_bytes_max`),
//! so a value of a few MB crosses every path in a dozen parts as a 1 GB
//! value does with the protocol's 256 MiB frames (which a test cannot
//! afford in memory; `dask-bench --only transfer` moves 1 GB): scatter
//! (client to scheduler to worker), worker-to-worker fetch, and gather
//! (worker to scheduler to client).

mod support;

use dask_client::{Client, ClientOptions, Key, Value};
use dask_core::client::task_spec;
use dask_core::msgpack::task_ref_value;
use support::{Cluster, PATIENCE};

/// The frame limit of every process here.
const FRAME_BYTES_MAX: usize = 256 * 1024;

/// Bytes of the values moved: about a dozen frames' worth.
const VALUE_BYTES: usize = 3_000_000;

#[test]
fn a_value_larger_than_a_frame_goes_in_parts_through_scatter_fetch_and_gather() {
    let limit = FRAME_BYTES_MAX.to_string();
    let limit = ["--frame-bytes-max", &limit];
    let mut cluster = Cluster::start_with(&limit, &[]);
    for name in ["w1", "w2"] {
        cluster.add_worker_with(name, &limit);
    }
    cluster.wait_for_workers(&["w1", "w2"]);
    let client = cluster.client_with(ClientOptions {
        frame_bytes_max: FRAME_BYTES_MAX,
        ..ClientOptions::default()
    });
    let blob: Vec<u8> = (0..VALUE_BYTES).map(|i| (i * 7 % 251) as u8).collect();

    // Scatter: client -> scheduler -> w1, in parts both ways.
    let scattered = client
        .scatter_with(
            vec![Value::Binary(blob.clone())],
            Some(vec!["w1".into()]),
            false,
        )
        .expect("scatter a value of a dozen frames");
    // Gather: w1 -> scheduler -> client.
    assert_eq!(
        client.gather(&scattered).expect("gather it back"),
        vec![Value::Binary(blob.clone())]
    );

    // Worker to worker: w2 fetches it from w1 for `identity`, whose result
    // (on w2 alone) is gathered from w2.
    assert_eq!(
        copy_on_w2(&client, "copy-on-w2", scattered[0].key()),
        Value::Binary(blob)
    );

    // A result made on w1 and used on w2: its length arrives whole.
    let made = Key::from("made-on-w1");
    let mut make = task_spec(
        made.clone(),
        "random_bytes",
        &[Value::from(VALUE_BYTES as u64), Value::from(7)],
        &[],
    );
    make.workers = Some(vec!["w1".into()]);
    let used = Key::from("len-on-w2");
    let mut len = task_spec(used.clone(), "len", &[task_ref_value(made.as_str())], &[]);
    len.workers = Some(vec!["w2".into()]);
    let futures = client.submit_tasks(vec![make, len], vec![made, used]);
    assert_eq!(
        futures[1].result_timeout(PATIENCE).expect("len on w2"),
        Value::from(VALUE_BYTES as u64)
    );
    // And both holders give the same bytes: gather it from w1 (its only
    // holder but w2's replica), then w2 still serves the same value to a
    // task there.
    let Value::Binary(from_gather) = futures[0].result_timeout(PATIENCE).expect("gather") else {
        panic!("random_bytes makes a binary")
    };
    assert_eq!(from_gather.len(), VALUE_BYTES);
    assert_eq!(
        copy_on_w2(&client, "copy-of-made-on-w2", futures[0].key()),
        Value::Binary(from_gather)
    );
}

/// `identity` of `of`'s value, run on w2 (which fetches it if it must),
/// and its result gathered from w2.
fn copy_on_w2(client: &Client, key: &str, of: &Key) -> Value {
    let mut copy = task_spec(
        Key::from(key),
        "identity",
        &[task_ref_value(of.as_str())],
        &[],
    );
    copy.workers = Some(vec!["w2".into()]);
    let copied = client.submit_tasks(vec![copy], vec![Key::from(key)]);
    copied[0].result_timeout(PATIENCE).expect("w2's copy")
}
