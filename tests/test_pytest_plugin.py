"""The pytest plugin, through pytester: real inner pytest sessions in subprocesses.

Each inner session runs real loops (pytest-asyncio's runner, qasync and QtAsyncio
under pytest-qt) with real stalls; the outer tests assert on outcomes, the
failure text, the session summary and the JSON reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from looptools.pytest_plugin import report_name

pytest_plugins = ["pytester"]

SCHEMA = Path(__file__).resolve().parent.parent / "looptools" / "schema" / "report.schema.json"

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""

# A module of pytest-asyncio tests.  `# LINE:name` marks lines the outer tests
# look for in the inner session's output.
ASYNC_TESTS = """
import asyncio
import time

import pytest
import pytest_asyncio


@pytest.mark.asyncio
async def test_blocks():
    await asyncio.sleep(0.01)
    time.sleep(0.2)  # LINE:blocks


@pytest.mark.asyncio
@pytest.mark.loop_budget(max_stall_ms=500)
async def test_blocks_within_marker():
    await asyncio.sleep(0.01)
    time.sleep(0.15)  # LINE:allowed


@pytest.mark.asyncio
@pytest.mark.loop_budget(max_leaked_tasks=0)
async def test_leaks():
    asyncio.get_running_loop().create_task(asyncio.sleep(30))  # LINE:leak
    await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def server():
    task = asyncio.create_task(asyncio.sleep(30))
    yield task
    task.cancel()


@pytest.mark.asyncio
@pytest.mark.loop_budget(max_leaked_tasks=0)
async def test_fixture_task_is_not_a_leak(server):
    await asyncio.sleep(0.01)


def test_no_loop():
    pass
