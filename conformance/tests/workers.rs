//! The runner against every worker we ship and against broken fixtures.
//!
//! - dask-rs's `dask-worker` passes every case (MUST and SHOULD).
//! - `fixtures/pyworker.py` (a dask/1 worker in pure Python) passes every
//!   case too, but for the same-host cases (`dask-1/local/*`): it does not
//!   offer that optional feature (dask/1.1 `value-local`), so they are
//!   skipped as not applicable, where `dask-worker` runs and passes them.
//! - Each of its `--fault`s fails exactly the cases aimed at that fault and
//!   passes all others, which shows the runner catches those faults. The
//!   fault runs skip the two 64 MiB cases (`--skip dask-1/large`): they
//!   take seconds and test nothing a fault touches.
//!
//! The runs go in parallel (`DASK_CONFORMANCE_JOBS`, default 3): cases
//! mostly wait on sleeps and timeouts, not on the CPU. Each run is a
//! `dask-conformance worker` process with a JSON report, so this test
//! reads the same output a third party's CI would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A run taking longer than this is killed and fails the test (every
/// step of every case is bounded, so this only catches a runner bug).
const RUN_DEADLINE: Duration = Duration::from_secs(600);

fn runner() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dask-conformance"))
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds `dask-worker` into the target directory this test was built in
/// (a no-op when it is fresh, as after `cargo test --workspace`).
fn dask_worker() -> PathBuf {
    let profile_dir = runner()
        .parent()
        .expect("the runner sits in a profile directory")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("profile directory in a target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "dask-worker", "--bin", "dask-worker"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(manifest_dir().join(".."));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build for dask-worker");
    assert!(status.success(), "cargo build -p dask-worker failed");
    let exe = profile_dir.join(format!("dask-worker{}", std::env::consts::EXE_SUFFIX));
    assert!(exe.exists(), "{} was not built", exe.display());
    exe
}

fn python() -> String {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.into();
        }
    }
    panic!("the Python fixture worker needs python3 on PATH");
}

/// One runner invocation and what it must give.
struct Run {
    name: String,
    args: Vec<String>,
    worker: Vec<String>,
    /// Case IDs that must fail; every other case run must pass.
    must_fail: BTreeSet<String>,
    /// Case IDs that must be skipped as not applicable (an optional
    /// feature the worker does not offer).
    not_applicable: BTreeSet<String>,
}

/// What a run gave.
struct Ran {
    name: String,
    exit: Option<i32>,
    last_line: String,
    failed: BTreeSet<String>,
    not_applicable: BTreeSet<String>,
    passed: usize,
    output: String,
    seconds: f64,
}

