// The dask-rs dashboard: one page that reads api/v1/status about once a
// second and draws it; #worker/ID, #task/KEY and #waiting are its
// click-through views. No framework, no build step. Every URL is relative
// (the page works under a prefix, behind a proxy or a tunnel), and data
// from the cluster only ever goes into text nodes and attributes.
"use strict";

const POLL_MS = 1000;
const STREAM_WINDOW_S = 20;
let latest = null;

function el(tag, attrs, ...children) {
  const svg = ["svg", "rect", "line", "text", "g", "title"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function ago(s) {
  if (s < 1) return "now";
  if (s < 90) return Math.round(s) + " s ago";
  return Math.round(s / 60) + " min ago";
}

function colour(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 60% 55%)`;
}

function taskLink(key) {
  return el("a", { href: "#task/" + encodeURIComponent(key) }, key);
}

async function api(path) {
  const r = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

function replaceBody(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}

// ---- the live view ------------------------------------------------------

function drawSummary(s) {
  const t = s.tasks;
  const threads = s.workers.reduce((a, w) => a + w.nthreads, 0);
  const active = t.waiting + t["no-worker"] + t.queued + t.processing;
  // In memory against the limits; what is spilled is held but not in memory.
  const inMemory = Math.max(0, s.stored_bytes - s.spilled_bytes);
  const memory = s.memory_limit ? `${bytes(inMemory)} of ${bytes(s.memory_limit)}` : bytes(inMemory);
  const memoryLabel = s.spilled_bytes ? `cluster memory, ${bytes(s.spilled_bytes)} spilled` : "cluster memory";
  document.getElementById("summary").replaceChildren(
    el("div", { id: "sum-workers" }, el("b", {}, s.workers.length), `workers, ${threads} threads`),
    el("div", {}, el("b", {}, t.processing), "tasks on workers"),
    el("div", {}, el("b", {}, active), "tasks to do"),
    el("div", {}, el("b", {}, t.memory), "results in memory"),
    el("div", {}, el("b", {}, t.erred), "erred"),
    el("div", { id: "sum-memory", "data-spilled": s.spilled_bytes }, el("b", {}, memory), memoryLabel),
    el("div", {}, el("b", {}, s.clients.length), "clients"),
  );
}

let stuckFetched = 0;
async function drawStuck(s) {
  const box = document.getElementById("stuck");
  const n = s.tasks["no-worker"];
  if (!n) { box.hidden = true; return; }
  if (Date.now() - stuckFetched < 3000 && !box.hidden) return;
  stuckFetched = Date.now();
  try {
    const page = await api("api/v1/waiting?state=no-worker&limit=5");
    box.replaceChildren(
      el("b", {}, `${n} task${n > 1 ? "s" : ""} cannot run on any connected worker`), " ",
      el("a", { href: "#waiting" }, "(all waiting tasks)"),
      el("ul", { id: "stuck-list" }, page.tasks.map((w) =>
        el("li", { "data-key": w.key, "data-reason": w.reason }, taskLink(w.key), ": ", w.message))),
    );
    box.hidden = false;
  } catch (e) { /* the next poll tries again */ }
}

// Lanes: each worker gets nthreads lanes; a task goes to the first lane of
// its worker free at its start (the scheduler does not know threads).
function drawStream(s) {
  const svg = document.getElementById("stream");
  const width = svg.clientWidth || 800;
  const now = s.uptime_seconds;
  const from = now - STREAM_WINDOW_S;
  const lanes = [];
  const laneOf = new Map();
  for (const w of s.workers) {
    laneOf.set(w.id, lanes.length);
    for (let i = 0; i < w.nthreads; i++) lanes.push({ worker: w.id, freeAt: -Infinity });
  }
  const height = Math.max(40, Math.min(400, lanes.length * 14 + 20));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.height = height + "px";
  const laneH = (height - 20) / Math.max(1, lanes.length);
  const x = (t) => ((t - from) / STREAM_WINDOW_S) * width;
  const rects = [];
  for (const r of s.stream) {
    if (r.end < from) continue;
    const first = laneOf.get(r.worker);
    if (first === undefined) continue;
    let lane = first;
    for (let i = first; i < lanes.length && lanes[i].worker === r.worker; i++) {
      if (lanes[i].freeAt <= r.start + 1e-6) { lane = i; break; }
    }
    lanes[lane].freeAt = r.end;
    const rect = el("rect", {
      x: x(r.start).toFixed(1), y: (lane * laneH).toFixed(1),
      width: Math.max(1, x(r.end) - x(r.start)).toFixed(1), height: Math.max(1, laneH - 1).toFixed(1),
      fill: colour(r.group), class: "task", "data-group": r.group,
    }, el("title", {}, `${r.key ?? r.group}: ${((r.end - r.start) * 1000).toFixed(1)} ms on worker ${r.worker}`));
    if (r.key) rect.addEventListener("click", () => { location.hash = "task/" + encodeURIComponent(r.key); });
    rects.push(rect);
  }
  const axis = [];
  for (let t = Math.ceil(from); t <= now; t += 5) {
    axis.push(el("text", { x: x(t).toFixed(1), y: height - 4, "font-size": 10, fill: "#888" }, `${Math.round(t - now)} s`));
  }
  svg.replaceChildren(...rects, ...axis);
  svg.dataset.tasks = rects.length;
}

function drawProgress(s) {
  const groups = s.groups.map((g) => {
    const st = g.states;
    const running = st.processing;
    const waiting = st.waiting + st["no-worker"] + st.queued;
    const total = g.finished_total + g.erred_total + running + waiting;
    return { g, running, waiting, total };
  }).filter((x) => x.total > 0)
    .sort((a, b) => (b.running + b.waiting > 0) - (a.running + a.waiting > 0) || a.g.name.localeCompare(b.g.name));
  const rows = groups.map(({ g, running, waiting, total }) => {
    const pct = (n) => (100 * n / total).toFixed(2) + "%";
    return el("div", { class: "group", "data-group": g.name, "data-done": g.finished_total, "data-total": total },
      el("span", { title: g.name }, g.name),
      el("div", { class: "bar" },
        el("span", { class: "done", style: `width:${pct(g.finished_total)}` }),
        el("span", { class: "erred", style: `width:${pct(g.erred_total)}` }),
        el("span", { class: "running", style: `width:${pct(running)}` }),
        el("span", { class: "waiting", style: `width:${pct(waiting)}` })),
      el("span", {}, `${g.finished_total} / ${total}` + (g.erred_total ? `, ${g.erred_total} erred` : "") +
        (st_noworker(g) ? `, ${st_noworker(g)} cannot run` : "")));
  });
  document.getElementById("progress").replaceChildren(...rows);
}

function st_noworker(g) { return g.states["no-worker"]; }

function workerMemory(w) {
  const held = w.reported_bytes ?? w.stored_bytes;
  const spilled = w.spilled_bytes ? `, ${bytes(w.spilled_bytes)} spilled` : "";
  const state = w.stuck ? el("span", { class: "paused stuck", title: w.spill_error ?? "" }, "paused: cannot spill")
    : w.paused ? el("span", { class: "paused" }, "paused") : "";
  if (!w.memory_limit) return el("span", {}, bytes(held) + spilled, " ", state);
  const inMemory = held - (w.spilled_bytes ?? 0);
  const pct = Math.min(100, 100 * inMemory / w.memory_limit).toFixed(1);
  return el("span", {}, el("span", { class: "mem", title: `${pct}% of ${bytes(w.memory_limit)} in memory` },
    el("span", { style: `width:${pct}%` })), " ", bytes(held) + spilled, " ", state);
}

function drawWorkers(s) {
  replaceBody(document.getElementById("workers"), s.workers.map((w) => {
    const running = w.executing ?? Math.min(w.processing, w.nthreads);
    const queued = w.ready ?? Math.max(0, w.processing - w.nthreads);
    const paused = w.stuck ? "cannot-spill" : w.paused ? "paused" : "no";
    return el("tr", { "data-worker": w.name, "data-paused": paused, "data-spilled": w.spilled_bytes ?? 0 },
      el("td", {}, el("a", { href: "#worker/" + w.id }, w.name)),
      el("td", {}, w.address), el("td", { class: "num" }, w.nthreads),
      el("td", { class: "num" }, running), el("td", { class: "num" }, queued),
      el("td", {}, workerMemory(w)), el("td", {}, ago(w.last_seen_seconds)));
  }));
}

function drawClients(s) {
  replaceBody(document.getElementById("clients"), s.clients.map((c) => el("tr", {},
    el("td", {}, c.name ?? `client ${c.id}`), el("td", {}, ago(c.connected_seconds)),
    el("td", { class: "num" }, c.wants), el("td", { class: "num" }, c.graphs_total),
    el("td", {}, c.graphs.slice(-3).map((g) => `${g.group || "?"} (${g.tasks} tasks)`).join(", ")))));
}

function drawStatus(s) {
  document.getElementById("address").textContent = s.address;
  document.getElementById("loop").textContent = `loop ${(100 * s.event_loop.busy_fraction).toFixed(0)}% busy`;
  drawSummary(s);
  drawStream(s);
  drawProgress(s);
  drawWorkers(s);
  drawClients(s);
  drawStuck(s);
}

// ---- click-through views ------------------------------------------------

function entries(pairs) {
  return el("dl", {}, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "")]));
}

function related(list) {
  const items = list.shown.map((t) => el("span", {}, taskLink(t.key), ` (${t.state}) `));
  if (list.count > list.shown.length) items.push(`and ${list.count - list.shown.length} more`);
  return items.length ? items : "none";
}

async function showTask(key) {
  const view = document.getElementById("detail-view");
  try {
    const t = await api("api/v1/task?key=" + encodeURIComponent(key));
    const worker = (w) => w ? el("a", { href: "#worker/" + w.id }, `${w.name} (${w.address})`) : "";
    view.replaceChildren(el("h2", {}, "Task ", t.key), entries([
      ["state", t.state], ["group", t.group], ["function", t.function],
      ["why it waits", t.waiting ? `${t.waiting.reason}: ${t.waiting.message}` : null],
      ["running on", worker(t.processing_on)],
      ["data held by", t.who_has.length ? t.who_has.map((w) => el("span", {}, worker(w), " ")) : "no worker"],
      ["result size", t.state === "memory" ? bytes(t.nbytes) : null],
      ["depends on", related(t.dependencies)],
      ["needed by", related(t.dependents)],
      ["dependents waiting on it", t.waiters],
      ["wanted by clients", t.wanted_by_clients.join(", ") || "none"],
      ["error", t.error ? el("pre", {}, `${t.error.type}: ${t.error.message}\n${t.error.traceback}` +
        (t.error.origin !== t.key ? `\n(raised by ${t.error.origin})` : "")) : null],
      ["priority", t.priority], ["resources", t.resources ? JSON.stringify(t.resources) : null],
      ["allowed workers", t.allowed_workers ? t.allowed_workers.join(", ") : null],
    ]));
  } catch (e) {
    view.replaceChildren(el("h2", {}, "Task ", key), el("p", {}, String(e.message)));
  }
}

function showWorker(id) {
  const view = document.getElementById("detail-view");
  const w = latest && latest.workers.find((x) => String(x.id) === id);
  if (!w) { view.replaceChildren(el("h2", {}, "Worker ", id), el("p", {}, "not registered (left, or not yet seen)")); return; }
  view.replaceChildren(el("h2", {}, "Worker ", w.name), entries([
    ["id", w.id], ["address", w.address], ["threads", w.nthreads],
    ["tasks assigned", w.processing], ["running (heartbeat)", w.executing], ["queued on it (heartbeat)", w.ready],
    ["keys held", w.stored_keys], ["bytes held", bytes(w.stored_bytes)],
    ["bytes reported (spilled included)", bytes(w.reported_bytes)],
    ["bytes spilled", w.spilled_bytes != null ? bytes(w.spilled_bytes) : null],
    ["paused", w.paused ? (w.stuck ? "yes, and it cannot spill" : "yes") : "no"],
    ["spill error", w.spill_error],
    ["memory limit", w.memory_limit ? bytes(w.memory_limit) : "none"],
    ["average task", w.average_task_seconds != null ? (w.average_task_seconds * 1000).toFixed(2) + " ms" : null],
    ["fetched from peers (since it registered)", `${bytes(w.transfers.bytes)} in ${(w.transfers.us / 1e6).toFixed(3)} s`],
    ["of which from memory on this host", bytes(w.transfers.local_bytes)],
    ["functions offered", w.functions], ["resources", JSON.stringify(w.resources)],
    ["registered", ago(w.connected_seconds)], ["last heard", ago(w.last_seen_seconds)],
  ]));
}

function waitingTable(tasks) {
  return el("table", { class: "waiting" }, el("thead", {}, el("tr", {}, el("th", {}, "task"), el("th", {}, "state"), el("th", {}, "reason"), el("th", {}, "why"))),
    el("tbody", {}, tasks.map((t) => el("tr", { "data-key": t.key, "data-reason": t.reason },
      el("td", {}, taskLink(t.key)), el("td", {}, t.state), el("td", {}, t.reason), el("td", {}, t.message)))));
}

// The tasks no connected worker can run come first (what people open this
// page for), then every waiting task, a page at a time in task order.
async function showWaiting(cursor) {
  const view = document.getElementById("detail-view");
  try {
    const stuck = cursor === 0 ? await api("api/v1/waiting?state=no-worker&limit=100") : null;
    const page = await api(`api/v1/waiting?limit=100&cursor=${cursor}`);
    const next = page.next != null ? el("button", { type: "button" }, "next page") : null;
    if (next) next.addEventListener("click", () => showWaiting(page.next));
    view.replaceChildren(
      ...(stuck && stuck.tasks.length ? [el("h2", {}, "Tasks no connected worker can run"), waitingTable(stuck.tasks)] : []),
      el("h2", {}, "Tasks that wait, and why"),
      page.tasks.length ? waitingTable(page.tasks) : el("p", {}, "none on this page"), next);
  } catch (e) {
    view.replaceChildren(el("h2", {}, "Tasks that wait"), el("p", {}, String(e.message)));
  }
}

function route() {
  const hash = decodeURIComponent(location.hash.slice(1));
  const status = document.getElementById("status-view");
  const detail = document.getElementById("detail-view");
  const live = hash === "";
  status.hidden = !live;
  detail.hidden = live;
  if (hash.startsWith("task/")) showTask(hash.slice(5));
  else if (hash.startsWith("worker/")) showWorker(hash.slice(7));
  else if (hash === "waiting") showWaiting(0);
}

async function poll() {
  try {
    latest = await api("api/v1/status");
    document.getElementById("stale").hidden = true;
    if (!document.getElementById("status-view").hidden) drawStatus(latest);
    // A worker's page comes from the snapshot: drawn (again) with each one,
    // so it is filled when opened before the first poll (a link, a reload).
    const hash = decodeURIComponent(location.hash.slice(1));
    if (hash.startsWith("worker/")) showWorker(hash.slice(7));
  } catch (e) {
    document.getElementById("stale").hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

window.addEventListener("hashchange", route);
document.getElementById("window").textContent = STREAM_WINDOW_S;
route();
poll();
