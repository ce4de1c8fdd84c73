"""Fuzzing every reader of input looptools did not write itself (issue 13).

The readers: ``looptools report``, ``check``, ``baseline`` and ``diff`` on report files
(mutated real reports: NaN, Infinity, huge numbers, wrong types, lone surrogates, deep
nesting, cut or garbled bytes); budget files, ``[tool.looptools.budget]`` in a found
``pyproject.toml``, budget flags and the pytest plugin's ``LOOPTOOLS_BUDGET_*`` values;
baseline files; and on the live stream, :class:`looptools.live.stream.LineDecoder`, what
consumes its messages (:class:`looptools.live.dashboard.DashboardState`, the dashboard's
rendering, ``looptools profile``'s report rebuilt from the stream) and a real reader
thread.

What must hold: a command fed bad input prints one line on stderr and exits with
the documented status for bad input, 2 (never a traceback, never 1, which means
"over budget" / "worse"); a usable input gives 0 or 1 and, in JSON formats, strict
JSON.  The stream reader drops a bad line or message, counts it, and carries on:
later good messages still arrive.  Everything runs in-process (click's CliRunner,
direct calls) so that it is quick.

Examples per test: ``LOOPTOOLS_FUZZ_EXAMPLES`` (default 200, a CI run of well
under a minute on two slow cores); a nightly run sets it to 10000 or more::

    LOOPTOOLS_FUZZ_EXAMPLES=10000 python -m pytest -q tests/test_fuzz_inputs.py

A failure prints the example hypothesis shrank it to; ``--hypothesis-seed=N``
repeats a run.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import socket
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from looptools._jsonsafe import json_path
from looptools.cli.check import baseline, check, diff
from looptools.cli.profile import report_from_stream
from looptools.cli.report import report
from looptools.gate.baseline import baseline_to_dict, make_baseline
from looptools.gate.evaluate import evaluate
from looptools.gate.limits import BUDGET_KEYS, Budget, BudgetError, parse_limit
from looptools.live.dashboard import Dashboard, DashboardState
from looptools.live.stream import MAX_LINE, LineDecoder, StreamServer, encode
from looptools.report.load import validate_report
from looptools.report.render import get_renderer

EXAMPLES = int(os.environ.get("LOOPTOOLS_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

DATA = Path(__file__).parent / "data"
REPORT_FILES = sorted((DATA / "reports").glob("*.json")) + sorted((DATA / "render").glob("*.json"))
HEALTHY = str(DATA / "reports" / "healthy.json")
BLOCKING = str(DATA / "reports" / "blocking_slot.json")
REPORTS = {path.name: json.loads(path.read_text("utf-8")) for path in REPORT_FILES}
RENDERERS = ("text", "md", "html", "trace", "json")

# -- building JSON text with values json.dumps cannot write ---------------------------------

_MARK = "\x00looptools-fuzz-mark\x00"


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _with_raw(document: Any, path: tuple[str | int, ...], raw: str | None) -> str:
    """``document`` as JSON text with the value at ``path`` replaced by the JSON text
    ``raw`` (anything: ``NaN``, 5,000 digits, 3,000 brackets), or deleted if ``raw``
    is None (from an object; in an array the item becomes ``null``)."""
    document = copy.deepcopy(document)
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if raw is None and isinstance(parent, dict):
        del parent[path[-1]]
        return json.dumps(document)
    parent[path[-1]] = _MARK
    return json.dumps(document).replace(json.dumps(_MARK), raw or "null", 1)


def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


# (raw JSON text, what it is): "number" must be rejected naming its place; "deep" must be
# rejected; "other" may be fine or not.
_BAD_NUMBERS = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E309",
                     "1e16", "-1e16", "1000000000000001"]),
    st.integers(min_value=16, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=10**15 + 1, max_value=10**40).map(str),
    st.integers(min_value=10**15 + 1, max_value=10**40).map(lambda n: f"-{n}"),
    st.floats(min_value=1e15, allow_infinity=False, exclude_min=True).map(repr),
).map(lambda raw: (raw, "number"))
_DEEP = st.tuples(st.integers(min_value=70, max_value=5000),
                  st.sampled_from(["array", "object"])).map(
    lambda spec: (_nested(spec[0], spec[1]), "deep"))
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**15, 10**15)
    | st.floats(-1e15, 1e15, allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)
_SURROGATE_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(),
    min_size=1, max_size=20)
_OTHER = st.one_of(
    _JSON_VALUES.map(json.dumps),
    st.sampled_from(["null", "true", "0", "-1", "1.5", '"x"', '""', "[]", "{}", "[1]",
                     '{"a": 1}', '"\\u001b[31mred\\u0000"', "1e-320", "-0.0", "1000000000000000"]),
    _SURROGATE_TEXT.map(json.dumps),  # ensure_ascii: lone surrogates as \\udXXX escapes
    st.tuples(st.integers(1, 12), st.sampled_from(["array", "object"])).map(
        lambda spec: _nested(*spec)),
).map(lambda raw: (raw, "other"))
_REPLACEMENTS = st.one_of(_BAD_NUMBERS, _DEEP, _OTHER, st.just((None, "delete")))


@st.composite
def mutated_reports(draw: st.DrawFn) -> tuple[str, tuple[str | int, ...], str]:
    """(report text, path mutated, what was put there)."""
    name = draw(st.sampled_from(sorted(REPORTS)))
    document = REPORTS[name]
    path = draw(st.sampled_from(list(_paths(document))))
    raw, kind = draw(_REPLACEMENTS)
    text = _with_raw(document, path, raw)
    if draw(st.integers(0, 9)) == 0:  # now and then the bytes too: cut, or garbled
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=4))
        kind = "other"
    return text, path, kind


# -- checking what a command did ----------------------------------------------------------------

def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in JSON output")
    return json.loads(text, parse_constant=refuse)


def _invoke(command: click.Command, *args: str) -> Result:
    return CliRunner().invoke(command, list(args), catch_exceptions=True)


def assert_clean(result: Result, *, ok_codes: tuple[int, ...] = (0,),
                 mentions: tuple[str, ...] = ()) -> None:
    """No traceback; either a documented success/verdict code, or exit 2 with one line."""
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("looptools"), lines[0]
        assert result.stdout == "", result.stdout
        for text in mentions:
            assert text in lines[0], (text, lines[0])
        return
    assert result.exit_code in ok_codes, (result.exit_code, result.output)
    assert not mentions, f"bad input accepted: {mentions}"


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="looptools-fuzz-"))
    # `check` without --budget reads the nearest pyproject.toml: not this repository's.
    (path / "empty-budget.toml").write_text("", encoding="utf-8")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# -- reports -----------------------------------------------------------------------------------

@FUZZ
@given(case=mutated_reports(), fmt=st.sampled_from(RENDERERS),
       check_fmt=st.sampled_from(["text", "json", "github"]))
def test_report_readers_survive_mutated_reports(
        folder: Path, case: tuple[str, tuple[str | int, ...], str], fmt: str,
        check_fmt: str) -> None:
    text, path, kind = case
    target = folder / "mutated.json"
    target.write_text(text, encoding="utf-8", errors="surrogatepass")
    name = str(target)
    # A bad number is named with its place; deep nesting at least with the file.
    mentions = (name, json_path(path)) if kind == "number" else \
        (name,) if kind == "deep" else ()

    rendered = _invoke(report, name, "-f", fmt)
    assert_clean(rendered, mentions=mentions)
    assert "rendering failed" not in rendered.stderr  # a built-in renderer must not fail
    if rendered.exit_code == 0 and fmt in ("json", "trace"):
        _strict_json(rendered.stdout)
    judged = _invoke(check, name, "--budget", str(folder / "empty-budget.toml"),
                     "--format", check_fmt, "--stack")
    assert_clean(judged, ok_codes=(0, 1), mentions=mentions)
    if judged.exit_code != 2 and check_fmt == "json":
        _strict_json(judged.stdout)
    made = _invoke(baseline, name, "-o", "-")
    assert_clean(made, mentions=mentions)
    if made.exit_code == 0:
        _strict_json(made.stdout)
    for before, after in ((HEALTHY, name), (name, BLOCKING)):
        compared = _invoke(diff, before, after, "--format", "json")
        assert_clean(compared, ok_codes=(0, 1), mentions=mentions)
        if compared.exit_code != 2:
            _strict_json(compared.stdout)
    # The same outcome every time: a report is usable or not, whoever reads it.
    assert len({r.exit_code == 2 for r in (rendered, judged, made)}) == 1


@FUZZ
@given(case=mutated_reports(), width=st.integers(30, 160), height=st.integers(8, 50))
def test_dashboard_shows_any_usable_report(
        folder: Path, case: tuple[str, tuple[str | int, ...], str], width: int,
        height: int) -> None:
    """The live dashboard shows the final report of a run (``finish``): any report
    ``load_report`` accepts must render."""
    from looptools.report.load import ReportError, load_report

    target = folder / "for-dashboard.json"
    target.write_text(case[0], encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_report(target)
    except ReportError as exc:
        assert "\n" not in str(exc)
        return
    state = _connected_state()
    state.finish(loaded, "ENDED: the app exited with status 0")
    _render(state, width, height)


def test_report_errors_name_file_and_field(folder: Path) -> None:
    """The kinds of input the first fuzzing found, one each, with their messages."""
    doc = REPORTS["blocking_slot.json"]
    cases = {
        ("stalls", 0, "duration_ms"): ("NaN", "stalls[0].duration_ms: NaN is out of range"),
        ("stall_summary", "max_ms"): ("Infinity", "stall_summary.max_ms: Infinity"),
        ("meta", "pid"): ("9" * 5000, "meta.pid: 999999999999... (5000 characters)"),
        ("lag", "p99_ms"): ("1e400", "lag.p99_ms: 1e400 is out of range"),
        ("meta", "argv"): (_nested(3000, "array"), "nested deeper than 64 levels"),
        ("meta", "exit"): (_nested(100, "object"), "at meta.exit.a.a.a.a.a.a: nested deeper"),
    }
    for path, (raw, words) in cases.items():
        target = folder / "one.json"
        target.write_text(_with_raw(doc, path, raw), encoding="utf-8")
        budget = str(folder / "empty-budget.toml")
        for command, args in ((report, []), (check, ["--budget", budget]),
                              (baseline, ["-o", "-"])):
            result = _invoke(command, str(target), *args)
            assert_clean(result, mentions=(str(target), words))


def test_lone_surrogates_print_escaped(folder: Path) -> None:
    doc = copy.deepcopy(REPORTS["blocking_slot.json"])
    doc["stalls"][0]["culprit"]["function"] = "on_\udcff_click"
    doc["meta"]["argv"] = ["app\ud800.py"]
    target = folder / "surrogates.json"
    target.write_text(json.dumps(doc), encoding="utf-8")  # ensure_ascii: \\udcff escapes
    for fmt in RENDERERS:
        result = _invoke(report, str(target), "-f", fmt)
        assert_clean(result)
    assert "app\\ud800.py" in _invoke(report, str(target)).stdout
    judged = _invoke(check, str(target), "--format", "github", "--budget",
                     str(folder / "empty-budget.toml"))
    assert_clean(judged, ok_codes=(1,))
    assert "on_\\udcff_click" in judged.stdout


def test_nan_stalls_do_not_pass_a_diff(folder: Path) -> None:
    """A report whose stall durations are NaN compared as "nothing got worse"."""
    doc = REPORTS["blocking_slot.json"]
    text = json.dumps(doc)
    for stall in range(len(doc["stalls"])):
        text = _with_raw(json.loads(text), ("stalls", stall, "duration_ms"), "NaN")
    target = folder / "nan.json"
    target.write_text(text, encoding="utf-8")
    result = _invoke(diff, HEALTHY, str(target))
    assert_clean(result, mentions=(str(target), "stalls[0].duration_ms"))


# -- budgets: files, pyproject, flags, environment ----------------------------------------------

_TOML_VALUES = st.one_of(
    st.sampled_from(["nan", "+nan", "-nan", "inf", "-inf", "1e400", "-1", "-0.5", "0",
                     "250", "1e15", "1e16", "1_000_000_000_000_001", "true", '"off"',
                     '"OFF"', '"x"', "[]", "{}", "2026-12-31", "0x10", "[1, 2]",
                     '{ a = 1 }', '"\\u00e9"']),
    st.integers(min_value=16, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda x: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(x), repr(x))),
    st.integers(1, 2000).map(lambda n: "[" * n + "]" * n),
    st.text(max_size=12).map(json.dumps),
)
_BUDGET_KEY_NAMES = st.sampled_from([k.name for k in BUDGET_KEYS] + ["max_stal_ms", "allow",
                                                                     "é", "1"])
_ALLOW_ENTRY = st.dictionaries(
    st.sampled_from(["function", "file", "reason", "expires", "other"]), _TOML_VALUES,
    max_size=4).map(lambda entry: "".join(f"{k} = {v}\n" for k, v in entry.items()))


@st.composite
def budget_files(draw: st.DrawFn) -> tuple[str, str]:
    """(file name, TOML text): a budget file, or a pyproject.toml with the table."""
    lines = [f"{draw(_BUDGET_KEY_NAMES)} = {draw(_TOML_VALUES)}"
             for _ in range(draw(st.integers(0, 3)))]
    allow = [draw(_ALLOW_ENTRY) for _ in range(draw(st.integers(0, 2)))]
    layout = draw(st.sampled_from(["pyproject", "top", "garbage", "not-a-table"]))
    if layout == "pyproject":
        text = "[tool.looptools.budget]\n" + "\n".join(lines) + "\n" + "".join(
            f"[[tool.looptools.budget.allow]]\n{entry}" for entry in allow)
        return "pyproject.toml", text
    if layout == "not-a-table":
        return "pyproject.toml", f"[tool.looptools]\nbudget = {draw(_TOML_VALUES)}\n"
    if layout == "garbage":
        return "budget.toml", draw(st.text(max_size=60))
    return "budget.toml", "\n".join(lines) + "\n" + "".join(f"[[allow]]\n{e}" for e in allow)


@FUZZ
@given(spec=budget_files(), found=st.booleans())
def test_check_survives_any_budget_file(folder: Path, spec: tuple[str, str],
                                        found: bool) -> None:
    name, text = spec
    where = folder / "budget-case"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir()
    target = where / name
    target.write_text(text, encoding="utf-8", errors="surrogatepass")
    if found and name == "pyproject.toml":
        # Found from the current directory, as `looptools check` does without --budget.
        with _chdir(where):
            result = _invoke(check, str(Path(BLOCKING).resolve()))
        assert_clean(result, ok_codes=(0, 1))
    else:
        result = _invoke(check, BLOCKING, "--budget", str(target))
        assert_clean(result, ok_codes=(0, 1))
        if result.exit_code == 2:
            assert str(target) in result.stderr, result.stderr


_FLAG_VALUES = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1", "-0", "0",
                     "0.5", "1e15", "1e16", "1000000000000001", "off", " OFF ", "", " ",
                     "0x10", "1_000", "١٢"]),
    st.integers(min_value=16, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.floats().map(repr),
    st.text(max_size=10),
)


@FUZZ
@given(key=st.sampled_from(BUDGET_KEYS), value=_FLAG_VALUES)
def test_check_survives_any_budget_flag(folder: Path, key: Any, value: str) -> None:
    result = _invoke(check, BLOCKING, "--budget", str(folder / "empty-budget.toml"),
                     f"{key.flag}={value}")
    assert_clean(result, ok_codes=(0, 1))


@FUZZ
@given(option=st.sampled_from(["--tolerance", "--slack-ms", "--slack-count", "--slack-busy"]),
       value=_FLAG_VALUES)
def test_diff_survives_any_tolerance_flag(option: str, value: str) -> None:
    result = _invoke(diff, HEALTHY, BLOCKING, f"{option}={value}", "--format", "json")
    assert_clean(result, ok_codes=(0, 1))
    if result.exit_code != 2:
        _strict_json(result.stdout)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e400"])
@pytest.mark.parametrize(("command", "option"), [
    ("profile", "--duration"), ("profile", "--grace"), ("profile", "--threshold-ms"),
    ("dashboard", "--refresh"), ("diff", "--tolerance"), ("diff", "--slack-ms"),
    ("diff", "--slack-busy")])
def test_non_finite_numbers_are_usage_errors(command: str, option: str, value: str) -> None:
    """``nan`` passes click's FloatRange bounds (every comparison with it is false):
    ``--duration nan`` never stopped the app, ``--tolerance nan`` passed every diff."""
    from looptools.cli import cli

    args = {"profile": ["profile", f"{option}={value}", "app.py"],
            "dashboard": ["dashboard", f"{option}={value}", "1"],
            "diff": ["diff", HEALTHY, BLOCKING, f"{option}={value}"]}[command]
    result = CliRunner().invoke(cli, args)
    assert_clean(result, mentions=(option,))


@FUZZ
@given(key=st.sampled_from(BUDGET_KEYS), value=_FLAG_VALUES)
def test_budget_values_from_the_environment(key: Any, value: str) -> None:
    """``LOOPTOOLS_BUDGET_MAX_...=value`` (pytest --looptools): the plugin reads the text
    as a budget file would hold it, then :func:`parse_limit` judges it; an accepted
    value must then work in a check."""
    from looptools.pytest_plugin import _BadValue, _from_text, _limit

    try:
        limit = _limit(key.name, _from_text(value), f"{key.name}={value!r} (environment)")
    except _BadValue as exc:
        assert "\n" not in str(exc)
        return
    try:
        parse_limit(key.name, _from_text(value), "environment")
    except BudgetError as exc:
        raise AssertionError("the plugin accepted what parse_limit refuses") from exc
    budget = Budget({**Budget.defaults().limits, key.name: limit},
                    dict.fromkeys([k.name for k in BUDGET_KEYS], "environment"))
    evaluation = evaluate(REPORTS["blocking_slot.json"], budget)
    for result in evaluation.checks:
        result.budget_key.fmt(result.limit)
        result.budget_key.fmt(result.actual)
    for violation in evaluation.violations:
        assert violation.message


def _real_baseline() -> dict[str, Any]:
    return baseline_to_dict(make_baseline(REPORTS["two_blocking.json"]))


@FUZZ
@given(data=st.data(), tighten=st.booleans())
def test_baseline_files_survive_mutation(folder: Path, data: st.DataObject,
                                         tighten: bool) -> None:
    document = _real_baseline()
    path = data.draw(st.sampled_from(list(_paths(document))))
    raw, _ = data.draw(_REPLACEMENTS)
    target = folder / "baseline.json"
    target.write_text(_with_raw(document, path, raw), encoding="utf-8",
                      errors="surrogatepass")
    if tighten:
        result = _invoke(baseline, BLOCKING, "-o", str(target), "--tighten")
        assert_clean(result)
        if result.exit_code == 0:
            _strict_json(target.read_text("utf-8"))
    else:
        result = _invoke(check, BLOCKING, "--baseline", str(target), "--format", "json",
                         "--budget", str(folder / "empty-budget.toml"))
        assert_clean(result, ok_codes=(0, 1))
        if result.exit_code != 2:
            _strict_json(result.stdout)


# -- the live stream ---------------------------------------------------------------------------

def _threads_snapshot() -> dict[str, Any]:
    """Other threads in a snapshot (the dashboard's Threads panel), a row of each."""
    frame = {"function": "read_device", "file": "/home/me/app/device.py", "line": 35}
    return {
        "worker_loops": {
            "loops": 3, "running": 1,
            "stall_summary": {"count": 1, "total_ms": 300.0, "max_ms": 300.0},
            "threads": [{"thread": "device-poller", "loops": 1, "kinds": {"asyncio": 1},
                         "stalls": {"count": 1, "total_ms": 300.0, "max_ms": 300.0},
                         "worst": {"started_at_s": 0.5, "duration_ms": 300.0, "culprit": frame,
                                   "callback": "poll step", "task": "Task-2 (poll)",
                                   "thread": "device-poller", "thread_ident": 1234}}],
            "stalled_now": [{"thread": "job", "thread_ident": 99, "loop_kind": "asyncio",
                             "started_at_s": 4.0, "duration_ms": 120.0, "culprit": frame,
                             "callback": "job step"}]},
        "handoffs": [{"via": "call_soon_threadsafe", "thread": "audio", "site": frame,
                      "count": 214, "p50_ms": 0.2, "p99_ms": 271.8, "max_ms": 292.3,
                      "worst_during_stall_in": frame}],
        "handoff_sites": 1,
        "affinity": [{"source": "widget_call", "call": "QLabel.setText", "site": frame,
                      "count": 3, "first_at_s": 0.3,
                      "object": {"class": "QLabel", "object_name": "status"},
                      "owner_thread": {"name": "MainThread", "ident": 1},
                      "calling_thread": {"name": "worker", "ident": 5}, "message": None}],
        "affinity_sites": 1,
    }


def _good_messages() -> list[dict[str, Any]]:
    """What a real app streams, built from a real report's pieces."""
    rep = REPORTS["qasync_chat.json"]
    stalls = rep["stalls"][:3]
    lag = {k: v for k, v in rep["lag"].items() if k != "histogram"}
    dispatcher = {k: v for k, v in rep["dispatcher"].items() if k != "busy_windows"}
    snapshot = {
        "t": 5.0, "loop": rep["loop"], "running": True, "stall_now": None,
        "recent_stalls": [{**s, "stack": []} for s in stalls],
        "stall_summary": {k: rep["stall_summary"][k] for k in ("count", "total_ms", "max_ms")},
        "lag": lag, "lag_recent": [[0.5, 1.0], [1.0, 300.0]], "dispatcher": dispatcher,
        "slow_callbacks": rep["slow_callbacks"][:3],
        "tasks": {"pending_now": 3, "peak_pending": 12, "long_pending": 1,
                  "unretrieved_exceptions": 0},
        "blocking_calls": rep["blocking_calls"][:2],
        **_threads_snapshot(),
    }
    return [
        {"v": 1, "type": "hello", "t": 0.02, "pid": 4242, "argv": ["chat.py", "--x"],
         "cwd": "/home/me/app", "executable": "/venv/bin/python", "python": "3.11.7",
         "looptools": "0.1.0", "started_at": "2026-05-09T07:35:25.123+00:00",
         "loop": rep["loop"], "threshold_ms": 50.0, "mode": "connect"},
        {"v": 1, "type": "event", "t": 1.5, "kind": "stall_started", "data": stalls[0]},
        {"v": 1, "type": "event", "t": 1.9, "kind": "stall_ended", "data": stalls[0]},
        {"v": 1, "type": "event", "t": 2.0, "kind": "slow_callback",
         "data": {"name": "on_reply", "kind": "task", "location": "chat.py:40", "task": None,
                  "duration_ms": 120.0}},
        {"v": 1, "type": "snapshot", "t": 5.0, "dropped": 0, "data": snapshot},
        {"v": 1, "type": "event", "t": 6.0, "kind": "stall_started", "data": stalls[1]},
        {"v": 1, "type": "bye", "t": 7.0, "dropped": 1,
         "exit": {"reason": "normal", "signal": None, "exception": None}},
    ]


GOOD = _good_messages()
GOOD_LINES = [encode(message) for message in GOOD]


@st.composite
def bad_lines(draw: st.DrawFn) -> bytes:
    """A line (no newline in it) a reader must drop: garbage, or a real message with a
    value of the wrong type, NaN, a huge number or deep nesting somewhere."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        line = draw(st.binary(min_size=1, max_size=60))
    elif choice == 1:
        line = _nested(draw(st.integers(70, 20000)), draw(st.sampled_from(["array", "object"]))
                       ).encode()
    elif choice == 2:  # a message whose version or type is wrong
        message = dict(draw(st.sampled_from(GOOD)))
        key = draw(st.sampled_from(["v", "type"]))
        message[key] = draw(_JSON_VALUES.filter(lambda v: v not in (1, "hello", "event",
                                                                   "snapshot", "bye")))
        line = json.dumps(message).encode()
    else:  # a real message, one value replaced: mistyped (maybe still fine) or unusable
        message = draw(st.sampled_from(GOOD))
        path = draw(st.sampled_from(list(_paths(message))))
        raw, _ = draw(_REPLACEMENTS)
        line = _with_raw(message, path, raw).encode("utf-8", "surrogatepass")
    return line.replace(b"\n", b" ")


def _connected_state() -> DashboardState:
    state = DashboardState(clock=lambda: 100.0)
    state.apply(GOOD[0], 0)
    return state


def _render(state: DashboardState, width: int, height: int) -> str:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None,
                      legacy_windows=False)
    console.print(Dashboard(state))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def _rebuild(state: DashboardState) -> dict[str, Any]:
    run = types.SimpleNamespace(state=state, started=0.0, ended=7.0, proc=None,
                                argv=["chat.py"], threshold_ms=None)
    rebuilt = report_from_stream(run, {"reason": "normal", "signal": None,  # type: ignore[arg-type]
                                       "exception": None})
    validate_report(rebuilt, "rebuilt")
    for name in RENDERERS:
        get_renderer(name).render(rebuilt)
    return rebuilt


@FUZZ
@given(lines=st.lists(st.tuples(st.booleans(), bad_lines()), min_size=1, max_size=12),
       chunk=st.integers(1, 4096), width=st.integers(30, 160), height=st.integers(8, 50))
def test_stream_reader_drops_bad_lines_and_carries_on(
        lines: list[tuple[bool, bytes]], chunk: int, width: int, height: int) -> None:
    """Good messages interleaved with bad lines, fed in arbitrary chunks: the decoder
    yields every good one and counts the rest; the dashboard state takes what it
    yields, renders, and ``looptools profile`` rebuilds a valid report from it."""
    stream = bytearray()
    expected_good = 0
    for index, (before, bad) in enumerate(lines):
        good = GOOD_LINES[index % len(GOOD_LINES)]
        pair = [bad + b"\n", good] if before else [good, bad + b"\n"]
        stream += b"".join(pair)
        expected_good += 1
    stream += GOOD_LINES[-1]  # a last good message after all of it
    decoder = LineDecoder()
    state = _connected_state()
    received: list[dict[str, Any]] = []
    for start in range(0, len(stream), chunk):
        for message in decoder.feed(bytes(stream[start:start + chunk])):
            received.append(message)
            state.apply(message, 0)
    good_received = [m for m in received if m in GOOD]
    assert len(good_received) >= expected_good + 1  # every good one (and the last) arrived
    assert received[-1] == GOOD[-1]
    non_blank = sum(1 for _, bad in lines if bad.strip())
    assert decoder.messages + decoder.bad == expected_good + 1 + non_blank
    assert state.rejected == 0  # the decoder let through only usable messages
    _render(state, width, height)
    _rebuild(state)


@FUZZ
@given(raw=st.lists(bad_lines(), min_size=1, max_size=8), width=st.integers(30, 160),
       height=st.integers(8, 50))
def test_consumers_take_unchecked_messages_in_process(raw: list[bytes], width: int,
                                                      height: int) -> None:
    """Messages parsed with plain ``json.loads`` (NaN, huge integers and all) handed
    straight to ``DashboardState.apply``: nothing raises, the dashboard renders, the
    rebuilt report is valid, and a good message after them is still taken."""
    state = _connected_state()
    for line in raw:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            continue
        state.apply(message, 0)
        _render(state, width, height)
    _rebuild(state)
    state.apply(GOOD[4], 0)
    assert state.snapshot == GOOD[4]["data"]


def test_oversized_and_deep_lines_are_dropped() -> None:
    decoder = LineDecoder()
    deep = _nested(100_000, "array").encode()
    got = list(decoder.feed(deep + b"\n" + GOOD_LINES[0]))
    assert got == [GOOD[0]] and decoder.bad == 1
    got = list(decoder.feed(b"[" * (MAX_LINE + 10)))
    got += list(decoder.feed(b"]\n" + GOOD_LINES[-1]))
    assert got == [GOOD[-1]] and decoder.bad == 2


def test_reader_thread_survives_garbage_and_a_failing_handler() -> None:
    """The real reader thread of `looptools profile`: garbage, mistyped v1 messages,
    deep nesting and a handler that raises do not end it; later messages arrive."""
    folder = Path(tempfile.mkdtemp(prefix="lt-fz-", dir="/tmp"))
    received: list[dict[str, Any]] = []
    state = DashboardState()

    def handler(message: dict[str, Any], number: int) -> None:
        if message.get("t") == 99.0:
            raise RuntimeError("a consumer bug")
        received.append(message)
        state.apply(message, number)

    server = StreamServer(folder / "s.sock", handler).start()
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(folder / "s.sock"))
        garbage = [
            _nested(50_000, "array").encode(),
            b'{"v": 1, "type": "snapshot", "t": 1, "data": {"recent_stalls": 5}}',
            b'{"v": 1, "type": "snapshot", "t": 1, "data": {"stall_summary": []}}',
            b'{"v": 1, "type": "hello", "t": NaN, "pid": 1}',
            b'{"v": 1, "type": "hello", "t": 1, "pid": ' + b"9" * 5000 + b"}",
            b'{"v": 1, "type": "event", "t": 1, "kind": "stall_ended", "data": {"x": 1}}',
            b'{"v": 1, "type": "bye", "t": 1, "exit": "normal"}',
            b"\xff\xfe\xfd",
        ]
        client.sendall(GOOD_LINES[0] + b"\n".join(garbage) + b"\n"
                       + encode({**GOOD[4], "t": 99.0}) + b"".join(GOOD_LINES[1:]))
        client.close()
        deadline = time.monotonic() + 10
        while len(received) < len(GOOD) and time.monotonic() < deadline:
            time.sleep(0.02)
        server.drain()
        assert server._thread.is_alive()
        assert received == GOOD
        assert server.bad_lines == len(garbage) + 1  # and the message the handler refused
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
    rebuilt = _rebuild(state)
    assert rebuilt["stalls"] and rebuilt["meta"]["pid"] == 4242