fn play(run: &Run, report: &Path) -> Ran {
    let started = Instant::now();
    let mut cmd = Command::new(runner());
    cmd.arg("worker")
        .args(&run.args)
        .arg("--report")
        .arg(report)
        .arg("--")
        .args(&run.worker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // dask-worker offers value-local unless this says otherwise.
        .env_remove("DASK_RS_VALUE_LOCAL");
    let mut child = cmd.spawn().expect("start dask-conformance");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out = thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait for dask-conformance") {
            break status.code();
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    let report: serde_json::Value = std::fs::read_to_string(report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut failed = BTreeSet::new();
    let mut not_applicable = BTreeSet::new();
    let mut passed = 0;
    for case in report["cases"].as_array().into_iter().flatten() {
        let id = case["id"].as_str().unwrap_or_default().to_owned();
        match case["status"].as_str() {
            Some("fail") => {
                failed.insert(id);
            }
            Some("pass") => passed += 1,
            Some("skip")
                if case["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("not applicable")) =>
            {
                not_applicable.insert(id);
            }
            _ => {}
        }
    }
    Ran {
        name: run.name.clone(),
        exit,
        last_line: output.lines().last().unwrap_or_default().to_owned(),
        failed,
        not_applicable,
        passed,
        output,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| format!("dask-1/{s}")).collect()
}

/// The same-host cases, for a worker that does not offer `value-local`.
fn local_cases() -> BTreeSet<String> {
    (1..=10).map(|n| format!("dask-1/local/{n}")).collect()
}

#[test]
fn shipped_workers_pass_and_broken_fixtures_fail_exactly_their_cases() {
    let rust_worker = dask_worker();
    let py = python();
    let fixture = manifest_dir().join("fixtures/pyworker.py");
    let fixture = fixture.to_string_lossy().into_owned();
    let pyworker = |fault: &str| {
        vec![
            py.clone(),
            fixture.clone(),
            "{scheduler}".into(),
            "--nthreads".into(),
            "{nthreads}".into(),
            "--fault".into(),
            fault.into(),
        ]
    };
    let skip_large = vec!["--skip".to_string(), "dask-1/large".to_string()];
    let mut runs = vec![
        Run {
            name: "dask-worker (Rust)".into(),
            args: vec!["--strict".into()],
            worker: vec![
                rust_worker.to_string_lossy().into_owned(),
                "{scheduler}".into(),
                "--nthreads".into(),
                "{nthreads}".into(),
            ],
            must_fail: BTreeSet::new(),
            not_applicable: BTreeSet::new(),
        },
        Run {
            name: "pyworker.py".into(),
            args: vec!["--strict".into()],
            worker: pyworker("none"),
            must_fail: BTreeSet::new(),
            not_applicable: local_cases(),
        },
    ];
    let faults: [(&str, &[&str]); 4] = [
        (
            "wrong-results",
            &["compute/2", "compute/3", "compute/6", "deps/1", "deps/6"],
        ),
        (
            "no-heartbeats",
            &["heartbeat/1", "heartbeat/2", "heartbeat/3", "heartbeat/4"],
        ),
        (
            "fetch-via-scheduler",
            &[
                "deps/1", "deps/2", "deps/3", "deps/4", "deps/5", "deps/7", "deps/8", "deps/9",
                "deps/10", "deps/12",
                // These need a fetch from the runner's peer to see whether
                // the worker offers value-local there: none comes.
                "local/4", "local/5", "local/6", "local/8", "local/10",
            ],
        ),
        (
            "ignore-nthreads",
            &["threads/1", "steal/1", "data/6", "threads/3"],
        ),
    ];
    for (fault, failing) in faults {
        let must_fail = ids(failing);
        runs.push(Run {
            name: format!("pyworker.py --fault {fault}"),
            args: skip_large.clone(),
            worker: pyworker(fault),
            not_applicable: local_cases().difference(&must_fail).cloned().collect(),
            must_fail,
        });
    }

    let jobs: usize = std::env::var("DASK_CONFORMANCE_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .filter(|j| *j > 0)
        .unwrap_or(3);
    let reports =
        std::env::temp_dir().join(format!("dask-conformance-test-{}", std::process::id()));
    std::fs::create_dir_all(&reports).expect("create report directory");
    let runs = Arc::new(runs);
    let next = Arc::new(Mutex::new(0usize));
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (runs, next, results, reports) =
                (runs.clone(), next.clone(), results.clone(), reports.clone());
            thread::spawn(move || loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(run) = runs.get(i) else { return };
                let ran = play(run, &reports.join(format!("run-{i}.json")));
                results.lock().unwrap().push((i, ran));
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a run thread panicked");
    }
    let _ = std::fs::remove_dir_all(&reports);

    let mut results = std::mem::take(&mut *results.lock().unwrap());
    results.sort_by_key(|(i, _)| *i);
    let mut problems = Vec::new();
    for (i, ran) in &results {
        let run = &runs[*i];
        println!(
            "{}: {} (exit {:?}, {:.1} s)",
            ran.name, ran.last_line, ran.exit, ran.seconds
        );
        let trouble = if ran.passed == 0 {
            Some("no case passed (did the runner start?)".to_string())
        } else if ran.not_applicable != run.not_applicable {
            Some(format!(
                "skipped as not applicable: {:?}, expected {:?}",
                ran.not_applicable, run.not_applicable
            ))
        } else if ran.failed != run.must_fail {
            let unexpected: Vec<_> = ran.failed.difference(&run.must_fail).collect();
            let missed: Vec<_> = run.must_fail.difference(&ran.failed).collect();
            Some(format!(
                "failed unexpectedly: {unexpected:?}; should have failed but passed: {missed:?}"
            ))
        } else if !ran
            .last_line
            .ends_with(&format!("{} failed", run.must_fail.len()))
        {
            Some(format!("last line is {:?}", ran.last_line))
        } else if run.must_fail.is_empty() && ran.exit != Some(0) {
            Some(format!("exit status {:?}, expected 0", ran.exit))
        } else if !run.must_fail.is_empty() && ran.exit != Some(1) {
            Some(format!("exit status {:?}, expected 1", ran.exit))
        } else {
            None
        };
        if let Some(t) = trouble {
            problems.push(format!("{}: {t}\n{}", ran.name, ran.output));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
