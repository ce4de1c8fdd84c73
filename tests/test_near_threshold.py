"""Stalls a little over the threshold: found, with the right culprit, and no stall made
of a callback whose loop lived.

A stall of 57 ms at a 50 ms threshold leaves the watchdog a few ms to see it: its run
is dated by the first look or tick that saw it (up to one poll late) and a look that
wakes just after a tick waits for the GIL up to a switch interval.  1 in ~100 stalls
of 60 ms, and ~15 of 40 of 57 ms, ended unseen on an idle machine; on a busy one a
look that came as the run finished sampled only its last lines and named them.  Now
a tick hands the look the GIL when it is due before the next tick, a stall no look
saw is recorded from its callback's end (``StallWatchdog._record_missed``), and the
stacks the ticks took during the run are its votes.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import run_queue_time

import looptools

THRESHOLD_MS = 50.0


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _stalls(count: int, seconds: float, spans: list[tuple[float, float]],
                  back: list[float] | None = None,
                  queued: list[float] | None = None) -> None:
    """``count`` spins of ``seconds``, each in its own task step; ``back`` gets the
    time the loop ran its next callback after each (the loop's first sign of life
    after the step, so no stall can have ended later), ``queued`` the time the loop
    thread waited for a CPU between the previous step's end and the spin's start (a
    busy machine's preemption, which delays the step's head and not its start)."""
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    waited = run_queue_time()
    for _ in range(count):
        began = time.perf_counter()
        if queued is not None:
            queued.append(run_queue_time() - waited)
        if back is not None:
            loop.call_soon(lambda: back.append(time.perf_counter()))
        _spin(seconds)
        spans.append((began, time.perf_counter()))
        waited = run_queue_time()
        await asyncio.sleep(0.12)


def _run(loop: str, main: Any) -> None:
    if loop == "asyncio":
        asyncio.run(main)
        return
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    if loop.startswith("qtasyncio"):
        from PySide6 import QtAsyncio

        QtAsyncio.run(main, keep_running=False, quit_qapp=True)
        return
    import qasync

    qasync.run(main)


def _matched(report: dict[str, Any], origin: float,
             spans: list[tuple[float, float]]) -> list[dict[str, Any] | None]:
    """For each true stall, the reported stall that overlaps it (None: missed)."""
    out = []
    for began, ended in spans:
        hits = [s for s in report["stalls"]
                if origin + s["started_at_s"] < ended
                and origin + s["started_at_s"] + s["duration_ms"] / 1000 > began]
        assert len(hits) <= 1, hits
        out.append(hits[0] if hits else None)
    return out


def _looks_rarely(monitor: Any, seconds: float = 0.2) -> Any:
    """The monitor's watchdog, made to look only every ``seconds`` while no stall is
    begun (a stall once begun is looked at as usual, every poll, to see its end)."""
    watchdog: Any = monitor.hub.get("stalls")
    assert watchdog is not None
    original = watchdog._next_wait
    watchdog._next_wait = lambda now, poll, idle_wait: (
        original(now, poll, idle_wait) if watchdog.current is not None else seconds)
    return watchdog


@pytest.mark.parametrize("loop", ["asyncio", "qasync", "qasync, no ticks", "qtasyncio",
                                  "qtasyncio, no ticks"])
def test_stalls_just_over_the_threshold_are_found_with_their_culprit(
        loop: str, machine: str) -> None:
    """(Without ticks, as on Windows or beside an app's own wakeup descriptor, a Qt
    loop's runs are all stamped and the thread looks about every half threshold.)"""
    spans: list[tuple[float, float]] = []
    back: list[float] = []
    queued: list[float] = []
    ticks = not loop.endswith("no ticks")
    with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS,
                           signal_ticks=ticks) as monitor:
        _run(loop, _stalls(30, 0.057, spans, back, queued))
    report = monitor.final_report
    assert report is not None
    assert report["stall_summary"]["watchdog"]["runs_stamped"] is not ticks
    found = _matched(report, monitor.started, spans)
    reported = [stall for stall in found if stall is not None]
    # Every one on an idle machine (the run's start is dated up to one poll late, so
    # a 57 ms stall reads 52-57 ms).  On a busy one ticks come late and the dating
    # error grows to ~8 ms: a stall that reads under the threshold is not reported.
    # (Before: 189 of 480 missed on an idle machine, 87 of 240 beside two burners;
    # after: 0 and 37.)
    # Without ticks the thread's looks get the GIL by a forced switch, up to a switch
    # interval late: in the whole suite's process (a larger heap, longer collections)
    # 1 of 30 was missed on the idle CI machine, on qasync and QtAsyncio alike.
    quiet_need = 30 if ticks else 28
    assert len(reported) >= (quiet_need if machine == "quiet" else 18), \
        ([None if s is None else s["duration_ms"] for s in found],
         report["stall_summary"]["watchdog"])
    # Never the wrong line: the spin, not the lines of its task step after it.
    assert {(s["culprit"] or {}).get("function") for s in reported} == {"_spin"}, \
        [{k: s[k] for k in ("started_at_s", "duration_ms", "detected_after_ms", "culprit",
                            "stack_source", "samples", "culprit_samples")}
         for s in reported if (s["culprit"] or {}).get("function") != "_spin"]
    # Never longer than it was: from the spin's task step (its head before the spin:
    # under 3 ms, and any time the loop thread waited for a CPU before the spin) to
    # the loop's next callback.  On an idle machine that callback runs µs after the
    # spin; on a busy one the step's tail can be preempted for ms (seen: 4-9 ms), and
    # the loop was away all that time.
    for stall, (began, _), next_, wait in zip(found, spans, back, queued, strict=True):
        if stall is not None:
            assert THRESHOLD_MS < stall["duration_ms"] <= (next_ - began + wait) * 1000 + 3.0, \
                (stall, wait)
    extra = [s for s in report["stalls"] if not any(s is r for r in reported)]
    assert not extra, (extra, report["stall_summary"]["watchdog"])  # nothing else reported


