"""The bundled sample apps under LOOPTOOLS=1: the culprit line of each problem, every app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, culprit_line, env, run_app, validate

APPS = {
    "chat_qasync": "qasync",
    "browser_qtasyncio": "qtasyncio",
    "pipeline_asyncio": "asyncio",
    "gallery_threadpool": "qt",
}
CASES = [
    ("chat_qasync", "blocking-slot"),
    ("chat_qasync", "gil-call"),
    ("chat_qasync", "sync-io"),
    ("browser_qtasyncio", "blocking-slot"),
    ("browser_qtasyncio", "blocking-coro"),
    ("browser_qtasyncio", "cpu-parse"),
    ("pipeline_asyncio", "blocking-coro"),
    ("pipeline_asyncio", "gil-call"),
    # Qt main thread with no asyncio loop; workers run asyncio.run in a QThreadPool.
    ("gallery_threadpool", "blocking-slot"),
    ("gallery_threadpool", "gil-call"),
]


def _app(name: str) -> Path:
    return ROOT / "sample_apps" / f"{name}.py"


@pytest.mark.parametrize(("app", "problem"), CASES)
def test_sample_app_stall_names_the_culprit_line(app: str, problem: str, machine: str,
                                                 tmp_path: Path) -> None:
    path = _app(app)
    run = run_app([str(path), "--problem", problem, "--duration", "1.2", "--stall-ms", "250"],
                  tmp_path)
    assert run.returncode == 0, run.stderr
    report = run.report
    assert report is not None
    validate(report)
    assert report["loop"]["kind"] == APPS[app]
    ours = [s for s in report["stalls"] if s["culprit"] and s["culprit"]["file"] == str(path)]
    assert len(ours) == 1, report["stalls"]
    stall = ours[0]
    assert stall["duration_ms"] == pytest.approx(250, rel=0.25)
    if problem in ("cpu-parse", "sync-io"):
        def_line = culprit_line(path, problem)
        assert stall["culprit"]["function"] in path.read_text().splitlines()[def_line - 1] \
            or stall["culprit"]["function"].endswith("save_sync")
    else:
        assert stall["culprit"]["line"] == culprit_line(path, problem), stall["stack"]
    assert stall["gil_held"] is (problem == "gil-call")
    rel = path.relative_to(ROOT)
    assert str(rel).split("/")[-1] in run.stderr  # the exit summary names the file


@pytest.mark.parametrize("app", list(APPS))
def test_monitoring_leaves_output_and_exit_code_unchanged(app: str, tmp_path: Path) -> None:
    args = [str(_app(app)), "--duration", "1.0"]
    plain = run_app(args, tmp_path, monitored=False)
    watched = run_app(args, tmp_path)
    assert plain.returncode == watched.returncode == 0
    assert plain.stdout == watched.stdout
    assert plain.stdout.strip()
    assert watched.report is not None
    assert "looptools:" in watched.stderr and "looptools:" not in plain.stderr


def test_leaked_task_in_sample_app(tmp_path: Path) -> None:
    path = _app("chat_qasync")
    run = run_app([str(path), "--problem", "leaked-task", "--duration", "1.0"], tmp_path)
    assert run.returncode == 0, run.stderr
    leaked = [t for t in run.report["tasks"]["pending_at_exit"]  # type: ignore[index]
              if t["name"] == "leaky-poller"]
    assert len(leaked) == 1
    assert leaked[0]["created_at"]["line"] == culprit_line(path, "leaked-task")


# -- the threads of chat_qasync: a worker touching a widget, a GUI stall delaying hand-offs --
CHAT = ROOT / "sample_apps" / "chat_qasync.py"


def _profile(args: list[str], tmp_path: Path, report: Path, qt_api: str,
             *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "looptools", "profile", "--no-dashboard", *flags,
         "--report", str(report), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env(QT_API=qt_api))


def _badge_row(report: dict[str, Any], repeat: int) -> None:
    """The one violation: the worker's setText on the badge, at its CULPRIT line."""
    validate(report)
    rows = report["affinity"]["violations"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["source"] == "widget_call" and row["call"] == "QLabel.setText"
    assert row["site"] == {"function": "ModerationWorker.run", "file": str(CHAT),
                           "line": culprit_line(CHAT, "widget-from-worker")}
    assert row["count"] == repeat
    assert row["object"] == {"class": "QLabel", "object_name": "moderation-badge"}
    assert row["owner_thread"]["name"] == "MainThread"
    assert row["calling_thread"]["name"] == "moderation-worker"
    assert row["calling_thread"]["ident"] != row["owner_thread"]["ident"]


@pytest.mark.parametrize("qt_api", ["pyside6", "pyqt6"])
def test_widget_touched_from_a_worker_reported_at_its_line(qt_api: str,
                                                           tmp_path: Path) -> None:
    """``widget-from-worker``: under LOOPTOOLS=1 with the thread checks and under
    ``looptools profile --thread-checks``, the row names the sample app's line, the
    label, the GUI thread that owns it and the worker; the app's output and exit code
    are those of a plain run."""
    args = [str(CHAT), "--problem", "widget-from-worker", "--repeat", "2", "--every", "0.2",
            "--problem-at", "0.3", "--duration", "1.0"]
    qt = {"QT_API": qt_api}
    plain = run_app(args, tmp_path, monitored=False, environ=qt)
    assert plain.returncode == 0, plain.stderr
    watched = run_app(args, tmp_path, environ=qt, thread_checks="1", summary="0")
    assert watched.returncode == 0 and watched.stdout == plain.stdout
    assert watched.stderr == plain.stderr  # without the summary, not a byte of ours
    assert watched.report is not None and watched.report["loop"]["binding"] == \
        {"pyside6": "PySide6", "pyqt6": "PyQt6"}[qt_api]
    _badge_row(watched.report, 2)
    report = tmp_path / "profiled.json"
    profiled = _profile(args, tmp_path, report, qt_api, "--thread-checks")
    assert profiled.returncode == 0, profiled.stderr
    assert profiled.stdout == plain.stdout
    _badge_row(json.loads(report.read_text()), 2)
    line = culprit_line(CHAT, "widget-from-worker")
    assert "thread-affinity violations: 1 site (2 calls); first QLabel.setText at " \
        f"ModerationWorker.run (sample_apps/chat_qasync.py:{line}) from thread " \
        "moderation-worker" in profiled.stderr.replace(str(ROOT) + "/", "")


def test_healthy_chat_reports_no_violation_and_no_worker_stall(tmp_path: Path) -> None:
    """The healthy run, with every check on: the threads hand off the right way."""
    report = tmp_path / "healthy.json"
    done = _profile([str(CHAT), "--duration", "1.0"], tmp_path, report, "pyside6",
                    "--thread-checks")
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    validate(data)
    assert data["affinity"]["watched"] == {"qt_messages": True, "asyncio_calls": True,
                                           "widget_calls": True}
    assert data["affinity"]["violations"] == []
    assert data["worker_loops"]["stalls"] == []
    assert "thread-affinity" not in done.stderr
    meter = [row for row in data["handoffs"] if row["thread"] == "audio-meter"]
    assert len(meter) == 1 and meter[0]["count"] >= 50  # ~100 a second, for about 1 s
    assert not [s for s in data["stalls"] if (s["culprit"] or {}).get("file") == str(CHAT)]


def test_a_gui_stall_delays_the_audio_threads_hand_offs(tmp_path: Path) -> None:
    """``blocking-slot`` holds the UI thread 300 ms (the app's time.sleep: the truth);
    the audio meter's hand-offs posted meanwhile wait that long, tied to the slot."""
    run = run_app([str(CHAT), "--problem", "blocking-slot", "--stall-ms", "300",
                   "--duration", "1.2"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.report is not None
    validate(run.report)
    meter = [row for row in run.report["handoffs"] if row["thread"] == "audio-meter"]
    assert len(meter) == 1, run.report["handoffs"]
    row = meter[0]
    assert row["via"] == "call_soon_threadsafe"
    assert row["site"]["function"] == "AudioMeter.run" and row["site"]["file"] == str(CHAT)
    # Posted every 10 ms: the first post after the slot started waits 290-300 ms.
    assert row["max_ms"] == pytest.approx(300, rel=0.25)
    assert row["worst_during_stall_in"] == {
        "function": "ChatWindow.on_export_clicked", "file": str(CHAT),
        "line": culprit_line(CHAT, "blocking-slot")}
    assert "hand-offs from AudioMeter.run" in run.stderr and "thread audio-meter" in run.stderr
