"""One report model: every view of a report says the same figures (issue 12).

Each report — the recorded ones in tests/data, real runs of the sample apps on every loop kind
(tests/sample_runs.py), a run whose tasks come in a burst the task audits never see, and real
``looptools profile --sampler py-spy`` / ``--sampler yappi`` runs — is rendered by every view:
text, Markdown, HTML, the trace, the speedscope file, the exit summary
(``inapp.writer.summary_lines``), ``looptools check`` and ``looptools diff`` (through the CLI)
and the dashboard's final screen.  The figures are read back *out of each view's output* and
compared with the model's (``looptools.report.model``): the stall count, the worst culprit's
function and its blocked total, the lag p99, the task peak and the blocking-call count.
Before the model, the HTML timeline said "peak 4" where its Tasks section said "peak 6" on
the same run, and text said "every 10 ms" of an asyncio loop probed every 100 ms.
"""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import ROOT, env, run_app
from markdown_it import MarkdownIt
from rich.console import Console
from sample_runs import sample_report

from looptools._units import fmt_ms, fmt_pct
from looptools.cli.check import check, diff
from looptools.inapp.writer import summary_lines
from looptools.live.dashboard import Dashboard, DashboardState
from looptools.report.load import load_report, validate_report
from looptools.report.model import (
    ASYNCIO_PROBE_MS,
    PROBED_KINDS,
    ReportModel,
    build_model,
    model_of,
)
from looptools.report.render import (
    HtmlRenderer,
    MarkdownRenderer,
    SpeedscopeRenderer,
    TextRenderer,
    TraceRenderer,
)

DATA = Path(__file__).parent / "data"
RECORDED = sorted([*DATA.glob("reports/*.json"), *DATA.glob("render/*.json")])
LOOP_KINDS = ["asyncio", "qasync", "qtasyncio", "qt", "uvloop"]

# A burst of short tasks between two task audits (once a second): the detector counts the
# peak at each creation, the series of pending tasks over time never sees it.
BURST_APP = """
import asyncio

async def quick():
    await asyncio.sleep(0.02)

async def main():
    await asyncio.sleep(0.3)
    keep = [asyncio.ensure_future(asyncio.sleep(1.2)) for _ in range(2)]
    await asyncio.gather(*(quick() for _ in range(12)))
    await asyncio.sleep(0.2)
    await asyncio.gather(*keep)

asyncio.run(main())
"""


# -- the reports --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def burst_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("burst")
    (folder / "burst.py").write_text(BURST_APP)
    run = run_app([str(folder / "burst.py")], folder)
    assert run.returncode == 0 and run.report is not None, run.stderr
    return run.report


def _profile(folder: Path, sampler: str, app: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "looptools", "profile", "--no-dashboard", "--sampler", sampler,
         "--report", "r.json", *app, "--repeat", "2", "--every", "0.4", "--stall-ms", "150",
         "--duration", "1.5"],
        cwd=folder, env=env(QT_API="pyside6"), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_report(folder / "r.json")


@pytest.fixture(scope="module")
def py_spy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from looptools.profilers import find_py_spy

    if find_py_spy() is None:
        pytest.skip("py-spy is not installed")
    return _profile(tmp_path_factory.mktemp("py-spy"), "py-spy",
                    [str(ROOT / "sample_apps" / "pipeline_asyncio.py"),
                     "--problem", "blocking-coro,sync-io"])


@pytest.fixture(scope="module")
def yappi_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("yappi")
    return _profile(tmp_path_factory.mktemp("yappi"), "yappi",
                    [str(ROOT / "sample_apps" / "chat_qasync.py"),
                     "--problem", "blocking-slot,sync-io"])


SOURCES = ([f"recorded:{p.parent.name}/{p.name}" for p in RECORDED]
           + [f"run:{kind}" for kind in LOOP_KINDS] + ["run:task-burst", "run:py-spy", "run:yappi"])


@pytest.fixture(params=SOURCES)
def report(request: pytest.FixtureRequest) -> dict[str, Any]:
    source: str = request.param
    if source.startswith("recorded:"):
        return load_report(DATA / source.removeprefix("recorded:"))
    name = source.removeprefix("run:")
    fixtures = {"task-burst": "burst_report", "py-spy": "py_spy_report",
                "yappi": "yappi_report"}
    if name in fixtures:
        loaded: dict[str, Any] = request.getfixturevalue(fixtures[name])
    else:
        loaded = sample_report(name)
    validate_report(loaded, source)
    return loaded