@pytest.mark.parametrize("loop", ["qasync", "qtasyncio"])
def test_each_look_votes_once(loop: str, machine: str) -> None:
    # Without ticks every run is stamped (its start is exact) and only the thread's
    # looks sample it, each from half the threshold on: a stall's votes are those
    # looks (gil_capture off: no faulthandler dump votes), each standing for the gap
    # since the one before when both were in the same function (``_weights``), else
    # for one look.  The look that began the stall had sampled the run just before
    # (``_sample_long_run``) and sampled it again: two votes, and a look that saw a
    # 57 ms spin as it ended, in the line after it, outvoted the spin (CI, in the
    # whole suite's process, where looks came 10-13 ms late).  And the looks after
    # it was begun counted one each, gap or not: a busy machine's sparse looks in a
    # 300 ms parse were outweighed by a 90 ms spin before it (test_monitor).
    from looptools._frames import culprit_of, stack_of

    looks: list[tuple[float, Any]] = []  # (when, the function the loop thread was in)
    spans: list[tuple[float, float]] = []
    with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS, signal_ticks=False,
                           gil_capture=False) as monitor:
        watchdog: Any = monitor.hub.get("stalls")
        check = watchdog._check

        def counted(now: float, *args: Any) -> None:
            state = watchdog.state
            if state is not None and state.thread_id is not None:
                culprit = culprit_of(stack_of(sys._current_frames().get(state.thread_id)))
                looks.append((now, culprit[:2] if culprit is not None else None))
            check(now, *args)

        watchdog._check = counted
        _run(loop, _stalls(10, 0.090, spans))
    report = monitor.final_report
    assert report is not None
    stalls = [s for s in _matched(report, monitor.started, spans) if s is not None]
    assert len(stalls) >= (10 if machine == "quiet" else 6), len(stalls)
    poll = watchdog.poll
    for stall in stalls:
        began = monitor.started + stall["started_at_s"]
        ended = began + stall["duration_ms"] / 1000
        seen = [look for look in looks if began + THRESHOLD_MS / 2000 <= look[0] < ended]
        votes = 1 + sum(max(1, round((now - last) / poll)) if here is not None and here == there
                        else 1
                        for (last, there), (now, here) in itertools.pairwise(seen))
        assert stall["samples"] == votes, (stall["samples"], votes, [
            (round((now - began) * 1e3, 1), here) for now, here in seen])


