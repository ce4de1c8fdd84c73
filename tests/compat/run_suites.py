"""Compatibility job: other projects' own test suites, plain and under looptools.

    python tests/compat/run_suites.py [--suite qasync|pytest-asyncio|all] [--cache DIR]
                                      [--mode env|flag|all] [--qt-api pyside6|pyqt6|pyqt5|all]

Each suite is its project's own sdist, fetched from PyPI with pip at run time into a cache
directory (nothing of theirs is kept in this repository but qasync's conftest, see
below) and checked against the sha256 PyPI lists for it.  Its code goes first on
PYTHONPATH, so the tests exercise the sdist's code, not the version installed here.

qasync's suite is qasync 0.25.0's, an sdist that ships its tests (0.28.0's ships none).
That sdist leaves out ``tests/conftest.py`` (the ``application`` fixture and the DEBUG
logging set-up), so the file of tag v0.25.0, kept here, is written in, checked against its
git blob id.  Its CI ran ``QT_API=<binding> pytest -v`` with one binding installed; here
all three are, so ``PYTEST_QT_API`` names the same binding and pytest-qt (installed for
looptools' own tests) loads no second Qt.  Its Pipfile's pytest-raises is not needed: its
one ``@pytest.mark.raises(ExceptionTester)`` marks the class, not the test, so
``test_loop_callback_exceptions_bubble_up`` is never collected, with or without it.

Each suite runs with the pytest command line its project uses, three ways:

* ``plain``: nothing of looptools switched on (no ``LOOPTOOLS*`` variable);
* ``env``:   ``LOOPTOOLS=1`` (the start-up hook), report written into the run's temp dir;
* ``flag``:  ``--looptools`` added to the pytest command line.

Per-test outcomes come from ``--junitxml``, plus a line-per-event progress log written
by this module loaded as a pytest plugin (``-p run_suites``), which still says which test
was running when a run crashes and leaves no XML.  A test whose outcome under ``env`` or
``flag`` differs from ``plain`` is a difference: exit status 1.  Tests that fail plainly
on this machine are deselected by node id (``DESELECT``, reason beside each).

Under ``--looptools`` a test that blocks its loop on purpose fails its default budget
(``max_stall_ms = 250``): that is the plugin's documented verdict, not a compatibility
break.  Such tests are listed in ``BUDGET_VERDICTS``; for them the ``flag`` run must give
exactly that verdict (a looptools budget failure), and anything else is a difference.

Exit status: 1 if any test differs; else 2 if a suite could not be fetched or its plain
run broke; else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("env", "flag")
QT_APIS = ("pyside6", "pyqt6", "pyqt5")
RUN_TIMEOUT_S = 900.0
PROGRESS_VAR = "COMPAT_PROGRESS_FILE"  # not LOOPTOOLS_*: looptools reads those


@dataclasses.dataclass(frozen=True)
class Dist:
    """A file on PyPI."""

    name: str                 # PyPI name
    version: str
    filename: str             # the file on PyPI
    sha256: str               # as PyPI lists it


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str                 # as on the command line
    sdist: Dist
    import_root: str          # put first on PYTHONPATH: the sdist's code, not the venv's
    pytest_args: tuple[str, ...]  # what the project's own test command passes to pytest
    source: str               # where that command comes from (for the table)
    installed: tuple[str, ...] = ()         # distributions that must be installed here
    # Files its sdist leaves out: (path, git blob id at the release tag, text).
    added_files: tuple[tuple[str, str, str], ...] = ()


# tests/conftest.py of qasync tag v0.25.0 (commit fc75340ae9fe60f50ab071afaf43561127a6e18c),
# byte for byte; qasync is BSD-licensed.  Its sdist ships the tests but not this file.
QASYNC_CONFTEST = '''\
# © 2018 Gerard Marull-Paretas <gerard@teslabs.com>
# © 2014 Mark Harviston <mark.harviston@gmail.com>
# © 2014 Arve Knudsen <arve.knudsen@gmail.com>
# BSD License

import os
import logging
from pytest import fixture


logging.basicConfig(
    level=logging.DEBUG, format="%(levelname)s\\t%(filename)s:%(lineno)s %(message)s"
)


if os.name == "nt":
    collect_ignore = ["qasync/_unix.py"]
else:
    collect_ignore = ["qasync/_windows.py"]


@fixture(scope="session")
def application():
    from qasync import QApplication

    return QApplication([])
'''

SUITES = {
    "qasync": Suite(
        "qasync",
        Dist("qasync", "0.25.0", "qasync-0.25.0.tar.gz",
             "f4479f96f48d0899c4e37eb871fbd5084c2066bf21a4513f19ed2993b975a2f3"),
        ".", ("-v",),
        "CI test.yml: QT_API=<binding> pipenv run pytest -v; no pytest ini",
        added_files=(("tests/conftest.py", "e52683a16591d8f2c4b8e622a49d0120597682c6",
                      QASYNC_CONFTEST),)),
    "pytest-asyncio": Suite(
        "pytest-asyncio",
        Dist("pytest-asyncio", "1.5.0", "pytest_asyncio-1.5.0.tar.gz",
             "92c8fa83ca419fd0d4bd6a34df6520dae435841d3733c319343249492adf37f7"),
        ".", (),
        "tox -> make test -> coverage run -m pytest; ini from pyproject.toml",
        # Its pytest11 entry point loads pytest_asyncio.plugin, which then comes from the
        # sdist (first on sys.path); hypothesis is its "test" dependency group.
        installed=("pytest-asyncio", "hypothesis")),
}

# Tests that fail plainly on this machine (pytest 9.2, CPython 3.11, Qt offscreen):
# deselected in every mode.  Only plain failures belong here, never a looptools one.
DESELECT: dict[str, dict[str, str]] = {
    "qasync": {
        "tests/test_qeventloop.py::test_regression_bug13":
            "errors at teardown with every binding: cb3's read notifier is still live when "
            "the loop fixture closes the loop, fires again, and `assert result3 is None` "
            "fails (qasync fixed stopped-loop clean-up in 7642f45, released in 0.28.0)",
    },
    "pytest-asyncio": {},
}

# The documented verdict of `--looptools` on a test that blocks its loop on purpose.
BUDGET_VERDICTS: dict[str, dict[str, str]] = {
    "qasync": {},
    "pytest-asyncio": {},
}
BUDGET_MARK = "exceeds max_"


class FetchError(Exception):
    """A suite could not be fetched; ``unreachable`` when the source could not be reached."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