"""


@pytest.fixture(autouse=True)
def _inner_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LOOPTOOLS"):
            monkeypatch.delenv(name)
    for name in ("PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=60)


def _line(path: Path, mark: str) -> int:
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# LINE:{mark}"):
            return number
    raise AssertionError(mark)


def _validate(report: dict[str, object]) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


def test_over_budget_fails_with_culprit_summary_and_reports(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))
    source = pytester.makepyfile(test_loop=ASYNC_TESTS)
    result = _run(pytester, "--looptools", "--looptools-max-stall-ms", "100",
                  "--looptools-report", "reports")
    out = result.stdout.str()
    result.assert_outcomes(passed=3, failed=2)
    assert result.ret == 1

    blocks = _line(source, "blocks")
    result.stdout.fnmatch_lines([
        "*_ test_blocks _*",
        "looptools: stall of * in test_blocks * exceeds max_stall_ms = 100 ms "
        "(set by --looptools-max-stall-ms)",
        f"  culprit: test_loop.py:{blocks} in test_blocks",
        "*Captured looptools call*",
        "OVER BUDGET: stall of *",
        "*stack of the * stall, most recent call last:",
        f'    File "test_loop.py", line {blocks}, in test_blocks  <- culprit',
        "      time.sleep(0.2)  # LINE:blocks",
    ])
    # The marker's 500 ms beats the command line's 100 ms.
    assert "FAILED test_loop.py::test_blocks_within_marker" not in out
    # A task the test left pending breaks max_leaked_tasks=0; one a fixture
    # started (and cancels in teardown) does not.
    result.stdout.fnmatch_lines([
        "looptools: 1 task still pending at exit exceeds max_leaked_tasks = 0 * "
        "(set by loop_budget marker)",
        f"  culprit: test_loop.py:{_line(source, 'leak')} in test_leaks",
    ])
    assert "FAILED test_loop.py::test_fixture_task_is_not_a_leak" not in out

    # The session summary: loop tests counted, the longest stall first.
    result.stdout.fnmatch_lines([
        "*= looptools =*",
        "4 tests ran an event loop, 2 over budget",
        "longest stalls:",
        f"  * ms  test_loop.py::test_blocks * test_loop.py:{blocks} in test_blocks  "
        "over max_stall_ms",
        f"  * ms  test_loop.py::test_blocks_within_marker * "
        f"test_loop.py:{_line(source, 'allowed')} in test_blocks_within_marker",
        "  over max_leaked_tasks: test_loop.py::test_leaks",
        "reports: reports/ (4 files)",
    ])

    # One valid report per test that ran a loop; none for the test that did not.
    files = sorted(p.name for p in (pytester.path / "reports").iterdir())
    assert files == sorted(report_name(f"test_loop.py::{name}") for name in (
        "test_blocks", "test_blocks_within_marker", "test_leaks",
        "test_fixture_task_is_not_a_leak"))
    for name in files:
        report = json.loads((pytester.path / "reports" / name).read_text())
        _validate(report)
        assert report["loop"]["kind"] == "asyncio"
        assert report["meta"]["test"].startswith("test_loop.py::")
    blocked = json.loads((pytester.path / "reports" / report_name(
        "test_loop.py::test_blocks")).read_text())
    assert blocked["stall_summary"]["max_ms"] >= 180
    assert blocked["stalls"][0]["culprit"]["line"] == blocks


def test_without_the_flag_nothing_is_monitored(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))
    pytester.makepyfile(test_loop=ASYNC_TESTS)
    pytester.makepyfile(test_untouched="""
        import asyncio
        import asyncio.events

        import pytest

        import looptools

        def untouched(config):
            assert looptools.active() is None
            assert asyncio.events.Handle.__dict__["_run"].__module__ == "asyncio.events"
            assert asyncio.events._set_running_loop in (
                asyncio.events._c__set_running_loop, asyncio.events._py__set_running_loop)
            assert config.pluginmanager.get_plugin("looptools-session") is None
            assert config.pluginmanager.get_plugin("looptools") is not None

        def test_sync(request):
            untouched(request.config)

        @pytest.mark.asyncio
        async def test_async(request):
            untouched(request.config)
    """)
    result = _run(pytester, "--looptools-max-stall-ms", "100")
    result.assert_outcomes(passed=7)
    assert [line for line in result.outlines
            if "looptools" in line and not line.startswith("plugins:")] == []


def test_precedence_marker_over_cli_over_env_over_ini(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini(INI.format(extra="""
looptools_max_stall_ms = 50
looptools_max_leaked_tasks = 0
looptools_max_pending_tasks = 3
"""))
    monkeypatch.setenv("LOOPTOOLS_BUDGET_MAX_STALL_MS", "1000")
    monkeypatch.setenv("LOOPTOOLS_BUDGET_MAX_LEAKED_TASKS", "0")
    pytester.makepyfile(test_layers="""
        import asyncio
        import time

        import pytest

        @pytest.mark.asyncio
        async def test_env_beats_ini():
            time.sleep(0.2)

        @pytest.mark.asyncio
        @pytest.mark.loop_budget(max_stall_ms=100)
        async def test_marker_beats_env():
            time.sleep(0.2)

        @pytest.mark.asyncio
        async def test_cli_beats_env_and_ini():
            asyncio.get_running_loop().create_task(asyncio.sleep(30))
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        @pytest.mark.loop_budget(max_leaked_tasks=0)
        async def test_marker_beats_cli():
            asyncio.get_running_loop().create_task(asyncio.sleep(30))
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        async def test_ini_applies_alone():
            await asyncio.gather(*(asyncio.sleep(0.01) for _ in range(5)))
    """)
    result = _run(pytester, "--looptools", "--looptools-max-leaked-tasks", "5")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines([
        "looptools: budget max_stall_ms = 1.00 s (LOOPTOOLS_BUDGET_MAX_STALL_MS), "
        "max_pending_tasks = 3 (looptools_max_pending_tasks in tox.ini), "
        "max_leaked_tasks = 5 (--looptools-max-leaked-tasks); threshold 50 ms (default)",
    ])
    result.stdout.fnmatch_lines([
        # (A collection that ran in the stall adds "(judged without N ms of garbage
        # collection)" before the source: seen in a CI run, 1 ms.)
        "looptools: stall of * exceeds max_stall_ms = 100 ms *(set by loop_budget marker)",
        "looptools: 1 task still pending at exit exceeds max_leaked_tasks = 0 "
        "* (set by loop_budget marker)",
        "looptools: peak of 6 pending tasks exceeds max_pending_tasks = 3 "
        "(set by looptools_max_pending_tasks in tox.ini)",
    ], consecutive=False)
    failed = {line.split()[1] for line in result.outlines if line.startswith("FAILED ")}
    assert failed == {"test_layers.py::test_marker_beats_env",
                      "test_layers.py::test_marker_beats_cli",
                      "test_layers.py::test_ini_applies_alone"}


def test_bad_config_values_are_one_line_usage_errors(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini(INI.format(extra="looptools_max_slow_callbacks = lots"))
    pytester.makepyfile(test_x="def test_x(): pass")
    monkeypatch.setenv("LOOPTOOLS_BUDGET_MAX_LEAKED_TASKS", "1.5")
    result = _run(pytester, "--looptools", "--looptools-max-stall-ms", "x",
                  "--looptools-threshold-ms", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert errors == [
        "ERROR: looptools: --looptools-max-stall-ms='x': expected a number of milliseconds "
        '>= 0, or "off"',
        "ERROR: looptools: looptools_max_slow_callbacks='lots' (tox.ini): expected a whole "
        'number >= 0, or "off"',
        "ERROR: looptools: LOOPTOOLS_BUDGET_MAX_LEAKED_TASKS='1.5' (environment): expected a "
        'whole number >= 0, or "off"',
        "ERROR: looptools: --looptools-threshold-ms='0': expected a number greater than 0",
    ]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_bad_marker_errors_that_test_only(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))
    pytester.makepyfile(test_marks="""
        import pytest

        @pytest.mark.loop_budget(max_stall_ms="x")
        def test_b():
            pass

        @pytest.mark.loop_budget(max_stal_ms=3)
        def test_typo():
            pass

        def test_fine():
            pass
    """)
    result = _run(pytester, "--looptools")
    result.assert_outcomes(passed=1, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*_ ERROR at setup of test_b _*",
        "looptools: loop_budget(max_stall_ms='x') on test_marks.py::test_b: expected a number "
        'of milliseconds >= 0, or "off"',
        "*_ ERROR at setup of test_typo _*",
        "looptools: loop_budget(max_stal_ms=3) on test_marks.py::test_typo: unknown budget key "
        "(did you mean max_stall_ms?)",
    ])
    assert "Traceback" not in result.stdout.str()


GC_TESTS = """
import gc
import time