def _gil_held_for(seconds: float) -> range:
    """What ``sum`` takes about ``seconds`` to add up: a C call that holds the GIL
    and runs no check for signals (the loop thread runs no tick meanwhile)."""
    n, took = 200_000, 0.0
    while took < 0.004:
        n *= 2
        began = time.perf_counter()
        sum(range(n))
        took = time.perf_counter() - began
    return range(int(n * seconds / took))


async def _late_ticked(count: int, spans: list[tuple[float, float]],
                       back: list[float]) -> None:
    """``count`` task steps of 65 ms, each a 15 ms C call then a 50 ms spin; ``back``
    gets the time the loop ran its next callback after each."""
    held = _gil_held_for(0.015)
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    for _ in range(count):
        began = time.perf_counter()
        loop.call_soon(lambda: back.append(time.perf_counter()))
        sum(held)
        _spin(0.050)
        spans.append((began, time.perf_counter()))
        await asyncio.sleep(0.12)


@pytest.mark.parametrize("loop", ["asyncio", "qasync", "qtasyncio"])
def test_a_run_whose_first_tick_came_late_is_dated_from_when_it_was_due(
        loop: str, machine: str) -> None:
    # A run that begins with a C call holding the GIL: the loop thread runs no tick
    # until the call returns, 15 ms in, and the tick that finds the run is 15-20 ms
    # after the one before.  It was due before the run began, or within a poll of
    # it: a tick due earlier would have run before the callback (the loop thread
    # checks for signals at the entry of the function that runs each callback),
    # so the run is dated from then.  Dated by the tick that found it, or the next
    # (after a late tick), these 65 ms runs read 45-50 ms: never reported.  (Seen
    # in the whole suite's process: ticks 9-14 ms apart at a 57 ms spin's start
    # made 1 in ~300 such stalls read under the threshold.)  The Qt loops without
    # the dispatcher detector, whose busy accounting makes the hook stamp every run.
    # (A look of the watchdog thread that waited for the GIL through the C call
    # dated the run at the look before it, up to a poll before it began: dated now
    # as a tick would.)
    spans: list[tuple[float, float]] = []
    back: list[float] = []
    with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS,
                           disable=("dispatcher",)) as monitor:
        _run(loop, _late_ticked(12, spans, back))
    report = monitor.final_report
    assert report is not None
    assert report["stall_summary"]["watchdog"]["runs_stamped"] is False
    found = _matched(report, monitor.started, spans)
    reported = [stall for stall in found if stall is not None]
    # Beside burners the loop thread waits for a CPU in some steps, and a step whose
    # own part (less that wait) is within half the threshold is the machine's, not
    # the app's (_starved): 7-12 of 12 found beside two burners, 5-7 with a second
    # app and its two burners beside them too; beside four burners 10-12, the
    # missed ones mostly judged the machine's (watchdog.starved 1 for 1-2 missed).
    assert len(reported) >= (12 if machine == "quiet" else 6), \
        ([None if s is None else s["duration_ms"] for s in found],
         [round((ended - began) * 1000, 1) for began, ended in spans])
    for stall, (began, ended), next_ in zip(found, spans, back, strict=True):
        if stall is not None:
            # Dated within a poll (5 ms) of its start, and never before it: never
            # longer than from the step's start to the loop's next callback.
            assert (ended - began) * 1000 - 6.0 <= stall["duration_ms"] \
                <= (next_ - began) * 1000 + 3.0, (stall, (ended - began) * 1000)


