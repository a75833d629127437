//! The `dask-rs` command: run, submit and info, against embedded and running
//! clusters.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use dask_cluster::LocalCluster;
use dask_core::Key;
use dask_testkit::home::DaskHome;

fn dask(args: &[&str]) -> Output {
    dask_with(args, &[], None)
}

/// `dask-rs` with extra environment variables (DASK_SCHEDULER_ADDRESS is
/// unset unless given) and standard input.
fn dask_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dask-rs"));
    cmd.args(args).env_remove("DASK_SCHEDULER_ADDRESS");
    // No credentials unless the test gives some (DASK_CREDENTIALS).
    DaskHome::apply_none(&mut cmd);
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("dask-rs runs");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().expect("dask-rs runs")
}

/// `dask-rs` with the credentials file in `home` (as on another machine,
/// or with the file an embedded cluster's owner wrote).
fn dask_in(home: &DaskHome, args: &[&str]) -> Output {
    let path = home.credentials_path();
    dask_with(args, &[("DASK_CREDENTIALS", path.to_str().unwrap())], None)
}

/// An embedded cluster and a file of its credentials for the `dask-rs`
/// processes that join it.
fn cluster_and_file(workers: usize, threads: usize) -> (LocalCluster, DaskHome) {
    let cluster = LocalCluster::builder()
        .workers(workers)
        .threads_per_worker(threads)
        .build()
        .unwrap();
    let home = DaskHome::holding(cluster.credentials());
    (cluster, home)
}

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_prints_wanted_results_sorted_by_key() {
    let o = dask(&["run", &example("sum.json"), "--threads", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "mean = 2.5\ntotal = 10\n");
    // Not a terminal: no progress bar.
    assert_eq!(stderr(&o), "");
}

#[test]
fn run_with_several_workers_and_explicit_wanted_keys() {
    let o = dask(&[
        "run",
        &example("chain.json"),
        "--workers",
        "2",
        "--threads=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "step-9 = 36\n");
    let o = dask(&["run", &example("shell.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "code = 0\nstdout = \"hello from a worker\\n\"\n"
    );
}

#[test]
fn a_failed_task_exits_non_zero_with_the_remote_error() {
    let o = dask(&["run", &example("fail.json")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "fine = 2\n");
    assert!(
        stderr(&o).contains("downstream: RemoteError: ConformanceError: this task always fails"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn submit_and_info_talk_to_a_running_cluster() {
    let (cluster, home) = cluster_and_file(1, 1);
    // The same graph in msgpack.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example("sum.json")).unwrap()).unwrap();
    let bytes = dask_core::json::json_to_msgpack(&json).unwrap();
    let path = std::env::temp_dir().join(format!("dask-cli-{}.msgpack", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    // Without the cluster's credentials: refused, saying what to give.
    let o = dask(&[
        "submit",
        "--scheduler",
        cluster.address(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("authentication required"),
        "{}",
        stderr(&o)
    );
    let o = dask_in(
        &home,
        &[
            "submit",
            "--scheduler",
            cluster.address(),
            path.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&path);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "mean = 2.5\ntotal = 10\n");
    let o = dask_in(&home, &["info", "--scheduler", cluster.address()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("workers: 1"), "{out}");
    assert!(out.contains("local-0 tcp://127.0.0.1:"), "{out}");
    assert!(out.contains("threads=1"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_bad_files_exit_1() {
    assert_eq!(dask(&[]).status.code(), Some(2));
    assert_eq!(dask(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(dask(&["run"]).status.code(), Some(2));
    assert_eq!(dask(&["run", "a", "b"]).status.code(), Some(2));
    assert_eq!(
        dask(&["run", "x.json", "--workers", "0"]).status.code(),
        Some(2)
    );
    assert_eq!(
        dask(&["submit", &example("sum.json")]).status.code(),
        Some(2)
    );
    let o = dask(&["run", "/nonexistent/graph.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"));
    assert!(dask(&["--help"]).status.success());
    // Options of one subcommand are not another's.
    assert_eq!(
        dask(&["run", "--scheduler", "tcp://127.0.0.1:1", "x.json"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        dask(&["submit", "--workers", "2", "x.json"]).status.code(),
        Some(2)
    );
}

#[test]
fn every_subcommand_has_help_and_the_binary_a_version() {
    for sub in ["run", "submit", "info"] {
        let o = dask(&[sub, "--help"]);
        assert!(o.status.success(), "{sub}: {}", stderr(&o));
        assert!(
            stdout(&o).starts_with(&format!("Usage: dask-rs {sub}"))
                || stdout(&o).contains(&format!("Usage: dask-rs {sub}")),
            "{}",
            stdout(&o)
        );
        assert!(dask(&["help", sub]).status.success());
    }
    let o = dask(&["--version"]);
    assert_eq!(
        stdout(&o),
        format!("dask-rs {} (protocol dask/1)\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_graph_from_standard_input_and_unknown_fields_warned_or_refused() {
    let text = std::fs::read(example("sum.json")).unwrap();
    let o = dask_with(&["run", "-"], &[], Some(&text));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "mean = 2.5\ntotal = 10\n");
    assert_eq!(stderr(&o), "");
    // msgpack on standard input too.
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let bytes = dask_core::json::json_to_msgpack(&json).unwrap();
    let o = dask_with(&["run", "-"], &[], Some(&bytes));
    assert_eq!(stdout(&o), "mean = 2.5\ntotal = 10\n", "{}", stderr(&o));

    let typos = br#"{"tasks": [{"key": "x", "function": "inc", "args": [1], "retry": 2}],
                     "wnated": ["x"]}"#;
    let o = dask_with(&["run", "-"], &[], Some(typos));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "x = 2\n");
    assert_eq!(
        stderr(&o),
        "dask-rs: warning: standard input: unknown fields tasks[0] (\"x\").retry, \"wnated\" are \
         ignored (a typo? --strict refuses them)\n"
    );
    let o = dask_with(&["run", "--strict", "-"], &[], Some(typos));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("refused by --strict"), "{}", stderr(&o));
}

#[test]
fn the_scheduler_comes_from_a_flag_a_scheduler_file_or_the_environment() {
    let (cluster, home) = cluster_and_file(1, 1);
    let address = cluster.address().to_owned();
    let credentials = home.credentials_path();
    let credentials = ("DASK_CREDENTIALS", credentials.to_str().unwrap());
    let sum = example("sum.json");
    let expected = "mean = 2.5\ntotal = 10\n";
    let o = dask_with(
        &["submit", &sum],
        &[("DASK_SCHEDULER_ADDRESS", &address), credentials],
        None,
    );
    assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    // The flag wins over the environment.
    let o = dask_with(
        &["submit", "--scheduler", &address, &sum],
        &[("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1"), credentials],
        None,
    );
    assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    let file = std::env::temp_dir().join(format!("dask-cli-{}-scheduler.json", std::process::id()));
    dask_net::scheduler_file::write(&file, &address).unwrap();
    let file_arg = file.to_str().unwrap();
    let o = dask_in(&home, &["submit", "--scheduler-file", file_arg, &sum]);
    assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    let o = dask_in(&home, &["info", "--scheduler-file", file_arg]);
    assert!(stdout(&o).contains("workers: 1"), "{}", stderr(&o));
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        dask(&[
            "info",
            "--scheduler",
            &address,
            "--scheduler-file",
            file_arg
        ])
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn info_as_json_and_waiting_tasks_by_reason() {
    let (cluster, home) = cluster_and_file(1, 1);
    let client = cluster.client().unwrap();
    // One task no worker can run (a function none offers), one waiting on it.
    let lonely = dask_core::client::task_spec(Key::from("lonely"), "nowhere.fn", &[], &[]);
    let after = dask_core::client::task_spec(
        Key::from("after"),
        "identity",
        &[dask_core::msgpack::task_ref_value("lonely")],
        &[],
    );
    let _held = client.submit_tasks(vec![lonely, after], vec![Key::from("after")]);
    let address = cluster.address().to_owned();
    let mut out = String::new();
    for _ in 0..600 {
        out = stdout(&dask_in(&home, &["info", "--scheduler", &address]));
        if out.contains("1 no-worker") && out.contains("1 waiting") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(out.contains("not running yet, and why:"), "{out}");
    assert!(out.contains("  1 waiting: for their inputs"), "{out}");
    // The key that cannot run, named with its reason (dask/1.1
    // waiting-keys).
    assert!(
        out.contains("    lonely: no connected worker offers function `nowhere.fn`"),
        "{out}"
    );
    let all = stdout(&dask_in(
        &home,
        &["info", "--waiting", "--scheduler", &address],
    ));
    assert!(all.contains("  lonely no-worker no-function: "), "{all}");
    assert!(
        all.contains("  after waiting dependencies: for 1 of its 1 inputs: lonely (no-worker)"),
        "{all}"
    );

    let o = dask_in(&home, &["info", "--json", "--scheduler", &address]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["scheduler"], address.as_str());
    assert_eq!(doc["clients"], 2);
    assert_eq!(doc["workers"][0]["name"], "local-0");
    assert_eq!(doc["workers"][0]["nthreads"], 1);
    // PROTOCOL.md#advice-to-implementers: a worker's object has the fields
    // of a WorkerInfo, and the document has these four.
    let sorted_keys = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let mut expected = [
        "id",
        "name",
        "address",
        "nthreads",
        "memory_limit",
        "resources",
        "functions",
        "processing",
        "stored_keys",
        "stored_bytes",
    ];
    expected.sort();
    assert_eq!(sorted_keys(&doc["workers"][0]), expected);
    assert_eq!(
        sorted_keys(&doc),
        ["clients", "scheduler", "tasks", "waiting", "workers"]
    );
    assert_eq!(doc["tasks"]["no-worker"], 1);
    assert_eq!(doc["tasks"]["waiting"], 1);
    assert_eq!(doc["waiting"][0]["key"], "lonely");
    assert_eq!(doc["waiting"][0]["reason"], "no-function");
}

#[test]
fn submit_says_at_once_why_a_key_waits_and_it_runs_when_a_worker_can() {
    let cluster = LocalCluster::builder()
        .workers(0)
        .threads_per_worker(1)
        .build()
        .unwrap();
    let address = cluster.address().to_owned();
    let graph = GraphFile::new(
        "waits.json",
        r#"{"tasks": [{"key": "x", "function": "inc", "args": [1]},
                      {"key": "y", "function": "inc", "args": [{"$ref": "x"}]}],
            "wanted": ["y"]}"#,
    );
    let home = DaskHome::holding(cluster.credentials());
    let mut child = Command::new(env!("CARGO_BIN_EXE_dask-rs"));
    DaskHome::apply_none(&mut child);
    let mut child = child
        .env("DASK_CREDENTIALS", home.credentials_path())
        .args(["submit", graph.path(), "--scheduler", &address])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reason comes while no worker is there.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    // x is the task that cannot run (y, waiting on it, is not told apart).
    assert_eq!(
        line,
        "dask-rs: waiting: x: it cannot run: no worker is connected; it runs when one joins\n"
    );
    let worker = dask_worker::WorkerHandle::start(dask_worker::WorkerConfig {
        scheduler: address.clone(),
        nthreads: 1,
        credentials: Some(cluster.credentials().clone()),
        ..dask_worker::WorkerConfig::default()
    })
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "y = 3\n");
    worker.stop();
}

/// The progress lines `dask-rs submit` printed on a pipe.
fn progress_lines(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.starts_with("dask-rs: ") && l.contains(" tasks"))
        .collect()
}

#[test]
fn progress_on_a_pipe_is_a_line_counting_this_graph_only_and_quiet_prints_none() {
    let (cluster, home) = cluster_and_file(1, 1);
    let address = cluster.address().to_owned();
    // Another client's 40 tasks, which no worker can run: the old bar
    // counted them (cluster-wide counts).
    let other = cluster.client().unwrap();
    let theirs: Vec<_> = (0..40i64)
        .map(|i| other.submit("nowhere.fn", vec![i.into()]))
        .collect();
    let graph = GraphFile::new(
        "naps.json",
        r#"{"tasks": [{"key": "nap-0", "function": "sleep", "args": [0.6, 0]},
                      {"key": "nap-1", "function": "sleep", "args": [0.6, 1]},
                      {"key": "nap-2", "function": "sleep", "args": [0.6, 2]}],
            "wanted": ["nap-2"]}"#,
    );
    let submit = |extra: &[&str]| {
        let mut args = vec!["submit", graph.path(), "--scheduler", &address];
        args.extend(["--progress-every", "0.25"]);
        args.extend(extra);
        let o = dask_in(&home, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), "nap-2 = 2\n");
        stderr(&o)
    };
    let err = submit(&[]);
    let lines = progress_lines(&err);
    // At least one while it ran, and the last one at the end.
    assert!(lines.len() >= 2, "{err}");
    for l in &lines {
        assert!(l.contains("/3 tasks, "), "{l}");
        assert!(l.contains(" tasks/s, ") && l.ends_with(" s elapsed"), "{l}");
    }
    assert!(
        lines.last().unwrap().starts_with("dask-rs: 3/3 tasks, "),
        "{err}"
    );

    assert_eq!(submit(&["--quiet"]), "");
    drop(theirs);
}

#[test]
fn an_unreachable_scheduler_is_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = dask(&["info", "--scheduler", &format!("tcp://127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("connection error"), "{}", stderr(&o));
}

/// A graph file written for one test, removed when dropped.
struct GraphFile(PathBuf);

impl GraphFile {
    fn new(name: &str, text: &str) -> GraphFile {
        let path = std::env::temp_dir().join(format!("dask-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        GraphFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for GraphFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_cycle_is_refused_with_its_keys_named() {
    // No `wanted` and every task needed by another: refused before
    // anything is sent, instead of running nothing and exiting 0.
    let cycle = GraphFile::new(
        "cycle.json",
        r#"{"tasks": [{"key": "a", "function": "inc", "args": [{"$ref": "b"}]},
                      {"key": "b", "function": "inc", "args": [{"$ref": "a"}]}]}"#,
    );
    let o = dask(&["run", cycle.path()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains(r#"no key is a leaf"#) && stderr(&o).contains(r#""a" -> "b" -> "a""#),
        "{}",
        stderr(&o)
    );
    // A cycle beside a leaf: the scheduler refuses it (4003), naming it.
    let beside = GraphFile::new(
        "beside.json",
        r#"{"tasks": [{"key": "a", "function": "inc", "args": [{"$ref": "b"}]},
                      {"key": "b", "function": "inc", "args": [{"$ref": "a"}]},
                      {"key": "c", "function": "inc", "args": [{"$ref": "a"}]}]}"#,
    );
    let o = dask(&["run", beside.path()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(r#"(cycle, 4003)"#) && stderr(&o).contains(r#""a" -> "b" -> "a""#),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_programs_json_output_feeds_later_tasks_and_its_failure_is_an_error() {
    let o = dask(&["run", &example("script_json.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "parsed = {\"rows\":41,\"names\":[\"a\",\"b\"]}\nrows-plus-one = 42\n"
    );
    let failing = GraphFile::new(
        "failing.json",
        r#"{"tasks": [
            {"key": "fails", "function": "exec", "args": ["sh", "-c", "echo half; echo oops >&2; exit 2"]},
            {"key": "tolerated", "function": "exec", "args": ["sh", "-c", "exit 2"],
             "kwargs": {"check": false}},
            {"key": "code", "function": "getitem", "args": [{"$ref": "tolerated"}, "code"]}
        ], "wanted": ["fails", "code"]}"#,
    );
    let o = dask(&["run", failing.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "code = 2\n");
    assert!(
        stderr(&o).contains(
            "fails: RemoteError: CalledProcessError: \"sh\" exited with code 2\n\
             --- stderr ---\noops\n--- stdout ---\nhalf"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_in_process_prints_what_a_cluster_prints_for_every_example() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let path = path.to_string_lossy().into_owned();
        let on_cluster = dask(&["run", &path, "--scheduler", "cluster"]);
        for scheduler in ["threads", "sync"] {
            let here = dask(&["run", &path, "--scheduler", scheduler]);
            assert_eq!(
                (here.status.code(), stdout(&here), stderr(&here)),
                (
                    on_cluster.status.code(),
                    stdout(&on_cluster),
                    stderr(&on_cluster)
                ),
                "{path} --scheduler {scheduler}"
            );
        }
        seen += 1;
    }
    assert!(seen >= 4, "{seen} examples");
}

#[test]
fn run_opens_no_socket_by_default() {
    // In a network namespace of its own nothing is up, not even loopback:
    // the default (threads) runs there; a cluster cannot.
    let probe = Command::new("unshare").args(["-n", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: `unshare -n` is not permitted here (needs CAP_SYS_ADMIN)");
        return;
    }
    let in_namespace = |extra: &[&str]| {
        Command::new("unshare")
            .arg("-n")
            .arg(env!("CARGO_BIN_EXE_dask-rs"))
            .args(["run", &example("sum.json")])
            .args(extra)
            .env_remove("DASK_SCHEDULER_ADDRESS")
            .output()
            .unwrap()
    };
    let o = in_namespace(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "mean = 2.5\ntotal = 10\n");
    let o = in_namespace(&["--scheduler", "sync"]);
    assert_eq!(stdout(&o), "mean = 2.5\ntotal = 10\n");
    let o = in_namespace(&["--scheduler", "cluster"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("cannot start the local cluster"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_options_belong_to_their_scheduler() {
    let sum = example("sum.json");
    for bad in [
        vec!["run", &sum, "--scheduler", "threads", "--workers", "2"],
        vec!["run", &sum, "--scheduler", "sync", "--threads", "2"],
        vec!["run", &sum, "--scheduler", "processes"],
    ] {
        let o = dask(&bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
    let o = dask(&["run", &sum, "--scheduler", "threads", "--threads", "1"]);
    assert_eq!(stdout(&o), "mean = 2.5\ntotal = 10\n");
    // --workers alone means a cluster, as before there was a choice.
    let o = dask(&["run", &sum, "--workers", "2"]);
    assert_eq!(stdout(&o), "mean = 2.5\ntotal = 10\n");
}

#[test]
fn credentials_export_writes_one_role_and_tls_makes_a_ca_and_certificate() {
    let (cluster, home) = cluster_and_file(1, 1);
    let path = home.credentials_path();
    let from = ("DASK_CREDENTIALS", path.to_str().unwrap());
    let worker_file = home.dir().join("worker.json");
    let client_file = home.dir().join("client.json");
    let o = dask_with(
        &[
            "credentials",
            "export",
            "--worker",
            worker_file.to_str().unwrap(),
            "--client",
            client_file.to_str().unwrap(),
        ],
        &[from],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let worker = dask_net::credentials::load(&worker_file).unwrap();
    assert!(worker.client.is_none() && worker.worker.is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&worker_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // The client's file submits; the worker's cannot.
    let sum = example("sum.json");
    let with = |file: &std::path::Path| {
        dask_with(
            &["submit", "--scheduler", cluster.address(), &sum],
            &[("DASK_CREDENTIALS", file.to_str().unwrap())],
            None,
        )
    };
    assert_eq!(stdout(&with(&client_file)), "mean = 2.5\ntotal = 10\n");
    let o = with(&worker_file);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("holds no client secret"),
        "{}",
        stderr(&o)
    );
    // Never overwritten.
    let o = dask_with(
        &[
            "credentials",
            "export",
            "--worker",
            worker_file.to_str().unwrap(),
        ],
        &[from],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));

    let tls = home.dir().join("tls");
    let o = dask(&[
        "credentials",
        "tls",
        "--dir",
        tls.to_str().unwrap(),
        "--host",
        "node-1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("--tls-ca-file"), "{}", stdout(&o));
    let config = dask_net::TlsConfig::from_files(
        Some(&tls.join("ca.pem")),
        Some(&tls.join("cluster.pem")),
        None,
    )
    .unwrap();
    assert!(config.can_listen() && config.can_connect());
}

/// A GET of `path` at `address` with these headers: (status, body).
fn http_get(address: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the dashboard");
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: dashboard\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    stream.write_all(format!("{head}\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn credentials_dashboard_url_prints_the_url_the_scheduler_printed_and_its_token_scrapes() {
    use dask_testkit::process::{binary, Process};
    let home = DaskHome::new();
    let mut cmd = Command::new(binary("dask-scheduler"));
    home.apply(&mut cmd).args([
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--dashboard-address",
        "127.0.0.1:0",
    ]);
    let scheduler = Process::spawn("dask-scheduler", &mut cmd);
    let line = scheduler.expect_line("Dashboard at ", std::time::Duration::from_secs(60));
    let url = line["Dashboard at ".len()..].trim().to_owned();
    assert!(url.contains("/status?token="), "{url}");
    let address = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // What a user runs on the scheduler's machine (the file it created).
    let shown = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dask-rs"));
        home.apply(&mut cmd).args(args);
        let o = cmd.output().expect("dask-rs runs");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_owned()
    };
    for given in [address.clone(), format!("http://{address}/")] {
        let printed = shown(&["credentials", "dashboard-url", "--dashboard", &given]);
        assert_eq!(printed, url, "--dashboard {given}");
    }
    // The page opens with the URL's token; /metrics with the token as a
    // bearer token, as Prometheus sends it from a credentials_file.
    let token = shown(&["credentials", "dashboard-url", "--token-only"]);
    assert!(url.ends_with(&format!("?token={token}")), "{token}");
    let (status, _) = http_get(&address, &format!("/status?token={token}"), &[]);
    assert_eq!(status, 200);
    let bearer = format!("Bearer {token}");
    let (status, body) = http_get(&address, "/metrics", &[("Authorization", &bearer)]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("dask_scheduler_workers "), "{body}");
    let (status, _) = http_get(&address, "/metrics", &[]);
    assert_eq!(status, 401);
    // With no credentials it says where the token comes from.
    let o = dask(&["credentials", "dashboard-url"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("client secret"), "{}", stderr(&o));
}
