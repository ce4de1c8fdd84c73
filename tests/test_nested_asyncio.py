"""A Qt app (no qasync) that runs plain asyncio loops from its slots is watched again
once they stop.

The monitor follows the loop that runs on the main thread: a Qt main thread without
asyncio (Qt-only), until an asyncio loop starts there.  When that loop stopped inside
the Qt app's event loop (a slot ran one to completion, or a "guest" loop was stepped
from Qt events) Qt ran on unwatched: a fresh-eyes trial saw a 300 ms freeze a second
later reported as "no stalls" (and PySide6's old ``minimal`` guest example the same).
Now the next Qt iteration after the loop stops watches Qt again, unless the loop runs
again meanwhile (a guest loop stepping thousands of times a second: one look per
threshold, no attach per step).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from helpers import ROOT, culprit_line, run_app

APP = ROOT / "tests" / "apps" / "nested_asyncio_app.py"


@pytest.mark.parametrize("binding,mode", [("PySide6", "once"), ("PySide6", "guest"),
                                          ("PyQt6", "once"), ("PyQt6", "guest"),
                                          ("PyQt5", "twice")])
def test_a_freeze_after_an_asyncio_loop_ran_in_a_qt_slot_is_found(
        binding: str, mode: str, machine: str, tmp_path: Path) -> None:
    if importlib.util.find_spec(binding) is None:
        pytest.skip(f"{binding} is not installed")
    plain = run_app([str(APP), binding, mode], tmp_path, monitored=False)
    monitored = run_app([str(APP), binding, mode], tmp_path)
    assert plain.returncode == 0 and monitored.returncode == 0, monitored.stderr
    assert monitored.stdout == plain.stdout, (plain.stdout, monitored.stdout)
    report = monitored.report
    assert report is not None, monitored.stderr
    stalls = report["stalls"]
    assert len(stalls) == (2 if mode == "twice" else 1), stalls
    for stall in stalls:
        assert stall["culprit"]["line"] == culprit_line(APP, "spin"), stall
        assert 250 <= stall["duration_ms"] <= 450, stall
    assert report["loop"]["kind"] == "qt"  # watching Qt again at the end


def test_an_app_running_loops_again_and_again_from_qt_is_not_attached_each_time(
        tmp_path: Path) -> None:
    """A 2 ms timer's slot runs ``run_until_complete`` ~250 times: watching Qt again
    after each would cost an attach and a detach per run (a fresh-eyes trial measured
    its runs 7x dearer).  The delay before watching Qt again grows while the app comes
    back: a handful of attaches, and the freeze after the runs is still found."""
    monitored = run_app([str(APP), "PySide6", "often"], tmp_path)
    assert monitored.returncode == 0, monitored.stderr
    (line,) = [x for x in monitored.stderr.splitlines() if x.startswith("QT ATTACHES")]
    attaches = int(line.split()[-1])
    assert 1 <= attaches <= 6, attaches  # without the back-off: one per run, ~200
    report = monitored.report
    assert report is not None
    (stall,) = report["stalls"]
    assert stall["culprit"]["line"] == culprit_line(APP, "spin"), stall
