//! The HTTP side over real TCP: a scheduler with its dashboard, a real
//! worker and a real client. What `/metrics` and the JSON API say is what
//! the test did; a stranger without the token is refused; every route
//! lives under the prefix and the page's URLs are relative.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use dask_client::Client;
use dask_core::auth::{dashboard_token, Credentials, Secret};
use dask_core::client::task_spec;
use dask_core::Key;
use dask_scheduler::dashboard::{Access, DashboardConfig};
use dask_scheduler::{SchedulerConfig, SchedulerHandle};
use dask_worker::{WorkerConfig, WorkerHandle};

const TOKEN: &str = "0123456789abcdef-test-token";

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection.
fn request(address: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(address).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: dashboard\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn get(address: SocketAddr, path: &str) -> Reply {
    request(
        address,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    )
}

/// The value of the sample `name{labels}` in an exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls until `check` holds (snapshots come every half second).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_dashboard_metrics_and_api_show_what_the_cluster_did() {
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        validate: true,
        dashboard: Some(DashboardConfig {
            port: 0,
            prefix: "/dask/".into(),
            access: Access::Token(TOKEN.into()),
            ..DashboardConfig::default()
        }),
        ..SchedulerConfig::default()
    })
    .unwrap();
    let http = scheduler.dashboard_address().expect("a dashboard");
    let worker = WorkerHandle::start(WorkerConfig {
        scheduler: scheduler.address(),
        nthreads: 2,
        name: Some("w-one".into()),
        ..WorkerConfig::default()
    })
    .unwrap();
    let client = Client::connect(&scheduler.address()).unwrap();
    let naps: Vec<_> = (0..10)
        .map(|i| {
            task_spec(
                Key::from(format!("nap-{i}")),
                "sleep",
                &[0.01.into(), i.into()],
                &[],
            )
        })
        .collect();
    let mut gpu = task_spec(Key::from("gpu-job"), "sleep", &[0.0.into()], &[]);
    gpu.resources = Some([("GPU".to_string(), 1.0)].into());
    let odd = task_spec(Key::from("odd-1"), "no_such_function", &[], &[]);
    let mut tasks = naps;
    tasks.push(gpu);
    tasks.push(odd);
    let wanted: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    let futures = client.submit_tasks(tasks, wanted);
    for f in &futures[..10] {
        f.wait_timeout(Duration::from_secs(30)).unwrap();
    }
    let _ = futures[0].wait_timeout(Duration::from_secs(1));

    // /metrics, once the loop has published what happened.
    let metrics = eventually("ten naps in /metrics", || {
        let m = get(http, "/dask/metrics").body;
        (sample(
            &m,
            "dask_scheduler_tasks_finished_total{task_group=\"nap\"}",
        ) == Some(10.0))
        .then_some(m)
    });
    assert_eq!(sample(&metrics, "dask_scheduler_workers"), Some(1.0));
    assert_eq!(sample(&metrics, "dask_scheduler_clients"), Some(1.0));
    assert_eq!(
        sample(&metrics, "dask_scheduler_tasks{state=\"no-worker\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&metrics, "dask_scheduler_tasks{state=\"memory\"}"),
        Some(10.0)
    );
    assert_eq!(
        sample(&metrics, "dask_scheduler_tasks_submitted_total"),
        Some(12.0)
    );
    assert_eq!(sample(&metrics, "dask_worker_threads"), Some(2.0));
    let compute = sample(
        &metrics,
        "dask_scheduler_tasks_compute_seconds_total{task_group=\"nap\"}",
    )
    .unwrap();
    assert!((0.1..5.0).contains(&compute), "{compute}");
    assert!(
        !metrics.contains("nap-"),
        "a key became a label:\n{metrics}"
    );

    // The JSON API.
    let status = get(http, "/dask/api/v1/status").json();
    assert_eq!(status["address"], scheduler.address());
    assert_eq!(status["workers"][0]["name"], "w-one");
    assert_eq!(status["workers"][0]["nthreads"], 2);
    assert_eq!(status["clients"][0]["wants"], 12);
    let nap = status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "nap")
        .unwrap();
    assert_eq!(nap["finished_total"], 10);
    assert_eq!(status["stream"].as_array().unwrap().len(), 10);
    let worker_id = status["workers"][0]["id"].as_u64().unwrap();
    let one = get(http, &format!("/dask/api/v1/workers/{worker_id}")).json();
    assert_eq!(one["name"], "w-one");
    assert_eq!(get(http, "/dask/api/v1/workers/9999").status, 404);

    let waiting = get(http, "/dask/api/v1/waiting?state=no-worker&limit=10").json();
    let mut reasons: Vec<(String, String)> = waiting["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().into(),
                t["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("gpu-job".to_string(), "no-resources".to_string()),
            ("odd-1".to_string(), "no-function".to_string())
        ]
    );
    assert_eq!(get(http, "/dask/api/v1/waiting?state=done").status, 400);
    let task = get(http, "/dask/api/v1/task?key=nap-3").json();
    assert_eq!(task["state"], "memory");
    assert_eq!(task["who_has"][0]["name"], "w-one");
    assert_eq!(get(http, "/dask/api/v1/task?key=never").status, 404);

    // The page: relative URLs only, under the prefix.
    let page = get(http, "/dask/status");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("src=\"static/app.js\""));
    assert!(!page.body.contains("=\"/"), "an absolute URL in the page");
    assert_eq!(get(http, "/dask/static/app.js").status, 200);
    let root = get(http, "/dask/");
    assert_eq!(
        (root.status, root.header("Location")),
        (302, Some("status"))
    );
    let bare = get(http, "/dask");
    assert_eq!(
        (bare.status, bare.header("Location")),
        (302, Some("dask/status"))
    );
    assert_eq!(get(http, "/status").status, 404, "outside the prefix");
    assert_eq!(request(http, "POST", "/dask/metrics", &[]).status, 405);

    // Strangers: no token, a wrong one. /health stays open.
    let stranger = request(http, "GET", "/dask/metrics", &[]);
    assert_eq!(stranger.status, 401);
    assert!(!stranger.body.contains("dask_scheduler"));
    let wrong = request(
        http,
        "GET",
        "/dask/api/v1/status",
        &[("Authorization", "Bearer 0123456789abcdef-test-tokeN")],
    );
    assert_eq!(wrong.status, 401);
    let health = request(http, "GET", "/dask/health", &[]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    // A browser: the token once in the URL, then the cookie it set.
    let first = request(http, "GET", &format!("/dask/status?token={TOKEN}"), &[]);
    assert_eq!(first.status, 200);
    let cookie = first.header("Set-Cookie").expect("a cookie").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("Path=/dask/"));
    let pair = cookie.split(';').next().unwrap();
    let later = request(http, "GET", "/dask/api/v1/status", &[("Cookie", pair)]);
    assert_eq!(later.status, 200);

    drop(client);
    worker.stop();
    scheduler.stop();
    // The HTTP side stops with the scheduler.
    assert!(
        TcpStream::connect(http).is_err() || {
            std::thread::sleep(Duration::from_millis(300));
            TcpStream::connect(http).is_err()
        }
    );
}

