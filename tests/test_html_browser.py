"""The HTML report in a real headless Chromium: it renders, charts are drawn, nothing errors.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe``
(JSON messages separated by NUL bytes on file descriptors 3 and 4), which needs
only the standard library: no websocket client, no Selenium.
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import select
import shutil
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import with_off_loop_sections
from sample_runs import RUNS, sample_report

from looptools._culprits import culprit_groups
from looptools.report.load import load_report
from looptools.report.render import HtmlRenderer

CHROMIUM = "/usr/bin/chromium"
DATA = Path(__file__).parent / "data" / "render"
WIDTH, HEIGHT = 1280, 1600
TIMEOUT_S = 30.0

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} is missing (apt-get install chromium) so the HTML report cannot be "
           "checked in a real browser",
)


class Browser:
    """One headless Chromium process and one page, spoken to over the DevTools pipe."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._next_id = 0
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Move the child's ends above 3/4 so that dup2 onto 3 and 4 cannot clobber them.
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
        log = os.open(workdir / "chromium.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        log_fd = fcntl.fcntl(log, fcntl.F_DUPFD_CLOEXEC, 10)
        null = os.open(os.devnull, os.O_RDONLY)
        null_fd = fcntl.fcntl(null, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_chrome_r, from_chrome_w, log, null):
            os.close(fd)
        args = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--hide-scrollbars", "--remote-debugging-pipe", f"--window-size={WIDTH},{HEIGHT}",
            f"--user-data-dir={workdir / 'profile'}", "about:blank",
        ]
        try:
            self.pid = os.posix_spawn(CHROMIUM, args, dict(os.environ), file_actions=[
                (os.POSIX_SPAWN_DUP2, null_fd, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
                (os.POSIX_SPAWN_DUP2, child_r, 3),
                (os.POSIX_SPAWN_DUP2, child_w, 4),
            ], setsid=True)
        finally:
            for fd in (child_r, child_w, log_fd, null_fd):
                os.close(fd)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH,
                  height=HEIGHT, deviceScaleFactor=1, mobile=False)

    # -- protocol -------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from Chromium; see {self.workdir / 'chromium.log'}")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise ConnectionError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def _send(self, method: str, session: bool, params: dict[str, Any]) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _keep(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event["method"] == "Page.javascriptDialogOpening":
            # An alert() would block the page (and its load event) forever: dismiss it,
            # but keep the event so that problems() reports it.
            self._send("Page.handleJavaScriptDialog", True, {"accept": True})

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events seen meanwhile are kept."""
        sent = self._send(method, session, params)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == sent:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._keep(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The next (or an already received, not yet consumed) event called *method*."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for n, event in enumerate(self.events):
                if event["method"] == method and not event.get("_seen"):
                    self.events[n]["_seen"] = True
                    return event
            message = self._read_message(deadline)
            if "method" in message:
                self._keep(message)

    # -- page -----------------------------------------------------------------------------

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        for event in self.events:
            if event["method"] == "Page.loadEventFired":
                event["_seen"] = True
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, clip: dict[str, float] | None = None) -> bytes:
        """A PNG of the viewport (or of *clip*, page coordinates) written to *path*."""
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params.update(clip={**clip, "scale": 1}, captureBeyondViewport=True)
        data = base64.b64decode(self.call("Page.captureScreenshot", session=True,
                                          **params)["data"])
        path.write_bytes(data)
        return data

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, error log entries, JS dialogs."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning",
                                                                              "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                found.append(f"log {params['entry']['level']}: {params['entry'].get('text')}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params.get('message')}")
        return found

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, TimeoutError, ConnectionError, RuntimeError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.05)
        else:
            # Our own process group (setsid above): the browser and its helpers.
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    workdir = tmp_path_factory.mktemp("chromium")
    instance = Browser(workdir)
    try:
        yield instance
    finally:
        instance.close()
        shutil.rmtree(workdir / "profile", ignore_errors=True)


def _page(tmp_path: Path, fixture: str) -> tuple[dict[str, Any], str]:
    report = load_report(DATA / fixture)
    page = tmp_path / fixture.replace(".json", ".html")
    page.write_text(HtmlRenderer().render(report), encoding="utf-8")
    return report, page.as_uri()


_MEASURE = """(() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const bbox = (el) => { const b = el.getBBox(); return [b.width, b.height]; };
  const q = (s) => Array.from(document.querySelectorAll(s));
  return {
    title: document.title,
    timeline: q('#timeline-chart').map(box),
    histogram: q('#lag-histogram').map(box),
    stalls: q('#timeline-chart rect.stall').map(bbox),
    qt: q('#timeline-chart rect.qt').map(bbox),
    pending: q('#timeline-chart polygon.pending').map(bbox),
    bars: q('#lag-histogram rect.bar').map(bbox),
    details: q('#stalls details').length,
    openDetails: q('#stalls details[open]').map((d) => d.id),
    scripts: q('script').length,
    images: q('img').length,
    bodyText: document.body.innerText,
    verdict: document.getElementById('verdict').innerText,
  };
})()"""


def _clear(browser: Browser) -> None:
    browser.events = [e for e in browser.events if e["method"] == "Page.loadEventFired"]


@pytest.mark.parametrize("fixture", ["qasync_chat.json", "qtasyncio_viewer.json",
                                     "asyncio_plain.json", "healthy.json"])
def test_report_renders_with_charts_and_no_errors(
    browser: Browser, tmp_path: Path, fixture: str
) -> None:
    report, url = _page(tmp_path, fixture)
    _clear(browser)
    browser.open(url)
    m = browser.evaluate(_MEASURE)

    assert m["title"].startswith("looptools report")
    assert len(m["timeline"]) == 1
    assert m["timeline"][0][0] > 600 and m["timeline"][0][1] > 40
    stalls = report["stalls"]
    assert len(m["stalls"]) == len(stalls)
    assert all(w > 0 and h > 0 for w, h in m["stalls"])
    windows = (report["dispatcher"] or {}).get("busy_windows") or []
    assert len(m["qt"]) == len(windows)
    assert all(w > 0 and h > 0 for w, h in m["qt"])
    if (report["tasks"] or {}).get("pending_over_time"):
        assert len(m["pending"]) == 1 and m["pending"][0][0] > 0
    histogram = report["lag"]["histogram"]
    assert len(m["histogram"]) == 1 and all(v > 100 for v in m["histogram"][0])
    assert len(m["bars"]) == len(histogram)
    for (_, count), (width, height) in zip(histogram, m["bars"], strict=True):
        assert width > 0
        assert (height > 0) == (count > 0)
    # One <details> per culprit with stalls; the first of them (most blocked time) is open.
    ranks = [rank for rank, group in enumerate(culprit_groups(report), 1) if group.stalls]
    assert m["details"] == len(ranks)
    if stalls:
        assert m["openDetails"] == [f"culprit-{ranks[0]}"]
    assert m["scripts"] == 1 and m["images"] == 0
    assert browser.problems() == []
    assert all(u.startswith(("file:", "data:", "about:")) for u in browser.requested_urls()), \
        browser.requested_urls()


def test_timeline_link_opens_the_stall(browser: Browser, tmp_path: Path) -> None:
    _, url = _page(tmp_path, "qasync_chat.json")
    _clear(browser)
    browser.open(url)
    # Clicking a stall in the SVG timeline follows its link; the script opens the stack.
    browser.evaluate("document.querySelectorAll('#timeline-chart a')[2]"
                     ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    browser.evaluate("new Promise((ok) => setTimeout(ok, 100))")
    assert browser.evaluate("document.getElementById('stall-tools').hidden") is False
    assert browser.evaluate("location.hash") == "#stall-2"
    # The stall is listed inside its culprit's <details>, which the script opened.
    assert browser.evaluate("document.getElementById('stall-2').closest('details').open") is True
    browser.evaluate("document.querySelector('#stall-tools [data-open=\"1\"]').click()")
    assert browser.evaluate("document.querySelectorAll('#stalls details:not([open])').length") \
        == 0
    assert browser.problems() == []


def test_worker_loop_stalls_are_on_the_timeline_and_open_their_stack(
    browser: Browser, tmp_path: Path
) -> None:
    report = with_off_loop_sections(load_report(DATA / "qasync_chat.json"))
    first = report["worker_loops"]["stalls"][0]
    second = {**first, "thread": "job-runner", "thread_ident": 140002,
              "started_at_s": 5.0, "duration_ms": 180.0}
    report["worker_loops"]["stalls"] = [first, second]
    page = tmp_path / "workers.html"
    page.write_text(HtmlRenderer().render(report), encoding="utf-8")
    _clear(browser)
    browser.open(page.as_uri())
    rects = browser.evaluate(
        "Array.from(document.querySelectorAll('#timeline-chart rect.worker'))"
        ".map((r) => { const b = r.getBBox(); return [b.x, b.y, b.width, b.height]; })")
    assert len(rects) == 2 and all(w > 0 and h > 0 for _, _, w, h in rects)
    assert rects[0][1] != rects[1][1], "two threads, two rows"
    assert rects[0][0] < rects[1][0], "2.5 s before 5 s"
    # The second stall's stack is closed until its rect is clicked.
    assert browser.evaluate("document.getElementById('worker-stall-1').open") is False
    browser.evaluate("document.querySelectorAll('#timeline-chart .row-worker a')[1]"
                     ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    browser.evaluate("new Promise((ok) => setTimeout(ok, 100))")
    assert browser.evaluate("location.hash") == "#worker-stall-1"
    assert browser.evaluate("document.getElementById('worker-stall-1').open") is True
    assert browser.problems() == []


def test_hostile_strings_are_shown_not_run(browser: Browser, tmp_path: Path) -> None:
    _, url = _page(tmp_path, "hostile.json")
    _clear(browser)
    browser.open(url)
    m = browser.evaluate(_MEASURE)
    assert m["scripts"] == 1, "a <script> from the report was parsed as markup"
    assert m["images"] == 0, "an <img> from the report was parsed as markup"
    assert "<script>alert(1)</script>" in m["bodyText"]
    assert '"><img src=x onerror=alert(2)>' in m["bodyText"]
    assert browser.problems() == []  # no alert() dialog, no CSP violation


def test_page_works_without_javascript(browser: Browser, tmp_path: Path) -> None:
    report, url = _page(tmp_path, "qasync_chat.json")
    _clear(browser)
    browser.call("Emulation.setScriptExecutionDisabled", session=True, value=True)
    try:
        browser.open(url)
        m = browser.evaluate(_MEASURE)
        script_ran = not browser.evaluate("document.getElementById('stall-tools').hidden")
    finally:
        browser.call("Emulation.setScriptExecutionDisabled", session=True, value=False)
    assert not script_ran
    assert len(m["stalls"]) == len(report["stalls"])
    assert all(w > 0 for w, _ in m["bars"])
    assert len(m["openDetails"]) == 1  # the longest stall's stack is open without the script
    assert browser.problems() == []


def test_screenshot(browser: Browser, tmp_path: Path) -> None:
    _, url = _page(tmp_path, "qasync_chat.json")
    browser.open(url)
    png = browser.screenshot(tmp_path / "report.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(png) > 50_000  # a blank page compresses to a few kB


# -- the answer on the first screen -------------------------------------------------------------

FIRST_SCREEN = (1280, 800)

_FIRST_SCREEN = """(() => {
  const inside = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0
      && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
  };
  const seen = (el) => el && [el.textContent, inside(el)];
  return {
    viewport: [window.innerWidth, window.innerHeight],
    scrollY: window.scrollY,
    worst: seen(document.querySelector('#worst code')),
    firstRow: seen(document.querySelector('#culprits tbody tr td:nth-child(2) code')),
    firstSection: document.querySelector('main section').id,
  };
})()"""


@pytest.mark.parametrize("fixture", ["render/qasync_chat.json", "render/qtasyncio_viewer.json",
                                     "render/asyncio_plain.json", "reports/blocking_slot.json",
                                     "reports/two_blocking.json"])
def test_worst_culprit_is_on_the_first_screen(browser: Browser, tmp_path: Path,
                                              fixture: str) -> None:
    """At 1280×800, without scrolling, the page names the worst culprit: in the header and
    as the first row of "Top culprits", the first section."""
    report = load_report(DATA.parent / fixture)
    worst = culprit_groups(report)[0]
    page = tmp_path / "report.html"
    page.write_text(HtmlRenderer().render(report), encoding="utf-8")
    width, height = FIRST_SCREEN
    browser.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                 deviceScaleFactor=1, mobile=False)
    try:
        _clear(browser)
        browser.open(page.as_uri())
        m = browser.evaluate(_FIRST_SCREEN)
        png = browser.screenshot(tmp_path / "first-screen.png")
    finally:
        browser.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH,
                     height=HEIGHT, deviceScaleFactor=1, mobile=False)
    assert m["viewport"] == [width, height] and m["scrollY"] == 0
    assert struct.unpack(">II", png[16:24]) == FIRST_SCREEN
    assert m["worst"] == [worst.function, True], m
    assert m["firstRow"] == [worst.function, True], m
    assert m["firstSection"] == "culprits"
    assert browser.problems() == []
    # Nothing fetched: the page itself is the only URL that is not inline data.
    assert [u for u in browser.requested_urls() if not u.startswith(("data:", "about:"))] == \
        [page.as_uri()], browser.requested_urls()


# -- where the blocked time went (the flame graph) ----------------------------------------------

_FLAME = """(() => {
  const section = document.getElementById('flame');
  const svg = document.getElementById('flame-graph');
  const boxes = svg ? Array.from(svg.querySelectorAll('g.frame')).map((g) => {
    const rect = g.querySelector('rect');
    const text = g.querySelector('text');
    const r = rect.getBoundingClientRect();
    const own = rect.getBBox();
    const label = text && text.getBBox();
    return {x: r.left, y: r.top, width: r.width, height: r.height,
            title: g.querySelector('title').textContent,
            label: text ? text.textContent : null,
            labelEnd: label ? label.x + label.width : null, boxEnd: own.x + own.width};
  }) : [];
  return {text: section && section.innerText, boxes: boxes,
          paragraphs: section ? section.querySelectorAll('p').length : 0};
})()"""


@pytest.mark.parametrize("fixture", ["reports/two_blocking.json", "render/qasync_chat.json",
                                     "render/qtasyncio_viewer.json"])
def test_flame_graph_draws_boxes_as_wide_as_their_blocked_time(
        browser: Browser, tmp_path: Path, fixture: str) -> None:
    from looptools.report.render import _format as fmt
    from looptools.report.render.flame import flame_graph, icicle, lines_text

    report = load_report(DATA.parent / fixture)
    graph = flame_graph(report)
    page = tmp_path / "report.html"
    page.write_text(HtmlRenderer().render(report), encoding="utf-8")
    _clear(browser)
    browser.open(page.as_uri())
    m = browser.evaluate(_FLAME)

    boxes = m["boxes"]
    assert len(boxes) == len(icicle(graph, min_width=0.5 / HtmlRenderer.width)) > 3
    assert all(b["width"] > 0 and b["height"] > 10 for b in boxes)
    root = min(boxes, key=lambda b: b["y"])
    assert root["width"] > 600
    # The first function where the stacks part: its heaviest callee is drawn under it, from
    # its left edge, as wide as that callee's share of all the blocked time.
    depth, node = next((d, n) for d, n in graph.root.walk() if len(n.children) > 1)
    widest = node.children[0]
    row = root["height"] + 1  # rows are 18 units apart, boxes 17 high
    below = [b for b in boxes if round((b["y"] - root["y"]) / row) == depth + 1]
    drawn = max(below, key=lambda b: b["width"])
    assert drawn["width"] / root["width"] == pytest.approx(widest.ms / graph.total_ms, abs=0.01)
    title = drawn["title"]
    assert title.startswith(widest.function + "\n" + lines_text(widest) + "\n")
    assert fmt.fmt_ms(widest.ms) in title and fmt.fmt_pct(widest.ms / graph.total_ms) in title
    # A label is drawn only where it fits inside its box.
    labelled = [b for b in boxes if b["label"]]
    assert labelled and [b for b in labelled if b["labelEnd"] > b["boxEnd"]] == []
    assert browser.problems() == []
    assert [u for u in browser.requested_urls() if not u.startswith(("data:", "about:"))] == \
        [page.as_uri()], browser.requested_urls()


def test_flame_graph_section_says_when_there_are_no_stalls(browser: Browser,
                                                           tmp_path: Path) -> None:
    _, url = _page(tmp_path, "healthy.json")
    _clear(browser)
    browser.open(url)
    m = browser.evaluate(_FLAME)
    assert m["boxes"] == [] and m["paragraphs"] == 1
    assert m["text"].splitlines()[-1] == "No stalls over 100 ms: no blocked time to show."
    assert browser.problems() == []


# -- the charts of real runs, every loop kind ---------------------------------------------------

_CHARTS = """(() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom]; };
  const q = (s) => Array.from(document.querySelectorAll(s));
  return {
    histogramText: q('#lag-histogram text').map((t) => [t.textContent, box(t)]),
    timelineText: q('#timeline-chart text').map((t) => [t.textContent, box(t)]),
    bars: q('#lag-histogram rect.bar').map((b) =>
      [Number(b.dataset.upper), Number(b.dataset.count), box(b)]),
    lagPaths: q('#timeline-chart path.lag').map((p) => p.getAttribute('d')),
  };
})()"""


def _overlapping(labels: list[list[Any]]) -> list[tuple[str, str]]:
    """Pairs of labels whose boxes (``[left, top, right, bottom]``) intersect."""
    found = []
    for n, (text_a, a) in enumerate(labels):
        for text_b, b in labels[n + 1:]:
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                found.append((text_a, text_b))
    return found


@pytest.mark.parametrize("kind", list(RUNS))
def test_lag_histogram_of_a_real_run(browser: Browser, tmp_path: Path, kind: str) -> None:
    """A real run's lag histogram: a slot for every bucket between the smallest and the
    largest (the empty ones too, so a 300 ms bucket never stands next to a 2 ms one), on
    a log axis whose labels do not overlap; the lag row on the timeline."""
    report = sample_report(kind)
    page = tmp_path / f"{kind}.html"
    page.write_text(HtmlRenderer().render(report), encoding="utf-8")
    _clear(browser)
    browser.open(page.as_uri())
    m = browser.evaluate(_CHARTS)

    histogram = report["lag"]["histogram"]
    # On looptools' grid (5 % buckets): the slots between the first and the last.
    steps = [math.log(upper / histogram[0][0], 1.05) for upper, _ in histogram]
    assert all(abs(k - round(k)) < 0.05 for k in steps), histogram
    slots = round(steps[-1]) + 1
    assert len(m["bars"]) == slots > len(histogram), (len(m["bars"]), len(histogram))
    drawn = [(upper, count) for upper, count, _ in m["bars"] if count > 0]
    assert len(drawn) == len(histogram)
    for (upper, count), (want_upper, want_count) in zip(drawn, histogram, strict=True):
        assert upper == pytest.approx(want_upper, rel=1e-4) and count == want_count
    # Equal slots left to right (a log axis), and a bar exactly where there are samples.
    lefts = [box[0] for _, _, box in m["bars"]]
    widths = [box[2] - box[0] for _, _, box in m["bars"]]
    assert lefts == sorted(lefts) and max(widths) - min(widths) < 0.5, widths
    for _, count, box in m["bars"]:
        assert (box[3] - box[1] > 0) == (count > 0)
    # Labels: the axes' and the threshold's, none over another.
    texts = [text for text, _ in m["histogramText"]]
    assert "samples (log)" in texts and any(t.startswith("threshold ") for t in texts), texts
    assert sum(t.endswith(" ms") for t in texts) >= 3, texts
    assert _overlapping(m["histogramText"]) == []
    assert _overlapping(m["timelineText"]) == []
    # The lag row: one spike per point of the report's lag over time.
    over_time = report["lag"]["over_time"]
    assert len(over_time) >= 3
    assert sum(d.count("M") for d in m["lagPaths"]) == len(over_time)
    assert browser.problems() == []


# -- off the main loop: hand-offs, worker-thread loops, thread affinity -----------------------

_OFF_LOOP = """(() => {
  const seen = (id) => { const el = document.getElementById(id);
    if (!el) { return null; }
    const r = el.getBoundingClientRect();
    return [el.innerText, r.width > 0 && r.height > 0]; };
  return {handoffs: seen('handoffs'), workers: seen('worker-loops'),
          affinity: seen('affinity'), also: seen('verdict-also'),
          worst: document.querySelector('#worst code').textContent};
})()"""


def test_off_loop_sections_show_the_site_culprit_and_call(browser: Browser,
                                                           tmp_path: Path) -> None:
    """The hand-off posting site, the worker loop's culprit and the affinity call site are
    on the page, laid out; the headline stays the GUI loop's worst culprit."""
    report = with_off_loop_sections(load_report(DATA / "qasync_chat.json"))
    page = tmp_path / "off-loop.html"
    page.write_text(HtmlRenderer().render(report), encoding="utf-8")
    _clear(browser)
    browser.open(page.as_uri())
    m = browser.evaluate(_OFF_LOOP)

    handoffs, shown = m["handoffs"]
    assert shown and "Poller.report app/poller.py:57" in handoffs
    assert "the longest waited while ChatWindow.on_send_clicked held the loop" in handoffs
    workers, shown = m["workers"]
    assert shown and "Poller._poll app/poller.py:41" in workers
    assert "250 ms at +2.500 s in Poller._poll (app/poller.py:41)" in workers
    affinity, shown = m["affinity"]
    assert shown and "QLabel.setText" in affinity and "app/worker.py:23" in affinity
    assert m["also"][0].startswith("also: 1 stall in worker-thread loops")
    assert m["worst"] == culprit_groups(report)[0].function == "ChatWindow.on_send_clicked"
    assert browser.problems() == []
    assert [u for u in browser.requested_urls() if not u.startswith(("data:", "about:"))] == \
        [page.as_uri()], browser.requested_urls()
