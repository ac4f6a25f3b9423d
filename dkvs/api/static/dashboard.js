// The dkvs dashboard, core: polls /status of the node serving this page and of every member
// it names, renders the cluster, the members, per-node detail and the banners, and holds
// what the other scripts share (window.dkvs: call, el, the cluster view, render hooks).
// charts.js draws the live charts from /metrics, timeline.js the event timeline from
// /events, keys.js the key browser and editor. No framework, no build step.
//
// Invariants: every piece of server data enters the DOM through textContent or a plain
// attribute (never as HTML); every key in a path or query is encoded with
// encodeURIComponent; the serving node is reached by relative URLs, so the page works when
// served by any node.
"use strict";

const POLL_INTERVAL_MS = 500;       // between two /status polls of one node
const STATUS_TIMEOUT_MS = 1000;     // a node silent this long counts as unreachable
const KV_TIMEOUT_MS = 15000;        // writes may wait for acks=all
const PAGE_SIZE = 50;
const VALUE_PREVIEW_CHARS = 200;
const SELF = "";                    // poll key of the serving node: same-origin, relative URLs
const TOKEN_KEY = "dkvs.token";     // sessionStorage: the bearer token, for this tab only
const ROLE_HISTORY_SHOWN = 5;

const $ = (id) => document.getElementById(id);
const polls = new Map();            // base URL ("" = serving node) -> {result, lastOk, timer, stopped}
let lastBanners = "";

// --- HTTP -----------------------------------------------------------------------------

/** fetch + JSON with a deadline; never throws: {ok, status, body, error}. */
async function call(url, options = {}, timeoutMs = STATUS_TIMEOUT_MS, raw = false) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = {...(options.headers || {})};
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const response = await fetch(url, {cache: "no-store", ...options, headers, signal: abort.signal});
    const text = await response.text();
    // A 401 to a request sent with an older token (the user just gave a new one) asks nothing.
    if (response.status === 401 && sessionStorage.getItem(TOKEN_KEY) === token) askForToken(url);
    if (raw) return {ok: response.ok, status: response.status, body: null, text};
    let body;
    try { body = text ? JSON.parse(text) : {}; } catch { body = {raw: text}; }
    return {ok: response.ok, status: response.status, body};
  } catch (err) {
    const error = err.name === "AbortError" ? `no answer within ${timeoutMs / 1000} s` : "unreachable";
    return {ok: false, status: 0, body: null, error};
  } finally {
    clearTimeout(timer);
  }
}

/** A node answered 401: show the token form (once), keep the token for this tab only. */
function askForToken(url) {
  const form = $("auth");
  if (!form || !form.hidden) return;
  form.hidden = false;
  $("auth-reason").textContent = `${url.startsWith("http") ? url.split("/").slice(0, 3).join("/") : "This node"} ` +
    "answered 401: it needs a bearer token.";
  $("auth-token").focus();
}

function wireTokenForm() {
  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("auth-token").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("auth-token").value = "";
    $("auth").hidden = true;
    for (const hook of hooks.token) hook();
  });
}

const isHttpUrl = (url) => typeof url === "string" && /^https?:\/\/[^\s]+$/.test(url);

// --- polling --------------------------------------------------------------------------

/** Poll base + "/status" forever (one request in flight at a time) until stopped. */
function startPoll(base) {
  if (polls.has(base)) return;
  const poll = {result: null, lastOk: null, timer: 0, stopped: false};
  polls.set(base, poll);
  const round = async () => {
    const answer = await call(base + "/status");
    if (poll.stopped) return;
    const valid = answer.ok && answer.body && typeof answer.body.id === "string";
    poll.result = valid ? {ok: true, status: answer.body, at: Date.now()}
                        : {ok: false, error: answer.error || `HTTP ${answer.status}`, at: Date.now()};
    if (valid) poll.lastOk = answer.body;
    render();
    poll.timer = setTimeout(round, POLL_INTERVAL_MS);
  };
  round();
}

