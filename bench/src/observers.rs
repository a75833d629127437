//! `--observers`: what watches a scheduler in production, while the shapes
//! run: a dashboard page (it loads the page, then asks `api/v1/status`
//! once a second, as `app.js` does) and a Prometheus scraper (`/metrics`
//! once a second), both with the dashboard's token. Issue 13 asks that
//! they cost the scheduler's throughput less than 5%: compare a run with
//! `--observers` and one without.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often each observer asks.
const INTERVAL: Duration = Duration::from_secs(1);

/// The two observers, running until [`Observers::stop`].
pub struct Observers {
    stop: Arc<AtomicBool>,
    page: JoinHandle<Result<u64, String>>,
    scraper: JoinHandle<Result<u64, String>>,
}

/// Where the dashboard is and its token, from the URL the scheduler
/// printed (`http://HOST:PORT[/PREFIX]/status?token=TOKEN`).
#[derive(Clone)]
struct Dashboard {
    address: String,
    prefix: String,
    token: String,
}

impl Dashboard {
    fn parse(url: &str) -> Dashboard {
        let rest = url.trim().trim_start_matches("http://");
        let (address, path) = rest.split_once('/').expect("a dashboard URL with a path");
        let (page, token) = path.split_once("?token=").unwrap_or((path, ""));
        let prefix = page
            .strip_suffix("status")
            .unwrap_or("")
            .trim_end_matches('/');
        Dashboard {
            address: address.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
            token: token.to_owned(),
        }
    }

    /// GETs `path` (under the prefix) with the token; the body's length.
    fn get(&self, path: &str) -> Result<usize, String> {
        let mut stream = TcpStream::connect(&self.address).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET {}{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.prefix, self.address, self.token
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&reply);
        let status = text.split(' ').nth(1).unwrap_or("");
        if status != "200" {
            return Err(format!("GET {path}: status {status:?}"));
        }
        Ok(text
            .split_once("\r\n\r\n")
            .map_or(0, |(_, body)| body.len()))
    }
}

/// Runs `each` every [`INTERVAL`] until `stop`; how many times it ran.
fn every_second(
    stop: Arc<AtomicBool>,
    mut each: impl FnMut() -> Result<(), String> + Send + 'static,
) -> JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        let mut n = 0;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                each()?;
                n += 1;
                next += INTERVAL;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(n)
    })
}

impl Observers {
    /// Opens the page (its HTML, script and style) and starts both
    /// observers on the dashboard at `url`.
    pub fn start(url: &str) -> Observers {
        let dashboard = Dashboard::parse(url);
        for file in ["/status", "/static/app.js", "/static/style.css"] {
            dashboard
                .get(file)
                .unwrap_or_else(|e| panic!("the dashboard page at {url}: {e}"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let page = {
            let d = dashboard.clone();
            every_second(stop.clone(), move || d.get("/api/v1/status").map(drop))
        };
        let scraper = every_second(stop.clone(), move || dashboard.get("/metrics").map(drop));
        Observers {
            stop,
            page,
            scraper,
        }
    }

    /// Stops both; (page polls, scrapes). Panics if one was refused.
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let join = |h: JoinHandle<Result<u64, String>>, what: &str| {
            h.join()
                .expect("observer thread")
                .unwrap_or_else(|e| panic!("the {what}: {e}"))
        };
        (
            join(self.page, "dashboard page"),
            join(self.scraper, "scraper"),
        )
    }
}
