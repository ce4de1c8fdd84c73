"""Run apps in real subprocesses with monitoring on, and read what they reported."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
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


def culprit_line(path: Path, problem: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if re.search(rf"#\s*CULPRIT:\s*{re.escape(problem)}\b", line):
            return number
    raise AssertionError(f"no CULPRIT marker for {problem} in {path}")


def validate(report: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
