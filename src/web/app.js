// ringmail status page: polls GET /api/v1/dashboard (read scope; the
// cookie set on first load carries the token) and fills the cards. Every
// figure is also in a data-value attribute, raw, for scripts and tests.
// Text from the server (remote replies, addresses) is only ever set with
// textContent, never parsed as HTML: a remote server chooses its replies.
"use strict";

const POLL_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";

function el(id) { return document.getElementById(id); }

function show(id, value, text) {
  const e = el(id);
  if (!e) return;
  e.dataset.value = String(value);
  e.textContent = text === undefined ? String(value) : text;
}

function num(n) { return Number(n).toLocaleString("en-US"); }

function rate(n) { return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2); }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, u = 0;
  while (v >= 1024 && u + 1 < units.length) { v /= 1024; u++; }
  return u === 0 ? n + " B" : v.toFixed(1) + " " + units[u];
}

function age(s) {
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function clock(ms) { return new Date(ms).toLocaleTimeString("en-GB", { hour12: false }); }

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fillTable(id, rows, columns, emptyText) {
  const body = el(id).tBodies[0];
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = body.insertRow();
    const td = cell(tr, emptyText, "empty");
    td.colSpan = columns;
    return;
  }
  for (const r of rows) body.appendChild(r);
}

// A line plot of `series` ([{name, color, values}]) over `times` (ms).
function plot(id, times, series, unit) {
  const box = el(id);
  const W = 560, H = 170, L = 46, R = 8, T = 8, B = 20;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const add = (name, attrs, text) => {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  const all = series.flatMap(s => s.values.filter(v => v !== null));
  const ymax = Math.max(1e-9, ...all) * 1.1;
  const end = times.length ? times[times.length - 1] : Date.now();
  const start = end - 15 * 60 * 1000;
  const x = t => L + (t - start) / (end - start) * (W - L - R);
  const y = v => H - B - v / ymax * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e7ed" });
    add("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, (v >= 10 ? v.toFixed(0) : v.toFixed(v >= 1 ? 1 : 2)) + (i === 4 ? " " + unit : ""));
  }
  for (let m = 0; m <= 15; m += 5) {
    const t = start + m * 60000;
    add("text", { x: x(t), y: H - 5, "text-anchor": "middle" }, m === 15 ? "now" : "-" + (15 - m) + " min");
  }
  let points = 0;
  series.forEach((s, i) => {
    const pts = [];
    s.values.forEach((v, j) => { if (v !== null) pts.push(x(times[j]).toFixed(1) + "," + y(v).toFixed(1)); });
    points = Math.max(points, pts.length);
    add("polyline", { points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": 1.8, "data-series": s.name, "data-points": pts.length });
    if (pts.length === 1) {
      const [cx, cy] = pts[0].split(",");
      add("circle", { cx, cy, r: 2.5, fill: s.color });
    }
    add("rect", { x: L + 8 + i * 110, y: T, width: 10, height: 4, fill: s.color });
    add("text", { x: L + 22 + i * 110, y: T + 5 }, s.name);
  });
  if (points === 0) add("text", { x: (L + W - R) / 2, y: H / 2, "text-anchor": "middle" }, "no data yet");
  box.replaceChildren(svg);
  box.dataset.points = String(points);
}

function render(d) {
  const s = d.status;
  show("cores", s.cores);
  show("updated", d.generated_unix_ms, clock(d.generated_unix_ms));
  const q = s.queue;
  show("queue-total", q.total, num(q.total));
  show("queue-ready", q.ready, num(q.ready));
  show("queue-deferred", q.deferred, num(q.deferred));
  show("queue-held", q.held, num(q.held));
  show("queue-in-flight", q.in_flight, num(q.in_flight));
  show("queue-oldest-age", q.oldest_age_s, q.total ? age(q.oldest_age_s) : "–");
  const t = s.since_start;
  show("received", t.received, num(t.received));
  show("relayed", t.relayed, num(t.relayed));
  show("delivered-local", t.delivered_local, num(t.delivered_local));
  show("deferred", t.deferred, num(t.deferred));
  show("bounced", t.bounced, num(t.bounced));
  show("mailbox-messages", s.mailbox_messages, num(s.mailbox_messages));
  show("sessions-open", s.sessions.total, num(s.sessions.total));
  show("spool-used", s.spool.used_bytes, bytes(s.spool.used_bytes));
  show("spool-free", s.spool.free_bytes, bytes(s.spool.free_bytes));
  show("spool-full", s.spool.full, s.spool.full ? "NO: spool full (452 4.3.1)" : "yes");
  const used = s.spool.used_bytes, total = used + s.spool.free_bytes;
  el("spool-bar").style.width = (total ? 100 * used / total : 0).toFixed(1) + "%";
  const r = s.recovery;
  show("recovery", r.complete, r.complete ? "complete" : `${r.segments_read}/${r.segments_total} segments`);
  const state = el("state");
  state.textContent = s.spool.full ? "spool full" : r.complete ? "serving" : "recovering";
  state.className = "state " + (s.spool.full ? "bad" : "ok");

  fillTable("cores-table", d.cores.map(c => {
    const tr = document.createElement("tr");
    tr.dataset.core = c.core;
    cell(tr, String(c.core));
    cell(tr, rate(c.received_per_s));
    cell(tr, rate(c.relayed_per_s));
    cell(tr, num(c.received)).dataset.value = c.received;
    cell(tr, num(c.relayed)).dataset.value = c.relayed;
    cell(tr, num(c.sessions_open));
    return tr;
  }), 6, "no cores answered");

  const p = d.series.points, times = p.map(x => x.t_ms);
  plot("plot-throughput", times, [
    { name: "received/s", color: "#3b7dd8", values: p.map(x => x.received_per_s) },
    { name: "relayed/s", color: "#2e8b57", values: p.map(x => x.relayed_per_s) },
    { name: "deferred/s", color: "#d68910", values: p.map(x => x.deferred_per_s) },
    { name: "bounced/s", color: "#c0392b", values: p.map(x => x.bounced_per_s) },
  ], "/s");
  plot("plot-queue", times, [{ name: "queued", color: "#7d3c98", values: p.map(x => x.queue) }], "");
  plot("plot-data-ack", times, [
    { name: "p50", color: "#3b7dd8", values: p.map(x => x.data_ack_p50_ms) },
    { name: "p99", color: "#d68910", values: p.map(x => x.data_ack_p99_ms) },
  ], "ms");
  plot("plot-delivery", times, [
    { name: "p50", color: "#2e8b57", values: p.map(x => x.relay_delivery_p50_ms) },
    { name: "p99", color: "#c0392b", values: p.map(x => x.relay_delivery_p99_ms) },
  ], "ms");

  fillTable("sites-table", d.sites.map(site => {
    const tr = document.createElement("tr");
    tr.dataset.site = site.site;
    const src = site.sources;
    const suspended = src.map(x => x.suspended_until_ms).filter(x => x !== null);
    const rates = src.map(x => x.rate_per_second).filter(x => x !== null);
    cell(tr, site.site);
    cell(tr, num(site.queued)).dataset.value = site.queued;
    cell(tr, num(site.delivered)).dataset.value = site.delivered;
    cell(tr, num(site.deferred)).dataset.value = site.deferred;
    cell(tr, num(site.bounced)).dataset.value = site.bounced;
    cell(tr, rates.length ? rate(rates.reduce((a, b) => a + b, 0)) + "/s" : "unlimited");
    cell(tr, suspended.length ? clock(Math.max(...suspended)) : "–", suspended.length ? "kind-bounced" : "");
    cell(tr, src.map(x => x.last_reply).filter(x => x).join(" | "));
    return tr;
  }), 8, "no destinations yet");

  fillTable("errors-table", d.recent_errors.map(e => {
    const tr = document.createElement("tr");
    cell(tr, clock(e.at_ms));
    cell(tr, String(e.core));
    cell(tr, e.kind.replace("_", " "), "kind-" + e.kind);
    cell(tr, e.subject);
    cell(tr, e.detail);
    return tr;
  }), 5, "none");
  el("errors-table").dataset.count = String(d.recent_errors.length);
}

async function poll() {
  try {
    const r = await fetch("/api/v1/dashboard", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401 || r.status === 403) {
      const state = el("state");
      state.textContent = "not signed in: open /?token=READ_TOKEN";
      state.className = "state bad";
      return;
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    document.body.dataset.loaded = "true";
  } catch (e) {
    const state = el("state");
    state.textContent = "unreachable: " + e.message;
    state.className = "state bad";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