# ------------------------------------------------------------------------------ fetching

def default_cache() -> Path:
    root = os.environ.get("LOOPTOOLS_TEST_CACHE") or str(Path.home() / ".cache" / "looptools-tests")
    return Path(root) / "compat"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _index_url() -> str:
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                              capture_output=True, text=True)
        url = proc.stdout.strip() if proc.returncode == 0 else ""
    return (url or "https://pypi.org/simple").rstrip("/") + "/"


def pypi_unreachable() -> str | None:
    """Why the package index cannot be reached, or None if it can."""
    try:
        with urllib.request.urlopen(_index_url() + "pip/", timeout=15) as response:
            response.read(1)
    except Exception as exc:
        reason = getattr(exc, "reason", exc)
        return f"the package index {_index_url()} is unreachable ({reason})"
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _download(dist: Dist, into: Path) -> Path:
    """``dist``'s file from the package index with pip, checked against PyPI's sha256."""
    # --no-binary for this one project only: `--no-binary :all:` would also make pip
    # build the sdist's build backend (uv_build needs maturin, then cargo) from source.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--no-deps",
         "--retries", "1", "--timeout", "30", "--no-binary", dist.name, "-d", str(into),
         f"{dist.name}=={dist.version}"],
        capture_output=True, text=True, timeout=600)
    archive = into / dist.filename
    if proc.returncode != 0 or not archive.exists():
        unreachable = pypi_unreachable()
        last = next((line.strip() for line in reversed((proc.stderr or proc.stdout).splitlines())
                     if line.strip()), f"pip exited {proc.returncode}")
        raise FetchError(f"cannot download {dist.name}=={dist.version}: {unreachable or last}",
                         unreachable=bool(unreachable))
    digest = _sha256(archive)
    if digest != dist.sha256:
        raise FetchError(f"{dist.filename}: sha256 {digest} is not PyPI's {dist.sha256}")
    return archive


