"""The dashboard in a real browser and /metrics through a real parser.

Starts dask-scheduler (dashboard on a free port), three dask-workers and
two `dask-rs submit`s. The first graph pauses the third worker, `ws-full`
(a 4 MB memory limit: it spills four 0.5 MB values, then a running task
holds a 3.5 MB one, which it cannot spill, past its pause threshold), and
moves a 1 MB value from one worker to the other (worker restrictions), and
a 2.1 MB one, which goes from memory to memory (same host: value-local). The
second runs for a few seconds, plus one task no worker can run. Headless
Chromium loads the page while it runs: the DOM must show the workers, the
paused badge and spilled bytes of `ws-full`, a progress bar that moves,
the task stream filling and the reason the stuck task waits; a screenshot
is saved. Then /metrics is parsed by prometheus_client's parser and its
values checked against what this script did; the transfer counters do not
go down when the worker that fetched leaves.

Usage: dashboard_check.py BIN_DIR ARTIFACT_DIR   (run by scripts/ci/browser.sh)
"""

import html.parser
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

BIN, ARTIFACTS = sys.argv[1], sys.argv[2]
NAPS = 300
NAP_SECONDS = 0.2
SMALL_BYTES, SMALLS, BIG_BYTES, BLOB_BYTES = 500_000, 4, 3_500_000, 1_000_000
# Over the workers' 1 MiB threshold for lending values by address.
LOCAL_BLOB_BYTES = 2_100_000
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1200",
]
procs = []
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAILED: {what}", file=sys.stderr)


def start(args, **kw):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, text=True, **kw)
    procs.append(p)
    return p


def line_starting(p, prefix, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise SystemExit(f"no line starting with {prefix!r}")


def browser(url, *extra):
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--virtual-time-budget=3000", *extra, url],
            capture_output=True, text=True, timeout=120)
    return out.stdout


class Dom(html.parser.HTMLParser):
    """The attributes of every element, by tag."""

    def __init__(self, text):
        super().__init__()
        self.elements = []
        self.texts = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    def having(self, tag, attr):
        return [a for t, a in self.elements if t == tag and attr in a]