def test_a_stall_no_look_saw_is_recorded_from_its_callbacks_end() -> None:
    # The watchdog thread made to look only every 200 ms while no stall is begun, and
    # no tick handing it the GIL before then: most of these 70 ms stalls end between
    # two looks.  Each is
    # still recorded, from its callback's end, with the stacks the ticks took in it.
    spans: list[tuple[float, float]] = []
    with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS) as monitor:
        watchdog = _looks_rarely(monitor)
        _run("asyncio", _stalls(8, 0.070, spans))
    report = monitor.final_report
    assert report is not None
    found = _matched(report, monitor.started, spans)
    assert all(stall is not None for stall in found), found
    assert watchdog.ticks > 100, "the ticks sample the runs: this test needs them"
    assert watchdog.after_the_fact >= 1, watchdog.after_the_fact  # ~5 of 8 here
    after = [s for s in found if s is not None and s["detected_after_ms"] is None]
    assert len(after) == watchdog.after_the_fact \
        == report["stall_summary"]["watchdog"]["after_the_fact"]
    for stall in after:
        assert stall["culprit"]["function"] == "_spin", stall
        assert stall["stack_source"] == "sampled" and stall["samples"] >= 3
        assert stall["task"] is not None  # named from its callback, like a live one
        # The step is timed exactly, the spin in it by the test: in the whole suite's
        # process 2 of 210 such steps read 72.8 and 76.4 ms (a tick's hand-off or
        # a collection at the step's head or tail is in the step); CI read 71.8.
        assert 62.0 <= stall["duration_ms"] <= 77.0, stall



def test_a_stall_no_look_saw_is_recorded_when_its_loop_stops(machine: str) -> None:
    # The same, with the loop stopping right after each stall: the watchdog may not
    # look again while it runs (it looks every 200 ms here), so what it missed is
    # recorded as the loop stops (``_record_missed_now`` at ``loop_stopped``) — there
    # by the time ``asyncio.run`` returns.
    async def one_stall(spans: list[tuple[float, float]]) -> None:
        await asyncio.sleep(0.05)
        began = time.perf_counter()
        _spin(0.070)
        spans.append((began, time.perf_counter()))

    with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS) as monitor:
        watchdog = _looks_rarely(monitor)
        counts = []
        spans: list[tuple[float, float]] = []
        for _ in range(6):
            before = watchdog.count
            asyncio.run(one_stall(spans))
            counts.append(watchdog.count - before)  # before the thread's next look
        after_the_fact = watchdog.after_the_fact
    assert counts == [1] * 6, counts
    assert after_the_fact >= 1, after_the_fact  # the rest were seen live, as usual
    report = monitor.final_report
    assert report is not None
    assert all(s is not None and s["culprit"]["function"] == "_spin"
               for s in _matched(report, monitor.started, spans))

def _tail(seconds: float) -> None:
    """The lines after a blocking call (a spin of its own, not ``_spin``)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _timer_slots(loop: str, count: int, body: Any,
                 **settings: Any) -> tuple[Any, list[tuple[float, float]]]:
    """``body`` run ``count`` times as a Qt timer's slot, 150 ms apart, on ``loop``
    ("qt": a Qt main thread without asyncio), under ``looptools.monitor`` at
    THRESHOLD_MS with ``settings``: the monitor, and each slot's span."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    spans: list[tuple[float, float]] = []
    app = QApplication.instance() or QApplication([])

    def slot() -> None:
        began = time.perf_counter()
        body()
        spans.append((began, time.perf_counter()))
        if len(spans) == count:
            timer.stop()
            if loop == "qt":
                app.quit()

    timer = QTimer()
    timer.setInterval(150)
    timer.timeout.connect(slot)

    async def main() -> None:
        timer.start()
        while len(spans) < count:
            await asyncio.sleep(0.05)

    with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS, **settings) as monitor:
        if loop == "qt":
            timer.start()
            app.exec()
        else:
            _run(loop, main())
    return monitor, spans