def _fetched(dest: Path, fill: Callable[[Path], Path]) -> Path:
    """``dest`` in the cache, made once by ``fill(work_dir) -> tree`` under a lock."""
    with _locked(dest):
        if (dest / ".complete").exists():
            return dest
        shutil.rmtree(dest, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            tree = fill(work)
            tree.rename(dest)
            (dest / ".complete").touch()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest


def _unpack_sdist(suite: Suite, work: Path) -> Path:
    archive = _download(suite.sdist, work)
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(work, filter="data")
        except TypeError:  # a Python without extraction filters
            tar.extractall(work)
    tree = work / archive.name[: -len(".tar.gz")]
    source = [f"{archive.name} (sha256 {suite.sdist.sha256}) from PyPI with pip download"]
    for name, blob, text in suite.added_files:
        data = text.encode()
        if _blob_id(data) != blob:
            raise FetchError(f"{suite.name}: the text kept here for {name} is not git blob {blob}")
        if (tree / name).exists():
            raise FetchError(f"{suite.name}: the sdist now ships {name}; drop it from added_files")
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
        source.append(f"{name}: added, git blob {blob} of the release tag")
    (tree / "COMPAT-SOURCE").write_text("\n".join(source) + "\n")
    return tree


def prepare(suite: Suite, cache: Path) -> Path:
    """The unpacked suite in the cache (fetched on first use); raises FetchError."""
    return _fetched(cache / f"{suite.sdist.name}-{suite.sdist.version}",
                    functools.partial(_unpack_sdist, suite))


# ------------------------------------------------------------------------------ running

@dataclasses.dataclass
class Outcome:
    outcome: str              # passed failed error skipped xfailed crashed not-run
    text: str = ""            # failure / error / skip text


@dataclasses.dataclass
class RunResult:
    suite: str
    mode: str                 # plain env flag
    qt_api: str | None
    returncode: int
    seconds: float
    outcomes: dict[str, Outcome]
    stdout_tail: str
    note: str = ""            # crash / timeout / no XML

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes.values():
            out[o.outcome] = out.get(o.outcome, 0) + 1
        return out


def check_installed(suite: Suite) -> None:
    """The distributions the suite needs from this environment are installed."""
    from importlib import metadata

    missing = []
    for name in suite.installed:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise FetchError(f"{suite.name}'s suite needs {', '.join(missing)} installed here")


def child_env(suite: Suite, tree: Path, tmp: Path, mode: str, qt_api: str | None,
              progress: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOOPTOOLS", "PYTEST_", "COV_", "COVERAGE_"))
           and k not in ("QT_API", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    # Bytecode on: every pytester run in pytest-asyncio's suite imports hypothesis again,
    # and pytest rewrites its 180 modules each time unless the rewritten .pyc is cached
    # (6 minutes instead of 80 s).  It changes no outcome.
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONPATH"] = os.pathsep.join([str(tree / suite.import_root), str(HERE)])
    env["PYTEST_DEBUG_TEMPROOT"] = str(tmp)  # pytester's dirs: ours, not /tmp/pytest-of-*
    env[PROGRESS_VAR] = str(progress)
    if qt_api:
        env["QT_API"] = qt_api
        env["PYTEST_QT_API"] = qt_api  # pytest-qt, if installed, loads no second Qt
    if mode == "env":
        env["LOOPTOOLS"] = "1"
        env["LOOPTOOLS_REPORT"] = str(tmp / "looptools-report.json")
    return env


def run_suite(suite: Suite, tree: Path, mode: str, qt_api: str | None = None,
              workdir: Path | None = None, timeout: float = RUN_TIMEOUT_S) -> RunResult:
    """Run the suite once in a fresh copy of ``tree``; ``mode`` is plain, env or flag."""
    check_installed(suite)
    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix=f"compat-{suite.name}-{mode}-")) if own else workdir
    assert base is not None
    try:
        cwd = base / "src"
        shutil.copytree(tree, cwd, ignore=shutil.ignore_patterns(
            ".complete", "__pycache__", ".pytest_cache"))
        tmp = base / "tmp"
        tmp.mkdir()
        junit = base / "junit.xml"
        progress = base / "progress.jsonl"
        cmd = [sys.executable, "-m", "pytest", *suite.pytest_args, f"--junitxml={junit}",
               "-p", "run_suites"]
        for nodeid in DESELECT.get(suite.name, {}):
            cmd += ["--deselect", nodeid]
        if mode == "flag":
            cmd.append("--looptools")
        env = child_env(suite, tree, tmp, mode, qt_api, progress)
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        note = ""
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            note = f"timed out after {timeout:.0f} s"
        seconds = time.monotonic() - started
        rc = proc.returncode
        if rc < 0 and not note:
            note = f"pytest died of {signal.Signals(-rc).name}"
        outcomes = _outcomes(junit, progress, note)
        if not junit.exists() and not note:
            note = f"pytest exited {rc} and wrote no junit XML"
        return RunResult(suite.name, mode, qt_api, rc, seconds, outcomes, out[-6000:], note)
    finally:
        if own:
            shutil.rmtree(base, ignore_errors=True)


def _outcomes(junit: Path, progress: Path, crash: str) -> dict[str, Outcome]:
    """Per node id; from the junit XML, else (a crash) from the progress log."""
    events = _read_progress(progress)
    from_log = _outcomes_from_log(events, crash or "pytest stopped")
    if not junit.exists():
        return from_log
    from _pytest.junitxml import mangle_test_address

    def address(nodeid: str) -> str:
        names = mangle_test_address(nodeid)
        return f"{'.'.join(names[:-1])}::{names[-1]}"

    by_address = {address(n): n for n in from_log}
    out: dict[str, Outcome] = {}
    for case in ET.parse(junit).iter("testcase"):
        key = f"{case.get('classname', '')}::{case.get('name', '')}"
        nodeid = by_address.get(key, key)
        current = _case_outcome(case)
        prior = out.get(nodeid)
        if prior is None or _RANK[current.outcome] > _RANK[prior.outcome]:
            if prior and prior.text and current.text:
                current.text = prior.text + "\n" + current.text
            out[nodeid] = current
    for nodeid, outcome in from_log.items():  # e.g. a collection error junit files oddly
        out.setdefault(nodeid, outcome)
    return out


_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "not-run": 2, "failed": 3, "error": 4,
         "crashed": 5}


