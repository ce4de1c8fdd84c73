"""The in-process API on real loops: start/stop, undo, crash isolation, detection timing."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import validate

import looptools
from looptools.inapp.detectors.stalls import Stall
from looptools.inapp.hub import Detector


class _Recorder(Detector):
    name = "recorder"

    def __init__(self) -> None:
        self.started: list[float] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def stall_started(self, stall: Any) -> None:
        self.started.append(time.perf_counter())

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))


class _Broken(Detector):
    name = "broken"
    calls = 0

    def heartbeat(self, now: float, lag: float) -> None:
        type(self).calls += 1
        raise RuntimeError("detector bug")


def _blocking_step(seconds: float, marks: dict[str, float]) -> None:
    marks["start"] = time.perf_counter()
    time.sleep(seconds)
    marks["end"] = time.perf_counter()


async def _app(marks: dict[str, float]) -> str:
    await asyncio.sleep(0.1)
    _blocking_step(0.2, marks)
    await asyncio.sleep(0.1)
    return "ok"


def _run(kind: str, coro: Any) -> Any:
    if kind == "asyncio":
        return asyncio.run(coro)
    if kind == "qasync":
        import qasync
        from PySide6.QtWidgets import QApplication

        QApplication.instance() or QApplication([])
        return qasync.run(coro)
    raise AssertionError(kind)


@pytest.mark.parametrize("ticks", [True, False], ids=["ticks", "thread-only"])
@pytest.mark.parametrize("kind", ["asyncio", "qasync"])
def test_stall_is_reported_while_it_happens(kind: str, ticks: bool, machine: str,
                                           tmp_path: Path) -> None:
    if kind == "qasync":
        # The first Qt loop of a process starts Qt up lazily, holding the GIL for
        # up to ~60 ms: a real stall, but not the one this test is about.
        _run(kind, asyncio.sleep(0))
    marks: dict[str, float] = {}
    recorder = _Recorder()
    with looptools.monitor(report=str(tmp_path / "r.json"), signal_ticks=ticks) as monitor:
        monitor.hub.add(recorder)
        assert _run(kind, _app(marks)) == "ok"
        watchdog = monitor.hub.get("stalls")
        assert watchdog is not None and (watchdog.ticks > 0) is ticks
    report = monitor.final_report
    assert report is not None
    validate(report)
    assert (tmp_path / "r.json").exists()
    assert len(report["stalls"]) == 1
    # The watchdog saw the stall before the blocking call returned.
    assert recorder.started and marks["start"] < recorder.started[0] < marks["end"]
    kinds = [kind for kind, _ in recorder.events]
    assert kinds.count("stall_started") == 1 and kinds.count("stall_ended") == 1
    started = dict(recorder.events)["stall_started"]
    assert started["culprit"]["function"] == "_blocking_step"
    how = report["stall_summary"]["watchdog"]
    assert (how["ticks"] > 0) is ticks and how["looks"] > 0
    assert how["no_ticks"] == (None if ticks else "switched off (signal_ticks)")


def test_broken_detector_is_switched_off_once_and_app_runs_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _Broken.calls = 0
    marks: dict[str, float] = {}
    with looptools.monitor(report=None) as monitor:
        monitor.hub.add(_Broken())
        assert asyncio.run(_app(marks)) == "ok"
    report = monitor.final_report
    assert report is not None
    assert _Broken.calls == 1
    assert [e["detector"] for e in report["detector_errors"]] == ["broken"]
    assert "detector bug" in report["detector_errors"][0]["error"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "broken" in line]
    assert len(warnings) == 1 and "switched off" in warnings[0]
    assert len(report["stalls"]) == 1  # the other detectors carried on


def test_stop_restores_everything_it_patched() -> None:
    import asyncio.events

    original_run = asyncio.events.Handle.__dict__["_run"]
    original_set = asyncio.events._set_running_loop
    original_sleep = time.sleep

    async def inside() -> None:
        # No hook on asyncio's own loop: the watchdog finds the running handle on
        # the loop thread's stack (see looptools.inapp.state).
        assert asyncio.events.Handle.__dict__["_run"] is original_run
        assert monitor.state is not None
        assert monitor.state.run_code is original_run.__code__
        assert time.sleep is not original_sleep  # blockbuster is active
        watchdog = monitor.hub.get("stalls")
        assert watchdog is not None and watchdog.ticking
        # The ticks: a real-time signal from a timer aimed at this thread alone.
        assert signal.getsignal(watchdog._tick_signal) == watchdog._tick
        assert watchdog._tick_signal != signal.SIGALRM
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        loop = asyncio.get_running_loop()
        assert "create_task" in vars(loop)
        await asyncio.sleep(0.05)

    monitor = looptools.monitor(report=None).start()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(inside())
    finally:
        monitor.stop()
        assert "create_task" not in vars(loop)
        assert loop.get_exception_handler() is None
        loop.close()
    assert asyncio.events.Handle.__dict__["_run"] is original_run
    assert asyncio.events._set_running_loop is original_set
    assert time.sleep is original_sleep
    assert all(signal.getsignal(s) == signal.SIG_DFL
               for s in range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


async def _queue_traffic(seconds: float) -> int:
    """Two tasks passing items through a bounded queue: a busy loop that
    releases the GIL at every select."""
    q: asyncio.Queue[int] = asyncio.Queue(maxsize=100)
    end = time.perf_counter() + seconds
    moved = 0

    async def produce() -> None:
        while time.perf_counter() < end:
            for i in range(1000):
                await q.put(i)
        await q.put(-1)

    async def consume() -> None:
        nonlocal moved
        while await q.get() >= 0:
            moved += 1

    await asyncio.gather(produce(), consume())
    return moved


def _spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def _hot_parse(seconds: float) -> int:
    rows = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        rows += 1
    return rows


async def _indexer() -> str:
    await asyncio.sleep(0.05)
    _spin(0.09)  # the stall is already seen, and sampled, here...
    _hot_parse(0.3)  # ...but this is where nearly all of it goes
    await asyncio.sleep(0.05)
    return "ok"


@pytest.mark.parametrize("ticks", [True, False], ids=["ticks", "thread-only"])
def test_the_culprit_is_where_most_samples_of_the_stall_were(ticks: bool, machine: str) -> None:
    with looptools.monitor(report=None, signal_ticks=ticks) as monitor:
        assert asyncio.run(_indexer()) == "ok"
    report = monitor.final_report
    assert report is not None
    validate(report)
    assert len(report["stalls"]) == 1, report["stalls"]
    stall = report["stalls"][0]
    # The first sample (~50 ms in) was in _spin; the ~60 that followed in _hot_parse
    # (a busy machine keeps the watchdog off the CPU for some of its looks).
    assert stall["culprit"]["function"] == "_hot_parse", stall
    assert stall["stack"][-1] == stall["culprit"]  # the stack is one sampled there
    least = 20 if machine == "quiet" else 8
    assert stall["samples"] >= least and stall["culprit_samples"] >= stall["samples"] * 0.6, \
        stall
    assert stall["culprit_samples"] < stall["samples"]  # _spin's were counted too
    assert all(f["function"] != "StallWatchdog._tick" for f in stall["stack"])


@pytest.mark.parametrize("wake_timer", [True, False], ids=["wake-timer", "routine-looks"])
def test_ticks_look_for_the_watchdog_thread_on_a_busy_loop(wake_timer: bool) -> None:
    with looptools.monitor(report=None, wake_timer=wake_timer) as monitor:
        watchdog = monitor.hub.get("stalls")
        assert asyncio.run(_queue_traffic(0.6)) > 0
        assert watchdog is not None
        ticks, looks, handoffs = watchdog.ticks, watchdog.looks, watchdog.handoffs
        sleeps_on = watchdog.sleeps_on
    report = monitor.final_report
    assert report is not None and report["stalls"] == []
    assert report["stall_summary"]["watchdog"]["wake_timer"] is wake_timer
    assert ticks >= 60, ticks
    if wake_timer:
        # The ticks put the thread's wake-up back while the loop lives: it does
        # not wake to look on this healthy loop (but at its start and end), nor
        # wake much to sleep on.
        assert looks <= 4, (looks, handoffs, sleeps_on)
        assert sleeps_on <= 4, (looks, handoffs, sleeps_on)
        return
    # Ticks every 5 ms; the thread looks about once per threshold (50 ms), no
    # more, and is not starved of the GIL on this busy loop: a due tick hands it
    # over (within 2 ms, or the thread takes it at the next switch interval: on
    # a busy machine the hand-off itself often times out).
    assert looks <= ticks // 3, (looks, ticks)
    assert looks >= 6, (looks, handoffs)


@pytest.mark.parametrize("posix_timers", [True, False], ids=["posix-timer", "setitimer"])
def test_an_app_that_uses_sigalrm_keeps_it_and_stalls_are_still_seen(
        posix_timers: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from looptools.inapp import _posix_timer

    if not posix_timers:  # as on a platform without timer_create
        monkeypatch.setattr(_posix_timer, "create", lambda *args, **kwargs: None)
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        marks: dict[str, float] = {}
        with looptools.monitor(report=None) as monitor:
            assert asyncio.run(_app(marks)) == "ok"
            watchdog = monitor.hub.get("stalls")
            assert watchdog is not None
            # Ticks on a signal of their own where there are POSIX timers; none
            # where only SIGALRM could carry them and the app has it.
            assert (watchdog.ticks > 0) is posix_timers
        assert signal.getsignal(signal.SIGALRM) is handler
        assert fired == []  # no timer of ours ever fired into the app's handler
    finally:
        signal.signal(signal.SIGALRM, previous)
    report = monitor.final_report
    assert report is not None and len(report["stalls"]) == 1
    assert report["stalls"][0]["culprit"]["function"] == "_blocking_step"
    assert report["stall_summary"]["watchdog"]["no_ticks"] == (
        None if posix_timers else "the app uses SIGALRM or the real-time interval timer")


def test_a_failing_tick_stops_with_one_warning_and_the_thread_looks_alone(
        capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> None:
        raise RuntimeError("tick bug")

    marks: dict[str, float] = {}
    with looptools.monitor(report=None) as monitor:
        watchdog = monitor.hub.get("stalls")
        assert watchdog is not None
        watchdog._hand_off = broken  # type: ignore[method-assign]  # the first handoff raises
        assert asyncio.run(_app(marks)) == "ok"
        assert watchdog.ticks > 0 and not watchdog.ticking
        assert signal.getsignal(watchdog._tick_signal) == signal.SIG_DFL
    warnings = [line for line in capsys.readouterr().err.splitlines() if "ticks failed" in line]
    assert len(warnings) == 1 and "tick bug" in warnings[0]
    report = monitor.final_report
    assert report is not None and report["detector_errors"] == []
    assert len(report["stalls"]) == 1
    assert report["stalls"][0]["detected_after_ms"] is not None  # seen while it happened


def test_install_returns_running_monitor_and_uninstall_stops_it(tmp_path: Path) -> None:
    # What the exit hooks go into, as they were: threading's calls at shutdown (see
    # Monitor._at_shutdown), os._exit.
    shutdown_calls = list(threading._threading_atexits)  # type: ignore[attr-defined]
    original_exit = os._exit
    monitor = looptools.install(report=str(tmp_path / "x.json"), summary=False)
    try:
        assert looptools.install() is monitor
        assert looptools.active() is monitor
        assert len(threading._threading_atexits) == len(shutdown_calls) + 1  # type: ignore[attr-defined]
        assert os._exit is not original_exit
    finally:
        report = looptools.uninstall()
    assert report is not None and report["loop"]["kind"] == "none"
    assert looptools.active() is None
    assert looptools.uninstall() is None
    assert threading._threading_atexits == shutdown_calls  # type: ignore[attr-defined]
    assert os._exit is original_exit


def test_attaches_to_a_loop_already_running(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        with looptools.monitor(report=None) as monitor:
            await asyncio.sleep(0.05)
            time.sleep(0.12)
            await asyncio.sleep(0.05)
        return monitor.final_report  # type: ignore[return-value]

    report = asyncio.run(main())
    assert report["loop"]["kind"] == "asyncio"
    assert len(report["stalls"]) == 1


def test_public_api_is_pinned() -> None:
    assert sorted(looptools.__all__) == sorted([
        "Monitor", "Settings", "SettingsError", "__version__", "active", "install",
        "monitor", "resolve", "uninstall",
    ])


def test_core_import_pulls_in_no_ui() -> None:
    import subprocess

    code = ("import sys, looptools; "
            "print(sorted(m for m in ('click', 'rich', 'PySide6', 'qasync') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_qtasyncio_callbacks_keep_their_semantics_under_the_inline_replacement() -> None:
    import contextvars

    import PySide6.QtAsyncio as QtAsyncio
    from PySide6.QtAsyncio.events import QAsyncioHandle
    from PySide6.QtWidgets import QApplication

    from looptools.plugins.qtasyncio_loop import _known_cb

    original = QAsyncioHandle.__dict__["_cb"]
    # The installed PySide6's _cb is the one the replacement repeats inline; a
    # PySide6 whose _cb differs makes this fail (the replacement then calls it).
    assert _known_cb(original)
    QApplication.instance() or QApplication([])
    ran: list[str] = []
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outside")

    async def main() -> str:
        loop = asyncio.get_running_loop()
        assert QAsyncioHandle.__dict__["_cb"].__wrapped__ is original
        loop.call_soon(ran.append, "cancelled").cancel()
        loop.call_soon(lambda: ran.append(var.get()))
        context = contextvars.copy_context()
        context.run(var.set, "inside")
        loop.call_soon(lambda: ran.append(var.get()), context=context)
        await asyncio.sleep(0.05)
        return "ok"

    with looptools.monitor(report=None):
        assert QtAsyncio.run(main(), keep_running=False, quit_qapp=True) == "ok"
    assert ran == ["outside", "inside"]
    assert QAsyncioHandle.__dict__["_cb"] is original


def test_ticks_stopped_from_another_thread_are_undone_on_the_main_thread() -> None:
    import threading

    tick_signal: list[int] = []

    async def app() -> None:
        await asyncio.sleep(0.05)
        watchdog = monitor.hub.get("stalls")
        assert watchdog is not None
        tick_signal.append(watchdog._tick_signal)
        assert signal.getsignal(watchdog._tick_signal) != signal.SIG_DFL
        stopper = threading.Thread(target=monitor.stop, kwargs={"write": False})
        stopper.start()
        stopper.join()
        await asyncio.sleep(0.05)  # the next tick, on this (main) thread, undoes them

    monitor = looptools.monitor(report=None).start()
    asyncio.run(app())
    assert signal.getsignal(tick_signal[0]) == signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_watchdog_thread_has_its_own_descriptor_table_and_holds_no_app_file_open() -> None:
    # A pipe the app opened before monitoring began: the watchdog thread's table
    # is a copy of the app's, so unless the copy is closed, the app closing its
    # write end would leave the reader without EOF.
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    gc_was = gc.isenabled()

    async def app() -> str:
        await asyncio.sleep(0.05)
        os.close(write_end)
        await asyncio.sleep(0.05)  # the watchdog looks meanwhile
        assert os.read(read_end, 1) == b""  # EOF, not BlockingIOError
        return "ok"

    try:
        with looptools.monitor(report=None) as monitor:
            assert asyncio.run(app()) == "ok"
            watchdog = monitor.hub.get("stalls")
            assert watchdog is not None and watchdog.private_fds is True
        assert gc.isenabled() is gc_was  # paused only while the thread ran
        report = monitor.final_report
        assert report is not None
        assert report["stall_summary"]["watchdog"]["private_fds"] is True
        assert report["lag"]["samples"] >= 1  # the probes still reach the loop
    finally:
        os.close(read_end)


def test_an_app_that_switched_gc_off_keeps_it_off() -> None:
    gc.disable()
    try:
        marks: dict[str, float] = {}
        with looptools.monitor(report=None) as monitor:
            assert asyncio.run(_app(marks)) == "ok"
            assert not gc.isenabled()
        report = monitor.final_report
        assert report is not None and len(report["stalls"]) == 1
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_app_s_gc_callbacks_keep_running_and_ours_goes_at_stop() -> None:
    # The collector's runs are read from gc.callbacks (looptools.inapp._collections):
    # ours goes after the app's, the app's is still called, and stop takes ours alone.
    seen: list[str] = []

    def apps(phase: str, info: dict[str, int]) -> None:
        seen.append(phase)

    gc.callbacks.append(apps)
    try:
        before = list(gc.callbacks)

        async def main() -> None:
            assert gc.callbacks[:len(before)] == before and len(gc.callbacks) == len(before) + 1
            await asyncio.sleep(0.01)
            gc.collect()
            await asyncio.sleep(0.01)

        with looptools.monitor(report=None):
            asyncio.run(main())
        assert gc.callbacks == before
        assert seen.count("start") >= 1 and seen.count("stop") == seen.count("start")
    finally:
        gc.callbacks.remove(apps)


def test_an_app_that_clears_gc_callbacks_is_not_undone_and_the_report_says_so() -> None:
    # An app (or a test harness) that empties gc.callbacks takes ours off too: it is
    # not put back behind its back, and the report says gc_ms stopped being counted.
    before = list(gc.callbacks)

    async def main() -> None:
        await asyncio.sleep(0.01)
        gc.callbacks.clear()
        await asyncio.sleep(0.01)

    try:
        with looptools.monitor(report=None) as monitor:
            asyncio.run(main())
        assert gc.callbacks == []
        report = monitor.final_report
        assert report is not None
        validate(report)
        watchdog = report["stall_summary"]["watchdog"]
        assert watchdog["no_gc_counts"] == "the app took looptools' function off gc.callbacks"
        with looptools.monitor(report=None) as monitor:
            asyncio.run(asyncio.sleep(0.01))
        report = monitor.final_report
        assert report is not None
        assert report["stall_summary"]["watchdog"]["no_gc_counts"] is None
    finally:
        gc.callbacks[:] = before


def test_a_loop_off_the_main_thread_shares_the_table_and_private_fds_can_be_switched_off() -> None:
    results: list[bool] = []

    def worker() -> None:
        with looptools.monitor(report=None) as monitor:
            asyncio.run(asyncio.sleep(0.05))
            results.append(monitor.hub.get("stalls").private_fds)  # type: ignore[union-attr]

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    with looptools.monitor(report=None, private_fds=False) as monitor:
        asyncio.run(asyncio.sleep(0.05))
        results.append(monitor.hub.get("stalls").private_fds)  # type: ignore[union-attr]
    assert results == [False, False]


def test_a_burst_of_short_callbacks_is_lag_not_a_stall() -> None:
    """40 callbacks of 5 ms posted at once keep the loop from its wait for 200 ms, but
    none blocks it: each returns to the loop.  The report says so as loop lag (the
    probe waited for the burst), not as a stall with a culprit line (see
    docs/design.md, "A burst of short callbacks")."""

    def step() -> None:
        end = time.perf_counter() + 0.005
        while time.perf_counter() < end:
            pass

    async def app() -> None:
        await asyncio.sleep(0.15)
        loop = asyncio.get_running_loop()
        for _ in range(3):  # three bursts, so that a 10 Hz probe lands in one
            for _ in range(40):
                loop.call_soon(step)
            await asyncio.sleep(0.25)

    with looptools.monitor(report=None, threshold_ms=50) as monitor:
        asyncio.run(app())
    report = monitor.final_report
    assert report is not None
    assert report["stalls"] == [] and report["stall_summary"]["count"] == 0
    assert report["lag"]["max_ms"] >= 60, report["lag"]


def test_our_threads_leave_the_apps_signals_to_the_app(tmp_path: Path) -> None:
    """A process-directed signal taken by one of our threads runs its C handler there:
    the app's wakeup byte went into the watchdog's own descriptor table (EBADF, seen
    with uvloop under load) and the main thread's epoll_wait was not interrupted.  So
    every thread of ours blocks them; fault signals stay unblocked."""
    masks: dict[str, int] = {}

    def blocked(native_id: int) -> int:
        with open(f"/proc/self/task/{native_id}/status") as status:
            line = next(line for line in status if line.startswith("SigBlk:"))
        return int(line.split()[1], 16)

    async def app() -> None:
        await asyncio.sleep(0.2)
        for thread in threading.enumerate():
            if thread.name.startswith("looptools-") and thread.native_id is not None:
                masks[thread.name] = blocked(thread.native_id)
        masks["main"] = blocked(threading.get_native_id())

    if not os.path.exists("/proc/self/task"):
        pytest.skip("needs /proc")
    with looptools.monitor(report=None):
        asyncio.run(app())
    assert "looptools-watchdog" in masks, masks

    def bit(signum: int) -> int:
        return 1 << (signum - 1)

    for name, mask in masks.items():
        if name == "main":
            assert not mask & bit(signal.SIGINT)  # the app's thread is left as it was
            continue
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGUSR1):
            assert mask & bit(signum), (name, signum, hex(mask))
        assert not mask & bit(signal.SIGSEGV), (name, hex(mask))


def test_a_stall_never_keeps_our_tick_handler_on_top_of_its_stack() -> None:
    """A busy run kept ``StallWatchdog._tick`` as the top of a stall's stack (a dump made
    while the loop thread was in a tick): every stack voted on is cut below the tick."""
    import looptools.inapp.detectors.stalls as stalls

    ours = stalls.__file__
    app = ("_hot_parse", "/app/indexer.py", 186)
    for tick_name in ("StallWatchdog._tick", "_tick"):  # sampled; dumped by faulthandler
        stall = Stall(started=0.0, detected=None)
        stall.vote([("main", "/app/indexer.py", 10), app, (tick_name, ours, 502),
                    ("StallWatchdog._hand_off", ours, 530)])
        assert stall.stack == [("main", "/app/indexer.py", 10), app], tick_name
        assert stall.culprit == app
    other = [("main", "/app/indexer.py", 10), ("_tick", "/app/clock.py", 3)]
    stall = Stall(started=0.0, detected=None)
    stall.vote(other)  # an app function of that name is the app's
    assert stall.stack == other


def test_a_long_callback_is_timed_exactly_and_the_end_watch_puts_everything_back() -> None:
    """No hook on asyncio's callbacks: a run seen at two looks arms the end watch,
    which replaces ``Handle._run`` and the selector's ``select`` only until the loop
    thread reaches one of them; the slow callback's duration is still exact."""
    import asyncio.events

    original_run = asyncio.events.Handle.__dict__["_run"]
    seen_armed: list[bool] = []
    spans: list[float] = []

    def spin(ms: float) -> None:
        started = time.perf_counter()
        end = started + ms / 1000.0
        while time.perf_counter() < end:
            pass
        # Still inside the run: the watch is armed (it has seen this run twice).
        seen_armed.append(asyncio.events.Handle.__dict__["_run"] is not original_run)
        spans.append(started)

    async def app() -> None:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        for ms in (120.0, 90.0):
            fut = loop.create_future()

            def step(ms: float = ms, fut: asyncio.Future[None] = fut) -> None:
                spin(ms)
                fut.set_result(None)

            loop.call_soon(step)
            await fut
            # Past the run's end: both are back exactly as they were.
            assert asyncio.events.Handle.__dict__["_run"] is original_run
            assert "select" not in vars(selector)
            await asyncio.sleep(0.03)

    with looptools.monitor(report=None) as monitor:
        asyncio.run(app())
    report = monitor.final_report
    assert report is not None
    assert seen_armed == [True, True]
    assert asyncio.events.Handle.__dict__["_run"] is original_run
    rows = [row for row in report["slow_callbacks"] if "step" in row["name"]]
    assert len(rows) == 1, report["slow_callbacks"]
    step = rows[0]
    assert step["count"] == 2
    # Each run ends exactly (the next callback or select reads the clock), and
    # begins at most one look after it really began.
    durations = [step["total_ms"] - step["max_ms"], step["max_ms"]]
    look_ms = monitor.hub.get("stalls").poll * 1000.0
    for measured, spun in zip(durations, (90.0, 120.0), strict=True):
        assert spun - look_ms - 2.0 <= measured <= spun + 5.0, (durations, look_ms)


