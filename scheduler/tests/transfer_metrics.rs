//! Transfer totals end to end, with real processes (issue 13 item 2): a
//! `dask-scheduler` with its dashboard, two `dask-worker`s, and a client
//! whose graph makes a 1 MB value and a 2 MiB one on one worker and needs
//! them on the other (worker restrictions), so they move between them: the
//! small one by the connection, the large one from memory (the workers
//! share a host: `value-local`, issue 19). `/metrics`, read over HTTP with
//! the cluster's token and parsed strictly, counts at least both values'
//! bytes, of which the large one's read from memory, and some seconds
//! fetching; `/api/v1/workers/NAME` shows the same per worker; a stranger
//! gets neither; once the worker that fetched them has left, no counter
//! goes down.
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
/// Over the worker's `LOCAL_VALUE_BYTES_MIN` (1 MiB), so lent by address.
const LOCAL_BYTES: u64 = 2 * 1024 * 1024 + 12_345;

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
        .args([address, "--nthreads", "1", "--name", name])
        // The same-host path is on unless the runner's environment says
        // otherwise.
        .env_remove("DASK_RS_VALUE_LOCAL");
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
    let mut tasks = Vec::new();
    for (blob, size, n) in [
        ("blob", "size", VALUE_BYTES),
        ("big", "big-size", LOCAL_BYTES),
    ] {
        let mut made = task_spec(Key::from(blob), "conformance.bytes", &[Value::from(n)], &[]);
        made.workers = Some(vec!["maker".into()]);
        let mut taken = task_spec(
            Key::from(size),
            "len",
            &[dask_core::msgpack::task_ref_value(blob)],
            &[],
        );
        taken.workers = Some(vec!["taker".into()]);
        tasks.extend([made, taken]);
    }
    let futures = client.submit_tasks(tasks, vec![Key::from("size"), Key::from("big-size")]);
    let got = futures[0].result_timeout(PATIENCE).expect("size's result");
    assert_eq!(got, Value::from(VALUE_BYTES));
    let got = futures[1]
        .result_timeout(PATIENCE)
        .expect("big-size's result");
    assert_eq!(got, Value::from(LOCAL_BYTES));

    // The taker's next heartbeat tells what it fetched.
    let bytes = |m: &BTreeMap<String, f64>| m["dask_worker_transfer_bytes_total"];
    let local = |m: &BTreeMap<String, f64>| m["dask_worker_transfer_local_bytes_total"];
    let seconds = |m: &BTreeMap<String, f64>| m["dask_worker_transfer_seconds_total"];
    let both = (VALUE_BYTES + LOCAL_BYTES) as f64;
    let before = metrics_when(&dashboard, "the transfers in /metrics", |m| {
        bytes(m) >= both && local(m) >= LOCAL_BYTES as f64
    });
    assert!(
        bytes(&before) < 2.0 * both,
        "each value moved once: {before:?}"
    );
    // The 1 MB value came by the connection: not counted as local.
    assert!(
        local(&before) <= bytes(&before) - VALUE_BYTES as f64,
        "{before:?}"
    );
    assert!(seconds(&before) > 0.0, "{before:?}");

    // Per worker: the taker fetched, locally too; the maker fetched nothing.
    let transfers = |name: &str| {
        let body = dashboard.get(&format!("/api/v1/workers/{name}"));
        let worker: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let field = |f: &str| worker["transfers"][f].as_u64();
        (field("bytes"), field("local_bytes"))
    };
    let (taker_bytes, taker_local) = transfers("taker");
    assert!(
        taker_bytes.is_some_and(|b| b as f64 >= both),
        "{taker_bytes:?}"
    );
    assert!(
        taker_local.is_some_and(|b| b >= LOCAL_BYTES && b as f64 <= bytes(&before)),
        "{taker_local:?}"
    );
    assert_eq!(transfers("maker"), (Some(0), Some(0)));

    // A stranger (no token) learns none of it.
    for path in ["/metrics", "/api/v1/workers/taker"] {
        let (status, body) = dashboard.get_as_stranger(path);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(!body.contains("transfer"), "{path}: {body}");
    }

    // The taker leaves; the counters stay.
    assert!(taker.terminate(PATIENCE), "the taker stops on SIGTERM");
    let after = metrics_when(&dashboard, "the taker gone", |m| workers(m) == Some(1.0));
    assert!(bytes(&after) >= bytes(&before), "{before:?} -> {after:?}");
    assert!(local(&after) >= local(&before), "{before:?} -> {after:?}");
    assert!(
        seconds(&after) >= seconds(&before),
        "{before:?} -> {after:?}"
    );
}
