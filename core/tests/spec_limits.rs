//! The tables of PROTOCOL.md#limits against the constants that enforce them:
//! the protocol's limits and the dask-rs limits core holds (issue 18.2: an
//! implementer met limits the spec did not state). A constant changed
//! without its row, or a row without its constant, fails here. (The limits
//! net holds, such as hello_frame_bytes_max, are net's: core cannot name them.)

use std::path::PathBuf;
use std::time::Duration;

use dask_core::msgpack::{KEY_BYTES_MAX, VALUE_DEPTH_MAX};
use dask_core::wire::{FIELD_DEPTH_MAX, STRUCT_FIELDS_MAX};
use dask_core::worker::{
    BUSY_ANSWERS_MAX, BUSY_RETRY_DELAY_MAX, BUSY_RETRY_DELAY_MIN, CONNECTIONS_MAX, FETCH_TIMEOUT,
    HANDSHAKE_TIMEOUT, HEARTBEAT_INTERVAL_DEFAULT, RECONNECT_DELAY, REPLY_BYTES_IN_FLIGHT_MAX,
    VALUE_BYTES_MAX,
};
use dask_core::FRAME_BYTES_MAX;

/// The rows of the tables under `## Limits`, each as its cells.
fn limit_rows() -> Vec<Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/PROTOCOL.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let start = doc.find("\n## Limits\n").expect("a Limits section");
    let section = &doc[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The value cell of the row whose first cell contains `label`.
fn value_of(rows: &[Vec<String>], label: &str) -> String {
    let matching: Vec<&Vec<String>> = rows.iter().filter(|r| r[0].contains(label)).collect();
    match &matching[..] {
        [row] => row.get(1).cloned().unwrap_or_default(),
        [] => panic!("PROTOCOL.md#limits has no row for {label:?}"),
        _ => panic!("PROTOCOL.md#limits has several rows for {label:?}"),
    }
}

/// Whether `cell` holds `text` not run into other digits (`64` is not in `640`).
fn mentions(cell: &str, text: &str) -> bool {
    cell.match_indices(text).any(|(i, _)| {
        let before = cell[..i].chars().next_back();
        let after = cell[i + text.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

#[test]
fn the_limits_tables_state_the_values_the_code_enforces() {
    let rows = limit_rows();
    let mut problems = Vec::new();
    let mut expect = |label: &str, values: &[String]| {
        let cell = value_of(&rows, label);
        for v in values {
            if !mentions(&cell, v) {
                problems.push(format!("{label}: the code says {v}, the spec {cell:?}"));
            }
        }
    };
    // The protocol's own limits.
    expect("`frame_bytes_max`", &[FRAME_BYTES_MAX.to_string()]);
    expect("`value_bytes_max`", &[VALUE_BYTES_MAX.to_string()]);
    expect("key length", &[KEY_BYTES_MAX.to_string()]);
    expect("value depth", &[VALUE_DEPTH_MAX.to_string()]);
    expect("field depth", &[FIELD_DEPTH_MAX.to_string()]);
    expect("struct map entries", &[STRUCT_FIELDS_MAX.to_string()]);
    expect("handshake time", &[seconds(HANDSHAKE_TIMEOUT)]);
    expect("heartbeat interval", &[millis(HEARTBEAT_INTERVAL_DEFAULT)]);
    // dask-rs's limits a peer can see, those core holds.
    expect(
        "peer connections of a worker",
        &[CONNECTIONS_MAX.to_string()],
    );
    expect(
        "`data` bytes a worker has queued",
        &[format!("{} MiB", REPLY_BYTES_IN_FLIGHT_MAX >> 20)],
    );
    expect(
        "a worker's wait for a holder's reply",
        &[seconds(FETCH_TIMEOUT)],
    );
    expect(
        "a worker's retries on `busy`",
        &[
            millis(BUSY_RETRY_DELAY_MIN),
            seconds(BUSY_RETRY_DELAY_MAX),
            format!("{BUSY_ANSWERS_MAX} `busy`"),
        ],
    );
    expect(
        "a worker's reconnection after losing the scheduler",
        &[seconds(RECONNECT_DELAY)],
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// PROTOCOL.md#value-too-large gives the reason for the margin: a value alone
// in a message under any key fits in a frame. PROTOCOL.md#busy: the busy bound
// SHOULD be at least value_bytes_max, so that any one value can be served.
// Both hold at compile time.
const _: () = assert!(VALUE_BYTES_MAX == FRAME_BYTES_MAX - 65536);
const _: () = assert!(REPLY_BYTES_IN_FLIGHT_MAX >= VALUE_BYTES_MAX);

#[test]
fn a_number_is_mentioned_only_as_a_whole() {
    assert!(mentions("a 512 MiB b", "512 MiB"));
    assert!(!mentions("1512 MiB", "512 MiB"));
    assert!(!mentions("4096", "409"));
}