def get(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return r.read().decode()


def metrics(base):
    samples = {}
    for family in text_string_to_metric_families(get(base + "/metrics", TOKEN)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


try:
    scheduler = start([f"{BIN}/dask-scheduler", "--port", "0", "--dashboard-address",
                       "127.0.0.1:0", "--log-format", "json"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    address = line_starting(scheduler, "Scheduler at ")
    # http://HOST:PORT/status, with ?token=... when the cluster has a
    # client secret (a browser's first visit sets a cookie from it).
    page = line_starting(scheduler, "Dashboard at ")
    base = page.split("?")[0].rsplit("/", 1)[0]
    TOKEN = urllib.parse.parse_qs(urllib.parse.urlsplit(page).query).get("token", [None])[0]
    workers = {}
    # The same-host path is on, whatever the caller's environment says.
    local_on = {k: v for k, v in os.environ.items() if k != "DASK_RS_VALUE_LOCAL"}
    for name in ("ws-1", "ws-2"):
        workers[name] = start([f"{BIN}/dask-worker", address, "--nthreads", "2", "--name", name],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=local_on)
    workers["ws-full"] = start([f"{BIN}/dask-worker", address, "--nthreads", "1", "--name", "ws-full",
                                "--memory-limit", "4MB"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def on(worker, task):
        return dict(task, workers=[worker])

    # The first graph: ws-full spills, then pauses; a value moves ws-1 -> ws-2.
    full = [on("ws-full", {"key": f"small-{i}", "function": "conformance.bytes", "args": [SMALL_BYTES]})
            for i in range(SMALLS)]
    full.append(on("ws-full", {"key": "big", "function": "conformance.bytes", "args": [BIG_BYTES]}))
    full.append(on("ws-full", {"key": "hold", "function": "sleep", "args": [120, {"$ref": "big"}]}))
    full.append(on("ws-1", {"key": "blob", "function": "conformance.bytes", "args": [BLOB_BYTES]}))
    full.append(on("ws-2", {"key": "blob-len", "function": "len", "args": [{"$ref": "blob"}]}))
    full.append(on("ws-1", {"key": "local-blob", "function": "conformance.bytes", "args": [LOCAL_BLOB_BYTES]}))
    full.append(on("ws-2", {"key": "local-blob-len", "function": "len", "args": [{"$ref": "local-blob"}]}))
    holding = os.path.join(ARTIFACTS, "dashboard-holding.json")
    with open(holding, "w") as f:
        json.dump({"tasks": full}, f)
    start([f"{BIN}/dask-rs", "submit", holding, "--scheduler", address],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        status = json.loads(get(base + "/api/v1/status", TOKEN))
        ws_full = [w for w in status["workers"] if w["name"] == "ws-full"]
        ws_2 = [w for w in status["workers"] if w["name"] == "ws-2"]
        if (ws_full and ws_full[0]["paused"] and ws_full[0]["spilled_bytes"]
                and ws_2 and ws_2[0]["transfers"]["local_bytes"]):
            break
        time.sleep(0.2)
    check(ws_full and ws_full[0]["paused"], f"ws-full paused: {ws_full}")
    check(ws_full and ws_full[0]["spilled_bytes"] == SMALLS * (SMALL_BYTES + 5),
          f"ws-full spilled its small values: {ws_full}")

    # The second graph: naps on ws-1 and ws-2, and one task no worker can run.
    tasks = [{"key": f"nap-{i}", "function": "sleep", "args": [NAP_SECONDS, i], "workers": ["ws-1", "ws-2"]}
             for i in range(NAPS)]
    tasks.append({"key": "gpu-1", "function": "gpu_only", "args": []})
    graph = os.path.join(ARTIFACTS, "dashboard-graph.json")
    with open(graph, "w") as f:
        json.dump({"tasks": tasks}, f)
    submit = start([f"{BIN}/dask-rs", "submit", graph, "--scheduler", address],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)

    # While the graph runs: the DOM, twice.
    first = Dom(browser(page, "--dump-dom"))
    time.sleep(1.5)
    second = Dom(browser(page, "--dump-dom"))
    browser(page, f"--screenshot={os.path.join(ARTIFACTS, 'dashboard.png')}")
    check(os.path.getsize(os.path.join(ARTIFACTS, "dashboard.png")) > 10_000, "a screenshot")

    rows = {a["data-worker"]: a for a in second.having("tr", "data-worker")}
    check(sorted(rows) == ["ws-1", "ws-2", "ws-full"], f"the workers listed: {sorted(rows)}")
    paused = {name: a.get("data-paused") for name, a in rows.items()}
    check(paused == {"ws-1": "no", "ws-2": "no", "ws-full": "paused"}, f"who is paused: {paused}")
    spilled = rows.get("ws-full", {}).get("data-spilled")
    check(spilled == str(SMALLS * (SMALL_BYTES + 5)), f"ws-full's spilled bytes: {spilled}")
    summary = [a for a in second.having("div", "data-spilled") if a.get("id") == "sum-memory"]
    check(summary and summary[0]["data-spilled"] == str(SMALLS * (SMALL_BYTES + 5)),
          f"the cluster's spilled bytes: {summary}")
    check(any(t.strip() == "cluster memory, 2.0 MB spilled" for t in second.texts),
          "the cluster memory says what is spilled")
    check(any(t.strip() == "paused" for t in second.texts), "the paused badge")
    check(any(t.strip().endswith("2.0 MB spilled") for t in second.texts),
          f"the spilled bytes, as people read them: {[t for t in second.texts if 'spilled' in t]}")

    def done(dom):
        groups = {a["data-group"]: int(a["data-done"]) for a in dom.having("div", "data-done")}
        return groups.get("nap", -1)

    check(0 <= done(first) < done(second), f"the progress bar moves: {done(first)} -> {done(second)}")
    streams = [int(a.get("data-tasks", "0")) for t, a in second.elements if t == "svg" and a.get("id") == "stream"]
    check(streams and streams[0] > 0, f"the task stream fills: {streams}")
    stuck = [a for a in second.having("li", "data-reason") if a.get("data-key") == "gpu-1"]
    check(stuck and stuck[0]["data-reason"] == "no-function", f"the stuck task and its reason: {stuck}")
    check(any("gpu_only" in t for t in second.texts), "the reason names the function")

    # The click-through pages.
    task_page = Dom(browser(page + "#task/nap-1", "--dump-dom"))
    check(any(t.strip() == "nap" for t in task_page.texts), "a task's page shows its group")
    full_id = next(w["id"] for w in status["workers"] if w["name"] == "ws-full")
    worker_page = Dom(browser(page + f"#worker/{full_id}", "--dump-dom"))
    check(any(t.strip() == "yes" for t in worker_page.texts) and
          any(t.strip() == "2.0 MB" for t in worker_page.texts),
          "a worker's page says it is paused and what it spilled")
    ws_2_id = next(w["id"] for w in status["workers"] if w["name"] == "ws-2")
    worker_page = Dom(browser(page + f"#worker/{ws_2_id}", "--dump-dom"))
    texts = [t.strip() for t in worker_page.texts if t.strip()]
    label = "of which from memory on this host"
    shown = texts[texts.index(label) + 1] if label in texts[:-1] else None
    check(shown == "2.1 MB", f"a worker's page says what it read from memory on this host: {shown}")
    waiting_page = Dom(browser(page + "#waiting", "--dump-dom"))
    check(any(a.get("data-key") == "gpu-1" for a in waiting_page.having("tr", "data-reason")),
          "the waiting list lists the stuck task")

    # A stranger speaking HTTP to the scheduler's port is refused (and counted).
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as stranger:
        stranger.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        stranger.settimeout(10)
        try:
            while stranger.recv(4096):
                pass
        except OSError:
            pass

    # /metrics against what happened, once every nap is done.
    deadline = time.time() + 60
    while time.time() < deadline:
        s = metrics(base)
        if value(s, "dask_scheduler_tasks_finished_total", task_group="nap") == NAPS:
            break
        time.sleep(0.5)
    check(value(s, "dask_scheduler_tasks_finished_total", task_group="nap") == NAPS, "naps finished")
    compute = value(s, "dask_scheduler_tasks_compute_seconds_total", task_group="nap") or 0
    check(NAPS * NAP_SECONDS * 0.9 <= compute <= NAPS * NAP_SECONDS * 20, f"compute seconds {compute}")
    check(value(s, "dask_scheduler_workers") == 3, "three workers")
    check(value(s, "dask_worker_threads") == 5, "five threads")
    check(value(s, "dask_scheduler_clients") == 2, "two clients (the submits)")
    check(value(s, "dask_scheduler_tasks", state="no-worker") == 1, "one task cannot run")
    check(value(s, "dask_scheduler_graphs_total") == 2, "two graphs")
    check(value(s, "dask_scheduler_tasks_submitted_total") == NAPS + 1 + len(full), "their tasks")
    check(value(s, "dask_scheduler_workers_added_total") == 3, "workers added")
    check(value(s, "dask_worker_paused", spill_failed="false") == 1, "one worker paused")
    check(value(s, "dask_worker_spilled_bytes") == SMALLS * (SMALL_BYTES + 5), "bytes spilled")
    moved = value(s, "dask_worker_transfer_bytes_total") or 0
    both = BLOB_BYTES + LOCAL_BLOB_BYTES
    check(both <= moved < 2 * both, f"the values moved between workers: {moved} bytes")
    local = value(s, "dask_worker_transfer_local_bytes_total") or 0
    check(LOCAL_BLOB_BYTES <= local <= moved - BLOB_BYTES,
          f"the large one from memory, the 1 MB one by the connection: {local} of {moved} bytes")
    fetching = value(s, "dask_worker_transfer_seconds_total") or 0
    check(fetching > 0, f"seconds fetching: {fetching}")
    check(value(s, "dask_scheduler_event_loop_busy_seconds_total") > 0, "the loop's busy time")
    busy = value(s, "dask_scheduler_event_loop_busy_ratio")
    check(busy is not None and 0 <= busy <= 1, f"the loop's busy fraction: {busy}")
    longest = value(s, "dask_scheduler_event_handling_maximum_seconds")
    check(longest is not None and longest >= 0, f"the longest event handling: {longest}")
    refused = {dict(k[1]).get("reason"): v for k, v in s.items()
               if k[0] == "dask_scheduler_connections_refused_total"}
    check(sum(refused.values()) >= 1, f"connections refused by reason: {refused}")
    check(not any("nap-" in str(k) for k in s), "no key is a label")
    # ws-2, which fetched the value, leaves: the counters stay.
    workers["ws-2"].terminate()
    workers["ws-2"].wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline and value(after := metrics(base), "dask_scheduler_workers") != 2:
        time.sleep(0.3)
    check(value(after, "dask_scheduler_workers") == 2, "ws-2 left")
    check((value(after, "dask_worker_transfer_bytes_total") or 0) >= moved
          and (value(after, "dask_worker_transfer_local_bytes_total") or 0) >= local
          and (value(after, "dask_worker_transfer_seconds_total") or 0) >= fetching,
          "the transfer counters do not go down when a worker leaves")
    check(get(base + "/health") == "ok", "/health")
    if TOKEN:
        # The cluster has credentials: a stranger without the token is refused.
        try:
            get(base + "/metrics")
            check(False, "a stranger is refused /metrics")
        except urllib.error.HTTPError as e:
            check(e.code == 401, f"a stranger is refused /metrics: {e.code}")

    # The submit said why gpu-1 waits; it is still waiting.
    submit.terminate()
    _, err = submit.communicate(timeout=30)
    check("dask-rs: waiting: gpu-1: it cannot run: no connected worker offers function `gpu_only`" in err,
          f"dask-rs submit says why: {err!r}")
    # Its stderr is a pipe: a progress line every 5 s, counting its own graph.
    check(re.search(rf"^dask-rs: \d+/{NAPS + 1} tasks, ", err, re.M) is not None,
          f"dask-rs submit prints progress lines on a pipe: {err!r}")
finally:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()

logs = [json.loads(l) for l in scheduler.stderr.read().splitlines() if l.startswith("{")]
events = [l["event"] for l in logs]
check(events.count("worker-joined") == 3, f"JSON logs: three joins in {events}")
check("worker-paused" in events, f"JSON logs: ws-full paused, in {events}")
check(not any(e in ("task-finished",) for e in events), "no line per task")

print(f"dashboard: {passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