@pytest.mark.parametrize("loop", ["qt", "qasync", "qasync, no ticks", "qtasyncio"])
def test_a_qt_slot_just_over_the_threshold_is_named_by_its_samples(
        loop: str, machine: str) -> None:
    # A plain Qt slot (no asyncio handle: no hook sees it run) that blocks 50 ms, then
    # runs 10 ms of other lines.  A look sees the stall at ~50 ms, in those lines; the
    # stacks the ticks and looks took in the slot since half the threshold
    # (``_sample_slot``) name the blocking call.  Before, the slot had no samples but
    # the look's, and 7 of this test's 8 cases failed, most stalls named ``_tail``
    # (helper 46: a 48 ms slot beside a growing heap was named by the line after
    # it, nearly every time).
    count = 12

    def slot() -> None:
        _spin(0.050)
        _tail(0.010)

    ticks = not loop.endswith("no ticks")
    monitor, spans = _timer_slots(loop.split(",")[0], count, slot, signal_ticks=ticks)
    report = monitor.final_report
    assert report is not None
    assert report["loop"]["kind"] == loop.split(",")[0], report["loop"]
    found = [s for s in _matched(report, monitor.started, spans) if s is not None]
    # Without ticks the thread's looks each wait for the GIL (a switch interval, and
    # in the whole suite's process up to 13 ms: looks 11-13 ms apart), and now and
    # then none falls in a 60 ms slot's last 10 ms.  Then no look saw the slot past
    # the threshold, which alone makes a slot (no hook times it) a stall, and it is
    # not reported.  Measured in that process (test_dispatcher, test_model and
    # test_monitor run first), idle machine: 2-9 slots of 960 in a run of 80 of
    # these cases (five runs, at 35cbba5 and after it); CI found 11 of 12 once.
    # Looks spaced a poll apart (their wait for the GIL taken off the next wait)
    # missed as many and misnamed 4-8.  With ticks, CI at 161d7ce found 11 of 12 once
    # (quiet, qasync, in the whole suite's process); not seen since in 180 slots of
    # this case after test_dispatcher, test_model and test_monitor in one process,
    # nor in 480 by benchmarks/near_threshold.py --slot --ms 50 --tail 10 on the
    # three Qt kinds.  One slot of twelve may go, then, either way.
    quiet_need = count - 1
    assert len(found) >= (quiet_need if machine == "quiet" else count * 2 // 3), \
        (len(found), report["stall_summary"]["watchdog"])
    # Beside burners, without ticks, the thread's looks sample the slot about every
    # 10 ms and a preemption in the spin can leave it two samples: 2 of 96 stalls were
    # named ``_tail`` in 8 runs (before the slot samples: about half), and a CI run of
    # this case failed on 1 of 12.  At most one, then; none on an idle machine.
    wrong = [(s["duration_ms"], s["culprit"], s["samples"]) for s in found
             if (s["culprit"] or {}).get("function") != "_spin"]
    assert len(wrong) <= (0 if machine == "quiet" else 1), wrong


@pytest.mark.parametrize("loop", ["qt", "qasync", "qtasyncio"])
def test_a_qt_slot_stall_never_begins_before_its_slot(loop: str, machine: str) -> None:
    # No hook stamps a Qt slot.  It was dated from the loop's last sign of life (the
    # last heartbeat or tick, up to a poll before it): 25-38 % of 57 ms slots were
    # dated 1-5 ms before they began on an idle machine, and beside burners 45 ms
    # slots read 50.5 ms, false stalls (helper 50).  A tick that finds a slot running
    # (not at its entry) found one begun before that tick was due; it is dated then
    # (``StallWatchdog._slot_due``), or exactly when a tick ran at its entry.
    queued: list[float] = []  # before each slot's first line, since the last one's end
    count = 16
    waited = [run_queue_time()]

    def slot() -> None:
        queued.append(run_queue_time() - waited[0])
        _spin(0.057)
        waited[0] = run_queue_time()

    monitor, spans = _timer_slots(loop, count, slot)
    report = monitor.final_report
    assert report is not None and report["loop"]["kind"] == loop, report["loop"]
    origin = monitor.started
    found = 0
    early: list[tuple[float, float, float, float, float]] = []
    ended_before = -1.0
    for (began, ended), wait in zip(spans, queued, strict=True):
        hits = [s for s in report["stalls"] if origin + s["started_at_s"] < ended
                and origin + s["started_at_s"] + s["duration_ms"] / 1000 > began]
        found += bool(hits)
        # A slot the timer ran right after the last one (late for it, beside burners)
        # has no sign of life of the loop before it but that slot: one stall, from
        # the first (the loop never came back between).  The slot began before its
        # first line by the time the loop thread then waited for a CPU (beside
        # burners, up to 2.5 ms between the tick at its entry and that line).
        if began - ended_before > 0.010:
            early += [(round((origin + s["started_at_s"] - began) * 1000, 2), s["duration_ms"],
                       round((ended - began) * 1000, 1), round((began - ended_before) * 1000),
                       round(wait * 1000, 2))
                      for s in hits if origin + s["started_at_s"] < began - wait - 0.0005]
        ended_before = ended
    assert early == [], early
    # Dated up to a poll late, a 57 ms slot is now and then seen under the threshold
    # (2 of 80 on an idle machine, benchmarks/near_threshold.py --slot --ms 57); most
    # are found, so the dates above were checked.
    assert found >= (count - 3 if machine == "quiet" else count // 2), (found, count)


@pytest.mark.parametrize("loop", ["qasync", "qtasyncio"])
def test_a_qt_slot_before_the_first_heartbeat_is_sampled(loop: str, machine: str) -> None:
    # A slot queued before the loop starts (``QTimer.singleShot(0)``) runs before the
    # loop's first heartbeat, which is where qasync's and QtAsyncio's loop frame was
    # learnt: the slot had no samples of its own, and a 52 ms spin then 10 ms of other
    # lines was named by those lines in 3 of 15 QtAsyncio runs (none of 15 after).
    # The frame is known when the loop starts, from the run_forever that starts it.
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    runs = 5
    named: list[str | None] = []
    missed: list[Any] = []
    for _ in range(runs):
        spans: list[tuple[float, float]] = []
        known: list[bool] = []

        def slot(spans: list[tuple[float, float]] = spans, known: list[bool] = known) -> None:
            stalls = looptools.active().hub.get("stalls")  # type: ignore[union-attr]
            known.append(sys._getframe(0).f_back is stalls._loop_frame)  # type: ignore[union-attr]
            began = time.perf_counter()
            _spin(0.052)
            _tail(0.010)
            spans.append((began, time.perf_counter()))

        async def main() -> None:
            await asyncio.sleep(0.2)

        QTimer.singleShot(0, slot)
        with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS) as monitor:
            _run(loop, main())
        report = monitor.final_report
        assert report is not None and report["loop"]["kind"] == loop, report
        assert known == [True]  # the loop's frame, known before the first heartbeat
        found = _matched(report, monitor.started, spans)[0]
        if found is not None:
            named.append((found["culprit"] or {}).get("function"))
        else:
            missed.append((spans, monitor.started, report["stalls"],
                           report["stall_summary"]["watchdog"]))
    assert len(named) >= (runs if machine == "quiet" else runs - 1), (named, missed)
    wrong = [name for name in named if name != "_spin"]
    assert len(wrong) <= (0 if machine == "quiet" else 1), named


def test_a_callback_that_ran_a_loop_of_its_own_is_not_a_stall(qapp: Any) -> None:
    # A modal dialog's loop inside a callback (QEventLoop.exec, as QDialog.exec runs
    # one): the callback lasts 150 ms, but the loop lived all along (its heartbeat and
    # other callbacks ran inside).  A slow callback, not a stall, even with 30 ms of
    # its own Python before the dialog.
    import qasync
    from PySide6.QtCore import QEventLoop, QTimer

    beats: list[float] = []

    def modal(own: float) -> None:
        _spin(own)
        nested = QEventLoop()
        QTimer.singleShot(150, nested.quit)
        nested.exec()

    async def healthy() -> None:
        while True:
            beats.append(time.perf_counter())
            await asyncio.sleep(0.005)

    async def main() -> None:
        task = asyncio.ensure_future(healthy())
        for own in (0.0, 0.03, 0.0, 0.03):
            await asyncio.sleep(0.1)
            asyncio.get_running_loop().call_soon(modal, own)
        await asyncio.sleep(0.3)
        task.cancel()

    loop = qasync.QEventLoop(qapp)
    try:
        with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS) as monitor:
            loop.run_until_complete(main())
    finally:
        loop.close()
    report = monitor.final_report
    assert report is not None
    assert report["stalls"] == []
    slow = [row for row in report["slow_callbacks"] if "modal" in str(row)]
    assert slow and sum(row["count"] for row in slow) == 4, report["slow_callbacks"]
    # the healthy task ran inside the dialogs' loops: the loop lived
    assert max(b - a for a, b in itertools.pairwise(beats)) < THRESHOLD_MS / 1000


