// Live charts over the last minutes, drawn as SVG from each member's /metrics, scraped every
// second: writes/s (the master's 2xx PUT and DELETE answers on /kv/{key}), reads/s (2xx and
// 404 GETs on /kv/{key} and /kv, summed over the members), p99 latency of writes (master)
// and reads (all members), estimated from histogram bucket deltas as Prometheus'
// histogram_quantile does, and replication lag per slave (the master's
// dkvs_replication_lag_seconds). Failovers from the timeline (an "elected" event) are
// drawn as vertical marks on every chart.
"use strict";

(() => {
  const {call, el, $, SELF} = window.dkvs;
  const SCRAPE_INTERVAL_MS = 1000;
  const WINDOW_MS = 5 * 60 * 1000;    // what a chart shows at most
  const MIN_SPAN_MS = 60 * 1000;      // and at least (a page open for 10 s is not squeezed to the right)
  const openedAt = Date.now();
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 320, H = 120, PAD_L = 44, PAD_R = 8, PAD_T = 8, PAD_B = 18;
  const COLORS = ["var(--accent)", "var(--chart-2)", "var(--chart-3)", "var(--chart-4)", "var(--chart-5)"];

  const last = new Map();             // member base URL -> {t, samples}
  const series = {writes: new Map(), reads: new Map(), p99: new Map(), lag: new Map()};
  const marks = [];                   // failover times (ms)
  window.dkvs.charts = {series, marks, markFailover};

  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) continue;
      const labels = {};
      for (const pair of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"/g)) {
        labels[pair[1]] = pair[2].replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
      }
      samples.push({name: m[1], labels, value: Number(m[3])});
    }
    return samples;
  }

  const isWrite = (s) => s.labels.route === "/kv/{key}" && (s.labels.method === "PUT" || s.labels.method === "DELETE");
  const isRead = (s) => (s.labels.route === "/kv/{key}" || s.labels.route === "/kv") && s.labels.method === "GET";
  const sum = (samples, name, pick) => samples.filter((s) => s.name === name && pick(s))
    .reduce((total, s) => total + s.value, 0);
  const okStatus = (s) => /^2/.test(s.labels.status) || s.labels.status === "404";

  /** Per-bound count deltas of a histogram (merged over label sets), from two scrapes. */
  function bucketDelta(now, before, name, pick) {
    const buckets = new Map();
    for (const [samples, sign] of [[now, 1], [before, -1]]) {
      for (const s of samples) {
        if (s.name !== name + "_bucket" || !pick(s)) continue;
        const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
        buckets.set(le, (buckets.get(le) || 0) + sign * s.value);
      }
    }
    return [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  }

  function quantile(q, buckets) {
    const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
    if (total <= 0) return null;
    const rank = q * total;
    let prevBound = 0, prevCount = 0;
    for (const [bound, count] of buckets) {
      if (count >= rank) {
        if (bound === Infinity) return prevBound;
        return prevBound + (bound - prevBound) * ((rank - prevCount) / Math.max(1e-9, count - prevCount));
      }
      prevBound = bound; prevCount = count;
    }
    return prevBound;
  }

  function push(map, name, t, value) {
    if (value === null || !Number.isFinite(value)) return;
    let points = map.get(name);
    if (!points) map.set(name, points = []);
    points.push([t, value]);
    while (points.length && points[0][0] < t - WINDOW_MS) points.shift();
  }

  async function scrapeAll() {
    const view = window.dkvs.view;
    if (!view) return;
    const bases = view.rows.filter((r) => r.reachable)
      .map((r) => ({id: r.id, base: view.self && r.id === view.self.id ? SELF : r.url}));
    const answers = await Promise.all(bases.map(async (b) => ({...b, answer: await call(b.base + "/metrics", {}, 2000, true)})));
    const t = Date.now();
    let reads = 0, readersSeen = 0, readBuckets = [], writes = null, writeBuckets = null;
    for (const {id, base, answer} of answers) {
      if (!answer.ok) continue;
      const samples = parseMetrics(answer.text);
      const before = last.get(base);
      last.set(base, {t, samples, id});
      if (!before || before.id !== id) continue;  // a new node at that URL: start over
      const seconds = (t - before.t) / 1000;
      if (seconds <= 0) continue;
      const isMaster = samples.some((s) => s.name === "dkvs_role" && s.labels.role === "master" && s.value === 1);
      const rate = (pick) => Math.max(0, sum(samples, "dkvs_http_requests_total", pick)
        - sum(before.samples, "dkvs_http_requests_total", pick)) / seconds;
      reads += rate((s) => isRead(s) && okStatus(s));
      readersSeen += 1;
      readBuckets = readBuckets.concat(bucketDelta(samples, before.samples, "dkvs_http_request_duration_seconds", isRead));
      if (isMaster) {
        writes = rate((s) => isWrite(s) && /^2/.test(s.labels.status));
        writeBuckets = bucketDelta(samples, before.samples, "dkvs_http_request_duration_seconds", isWrite);
        for (const s of samples) {
          if (s.name === "dkvs_replication_lag_seconds") push(series.lag, s.labels.peer, t, s.value);
        }
      }
    }
    if (readersSeen) push(series.reads, "reads/s", t, reads);
    if (writes !== null) push(series.writes, "writes/s", t, writes);
    const merged = new Map();
    for (const [bound, count] of readBuckets) merged.set(bound, (merged.get(bound) || 0) + count);
    const readP99 = quantile(0.99, [...merged.entries()].sort((a, b) => a[0] - b[0]));
    push(series.p99, "read p99 ms", t, readP99 === null ? null : readP99 * 1000);
    const writeP99 = writeBuckets ? quantile(0.99, writeBuckets) : null;
    push(series.p99, "write p99 ms", t, writeP99 === null ? null : writeP99 * 1000);
    draw();
  }

  function markFailover(timeMs) {
    if (!marks.includes(timeMs)) marks.push(timeMs);
    while (marks.length && marks[0] < Date.now() - WINDOW_MS) marks.shift();
    draw();
  }

  const svg = (tag, attrs = {}) => {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  };

  const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

  function drawChart(id, map, unit) {
    const figure = $(id);
    if (!figure) return;
    const now = Date.now();
    const t0 = Math.max(now - WINDOW_MS, Math.min(openedAt, now - MIN_SPAN_MS));
    const span = now - t0;
    const all = [...map.values()].flat();
    const max = Math.max(1e-9, ...all.map((p) => p[1])) * 1.1;
    const x = (t) => PAD_L + ((t - t0) / span) * (W - PAD_L - PAD_R);
    const y = (v) => H - PAD_B - (v / max) * (H - PAD_T - PAD_B);
    const chart = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart"});
    const title = svg("title");
    const latest = [...map.entries()].map(([name, pts]) => `${name} ${pts.length ? fmt(pts[pts.length - 1][1]) : "—"}${unit}`);
    title.textContent = latest.join(", ") || "no data yet";
    chart.append(title);
    chart.append(svg("line", {x1: PAD_L, y1: H - PAD_B, x2: W - PAD_R, y2: H - PAD_B, class: "axis"}));
    chart.append(svg("line", {x1: PAD_L, y1: PAD_T, x2: PAD_L, y2: H - PAD_B, class: "axis"}));
    for (const [v, label] of [[max / 1.1, fmt(max / 1.1)], [0, "0"]]) {
      const text = svg("text", {x: PAD_L - 4, y: y(v) + 4, class: "tick", "text-anchor": "end"});
      text.textContent = label;
      chart.append(text);
    }
    const left = svg("text", {x: PAD_L, y: H - 4, class: "tick"});
    left.textContent = span >= 120000 ? `−${Math.round(span / 60000)} min` : `−${Math.round(span / 1000)} s`;
    const right = svg("text", {x: W - PAD_R, y: H - 4, class: "tick", "text-anchor": "end"});
    right.textContent = "now";
    chart.append(left, right);
    for (const m of marks.filter((m) => m >= t0)) {
      const line = svg("line", {x1: x(m), y1: PAD_T, x2: x(m), y2: H - PAD_B, class: "failover-mark"});
      const tip = svg("title");
      tip.textContent = `failover at ${new Date(m).toLocaleTimeString()}`;
      line.append(tip);
      chart.append(line);
    }
    let i = 0, points = 0;
    for (const [name, pts] of map) {
      const visible = pts.filter((p) => p[0] >= t0);
      points += visible.length;
      if (visible.length) {
        chart.append(svg("polyline", {points: visible.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
                                      class: "series", stroke: COLORS[i % COLORS.length], "data-series": name}));
      }
      i += 1;
    }
    figure.querySelector(".plot").replaceChildren(chart);
    const legend = figure.querySelector(".legend");
    legend.replaceChildren(...[...map.keys()].map((name, j) => {
      const pts = map.get(name);
      const item = el("li", `${name}: ${pts.length ? fmt(pts[pts.length - 1][1]) : "—"}${unit}`);
      item.style.setProperty("--swatch", COLORS[j % COLORS.length]);
      return item;
    }));
    if (!map.size) legend.replaceChildren(el("li", "no data yet", {class: "muted"}));
    figure.dataset.points = String(points);
    figure.dataset.latest = latest.join("; ");
    figure.dataset.marks = String(marks.filter((m) => m >= t0).length);
  }

  function draw() {
    drawChart("chart-writes", series.writes, "");
    drawChart("chart-reads", series.reads, "");
    drawChart("chart-p99", series.p99, " ms");
    drawChart("chart-lag", series.lag, " s");
  }

  let running = false;
  async function loop() {
    if (!running) {
      running = true;
      try { await scrapeAll(); } finally { running = false; }
    }
    setTimeout(loop, SCRAPE_INTERVAL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => { draw(); setTimeout(loop, SCRAPE_INTERVAL_MS); });
})();