import pytest

# A heap of 300 lists of 100,000 items: keeping 100,000 more small lists sets off one
# full collection of it (~130 ms) in the test that makes them.
HEAP = [[None] * 100_000 for _ in range(300)]
KEPT = []
gc.collect()  # the heap is old: the next full collection waits for 25 % more


def _allocate():
    for i in range(100_000):
        KEPT.append([i])


@pytest.mark.asyncio
async def test_collects():
    _allocate()


@pytest.mark.asyncio
async def test_collects_and_blocks():
    _allocate()
    time.sleep(0.2)  # LINE:blocks
"""


def test_garbage_collection_does_not_count_against_a_test(pytester: pytest.Pytester) -> None:
    # A test shares its heap with the session: when a full collection runs is not its
    # doing (the compatibility job failed a pytest-asyncio test on a 349 ms one).
    pytester.makeini(INI.format(extra=""))
    source = pytester.makepyfile(test_gc=GC_TESTS)
    # A threshold of 100 ms: the 25-60 ms of allocating around the collection stays
    # under it (with 50 ms, the rest went over once in 7 runs and the allocating line
    # kept the culprit, as the rule says).
    result = _run(pytester, "-v", "-rA", "--looptools", "--looptools-max-stall-ms", "100",
                  "--looptools-threshold-ms", "100", "--looptools-report", "reports")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "PASSED test_gc.py::test_collects" in out
    # The time of the test's own on top of a collection still counts, and names its line.
    result.stdout.fnmatch_lines([
        "*_ test_collects_and_blocks _*",
        "looptools: stall of * in test_collects_and_blocks * exceeds max_stall_ms = 100 ms "
        "(judged without * ms of garbage collection) *",
        f"  culprit: test_gc.py:{_line(source, 'blocks')} in test_collects_and_blocks",
    ])
    # The session's list names the collector's stall as what it was.
    result.stdout.fnmatch_lines(["longest stalls:",
                                 "*test_gc.py::test_collects *(garbage collection)*"])
    assert out.count("not counted against the budget: ") == 2, out
    collected = json.loads((pytester.path / "reports" / report_name(
        "test_gc.py::test_collects")).read_text())
    _validate(collected)
    # The report is the whole truth: the collector's stall, as long as it was.
    stalls = [s for s in collected["stalls"] if s["gc_generation"] == 2]
    assert len(stalls) == 1, collected["stalls"]
    assert stalls[0]["duration_ms"] > 100 and stalls[0]["culprit"] is None, stalls
    assert stalls[0]["gc_ms"] >= 0.5 * stalls[0]["duration_ms"], stalls
    both = json.loads((pytester.path / "reports" / report_name(
        "test_gc.py::test_collects_and_blocks")).read_text())
    worst = max(both["stalls"], key=lambda s: s["duration_ms"])
    assert worst["gc_generation"] == 2 and worst["culprit"]["line"] == _line(source, "blocks")


QT_TESTS = """
import asyncio
import time

