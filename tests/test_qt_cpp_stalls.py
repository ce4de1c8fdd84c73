"""Stalls in Qt's C++ alone (a paint, a layout, a C++ slot), on every Qt loop kind.

No Python runs from the loop's last sign of life to the end of such a stall, so no
run or slot dates it.  It was dated from that sign of life: a repaint that began
7.7 ms after the last run read 51.4 ms for 43 ms (FeelUOwn's start-up showed a
42.6 ms busy window as a 52.5 ms stall), and while the dispatcher detector timed
every run a look that found the run counter moved took the loop for alive, so 9 of
25 repaints of 54-76 ms on qasync were not reported at all.  Now such a stall is
dated by the heartbeat that did not run and the loop thread's CPU time
(``StallWatchdog._in_qt_since``): never before it could begin.

The app (tests/apps/cpp_stall_app.py) starts a C++ timer whose ``timeout`` runs a
``QGraphicsView`` repaint and then a Python slot that stamps its end: the repaint
lies inside ``[due, end]``.  Measured against perf uprobes on ``QWidget::repaint``
(docs/design.md), the timer fired 0.1-1.1 ms after it was due.

Scenes are sized, and rounds judged, by the repaint's own time (the loop thread's
CPU time in the round), not by the clock: beside CPU burners the clock stretches by
the waits for a CPU, which are the machine's (StallWatchdog._starved).  Sized and
judged by the clock, a CI machine busier than the two burners found none of 8
"long" repaints reported (rightly: their own time was under the threshold), and
the test failed; so did 4 of 6 runs here beside five burners.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import run_app

APP = Path(__file__).parent / "apps" / "cpp_stall_app.py"

LOOPS = [
    ("qasync", "PyQt5"),
    ("qasync", "PyQt6"),
    ("qasync", "PySide6"),
    ("qtasyncio", "PySide6"),
    ("qt", "PySide6"),
    ("qt", "PyQt5"),
]


def _overlapping(report: dict[str, Any], origin: float, due: float,
                 end: float) -> list[dict[str, Any]]:
    out = []
    for stall in report["stalls"]:
        start = stall["started_at_s"] + origin
        if start < end and start + stall["duration_ms"] / 1000.0 > due:
            out.append(stall)
    return out


@pytest.mark.parametrize(("kind", "binding"), LOOPS, ids=[f"{k}-{b}" for k, b in LOOPS])
def test_a_stall_in_qt_cpp_is_never_dated_before_it_could_begin(
        kind: str, binding: str, machine: str, tmp_path: Path) -> None:
    pytest.importorskip(binding)
    # (qasync takes its binding from QT_API, which conftest sets to pyside6.)
    run = run_app([str(APP), kind, binding, "12", "38,68,130"], tmp_path, timeout=180,
                  environ={"QT_API": binding.lower()}, summary="0")
    assert run.returncode == 0 and run.stdout == "done\n", run.stderr[-3000:]
    assert run.report is not None
    origin, rounds = run.marks["origin"], run.marks["rounds"]  # type: ignore[index]
    assert origin is not None and len(rounds) == 12, run.marks
    summary = run.report["stall_summary"]
    # Every round as (due, wall ms, CPU ms), and every stall, from the monitor's origin:
    # what a failure shows.
    seen = ([(round(due - origin, 4), round((end - due) * 1000, 1), round(cpu * 1000, 1))
             for due, end, cpu in rounds],
            [(stall["started_at_s"], stall["duration_ms"], stall["culprit"])
             for stall in run.report["stalls"]],
            {"starved": summary["watchdog"]["starved"]})
    long_rounds, owed, found, short_reported = 0, 0, 0, []
    for due, end, cpu in rounds:
        mine = _overlapping(run.report, origin, due, end)
        assert len(mine) <= 1, (due - origin, end - origin, mine)
        if end - due >= 0.060:
            long_rounds += 1
            # Owed a stall: the repaint's own time (the loop thread's CPU time in
            # the round) is over the threshold, however long a busy machine kept
            # it waiting for a CPU besides.
            owed += cpu >= 0.060
        if not mine:
            continue
        stall = mine[0]
        start = stall["started_at_s"] + origin
        stop = start + stall["duration_ms"] / 1000.0
        where = (round(due - origin, 4), round((end - due) * 1000, 1), stall)
        # The repaint cannot begin before its timer is due, and the loop is back at
        # the Python slot after it (the tick at its entry, or the next heartbeat).
        # Beside burners the loop thread's delay just before it (after the sign of
        # life it is dated from) can count in, as the machine's: 0.6-2.4 ms seen
        # (docs/design.md, not yet mended).
        assert start >= due - (0.0005 if machine == "quiet" else 0.005), where
        assert stop <= end + 0.012, where
        assert stall["source"] == "qt" and stall["callback"] is None, where
        # No Python held it: no line of the app is its culprit (not the line that
        # runs Qt's loop either).
        assert stall["culprit"] is None, where
        if end - due < 0.047:
            short_reported.append(where)
        elif end - due >= 0.060 and cpu >= 0.060:
            found += 1
    # Never longer than the span that holds it, so never a stall under the threshold.
    assert short_reported == [], short_reported
    # (Scenes are sized by their repaint's CPU time: the 130 ms one's rounds are
    # long on any machine.)
    assert long_rounds >= 3 and owed >= 2, seen
    # A busy machine's share of a stall at the loop's wait is not the app's
    # (StallWatchdog._starved), but a repaint whose own time is over the threshold
    # is the app's on any machine.  (One in ~150 was missed on an idle machine:
    # dated at most 1.5 ms late, a 60 ms repaint can end just before the look that
    # would cross the threshold.)
    assert found >= owed - 1, seen