def _calibrated_sum(seconds: float) -> int:
    """An ``n`` for which ``sum(range(n))`` (one C call that holds the GIL) takes about
    ``seconds``."""
    n = 2_000_000
    took = []
    for _ in range(3):
        began = time.perf_counter()
        sum(range(n))
        took.append(time.perf_counter() - began)
    return int(n * seconds / min(took))


def _python_then_c(python_s: float, n: int) -> None:
    _spin(python_s)
    sum(range(n))  # HOLDS THE GIL


def test_a_missed_stall_whose_end_held_the_gil_is_recorded_and_named_by_it(
        machine: str) -> None:
    # 40 ms of Python, then a C call holding the GIL for ~45 ms, the last thing its
    # callback does: no tick or look can run in the call, and the watchdog (made to
    # look only every 200 ms) does not begin the stall.  Its run has samples only in
    # the first part, none near its end: before, it was lost; it is recorded from its
    # callback's end, and named by the call: the tick (or look) that finds the call
    # returned stands for it, as the loop thread's dumps taken during it do.  (Beside
    # two burners the call burns under 20 ms of CPU, too little for a dump, and a
    # look that let the GIL go midway hid it from the tick: 41 of 94 such stalls
    # were named by the Python before it; one CI run failed this test quiet.)
    spans: list[tuple[float, float]] = []
    n = _calibrated_sum(0.045)

    async def main() -> None:
        await asyncio.sleep(0.2)
        for _ in range(6):
            began = time.perf_counter()
            _python_then_c(0.040, n)
            spans.append((began, time.perf_counter()))
            await asyncio.sleep(0.25)

    with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS) as monitor:
        watchdog = _looks_rarely(monitor)
        asyncio.run(main())
    report = monitor.final_report
    assert report is not None
    if report["stall_summary"]["watchdog"]["gil_stacks"] is None:
        pytest.skip("no stack dumps during a GIL-holding call on this platform")
    found = _matched(report, monitor.started, spans)
    durations = [round((end - began) * 1000, 1) for began, end in spans]
    assert all(stall is not None for stall in found), (
        [None if s is None else (s["duration_ms"], s["detected_after_ms"], s["culprit"])
         for s in found], durations, report["stall_summary"]["watchdog"])
    assert watchdog.after_the_fact >= 1, watchdog.after_the_fact
    line = next(number for number, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if "# HOLDS THE GIL" in text and "sum(range(n))" in text)
    named = {"function": "_python_then_c", "file": __file__, "line": line}
    wrong = [stall for stall in found if stall is not None and stall["culprit"] != named]
    # Beside the burners about 1 in 100 is still named by the Python before the call
    # (5 of ~600 in a harness of this test's rounds; before, 41 of 94): one of six
    # is let pass there, none on a quiet machine.
    assert len(wrong) <= (1 if machine == "busy" else 0), wrong


