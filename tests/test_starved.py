"""An idle Qt loop that a busy machine keeps off the CPU is not a stall: the pieces
the watchdog judges that by (``StallWatchdog._starved``), on a real qasync loop."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import run_queue_time

import looptools
from looptools._frames import Frame, stack_of
from looptools.inapp.detectors.stalls import Stall
from looptools.inapp.hub import Detector

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="schedstat and the ticks' timer are Linux's")


class _Stacks(Detector):
    """Takes the loop thread's stack inside our heartbeat, as a watchdog sample does."""

    name = "stacks"

    def __init__(self) -> None:
        self.in_heartbeat: list[Frame] = []

    def heartbeat(self, now: float, lag: float) -> None:
        if not self.in_heartbeat:
            self.in_heartbeat = stack_of(sys._getframe(1))  # up to the hub: ours


def _run_qasync(coro: Any) -> Any:
    import qasync
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    return qasync.run(coro)


def test_a_sample_in_our_heartbeat_is_the_loop_at_its_wait(tmp_path: Path) -> None:
    # A busy machine's late wake-up is often sampled in the heartbeat's slot (its
    # first bytecode runs the tick that hands the watchdog the GIL); that sample
    # is the loop at its wait, an app frame above the wait is not.
    stacks = _Stacks()
    app_stack: list[Frame] = []

    async def main() -> None:
        from PySide6.QtCore import QTimer

        QTimer.singleShot(0, lambda: app_stack.extend(stack_of(sys._getframe(0))))
        await asyncio.sleep(0.2)

    with looptools.monitor(report=None) as monitor:
        monitor.hub.add(stacks)
        _run_qasync(main())
        state = monitor.state
        assert state is not None
        idle = state.idle_frame
    assert idle is not None and idle[0].endswith("run_forever")
    beat = stacks.in_heartbeat
    assert [frame[:2] for frame in beat].count(idle) == 1
    assert beat[-1][:2] != idle  # our slot and hub are above the wait

    def judged(stack: list[Frame]) -> int:
        stall = Stall(started=0.0, detected=0.0, idle_frame=idle)
        stall.vote(stack)
        return stall.idle_samples

    at_wait = beat[:[frame[:2] for frame in beat].index(idle) + 1]
    assert judged(at_wait) == 1
    assert judged(beat) == 1
    assert judged([*beat, ("handler", __file__, 1)]) == 0  # the app's, called from ours
    assert app_stack and app_stack[-1][1] == __file__
    assert judged(app_stack) == 0  # an app slot


def test_the_loop_threads_run_queue_time_is_read_on_it_and_not_elsewhere(
        tmp_path: Path) -> None:
    # The loop thread reads its own run-queue time at each tick and heartbeat
    # (the base a stall's delay is counted from), and can judge a stall that ends
    # as the loop stops; another thread cannot read it at all.  (Opened with the
    # loop running, the descriptor once showed as the app's blocking os.open.)
    seen: dict[str, Any] = {}

    async def main() -> None:
        await asyncio.sleep(0.3)
        watchdog = monitor.hub.get("stalls")
        before = run_queue_time()
        seen["here"] = watchdog._delay_now() - watchdog._held_queued
        seen["bounds"] = (before, run_queue_time())
        seen["marks"] = list(watchdog._loop_marks)
        elsewhere = threading.Thread(target=lambda: seen.update(other=watchdog._delay_now()))
        elsewhere.start()
        elsewhere.join()

    with looptools.monitor(report=str(tmp_path / "r.json")) as monitor:
        _run_qasync(main())
        watchdog = monitor.hub.get("stalls")
        assert watchdog is not None
        assert watchdog._times_loop is None  # closed as the loop stopped
    report = monitor.final_report
    assert report is not None
    # Opened on the loop thread while it ran, but not an app's blocking call.
    assert not [call for call in report["blocking_calls"] if call["call"] == "os.open"]
    low, high = seen["bounds"]
    assert low - 1e-9 <= seen["here"] <= high + 1e-9
    assert seen["other"] is None
    marks = seen["marks"]
    assert len(marks) >= 10  # ~100 beats, a tick before most
    times = [when for when, _ in marks]
    assert times == sorted(times)
    values = [value for _, value in marks]
    assert values == sorted(values)  # run-queue time only grows
