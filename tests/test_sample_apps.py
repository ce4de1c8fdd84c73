"""The bundled sample apps: they run, quit cleanly, inject what they claim, and say where.

Every app runs as a real subprocess (``sys.executable``, ``QT_QPA_PLATFORM=offscreen``, no
looptools autostart). All runs are started together by one module fixture, a few at a time, so
the whole file takes roughly 15-25 s on two cores.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

APPS_DIR = Path(__file__).resolve().parent.parent / "sample_apps"

ALL_PROBLEMS = (
    "blocking-slot",
    "blocking-coro",
    "cpu-parse",
    "sync-io",
    "gil-call",
    "leaked-task",
    "unretrieved-exception",
)

#: The specification: which problems each app implements.
SUPPORTED: dict[str, tuple[str, ...]] = {
    # A widget touched from a worker thread: the app with a worker thread of its own.
    "chat_qasync": (*ALL_PROBLEMS, "widget-from-worker"),
    "browser_qtasyncio": ALL_PROBLEMS,
    "pipeline_asyncio": tuple(p for p in ALL_PROBLEMS if p != "blocking-slot"),
    "gallery_threadpool": ALL_PROBLEMS,
}

SUMMARY = {
    "chat_qasync": re.compile(r"^chat_qasync: \d+ replies, \d+ tokens, \d+ moderated, \d+ chars$"),
    "browser_qtasyncio": re.compile(
        r"^browser_qtasyncio: \d+ files, \d+ previews, \d+ downloads, \d+ bytes$"
    ),
    "pipeline_asyncio": re.compile(
        r"^pipeline_asyncio: \d+ records, \d+ segments, \d+ errors, \d+ services$"
    ),
    "gallery_threadpool": re.compile(r"^gallery_threadpool: \d+ thumbnails, \d+ albums$"),
}

#: Small stalls and an early first injection keep the matrix quick.
PROBLEM_ARGS = ["--duration", "1.0", "--stall-ms", "80", "--problem-at", "0.3"]
TIMEOUT = 60.0
PARALLEL = 6


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"{' '.join(self.args)} -> exit {self.returncode} in {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr[-3000:]}"
        )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


def _command(app: str, *args: str) -> list[str]:
    return [sys.executable, str(APPS_DIR / f"{app}.py"), *args]


def run_app(app: str, *args: str, interrupt_after: float | None = None,
            qt_api: str | None = None) -> Run:
    """Run one app to completion (optionally sending SIGINT after some seconds)."""
    cmd = _command(app, *args)
    start = time.monotonic()
    env = _env() if qt_api is None else {**_env(), "QT_API": qt_api}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        if interrupt_after is not None:
            try:
                proc.wait(timeout=interrupt_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        stderr += f"\n[test] killed after {TIMEOUT:.0f}s"
    return Run(cmd[1:], proc.returncode, stdout, stderr, time.monotonic() - start)


def _jobs() -> dict[str, tuple[str, tuple[str, ...], float | None]]:
    jobs: dict[str, tuple[str, tuple[str, ...], float | None]] = {}
    for app, supported in SUPPORTED.items():
        jobs[f"{app}:healthy"] = (app, ("--duration", "1.5"), None)
        for problem in supported:
            jobs[f"{app}:{problem}"] = (app, ("--problem", problem, *PROBLEM_ARGS), None)
        jobs[f"{app}:sigint"] = (app, ("--duration", "0"), 1.5)
    jobs["chat_qasync:pyqt6"] = ("chat_qasync", ("--problem", "widget-from-worker",
                                                 *PROBLEM_ARGS), None)
    jobs["chat_qasync:combined"] = (
        "chat_qasync",
        ("--problem", "blocking-coro,leaked-task", "--problem", "sync-io", "--repeat", "2",
         "--every", "0.2", "--stall-ms", "50", "--problem-at", "0.2", "--duration", "0.5"),
        None,
    )
    jobs["gallery_threadpool:combined"] = (
        "gallery_threadpool",
        ("--problem", "blocking-slot,gil-call,unretrieved-exception", "--repeat", "2",
         "--every", "0.2", "--stall-ms", "50", "--problem-at", "0.2", "--duration", "0.5"),
        None,
    )
    return jobs


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    jobs = _jobs()
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {
            key: pool.submit(run_app, app, *args, interrupt_after=after,
                             qt_api="pyqt6" if key.endswith(":pyqt6") else None)
            for key, (app, args, after) in jobs.items()
        }
        yield {key: future.result() for key, future in futures.items()}


def _check_clean_exit(app: str, run: Run) -> str:
    assert run.returncode == 0, run.describe()
    lines = run.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be one summary line\n{run.describe()}"
    assert SUMMARY[app].match(lines[0]), run.describe()
    assert "Traceback" not in run.stderr or "ValueError: boom" in run.stderr, run.describe()
    return lines[0]


@pytest.mark.parametrize("app", sorted(SUPPORTED))
def test_healthy_run_exits_cleanly_with_summary(app: str, runs: dict[str, Run]) -> None:
    run = runs[f"{app}:healthy"]
    _check_clean_exit(app, run)
    assert run.stderr.count("Traceback") == 0, run.describe()
    assert run.seconds < 15, run.describe()


@pytest.mark.parametrize(
    ("app", "problem"),
    [(app, problem) for app, supported in sorted(SUPPORTED.items()) for problem in supported],
)
def test_every_supported_problem_runs_and_exits_cleanly(
    app: str, problem: str, runs: dict[str, Run]
) -> None:
    run = runs[f"{app}:{problem}"]
    summary = _check_clean_exit(app, run)
    # The summary is deterministic: an injected problem never changes what the app reports.
    assert summary == runs[f"{app}:healthy"].stdout.strip(), run.describe()
    if problem == "unretrieved-exception":
        assert "ValueError" in run.stderr and "boom" in run.stderr, run.describe()
    else:
        assert "Traceback" not in run.stderr, run.describe()


@pytest.mark.parametrize("key", ["chat_qasync:combined", "gallery_threadpool:combined"])
def test_several_problems_and_repeats_at_once(key: str, runs: dict[str, Run]) -> None:
    app = key.split(":")[0]
    summary = _check_clean_exit(app, runs[key])
    assert summary == runs[f"{app}:healthy"].stdout.strip()


def test_chat_runs_on_the_binding_qt_api_names(runs: dict[str, Run]) -> None:
    """chat_qasync on PyQt6 (QT_API=pyqt6), its worker touching a widget: the same summary."""
    run = runs["chat_qasync:pyqt6"]
    summary = _check_clean_exit("chat_qasync", run)
    assert summary == runs["chat_qasync:healthy"].stdout.strip(), run.describe()


def test_chat_refuses_a_binding_it_does_not_run_on() -> None:
    env = {**_env(), "QT_API": "pyside2"}
    done = subprocess.run(_command("chat_qasync"), capture_output=True, text=True, env=env,
                          timeout=TIMEOUT)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == ("chat_qasync: error: QT_API='pyside2': this app runs on "
                                   "pyside6, pyqt6, pyqt5")


@pytest.mark.parametrize("app", sorted(SUPPORTED))
def test_sigint_quits_cleanly(app: str, runs: dict[str, Run]) -> None:
    run = runs[f"{app}:sigint"]
    _check_clean_exit(app, run)
    assert "KeyboardInterrupt" not in run.stderr, run.describe()


@pytest.mark.parametrize(
    ("app", "args", "needle"),
    [
        ("pipeline_asyncio", ("--problem", "blocking-slot"), "not supported"),
        ("pipeline_asyncio", ("--problem", "none,blocking-slot"), "not supported"),
        ("gallery_threadpool", ("--problem", "widget-from-worker"), "not supported"),
        ("chat_qasync", ("--problem", "bogus"), "unknown problem"),
        ("browser_qtasyncio", ("--problem", "cpu-parse,nope"), "unknown problem"),
        ("gallery_threadpool", ("--problem", "sleepy"), "unknown problem"),
        ("pipeline_asyncio", ("--stall-ms", "-5"), "--stall-ms"),
    ],
)
def test_bad_problem_exits_2_with_one_line_error(app: str, args: tuple[str, ...],
                                                 needle: str) -> None:
    run = run_app(app, *args)
    assert run.returncode == 2, run.describe()
    assert run.stdout == "", run.describe()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.describe()
    assert lines[0].startswith(f"{app}: error: ") and needle in lines[0], run.describe()


def _markers(app: str) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    source = (APPS_DIR / f"{app}.py").read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(source, start=1):
        match = re.search(r"#\s*CULPRIT:\s*([\w-]+)\s*$", line)
        if match:
            found.setdefault(match.group(1), []).append((lineno, line.strip()))
    return found


@pytest.mark.parametrize("app", sorted(SUPPORTED))
def test_culprit_markers_name_one_line_per_supported_problem(app: str) -> None:
    markers = _markers(app)
    assert set(markers) == set(SUPPORTED[app]), markers
    for problem, places in markers.items():
        assert len(places) == 1, f"{problem}: {places}"
        _, line = places[0]
        if problem in ("blocking-slot", "blocking-coro"):
            assert line.startswith("time.sleep("), line
        elif problem == "cpu-parse":
            assert re.match(r"def parse_\w+\(", line), line
        elif problem == "gil-call":
            # One C call that never runs Python code: sum(range(n)), re.match or a C-only spin.
            assert re.search(r"\b(sum\(range|re\.match|any\(map)\(", line), line
        elif problem == "sync-io":
            assert re.search(r"\b(write|pwrite)\(", line), line
        elif problem == "leaked-task":
            assert 'name="leaky-poller"' in line, line
        elif problem == "unretrieved-exception":
            assert line.startswith('raise ValueError("boom")'), line
        elif problem == "widget-from-worker":
            assert re.match(r"\w+\.setText\(", line), line


def test_common_module_holds_no_culprits() -> None:
    for path in APPS_DIR.glob("*.py"):
        if path.name.startswith("_"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"#\s*CULPRIT:\s*[\w-]+\s*$", text, re.M), path


@pytest.mark.parametrize("app", sorted(SUPPORTED))
def test_apps_do_not_import_looptools(app: str) -> None:
    source = (APPS_DIR / f"{app}.py").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(from|import)\s+looptools\b", source, re.M)