def _sleep_then_c(sleep_s: float, n: int) -> None:
    time.sleep(sleep_s)  # RELEASES THE GIL
    sum(range(n))


def _spin_then_c(spin_s: float, n: int) -> None:
    _spin(spin_s)
    sum(range(n))  # HOLDS THE GIL AT LENGTH


@pytest.mark.parametrize("loop", ["asyncio", "qasync"])
def test_a_stall_is_gil_held_only_if_the_gil_was_held_for_most_of_it(
        loop: str, machine: str) -> None:
    # A stall the watchdog saw live, with the GIL, for most of its length is not
    # "GIL held" because one look waited for the GIL at its end: 400 ms of a
    # GIL-releasing call, then a C call that holds the GIL 60 ms.  (The 2-3 s zlib and
    # sha256 calls of benchmarks/accuracy.py were labelled so: their output's copy at
    # the end holds the GIL.)  The other way round, 60 ms of Python then 400 ms
    # holding the GIL, it is.
    short, long = _calibrated_sum(0.060), _calibrated_sum(0.400)
    spans: dict[str, tuple[float, float]] = {}

    async def main() -> None:
        await asyncio.sleep(0.2)
        for name, call in (("sleep", lambda: _sleep_then_c(0.400, short)),
                           ("gil", lambda: _spin_then_c(0.060, long))):
            began = time.perf_counter()
            call()
            spans[name] = (began, time.perf_counter())
            await asyncio.sleep(0.2)

    with looptools.monitor(report=None, threshold_ms=THRESHOLD_MS) as monitor:
        _run(loop, main())
    report = monitor.final_report
    assert report is not None and report["loop"]["kind"] == loop
    sleep, gil = _matched(report, monitor.started, [spans["sleep"], spans["gil"]])
    assert sleep is not None and gil is not None, report["stalls"]
    assert sleep["culprit"]["function"] == "_sleep_then_c", sleep
    assert sleep["gil_held"] is False, (sleep["duration_ms"], sleep["stack_source"])
    assert gil["culprit"]["function"] == "_spin_then_c", gil
    if report["stall_summary"]["watchdog"]["gil_judged_by"] != "lateness":
        assert gil["gil_held"] is True, (gil["duration_ms"], gil["stack_source"])