def _case_outcome(case: ET.Element) -> Outcome:
    for tag, outcome in (("error", "error"), ("failure", "failed"), ("skipped", "skipped")):
        element = case.find(tag)
        if element is not None:
            if tag == "skipped" and element.get("type") == "pytest.xfail":
                outcome = "xfailed"
            text = "\n".join(filter(None, [element.get("message", ""), element.text or ""]))
            return Outcome(outcome, text.strip())
    return Outcome("passed")


def _read_progress(progress: Path) -> list[dict[str, Any]]:
    events = []
    if progress.exists():
        for line in progress.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def _outcomes_from_log(events: list[dict[str, Any]], crash: str) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    finished: set[str] = set()
    collected: list[str] = []
    for event in events:
        kind, nodeid = event.get("event"), event.get("nodeid", "")
        if kind == "collected":
            collected = list(event.get("nodeids", []))
        elif kind == "start":
            out.setdefault(nodeid, Outcome("crashed", crash))
        elif kind == "report":
            when, outcome, text = event["when"], event["outcome"], event.get("text", "")
            if event.get("xfail"):
                outcome = "xfailed" if outcome == "skipped" else outcome
            elif outcome == "failed" and when != "call":
                outcome = "error"
            prior = out.get(nodeid)
            if prior is None or prior.outcome == "crashed" or _RANK[outcome] > _RANK[prior.outcome]:
                out[nodeid] = Outcome(outcome, text)
            if when == "teardown":
                finished.add(nodeid)
        elif kind == "collect-error":
            out[nodeid] = Outcome("error", event.get("text", ""))
    for nodeid, outcome in out.items():
        if nodeid not in finished and outcome.outcome != "error":
            out[nodeid] = Outcome("crashed", crash)  # started, never torn down
    for nodeid in collected:
        out.setdefault(nodeid, Outcome("not-run", crash))
    return out


