"""The dashboard of issue #16, live in headless Chromium (driven over the DevTools protocol).

Charts draw and move under load, a SIGKILL of the master shows on the timeline and in the
banner, an edit that lost a race shows the conflict message, delete asks first, the page
fits 420 px, and a 401 makes the page ask for a token that it then sends. Every wait is
bounded; the tests skip themselves when no Chromium is installed. Screenshots of the main
views are written to the test's tmp dir (``DKVS_SCREENSHOTS=DIR`` keeps them in DIR).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from dkvs.tools.local_cluster import FAST_TIMINGS, LocalCluster, http_call, node_status, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the cdp helper
from test_dashboard import CHROMIUM, STATIC, needs_chromium  # noqa: E402

pytestmark = needs_chromium


class Page:
    """A :class:`cdp.Browser` with any DevTools command (screenshots, viewport)."""

    def __init__(self, url: str, profile: Path, width: int = 1200, height: int = 1600) -> None:
        from cdp import Browser
        self.browser = Browser(CHROMIUM, url, profile)
        self.command("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.wait("!!window.dkvs && document.readyState === 'complete' && !!window.dkvs.view", 20, "the page loaded")

    def command(self, method: str, params: dict | None = None) -> dict:
        b = self.browser
        b._ids += 1
        b._send(json.dumps({"id": b._ids, "method": method, "params": params or {}}))
        while True:
            text = b._recv()
            if text:
                answer = json.loads(text)
                if answer.get("id") == b._ids:
                    return answer.get("result", {})

    def js(self, expression: str):
        return self.browser.evaluate(expression)

    def wait(self, expression: str, timeout: float = 15, what: str = "condition"):
        value = wait_for(lambda: self.js(expression), timeout, interval=0.05)
        assert value, f"the page never showed {what} ({expression})"
        return value

    def screenshot(self, path: Path, selector: str | None = None) -> None:
        """A PNG of the page, or of the elements ``selector`` matches (their bounding box)."""
        params: dict = {"format": "png", "captureBeyondViewport": True}
        if selector:
            box = self.js("(() => { const r = [...document.querySelectorAll(%s)].map(e => e.getBoundingClientRect());"
                          " const top = Math.min(...r.map(b => b.top)), left = Math.min(...r.map(b => b.left));"
                          " return {x: left + scrollX, y: top + scrollY, width: Math.max(...r.map(b => b.right)) - left,"
                          " height: Math.max(...r.map(b => b.bottom)) - top, scale: 1}; })()" % json.dumps(selector))
            params["clip"] = box
        shot = self.command("Page.captureScreenshot", params)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.browser.close()


def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("DKVS_SCREENSHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def quote(key: str) -> str:
    return urllib.parse.quote(key, safe="")


@pytest.fixture
def cluster():
    with LocalCluster(*FAST_TIMINGS) as group:
        nodes = group.start_cluster(3)
        master = wait_for(group.master, 10)
        yield group, nodes, master


def load(url: str, seconds: float, stop: threading.Event) -> threading.Thread:
    """Writes and reads against ``url`` until ``stop`` or ``seconds`` (bounded, loopback)."""
    def run():
        deadline, i = time.monotonic() + seconds, 0
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                http_call(url, "PUT", f"/kv/load{i % 100}", b"x")
                http_call(url, "GET", f"/kv/load{i % 100}")
            except OSError:
                pass
            i += 1
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


CHART = "(id => { const f = document.getElementById(id); const p = f && f.querySelector('polyline');" \
        " return f ? {points: Number(f.dataset.points || 0), latest: f.dataset.latest || ''," \
        " line: p ? p.getAttribute('points') : '', marks: Number(f.dataset.marks || 0)} : null; })"


def test_charts_draw_and_move_under_load(cluster, tmp_path):
    group, nodes, master = cluster
    slave = next(n for n in nodes if n is not master)
    page = Page(slave.url + "/", tmp_path / "profile")
    stop = threading.Event()
    workers = [load(master.url, 60, stop), load(slave.url, 60, stop)]
    try:
        first = page.wait(f"{CHART}('chart-writes').points >= 3 && {CHART}('chart-writes')", 30, "a writes chart")
        assert first["line"], first
        moved = page.wait(f"(c => c.points > {first['points']} && c.line !== {json.dumps(first['line'])} && c)"
                          f"({CHART}('chart-writes'))", 15, "the writes chart moving")
        assert moved["latest"].startswith("writes/s ")
        rate = float(moved["latest"].split()[1])
        assert rate > 0, moved
        for chart in ("chart-reads", "chart-p99", "chart-lag"):
            page.wait(f"{CHART}('{chart}').points >= 2", 15, chart)
        lag = page.js(f"{CHART}('chart-lag')")
        assert lag["latest"].count(" s") == 2, lag  # one line per slave
        page.screenshot(shots(tmp_path) / "dashboard-charts.png", "header, main > section:nth-of-type(-n+2)")
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
        page.close()


def test_the_lag_chart_shows_a_paused_slave_falling_behind(cluster, tmp_path):
    group, nodes, master = cluster
    paused = next(n for n in nodes if n is not master)
    page = Page(master.url + "/", tmp_path / "profile")
    stop = threading.Event()
    worker = load(master.url, 60, stop)
    lag = f"((window.dkvs.charts.series.lag.get({json.dumps(paused.id)}) || []).slice(-1)[0] || [0, 0])[1]"
    try:
        page.wait(f"window.dkvs.charts.series.lag.has({json.dumps(paused.id)})", 20, "a lag line for the slave")
        paused.pause()
        first = page.wait(f"(v => v > 0.5 && v)({lag})", 20, "the paused slave's lag")
        page.wait(f"{lag} > {first} + 1", 20, "the lag growing")
        assert f"{paused.id}: " in page.js("document.querySelector('#chart-lag .legend').textContent")
    finally:
        paused.resume()
        stop.set()
        worker.join(10)
        page.close()


def test_a_master_sigkill_shows_on_the_timeline_charts_and_banner(cluster, tmp_path):
    group, nodes, master = cluster
    slave = next(n for n in nodes if n is not master)
    page = Page(slave.url + "/", tmp_path / "profile")
    try:
        page.wait("document.querySelectorAll('#timeline li[data-kind]').length >= 2", 20, "the first events")
        page.wait(f"document.getElementById('master').dataset.masterId === {json.dumps(master.id)}", 20, "the master")
        master.kill()
        new = wait_for(lambda: next((n for n in nodes if n is not master
                                     and (node_status(n.url, timeout=0.3) or {}).get("role") == "master"), None),
                       15, interval=0.02)
        assert new is not None, "no new master"
        epoch = node_status(new.url)["epoch"]
        banner = page.wait(f"(t => t.includes({json.dumps(master.id)}) && t)"
                           "(document.getElementById('banners').textContent)", 15, "the dead master in the banner")
        assert "Unreachable" in banner
        event = page.wait(f"(e => e && e.textContent)(document.querySelector("
                          f"'#timeline li[data-kind=\"elected\"][data-node=\"{new.id}\"][data-epoch=\"{epoch}\"]'))",
                          15, "the election on the timeline")
        assert f"epoch={epoch}" in event and "elected master" in event
        page.wait(f"{CHART}('chart-writes').marks >= 1", 10, "the failover mark on the charts")
        page.screenshot(shots(tmp_path) / "dashboard-failover.png", "#banners, main > section:nth-of-type(2), main > section:nth-of-type(3)")
        # With a second member gone there is no quorum: the banner says how far off it is.
        for node in nodes:
            if node is not slave and node.alive():
                node.kill()
        page.wait("document.getElementById('banners').textContent.includes("
                  "'No quorum: 1 of 3 members reachable, 2 needed')", 15, "the quorum banner")
    finally:
        page.close()


def test_an_edit_that_lost_a_race_shows_the_conflict_message_and_delete_asks_first(cluster, tmp_path):
    group, nodes, master = cluster
    assert http_call(master.url, "PUT", "/kv/" + quote("cas/key"), b"first")[0] == 200
    page = Page(master.url + "/", tmp_path / "profile", width=420, height=900)
    try:
        page.wait("!!document.querySelector('#items tr[data-key=\"cas/key\"] button.link')", 15, "the key")
        page.js("document.querySelector('#items tr[data-key=\"cas/key\"] button.link').click()")
        note = page.wait("(t => t.includes('Compare-and-set') && t)(document.getElementById('cas-note').textContent)",
                         5, "the compare-and-set note")
        assert "seq" in note
        # Someone else writes the key after the page loaded it.
        assert http_call(master.url, "PUT", "/kv/" + quote("cas/key"), b"theirs")[0] == 200
        page.js("document.getElementById('write-value').value = 'mine'; document.getElementById('put').click()")
        message = page.wait("(e => e && e.textContent)(document.querySelector('#result [data-outcome=\"conflict\"]'))",
                            15, "the conflict message")
        assert message.startswith("Conflict:") and "Nothing was written" in message
        assert http_call(master.url, "GET", "/kv/" + quote("cas/key"))[1]["value"] == "theirs"
        page.screenshot(shots(tmp_path) / "dashboard-keys-420.png", "#keys-heading, #keys-heading ~ *")
        # At 420 px the page does not scroll sideways and the alive column is visible.
        fits = page.js("(() => { const c = document.querySelector('#members tbody tr td:nth-child(4)');"
                       " const r = c && c.getBoundingClientRect();"
                       " return {scroll: document.documentElement.scrollWidth, right: r ? r.right : 9999}; })()")
        assert fits["scroll"] <= 420 and fits["right"] <= 420, fits
        # Delete asks first; Cancel keeps the key, Yes deletes it.
        page.js("document.querySelector('#items tr[data-key=\"cas/key\"] button.danger').click()")
        page.wait("!document.getElementById('confirm').hidden && "
                  "document.activeElement === document.getElementById('confirm-no')", 5, "the confirmation")
        page.js("document.getElementById('confirm-no').click()")
        assert http_call(master.url, "GET", "/kv/" + quote("cas/key"))[0] == 200
        page.js("document.querySelector('#items tr[data-key=\"cas/key\"] button.danger').click()")
        page.wait("!document.getElementById('confirm').hidden", 5, "the confirmation again")
        page.js("document.getElementById('confirm-yes').click()")
        assert wait_for(lambda: http_call(master.url, "GET", "/kv/" + quote("cas/key"))[0] == 404, 10)
    finally:
        page.close()


def test_delete_confirmation_works_from_the_keyboard(cluster, tmp_path):
    group, nodes, master = cluster
    assert http_call(master.url, "PUT", "/kv/kbd", b"v")[0] == 200
    page = Page(master.url + "/", tmp_path / "profile")

    page.command("Emulation.setFocusEmulationEnabled", {"enabled": True})

    def press(key: str, code: int) -> None:
        text = {"Enter": "\r"}.get(key, "")
        for kind in ("keyDown", "keyUp"):
            event = {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code,
                     "nativeVirtualKeyCode": code}
            if text and kind == "keyDown":
                event["text"] = text
            page.command("Input.dispatchKeyEvent", event)
    try:
        delete = "document.querySelector('#items tr[data-key=\"kbd\"] button.danger')"
        page.wait(f"!!{delete}", 15, "the key")
        page.js("document.getElementById('live').checked = false;" + delete + ".focus()")
        press("Enter", 13)
        page.wait("document.activeElement === document.getElementById('confirm-no')", 5, "focus on Cancel")
        press("Escape", 27)
        page.wait(f"document.getElementById('confirm').hidden && document.activeElement === {delete}", 5,
                  "the confirmation closed, focus back on Delete")
        assert http_call(master.url, "GET", "/kv/kbd")[0] == 200
        press("Enter", 13)
        page.wait("document.activeElement === document.getElementById('confirm-no')", 5, "focus on Cancel again")
        page.js("document.getElementById('confirm-yes').focus()")
        press("Enter", 13)
        assert wait_for(lambda: http_call(master.url, "GET", "/kv/kbd")[0] == 404, 10), "Enter on Yes deletes"
    finally:
        page.close()


def test_substring_search_finds_keys_and_the_list_refreshes_by_itself(cluster, tmp_path):
    group, nodes, master = cluster
    for key in ("alpha/needle/1", "beta/needle", "gamma/hay"):
        assert http_call(master.url, "PUT", "/kv/" + quote(key), b"v")[0] == 200
    page = Page(master.url + "/", tmp_path / "profile")
    try:
        page.js("document.getElementById('search-mode').value = 'substring';"
                "document.getElementById('search-text').value = 'needle';"
                "document.getElementById('search').requestSubmit()")
        keys = "[...document.querySelectorAll('#items tr[data-key]')].map(r => r.dataset.key).join(',')"
        assert page.wait(f"({keys}) === 'alpha/needle/1,beta/needle' && ({keys})", 10, "the substring matches")
        assert http_call(master.url, "PUT", "/kv/" + quote("zeta/needle"), b"v")[0] == 200
        page.wait(f"({keys}).includes('zeta/needle')", 25, "the live refresh")
    finally:
        page.close()


def test_with_auth_on_the_page_asks_for_a_token_once_and_then_shows_every_member(tmp_path):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": [{"token": "dash-token", "role": "write"}]}))
    auth.chmod(0o600)
    with LocalCluster(*FAST_TIMINGS) as group:
        nodes = group.start_cluster(3, "--auth-file", str(auth))
        slave = nodes[1]
        headers = {"Authorization": "Bearer dash-token"}
        assert http_call(slave.url, "GET", "/status")[0] == 401
        assert wait_for(lambda: http_call(nodes[0].url, "PUT", "/kv/guarded", b"v", headers=headers)[0] == 200, 10)
        page = Page(slave.url + "/", tmp_path / "profile")
        try:
            page.wait("!document.getElementById('auth').hidden", 10, "the token form")
            page.js("document.getElementById('auth-token').value = 'dash-token';"
                    "document.getElementById('auth').requestSubmit()")
            page.wait("!!document.querySelector('#items tr[data-key=\"guarded\"]')", 15, "keys read with the token")
            alive = "[...document.querySelectorAll('#members tr[data-alive=\"true\"]')].length"
            page.wait(f"{alive} === 3", 15, "every member polled with the token")
            page.wait("document.querySelectorAll('#timeline li[data-kind]').length > 0", 15, "events with the token")
            assert page.js("document.getElementById('auth').hidden") is True
        finally:
            page.close()


class _TokenNode(http.server.ThreadingHTTPServer):
    """A stand-in node that wants ``Authorization: Bearer s3cret`` on every API call."""


def _token_handler(seen: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/" or path.startswith("/static/"):
                name = "index.html" if path == "/" else path[len("/static/"):]
                kind = {"html": "text/html", "js": "text/javascript", "css": "text/css"}[name.rsplit(".", 1)[1]]
                return self._send(200, (STATIC / name).read_bytes(), kind)
            seen.append((path, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != "Bearer s3cret":
                return self._send(401, b'{"error":"unauthorized","message":"a token is needed"}')
            if path == "/status":
                url = f"http://127.0.0.1:{self.server.server_address[1]}"
                body = {"id": "tok", "url": url, "role": "master", "epoch": 1, "master": {"id": "tok", "url": url},
                        "last_seq": 0, "commit_seq": 0, "members": [{"id": "tok", "url": url, "role": "master",
                                                                      "last_seq": 0, "alive": True}]}
            elif path == "/kv":
                body = {"items": [{"key": "secret-key", "value": "v", "seq": 1}], "next": None}
            elif path == "/events":
                body = {"events": [], "next": 0, "dropped": 0, "started": 1.0}
            else:
                return self._send(200, b"", "text/plain; version=0.0.4")
            return self._send(200, json.dumps(body).encode())

        def _send(self, code, body, kind="application/json"):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    return Handler


def test_a_401_asks_for_a_token_kept_in_session_storage_and_sent_on_every_request(tmp_path):
    seen: list = []
    server = _TokenNode(("127.0.0.1", 0), _token_handler(seen))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    page = Page(f"http://127.0.0.1:{server.server_address[1]}/", tmp_path / "profile")
    try:
        page.wait("!document.getElementById('auth').hidden", 10, "the token form")
        page.js("document.getElementById('auth-token').value = 's3cret';"
                "document.getElementById('auth').requestSubmit()")
        page.wait("!!document.querySelector('#items tr[data-key=\"secret-key\"]')", 10, "keys read with the token")
        assert page.js("sessionStorage.getItem('dkvs.token')") == "s3cret"
        assert page.js("document.getElementById('auth').hidden") is True
        mark = len(seen)
        wait_for(lambda: len(seen) > mark + 5, 10)
        assert all(auth == "Bearer s3cret" for _, auth in seen[mark:]), seen[mark:]
    finally:
        page.close()
        server.shutdown()
        server.server_close()


def measure_chart_accuracy(seconds: float = 30.0, workers: int = 4) -> None:
    """Benchmark, not a test: writes/s on the chart against what a load generator counted.
    (``python3 tests/test_dashboard_live.py events`` runs :func:`measure_failover_events`.)

    ``python3 tests/test_dashboard_live.py`` starts 3 nodes, opens the dashboard on a slave,
    runs ``workers`` writers against the master for ``seconds`` and prints, for the steady
    middle of the run, the load's own writes/s and the chart's mean writes/s, and their ratio.
    """
    import tempfile
    done: list[float] = []
    with LocalCluster(*FAST_TIMINGS) as group, tempfile.TemporaryDirectory() as profile:
        nodes = group.start_cluster(3)
        master = wait_for(group.master, 10)
        slave = next(n for n in nodes if n is not master)
        page = Page(slave.url + "/", Path(profile))
        stop = threading.Event()

        def writer(w: int) -> None:
            deadline, i = time.monotonic() + seconds, 0
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    if http_call(master.url, "PUT", f"/kv/bench{w}-{i % 100}", b"x")[0] == 200:
                        done.append(time.time())
                except OSError:
                    pass
                i += 1
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(workers)]
        started = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 30)
        points = page.js("window.dkvs.charts.series.writes.get('writes/s')") or []
        page.close()
    lo, hi = started + seconds * 0.25, started + seconds * 0.75
    actual = sum(1 for t in done if lo <= t < hi) / (hi - lo)
    shown = [v for t, v in points if lo * 1000 <= t < hi * 1000]
    mean = sum(shown) / len(shown) if shown else float("nan")
    print(f"load: {actual:.1f} writes/s; chart: {mean:.1f} writes/s over {len(shown)} points; "
          f"ratio {mean / actual:.3f} ({workers} writers, {seconds:.0f} s, middle half)")


def measure_failover_events(runs: int = 5) -> None:
    """Benchmark, not a test: seconds from a master SIGKILL until the election is in a
    survivor's ``GET /events`` (read with a long poll), the feed the timeline shows."""
    results = []
    for _ in range(runs):
        with LocalCluster(*FAST_TIMINGS) as group:
            nodes = group.start_cluster(3)
            master = wait_for(group.master, 10)
            survivor = next(n for n in nodes if n is not master)
            after = http_call(survivor.url, "GET", "/events")[1]["next"]
            killed = time.monotonic()
            master.kill()
            seen = None
            while seen is None and time.monotonic() - killed < 20:
                answer = http_call(survivor.url, "GET", f"/events?after={after}&wait=10", timeout=15)[1]
                after = answer["next"]
                if any(e["kind"] in ("elected", "following") and e["epoch"] > 1 for e in answer["events"]):
                    seen = time.monotonic() - killed
            results.append(seen)
    print("SIGKILL of the master -> election in a survivor's /events, seconds:",
          ", ".join("none" if r is None else f"{r:.2f}" for r in results),
          f"({' '.join(FAST_TIMINGS)})")


if __name__ == "__main__":
    if sys.argv[1:] == ["events"]:
        measure_failover_events()
    else:
        measure_chart_accuracy()