function stopPoll(base) {
  const poll = polls.get(base);
  if (!poll) return;
  poll.stopped = true;
  clearTimeout(poll.timer);
  polls.delete(base);
}

const resultOf = (base) => (polls.get(base) || {}).result || null;

// --- the cluster as this browser sees it ----------------------------------------------

/**
 * Merge the serving node's /status with each member's own. The newest epoch wins: a
 * deposed master that cannot hear the others still says "master", at an older epoch.
 */
function clusterView() {
  const selfResult = resultOf(SELF);
  const self = selfResult && selfResult.ok ? selfResult.status : null;
  const reachable = [...polls.values()].map((p) => p.result).filter((r) => r && r.ok).map((r) => r.status);
  const epoch = reachable.length ? Math.max(...reachable.map((s) => Number(s.epoch) || 0)) : null;
  const current = reachable.filter((s) => (Number(s.epoch) || 0) === epoch);
  const master = current.find((s) => s.role === "master") || null;
  const source = master || (self && self.epoch === epoch ? self : current[0]) || null;

  const members = new Map();   // id -> member entry, from the most trusted list first
  for (const s of [source, self, ...reachable]) {
    for (const m of (s && Array.isArray(s.members) ? s.members : [])) {
      if (m && typeof m.id === "string" && !members.has(m.id)) members.set(m.id, m);
    }
  }
  const named = source && source.master ? source.master : null;   // {id, url} or null
  const rows = [...members.values()].map((m) => memberRow(m, self));
  const masterRow = rows.find((r) => master && r.id === master.id)
    || rows.find((r) => !master && named && r.id === named.id && r.reachable !== false) || null;
  const masterLast = masterRow ? masterRow.lastSeq : null;
  for (const r of rows) {
    const known = masterLast !== null && r.lastSeq !== null && r.reachable !== false;
    r.lag = known ? Math.max(0, masterLast - r.lastSeq) : null;   // polls are not simultaneous
  }
  return {self, selfResult, epoch, master: masterRow, named, rows, source};
}

function memberRow(m, self) {
  const base = self && m.id === self.id ? SELF : m.url;
  const poll = polls.get(base) || {};
  const result = poll.result || null;
  const own = result && result.ok && result.status.id === m.id ? result.status : null;
  // reachable: true / false from this browser's own poll, null before the first answer.
  const reachable = result ? Boolean(own) : null;
  // An unreachable member shows what it last said itself (the master's list forgets a dead
  // member's position), marked as past.
  const last = own || (poll.lastOk && poll.lastOk.id === m.id ? poll.lastOk : null);
  const listSeq = typeof m.last_seq === "number" && m.alive !== false ? m.last_seq : null;
  return {
    id: m.id, url: m.url, reachable, stale: !own && Boolean(last),
    error: result && !result.ok ? result.error : null, clusterAlive: m.alive !== false,
    role: last ? last.role : m.role, epoch: last ? last.epoch : null,
    lastSeq: last ? last.last_seq : listSeq, commitSeq: last ? last.commit_seq : null,
  };
}

/** Start polling members we learn about; stop polling those no list names any more. */
function syncPolls(view) {
  const wanted = new Set(view.rows.map((r) => (view.self && r.id === view.self.id ? SELF : r.url))
    .filter((base) => base === SELF || isHttpUrl(base)));
  for (const base of wanted) startPoll(base);
  for (const base of [...polls.keys()]) if (base !== SELF && !wanted.has(base)) stopPoll(base);
}

// --- rendering ------------------------------------------------------------------------

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

const show = (value) => (value === null || value === undefined ? "—" : String(value));

