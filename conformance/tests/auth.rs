//! `dask-conformance worker --auth` (dask/1.1 authentication): against a
//! worker holding the secret the runner gives it, every case runs with
//! proofs on every connection and the auth cases pass, over plain TCP and
//! over TLS (`--tls`); a worker holding another cluster's secret fails
//! them; a worker that skips or fakes its proof (the Python fixture's
//! auth faults) is refused with 3003 and the runner says which; without
//! `--auth` the auth cases are skipped. The worker is
//! `examples/auth_worker.rs` (the dask-rs worker library with the
//! credentials it finds as dask-rs programs do: the runner's
//! DASK_RS_HOME); scripts/ci/conformance.sh runs dask-worker and the C
//! worker the same way.

use std::path::PathBuf;
use std::process::{Command, Output};

fn runner() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dask-conformance"))
}

/// Builds `examples/auth_worker.rs` into this test's target directory.
fn auth_worker() -> PathBuf {
    example("dask-conformance", "auth_worker")
}

/// Builds example `name` of `package` into this test's target directory.
fn example(package: &str, name: &str) -> PathBuf {
    let profile_dir = runner()
        .parent()
        .expect("the runner sits in a profile directory")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("a target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", package, "--example", name])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().expect("cargo build").success());
    profile_dir.join("examples").join(name)
}

fn run(args: &[&str], worker: &[&str]) -> (Output, String) {
    run_as("worker", args, worker)
}

fn run_as(what: &str, args: &[&str], worker: &[&str]) -> (Output, String) {
    let out = Command::new(runner())
        .arg(what)
        .args(args)
        .arg("--")
        .args(worker)
        .output()
        .expect("run dask-conformance");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

const AUTH_CASES: [&str; 8] = [
    "auth/1", "auth/2", "auth/3", "auth/4", "auth/5", "auth/6", "deps/1", "data/2",
];

fn passes_the_auth_cases(extra: &[&str]) {
    let worker = auth_worker();
    let worker = worker.to_str().unwrap();
    let mut args = vec!["--auth"];
    args.extend_from_slice(extra);
    for id in ["dask-1/auth", "dask-1/deps/1", "dask-1/data/2"] {
        args.extend_from_slice(&["--case", id]);
    }
    let (out, text) = run(&args, &[worker, "{scheduler}", "{nthreads}"]);
    assert!(out.status.success(), "{text}");
    for id in AUTH_CASES {
        assert!(text.contains(&format!("PASS dask-1/{id} ")), "{id}: {text}");
    }
    assert!(text.ends_with("8 passed, 0 failed\n"), "{text}");
}

#[test]
fn a_worker_holding_the_runners_secret_passes_the_auth_cases() {
    passes_the_auth_cases(&[]);
}

#[test]
fn over_tls_too() {
    passes_the_auth_cases(&["--tls", "--verbose"]);
}

/// The Python fixture worker (its own HMAC, not dask-rs's) under --auth
/// with one of its auth faults, against dask-1/compute/1.
fn pyworker(fault: &str) -> (Output, String) {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pyworker.py");
    run(
        &["--auth", "--case", "dask-1/compute/1"],
        &[
            "python3",
            fixture,
            "{scheduler}",
            "--nthreads",
            "{nthreads}",
            "--fault",
            fault,
        ],
    )
}

#[test]
fn a_worker_proving_the_secret_its_own_way_is_admitted() {
    let (out, text) = pyworker("none");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASS dask-1/compute/1 "), "{text}");
}

#[test]
fn a_worker_that_skips_or_fakes_its_proof_is_refused_with_3003() {
    for (fault, says) in [
        ("skip-auth-proof", "the worker skipped its auth-proof"),
        ("wrong-secret", "does not prove the worker secret"),
        ("reflect-proof", "the runner's own proof sent back"),
    ] {
        let (out, text) = pyworker(fault);
        assert!(!out.status.success(), "{fault}: {text}");
        assert!(text.contains("FAIL dask-1/compute/1"), "{fault}: {text}");
        assert!(text.contains(says), "{fault}: {text}");
        assert!(
            text.contains("the runner refused it with error 3003"),
            "{fault}: {text}"
        );
        assert!(
            text.contains("\"code\": 3003") || text.contains("code: 3003"),
            "{fault}: the transcript shows the 3003 sent: {text}"
        );
    }
}

/// An owner-only credentials file holding another cluster's `field`
/// (`worker_secret` or `client_secret`), in a directory of its own.
fn another_clusters_file(field: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "dask-conformance-other-{field}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("credentials.json");
    let text = format!(
        "{{\"dask_rs_credentials\": 1, \"{field}\": \"{}\"}}\n",
        "ab".repeat(32)
    );
    std::fs::write(&file, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (dir, file)
}

#[test]
fn a_worker_holding_another_secret_fails_them() {
    let worker = auth_worker();
    // A credentials file of another cluster, given over the runner's.
    let (dir, file) = another_clusters_file("worker_secret");
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

#[test]
fn a_client_proving_the_client_secret_passes_and_another_secret_is_refused() {
    let harness = example("dask-client", "conformance_client");
    let harness = harness.to_str().unwrap();
    let (out, text) = run_as("client", &["--auth"], &[harness, "{scheduler}"]);
    assert!(out.status.success(), "{text}");
    assert!(text.ends_with("13 passed, 0 failed\n"), "{text}");
    // The client proves another cluster's client secret: refused.
    let (dir, file) = another_clusters_file("client_secret");
    let script = format!("DASK_CREDENTIALS={} exec {harness} \"$0\"", file.display());
    let (out, text) = run_as(
        "client",
        &["--auth", "--case", "dask-1/client/submit/1"],
        &["sh", "-c", &script, "{scheduler}"],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("the client refused the runner's proof of the client secret"),
        "{text}"
    );
    assert!(
        text.contains("the runner refused it with error 3003"),
        "{text}"
    );
}
