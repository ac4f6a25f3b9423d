// The key browser and editor: search by prefix (the server's GET /kv) or by substring (pages
// of GET /kv scanned here, at most MAX_SCAN_KEYS keys), refreshed live; edits are
// compare-and-set (PUT ?if_seq= the seq the value was loaded at), so a concurrent change is
// reported, never overwritten; delete asks for confirmation.
//
// Invariants: data enters the DOM through textContent only; keys in URLs go through
// encodeURIComponent; a live refresh never rebuilds the list while focus is inside it.
"use strict";

(() => {
  const {call, el, $, describeError} = window.dkvs;
  const KV_TIMEOUT_MS = 15000;        // writes may wait for acks=all
  const PAGE_SIZE = 50;
  const SCAN_PAGE = 1000;             // keys per GET /kv while scanning for a substring
  const MAX_SCAN_KEYS = 10000;        // a substring search reads at most this many keys
  const LIVE_REFRESH_MS = 2000;
  const LIVE_SCAN_REFRESH_MS = 10000; // a substring search reads many pages: refresh it less often
  const VALUE_PREVIEW_CHARS = 200;

  const browse = {mode: "prefix", text: "", after: null, next: null, busy: false};
  let editing = null;                 // {key, seq}: what the form was loaded from (compare-and-set)
  let searchTimer = 0;
  let loadedAt = 0;

  async function loadKeys(after = browse.after) {
    browse.busy = true;
    const mode = $("search-mode").value, text = $("search-text").value;
    const answer = mode === "substring" ? await scan(text) : await page(text, after);
    browse.busy = false;
    loadedAt = Date.now();
    const tbody = $("items").tBodies[0];
    if (answer.error) {
      tbody.replaceChildren(messageRow(describeError(answer.error), "bad-text"));
      return;
    }
    Object.assign(browse, {mode, text, after, next: answer.next});
    tbody.replaceChildren(...answer.items.map(itemRow));
    if (!answer.items.length) {
      tbody.append(messageRow(text ? `No key ${mode === "prefix" ? "starts with" : "contains"} “${text}”.`
                                   : "No keys yet."));
    }
    const where = text ? (mode === "prefix" ? ` starting with “${text}”` : ` containing “${text}”`) : "";
    $("items-caption").textContent = `Keys${where} on the serving node` +
      (after !== null ? `, after “${after}”` : "") + ` (${answer.items.length} shown` +
      (answer.scanned !== undefined ? `, ${answer.scanned} scanned${answer.truncated ? ", scan limit reached" : ""}` : "") +
      `; refreshed ${new Date().toLocaleTimeString()})`;
    $("next-page").disabled = browse.next === null;
    $("first-page").disabled = after === null;
  }

  async function page(prefix, after) {
    let url = `/kv?prefix=${encodeURIComponent(prefix)}&limit=${PAGE_SIZE}`;
    if (after !== null) url += `&after=${encodeURIComponent(after)}`;
    const answer = await call(url, {}, KV_TIMEOUT_MS);
    if (!answer.ok || !answer.body || !Array.isArray(answer.body.items)) return {error: answer};
    return {items: answer.body.items, next: answer.body.next ?? null};
  }

  async function scan(text) {
    const found = [];
    let after = null, scanned = 0;
    while (scanned < MAX_SCAN_KEYS && found.length < PAGE_SIZE) {
      let url = `/kv?limit=${SCAN_PAGE}`;
      if (after !== null) url += `&after=${encodeURIComponent(after)}`;
      const answer = await call(url, {}, KV_TIMEOUT_MS);
      if (!answer.ok || !answer.body || !Array.isArray(answer.body.items)) return {error: answer};
      scanned += answer.body.items.length;
      found.push(...answer.body.items.filter((item) => item.key.includes(text)));
      after = answer.body.next ?? null;
      if (after === null) break;
    }
    return {items: found.slice(0, PAGE_SIZE), next: null, scanned, truncated: after !== null};
  }

  function itemRow(item) {
    const value = "value" in item ? String(item.value) : `(binary, base64) ${item.value_base64}`;
    const tr = el("tr", null, {"data-key": item.key, "data-seq": item.seq});
    const keyCell = el("td");
    const edit = el("button", item.key, {type: "button", class: "link", title: `Edit ${item.key}`});
    edit.addEventListener("click", () => load(item.key, value, item.seq));
    keyCell.append(edit);
    const preview = value.length > VALUE_PREVIEW_CHARS ? value.slice(0, VALUE_PREVIEW_CHARS) + "…" : value;
    const actions = el("td");
    const del = el("button", "Delete", {type: "button", class: "small danger", "aria-label": `Delete ${item.key}`});
    del.addEventListener("click", () => confirmDelete(item.key, del));
    actions.append(del);
    tr.append(keyCell, el("td", preview, {class: "value"}), el("td", item.seq, {class: "num"}), actions);
    return tr;
  }

  function messageRow(text, cls = "muted") {
    const tr = el("tr");
    tr.append(el("td", text, {colspan: 4, class: cls}));
    return tr;
  }

  /** Put a key in the form, remembering its seq: the next Put is a compare-and-set on it. */
  function load(key, value, seq) {
    $("write-key").value = key;
    $("write-value").value = value;
    editing = {key, seq};
    showEditing();
    $("write-value").focus();
  }

  function showEditing() {
    const same = editing && $("write-key").value === editing.key;
    $("cas-note").textContent = same
      ? `Compare-and-set: Put writes only if “${editing.key}” is still at seq ${editing.seq}.`
      : "New value: Put writes whatever the key holds now (load a key from the list to edit it safely).";
  }

  function result(kind, text, body, extra) {
    const parts = [el("p", text, {class: `banner ${kind}`, "data-outcome": kind})];
    if (extra) parts.push(extra);
    if (body) parts.push(el("pre", JSON.stringify(body, null, 2)));
    $("result").replaceChildren(...parts);
  }

  async function put() {
    const key = $("write-key").value;
    if (!key) return missingKey();
    const acks = $("write-acks").value;
    const cas = editing && editing.key === key ? editing.seq : null;
    let url = `/kv/${encodeURIComponent(key)}?acks=${encodeURIComponent(acks)}`;
    if (cas !== null) url += `&if_seq=${cas}`;
    busy(true, `PUT “${key}” (acks=${acks}${cas !== null ? `, if_seq=${cas}` : ""})…`);
    const answer = await call(url, {method: "PUT", body: $("write-value").value,
                                    headers: {"Content-Type": "text/plain; charset=utf-8"}}, KV_TIMEOUT_MS);
    busy(false);
    if (answer.ok) {
      editing = {key, seq: answer.body.seq};
      showEditing();
      result("ok", `PUT “${key}”: written at seq ${answer.body.seq}.`, answer.body);
      loadKeys();
    } else if (answer.status === 409) {
      const now = answer.body && typeof answer.body.seq === "number" ? answer.body.seq : "?";
      const reload = el("button", "Load the current value", {type: "button"});
      reload.addEventListener("click", reloadCurrent);
      result("conflict", `Conflict: “${key}” was changed by someone else since you loaded it ` +
        `(you loaded seq ${cas}, it is now at seq ${now === 0 ? "0, deleted" : now}). Nothing was written; ` +
        "load the current value and edit again.", null, reload);
      reload.focus();
    } else {
      result("error", describeError(answer), answer.body);
    }
  }

  async function reloadCurrent() {
    const key = $("write-key").value;
    const answer = await call(`/kv/${encodeURIComponent(key)}`, {}, KV_TIMEOUT_MS);
    if (answer.ok) {
      load(key, "value" in answer.body ? String(answer.body.value) : "", answer.body.seq);
      result("ok", `Loaded “${key}” at seq ${answer.body.seq}.`);
    } else if (answer.status === 404) {
      editing = {key, seq: 0};
      showEditing();
      result("ok", `“${key}” no longer exists: Put will create it only if it is still absent.`);
    } else {
      result("error", describeError(answer), answer.body);
    }
  }

  /** Delete asks first, inline (keyboard: the confirmation gets focus, Escape cancels). */
  function confirmDelete(key, returnFocus) {
    if (!key) return missingKey();
    const box = $("confirm");
    box.hidden = false;
    $("confirm-text").textContent = `Delete “${key}” on the whole cluster? This cannot be undone.`;
    const yes = $("confirm-yes"), no = $("confirm-no");
    const close = () => {
      box.hidden = true;
      yes.onclick = no.onclick = box.onkeydown = null;
      if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
    };
    yes.onclick = async () => { close(); await remove(key); };
    no.onclick = close;
    box.onkeydown = (event) => { if (event.key === "Escape") close(); };
    no.focus();
  }

  async function remove(key) {
    const acks = $("write-acks").value;
    busy(true, `DELETE “${key}” (acks=${acks})…`);
    const answer = await call(`/kv/${encodeURIComponent(key)}?acks=${encodeURIComponent(acks)}`,
                              {method: "DELETE"}, KV_TIMEOUT_MS);
    busy(false);
    if (answer.ok) result("ok", `DELETE “${key}”: deleted at seq ${answer.body.seq}.`, answer.body);
    else result("error", describeError(answer), answer.body);
    if (answer.ok) loadKeys();
  }

  function missingKey() {
    result("error", "Enter a key first.");
    $("write-key").focus();
  }

  function busy(on, text) {
    for (const b of [$("put"), $("delete")]) b.disabled = on;
    if (on) $("result").replaceChildren(el("p", text, {class: "muted"}));
  }

  function liveRefresh() {
    const list = $("items");
    const focused = list.contains(document.activeElement) || !$("confirm").hidden;
    const every = browse.mode === "substring" ? LIVE_SCAN_REFRESH_MS : LIVE_REFRESH_MS;
    if (Date.now() - loadedAt < every - 100) return;
    if ($("live").checked && !browse.busy && !focused && document.visibilityState !== "hidden") loadKeys();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("search").addEventListener("submit", (event) => { event.preventDefault(); loadKeys(null); });
    const later = () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => loadKeys(null), 250); };
    $("search-text").addEventListener("input", later);
    $("search-mode").addEventListener("change", () => loadKeys(null));
    $("next-page").addEventListener("click", () => loadKeys(browse.next));
    $("first-page").addEventListener("click", () => loadKeys(null));
    $("write").addEventListener("submit", (event) => { event.preventDefault(); put(); });
    $("write-key").addEventListener("input", showEditing);
    $("delete").addEventListener("click", () => confirmDelete($("write-key").value, $("delete")));
    window.dkvs.hooks.token.push(() => loadKeys());
    showEditing();
    loadKeys(null);
    setInterval(liveRefresh, LIVE_REFRESH_MS);
  });
})();
