"""The report renderers and their registry, on fixture reports that validate against the schema."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from collections import defaultdict
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import with_off_loop_sections
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from looptools.report.model import model_of
from looptools.report.render import (
    BUILTIN_RENDERERS,
    HtmlRenderer,
    JsonRenderer,
    MarkdownRenderer,
    Renderer,
    RendererNotFound,
    TextRenderer,
    TraceRenderer,
    format_names,
    get_renderer,
    get_renderer_class,
    renderer_for_path,
)
from looptools.report.render import _format as fmt

DATA = Path(__file__).parent / "data" / "render"
FIXTURES = sorted(p.name for p in DATA.glob("*.json"))
HOSTILE = "<script>alert(1)</script>"


def load(name: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return report


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    text = resources.files("looptools.schema").joinpath("report.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# -- fixtures ---------------------------------------------------------------------------------


def test_fixture_set_is_complete() -> None:
    kinds = {load(name)["loop"]["kind"] for name in FIXTURES}
    assert {"qasync", "qtasyncio", "asyncio"} <= kinds
    assert any(load(n)["dispatcher"] is None for n in FIXTURES)
    assert any(load(n)["stall_summary"]["count"] == 0 for n in FIXTURES)
    assert "hostile.json" in FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_validates_against_the_schema(name: str, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema).validate(load(name))


# -- registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    ("text", TextRenderer), ("TXT", TextRenderer), ("md", MarkdownRenderer),
    ("markdown", MarkdownRenderer), ("html", HtmlRenderer), ("Html", HtmlRenderer),
    ("trace", TraceRenderer), ("perfetto", TraceRenderer), ("json", JsonRenderer),
])
def test_lookup_by_name(spec: str, expected: type[Renderer]) -> None:
    assert get_renderer_class(spec) is expected


@pytest.mark.parametrize(("path", "expected"), [
    ("report.html", HtmlRenderer), ("out/REPORT.HTM", HtmlRenderer), (".html", HtmlRenderer),
    ("summary.md", MarkdownRenderer), ("run.json", JsonRenderer),
    ("run.trace.json", TraceRenderer), ("/tmp/x/run.perfetto.json", TraceRenderer),
    ("run.txt", TextRenderer), ("a.b.c.txt", TextRenderer),
])
def test_lookup_by_extension(path: str, expected: type[Renderer]) -> None:
    assert get_renderer_class(path) is expected
    assert renderer_for_path(path) is expected


@pytest.mark.parametrize("path", ["report.pdf", "report", "html.bak", "trace.json.gz"])
def test_unknown_extension(path: str) -> None:
    assert renderer_for_path(path) is None


def test_lookup_by_dotted_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_renderer_class("looptools.report.render.jsonrenderer:JsonRenderer") is JsonRenderer
    (tmp_path / "my_renderers.py").write_text(
        "from looptools.report.render import Renderer\n"
        "class CsvRenderer(Renderer):\n"
        "    def render(self, report):\n"
        "        return 'duration_ms\\n' + ''.join(f\"{s['duration_ms']}\\n\" "
        "for s in report['stalls'])\n"
        "NOT_A_RENDERER = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    renderer = get_renderer("my_renderers:CsvRenderer")
    assert isinstance(renderer, Renderer)
    assert renderer.render(load("asyncio_plain.json")) == "duration_ms\n640.2\n"
    with pytest.raises(RendererNotFound,
                       match=r"not a looptools\.report\.render\.Renderer subclass"):
        get_renderer_class("my_renderers:NOT_A_RENDERER")
    with pytest.raises(RendererNotFound, match="has no attribute 'Missing'"):
        get_renderer_class("my_renderers:Missing")


@pytest.mark.parametrize(("spec", "message"), [
    ("pdf", "unknown format 'pdf'"),
    ("report.pdf", "unknown format 'report.pdf'"),
    ("", "empty format name"),
    ("no_such_module_xyz:Renderer", "cannot import 'no_such_module_xyz'"),
])
def test_unknown_renderer_is_a_clear_error(spec: str, message: str) -> None:
    with pytest.raises(RendererNotFound) as info:
        get_renderer_class(spec)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    if spec in ("pdf", "report.pdf"):
        for name in format_names():
            assert name in text
        assert ".trace.json" in text


def test_get_renderer_passes_options() -> None:
    renderer = get_renderer("text", color=True)
    assert isinstance(renderer, TextRenderer) and renderer.color


def test_every_builtin_is_named_and_documented() -> None:
    names = [r.name for r in BUILTIN_RENDERERS]
    assert names == ["text", "md", "html", "trace", "json", "speedscope"]
    for renderer in BUILTIN_RENDERERS:
        assert renderer.description and renderer.extensions and renderer.__doc__


def test_renderers_do_not_import_rich_or_click() -> None:
    for renderer in BUILTIN_RENDERERS:
        source = Path(renderer.__module__.replace(".", "/") + ".py")
        text = (Path(__file__).parent.parent / source).read_text()
        assert not re.search(r"^\s*(import|from)\s+(rich|click)\b", text, re.M), source


# -- every renderer on every fixture -----------------------------------------------------------


@pytest.mark.parametrize("renderer", BUILTIN_RENDERERS, ids=lambda r: r.name)
@pytest.mark.parametrize("name", FIXTURES)
def test_renders_every_fixture(renderer: type[Renderer], name: str) -> None:
    out = renderer().render(load(name))
    assert isinstance(out, str) and out.endswith("\n") and len(out) > 100


# -- text -------------------------------------------------------------------------------------


def test_text_names_each_culprit_with_file_and_line() -> None:
    report = load("qasync_chat.json")
    out = TextRenderer().render(report)
    for stall in report["stalls"]:
        if stall["culprit"]:
            assert f"{stall['culprit']['file']}:{stall['culprit']['line']}" in out
    assert "sample_apps/chat_qasync.py:97" in out
    assert "810 ms" in out  # the longest stall's duration


def test_text_and_html_give_the_culprit_s_share_of_the_samples() -> None:
    report = load("qasync_chat.json")
    longest = max(report["stalls"], key=lambda stall: stall["duration_ms"])
    longest.update(samples=150, culprit_samples=141)
    assert "ChatWindow.on_send_clicked (sample_apps/chat_qasync.py:97) ×3: longest 810 ms at " \
        "+5.951 s [qt] (culprit in 141 of 150 samples)" in TextRenderer().render(report)
    assert "culprit in 141 of 150 samples" in HtmlRenderer().render(report)
    assert "ChatWindow.on_send_clicked (sample_apps/chat_qasync.py:97) ×3: longest 810 ms at " \
        "+5.951 s [qt] — culprit in 141 of 150 samples" in MarkdownRenderer().render(report)


def test_text_sections() -> None:
    out = TextRenderer().render(load("qasync_chat.json"))
    lines = out.splitlines()
    assert lines[0].startswith("looptools report  python -m looptools profile")
    assert "qasync (qasync.QSelectorEventLoop, Qt dispatcher QEventDispatcherGlib" in out
    assert "12.8 s" in out and "threshold 100 ms" in out
    assert any(line.startswith("STALLED: 11 stalls over 100 ms") for line in lines)
    # Stalls: one entry per culprit with its count, the longest one's stack, innermost last,
    # the culprit frame marked.
    assert "#1 ChatWindow.on_send_clicked (sample_apps/chat_qasync.py:97) ×3: longest 810 ms " \
        "at +5.951 s [qt]\n      all 3: 810 ms at +5.951 s, 413 ms at +1.503 s, 405 ms at " \
        "+4.009 s\n" in out
    assert "sample_apps/chat_qasync.py:97 in ChatWindow.on_send_clicked   <- culprit" in out
    assert "Slow callbacks (4)" in out and "ChatWindow.load_history" in out
    assert "p50 0.61 ms   p90 2.40 ms   p99 236 ms   max 810 ms   mean 6.80 ms" in out
    assert "busy 23.8% of the time; 1843 iterations (144/s); longest busy 812 ms" in out
    assert "peak 14 pending; 57 created; 3 pending at the last audit" in out
    leaked = out[out.index("Leaked (pending at exit): 3"):]
    assert "Task-41  ChatWindow.fetch_avatar  2.33 s  sample_apps/chat_qasync.py:166" in leaked
    assert "ChatWindow.fetch_avatar (sample_apps/chat_qasync.py:172)" in leaked
    assert "ConnectionResetError: [Errno 104] Connection reset by peer" in out
    blocking = out[out.index("Blocking calls on the loop thread (9)"):]
    assert re.search(r"time\.sleep\s+3\n\s+3\s+sample_apps/chat_qasync.py:97\s+"
                     r"ChatWindow.on_send_clicked", blocking)
    assert "lag: RuntimeError: heartbeat timer stopped" in out


def test_text_healthy_and_minimal() -> None:
    healthy = TextRenderer().render(load("healthy.json"))
    assert "OK: no stalls over 100 ms and nothing leaked" in healthy
    assert "Stalls:" not in healthy and "Blocking" not in healthy
    minimal = TextRenderer().render(load("minimal.json"))
    assert "loop      none (callback timing off)" in minimal
    assert "Loop lag" not in minimal and "Tasks" not in minimal


def test_text_colour_only_when_asked() -> None:
    report = load("qasync_chat.json")
    assert "\x1b[" not in TextRenderer().render(report)
    coloured = TextRenderer(color=True).render(report)
    assert "\x1b[1m\x1b[31mSTALLED" in coloured


def test_text_strips_terminal_control_characters() -> None:
    out = TextRenderer().render(load("hostile.json"))
    assert "\x1b" not in out and "\r" not in out
    assert HOSTILE in out  # shown as it is: a terminal does not run it
    assert "line break [31mred [0m" in out


# -- markdown ---------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.end_tags: list[str] = []
        self.attrs: list[str] = []
        self.rows: list[int] = []
        self.tables: list[list[int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append(0)
        elif tag in ("td", "th"):
            self.tables[-1][-1] += 1

    def handle_endtag(self, tag: str) -> None:
        self.end_tags.append(tag)


def _md_html(markdown: str) -> _Tags:
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    tags = _Tags()
    tags.feed(rendered)
    return tags


@pytest.mark.parametrize("name", FIXTURES)
def test_markdown_tables_are_well_formed(name: str) -> None:
    tags = _md_html(MarkdownRenderer().render(load(name)))
    assert tags.tables, "no tables"
    for table in tags.tables:
        assert len(set(table)) == 1, f"ragged table (a '|' leaked into a cell?): {table}"
    assert set(tags.tags) <= {"h3", "h4", "p", "strong", "table", "thead", "tbody", "tr", "th",
                              "td", "code", "pre", "details", "summary", "br", "ul", "li"}


def test_markdown_summary() -> None:
    out = MarkdownRenderer().render(load("qasync_chat.json"))
    assert out.startswith("### ❌ looptools: STALLED\n")
    assert "| 1 | `ChatWindow.on_send_clicked` | `sample_apps/chat_qasync.py:97` | 3 stalls | " \
           "1.63 s | 810 ms | +1.503 s | +5.951 s |" in out
    assert "<details><summary>#1 ChatWindow.on_send_clicked (sample_apps/chat_qasync.py:97) " \
           "×3: longest 810 ms at +5.951 s [qt]</summary>" in out
    assert out.count("<details>") == out.count("</details>") == 5  # 4 culprits + long pending
    assert "| `Task-41` | `ChatWindow.fetch_avatar` | 2.33 s |" in out
    assert len(out.splitlines()) < 150  # short enough for a job summary


def test_markdown_healthy() -> None:
    out = MarkdownRenderer().render(load("healthy.json"))
    assert out.startswith("### ✅ looptools: OK")
    assert "Stalls" not in out


def test_markdown_hostile_strings_stay_text() -> None:
    out = MarkdownRenderer().render(load("hostile.json"))
    tags = _md_html(out)
    assert "script" not in tags.tags and "img" not in tags.tags and "a" not in tags.tags
    assert not [a for a in tags.attrs if a.startswith("on")]
    # "</details>" in the argv and a stack frame stays text inside code: 2 real blocks.
    assert tags.tags.count("details") == tags.end_tags.count("details") == 2


def test_markdown_code_span_escapes() -> None:
    from looptools.report.render.markdownrenderer import code
    assert code("a|b") == "`a\\|b`"
    assert code("x`y") == "``x`y``"
    assert code("`edge`") == "`` `edge` ``"
    assert code("two\nlines") == "`two lines`"


# -- trace ------------------------------------------------------------------------------------


def _trace(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(TraceRenderer().render(load(name)))
    return doc


@pytest.mark.parametrize("name", FIXTURES)
def test_trace_events_are_well_formed(name: str) -> None:
    doc = _trace(name)
    assert doc["displayTimeUnit"] == "ms"
    events = doc["traceEvents"]
    named_threads = {(e["pid"], e["tid"]) for e in events
                     if e["ph"] == "M" and e["name"] == "thread_name"}
    named_processes = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    spans: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for event in events:
        for key in ("ph", "ts", "pid", "tid", "name"):
            assert key in event, (key, event)
        assert isinstance(event["ts"], int | float) and event["ts"] >= 0
        assert event["ph"] in ("M", "X", "i", "C")
        assert event["pid"] in named_processes
        if event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name", "process_sort_index",
                                     "thread_sort_index")
            continue
        if event["ph"] == "X":
            assert event["dur"] >= 0
            spans[(event["pid"], event["tid"])].append((event["ts"], event["ts"] + event["dur"]))
        if event["ph"] != "C":  # counters belong to the process, not a thread
            assert (event["pid"], event["tid"]) in named_threads, event
    # Complete events on one track follow each other or nest (a stall's stack under it),
    # never half-overlap: a viewer would draw that as a stack that is not one.
    for track, intervals in spans.items():
        open_ends: list[float] = []
        for start, end in sorted(intervals, key=lambda span: (span[0], -span[1])):
            while open_ends and open_ends[-1] <= start + 0.001:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1] + 0.001, \
                f"half-overlapping events on track {track}"
            open_ends.append(end)


def test_trace_content() -> None:
    report = load("qasync_chat.json")
    events = _trace("qasync_chat.json")["traceEvents"]
    thread_names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {"stalls", "Qt busy (QEventDispatcherGlib)", "task Task-3", "task Task-41",
            "task typing-indicator"} <= thread_names
    stalls = [e for e in events if e.get("cat") == "stall"]
    assert len(stalls) == len(report["stalls"])
    first = min(stalls, key=lambda e: e["ts"])
    assert first["ph"] == "X" and first["ts"] == 1_503_000 and first["dur"] == 412_700
    assert first["args"]["culprit"] == "sample_apps/chat_qasync.py:97"
    assert first["args"]["stack"][-1] == "<built-in> in sleep"
    busy = [e for e in events if e.get("cat") == "qt"]
    assert len(busy) == len(report["dispatcher"]["busy_windows"])
    leaked = [e for e in events if e.get("cat") == "task" and e["args"]["pending_at_exit"]]
    assert len(leaked) == 3
    end_us = report["meta"]["duration_s"] * 1e6
    for event in leaked:
        assert event["ts"] + event["dur"] == pytest.approx(end_us)
    task3 = next(e for e in leaked if e["args"]["coro"] == "Connection.poll")
    assert task3["args"]["long_pending"] and task3["dur"] == pytest.approx(12.71e6)
    callbacks = [e for e in events if e.get("cat") == "slow_callback"]
    assert callbacks[0]["args"]["name"] == "ChatWindow.load_history"
    assert any(e["ph"] == "C" and e["name"] == "pending tasks" for e in events)


def test_trace_without_dispatcher_or_tasks() -> None:
    events = _trace("minimal.json")["traceEvents"]
    assert not [e for e in events if e.get("cat") in ("qt", "task", "stall")]


# -- html -------------------------------------------------------------------------------------


def test_html_escapes_hostile_strings() -> None:
    out = HtmlRenderer().render(load("hostile.json"))
    assert HOSTILE not in out
    assert out.count("<script") == 1  # ours
    assert "<img" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in out
    tags = _Tags()
    tags.feed(out)
    assert "img" not in tags.tags and tags.tags.count("script") == 1
    assert not [a for a in tags.attrs if a.startswith("on")]


def test_html_is_self_contained() -> None:
    out = HtmlRenderer().render(load("qasync_chat.json"))
    without_ns = out.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in without_ns and "https://" not in without_ns
    assert not re.search(r"\bsrc=|@import|url\(|<link", out)
    # The CSP lets exactly our inline script run.
    script = re.search(r"<script>(.*?)</script>", out, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src &#x27;sha256-{digest}&#x27;" in out
    assert "default-src &#x27;none&#x27;" in out


def test_html_charts_and_sections() -> None:
    report = load("qasync_chat.json")
    out = HtmlRenderer().render(report)
    assert out.count('<rect class="stall"') == len(report["stalls"])
    # One <details> per culprit with stalls, and an anchor for each stall inside it.
    assert out.count('<details class="stall"') == 4
    assert out.count('<rect class="qt"') == len(report["dispatcher"]["busy_windows"])
    assert out.count('<rect class="bar') == len(report["lag"]["histogram"])
    assert out.count('<rect class="bar over"') == 3  # buckets above the 100 ms threshold
    for index in range(len(report["stalls"])):
        assert f'<a href="#stall-{index}">' in out and f'id="stall-{index}"' in out
    longest = max(range(len(report["stalls"])), key=lambda i: report["stalls"][i]["duration_ms"])
    assert 'id="culprit-1" open><summary><span class="dur">810 ms</span>' in out
    assert f'<span id="stall-{longest}">810 ms at +5.951 s</span>' in out
    for heading in ("Top culprits", "Timeline", "Loop lag", "Stalls", "Slow callbacks", "Tasks",
                    "Blocking calls", "Detector errors"):
        assert f"<h2>{heading}</h2>" in out
    assert '<li class="culprit">' in out


@settings(max_examples=100, deadline=None)
@given(buckets=st.dictionaries(st.integers(0, 399), st.integers(1, 10**12), min_size=1,
                               max_size=60))
def test_html_lag_histogram_keeps_every_bucket_between_the_ends(buckets: dict[int, int]) -> None:
    """A histogram as the monitor writes it (5 % buckets, the empty ones left out) is
    drawn with one slot per bucket from the smallest to the largest, in order."""
    report = load("qasync_chat.json")
    report["lag"]["histogram"] = [[round(0.05 * 1.05**i, 4), float(n)]
                                  for i, n in sorted(buckets.items())]
    out = HtmlRenderer().render(report)
    bars = re.findall(r'<rect class="bar[^"]*" x="([^"]+)" y="[^"]+" width="([^"]+)" '
                      r'height="([^"]+)" data-upper="[^"]+" data-count="([^"]+)"', out)
    assert len(bars) == max(buckets) - min(buckets) + 1
    assert [float(c) for *_, c in bars if float(c) > 0] == \
        [float(n) for _, n in sorted(buckets.items())]
    lefts = [float(x) for x, *_ in bars]
    assert lefts == sorted(lefts) and lefts[0] >= 0 and lefts[-1] < HtmlRenderer.width


@settings(max_examples=100, deadline=None)
@given(histogram=st.lists(st.tuples(st.floats(-1.0, 1e15, allow_nan=False),
                                    st.floats(-1.0, 1e15, allow_nan=False)), max_size=40))
def test_html_lag_histogram_draws_any_histogram(histogram: list[tuple[float, float]]) -> None:
    report = load("qasync_chat.json")
    report["lag"]["histogram"] = [list(pair) for pair in histogram]
    out = HtmlRenderer().render(report)
    chart = re.search(r'<svg class="chart" id="lag-histogram".*?</svg>', out, re.S)
    usable = {u for u, c in histogram if u >= 1e-6 and c >= 0}
    assert (chart is not None) == bool(usable)
    if chart:
        for name, value in re.findall(r' (x|y|x1|x2|y1|y2|width|height)="([^"]+)"',
                                      chart.group(0)):
            assert math.isfinite(float(value)) and -1 <= float(value) <= 1300, (name, value)


def test_html_without_lag_or_dispatcher() -> None:
    out = HtmlRenderer().render(load("minimal.json"))
    assert "Lag was not measured." in out and "No stalls over 100 ms." in out
    assert "lag-histogram" not in out and 'class="qt"' not in out


# -- json -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_json_round_trips(name: str) -> None:
    out = JsonRenderer().render(load(name))
    assert json.loads(out) == load(name)
    assert out.startswith('{\n  "schema_version": 1,')


# -- wording ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ms", "text"), [
    (0.4249, "0.42 ms"), (9.999, "10.0 ms"), (12.34, "12.3 ms"), (99.97, "100 ms"),
    (812.3, "812 ms"), (999.7, "1.00 s"), (1810.0, "1.81 s"), (None, "-"),
])
def test_fmt_ms(ms: float | None, text: str) -> None:
    assert fmt.fmt_ms(ms) == text


def test_verdict_levels() -> None:
    assert fmt.verdict(load("healthy.json")).level == "ok"
    assert fmt.verdict(load("qasync_chat.json")).level == "bad"
    warn = load("healthy.json")
    warn["blocking_calls"] = [{"call": "time.sleep", "count": 2, "sites": []}]
    verdict = fmt.verdict(warn)
    assert verdict.level == "warn" and verdict.text == "2 blocking calls on the loop thread"


# -- off the main loop: hand-offs, worker-thread loops, thread affinity ------------------------


def test_off_loop_sections_are_absent_from_the_recorded_reports() -> None:
    """None of the recorded reports has the three sections: no view shows an empty one."""
    for name in FIXTURES:
        report = load(name)
        for renderer in (TextRenderer(), MarkdownRenderer()):
            out = renderer.render(report)
            assert "Hand-offs" not in out and "worker threads" not in out
            assert "Thread-affinity" not in out and "also:" not in out.lower()
        html = HtmlRenderer().render(report)
        for sid in ("handoffs", "worker-loops", "affinity", "verdict-also"):
            assert f'id="{sid}"' not in html
    report = load("healthy.json")
    report.update(handoffs=None, affinity={"violations": [], "dropped": 0})
    for renderer in (TextRenderer(), MarkdownRenderer(), HtmlRenderer()):
        assert "Hand-offs" not in renderer.render(report)


def test_text_shows_hand_offs_worker_loops_and_affinity() -> None:
    out = TextRenderer().render(with_off_loop_sections(load("healthy.json")))
    lines = out.splitlines()
    # The main loop's verdict stands; the line under it says what it leaves out.
    verdict = lines.index("OK: no stalls over 100 ms and nothing leaked")
    assert lines[verdict + 1] == "also: 1 stall in worker-thread loops (longest 250 ms); " \
        "thread-affinity violations at 1 site (3 calls)"
    handoffs = out[out.index("Hand-offs from other threads: 2 posting sites, 52 posted, "
                             "worst p99 first"):]
    rows = handoffs.splitlines()
    # Worst p99 first; the stall the longest wait sat behind, under its row.
    assert re.match(r"\s+run_coroutine_threadsafe\s+device-poller\s+app/poller.py:57\s+"
                    r"Poller.report\s+12\s+1.50 ms\s+790 ms\s+812 ms$", rows[3]), rows[3]
    assert rows[4] == "      the longest waited while ChatWindow.on_send_clicked held the loop"
    assert re.match(r"\s+call_soon_threadsafe\s+net-reader\s+app/net.py:88\s+Reader.deliver"
                    r"\s+40\s+0.12 ms\s+3.40 ms\s+4.10 ms$", rows[5]), rows[5]
    assert "held the loop" not in rows[6]
    assert out.index("Hand-offs") < out.index("Asyncio loops on worker threads") \
        < out.index("Thread-affinity violations (1 site)")
    assert "stall 250 ms at +2.500 s in Poller._poll (app/poller.py:41), thread device-poller" \
        in out
    assert re.search(r"QLabel.setText\s+3\s+app/worker.py:23\s+Worker.show_result\s+"
                     r"result-worker\s+MainThread\s+QLabel 'status'", out)


def test_the_verdict_names_worker_stalls_and_affinity_after_a_stalled_main_loop() -> None:
    report = with_off_loop_sections(load("qasync_chat.json"))
    assert fmt.verdict(report) == fmt.verdict(load("qasync_chat.json"))  # the main loop's
    out = TextRenderer().render(report).splitlines()
    at = next(n for n, line in enumerate(out) if line.startswith("STALLED: 11 stalls"))
    assert out[at + 1].startswith("also: 1 stall in worker-thread loops")
    assert out[at + 2].startswith("worst: ChatWindow.on_send_clicked")  # still the GUI's
    only_affinity = with_off_loop_sections(load("healthy.json"))
    only_affinity["worker_loops"]["stall_summary"]["count"] = 0
    assert fmt.off_loop_text(model_of(only_affinity)) == \
        "thread-affinity violations at 1 site (3 calls)"


def test_markdown_shows_hand_offs_worker_loops_and_affinity() -> None:
    out = MarkdownRenderer().render(with_off_loop_sections(load("healthy.json")))
    assert "**no stalls over 100 ms and nothing leaked**\n\n**Also:** 1 stall in " \
           "worker-thread loops (longest 250 ms); thread-affinity violations at 1 site " \
           "(3 calls)\n" in out
    assert "#### Hand-offs from other threads: 2 posting sites, 52 posted" in out
    assert "| `run_coroutine_threadsafe` | `device-poller` | `Poller.report` " \
           "`app/poller.py:57`<br>the longest waited while `ChatWindow.on_send_clicked` held " \
           "the loop | 12 | 1.50 ms | 790 ms | 812 ms |" in out
    assert out.index("run_coroutine_threadsafe") < out.index("call_soon_threadsafe")
    assert "#### Asyncio loops on worker threads: 2 loops, 1 stall (longest 250 ms)" in out
    assert "| `QLabel.setText` | 3 | `app/worker.py:23` | `Worker.show_result` |" in out
    tags = _md_html(out)
    for table in tags.tables:
        assert len(set(table)) == 1, table


def _section(html: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert match, sid
    return match.group(1)


def test_html_shows_hand_offs_worker_loops_and_affinity() -> None:
    report = with_off_loop_sections(load("qasync_chat.json"))
    out = HtmlRenderer().render(report)
    ids = re.findall(r'<section id="([^"]+)">', out)
    assert ids.index("stalls") < ids.index("handoffs") < ids.index("worker-loops") \
        < ids.index("affinity")
    for sid, title in (("handoffs", "Hand-offs"), ("worker-loops", "Worker-thread loops"),
                       ("affinity", "Thread affinity")):
        assert f'<a href="#{sid}">{title}</a>' in out
    # The headline stays the GUI loop's; the worker stalls and affinity under the verdict.
    assert re.search(r'id="verdict">.*?</p><p class="also" id="verdict-also">also: 1 stall '
                     r'in worker-thread loops \(longest 250 ms\); thread-affinity violations '
                     r"at 1 site \(3 calls\)</p>", out)
    assert '<p class="worst" id="worst"><span class="label">worst:</span> <code>ChatWindow.' \
        in out
    text = re.sub(r"<[^>]+>", "", _section(out, "handoffs"))
    assert "Hand-offs from other threads: 2 posting sites, 52 posted" in text
    assert text.index("run_coroutine_threadsafe") < text.index("call_soon_threadsafe")
    assert "Poller.report app/poller.py:57the longest waited while " \
           "ChatWindow.on_send_clicked held the loop" in text
    # The same figures as the text view (both from looptools.report.render._format).
    workers = _section(out, "worker-loops")
    plain = re.sub(r"<[^>]+>", "", workers)
    section = report["worker_loops"]
    assert fmt.worker_loops_title(model_of(report).worker_loops) in plain
    assert fmt.worker_stall_text(section["stalls"][0]) in plain
    assert '<li class="culprit"><code>Poller.<wbr>_poll</code>' in workers
    assert workers.count('<details class="stall"') == 1
    affinity = html.unescape(re.sub(r"<[^>]+>", "", _section(out, "affinity")))
    for cell in fmt.affinity_cells(model_of(report).affinity)[0]:
        assert cell in affinity
    # The longest worker stall is open without a script, like the main loop's worst culprit.
    assert 'id="worker-stall-0" open' in workers


def test_html_off_loop_sections_escape_hostile_strings() -> None:
    out = HtmlRenderer().render(with_off_loop_sections(load("healthy.json"), HOSTILE))
    assert HOSTILE not in out
    tags = _Tags()
    tags.feed(out)
    assert tags.tags.count("script") == 1
    for sid in ("handoffs", "worker-loops", "affinity"):
        section = re.sub(r"<wbr>", "", _section(out, sid))
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
        assert HOSTILE in html.unescape(re.sub(r"<[^>]+>", "", section))
    md = _md_html(MarkdownRenderer().render(with_off_loop_sections(load("healthy.json"),
                                                                   HOSTILE)))
    assert "script" not in md.tags


def _timeline_svg(out: str) -> str:
    start = out.index('<svg class="chart" id="timeline-chart"')
    return out[start:out.index("</svg>", start)]


def test_html_timeline_has_a_row_per_stalled_worker_thread() -> None:
    """Worker-loop stalls on the timeline: one row per thread (name and ident), most
    blocked first, each stall at its time linking to its stack when that is listed."""
    report = with_off_loop_sections(load("qasync_chat.json"))
    first = report["worker_loops"]["stalls"][0]  # device-poller, 250 ms at 2.5 s

    def stall(thread: str, ident: int, at: float, ms: float) -> dict[str, Any]:
        return {**first, "thread": thread, "thread_ident": ident, "started_at_s": at,
                "duration_ms": ms, "callback": f"job at {at}"}

    # Two pool threads share a name (told apart by ident); a stall past the run's end.
    extra = [stall("pool", 7, 1.0, 400.0), stall("pool", 8, 3.0, 120.0),
             stall("pool", 7, 4.0, 300.0),
             stall("late-thread-with-a-very-long-name", 9, 60.0, 100.0)]
    report["worker_loops"]["stalls"] = sorted(
        [first, *extra], key=lambda s: -float(s["duration_ms"]))
    out = HtmlRenderer().render(report)
    svg = _timeline_svg(out)
    rows = re.findall(r'<g class="row-worker"><title>([^<]*)</title>(.*?)</g>', svg)
    assert [html.unescape(title) for title, _ in rows] == [
        "thread pool (7): 2 stalls of its own asyncio loop, 700 ms",
        "thread device-poller: 1 stall of its own asyncio loop, 250 ms",
        "thread pool (8): 1 stall of its own asyncio loop, 120 ms",
        "thread late-thread-with-a-very-long-name: 1 stall of its own asyncio loop, 100 ms"]
    kept = report["worker_loops"]["stalls"]
    links = [re.findall(r'<a href="#worker-stall-(\d+)">', body) for _, body in rows]
    assert [[kept[int(n)]["thread_ident"] for n in row] for row in links] == \
        [[7, 7], [140001], [8], [9]]
    # Each anchor exists below, in the Worker-thread loops section.
    for n in [n for row in links for n in row]:
        assert f'id="worker-stall-{n}"' in _section(out, "worker-loops")
    # Labels fit the label column; the late stall widens the axis to its end.
    labels = re.findall(r'<text x="8" y="[\d.]+">([^<]*)</text>', svg)
    assert labels[-4:] == ["pool (7)", "device-poller", "pool (8)", "late-thread-with-a-…"]
    xs = [float(x) for x in re.findall(r'<rect class="worker" x="([\d.]+)"', svg)]
    widths = [float(w) for w in re.findall(r'<rect class="worker" x="[\d.]+" y="\d+" '
                                          r'width="([\d.]+)"', svg)]
    # (a rect is at least 2 px wide, as the main loop's stalls are)
    assert max(x + w for x, w in zip(xs, widths, strict=True)) <= HtmlRenderer.width - 20 + 2
    assert max(xs) > HtmlRenderer.width - 20 - 5
    assert "a worker thread's own asyncio loop stalled" in out

    # More threads than rows: the rest are counted under the chart, none is lost.
    many = [stall(f"job-{i}", 100 + i, float(i), 10.0 + i) for i in range(9)]
    report["worker_loops"]["stalls"] = many
    svg_many = HtmlRenderer().render(report)
    assert _timeline_svg(svg_many).count('<g class="row-worker">') == HtmlRenderer.max_worker_rows
    shown = HtmlRenderer.max_worker_rows
    assert f"{len(many) - shown} more worker-loop stalls on other threads" in svg_many
    # Stalls past the ten whose stacks are listed are drawn without a link.
    report["worker_loops"]["stalls"] = [stall("pool", 7, i * 0.1, 60.0 - i) for i in range(12)]
    one = _timeline_svg(HtmlRenderer().render(report))
    assert one.count('<rect class="worker"') == 12
    assert one.count('<a href="#worker-stall-') == HtmlRenderer.max_culprits
    # No worker stalls, no rows (and no legend entry).
    plain = HtmlRenderer().render(load("qasync_chat.json"))
    assert 'class="row-worker"' not in plain and "own asyncio loop stalled" not in plain


def _y_labels(histogram: list[list[float]]) -> list[str]:
    report = load("qasync_chat.json")
    report["lag"]["histogram"] = histogram
    axis = re.search(r'<g class="y-axis">(.*?)</g>', HtmlRenderer().render(report), re.S)
    assert axis
    return re.findall(r'text-anchor="end">([^<]+)</text>', axis.group(1))


@pytest.mark.parametrize(("histogram", "labels"), [
    ([[0.05, 1], [0.0525, 3]], ["1", "2", "3"]),
    ([[0.05, 4]], ["1", "2", "4"]),  # a single count over 1: still two labels at least
    ([[0.05, 1], [0.0525, 1]], ["1"]),  # every bar as high: one label says it
    ([[0.05, 2], [0.0525, 30], [0.055125, 700]], ["1", "10", "100"]),
])
def test_html_lag_histogram_y_axis_has_two_labels_when_counts_differ(
        histogram: list[list[float]], labels: list[str]) -> None:
    assert sorted(_y_labels(histogram), key=float) == labels
