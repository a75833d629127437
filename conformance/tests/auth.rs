//! `dask-conformance worker --auth` (dask/1.1 authentication): against a
//! worker holding the secret the runner gives it, every case runs with
//! proofs on every connection and the auth cases pass; a worker holding
//! another cluster's secret fails them; without `--auth` the auth cases are
//! skipped. The worker is `examples/auth_worker.rs` (the dask-rs worker
//! library with the credentials of DASK_CREDENTIALS); scripts/ci/
//! conformance.sh runs `dask-worker --credentials {credentials}` as well.

use std::path::PathBuf;
use std::process::{Command, Output};

fn runner() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dask-conformance"))
}

/// Builds `examples/auth_worker.rs` into this test's target directory.
fn auth_worker() -> PathBuf {
    let profile_dir = runner()
        .parent()
        .expect("the runner sits in a profile directory")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("a target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "dask-conformance",
        "--example",
        "auth_worker",
    ])
    .env("CARGO_TARGET_DIR", target_dir)
    .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().expect("cargo build").success());
    profile_dir.join("examples").join("auth_worker")
}

fn run(args: &[&str], worker: &[&str]) -> (Output, String) {
    let out = Command::new(runner())
        .arg("worker")
        .args(args)
        .arg("--")
        .args(worker)
        .output()
        .expect("run dask-conformance");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn a_worker_holding_the_runners_secret_passes_the_auth_cases() {
    let worker = auth_worker();
    let worker = worker.to_str().unwrap();
    let (out, text) = run(
        &[
            "--auth",
            "--case",
            "dask-1/auth",
            "--case",
            "dask-1/deps/1",
            "--case",
            "dask-1/data/2",
        ],
        &[worker, "{scheduler}", "{nthreads}"],
    );
    assert!(out.status.success(), "{text}");
    for id in ["auth/1", "auth/2", "auth/3", "auth/4", "deps/1", "data/2"] {
        assert!(text.contains(&format!("PASS dask-1/{id} ")), "{id}: {text}");
    }
    assert!(text.ends_with("6 passed, 0 failed\n"), "{text}");
}

#[test]
fn a_worker_holding_another_secret_fails_them() {
    let worker = auth_worker();
    // A credentials file of another cluster, given over the runner's.
    let dir = std::env::temp_dir().join(format!("dask-conformance-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("credentials.json");
    std::fs::write(
        &file,
        format!(
            "{{\"dask_rs_credentials\": 1, \"worker_secret\": \"{}\"}}\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let script = format!(
        "DASK_CREDENTIALS={} exec {} \"$0\" \"$1\"",
        file.display(),
        worker.display()
    );
    let (out, text) = run(
        &["--auth", "--case", "dask-1/auth/3"],
        &["sh", "-c", &script, "{scheduler}", "{nthreads}"],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL dask-1/auth/3"), "{text}");
    assert!(
        text.contains("3003"),
        "the worker refuses the runner's proof: {text}"
    );
}

#[test]
fn without_auth_the_auth_cases_are_skipped_and_under_auth_plain_handshakes_are() {
    let (out, text) = run(&["--dryrun"], &["true"]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(
            "dask-1/auth/1 [MUST] a peer without auth is refused on the data address  (skipped)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "dask-1/compute/1 [MUST] conformance.echo returns its argument unchanged  (PROTOCOL.md"
        ),
        "{text}"
    );
    let (out, text) = run(&["--dryrun", "--auth"], &["true"]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(
            "dask-1/auth/1 [MUST] a peer without auth is refused on the data address  (PROTOCOL.md"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "dask-1/handshake/1 [MUST] the worker opens with hello, then registers  (skipped)"
        ),
        "{text}"
    );
}
