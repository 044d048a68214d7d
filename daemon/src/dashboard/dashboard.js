// The node dashboard: polls /status and /history once a second and redraws plain SVG charts,
// the neighbour table and the swarm drawing. No library, no build step: it ships inside the
// murmur binary.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 420, H = 220, M = { left: 52, right: 10, top: 10, bottom: 30 };
const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1"];

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  if (a >= 10 || a === 0) return v.toFixed(0);
  if (a >= 0.01) return v.toFixed(2);
  return v.toExponential(1);
}

// A tick label with as many decimals as ticks `step` apart need.
function tick(v, step) {
  const a = Math.abs(v);
  if (a >= 1e3) return fmt(v);
  const decimals = Math.min(3, Math.max(0, -Math.floor(Math.log10(step || 1))));
  return v.toFixed(decimals);
}

function bytes(v) {
  return fmt(v) + "B";
}

// Draws `series` ([{name, points: [[x, y], ...]}]) into `svg`, with axes labelled by
// `xLabel`/`yLabel`; `log` makes the y axis logarithmic. Sets data-points to the number of
// points drawn, which is what tests read.
function chart(svg, series, xLabel, yLabel, log) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const pts = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
  svg.setAttribute("data-points", String(pts.length));
  if (pts.length === 0) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, svg).textContent = "no data yet";
    return;
  }
  const ty = (y) => (log ? Math.log10(y) : y);
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => ty(p[1]))), Math.max(...pts.map((p) => ty(p[1])))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const sy = (y) => H - M.bottom - ((ty(y) - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    const y = H - M.bottom - ((H - M.top - M.bottom) * i) / 4;
    el("line", { x1: M.left, x2: W - M.right, y1: y, y2: y, class: "grid" }, svg);
    el("text", { x: M.left - 4, y: y + 3, "text-anchor": "end" }, svg).textContent =
      log ? fmt(10 ** v) : tick(v, (y1 - y0) / 4);
  }
  for (let i = 0; i <= 4; i++) {
    const v = x0 + ((x1 - x0) * i) / 4;
    el("text", { x: sx(v), y: H - M.bottom + 12, "text-anchor": "middle" }, svg).textContent = tick(v, (x1 - x0) / 4);
  }
  el("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis" }, svg);
  el("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }, svg);
  el("text", { x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent = xLabel;
  el("text", { x: 10, y: H / 2, transform: `rotate(-90 10 ${H / 2})`, "text-anchor": "middle" }, svg).textContent = yLabel;
  series.forEach((s, i) => {
    const good = s.points.filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
    if (good.length === 0) return;
    const d = good.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
    el("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.5, "data-series": s.name }, svg);
    if (good.length === 1) {
      el("circle", { cx: sx(good[0][0]), cy: sy(good[0][1]), r: 2.5, fill: COLORS[i % COLORS.length] }, svg);
    }
    if (series.length > 1) {
      el("text", { x: W - M.right - 4, y: M.top + 12 + 12 * i, "text-anchor": "end", fill: COLORS[i % COLORS.length] }, svg).textContent = s.name;
    }
  });
}

function short(id) {
  return id.length > 12 ? "…" + id.slice(-8) : id;
}

// Self in the middle, neighbours on the inner ring, their other neighbours on the outer one.
function drawSwarm(svg, status) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const me = status.peer_id;
  const nbs = [...status.neighbours].sort();
  const outer = new Set();
  for (const n of nbs) {
    for (const m of status.reported_neighbours[n] || []) {
      if (m !== me && !nbs.includes(m)) outer.add(m);
    }
  }
  const far = [...outer].sort();
  const pos = new Map([[me, [W / 2, H / 2]]]);
  const ring = (ids, r) => ids.forEach((id, i) => {
    const a = (2 * Math.PI * i) / Math.max(ids.length, 1) - Math.PI / 2;
    pos.set(id, [W / 2 + r * 1.8 * Math.cos(a), H / 2 + r * Math.sin(a)]);
  });
  ring(nbs, 55);
  ring(far, 95);
  const edges = [];
  for (const n of nbs) edges.push([me, n]);
  for (const n of nbs) {
    for (const m of status.reported_neighbours[n] || []) {
      if (pos.has(m) && m !== me && !(nbs.includes(m) && m < n)) edges.push([n, m]);
    }
  }
  for (const [a, b] of edges) {
    const [p, q] = [pos.get(a), pos.get(b)];
    el("line", { x1: p[0], y1: p[1], x2: q[0], y2: q[1], stroke: a === me ? "#2b6cb0" : "#bbb", "stroke-width": a === me ? 1.5 : 1 }, svg);
  }
  for (const [id, [x, y]] of pos) {
    const kind = id === me ? "self" : nbs.includes(id) ? "neighbour" : "two-hop";
    const fill = { self: "#1d2330", neighbour: "#2b6cb0", "two-hop": "#a0aec0" }[kind];
    const g = el("g", { "data-peer": id, "data-kind": kind }, svg);
    el("circle", { cx: x, cy: y, r: kind === "self" ? 8 : 6, fill }, g);
    el("text", { x, y: y - 10, "text-anchor": "middle" }, g).textContent = id === me ? "this node" : short(id);
  }
  svg.setAttribute("data-nodes", String(pos.size));
  svg.setAttribute("data-edges", String(edges.length));
}

function td(row, text, cls) {
  const c = document.createElement("td");
  c.textContent = text;
  if (cls) c.className = cls;
  row.appendChild(c);
}

function drawLinks(status) {
  const body = document.getElementById("links");
  body.textContent = "";
  for (const l of status.links) {
    const r = document.createElement("tr");
    r.dataset.peer = l.peer;
    r.dataset.bytesSent = String(l.bytes_sent);
    r.dataset.bytesReceived = String(l.bytes_received);
    td(r, l.peer, "mono");
    td(r, (status.neighbour_paths || {})[l.peer] || "–");
    const rtt = (status.link_rtt_ms || {})[l.peer];
    td(r, rtt === undefined ? "–" : rtt.toFixed(2));
    td(r, bytes(l.bytes_sent));
    td(r, bytes(l.bytes_received));
    td(r, `${l.updates_sent} / ${l.updates_applied}`);
    const bits = l.bits_per_entry, bound = l.entropy_bound_bits_per_entry;
    td(r, bits === null ? "–" : `${bits.toFixed(2)} (${bound.toFixed(2)})`);
    td(r, l.staleness === null ? "–" : String(l.staleness));
    td(r, `${l.stale_dropped} / ${l.damped_contributions}`);
    const rej = Object.entries(l.rejected).map(([k, v]) => `${k}: ${v}`).join(", ");
    td(r, rej || "0");
    body.appendChild(r);
  }
}

function drawSummary(status) {
  document.getElementById("peer-id").textContent = status.peer_id;
  const saved = status.update_bytes_sent > 0 ? status.dense_update_bytes / status.update_bytes_sent : null;
  const parts = [
    `round ${status.round}`,
    status.phase,
    `loss ${fmt(status.loss)}`,
    `accuracy ${status.accuracy === null ? "–" : (100 * status.accuracy).toFixed(1) + "%"}`,
    `${status.neighbours.length} neighbours`,
    `sent ${bytes(status.bytes_sent)}`,
    saved === null ? "" : `${saved.toFixed(0)}× fewer update bytes than dense`,
    status.update ? `last update ${(100 * status.update.density).toFixed(2)}% of entries` : "",
    status.resident_bytes ? `memory ${bytes(status.resident_bytes)} (${(status.resident_bytes / Math.max(status.model_bytes, 1)).toFixed(0)}× the f32 model)` : "",
    status.done ? "training done" : "",
  ];
  document.getElementById("summary").textContent = parts.filter(Boolean).join(" · ");
}

function drawHistory(history) {
  const p = history.points;
  chart(document.getElementById("chart-loss"), [{ name: "loss", points: p.map((s) => [s.round, s.loss]) }], "round", "nats");
  chart(document.getElementById("chart-accuracy"),
    [{ name: "accuracy", points: p.filter((s) => s.accuracy !== null).map((s) => [s.round, 100 * s.accuracy]) }], "round", "%");
  // Over a window of about a twentieth of the history, so bursts of fast rounds do not
  // turn the chart into spikes.
  const rate = [];
  const k = Math.max(1, Math.floor(p.length / 20));
  for (let i = k; i < p.length; i++) {
    const dt = p[i].t - p[i - k].t;
    if (dt > 0) rate.push([p[i].t, (p[i].round - p[i - k].round) / dt]);
  }
  chart(document.getElementById("chart-rate"), [{ name: "rounds/s", points: rate }], "seconds since start", "rounds/s");
  chart(document.getElementById("chart-bytes"), [
    { name: "sent", points: p.map((s) => [s.round, s.bytes_sent]) },
    { name: "dense f32", points: p.map((s) => [s.round, s.dense_update_bytes]) },
  ], "round", "bytes", true);
  chart(document.getElementById("chart-residual"),
    [{ name: "residual", points: p.filter((s) => s.residual_norm !== null).map((s) => [s.round, s.residual_norm]) }], "round", "L2 norm");
}

async function refresh() {
  try {
    const [status, history] = await Promise.all([
      fetch("/status", { cache: "no-store" }).then((r) => r.json()),
      fetch("/history", { cache: "no-store" }).then((r) => r.json()),
    ]);
    drawSummary(status);
    drawLinks(status);
    drawSwarm(document.getElementById("swarm"), status);
    drawHistory(history);
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (e) {
    document.getElementById("summary").textContent = "cannot reach the node: " + e;
  }
}

refresh();
setInterval(refresh, 1000);
