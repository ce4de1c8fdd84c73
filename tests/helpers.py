"""Run apps in real subprocesses with monitoring on, and read what they reported."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "apps" / "probe_app.py"
SCHEMA = ROOT / "looptools" / "schema" / "report.schema.json"


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    marks: dict[str, float]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    out["QT_QPA_PLATFORM"] = "offscreen"
    out.update(extra)
    return out


def run_app(args: list[str], tmp_path: Path, monitored: bool = True, timeout: float = 60,
            environ: dict[str, str] | None = None, **settings: str) -> Run:
    report = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    extra = {"LOOPTOOLS": "1", "LOOPTOOLS_REPORT": str(report)} if monitored else {}
    extra.update({f"LOOPTOOLS_{k.upper()}": v for k, v in settings.items()})
    extra.update(environ or {})
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout,
        env=env(**extra), cwd=tmp_path,
    )
    marks: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if line.startswith("MARKS "):
            marks = json.loads(line[6:])
    data = json.loads(report.read_text()) if report.exists() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, data, marks)


def run_probe(loop: str, problem: str, tmp_path: Path, stall_ms: int = 200,
              **settings: str) -> Run:
    return run_app([str(PROBE), loop, problem, str(stall_ms)], tmp_path, **settings)


def first_paint(report: dict[str, Any], script: Path, loop_call: str,
                within_s: float) -> list[dict[str, Any]]:
    """The stalls of ``report`` that can be Qt's own first layout and paint of the
    app's window (fonts loaded on first use): source ``qt``, no application code
    running (no culprit; the script's line that starts the event loop, the first
    line holding ``loop_call``, is in the stack and never named), within
    ``within_s`` of attaching, under 150 ms.  A test of a healthy app with a window
    allows one."""
    line = next(n for n, text in enumerate(script.read_text().splitlines(), 1)
                if loop_call in text and not text.lstrip().startswith("#"))

    def started_the_loop(frame: dict[str, Any]) -> bool:
        return frame["function"] == "<module>" and frame["line"] == line \
            and Path(frame["file"]).resolve() == script.resolve()

    attached = report["loop"]["attached_at_s"] or 0.0
    return [s for s in report["stalls"]
            if s["source"] == "qt" and s["culprit"] is None
            and any(started_the_loop(frame) for frame in s["stack"])
            and s["started_at_s"] - attached < within_s and s["duration_ms"] < 150]


def run_queue_time() -> float:
    """The calling thread's time so far on a run queue, ready but given no CPU (its
    ``schedstat``; 0 where Linux's is not)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            return int(f.read().split()[1]) * 1e-9
    except OSError:
        return 0.0


def culprit_line(path: Path, problem: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if re.search(rf"#\s*CULPRIT:\s*{re.escape(problem)}\b", line):
            return number
    raise AssertionError(f"no CULPRIT marker for {problem} in {path}")


def validate(report: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


def with_off_loop_sections(report: dict[str, Any], text: str = "") -> dict[str, Any]:
    """*report* with ``handoffs``, ``worker_loops`` and ``affinity`` added as the three
    detectors write them (two posting sites, one worker-loop stall, one affinity site);
    *text* is appended to every name, e.g. to check that hostile strings stay text."""
    def frame(function: str, file: str, line: int) -> dict[str, Any]:
        return {"function": function + text, "file": file + text, "line": line}

    culprit = frame("Poller._poll", "app/poller.py", 41)
    stall = {"started_at_s": 2.5, "duration_ms": 250.0, "detected_after_ms": None,
             "culprit": culprit, "stack": [frame("Poller.run", "app/poller.py", 30), culprit],
             "callback": "Task-3" + text, "thread": "device-poller" + text,
             "thread_ident": 140001, "loop_kind": "asyncio", "source": "callback",
             "stack_source": "watchdog"}
    report = {**report, "handoffs": [
        {"via": "call_soon_threadsafe", "thread": "net-reader" + text,
         "site": frame("Reader.deliver", "app/net.py", 88), "count": 40, "p50_ms": 0.12,
         "p99_ms": 3.4, "max_ms": 4.1, "worst_during_stall_in": None},
        {"via": "run_coroutine_threadsafe", "thread": "device-poller" + text,
         "site": frame("Poller.report", "app/poller.py", 57), "count": 12, "p50_ms": 1.5,
         "p99_ms": 790.0, "max_ms": 812.0,
         "worst_during_stall_in": frame("ChatWindow.on_send_clicked", "app/chat.py", 97)},
    ], "worker_loops": {
        "loops": 2, "watched": 2, "running": 0, "run_s": 3.0,
        "stall_summary": {"count": 1, "total_ms": 250.0, "max_ms": 250.0, "dropped": 0},
        "threads": [{"thread": "device-poller" + text, "loops": 1, "kinds": {"asyncio": 1},
                     "run_s": 2.0, "stalls": {"count": 1, "total_ms": 250.0, "max_ms": 250.0},
                     "worst": {k: stall[k] for k in ("started_at_s", "duration_ms", "culprit",
                                                     "callback", "thread", "thread_ident")}},
                    {"thread": "Thread-* (run)", "loops": 1, "kinds": {"asyncio": 1},
                     "run_s": 1.0, "stalls": {"count": 0, "total_ms": 0.0, "max_ms": 0.0},
                     "worst": None}],
        "stalls": [stall],
    }, "affinity": {
        "violations": [{"source": "widget_call", "call": "QLabel.setText" + text,
                        "site": frame("Worker.show_result", "app/worker.py", 23), "count": 3,
                        "first_at_s": 1.25, "object": {"class": "QLabel",
                                                       "object_name": "status" + text},
                        "owner_thread": {"name": "MainThread", "ident": 1},
                        "calling_thread": {"name": "result-worker" + text, "ident": 2},
                        "message": None}],
        "dropped": 0,
    }}
    validate(report)
    return report