def test_an_apps_own_handle_run_wrapper_is_chained_to_not_bypassed() -> None:
    """An app (or another tool) that wrapped ``Handle._run`` first: the stack no
    longer shows asyncio's own ``_run``, so looptools hooks callbacks as before,
    calling the app's wrapper, and puts the app's wrapper back at the end."""
    import asyncio.events

    stdlib_run = asyncio.events.Handle.__dict__["_run"]
    calls = 0

    def app_run(self: Any) -> None:
        nonlocal calls
        calls += 1
        stdlib_run(self)

    asyncio.events.Handle._run = app_run  # type: ignore[method-assign]
    try:
        async def app() -> None:
            assert asyncio.events.Handle.__dict__["_run"] is not app_run  # ours, over it
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            loop.call_soon(lambda: (time.sleep(0.12), fut.set_result(None)))
            await fut

        with looptools.monitor(report=None) as monitor:
            asyncio.run(app())
        assert asyncio.events.Handle.__dict__["_run"] is app_run
        assert calls > 0
        report = monitor.final_report
        assert report is not None
        assert len(report["stalls"]) == 1
        assert report["stall_summary"]["count"] == 1
    finally:
        asyncio.events.Handle._run = stdlib_run  # type: ignore[method-assign]


def test_the_pending_task_series_covers_the_whole_run_in_bounded_memory() -> None:
    """The pending count over time keeps the start of a long run and its peak, in at
    most TASK_POINTS points (it once kept the last 3,600 samples: an hour, growing)."""
    from looptools.inapp.detectors.tasks import TASK_POINTS

    async def app() -> None:
        await asyncio.sleep(0.05)
        crowd = [asyncio.create_task(asyncio.sleep(0.2)) for _ in range(40)]  # the peak
        await asyncio.gather(*crowd)
        deadline = time.perf_counter() + 2.5
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)

    with looptools.monitor(report=None, task_audit_s=0.001) as monitor:
        asyncio.run(app())
    report = monitor.final_report
    assert report is not None
    series = report["tasks"]["pending_over_time"]
    audits = report["meta"]["duration_s"] / 0.001
    assert audits > TASK_POINTS  # more audits than points: the windows merged
    assert 10 < len(series) <= TASK_POINTS + 1
    assert series[0][0] < 0.3  # the start of the run is still there
    assert max(n for _t, n in series) >= 40  # and its peak
    assert [t for t, _n in series] == sorted(t for t, _n in series)