# -- reading each view back ---------------------------------------------------------------------

#: The figures a view shows, as it shows them: stalls and task peak as counts, the others as
#: the text the view printed ("1.63 s") or numbers (check, diff).
Figures = dict[str, Any]

_WORST = re.compile(r"worst:\s*(?P<title>.+?), (?P<count>\d+) (?P<unit>stalls?|slow callbacks?|"
                    r"blocking calls?), (?P<blocked>.+?)(?: blocked)?\s*$")


def _worst(line: str | None) -> tuple[str, int, str] | None:
    """``(title, count, blocked)`` of a ``worst: ...`` line."""
    if line is None:
        return None
    match = _WORST.search(line)
    assert match, line
    return match["title"], int(match["count"]), match["blocked"]


def _int(pattern: str, text: str, default: int | None = None) -> int | None:
    match = re.search(pattern, text, re.M)
    return int(match[1]) if match else default


def _text(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.M)
    return match[1] if match else None


def text_view(report: dict[str, Any]) -> Figures:
    out = TextRenderer().render(report)
    return {
        "stalls": _int(r"^STALLED: (\d+) stalls? over", out, 0),
        "stalls heading": _int(r"^Stalls: (\d+) recorded", out, 0),
        "worst": _worst(_text(r"^(worst: .*)$", out)),
        "lag p99": _text(r"^  p50 .*?p99 (\S+ m?s)", out),
        "task peak": _int(r"^  peak (\d+) pending", out),
        "blocking": _int(r"^Blocking calls on the loop thread \((\d+)", out, 0),
        "sampler top": _text(r"^  Top frames by self time.*\n.*\n    (\S+)", out),
    }


def markdown_view(report: dict[str, Any]) -> Figures:
    out = MarkdownRenderer().render(report)
    worst = _text(r"^(\*\*worst:\*\* .*)$", out)
    health = re.search(r"^\| (lag p50.*) \|\n\|.*\|\n\| (.*) \|$", out, re.M)
    p99 = None
    if health:
        cells = dict(zip(health[1].split(" | "), health[2].split(" | "), strict=True))
        p99 = cells.get("lag p99")
    return {
        "stalls": _int(r"^\*\*(\d+) stalls? over", out, 0),
        "stalls heading": _int(r"^#### Stalls \((\d+)", out, 0),
        "worst": _worst(worst.replace("**", "").replace("`", "") if worst else None),
        "lag p99": p99,
        "task peak": _int(r"^peak (\d+) pending", out),
        "blocking": _int(r"^#### Blocking calls on the loop thread \((\d+)", out, 0),
        "sampler top": _text(r"<summary>Top frames by self time.*\n\n.*\n.*\n\| `([^`]+)`", out),
    }


