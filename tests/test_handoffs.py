"""Cross-thread hand-offs: how long work posted from a worker thread waited for the loop.

``tests/apps/handoff_app.py`` posts 120 chunks each way (``call_soon_threadsafe`` and
``run_coroutine_threadsafe``) from a thread named "audio" at ~100 Hz while the loop is
once blocked 300 ms by ``build_index``; the app measures each wait itself (the truth).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, env, validate

APP = ROOT / "tests" / "apps" / "handoff_app.py"


def _line(marker: str) -> int:
    for number, line in enumerate(APP.read_text().splitlines(), 1):
        if f"# {marker}" in line:
            return number
    raise AssertionError(marker)


def _run(kind: str, tmp_path: Path, monitored: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    report = tmp_path / f"{kind}-{int(monitored)}.json"
    extra = {"QT_API": "pyside6"}
    if monitored:
        extra.update(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report), LOOPTOOLS_SUMMARY="0")
    done = subprocess.run([sys.executable, str(APP), kind], capture_output=True, text=True,
                          timeout=60, env=env(**extra))
    assert done.returncode == 0, done.stderr
    truth_line = [line for line in done.stdout.splitlines() if line.startswith("TRUTH ")]
    assert len(truth_line) == 1, done.stdout
    truth = json.loads(truth_line[0][6:])
    data = json.loads(report.read_text()) if monitored else {}
    return truth, data


@pytest.mark.parametrize("kind", ["asyncio", "qasync", "qtasyncio"])
def test_handoff_waits_match_the_apps_own_measure(kind: str, tmp_path: Path) -> None:
    truth, report = _run(kind, tmp_path, monitored=True)
    validate(report)
    rows = {row["via"]: row for row in report["handoffs"]}
    assert set(rows) == {"call_soon_threadsafe", "run_coroutine_threadsafe"}, rows
    for via, marker in (("call_soon_threadsafe", "POST: call_soon"),
                        ("run_coroutine_threadsafe", "POST: coro")):
        row = rows[via]
        assert row["thread"] == "audio"
        assert row["site"]["function"] == "worker" and row["site"]["line"] == _line(marker)
        assert row["count"] == truth[via]["count"] == 120
        assert row["max_ms"] == pytest.approx(truth[via]["max_ms"], rel=0.25), (row, truth)
        assert row["p50_ms"] < 20 <= row["max_ms"]  # most waited nothing; one the stall
        assert row["worst_during_stall_in"]["function"] == "build_index", row


def test_the_exit_summary_and_check_name_the_site_and_the_stall(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(APP), "asyncio"], capture_output=True, text=True,
                          timeout=60, env=env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report)))
    assert done.returncode == 0, done.stderr
    summary = [line for line in done.stderr.splitlines() if "hand-offs from worker" in line]
    assert len(summary) == 2 and all("thread audio" in line and
                                     "while build_index held the loop" in line
                                     for line in summary), done.stderr
    checked = subprocess.run([sys.executable, "-m", "looptools", "check", str(report),
                              "--max-stall-ms", "1000", "--max-handoff-p99-ms", "50"],
                             capture_output=True, text=True, timeout=60, env=env())
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "max_handoff_p99_ms" in checked.stdout and "thread audio" in checked.stdout
    within = subprocess.run([sys.executable, "-m", "looptools", "check", str(report),
                             "--max-stall-ms", "1000", "--max-handoff-p99-ms", "1000"],
                            capture_output=True, text=True, timeout=60, env=env())
    assert within.returncode == 0, within.stdout + within.stderr


def test_the_app_runs_the_same_with_the_wrapper() -> None:
    """The callback the loop runs is the app's own, called with its own arguments: a
    hand-off's result, context and exceptions are the app's; on the loop thread and
    after stop, call_soon_threadsafe is the loop's own."""
    import asyncio
    import contextvars
    import threading

    import looptools

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert "call_soon_threadsafe" in vars(loop)  # shadowed on the instance
        done = asyncio.Event()

        def on_loop(value: int) -> None:
            seen.append((value, var.get(), threading.current_thread() is threading.main_thread()))
            done.set()

        def post() -> None:
            var.set("worker's")
            loop.call_soon_threadsafe(on_loop, 7, context=contextvars.copy_context())

        threading.Thread(target=post).start()
        await done.wait()
        handle = loop.call_soon_threadsafe(seen.append, "from the loop thread")
        assert handle._callback == seen.append  # not wrapped: not a hand-off
        await asyncio.sleep(0)

    with looptools.monitor(report=None) as monitor:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        rows = monitor.report()["handoffs"]
        loop.close()
    assert seen == [(7, "worker's", True), "from the loop thread"]
    assert [row["count"] for row in rows] == [1]
    assert "call_soon_threadsafe" not in vars(loop)  # undone
