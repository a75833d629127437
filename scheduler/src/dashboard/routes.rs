//! The dashboard's routes (every one under the prefix):
//!
//! | path | what |
//! |---|---|
//! | `/status` | the live page (`#worker/ID`, `#task/KEY`, `#waiting` are its click-through views; `/` redirects here) |
//! | `/static/...` | its script and style |
//! | `/api/v1/status` | the whole snapshot (what the live page reads) |
//! | `/api/v1/workers`, `/api/v1/workers/ID` | workers |
//! | `/api/v1/groups`, `/api/v1/clients`, `/api/v1/stream` | parts of the snapshot |
//! | `/api/v1/task?key=KEY` | one task (asked of the loop) |
//! | `/api/v1/waiting?cursor=N&limit=N&state=S` | a page of waiting tasks with their reasons (asked of the loop) |
//! | `/metrics` | Prometheus text exposition |
//! | `/health` | `ok` (200), or 503 when the loop has published nothing for a while |
//!
//! Every route but `/health` checks [`Access`].

use std::time::Instant;

use tiny_http::{Header, Method, Request, Response};

use super::{Access, Published, QueryKind, Shared, STALE_AFTER};

const INDEX_HTML: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const STYLE_CSS: &str = include_str!("static/style.css");

/// Most tasks on one page of `/api/v1/waiting`.
pub const WAITING_PAGE_MAX: usize = 1_000;

/// The cookie that carries the token in a browser.
const TOKEN_COOKIE: &str = "dask-rs-token";

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> Header {
    // Names and values here are ASCII without line breaks.
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("ascii"))
}

fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    Response::from_data(body.into())
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
}

fn json(value: &impl serde::Serialize) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => text(200, "application/json", body),
        Err(e) => text(
            500,
            "text/plain; charset=utf-8",
            format!("cannot encode: {e}"),
        ),
    }
}

fn not_found(path: &str) -> Reply {
    text(
        404,
        "text/plain; charset=utf-8",
        format!("no page at {path}: the dashboard is at status, its data under api/v1/"),
    )
}

fn unavailable(why: &str) -> Reply {
    text(503, "text/plain; charset=utf-8", why.to_owned())
}

/// Splits `/a/b?x=1&y=2` into the path and its decoded query pairs.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), pairs)
}

/// `%XX` and `+` decoded; bad escapes kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Compares without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token a request carries, if any (bearer, cookie, or `?token=`).
fn presented_token(request: &Request, pairs: &[(String, String)]) -> Option<String> {
    for h in request.headers() {
        if h.field.equiv("Authorization") {
            if let Some(t) = h.value.as_str().strip_prefix("Bearer ") {
                return Some(t.trim().to_owned());
            }
        }
        if h.field.equiv("Cookie") {
            for c in h.value.as_str().split(';') {
                if let Some((name, value)) = c.trim().split_once('=') {
                    if name == TOKEN_COOKIE {
                        return Some(value.to_owned());
                    }
                }
            }
        }
    }
    query(pairs, "token").map(str::to_owned)
}

/// Answers one request.
pub(crate) fn handle(shared: &Shared, request: Request) {
    let reply = route(shared, &request);
    let _ = request.respond(reply);
}

fn route(shared: &Shared, request: &Request) -> Reply {
    if !matches!(request.method(), Method::Get | Method::Head) {
        return text(
            405,
            "text/plain; charset=utf-8",
            "the dashboard only answers GET",
        )
        .with_header(header("Allow", "GET, HEAD"));
    }
    let (full_path, pairs) = split_url(request.url());
    let Some(path) = full_path.strip_prefix(shared.prefix.as_str()) else {
        return not_found(&full_path);
    };
    if path.is_empty() || path == "/" {
        // One canonical page URL; relative, so a proxy's prefix stays.
        let last = full_path.rsplit('/').next().unwrap_or("");
        let to = if path.is_empty() && !last.is_empty() {
            format!("{last}/status")
        } else {
            "status".to_owned()
        };
        return text(302, "text/plain; charset=utf-8", format!("see {to}"))
            .with_header(header("Location", &to));
    }
    if path == "/health" {
        return health(shared);
    }
    let mut set_cookie = None;
    if let Access::Token(token) = &shared.access {
        let presented = presented_token(request, &pairs);
        if !presented.as_deref().is_some_and(|p| same_secret(p, token)) {
            return text(
                401,
                "text/plain; charset=utf-8",
                "this dashboard needs the cluster's dashboard token: open the URL the scheduler \
                 printed (it ends in ?token=...), or send Authorization: Bearer TOKEN",
            )
            .with_header(header("WWW-Authenticate", "Bearer realm=\"dask-rs\""));
        }
        if query(&pairs, "token").is_some() {
            set_cookie = Some(format!(
                "{TOKEN_COOKIE}={token}; Path={}/; HttpOnly; SameSite=Strict",
                shared.prefix
            ));
        }
    }
    let reply = serve(shared, path, &pairs);
    match set_cookie {
        Some(cookie) => reply.with_header(header("Set-Cookie", &cookie)),
        None => reply,
    }
}