#[test]
fn the_library_serves_no_dashboard_unless_asked() {
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        ..SchedulerConfig::default()
    })
    .unwrap();
    assert_eq!(scheduler.dashboard_address(), None);
    scheduler.stop();
}

#[test]
fn with_credentials_the_dashboard_needs_the_token_derived_from_the_client_secret() {
    let client_secret = Secret::from_bytes([7; 32]);
    let worker_secret = Secret::from_bytes([9; 32]);
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        credentials: Some(Credentials {
            client: Some(client_secret.clone()),
            worker: Some(worker_secret.clone()),
        }),
        // Open, as the binary's default: the credentials decide.
        dashboard: Some(DashboardConfig {
            port: 0,
            ..DashboardConfig::default()
        }),
        ..SchedulerConfig::default()
    })
    .unwrap();
    let http = scheduler.dashboard_address().expect("a dashboard");
    let token = dashboard_token(&client_secret);
    assert_ne!(token, client_secret.to_hex(), "the token is not the secret");
    // The URL the scheduler prints carries it, for a browser's first visit.
    assert_eq!(
        scheduler.dashboard_url(),
        Some(format!("http://{http}/status?token={token}"))
    );
    let bearer = |t: &str| format!("Bearer {t}");
    let metrics = eventually("the first snapshot", || {
        let r = request(
            http,
            "GET",
            "/metrics",
            &[("Authorization", &bearer(&token))],
        );
        (r.status == 200).then_some(r.body)
    });
    assert_eq!(sample(&metrics, "dask_scheduler_workers"), Some(0.0));

    // Strangers: nothing, the secret itself, the worker secret's token.
    for (who, headers) in [
        ("no token", vec![]),
        (
            "the secret",
            vec![("Authorization", bearer(&client_secret.to_hex()))],
        ),
        (
            "the worker secret's token",
            vec![("Authorization", bearer(&dashboard_token(&worker_secret)))],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for path in ["/metrics", "/api/v1/status", "/status", "/api/v1/waiting"] {
            let r = request(http, "GET", path, &headers);
            assert_eq!(r.status, 401, "{who} on {path}");
            assert!(!r.body.contains("dask_scheduler"), "{who} on {path}");
        }
    }
    let health = request(http, "GET", "/health", &[]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    scheduler.stop();
}

#[test]
fn an_explicit_token_stays_and_no_client_secret_leaves_it_open() {
    let secret = Secret::from_bytes([1; 32]);
    let with = Credentials {
        client: Some(secret.clone()),
        worker: None,
    };
    let workers_only = Credentials {
        client: None,
        worker: Some(secret.clone()),
    };
    assert_eq!(
        Access::Open.for_cluster(Some(&with)),
        Access::Token(dashboard_token(&secret))
    );
    assert_eq!(
        Access::Token(TOKEN.into()).for_cluster(Some(&with)),
        Access::Token(TOKEN.into())
    );
    assert_eq!(Access::Open.for_cluster(Some(&workers_only)), Access::Open);
    assert_eq!(Access::Open.for_cluster(None), Access::Open);
}

/// Reads what the dashboard answers a hostile connection, until it closes
/// or 10 s pass: its status code, if it sent an HTTP reply.
fn answer_to(mut stream: TcpStream) -> Option<u16> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

#[test]
fn hostile_bytes_at_the_dashboard_are_refused_while_members_are_served() {
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        dashboard: Some(DashboardConfig {
            port: 0,
            access: Access::Token(TOKEN.into()),
            ..DashboardConfig::default()
        }),
        ..SchedulerConfig::default()
    })
    .unwrap();
    let http = scheduler.dashboard_address().expect("a dashboard");
    let _worker = WorkerHandle::start(WorkerConfig {
        scheduler: scheduler.address(),
        nthreads: 1,
        ..WorkerConfig::default()
    })
    .unwrap();
    let client = Client::connect(&scheduler.address()).unwrap();

    // A connection that starts a request and never finishes it stays open
    // through all of this.
    let mut dangling = TcpStream::connect(http).unwrap();
    dangling
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let hostile: [(&str, Vec<u8>); 4] = [
        (
            "random bytes",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("a dask/1 frame", vec![0, 0, 0, 2, 0x91, 0x80]),
        (
            "a request line of junk",
            b"\x16\x03\x01 nonsense \x00\xff\r\n\r\n".to_vec(),
        ),
        (
            "a header without a colon",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in hostile {
        let mut stream = TcpStream::connect(http).unwrap();
        stream.write_all(&bytes).unwrap();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let status = answer_to(stream);
        assert!(
            status.is_none_or(|s| (400..500).contains(&s)),
            "{what}: answered {status:?}"
        );
    }
    // A stranger is refused; a member is served; the cluster computes.
    assert_eq!(request(http, "GET", "/metrics", &[]).status, 401);
    let metrics = eventually("a snapshot", || {
        let r = get(http, "/metrics");
        (r.status == 200).then_some(r.body)
    });
    assert!(metrics.contains("dask_scheduler_workers"), "{metrics}");
    let futures = client.submit_tasks(
        vec![task_spec(Key::from("inc-1"), "inc", &[1.into()], &[])],
        vec![Key::from("inc-1")],
    );
    let value = futures[0]
        .result_timeout(Duration::from_secs(30))
        .expect("inc(1) on the cluster");
    assert_eq!(value, 2.into());
    drop(dangling);
    scheduler.stop();
}