def test_a_gil_hold_just_over_the_threshold_is_one_stall_as_long_as_its_callback(
        machine: str, tmp_path: Path) -> None:
    """A C call holding the GIL for ~105 ms (no bytecode, no tick, no look meanwhile) at a
    100 ms threshold, then 15 ms more of Python in the same callback.  The watchdog
    gets the GIL as the call returns, still in that callback.  Its run, first seen then,
    was dated by the tick due after the last one ran (up to a poll late), read under
    the threshold, and the hold was recorded after the fact as a stall of its own; a
    look later the run became a second, overlapping one: 12 of 30 rounds, with a test
    run beside it (the old code failed this test's quiet case in 4 of 5 runs).  Now
    each round is one stall, never longer than its callback ran.  (Beside burners a
    round still goes unfound now and then: 3 in 320, against ~3 in 90 before
    StallWatchdog._no_python; at most one in ten is let pass here.)"""
    from helpers import run_app

    app = Path(__file__).parent / "apps" / "gil_hold_rounds.py"
    run = run_app([str(app), "20", "105", "15"], tmp_path, threshold_ms="100", summary="0")
    assert run.returncode == 0 and run.stdout == "done\n", run.stderr[-2000:]
    assert run.report is not None
    origin = run.marks["origin"]  # type: ignore[index]
    rounds = run.marks["rounds"]  # type: ignore[index]
    spans = sorted((s["started_at_s"] + origin, s["started_at_s"] + origin
                    + s["duration_ms"] / 1000, s["stack_source"]) for s in run.report["stalls"])
    overlapping = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1] - 1e-6]
    assert overlapping == [], overlapping
    checked, missed = 0, []
    for start, _hold_end, end in rounds:
        mine = [s for s in spans if s[0] < end and s[1] > start]
        assert len(mine) <= 1, (start, end, mine)
        if end - start > 0.115:  # over the threshold beyond any doubt
            checked += 1
            if not mine:
                missed.append(round((end - start) * 1000, 1))
                continue
            # Never longer than the callback ran (its start at most a poll early).
            assert mine[0][1] - mine[0][0] <= end - start + 0.010, (start, end, mine)
    assert checked >= 10, rounds
    assert len(missed) <= checked // 10, (missed, checked, spans)