# -------------------------------------------------------- the plugin in the child pytest
# Loaded with `-p run_suites`; a no-op unless COMPAT_PROGRESS_FILE is set.

def _log(event: dict[str, Any]) -> None:
    path = os.environ.get(PROGRESS_VAR)
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(event) + "\n")


def pytest_collection_finish(session: Any) -> None:
    _log({"event": "collected", "nodeids": [item.nodeid for item in session.items]})


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _log({"event": "collect-error", "nodeid": report.nodeid,
              "text": str(report.longrepr)[-4000:]})


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _log({"event": "start", "nodeid": nodeid})


def pytest_runtest_logreport(report: Any) -> None:
    text = str(report.longrepr)[-4000:] if report.longrepr else ""
    _log({"event": "report", "nodeid": report.nodeid, "when": report.when,
          "outcome": report.outcome, "xfail": hasattr(report, "wasxfail"), "text": text})


# ------------------------------------------------------------------------------ comparing

@dataclasses.dataclass
class Difference:
    nodeid: str
    plain: Outcome
    monitored: Outcome

    def describe(self, limit: int | None = 2500) -> str:
        text = self.monitored.text.strip()
        if limit is not None and len(text) > limit:
            text = "...\n" + text[-limit:]
        head = f"{self.nodeid}: plain {self.plain.outcome}, monitored {self.monitored.outcome}"
        return head + ("\n" + _indent(text) if text else "")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def compare(plain: RunResult, monitored: RunResult) -> tuple[list[Difference], list[str]]:
    """(tests whose outcome differs, tests that gave their expected budget verdict)."""
    verdicts = BUDGET_VERDICTS.get(plain.suite, {}) if monitored.mode == "flag" else {}
    diffs: list[Difference] = []
    expected: list[str] = []
    for nodeid in sorted(set(plain.outcomes) | set(monitored.outcomes)):
        before = plain.outcomes.get(nodeid, Outcome("not-run", "not collected"))
        after = monitored.outcomes.get(nodeid, Outcome("not-run", "not collected"))
        if nodeid in verdicts and before.outcome == "passed":
            verdict = "looptools:" in after.text and BUDGET_MARK in after.text
            if after.outcome == "failed" and verdict:
                expected.append(nodeid)
            else:
                after = Outcome(after.outcome, "expected the looptools budget verdict "
                                f"({verdicts[nodeid]}), got this:\n{after.text}")
                diffs.append(Difference(nodeid, before, after))
        elif before.outcome != after.outcome:
            diffs.append(Difference(nodeid, before, after))
    return diffs, expected


def run_problem(plain: RunResult, monitored: RunResult, tail: int = 30) -> str | None:
    """A whole-run difference that per-test outcomes may not show, with pytest's last words."""
    why = None
    if monitored.note and not plain.note:
        why = monitored.note
    elif not monitored.outcomes and plain.outcomes:
        why = f"pytest exited {monitored.returncode} and ran no test"
    if why is None:
        return None
    last = "\n".join(monitored.stdout_tail.rstrip().splitlines()[-tail:])
    return f"{monitored.mode} run: {why}; its output ends:\n" + _indent(last)


def describe_diffs(diffs: list[Difference], verbose: bool = True, shown: int = 40,
                   limit: int | None = 2500) -> list[str]:
    """One entry per differing test, except that tests a broken run never ran are counted."""
    lines: list[str] = []
    not_run = [d for d in diffs if d.monitored.outcome == "not-run"]
    for diff in [d for d in diffs if d.monitored.outcome != "not-run"][:shown]:
        lines.append(diff.describe(limit) if verbose else
                     f"{diff.nodeid}: plain {diff.plain.outcome}, "
                     f"monitored {diff.monitored.outcome}")
    rest = len(diffs) - len(not_run) - shown
    if rest > 0:
        lines.append(f"... and {rest} more that ran")
    if not_run:
        lines.append(f"{len(not_run)} tests never ran (e.g. {not_run[0].nodeid}, plain "
                     f"{not_run[0].plain.outcome})")
    return lines


# ------------------------------------------------------------------------------ command line

def _label(suite: str, qt_api: str | None) -> str:
    return f"{suite} [QT_API={qt_api}]" if qt_api else suite