function render() {
  const view = clusterView();
  syncPolls(view);
  renderBanners(view);
  const self = view.self;
  const known = self || (polls.get(SELF) || {}).lastOk;
  $("served-by").textContent = `Served by ${known ? `node ${known.id} ` : ""}(${location.origin})` +
    (self ? `, role ${self.role}` : known ? ": not answering" : "");
  $("epoch").textContent = show(view.epoch);
  const masterCell = $("master");
  masterCell.replaceChildren();
  if (view.master) {
    // When this page first showed the current master (ms since the epoch): lets an
    // operator, and the browser test, see how soon a failover became visible.
    if (masterCell.dataset.masterId !== view.master.id) {
      masterCell.dataset.masterId = view.master.id;
      masterCell.dataset.since = String(Date.now());
    }
    masterCell.append(el("strong", view.master.id), ` ${view.master.url || ""}`);
  } else {
    masterCell.append(el("span", "none known: election in progress", {class: "warn-text"}));
  }
  $("commit").textContent = show(view.source ? view.source.commit_seq : null);
  $("key-count").textContent = show(self ? self.keys : null);
  const newest = Math.max(0, ...[...polls.values()].map((p) => (p.result && p.result.ok ? p.result.at : 0)));
  $("updated").textContent = newest ? new Date(newest).toLocaleTimeString() : "—";
  $("members").tBodies[0].replaceChildren(...view.rows.map((r) => renderMember(r, view)));
  renderNodes(view);
  dkvs.view = view;
  for (const hook of hooks.render) hook(view);
}

// --- per-node detail ------------------------------------------------------------------

const formatBytes = (n) => {
  if (typeof n !== "number") return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};

