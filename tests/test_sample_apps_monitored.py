"""The bundled sample apps under LOOPTOOLS=1: the culprit line of each problem, every app."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT, culprit_line, run_app, validate

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