def _plain_summary(result: RunResult, deselected: int) -> str:
    counts = result.counts()
    parts = [f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "skipped")]
    parts += [f"{v} {k}" for k, v in sorted(counts.items())
              if k not in ("passed", "failed", "skipped")]
    if deselected:
        parts.append(f"{deselected} deselected")
    return ", ".join(parts)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--cache", type=Path, default=None,
                        help="download cache (default $LOOPTOOLS_TEST_CACHE/compat or "
                             "~/.cache/looptools-tests/compat)")
    parser.add_argument("--mode", choices=[*MODES, "all"], default="all",
                        help="monitored mode(s) to compare with the plain run")
    parser.add_argument("--qt-api", choices=[*QT_APIS, "all"], default="all",
                        help="Qt binding(s) for qasync's suite (QT_API)")
    parser.add_argument("--timeout", type=float, default=RUN_TIMEOUT_S,
                        help="seconds per pytest run")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the whole failure text of each difference")
    args = parser.parse_args(argv)

    cache = args.cache or default_cache()
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    modes = list(MODES) if args.mode == "all" else [args.mode]
    qt_apis = list(QT_APIS) if args.qt_api == "all" else [args.qt_api]
    rows = [["suite", "QT_API", "plain (tests run here)", "s", *[f"{m}" for m in modes]]]
    details: list[str] = []
    status = 0
    fetch_failed = False
    for name in suites:
        suite = SUITES[name]
        try:
            tree = prepare(suite, cache)
            check_installed(suite)
        except FetchError as exc:
            rows.append([f"{name} {suite.sdist.version}", "-", "NOT RUN (below)", "",
                         *["" for _ in modes]])
            details.append(f"{name}: not run: {exc}")
            fetch_failed = True
            continue
        for qt_api in (qt_apis if name == "qasync" else [None]):
            label = _label(name, qt_api)
            print(f"run_suites: {label} plain ...", file=sys.stderr, flush=True)
            plain = run_suite(suite, tree, "plain", qt_api, timeout=args.timeout)
            row = [f"{name} {suite.sdist.version}", qt_api or "-",
                   _plain_summary(plain, len(DESELECT[name])), f"{plain.seconds:.0f}"]
            rows.append(row)
            if plain.note:
                row[2] = "BROKE (below)"
                row += ["" for _ in modes]
                details.append(f"{label}: the plain run broke: {plain.note}\n"
                               + _indent(plain.stdout_tail[-2000:]))
                fetch_failed = True
                continue
            for nodeid, o in plain.outcomes.items():
                if o.outcome in ("failed", "error"):
                    details.append(f"{label}: note: {nodeid} fails plainly and is not in "
                                   "DESELECT")
            for mode in modes:
                print(f"run_suites: {label} {mode} ...", file=sys.stderr, flush=True)
                monitored = run_suite(suite, tree, mode, qt_api, timeout=args.timeout)
                diffs, expected = compare(plain, monitored)
                problem = run_problem(plain, monitored)
                cell = "same" if not diffs and not problem else (
                    f"{len(diffs)} DIFFER" + (f" ({monitored.note})" if monitored.note else ""))
                if expected:
                    cell += f" +{len(expected)} budget verdict"
                row.append(f"{cell}, {monitored.seconds:.0f} s")
                for nodeid in expected:
                    details.append(f"{label}, {mode}: {nodeid}: the looptools budget "
                                   f"verdict, as expected ({BUDGET_VERDICTS[name][nodeid]})")
                if problem:
                    details.append(f"{label}, {mode}: " + (
                        problem if args.verbose else
                        "\n".join(problem.splitlines()[:1] + problem.splitlines()[-12:])))
                if diffs:
                    details.append(f"{label}, {mode}: {len(diffs)} of {len(plain.outcomes)} "
                                   "tests differ from the plain run:")
                    details.extend(_indent(line) for line in describe_diffs(
                        diffs, verbose=True, limit=None if args.verbose else 1200))
                if diffs or problem:
                    status = 1
    print(_table(rows))
    for line in details:
        print(line)
    return status if status or not fetch_failed else 2


if __name__ == "__main__":
    sys.exit(main())