function formatDuration(seconds) {
  if (typeof seconds !== "number") return "—";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString();

/** One card per member, from its own last /status: version, uptime, storage, roles. */
function renderNodes(view) {
  const cards = view.rows.map((r) => {
    const base = view.self && r.id === view.self.id ? SELF : r.url;
    const poll = polls.get(base) || {};
    const s = poll.lastOk && poll.lastOk.id === r.id ? poll.lastOk : null;
    const card = el("article", null, {class: "node-card", "data-node": r.id, "aria-label": `node ${r.id}`});
    card.append(el("h3", `${r.id}${r.reachable === false ? " (not answering; last report)" : ""}`));
    if (!s) {
      card.append(el("p", "No report from this node yet.", {class: "muted"}));
      return card;
    }
    const storage = s.storage || {};
    const uptime = typeof s.started === "number" && r.reachable !== false
      ? Date.now() / 1000 - s.started : s.uptime_seconds;
    const quorum = s.quorum || null;
    const facts = [
      ["Role", s.role], ["Version", s.version], ["Uptime", formatDuration(uptime)],
      ["Keys", s.keys], ["Storage", storage.kind === "file" ? `data dir, fsync ${storage.fsync}` : storage.kind],
      ["Data dir size", storage.kind === "file" ? formatBytes(storage.data_dir_bytes) : "— (in memory)"],
      ["Disk free", storage.kind === "file" ? formatBytes(storage.free_bytes) : "—"],
      ["Quorum", quorum ? `${quorum.ok ? "ok" : "LOST"}: ${quorum.reachable} of ${quorum.members}, ` +
        `${quorum.needed} needed` : "—"],
    ];
    const dl = el("dl", null, {class: "facts"});
    for (const [name, value] of facts) {
      const div = el("div");
      div.append(el("dt", name), el("dd", show(value), {"data-fact": name.toLowerCase().replace(/ /g, "-")}));
      dl.append(div);
    }
    card.append(dl);
    const history = Array.isArray(s.role_history) ? s.role_history.slice(-ROLE_HISTORY_SHOWN).reverse() : [];
    if (history.length) {
      const list = el("ol", null, {class: "role-history", "aria-label": "role history, newest first"});
      for (const h of history) {
        list.append(el("li", `${clock(h.time)} ${h.role}${h.epoch === null ? " (at start)" : ` (epoch ${h.epoch})`}`));
      }
      card.append(el("p", "Role history", {class: "small-heading"}), list);
    }
    return card;
  });
  $("nodes").replaceChildren(...cards);
}

function renderMember(r, view) {
  const isMaster = Boolean(view.master && view.master.id === r.id);
  const alive = r.reachable === null ? r.clusterAlive : r.reachable;
  const role = isMaster ? "master" : r.stale ? "unknown" : show(r.role);
  const tr = el("tr", null, {"data-member": r.id, "data-alive": alive, "data-role": role,
                             "data-master": isMaster});
  if (isMaster) tr.classList.add("is-master");
  if (!alive) tr.classList.add("is-dead");
  const idCell = el("td");
  idCell.append(el("code", r.id));
  if (view.self && r.id === view.self.id) idCell.append(" ", el("span", "this page", {class: "tag"}));
  const urlCell = el("td");
  if (isHttpUrl(r.url)) urlCell.append(el("a", r.url, {href: r.url + "/"}));
  else urlCell.textContent = show(r.url);
  const roleCell = el("td");
  if (isMaster) roleCell.append(el("strong", "★ master", {class: "tag master-tag"}));
  else roleCell.textContent = r.stale ? `was ${show(r.role)}` : show(r.role);
  let aliveText = alive ? "alive" : "dead";
  if (r.reachable === false) aliveText = `dead (${r.error || "unreachable"})`;
  else if (r.reachable && !r.clusterAlive) aliveText = "alive, but its master reports it down";
  tr.append(idCell, urlCell, roleCell, el("td", aliveText, {class: alive ? "ok-text" : "bad-text"}),
    ...[r.epoch, r.lastSeq, r.commitSeq].map((v) => el("td", show(v), {class: r.stale ? "num muted" : "num"})),
    el("td", show(r.lag), {class: "num" + (r.lag > 0 ? " warn-text" : "")}));
  return tr;
}

function renderBanners(view) {
  const banners = [];
  const selfResult = view.selfResult;
  if (selfResult && !selfResult.ok) {
    banners.push(["error", `Cannot reach the node serving this page (${location.origin}): ` +
      `${selfResult.error}. Retrying every ${POLL_INTERVAL_MS / 1000} s; other members are still polled.`]);
  }
  const down = view.rows.filter((r) => r.reachable === false && !(view.self && r.id === view.self.id));
  if (down.length) {
    banners.push(["error", "Unreachable from this browser: " +
      down.map((r) => `${r.id} (${r.url}: ${r.error})`).join(", ") + ". Retrying."]);
  }
  const total = view.rows.length;
  const reachable = view.rows.filter((r) => r.reachable === true).length;
  const needed = Math.floor(total / 2) + 1;
  if (total && view.rows.every((r) => r.reachable !== null) && reachable < needed) {
    banners.push(["error", `No quorum: ${reachable} of ${total} members reachable, ${needed} needed.`,
      "No master can be elected and acks=majority writes cannot complete until members return."]);
  }
  if (view.epoch !== null && !view.master) {
    // The node says which: an election in progress, or no majority reachable.
    const reason = view.self && view.self.quorum && view.self.quorum.reason;
    banners.push(["warn", view.named
      ? `No master: ${view.named.id} does not answer; ${reason || "election in progress"}.`
      : `No master: ${reason || "election in progress, no master is known"}.`]);
  }
  const warning = (view.self && view.self.warning) || (view.source && view.source.warning);
  if (warning) banners.push(["warn", "2-node cluster: no automatic failover.", `The node says: ${warning}`]);
  const signature = JSON.stringify(banners);
  if (signature === lastBanners) return;   // unchanged: do not make screen readers repeat it
  lastBanners = signature;
  $("banners").replaceChildren(...banners.map(([kind, text, detail]) => {
    const p = el("p", text, {class: `banner ${kind}`});
    if (detail) p.append(" ", el("span", detail, {class: "detail"}));
    return p;
  }));
}

// --- wiring ---------------------------------------------------------------------------

const hooks = {render: [], token: []};
const dkvs = window.dkvs = {call, el, show, $, SELF, polls, hooks, view: null, clock, describeError};

function describeError(answer) {
  if (answer.status === 0) return `Could not reach the node: ${answer.error}.`;
  const body = answer.body || {};
  return `Error ${answer.status}${body.error ? ` ${body.error}` : ""}: ${body.message || body.raw || "no message"}`;
}

document.addEventListener("DOMContentLoaded", () => {
  wireTokenForm();
  startPoll(SELF);
});
