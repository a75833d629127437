//! Transfer totals end to end, with real processes (issue 13 item 2): a
//! `dask-scheduler` with its dashboard, two `dask-worker`s, and a client
//! whose graph makes a 1 MB value on one worker and needs it on the other
//! (worker restrictions), so it moves between them. `/metrics`, read over
//! HTTP with the cluster's token and parsed strictly, counts at least the
//! value's bytes and some seconds fetching; once the worker that fetched
//! it has left, neither counter goes down.
//!
//! Behaviour, not speed: every wait has a deadline, no time is asserted.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use dask_client::{Client, Key, Value};
use dask_core::client::task_spec;
use dask_testkit::home::{Dashboard, DaskHome};
use dask_testkit::process::{binary, Process};

const PATIENCE: Duration = Duration::from_secs(60);
const VALUE_BYTES: u64 = 1_000_000;

/// The samples of an exposition, by series (`name` or `name{labels}`),
/// parsed strictly: every line is a `# HELP`, a `# TYPE` or a sample of the
/// family last typed, every value a number, no series twice.
fn parse(exposition: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed: Option<(String, String)> = None;
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.contains(' '), "a HELP without text: {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE NAME KIND");
            assert!(
                ["counter", "gauge"].contains(&kind),
                "unknown type: {line:?}"
            );
            typed = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample: SERIES VALUE");
        let name = series.split('{').next().unwrap_or_default();
        let (family, kind) = typed.as_ref().expect("a sample before any # TYPE");
        assert_eq!(name, family, "a sample outside its family: {line:?}");
        if kind == "counter" {
            assert!(name.ends_with("_total"), "a counter without _total: {name}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("{e}: not a number in {line:?}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

/// The metrics once `ready` holds for them.
fn metrics_when(
    dashboard: &Dashboard,
    what: &str,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = parse(&dashboard.get("/metrics"));
        if ready(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} did not happen: {m:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_worker(home: &DaskHome, address: &str, name: &str) -> Process {
    let mut cmd = Command::new(binary("dask-worker"));
    home.apply(&mut cmd)
        .args([address, "--nthreads", "1", "--name", name]);
    Process::spawn(&format!("dask-worker {name}"), &mut cmd)
}

#[test]
fn a_value_moved_between_workers_counts_in_the_transfer_counters_which_never_go_down() {
    let home = DaskHome::new();
    let args = ["--host", "127.0.0.1", "--port", "0"];
    let (_scheduler, address, dashboard) = home.start_scheduler_with_dashboard(&args, PATIENCE);
    assert!(!dashboard.token.is_empty(), "a cluster with credentials");
    let _maker = start_worker(&home, &address, "maker");
    let mut taker = start_worker(&home, &address, "taker");
    let workers = |m: &BTreeMap<String, f64>| m.get("dask_scheduler_workers").copied();
    metrics_when(&dashboard, "two workers", |m| workers(m) == Some(2.0));

    let client = Client::connect_with(&address, home.client_options()).expect("client");
    let mut blob = task_spec(
        Key::from("blob"),
        "conformance.bytes",
        &[Value::from(VALUE_BYTES)],
        &[],
    );
    blob.workers = Some(vec!["maker".into()]);
    let mut size = task_spec(
        Key::from("size"),
        "len",
        &[dask_core::msgpack::task_ref_value("blob")],
        &[],
    );
    size.workers = Some(vec!["taker".into()]);
    let futures = client.submit_tasks(vec![blob, size], vec![Key::from("size")]);
    let got = futures[0].result_timeout(PATIENCE).expect("size's result");
    assert_eq!(got, Value::from(VALUE_BYTES));

    // The taker's next heartbeat tells what it fetched.
    let bytes = |m: &BTreeMap<String, f64>| m["dask_worker_transfer_bytes_total"];
    let seconds = |m: &BTreeMap<String, f64>| m["dask_worker_transfer_seconds_total"];
    let before = metrics_when(&dashboard, "the transfer in /metrics", |m| {
        bytes(m) >= VALUE_BYTES as f64
    });
    assert!(
        bytes(&before) < 2.0 * VALUE_BYTES as f64,
        "one value moved once: {before:?}"
    );
    assert!(seconds(&before) > 0.0, "{before:?}");

    // The taker leaves; the counters stay.
    assert!(taker.terminate(PATIENCE), "the taker stops on SIGTERM");
    let after = metrics_when(&dashboard, "the taker gone", |m| workers(m) == Some(1.0));
    assert!(bytes(&after) >= bytes(&before), "{before:?} -> {after:?}");
    assert!(
        seconds(&after) >= seconds(&before),
        "{before:?} -> {after:?}"
    );
}
