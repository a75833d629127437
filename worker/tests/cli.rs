//! The `dask-worker` binary: arguments, the startup line, and its ways of
//! ending (close from the scheduler, SIGTERM), against a scheduler played by
//! the test on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dask_core::handshake;
use dask_core::messages::{Close, RegisterWorker, Role, WorkerRegistered};
use dask_core::Message;
use dask_net::BlockingConn;
use dask_testkit::home::DaskHome;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The worker, finding no credentials: the scheduler these tests play
/// requires none.
fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dask-worker"));
    DaskHome::apply_none(&mut command);
    command
}

/// Waits for the child at most TIMEOUT; kills it (by its id) past that.
fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dask-worker did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts the binary against a scheduler played here; returns the child,
/// the scheduler's side of the connection, the registration and the
/// line the worker printed.
fn run_worker(extra: &[&str]) -> (Child, BlockingConn, RegisterWorker, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let mut child = binary()
        .arg(&address)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, registration) = accept_worker(&listener);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.ends_with(&format!(", connected to {address}\n")),
        "{line:?}"
    );
    (child, conn, registration, line)
}

/// Plays the scheduler's side of a worker's handshake and registration on
/// the next connection to `listener`.
fn accept_worker(listener: &TcpListener) -> (BlockingConn, RegisterWorker) {
    let (stream, _) = listener.accept().unwrap();
    let mut conn = BlockingConn::from_stream(stream);
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let Message::Hello(hello) = conn.recv().unwrap() else {
        panic!("hello expected");
    };
    let (reply, _) = handshake::accept(&hello, Role::Scheduler, &[Role::Worker], 7, None).unwrap();
    conn.send(&[Message::from(reply)]).unwrap();
    let Message::RegisterWorker(registration) = conn.recv().unwrap() else {
        panic!("register-worker expected");
    };
    conn.send(&[Message::WorkerRegistered(WorkerRegistered {
        id: 7,
        heartbeat_interval_ms: 600_000,
        inline_bytes_max: None,
    })])
    .unwrap();
    (conn, registration)
}

#[test]
fn help_prints_usage() {
    let out = binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: dask-worker"));
    let out = binary().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "dask-worker {} (dask-rs, protocol dask/1)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn the_scheduler_can_come_from_a_scheduler_file() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let file = std::env::temp_dir().join(format!("dask-worker-cli-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    // Started before the file exists: it waits for it.
    let mut child = binary()
        .arg("--scheduler-file")
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    dask_net::scheduler_file::write(&file, &address).unwrap();
    let (mut conn, registration) = accept_worker(&listener);
    assert!(registration.nthreads >= 1);
    conn.send(&[Message::Close(Close {
        reason: None,
        reconnect: None,
    })])
    .unwrap();
    assert!(wait(&mut child).success());
    std::fs::remove_file(&file).unwrap();
    // A Python Dask scheduler file is refused with the reason.
    std::fs::write(
        &file,
        r#"{"type": "Scheduler", "address": "tcp://127.0.0.1:1"}"#,
    )
    .unwrap();
    let out = binary()
        .arg("--scheduler-file")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Python Dask"));
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn list_functions_prints_every_builtin_with_its_signature() {
    let out = binary().arg("--list-functions").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for (name, _) in dask_worker::builtins::builtin_docs() {
        assert!(text.lines().any(|l| l == name), "{name} missing");
    }
    assert!(text.contains("conformance.bytes(n)"));
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &[][..],
        &["tcp://127.0.0.1:1", "--nthreads", "0"],
        &["tcp://127.0.0.1:1", "--resources", "GPU"],
        &["tcp://127.0.0.1:1", "--bogus"],
        &["tcp://127.0.0.1:1", "--name"],
    ] {
        let out = binary().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn an_unreachable_scheduler_exits_1() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let out = binary().arg(closed).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn options_reach_the_registration_and_close_exits_0() {
    let (mut child, mut conn, registration, line) = run_worker(&[
        "--nthreads",
        "3",
        "--name",
        "cli-worker",
        "--resources",
        "GPU=2,MEM=1e9",
        "--memory-limit=4000000000",
        "--host",
        "127.0.0.1",
    ]);
    assert_eq!(registration.name, "cli-worker");
    assert_eq!(registration.nthreads, 3);
    assert_eq!(registration.memory_limit, Some(4_000_000_000));
    let resources = registration.resources.unwrap();
    assert_eq!(resources.get("GPU"), Some(&2.0));
    assert_eq!(resources.get("MEM"), Some(&1e9));
    assert_eq!(registration.pid, Some(child.id()));
    // No `exec` without --allow-exec.
    assert!(registration.functions.iter().any(|f| f == "add"));
    assert!(!registration.functions.iter().any(|f| f == "exec"));
    assert_eq!(
        line,
        format!(
            "Worker cli-worker at {}, connected to {}\n",
            registration.address,
            line.rsplit(' ').next().unwrap().trim()
        )
    );
    conn.send(&[Message::Close(Close {
        reason: None,
        reconnect: None,
    })])
    .unwrap();
    assert!(wait(&mut child).success());
}

#[cfg(unix)]
#[test]
fn exec_is_offered_only_with_allow_exec() {
    let (mut child, mut conn, registration, _) = run_worker(&["--allow-exec"]);
    assert!(registration.functions.iter().any(|f| f == "exec"));
    conn.send(&[Message::Close(Close {
        reason: None,
        reconnect: None,
    })])
    .unwrap();
    assert!(wait(&mut child).success());
}

#[test]
fn sigterm_closes_politely_and_exits_0() {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    let (mut child, mut conn, _, _) = run_worker(&["--nthreads", "1"]);
    // SAFETY: signals the child this test started, by its id.
    assert_eq!(unsafe { kill(child.id() as i32, 15) }, 0);
    let m = conn
        .recv_until(&mut |m| !matches!(m, Message::Heartbeat(_)))
        .unwrap();
    assert!(matches!(m, Message::Close(_)), "{m:?}");
    assert!(wait(&mut child).success());
}

#[test]
fn a_lost_scheduler_connection_exits_1_without_reconnect() {
    let (mut child, conn, _, _) = run_worker(&["--no-reconnect"]);
    drop(conn);
    assert_eq!(wait(&mut child).code(), Some(1));
}

#[test]
fn a_lost_scheduler_connection_registers_a_new_worker_of_the_same_name() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let mut child = binary()
        .arg(&address)
        .args(["--name", "phoenix", "--reconnect-timeout", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, first) = accept_worker(&listener);
    drop(conn);
    let (mut conn, second) = accept_worker(&listener);
    assert_eq!(
        (first.name.as_str(), second.name.as_str()),
        ("phoenix", "phoenix")
    );
    assert_ne!(first.address, second.address, "a new data listener");
    conn.send(&[Message::Close(Close {
        reason: None,
        reconnect: None,
    })])
    .unwrap();
    assert!(
        wait(&mut child).success(),
        "close from the scheduler is final"
    );
    let mut lines = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut lines).unwrap();
    assert_eq!(lines.matches("Worker phoenix at ").count(), 2, "{lines}");
}

#[test]
fn a_scheduler_that_does_not_come_back_ends_the_worker_with_1() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let mut child = binary()
        .arg(&address)
        .args(["--reconnect-timeout", "0.5"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (conn, _) = accept_worker(&listener);
    drop(listener);
    drop(conn);
    assert_eq!(wait(&mut child).code(), Some(1));
}
