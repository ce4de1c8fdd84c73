"""Shared fixtures.  Every test must leave no patch, thread, monitor or loop behind."""

from __future__ import annotations

import asyncio
import asyncio.events
import builtins
import gc
import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Several Qt bindings are installed; qasync would pick PyQt5 first.  In-process
# tests use PySide6; the binding tests set QT_API per subprocess.
os.environ.setdefault("QT_API", "pyside6")

_ORIGINAL_RUN = asyncio.events.Handle.__dict__["_run"]
_ORIGINAL_SET_RUNNING = asyncio.events._set_running_loop


def _qtasyncio_cb() -> object:
    module = sys.modules.get("PySide6.QtAsyncio.events")
    return module.QAsyncioHandle.__dict__["_cb"] if module else None


@pytest.fixture(autouse=True)
def _leaves_nothing_behind() -> object:
    import looptools

    cb_before = _qtasyncio_cb()
    sigterm_before = signal.getsignal(signal.SIGTERM)
    sigalrm_before = signal.getsignal(signal.SIGALRM)
    realtime = range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    realtime_before = {signum: signal.getsignal(signum) for signum in realtime}
    hook_before = sys.excepthook
    meta_path_before = list(sys.meta_path)
    gc_callbacks_before = list(gc.callbacks)
    yield
    problems = []
    if looptools.active() is not None:
        problems.append("a monitor is still running")
        looptools.active().stop(write=False)  # type: ignore[union-attr]
    if asyncio.events.Handle.__dict__["_run"] is not _ORIGINAL_RUN:
        problems.append("Handle._run is still patched")
    if asyncio.events._set_running_loop is not _ORIGINAL_SET_RUNNING:
        problems.append("_set_running_loop is still patched")
    if asyncio._set_running_loop is not _ORIGINAL_SET_RUNNING:  # type: ignore[attr-defined]
        problems.append("asyncio._set_running_loop is still patched")
    cb_after = _qtasyncio_cb()
    if cb_before is not None and cb_after is not cb_before:
        problems.append("QAsyncioHandle._cb is still patched")
    if signal.getsignal(signal.SIGTERM) != sigterm_before:
        problems.append("the SIGTERM handler was changed")
    if signal.getsignal(signal.SIGALRM) != sigalrm_before:
        problems.append("the SIGALRM handler was changed")
    if {signum: signal.getsignal(signum) for signum in realtime} != realtime_before:
        problems.append("a real-time signal's handler was changed")
    if signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
        problems.append("an interval timer is still running")
    if sys.excepthook != hook_before:
        problems.append("sys.excepthook was changed")
    if sys.meta_path != meta_path_before:
        problems.append("sys.meta_path was changed")
    # (Only ours, and what was there: hypothesis adds one of its own the first time
    # a test of it runs.)
    if [cb for cb in gc.callbacks if type(getattr(cb, "__self__", None)).__module__
            == "looptools.inapp._collections"]:
        problems.append("our gc callback is still on gc.callbacks")
    if [cb for cb in gc.callbacks if getattr(cb, "__module__", None) == "looptools.inapp.monitor"]:
        problems.append("the Qt probe's gc callbacks are still on gc.callbacks")
    if [cb for cb in gc_callbacks_before if cb not in gc.callbacks]:
        problems.append("a gc callback of the app was taken off gc.callbacks")
    if time.sleep.__module__ != "time" and getattr(time.sleep, "__qualname__", "") != "sleep":
        problems.append("time.sleep is still patched")
    if builtins.open is not io.open or not type(builtins.open).__name__.startswith("builtin"):
        problems.append("open is still patched")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        ours = [t.name for t in threading.enumerate() if t.name.startswith("looptools-")]
        if not ours:
            break
        time.sleep(0.02)
    else:
        problems.append(f"threads left running: {ours}")
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="session")
def qapp() -> object:
    """One QApplication for the in-process Qt tests (pytest-qt's fixture name)."""
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


@pytest.fixture(params=["quiet", "busy"])
def machine(request: pytest.FixtureRequest) -> object:
    """The machine as developers' machines are: ``quiet``, or ``busy`` with as many
    CPU-burning processes as there are cores running beside the app (a build, a
    browser).  Stall tests take it so that they run both ways."""
    burners: list[subprocess.Popen[bytes]] = []
    if request.param == "busy":
        for _ in range(os.cpu_count() or 2):
            burners.append(subprocess.Popen(
                [sys.executable, "-c", "while True: pass"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        yield request.param
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait(10)