def _plain(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    return match[1] if match else ""


def html_view(report: dict[str, Any]) -> Figures:
    page = HtmlRenderer().render(report)
    verdict = _plain(_text(r'(<p class="verdict.*?</p>)', page) or "")
    worst = _text(r'(<p class="worst" id="worst">.*?</p>)', page)
    lag = _section(page, "lag")
    heads = [_plain(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", lag)]
    cells = [_plain(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", lag)][: len(heads)]
    tasks = _plain(_section(page, "tasks"))
    timeline = _plain(_section(page, "timeline"))
    sampler = _section(page, "sampler")
    top = re.search(r"Top frames by self time.*?<tbody><tr><td><code>(.*?)</code>", sampler, re.S)
    return {
        "stalls": _int(r"(\d+) stalls? over", verdict, 0) if "STALLED" in verdict else 0,
        "stalls heading": _int(r"(\d+) stalls?, longest", _plain(_section(page, "stalls")), 0),
        "worst": _worst(_plain(worst)) if worst else None,
        "lag p99": dict(zip(heads, cells, strict=True)).get("p99") if heads else None,
        "task peak": _int(r"peak (\d+) pending", tasks),
        "timeline task peak": _int(r"pending tasks \(peak (\d+)\)", timeline),
        "blocking": _int(r"Blocking calls on the loop thread \((\d+)",
                          _plain(_section(page, "blocking")), 0),
        "sampler top": _plain(top[1]) if top else None,
    }


def summary_view(report: dict[str, Any]) -> Figures:
    """The exit summary: it names the culprits with stalls, not slow callbacks alone."""
    lines = summary_lines(report)
    text = "\n".join(lines)
    first = next((line for line in lines if line.startswith(("  stall ", "  stalls x"))), None)
    culprit = None
    if first is not None:
        many = re.search(r"stalls x(\d+), total (.+?), worst .* in (.+?)(?: \(| \[)", first)
        one = re.search(r"stall +(\S+ m?s) at .* in (.+?)(?: \(| \[)", first)
        culprit = (many[3], int(many[1]), many[2]) if many else \
            (one[2], 1, one[1]) if one else None
        assert culprit, first
    blocking = [int(n) for n in re.findall(r"^  blocking call \S+ x(\d+)", text, re.M)]
    return {
        "stalls": _int(r"^looptools: .*?: (\d+) stalls? \(", text, 0),
        "longest": _text(r"^looptools: .*?\(longest (.+?), total", text),
        "first stall culprit": culprit,
        "lag p99": _text(r"lag p99 (\S+ m?s)", text),
        "Qt busy": _text(r"Qt busy (\S+%)", text),
        "task peak": _int(r"tasks peak (\d+)", text),
        "blocking": sum(blocking) if len(report["blocking_calls"]) <= 5 else None,
    }


def dashboard_view(report: dict[str, Any]) -> Figures:
    state = DashboardState()
    state.finish(report, "ENDED normally")
    console = Console(file=io.StringIO(), width=120, height=80, color_system=None,
                      legacy_windows=False)
    console.print(Dashboard(state, height=80))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    blocking = None
    panel = re.search(r"╭─ Blocking calls.*?\n(.*?)╰", out, re.S)
    if panel and len(report["blocking_calls"]) <= 20:
        rows = [line.strip("│ ") for line in panel[1].splitlines()[1:]]
        blocking = sum(int(m[1]) for row in rows if (m := re.match(r"\S+\s+(\d+)\s", row)))
    return {
        "stalls": _int(r"stalls (\d+) ", out),
        "longest": _text(r"stalls \d+ \(max (.+?)\)", out),
        "lag p99": _text(r"lag p50 \S+ m?s\s+p99 (\S+ m?s)", out),
        "task peak": _int(r"\(peak (\d+)\)", out),
        "Qt busy": _text(r"busy\s+(\d+%)", out),
        "blocking": blocking,
    }


def trace_view(report: dict[str, Any]) -> Figures:
    events = json.loads(TraceRenderer().render(report))["traceEvents"]
    named = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    (stall_tid,) = [tid for tid, name in named.items() if name == "stalls"]
    monitored = next(e for e in events if e.get("name") == "monitored")
    lag = [e["args"]["ms"] for e in events if e["ph"] == "C" and e["name"] == "loop lag"]
    pending = [e["args"]["pending"] for e in events
               if e["ph"] == "C" and e["name"] == "pending tasks"]
    return {
        "stall slices": sum(1 for e in events if e.get("cat") == "stall" and e["ph"] == "X"
                            and e["tid"] == stall_tid),
        "verdict": monitored["args"]["verdict"],
        "lag counter max": max(lag, default=None),
        "pending counter max": max(pending, default=None),
        "blocking instants": sum(1 for e in events if e.get("cat") == "blocking"),
    }


def speedscope_view(report: dict[str, Any]) -> Figures:
    doc = json.loads(SpeedscopeRenderer().render(report))
    main = doc["profiles"][doc.get("activeProfileIndex") or 0]
    return {"stacks": len(main["weights"]), "blocked ms": sum(main["weights"]),
            "frames": {frame["name"] for frame in doc["shared"]["frames"]}}


def check_view(path: Path) -> Figures:
    """``looptools check --format json`` with every limit checked, all stalls over budget."""
    result = CliRunner().invoke(check, [
        str(path), "--format", "json", "--max-stall-ms", "0", "--max-total-stall-ms", "1e12",
        "--max-lag-p99-ms", "1e12", "--max-pending-tasks", "1000000000000",
        "--max-blocking-calls", "1000000000000"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.output)
    actual = {c["key"]: c["actual"] for c in data["checks"]}
    offenders = [o for v in data["violations"] if v["key"] == "max_stall_ms"
                 for o in v["offenders"]]
    return {"longest": actual["max_stall_ms"], "total": actual["max_total_stall_ms"],
            "lag p99": actual["max_lag_p99_ms"], "task peak": actual["max_pending_tasks"],
            "blocking": actual["max_blocking_calls"],
            "stall culprits": sorted((o["function"] or "", o["line"] or 0, o["count"])
                                     for o in offenders)}


# -- the agreement test ---------------------------------------------------------------------------


def _blocked(total: float | None) -> str:
    return "not timed" if total is None else fmt_ms(total)


def test_every_view_says_the_same_figures(report: dict[str, Any], tmp_path: Path) -> None:
    model = model_of(report)
    lag = fmt_ms(model.lag.p99_ms) if model.lag is not None else None
    peak = model.tasks.peak if model.tasks is not None else None
    views = {"text": text_view(report), "markdown": markdown_view(report),
             "html": html_view(report), "exit summary": summary_view(report),
             "dashboard": dashboard_view(report)}
    shown = json.dumps(views, indent=1, default=str)

    # The stall count: the verdict of text, Markdown and HTML, their Stalls headings, the
    # exit summary's first line, the dashboard.
    for name in ("text", "markdown", "html", "exit summary", "dashboard"):
        assert views[name]["stalls"] == model.stalls.count, (name, shown)
    for name in ("text", "markdown", "html"):
        if model.stall_culprits:
            assert views[name]["stalls heading"] == model.stalls.count, (name, shown)
    # The worst culprit and what it cost (text, Markdown, HTML lead with it).
    worst = model.worst
    expected = None if worst is None else (worst.count, _blocked(worst.total_ms))
    for name in ("text", "markdown", "html"):
        got = views[name]["worst"]
        assert (got is None) == (worst is None), (name, shown)
        if got is not None and worst is not None:
            assert got[0].startswith(worst.function), (name, shown)
            assert got[1:] == expected, (name, shown)
    # The exit summary names the culprits with stalls, worst first: the same first one.
    ranked = model.stall_culprits
    got = views["exit summary"]["first stall culprit"]
    assert (got is None) == (not ranked), shown
    if ranked:
        group = ranked[0][1]
        name = group.function if group.frame else "?"
        total = fmt_ms(group.total_ms) if group.count > 1 else fmt_ms(group.worst_ms)
        assert got == (name, group.count, total), shown
        assert views["exit summary"]["longest"] == fmt_ms(model.stalls.max_ms), shown
        assert views["dashboard"]["longest"] == fmt_ms(model.stalls.max_ms), shown
    # Lag p99, the task peak (the timeline's label too), the blocking calls, Qt busy.
    for name in ("text", "markdown", "html", "exit summary", "dashboard"):
        assert views[name]["lag p99"] == lag, (name, shown)
        assert views[name]["task peak"] == peak, (name, shown)
        if views[name]["blocking"] is not None:
            assert views[name]["blocking"] == model.blocking.count, (name, shown)
    if model.tasks is not None and model.tasks.over_time:
        assert views["html"]["timeline task peak"] == peak, shown
    if model.dispatcher is not None:
        assert views["exit summary"]["Qt busy"] == fmt_pct(model.dispatcher.busy_fraction)
        assert views["dashboard"]["Qt busy"] == f"{100 * model.dispatcher.busy_fraction:.0f}%"
    # The samplers' findings appear in text, Markdown and HTML, the same top frame.
    sampler = model.sampler
    for name in ("text", "markdown", "html"):
        top = sampler.top_self[0].function if sampler and sampler.top_self else None
        assert views[name]["sampler top"] == top, (name, shown)

    # The trace and the speedscope file: the same stalls, verdict and series.
    trace = trace_view(report)
    assert trace["stall slices"] == model.stalls.kept
    assert trace["verdict"] == model.verdict.text
    assert trace["lag counter max"] == (model.lag.over_time_peak
                                        if model.lag and model.lag.over_time else None)
    if trace["pending counter max"] is not None:
        assert peak is not None and trace["pending counter max"] <= peak
    kept_runs = sum(len(site.get("runs") or []) for call in model.blocking.calls
                    for site in call.sites)
    assert trace["blocking instants"] == kept_runs <= model.blocking.count
    speedscope = speedscope_view(report)
    assert speedscope["stacks"] <= model.stalls.kept
    assert speedscope["blocked ms"] <= model.stalls.total_ms + 0.01 * model.stalls.kept

    # looptools check, through its command line: the same numbers, the same culprits.
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    checked = check_view(path)
    assert checked["longest"] == pytest.approx(model.stalls.max_ms)
    assert checked["total"] == pytest.approx(model.stalls.total_ms)
    assert checked["lag p99"] == (pytest.approx(model.lag.p99_ms) if model.lag else None)
    assert checked["task peak"] == peak
    assert checked["blocking"] == model.blocking.count
    assert checked["stall culprits"] == sorted(
        (group.function if group.frame else "", group.line or 0, group.count)
        for _, group in ranked), shown


def test_diff_reads_the_figures_every_view_shows(tmp_path: Path) -> None:
    """``looptools diff`` of two runs: its before and after figures are the two models'."""
    before, after = sample_report("qasync"), sample_report("qtasyncio")
    paths = []
    for name, data in (("before", before), ("after", after)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(data))
    result = CliRunner().invoke(diff, [*map(str, paths), "--format", "json", "--tolerance", "1",
                                       "--slack-ms", "0", "--slack-count", "0",
                                       "--slack-busy", "0"], catch_exceptions=False)
    changes = {c["what"]: c for c in json.loads(result.output)["changes"]}
    models = model_of(before), model_of(after)

    def figures(model: ReportModel) -> dict[str, float | None]:
        return {"longest stall": model.stalls.max_ms, "total stall time": model.stalls.total_ms,
                "loop lag p99": model.lag.p99_ms if model.lag else None,
                "busy fraction": model.dispatcher.busy_fraction if model.dispatcher else None,
                "peak pending tasks": model.tasks.peak if model.tasks else None}

    compared = 0
    for what, change in changes.items():
        if what in figures(models[0]):
            compared += 1
            assert change["before"] == pytest.approx(figures(models[0])[what]), change
            assert change["after"] == pytest.approx(figures(models[1])[what]), change
    assert compared >= 2, changes


def test_the_cli_prints_the_model_s_figures(tmp_path: Path) -> None:
    """``looptools report`` and ``looptools check`` as real processes, on a real run."""
    report = sample_report("asyncio")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(report))
    model = model_of(report)
    text = subprocess.run([sys.executable, "-m", "looptools", "report", str(path)],
                          capture_output=True, text=True, env=env(), timeout=60)
    assert text.returncode == 0, text.stderr
    assert text.stdout == TextRenderer().render(load_report(path))
    assert f"p99 {fmt_ms(model.lag.p99_ms if model.lag else None)}" in text.stdout
    checked = subprocess.run([sys.executable, "-m", "looptools", "check", str(path),
                              "--max-stall-ms", "1e12", "--max-pending-tasks", "1000000"],
                             capture_output=True, text=True, env=env(), timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert model.tasks is not None
    assert f"ok: max_pending_tasks {model.tasks.peak} <=" in checked.stdout


# -- the figures themselves ----------------------------------------------------------------------


def test_the_task_peak_is_the_detector_s_not_the_sampled_series(
        burst_report: dict[str, Any]) -> None:
    """The burst run is the one the old timeline got wrong: its series never sees the peak."""
    tasks = model_of(burst_report).tasks
    assert tasks is not None
    sampled = max(n for _, n in tasks.over_time)
    assert tasks.peak == burst_report["tasks"]["peak_pending"] >= 12 > sampled
    page = HtmlRenderer().render(burst_report)
    assert f"pending tasks (peak {tasks.peak})" in page
    assert f"peak {tasks.peak} pending" in page


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_the_probe_interval_printed_is_the_one_the_loop_had(kind: str) -> None:
    """Plain asyncio is probed at most ten times a second whatever ``heartbeat_ms`` says;
    the Qt loops and uvloop every ``heartbeat_ms``.  What the views print, and what the
    run measured (samples over the run's length)."""
    report = sample_report(kind)
    lag = model_of(report).lag
    assert lag is not None and lag.probe_ms is not None
    heartbeat = float(report["lag"]["interval_ms"])
    text = TextRenderer().render(report)
    # The time the heartbeat ran: from the loop's attaching to the end; a stall holds back
    # one beat for its whole length.
    attached_s = float(report["loop"].get("attached_at_s") or 0.0)
    ran_ms = (float(report["meta"]["duration_s"]) - attached_s) * 1000
    if kind in PROBED_KINDS:
        # The report says the interval the probes had (reports before 2026-11-30
        # said heartbeat_ms, 10: the model reads them as the probes' 100 too).
        assert lag.probe_ms == ASYNCIO_PROBE_MS == heartbeat
        assert f"samples about every {ASYNCIO_PROBE_MS:g} ms)" in text
        assert ran_ms / lag.samples >= 0.8 * ASYNCIO_PROBE_MS, (ran_ms, lag.samples)
    else:
        assert lag.probe_ms == heartbeat
        assert f"samples every {heartbeat:g} ms)" in text
        free_ms = ran_ms - model_of(report).stalls.total_ms
        assert free_ms / lag.samples < ASYNCIO_PROBE_MS / 2, (free_ms, lag.samples)
        # Never more often than the interval printed (a Qt timer fires at most 1 ms
        # early): qasync's report once said 100 ms for a heartbeat of 10.
        assert free_ms / lag.samples >= 0.5 * heartbeat, (free_ms, lag.samples, heartbeat)


def test_the_probed_kinds_are_the_plugins_that_probe() -> None:
    """The model's constants are the plugins' (the readers do not import the plugins)."""
    from looptools.plugins.asyncio_loop import (
        PROBE_INTERVAL_S,
        AsyncioPlugin,
        UnknownLoopPlugin,
        UvloopPlugin,
    )
    from looptools.plugins.qasync_loop import QasyncPlugin
    from looptools.plugins.qt_only import QtOnlyPlugin
    from looptools.plugins.qtasyncio_loop import QtAsyncioPlugin

    assert ASYNCIO_PROBE_MS == PROBE_INTERVAL_S * 1000
    plugins = (AsyncioPlugin, UnknownLoopPlugin, UvloopPlugin, QasyncPlugin, QtOnlyPlugin,
               QtAsyncioPlugin)
    probing = {p.kind for p in plugins
               if p.start_heartbeat is AsyncioPlugin.start_heartbeat}  # type: ignore[comparison-overlap]
    assert probing == set(PROBED_KINDS)


def test_the_samplers_top_frames_and_the_stall_culprits_they_saw(
        py_spy_report: dict[str, Any], yappi_report: dict[str, Any]) -> None:
    for report in (py_spy_report, yappi_report):
        model = model_of(report)
        sampler = model.sampler
        assert sampler is not None and sampler.top_self and sampler.top_total
        assert [found.group for found in sampler.at_culprits] == \
            [group for _, group in model.stall_culprits if group.frame]
        # A culprit that blocked for 150 ms twice is where the sampler saw time too.
        seen = [found for found in sampler.at_culprits if found.self_ms]
        assert seen, sampler
        for found in seen:
            blocked = found.group.total_ms or 0.0
            assert 0.3 * blocked <= (found.self_ms or 0) <= 3 * blocked + 200, found
        for renderer in (TextRenderer(), MarkdownRenderer(), HtmlRenderer()):
            out = renderer.render(report)
            assert f"Sampler {sampler.sampler}" in out or \
                f"Sampler</h2><p>{sampler.sampler}" in out
            assert seen[0].group.function in out
        # As GitHub-flavoured Markdown: every table of the section rectangular.
        markdown = MarkdownRenderer().render(report)
        section = markdown[markdown.index("#### Sampler"):]
        rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(section)
        tables = re.findall(r"<table>.*?</table>", rendered, re.S)
        assert len(tables) >= 2, rendered
        for table in tables:
            widths = {len(re.findall(r"<t[dh][ >]", row))
                      for row in re.findall(r"<tr>.*?</tr>", table, re.S)}
            assert len(widths) == 1, table
    py_spy = model_of(py_spy_report).sampler
    assert py_spy is not None and py_spy.samples and py_spy.rate_hz == 100
    assert py_spy.top_self[0].ms == pytest.approx(py_spy.top_self[0].samples * 10)


def test_without_a_sampler_no_view_has_a_sampler_section() -> None:
    report = load_report(DATA / "render" / "qasync_chat.json")
    assert model_of(report).sampler is None
    for out in (TextRenderer().render(report), MarkdownRenderer().render(report),
                HtmlRenderer().render(report)):
        assert "Sampler" not in out


# -- one model per report -------------------------------------------------------------------------


def test_one_model_per_report_and_a_new_one_when_a_section_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import looptools.report.model as model_module

    built: list[int] = []

    def counting(report: Any) -> ReportModel:
        built.append(1)
        return build_model(report)

    monkeypatch.setattr(model_module, "build_model", counting)
    report = load_report(DATA / "render" / "qasync_chat.json")
    first = model_of(report)
    for renderer in (TextRenderer(), MarkdownRenderer(), HtmlRenderer()):
        renderer.render(report)
    assert model_of(report) is first and len(built) == 1
    report["tasks"] = {**report["tasks"], "peak_pending": 99}  # a section replaced
    assert model_of(report).tasks.peak == 99  # type: ignore[union-attr]
    report["stalls"].append(dict(report["stalls"][0]))  # a list grown in place
    assert model_of(report).stalls.kept == len(report["stalls"])
    assert len(built) == 3
    other = load_report(DATA / "render" / "qasync_chat.json")  # an equal dict: its own model
    assert model_of(other) is not model_of(report)


def test_one_duration_formatter_everywhere() -> None:
    """The renderers, the dashboard and the exit summary use ``looptools._units.fmt_ms``."""
    import looptools.inapp.writer as writer
    import looptools.live.dashboard as dashboard
    from looptools.report.render import _format

    assert _format.fmt_ms is fmt_ms and dashboard.fmt_ms is fmt_ms and writer.fmt_ms is fmt_ms
    package = ROOT / "looptools"
    own = re.compile(r"^def (fmt_ms|fmt_s|_fmt_ms|format_ms)\(", re.M)
    defined = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if own.search(p.read_text(encoding="utf-8")))
    # gate/ and cli/check.py are another change's; they keep theirs until it lands.
    assert [p for p in defined if not p.startswith(("gate/", "cli/check"))] == ["_units.py"]


def test_sources_cover_every_loop_kind() -> None:
    kinds = {load_report(p)["loop"]["kind"] for p in RECORDED} | set(LOOP_KINDS)
    assert {"asyncio", "qasync", "qtasyncio", "qt", "uvloop"} <= kinds


@pytest.mark.parametrize("settings", [{"disable": "stalls"}, {"detectors": "lag,tasks"}])
def test_without_the_watchdog_no_view_says_no_stalls(settings: dict[str, str],
                                                     tmp_path: Path) -> None:
    """LOOPTOOLS_DISABLE=stalls once printed "threshold 50 ms: no stalls" above a 120 ms
    slow callback (a fresh-eyes trial): nothing looked for stalls."""
    app = tmp_path / "app.py"
    app.write_text("import asyncio, time\n\n\nasync def main():\n    await asyncio.sleep(0.05)\n"
                   "    time.sleep(0.12)\n\n\nasyncio.run(main())\n")
    run = run_app([str(app)], tmp_path, **settings)
    assert run.returncode == 0 and run.report is not None, run.stderr
    first = run.stderr.splitlines()[0]
    assert first.startswith("looptools: asyncio loop") and first.endswith(
        "threshold 50 ms: stall detection off"), run.stderr
    verdict = build_model(run.report).verdict
    assert verdict.text.startswith("stall detection off"), verdict
    assert "no stalls" not in " ".join(summary_lines(run.report)) + verdict.text
    watched = run_app([str(app)], tmp_path)  # the same app with the watchdog: one stall
    assert watched.report is not None and watched.report["stall_summary"]["count"] == 1
    assert "stall detection off" not in watched.stderr + build_model(watched.report).verdict.text