import qasync


def test_qasync_blocks(qtbot, qapp):
    loop = qasync.QEventLoop(qapp)

    async def work():
        await asyncio.sleep(0.02)
        time.sleep(0.2)  # LINE:qasync

    try:
        loop.run_until_complete(work())
    finally:
        loop.close()


def test_qtasyncio_blocks(qtbot, qapp):
    from PySide6 import QtAsyncio

    async def work():
        await asyncio.sleep(0.02)
        time.sleep(0.2)  # LINE:qtasyncio

    QtAsyncio.run(work(), keep_running=False)
"""


def test_pytest_qt_with_qasync_and_qtasyncio(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))
    source = pytester.makepyfile(test_qt=QT_TESTS)
    result = _run(pytester, "--looptools", "--looptools-max-stall-ms", "100",
                  "--looptools-report", "reports")
    result.assert_outcomes(failed=2)
    for name, mark in (("test_qasync_blocks", "qasync"), ("test_qtasyncio_blocks", "qtasyncio")):
        result.stdout.fnmatch_lines([
            f"*_ {name} _*",
            f"looptools: stall of * in {name}.<locals>.work * exceeds max_stall_ms = 100 ms *",
            f"  culprit: test_qt.py:{_line(source, mark)} in {name}.<locals>.work",
        ])
        report = json.loads((pytester.path / "reports" / report_name(
            f"test_qt.py::{name}")).read_text())
        _validate(report)
        assert report["loop"]["kind"] == mark


def test_a_looptools_failure_never_fails_a_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra="faulthandler_timeout = 60"))
    pytester.makeconftest("""
        import os

        from looptools.inapp.detectors.lag import LoopLag
        from looptools.inapp.monitor import Monitor

        def heartbeat(self, now, lag):
            raise RuntimeError("lag broke")

        original_report = Monitor.report

        def report(self):
            if "broken_stop" in os.environ.get("PYTEST_CURRENT_TEST", ""):
                raise RuntimeError("boom")
            return original_report(self)

        LoopLag.heartbeat = heartbeat
        Monitor.report = report
    """)
    pytester.makepyfile(test_x="""
        import asyncio

        import pytest

        import looptools

        @pytest.mark.asyncio
        async def test_broken_stop():
            # pytest's faulthandler_timeout owns faulthandler: no GIL capture.
            assert looptools.active().settings.gil_capture is False

        @pytest.mark.asyncio
        async def test_broken_detector():
            # Long enough for a heartbeat: plain asyncio is probed at 10 Hz.
            await asyncio.sleep(0.3)
    """)
    # The lag detector crashes, so max_lag_p99_ms is not measured: that is
    # looptools' failure, not the test's.
    result = _run(pytester, "--looptools", "--looptools-max-lag-p99-ms", "1000")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([
        "looptools: budget max_stall_ms = 250 ms (default), max_lag_p99_ms = 1.00 s "
        "(--looptools-max-lag-p99-ms); threshold 50 ms (default); "
        "GIL capture off (faulthandler_timeout)",
        "*LooptoolsWarning: looptools: could not stop monitoring (RuntimeError: boom); the "
        "test's own outcome stands*",
        "looptools failed (test_x.py::test_broken_stop): could not stop monitoring "
        "(RuntimeError: boom)",
        "looptools failed (test_x.py::test_broken_detector): detector lag failed and was "
        "switched off (RuntimeError: lag broke *)",
    ])


def test_importing_the_plugin_imports_no_ui() -> None:
    code = ("import sys, looptools.pytest_plugin; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'PySide6', 'qasync', 'rich', 'click', 'blockbuster'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("nodeid", "name"), [
    ("tests/test_a.py::test_b", "tests_test_a.py__test_b.json"),
    ("test_a.py::TestX::test_y[1-a/b]", "test_a.py__TestX__test_y_1-a_b.json"),
])
def test_report_names_are_safe_file_names(nodeid: str, name: str) -> None:
    assert report_name(nodeid) == name


def test_long_report_names_stay_short_and_distinct() -> None:
    a, b = report_name("t.py::test_" + "x" * 300 + "[1]"), report_name(
        "t.py::test_" + "x" * 300 + "[2]")
    assert a != b and len(a) < 140
