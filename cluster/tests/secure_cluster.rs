//! The secure cluster of README.md ("A cluster on several machines"),
//! with real processes on loopback: each "machine" is a `DASK_RS_HOME` of
//! its own, so nothing is shared but the files the README says to copy.
//! Two workers over TLS with the worker's file only, a client with the
//! client's file only; strangers refused with what to do.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use dask_testkit::home::DaskHome;
use dask_testkit::process::{binary, Process};

const PATIENCE: Duration = Duration::from_secs(60);

fn run(home: &DaskHome, program: &str, args: &[&str]) -> Output {
    let mut command = Command::new(program);
    home.apply(&mut command).args(args);
    command.output().expect("the program runs")
}

fn ok(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Copies `name` from one machine's directory to another's ("scp").
fn copy(from: &Path, to: &DaskHome, name: &str) -> String {
    let target = to.dir().join(name);
    std::fs::copy(from.join(name), &target).expect("copied");
    path(&target).to_owned()
}

#[test]
fn three_commands_make_a_tls_cluster_that_only_its_members_reach() {
    let dask_rs = env!("CARGO_BIN_EXE_dask-rs");
    let (scheduler_machine, worker_machine, client_machine) =
        (DaskHome::new(), DaskHome::new(), DaskHome::new());
    let tls = scheduler_machine.dir().join("tls");

    // 1. On the scheduler's machine: a CA and a certificate, then the
    //    scheduler (which creates the credentials file).
    ok(run(
        &scheduler_machine,
        dask_rs,
        &["credentials", "tls", "--host", "127.0.0.1"],
    ));
    let mut command = Command::new(binary("dask-scheduler"));
    scheduler_machine.apply(&mut command).args([
        "--port",
        "0",
        "--no-dashboard",
        "--tls-ca-file",
        path(&tls.join("ca.pem")),
        "--tls-cert",
        path(&tls.join("cluster.pem")),
    ]);
    let scheduler = Process::spawn("dask-scheduler", &mut command);
    let line = scheduler.expect_line("Scheduler at ", PATIENCE);
    let address = line["Scheduler at ".len()..].trim().to_owned();
    assert!(address.starts_with("tls://127.0.0.1:"), "{address}");

    // 2. A file per role, copied with the CA and certificate.
    let worker_file = worker_machine.dir().join("worker.json");
    let client_file = client_machine.dir().join("client.json");
    ok(run(
        &scheduler_machine,
        dask_rs,
        &[
            "credentials",
            "export",
            "--worker",
            path(&worker_file),
            "--client",
            path(&client_file),
        ],
    ));
    let member_flags = |machine: &DaskHome| {
        vec![
            "--tls-ca-file".to_owned(),
            copy(&tls, machine, "ca.pem"),
            "--tls-cert".to_owned(),
            copy(&tls, machine, "cluster.pem"),
        ]
    };
    let worker_tls = member_flags(&worker_machine);
    let client_tls = member_flags(&client_machine);

    // 3. On each worker's machine.
    let workers: Vec<Process> = ["w1", "w2"]
        .iter()
        .map(|name| {
            let mut command = Command::new(binary("dask-worker"));
            worker_machine
                .apply(&mut command)
                .args([&address, "--name", name, "--nthreads", "1"])
                .args(["--credentials", path(&worker_file)])
                .args(&worker_tls);
            Process::spawn(name, &mut command)
        })
        .collect();
    for worker in &workers {
        let line = worker.expect_line("Worker ", PATIENCE);
        assert!(line.contains(" at tls://"), "{line}");
    }

    // The client, with its file and the TLS files.
    let sum = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sum.json");
    let submit = |credentials: &Path| {
        let mut args = vec![
            "submit",
            "--scheduler",
            &address,
            "--credentials",
            path(credentials),
        ];
        args.extend(client_tls.iter().map(String::as_str));
        args.push(sum);
        run(&client_machine, dask_rs, &args)
    };
    assert_eq!(ok(submit(&client_file)), "mean = 2.5\ntotal = 10\n");
    let info = {
        let mut args = vec![
            "info",
            "--scheduler",
            &address,
            "--credentials",
            path(&client_file),
        ];
        args.extend(client_tls.iter().map(String::as_str));
        ok(run(&client_machine, dask_rs, &args))
    };
    assert!(info.contains("workers: 2"), "{info}");

    // A worker's file cannot submit; nor can a machine without a file.
    let refused = submit(&worker_file);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("holds no client secret"), "{said}");
    let mut args = vec!["info", "--scheduler", &address];
    args.extend(client_tls.iter().map(String::as_str));
    let stranger = run(&client_machine, dask_rs, &args);
    assert_eq!(stranger.status.code(), Some(1));
    let said = String::from_utf8_lossy(&stranger.stderr);
    assert!(said.contains("authentication required"), "{said}");
    // Without the CA, TLS itself says what is missing.
    let plain = run(&client_machine, dask_rs, &["info", "--scheduler", &address]);
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("--tls-ca-file"), "{said}");

    // The members kept working.
    assert_eq!(ok(submit(&client_file)), "mean = 2.5\ntotal = 10\n");
    drop(workers);
    drop(scheduler);
}

#[test]
fn the_help_texts_give_the_readmes_three_commands() {
    let readme = include_str!("../../README.md");
    let help = dask_net::cli::SECURE_CLUSTER_HELP;
    let commands: Vec<&str> = help
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("dask-"))
        .collect();
    assert_eq!(commands.len(), 3, "{help}");
    for command in &commands {
        assert!(readme.contains(command), "README.md lacks {command:?}");
    }
    for (program, args) in [
        ("dask-scheduler", &["--help"][..]),
        ("dask-worker", &["--help"][..]),
        ("dask-rs", &["credentials", "--help"][..]),
    ] {
        let out = Command::new(binary(program)).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(help), "{program} --help:\n{text}");
    }
}