fn health(shared: &Shared) -> Reply {
    health_of(shared.latest().as_deref())
}

/// `/health` with `latest` the last snapshot published, if any.
fn health_of(latest: Option<&Published>) -> Reply {
    match latest {
        Some(p) if p.at.is_some_and(|at| at.elapsed() < STALE_AFTER) => {
            text(200, "text/plain; charset=utf-8", "ok")
        }
        Some(_) => unavailable("the scheduler's event loop has not published for over 10 s"),
        None => unavailable("starting"),
    }
}

fn serve(shared: &Shared, path: &str, pairs: &[(String, String)]) -> Reply {
    match path {
        "/status" => return text(200, "text/html; charset=utf-8", INDEX_HTML),
        "/static/app.js" => return text(200, "text/javascript; charset=utf-8", APP_JS),
        "/static/style.css" => return text(200, "text/css; charset=utf-8", STYLE_CSS),
        _ => {}
    }
    if path == "/api/v1/task" {
        let Some(key) = query(pairs, "key") else {
            return text(
                400,
                "text/plain; charset=utf-8",
                "give the task as ?key=KEY",
            );
        };
        return match shared.ask(QueryKind::Task(key.to_owned())) {
            Some(serde_json::Value::Null) => text(
                404,
                "application/json",
                serde_json::json!({"error": format!("no task {key:?}: the scheduler does not keep it (never submitted, or forgotten once released)")}).to_string(),
            ),
            Some(v) => json(&v),
            None => unavailable("the scheduler did not answer in time (busy); try again"),
        };
    }
    if path == "/api/v1/waiting" {
        let number = |name: &str, default: u64| {
            query(pairs, name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        let cursor = number("cursor", 0);
        let limit = number("limit", 100).clamp(1, WAITING_PAGE_MAX as u64) as usize;
        let state = query(pairs, "state").filter(|s| !s.is_empty());
        if let Some(s) = state {
            if !matches!(s, "waiting" | "no-worker" | "queued") {
                return text(
                    400,
                    "text/plain; charset=utf-8",
                    format!("state {s:?}: expected waiting, no-worker or queued"),
                );
            }
        }
        let kind = QueryKind::Waiting {
            cursor,
            limit,
            state: state.map(str::to_owned),
        };
        return match shared.ask(kind) {
            Some(v) => json(&v),
            None => unavailable("the scheduler did not answer in time (busy); try again"),
        };
    }
    let Some(p) = shared.latest() else {
        return unavailable("the scheduler has not published its state yet");
    };
    match path {
        "/metrics" => text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            super::metrics::render(&p, Instant::now()),
        ),
        "/api/v1/status" => json(&*p),
        "/api/v1/workers" => json(&p.state.workers),
        "/api/v1/groups" => json(&p.state.groups),
        "/api/v1/clients" => json(&p.state.clients),
        "/api/v1/stream" => json(&p.state.stream),
        _ => match path.strip_prefix("/api/v1/workers/") {
            Some(id) => match p
                .state
                .workers
                .iter()
                .find(|w| id.parse::<u64>().ok() == Some(w.id) || w.name == id)
            {
                Some(w) => json(w),
                None => text(
                    404,
                    "application/json",
                    serde_json::json!({"error": format!("no worker {id:?} is registered")})
                        .to_string(),
                ),
            },
            None => not_found(path),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn urls_split_and_decode() {
        let (path, pairs) = split_url("/a%20b/c?key=x%2D1&limit=5&flag&bad=%zz&end=%4");
        assert_eq!(path, "/a b/c");
        assert_eq!(query(&pairs, "key"), Some("x-1"));
        assert_eq!(query(&pairs, "limit"), Some("5"));
        assert_eq!(query(&pairs, "flag"), Some(""));
        assert_eq!(query(&pairs, "bad"), Some("%zz"));
        assert_eq!(query(&pairs, "end"), Some("%4"));
        assert_eq!(percent_decode("%e2%82%ac+x"), "€ x");
    }

    #[test]
    fn health_is_503_until_the_first_snapshot_and_once_the_loop_stops_publishing() {
        let state = crate::SchedulerState::new(Default::default(), dask_core::Timestamp::ZERO);
        let at = |ago: Duration| Published {
            address: String::new(),
            state: state.snapshot(),
            event_loop: Default::default(),
            at: Instant::now().checked_sub(ago),
        };
        assert_eq!(health_of(None).status_code().0, 503, "starting");
        let fresh = at(Duration::from_secs(1));
        assert_eq!(health_of(Some(&fresh)).status_code().0, 200);
        let stuck = at(STALE_AFTER + Duration::from_secs(1));
        assert_eq!(health_of(Some(&stuck)).status_code().0, 503, "a stuck loop");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
