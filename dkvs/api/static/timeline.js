// The event timeline: GET /events?after=N of every member once a second (each node keeps its
// own ring of what happened to it), merged newest first. Not a long poll (wait=): a fetch
// always pending would stall headless browsers' virtual time, and one poll a second per
// member is cheap. A node whose "started"
// changes was restarted: its indexes began again, so it is read from 0. Elections
// ("elected") are failovers: they are marked on the charts too.
"use strict";

(() => {
  const {call, el, $, SELF, clock} = window.dkvs;
  const POLL_MS = 1000;
  const TIMEOUT_MS = 3000;
  const MAX_SHOWN = 200;
  const MAX_KEPT = 2000;              // events this page remembers (the oldest are forgotten)
  const FAILOVER_KINDS = new Set(["elected"]);
  const WARN_KINDS = new Set(["stepped_down", "quorum_lost", "rollback", "slow_fsync", "disk_full", "member_removed"]);

  const feeds = new Map();            // base URL -> {after, started, stopped}
  const events = new Map();           // "node/started/index" -> event
  let shownSignature = "";

  function follow(base) {
    if (feeds.has(base)) return;
    const feed = {after: 0, started: null, stopped: false};
    feeds.set(base, feed);
    const round = async () => {
      if (feed.stopped) return;
      const answer = await call(`${base}/events?after=${feed.after}`, {}, TIMEOUT_MS);
      if (feed.stopped) return;
      if (!answer.ok || !answer.body || !Array.isArray(answer.body.events)) {
        setTimeout(round, POLL_MS);
        return;
      }
      const body = answer.body;
      if (feed.started !== null && body.started !== feed.started && feed.after > 0) {
        feed.after = 0;                 // restarted: read its new ring from the start
        feed.started = body.started;
        setTimeout(round, 0);
        return;
      }
      feed.started = body.started;
      for (const e of body.events) add(e, body.started);
      feed.after = body.next;
      render();
      setTimeout(round, body.events.length ? 0 : POLL_MS);
    };
    round();
  }

  function add(e, started) {
    const key = `${e.node}/${started}/${e.index}`;
    if (events.has(key)) return;
    events.set(key, e);
    if (events.size > MAX_KEPT) {
      const oldest = [...events.entries()].sort((a, b) => a[1].time - b[1].time).slice(0, events.size - MAX_KEPT);
      for (const [k] of oldest) events.delete(k);
    }
    if (FAILOVER_KINDS.has(e.kind) && window.dkvs.charts) window.dkvs.charts.markFailover(e.time * 1000);
  }

  function sync(view) {
    const wanted = new Set(view.rows.map((r) => (view.self && r.id === view.self.id ? SELF : r.url))
      .filter((b) => b === SELF || /^https?:\/\/\S+$/.test(b)));
    for (const base of wanted) follow(base);
    for (const [base, feed] of feeds) {
      if (!wanted.has(base)) { feed.stopped = true; feeds.delete(base); }
    }
  }

  function render() {
    const list = [...events.values()].sort((a, b) => b.time - a.time || b.index - a.index).slice(0, MAX_SHOWN);
    const signature = list.length ? `${list.length}/${list[0].node}/${list[0].index}/${list[0].time}` : "";
    if (signature === shownSignature) return;
    shownSignature = signature;
    const rows = list.map((e) => {
      const failover = FAILOVER_KINDS.has(e.kind);
      const level = failover ? "failover" : WARN_KINDS.has(e.kind) || e.level === "warning" ? "warning" : "info";
      const li = el("li", null, {class: `event ${level}`, "data-kind": e.kind, "data-node": e.node,
                                 "data-epoch": e.epoch});
      const when = el("time", clock(e.time), {datetime: new Date(e.time * 1000).toISOString()});
      const kind = el("span", failover ? "failover" : e.kind.replace(/_/g, " "), {class: "kind"});
      const reason = e.details && e.details.reason ? el("span", ` (reason: ${e.details.reason})`, {class: "muted"}) : "";
      li.append(when, " ", kind, " ", el("span", e.text, {class: "text"}), reason);
      return li;
    });
    if (!rows.length) rows.push(el("li", "No events yet.", {class: "muted"}));
    $("timeline").replaceChildren(...rows);
    $("timeline-caption").textContent = `${list.length} events from ${feeds.size} members, newest first`;
  }

  document.addEventListener("DOMContentLoaded", () => {
    window.dkvs.hooks.render.push(sync);
    render();
  });
})();
