"""An app's signal wakeup descriptor gets no byte of ours (looptools.inapp._wakeup).

CPython writes the number of every signal that has a Python handler to the
descriptor the app set with ``signal.set_wakeup_fd``.  Our ticks (~200 a second)
and the Qt-only probe's signals are such signals: the Qt recipe for Ctrl-C (a
``QSocketNotifier`` on the descriptor) ran the app's slot ~190 times a second under
looptools, and an asyncio app reading its own descriptor woke as often.  Now the
ticks and the probe's signals stop while the app has one (but for the watched
loop's own self-pipe, asyncio's or uvloop's, which drops signals it has no handler
for: there the ticks go on), and stalls are still found, with their culprit.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, culprit_line, run_app

import looptools

APP = ROOT / "tests" / "apps" / "wakeup_fd_app.py"


APP_WAKEUP_FD = ("a signal wakeup fd is set (signal.set_wakeup_fd, by the app or a library): "
                 "each tick would write to it")


@pytest.mark.parametrize("kind", ["qt-PySide6", "qt-PyQt6", "qt-PyQt5", "asyncio-foreign",
                                  "asyncio-own", "uvloop-foreign", "uvloop-own",
                                  "qasync-foreign", "qtasyncio-foreign"])
def test_the_apps_wakeup_descriptor_reads_what_it_would_without_us(
        kind: str, machine: str, tmp_path: Path) -> None:
    module = kind[3:] if kind.startswith("qt-") else {
        "qtasyncio": "PySide6"}.get(kind.partition("-")[0], kind.partition("-")[0])
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    plain = run_app([str(APP), kind], tmp_path, monitored=False)
    monitored = run_app([str(APP), kind], tmp_path)
    assert plain.returncode == 0 and monitored.returncode == 0, monitored.stderr
    assert monitored.stdout == plain.stdout, (plain.stdout, monitored.stdout)
    if kind.endswith("-own"):
        assert "SIGUSR1 callback ran" in monitored.stdout
    else:
        assert "reader ran 0 times" in plain.stdout
    report = monitored.report
    assert report is not None, monitored.stderr
    (stall,) = report["stalls"]
    assert stall["culprit"]["line"] == culprit_line(APP, "spin"), stall
    assert 250 <= stall["duration_ms"] <= 400, stall
    # The ticks go on where the descriptor is the loop's own self-pipe (uvloop sets
    # its own as it starts: every uvloop app), and stop for the app's own.
    # (The app takes its descriptor away as it ends: the ticks start again then.)
    watchdog = report["stall_summary"]["watchdog"]
    if kind.endswith("-own"):
        assert watchdog["no_ticks"] is None and watchdog["ticks"] > 50, watchdog
    else:
        assert watchdog["ticks"] < 20, watchdog
    # Without ticks on a Qt loop every run is stamped, and the thread looks about
    # every half threshold (and every poll while the stall lasts): ~50 looks in the
    # app's 1.6 s, not one every 5 ms (240-290 before; and in a busy loop each
    # would wait in a GIL convoy).  asyncio's and uvloop's probes still need a look every poll.
    qt_loop = kind.partition("-")[0] in ("qt", "qasync", "qtasyncio")
    assert watchdog["runs_stamped"] is qt_loop, watchdog
    if qt_loop:
        assert watchdog["looks"] < 150, watchdog


def test_the_ticks_stop_while_the_app_has_a_descriptor_and_the_wrapper_goes_at_stop() -> None:
    original = signal.set_wakeup_fd
    r, w = socket.socketpair()
    w.setblocking(False)
    seen: list[tuple[bool, Any]] = []

    async def main(watchdog: Any) -> None:
        await asyncio.sleep(0.05)
        seen.append((watchdog.ticking, watchdog.no_ticks))
        assert signal.set_wakeup_fd(w.fileno()) == -1
        seen.append((watchdog.ticking, watchdog.no_ticks))
        await asyncio.sleep(0.05)
        with pytest.raises(OSError):
            signal.set_wakeup_fd(10**6)  # refused (no such descriptor): the app's stays
        seen.append((watchdog.ticking, watchdog.no_ticks))
        assert signal.set_wakeup_fd(-1) == w.fileno()
        seen.append((watchdog.ticking, watchdog.no_ticks))

    try:
        with looptools.monitor(report=None) as monitor:
            assert signal.set_wakeup_fd is not original  # watched from the start
            watchdog = monitor.hub.get("stalls")
            asyncio.run(main(watchdog))
        assert signal.set_wakeup_fd is original
        on, off = (True, None), (False, APP_WAKEUP_FD)
        assert seen == [on, off, off, on]
    finally:
        signal.set_wakeup_fd(-1)
        r.close()
        w.close()


def test_a_descriptor_set_before_the_monitor_is_kept() -> None:
    r, w = socket.socketpair()
    w.setblocking(False)
    try:
        signal.set_wakeup_fd(w.fileno())
        with looptools.monitor(report=None) as monitor:
            async def main() -> tuple[bool, Any]:
                await asyncio.sleep(0.05)
                watchdog: Any = monitor.hub.get("stalls")
                return watchdog.ticking, watchdog.no_ticks

            ticking, why = asyncio.run(main())
        assert not ticking and "wakeup fd" in str(why)
        assert signal.set_wakeup_fd(-1) == w.fileno()  # the app's, still in force
    finally:
        signal.set_wakeup_fd(-1)
        r.close()
        w.close()
