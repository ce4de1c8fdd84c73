"""Any app, unchanged: every Qt binding, loop subclasses and unknown loops, the app's
exception handler, forked children, pytest's warnings, C types never patched."""

from __future__ import annotations

import asyncio
import builtins
import gc
import importlib.util
import io
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, culprit_line, env, run_app, validate

import looptools
from looptools.inapp.detectors.stalls import Stall, StallWatchdog
from looptools.settings import resolve

_open = builtins.open

BINDING_APP = ROOT / "tests" / "apps" / "qasync_binding_app.py"
BINDINGS = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5", "pyside2": "PySide2"}


def _binding(qt_api: str) -> str:
    name = BINDINGS[qt_api]
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed here")
    return name


def _ours(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in report["stalls"]
            if s["culprit"] and s["culprit"]["file"] == str(BINDING_APP)]


def _qt_only_run(qt_api: str, mode: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Run the binding app in a Qt-only ``mode``: it exits 0 and was watched as a Qt
    main thread on that binding.  Its report, and its stderr."""
    name = _binding(qt_api)
    run = run_app([str(BINDING_APP), mode], tmp_path, environ={"QT_API": qt_api})
    assert run.returncode == 0, run.stderr
    report = run.report
    assert report is not None, run.stderr
    assert (report["loop"]["kind"], report["loop"]["binding"]) == ("qt", name)
    return report, run.stderr


@pytest.mark.parametrize("qt_api", list(BINDINGS))
def test_qasync_on_every_binding_finds_slot_and_coroutine_stalls(qt_api: str, machine: str,
                                                                  tmp_path: Path) -> None:
    name = _binding(qt_api)
    run = run_app([str(BINDING_APP), "stalls"], tmp_path, environ={"QT_API": qt_api})
    assert run.returncode == 0, run.stderr
    assert f"binding {name}" in run.stdout
    report = run.report
    assert report is not None, run.stderr
    validate(report)
    assert report["loop"]["kind"] == "qasync"
    assert report["loop"]["binding"] == name
    assert report["loop"]["recognised"] is True
    stalls = _ours(report)
    assert len(stalls) == 2 == report["stall_summary"]["count"], report["stalls"]
    slot, cpu = stalls
    assert slot["culprit"]["function"] == "slot_sleeps"
    assert slot["culprit"]["line"] == culprit_line(BINDING_APP, "slot")
    assert slot["duration_ms"] == pytest.approx(200, rel=0.25)
    assert cpu["culprit"]["function"] == "spin"
    assert cpu["culprit"]["line"] == culprit_line(BINDING_APP, "cpu")
    assert cpu["duration_ms"] == pytest.approx(150, rel=0.25)
    assert not cpu["gil_held"] and not slot["gil_held"]


@pytest.mark.parametrize("qt_api", list(BINDINGS))
def test_a_qasync_loop_subclass_idling_reports_no_stall(qt_api: str, machine: str,
                                                        tmp_path: Path) -> None:
    name = _binding(qt_api)
    run = run_app([str(BINDING_APP), "idle-subclass"], tmp_path, environ={"QT_API": qt_api})
    assert run.returncode == 0, run.stderr
    report = run.report
    assert report is not None, run.stderr
    assert report["loop"]["kind"] == "qasync"
    assert report["loop"]["class"].endswith("PatchedLoop")
    assert report["loop"]["binding"] == name
    assert report["meta"]["duration_s"] >= 3.5
    assert report["stalls"] == [] and report["stall_summary"]["count"] == 0
    assert report["lag"]["p99_ms"] < 40


@pytest.mark.parametrize("qt_api", list(BINDINGS))
def test_a_qt_main_thread_without_asyncio_on_every_binding(qt_api: str, tmp_path: Path) -> None:
    report, _ = _qt_only_run(qt_api, "qt-only", tmp_path)
    (stall,) = _ours(report)
    assert stall["culprit"]["line"] == culprit_line(BINDING_APP, "slot")
    assert stall["duration_ms"] == pytest.approx(200, rel=0.25)


@pytest.mark.parametrize("qt_api", list(BINDINGS))
def test_a_slot_that_quits_the_app_and_blocks_on_is_one_whole_stall(
        qt_api: str, tmp_path: Path) -> None:
    # Qt 6 emits aboutToQuit inside quit(), from the slot that called it: the loop
    # stopped there, and a slot blocking on after it was cut short (300 of its 500
    # ms; a fresh-eyes trial).  Qt 5 emits it once exec's loop has ended.  The
    # app's work after exec returns is no stall on either.
    report, _ = _qt_only_run(qt_api, "qt-only-quit-in-slot", tmp_path)
    (stall,) = report["stalls"]
    assert stall["culprit"]["line"] == culprit_line(BINDING_APP, "quitting slot")
    assert stall["duration_ms"] == pytest.approx(500, rel=0.15)


@pytest.mark.parametrize("qt_api", ["pyside6", "pyqt5"])
def test_exec_looked_up_by_another_thread_does_not_stop_the_attach(
        qt_api: str, tmp_path: Path) -> None:
    # The exec hook acts on lookup; one on another thread posted the attach to that
    # thread (no loop: it never ran) and the monitor then skipped the app ("no loop
    # ran"; a fresh-eyes review).  Only the main thread's lookup counts.
    report, _ = _qt_only_run(qt_api, "qt-only-thread-lookup", tmp_path)
    (stall,) = report["stalls"]
    assert stall["duration_ms"] == pytest.approx(200, rel=0.25)


@pytest.mark.parametrize("qt_api", list(BINDINGS))
def test_a_qt_only_app_is_watched_from_exec_even_if_it_never_runs_python(
        qt_api: str, tmp_path: Path) -> None:
    # The app goes from its imports to exec() in a few ms and its only slot is
    # C++ (QThread.msleep): the probe's handler must have wrapped exec by then.
    # (When it refused to touch Qt during any import, 5 of 8 such runs missed it.)
    report, stderr = _qt_only_run(qt_api, "qt-only-cstall", tmp_path)
    assert report["loop"]["attached_at_s"] < 0.4 + 0.05, report["loop"]
    (stall,) = report["stalls"]
    assert stall["duration_ms"] == pytest.approx(200, rel=0.25)
    assert stall["source"] == "qt"
    # No Python ran in it: the line that started Qt's loop (main's exec()) is where
    # the loop waits, not what stalled it, so it is not named as the culprit.
    assert stall["culprit"] is None, stall
    assert stall["stack"] and stall["stack"][-1]["function"] == "main", stall["stack"]
    assert "(Qt dispatch)" in stderr


def test_a_probe_signal_handled_while_pyside6_makes_a_class_touches_no_qt(
        tmp_path: Path) -> None:
    # PySide6 makes QtWidgets.QApplication at its first lookup (qasync's import), in C;
    # a collection set off meanwhile runs Python (finalizers, gc callbacks), and the
    # Qt-only probe's signal handled there looked the application classes up again,
    # inside the first making: a qasync app with a thread leaving cyclic garbage with
    # __del__ crashed in libshiboken6 in 21 of 80 loaded runs (helper 53).  Here the
    # app's own gc callback sends the probe's signal, so the handler surely runs in a
    # collection: before the fix every run crashed (or hung in a C++ static's guard).
    _binding("pyside6")
    run = run_app([str(ROOT / "tests" / "apps" / "lazy_class_app.py")], tmp_path,
                  environ={"QT_API": "pyside6"})
    assert run.returncode == 0, run.stderr
    sent = int(run.stdout.strip().rsplit(":", 1)[1])
    assert sent > 0, run.stdout  # the signal was sent in collections, with Qt imported
    report = run.report
    assert report is not None, run.stderr
    assert (report["loop"]["kind"], report["loop"]["binding"]) == ("qasync", "PySide6")


class _EventWaitLoop(asyncio.SelectorEventLoop):
    """A loop looptools does not know: it idles in a wait of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.idle = threading.Event()

    def _run_once(self) -> None:
        if not self._ready:  # type: ignore[attr-defined]
            self.idle.wait(0.12)  # an idle wait that is not the selector's
        super()._run_once()  # type: ignore[misc]


def test_a_loop_of_unknown_kind_is_watched_conservatively() -> None:
    def blocks() -> None:
        time.sleep(0.15)

    async def app() -> None:
        await asyncio.sleep(0.6)  # idle: ~5 waits of 120 ms, each over the threshold
        asyncio.get_running_loop().call_soon(blocks)
        await asyncio.sleep(0.3)

    loop = _EventWaitLoop()
    with looptools.monitor(report=None, threshold_ms=50) as monitor:
        loop.run_until_complete(app())
    loop.close()
    report = monitor.final_report
    assert report is not None
    validate(report)
    assert report["loop"]["kind"] == "unknown"
    assert report["loop"]["recognised"] is False
    assert report["loop"]["not_measured"]
    assert [s["culprit"]["function"] for s in report["stalls"]] == [
        "test_a_loop_of_unknown_kind_is_watched_conservatively.<locals>.blocks"]


def _run_kind(kind: str, coro: Any) -> Any:
    if kind == "asyncio":
        return asyncio.run(coro)
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    if kind == "qasync":
        import qasync

        return qasync.run(coro)
    import PySide6.QtAsyncio as QtAsyncio

    return QtAsyncio.run(coro, keep_running=False, quit_qapp=True)


@pytest.mark.parametrize("kind", ["asyncio", "qasync", "qtasyncio"])
def test_the_apps_exception_handler_is_left_alone(kind: str) -> None:
    seen: list[str] = []

    def app_handler(*args: Any) -> None:
        seen.append(str(args[-1].get("message")))

    async def fails() -> None:
        raise ValueError("lost")

    async def app() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(app_handler)
        handler_inside = loop.get_exception_handler()
        task = loop.create_task(fails())
        await asyncio.sleep(0.05)
        del task
        gc.collect()
        await asyncio.sleep(0.05)
        return {"loop": loop, "handler": handler_inside}

    plain = _run_kind(kind, app())
    seen_plain, seen[:] = list(seen), []
    with looptools.monitor(report=None) as monitor:
        out = _run_kind(kind, app())
    loop = out["loop"]
    # What the app reads back is what it reads without us (qasync answers None).
    assert out["handler"] is plain["handler"]
    assert seen == seen_plain
    assert seen, "the app's handler was not called"
    report = monitor.final_report
    assert report is not None
    if kind != "qtasyncio":  # QtAsyncio reports a failed task at once, not at collection
        assert any("never retrieved" in message for message in seen), seen
        assert [e["exception"] for e in report["tasks"]["unretrieved_exceptions"]] == [
            "ValueError: lost"]
    assert "call_exception_handler" not in vars(loop)
    assert "create_task" not in vars(loop)


def test_an_instance_attribute_the_app_had_set_is_put_back() -> None:
    def app_create_task(coro: Any, **kwargs: Any) -> Any:
        return type(loop).create_task(loop, coro, **kwargs)

    loop = asyncio.new_event_loop()
    loop.create_task = app_create_task  # type: ignore[method-assign]
    with looptools.monitor(report=None):
        loop.run_until_complete(asyncio.sleep(0.02))
    assert vars(loop)["create_task"] is app_create_task
    loop.close()


def test_a_stall_is_over_the_threshold_always() -> None:
    watchdog = StallWatchdog(resolve({"threshold_ms": 50}))
    watchdog._finish(Stall(started=10.0, detected=None), 10.049, already_current=False)
    watchdog._finish(Stall(started=0.0, detected=None), 0.05, already_current=False)
    assert watchdog.count == 0 and watchdog.kept == []
    watchdog._finish(Stall(started=30.0, detected=None), 30.051, already_current=False)
    assert watchdog.count == 1 and len(watchdog.kept) == 1


def test_c_types_are_never_patched_and_file_opens_are_still_recorded(tmp_path: Path) -> None:
    import _thread

    before = {
        "BufferedWriter.write": io.BufferedWriter.__dict__["write"],
        "TextIOWrapper.write": io.TextIOWrapper.__dict__["write"],
        "lock.acquire": _thread.LockType.__dict__["acquire"],
    }
    target = tmp_path / "data.txt"

    async def app() -> None:
        now = {
            "BufferedWriter.write": io.BufferedWriter.__dict__["write"],
            "TextIOWrapper.write": io.TextIOWrapper.__dict__["write"],
            "lock.acquire": _thread.LockType.__dict__["acquire"],
        }
        assert now == before
        assert time.sleep is not _sleep  # module functions are still wrapped
        assert builtins.open is not _open and io.open is not _open  # and so is open,
        assert builtins.open is io.open  # by one wrapper, as it is one function
        import json  # noqa: F401  (an import reads files: not a blocking call of the app)

        target.write_text("x")  # CULPRIT: open
        await asyncio.sleep(0.01)

    _sleep = time.sleep
    with looptools.monitor(report=None) as monitor:
        asyncio.run(app())
    report = monitor.final_report
    assert report is not None
    opens = [row for row in report["blocking_calls"] if row["call"] == "open"]
    assert len(opens) == 1 and opens[0]["count"] == 1, report["blocking_calls"]
    assert opens[0]["sites"][0]["line"] == culprit_line(Path(__file__), "open")
    # Once detached, open is what it was (no audit hook either: it could not be removed).
    assert builtins.open is _open and io.open is _open
    target.write_text("y")


def test_an_open_wrapped_again_by_the_app_stays_the_apps(tmp_path: Path) -> None:
    """The app wraps ``open`` over ours while monitored: at detach its wrapper stays,
    and ours inside it no longer records anything."""
    calls: list[str] = []

    async def app() -> None:
        ours = builtins.open
        assert ours is not _open and getattr(ours, "__wrapped__", None) is _open

        def apps_open(*args: Any, **kwargs: Any) -> Any:
            calls.append(str(args[0]))
            return ours(*args, **kwargs)

        builtins.open = apps_open
        await asyncio.sleep(0)

    try:
        with looptools.monitor(report=None) as monitor:
            asyncio.run(app())
        assert builtins.open is not _open  # the app's own wrapper stays
        with open(tmp_path / "after.txt", "w") as handle:
            handle.write("x")
        assert calls == [str(tmp_path / "after.txt")]
        report = monitor.final_report
        assert report is not None
        assert not [row for row in report["blocking_calls"] if row["call"] == "open"]
    finally:
        builtins.open = _open


ONE_LINER = "import asyncio; asyncio.run(asyncio.sleep(.1)); print('done')"


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("sink", ["file", "pipe"])
def test_an_app_writing_to_a_file_or_pipe_exits_as_it_would(sink: str, unbuffered: bool,
                                                            tmp_path: Path) -> None:
    results = []
    for monitored in (False, True):
        extra = {"LOOPTOOLS": "1", "LOOPTOOLS_REPORT": str(tmp_path / "r.json")} \
            if monitored else {}
        environ = env(**extra)
        environ.pop("PYTHONUNBUFFERED", None)
        if unbuffered:
            environ["PYTHONUNBUFFERED"] = "1"
        out = tmp_path / f"out-{monitored}.txt"
        if sink == "file":
            with out.open("w") as handle:
                code = subprocess.run([sys.executable, "-c", ONE_LINER], stdout=handle,
                                      stderr=subprocess.DEVNULL, env=environ,
                                      timeout=60).returncode
            text = out.read_text()
        else:
            proc = subprocess.run([sys.executable, "-c", ONE_LINER], capture_output=True,
                                  text=True, env=environ, timeout=60)
            code, text = proc.returncode, proc.stdout
        results.append((code, text))
    assert results[0] == results[1] == (0, "done\n")


FORK_APP = """
import asyncio, os, sys, time
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

def job(x):
    async def inner():
        await asyncio.sleep(0.02)
        return x * 2
    return asyncio.run(inner())

async def main():
    await asyncio.sleep(0.05)
    pid = os.fork()
    if pid == 0:
        print("child", job(1), flush=True)
        sys.exit(0)  # the child exits through the interpreter's finalisation
    _, status = os.waitpid(pid, 0)
    print("fork child exit", os.waitstatus_to_exitcode(status))
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
        print("pool", list(pool.map(job, [1, 2, 3])))

asyncio.run(main())
"""


def test_a_forked_child_runs_its_own_loop_unmonitored_and_exits(tmp_path: Path) -> None:
    app = tmp_path / "fork_app.py"
    app.write_text(FORK_APP)
    plain = run_app([str(app)], tmp_path, monitored=False)
    monitored = run_app([str(app)], tmp_path)
    assert plain.returncode == monitored.returncode == 0, monitored.stderr
    assert sorted(plain.stdout.splitlines()) == sorted(monitored.stdout.splitlines())
    assert "pool [2, 4, 6]" in monitored.stdout
    assert monitored.report is not None
    assert monitored.report["meta"]["pid"] != 0
    reports = list(tmp_path.glob("report-*.json"))
    assert len(reports) == 1  # the parent's; the children wrote none
    assert monitored.stderr.count("looptools:") == 1, monitored.stderr


def test_looptools_on_leaves_pytest_warnings_as_they_were(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(
        "import asyncio\n\ndef test_runs_a_loop():\n"
        "    assert asyncio.run(asyncio.sleep(0.01, 'ok')) == 'ok'\n")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    args = [sys.executable, "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-q",
            "-rw", str(tmp_path)]
    outcomes = []
    for extra in ({}, {"LOOPTOOLS": "1", "LOOPTOOLS_REPORT": "none"}):
        proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path,
                              env=env(**extra), timeout=120)
        outcomes.append((proc.returncode, "1 passed" in proc.stdout,
                         "warning" in proc.stdout.lower()))
        assert "PytestAssertRewriteWarning" not in proc.stdout + proc.stderr
    assert outcomes[0] == outcomes[1] == (0, True, False)


def test_report_says_which_binding_was_found(tmp_path: Path) -> None:
    _binding("pyqt6")
    run = run_app([str(BINDING_APP), "idle-subclass"], tmp_path, environ={"QT_API": "pyqt6"},
                  timeout=60)
    assert run.report is not None
    assert run.report["loop"]["binding_version"]
    assert run.report["loop"]["qt_version"]
    assert "PySide6" not in run.stderr  # nothing of the other binding was touched


def test_no_binding_is_imported_that_the_app_did_not_import(tmp_path: Path) -> None:
    code = ("import sys, asyncio, looptools\n"
            "with looptools.monitor(report=None):\n"
            "    asyncio.run(asyncio.sleep(0.3))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('PySide6', 'PyQt6', 'PyQt5', 'PySide2', 'qasync')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_qt_probe_attaches_to_a_pyqt_app_from_the_main_thread(tmp_path: Path) -> None:
    # The Qt-only probe's thread never calls Qt: it signals the main thread, whose
    # handler finds the app and posts the attach to its event loop.
    _binding("pyqt5")
    run = run_app([str(BINDING_APP), "qt-only"], tmp_path, environ={"QT_API": "pyqt5"})
    assert run.report is not None and run.report["loop"]["binding"] == "PyQt5"
    assert os.path.basename(run.report["loop"]["class"]).startswith("PyQt5")


@pytest.mark.parametrize("detectors", ["tasks", ""])
@pytest.mark.parametrize("loop", ["qt-only", "qasync"])
def test_sigterm_ends_an_idle_qt_app_as_it_would_whatever_the_detectors(
        loop: str, detectors: str, tmp_path: Path) -> None:
    """Without a heartbeat (LOOPTOOLS_DETECTORS=tasks) our Python SIGTERM handler never
    ran in an idle Qt app, which then ignored SIGTERM (143 without looptools)."""
    import signal

    if loop == "qt-only":
        body = "app = QApplication([])\nprint('ready', flush=True)\nsys.exit(app.exec())\n"
    else:
        body = ("import asyncio, qasync\napp = QApplication([])\n"
                "loop = qasync.QEventLoop(app)\nasyncio.set_event_loop(loop)\n"
                "print('ready', flush=True)\nwith loop:\n    loop.run_forever()\n")
    script = tmp_path / "idle.py"
    script.write_text("import sys\nfrom PySide6.QtWidgets import QApplication\n" + body)
    statuses = []
    for monitored in (False, True):
        extra = {"LOOPTOOLS": "1", "LOOPTOOLS_REPORT": "none", "LOOPTOOLS_SUMMARY": "0"} \
            if monitored else {}
        if monitored and detectors:
            extra["LOOPTOOLS_DETECTORS"] = detectors
        proc = subprocess.Popen([sys.executable, str(script)], env=env(**extra),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            statuses.append("ignored SIGTERM")
            continue
        statuses.append(proc.returncode)
    assert statuses == [-signal.SIGTERM, -signal.SIGTERM]


LIFETIME_APP = ROOT / "tests" / "apps" / "task_lifetime_app.py"


@pytest.mark.parametrize("kind", ["asyncio", "qasync-pyside6", "qasync-pyqt6", "qtasyncio"])
def test_a_task_ending_as_its_loop_stops_is_freed_as_without_us(kind: str,
                                                               tmp_path: Path) -> None:
    # qasync's own suite (test_exception_handler) caught a done callback of ours
    # holding such a task: its exception handler went uncalled.
    loop_kind, _, qt_api = kind.partition("-")
    environ = {"QT_API": qt_api} if qt_api else {}
    if qt_api:
        _binding(qt_api)
    plain = run_app([str(LIFETIME_APP), loop_kind], tmp_path, monitored=False, environ=environ)
    assert plain.returncode == 0, plain.stderr
    line = plain.stdout.strip()
    if loop_kind != "qtasyncio":  # QtAsyncio keeps its tasks itself
        assert line == "alive=False seen=['Task exception was never retrieved']", line
    monitored = run_app([str(LIFETIME_APP), loop_kind], tmp_path, environ=environ)
    assert monitored.returncode == 0, monitored.stderr
    assert monitored.stdout.strip() == line
    assert monitored.report is not None, monitored.stderr
    assert monitored.report["tasks"]["peak_pending"] >= 1


def test_the_line_that_started_the_loop_is_never_a_stall_s_culprit() -> None:
    # CI under load: a GIL-holding call's stack, sampled just after it (no stack dump
    # there), landed with the loop back between callbacks, and the stall was named
    # after the app's asyncio.run(...) line.  A callback that runs a loop of its own
    # stays the culprit: the running loop's frames are outside it too.
    app = str(BINDING_APP)  # any file of the app's
    aio = os.path.dirname(asyncio.__file__)
    outer = [("<module>", app, 73), ("run", f"{aio}/runners.py", 190),
             ("BaseEventLoop.run_until_complete", f"{aio}/base_events.py", 640),
             ("BaseEventLoop.run_forever", f"{aio}/base_events.py", 607),
             ("BaseEventLoop._run_once", f"{aio}/base_events.py", 1922)]
    in_callback = [*outer, ("Handle._run", f"{aio}/events.py", 80), ("hash_blob", app, 54)]
    between = [*outer, ("BaseSelector.select", f"{os.path.dirname(aio)}/selectors.py", 468)]
    nested = [*outer, ("Handle._run", f"{aio}/events.py", 80), ("cb", app, 20), *outer[2:]]
    for stack, culprit in ((in_callback, ("hash_blob", app, 54)), (between, None),
                           (nested, ("cb", app, 20))):
        stall = Stall(started=0.0, detected=None)
        stall.vote(stack, "after")
        assert stall.culprit == culprit, stack
        assert stall.stack == stack and stall.samples == 1
    stall = Stall(started=0.0, detected=None)
    stall.vote(between, "after")
    stall.vote(in_callback, "sampled")
    assert stall.culprit == ("hash_blob", app, 54) and stall.stack == in_callback


def test_uvloop_imported_before_the_monitor_is_still_watched(tmp_path: Path) -> None:
    # uvloop binds asyncio's _set_running_loop into a C variable as it is imported:
    # imported before looptools.monitor() started, its loops were never seen (the
    # report said loop "none", 0 stalls, for a 200 ms sleep).  Its run_forever is
    # wrapped then, and put back at stop.
    pytest.importorskip("uvloop")
    report = tmp_path / "report.json"
    script = tmp_path / "uv_first.py"
    script.write_text(
        "import asyncio, json, sys, threading, time\n"
        "import uvloop\n"
        "import looptools\n"
        "had = 'run_forever' in vars(uvloop.Loop)\n"
        "async def main():\n"
        "    await asyncio.sleep(0.05)\n"
        "    time.sleep(0.2)  # the stall\n"
        "    await asyncio.sleep(0.05)\n"
        "def worker():\n"
        "    loop = uvloop.new_event_loop()\n"
        "    loop.run_until_complete(asyncio.sleep(0.01))\n"
        "    loop.close()\n"
        f"with looptools.monitor(report={str(report)!r}):\n"
        "    uvloop.run(main())\n"
        "    thread = threading.Thread(target=worker, name='uv')\n"
        "    thread.start()\n"
        "    thread.join()\n"
        "print(had, 'run_forever' in vars(uvloop.Loop))\n"
        "uvloop.run(asyncio.sleep(0))  # after stop: runs as plain uvloop\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=env(), cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout == "False False\n"
    data = json.loads(report.read_text())
    assert data["loop"]["kind"] == "uvloop"
    (stall,) = data["stalls"]
    assert stall["culprit"]["line"] == 7
    assert stall["duration_ms"] == pytest.approx(200, rel=0.25)
    assert data["worker_loops"]["loops"] == 1


SLOT_APP = ROOT / "tests" / "apps" / "slot_spans_app.py"


@pytest.mark.parametrize("kind", ["qt", "qasync", "qtasyncio"])
def test_a_qt_slot_under_the_threshold_is_dated_from_its_start(
        kind: str, machine: str, tmp_path: Path) -> None:
    """A Qt slot has no stamp: it was dated from the loop's last sign of life, the
    heartbeat up to 10 ms before it, so a 40 ms slot read 40-51 ms on a Qt main
    thread, up to 65 ms on qasync beside another process, and was now and then a
    stall at 50 ms (helper 45).  The tick that runs at the slot's first bytecode
    dates it now, on every Qt loop kind."""
    run = run_app([str(SLOT_APP), kind, "0.042", "12"], tmp_path,
                  environ={"QT_API": "pyside6"})
    assert run.returncode == 0, run.stderr
    assert run.report is not None, run.stderr
    assert run.report["loop"]["kind"] == kind
    spans = next(json.loads(line[6:]) for line in run.stderr.splitlines()
                 if line.startswith("SPANS "))
    assert len(spans) == 12
    # The timer's timeouts can come back to back (the loop late for one: the timer
    # catches up), and the loop is then held across both slots, with no heartbeat
    # (every 10 ms) between them (seen beside burners: an 85 ms stall over two 42 ms
    # slots 0.1 ms apart): as long as those together.
    held = [end - begin for begin, end in spans] + [
        second_end - first_begin
        for (first_begin, first_end), (second_begin, second_end) in itertools.pairwise(spans)
        if second_begin - first_end < 0.010]
    longest_ms = max(held) * 1000.0
    for stall in run.report["stalls"]:
        # Beside burners a 42 ms sleep can last 50 ms and more (the slot woken
        # late): a true stall, but never much longer than the longest slot.
        assert stall["duration_ms"] <= longest_ms + 4.0, (
            stall, longest_ms, sorted(b[0] - a[1] for a, b in itertools.pairwise(spans))[:2])
        assert stall["culprit"]["line"] == culprit_line(SLOT_APP, "slot")
    if machine == "quiet":
        assert run.report["stalls"] == [], [s["duration_ms"] for s in run.report["stalls"]]
