"""Third-party Qt+asyncio apps and examples, fetched from the package registries at test time.

Nothing here is copied into the repository: each app is downloaded with the registry's
ordinary client (pip for PyPI, apt-get for Debian) into a cache directory that is reused
across runs — ``$LOOPTOOLS_TEST_CACHE``, else ``~/.cache/looptools-tests``.  A test is
skipped only when the registry cannot be reached; any other failure to fetch is a failure.

What is fetched (docs/tested-with.md has the list and what each test asserts):

* ``pyside6-examples`` (PyPI wheel, same version as the installed PySide6): the Qt for
  Python examples, among them ``async/minimal`` and ``async/eratosthenes`` (QtAsyncio).
* ``feeluown`` 5.1.2 (PyPI sdist, built by pip; PyQt6) and 4.1.10 (PyPI wheel; PyQt5), each
  with pinned dependencies, installed with ``pip install --no-deps --target`` into the cache
  (never into the virtualenv); and Debian's ``libmpv2`` with whatever of its dependencies
  the machine lacks, unpacked with ``dpkg-deb -x`` (no root, nothing installed
  system-wide): FeelUOwn loads libmpv at start-up even when nothing plays.
* ``qtinter`` 0.9.1 (PyPI sdist, which ships ``examples/``; used from its ``src/``).
* PyQt6 / PyQt5 into the cache too, when the virtualenv has none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from compat.run_suites import pypi_unreachable  # one check of the package index for both

ROOT = Path(__file__).resolve().parent.parent
LOOPTOOLS = [sys.executable, "-m", "looptools"]

# FeelUOwn 5.1.2 and the versions of its runtime dependencies it was tested with
# (what pip resolved for it on PyPI for CPython 3.11), installed with --no-deps so that
# nothing else (qasync, PyQt6) is pulled in behind our back.
_COMMON = [
    "annotated-types==0.8.0", "certifi==2026.10.19.post1", "charset-normalizer==3.5.3",
    "idna==3.20", "janus==2.0.0", "mutagen==1.48.1", "pydantic==2.14.4",
    "pydantic_core==2.50.5", "requests==2.34.2", "tomlkit==0.15.2",
    "typing-inspection==0.4.5", "urllib3==2.8.0",
]
# FeelUOwn 5.x runs on PyQt6 (sdist only on PyPI); 4.1.10 is the last on PyQt5 (a wheel).
FEELUOWN = {
    "5.1.2": {"binding": "PyQt6",
              "requirements": ["feeluown==5.1.2", *_COMMON, "babel==2.19.0", "pytz==2026.6",
                               "fluent.runtime==0.4.0", "fluent.syntax==0.19.0"]},
    "4.1.10": {"binding": "PyQt5", "requirements": ["feeluown==4.1.10", *_COMMON]},
}
BINDING_REQUIREMENTS = {
    "PyQt6": ["PyQt6==6.11.0", "PyQt6-Qt6==6.11.2", "PyQt6_sip==13.13.0"],
    "PyQt5": ["PyQt5==5.15.11", "PyQt5-Qt5==5.15.19", "PyQt5_sip==12.20.0"],
}


def cache_dir() -> Path:
    root = os.environ.get("LOOPTOOLS_TEST_CACHE") or str(Path.home() / ".cache" / "looptools-tests")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(name: str) -> Iterator[Path]:
    """Serialise fetches of one thing between concurrent test runs."""
    lock = cache_dir() / f".{name}.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield cache_dir() / name
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- registries

def pip(args: list[str], what: str, timeout: float = 600) -> None:
    """Run pip; skip the test if PyPI cannot be reached, fail it on any other error."""
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 0:
        return
    unreachable = pypi_unreachable()
    if unreachable:
        pytest.skip(f"cannot fetch {what}: {unreachable}")
    raise AssertionError(f"pip could not fetch {what} (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


# --------------------------------------------------------------------------- PySide6 examples

def pyside6_version() -> str:
    import PySide6

    return str(PySide6.__version__)


def pyside6_examples() -> Path:
    """``PySide6/examples`` from the ``pyside6-examples`` wheel matching the installed PySide6."""
    version = pyside6_version()
    with _locked(f"pyside6-examples-{version}") as dest:
        done = dest / ".complete"
        if not done.exists():
            shutil.rmtree(dest, ignore_errors=True)
            download = dest.with_name(dest.name + ".download")
            shutil.rmtree(download, ignore_errors=True)
            pip(["download", "--no-deps", "--only-binary", ":all:", "-d", str(download),
                 f"pyside6-examples=={version}"], f"pyside6-examples=={version}")
            wheel = next(download.glob("*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                members = [n for n in archive.namelist() if n.startswith("PySide6/examples/")]
                archive.extractall(dest, members)
            (dest / "SOURCE").write_text(f"{wheel.name} from PyPI (pip download)\n")
            shutil.rmtree(download, ignore_errors=True)
            done.touch()
        return dest / "PySide6" / "examples"


# --------------------------------------------------------------------------- FeelUOwn

def _importable(module: str) -> bool:
    proc = subprocess.run([sys.executable, "-c", f"import {module}"],
                          capture_output=True, env=base_env())
    return proc.returncode == 0


def binding_path(binding: str) -> list[Path]:
    """Where ``binding`` (PyQt6 / PyQt5) comes from: nothing extra when the virtualenv has it,
    else a ``pip install --target`` of it in the cache, to put on PYTHONPATH."""
    if _importable(f"{binding}.QtWidgets"):
        return []
    requirements = BINDING_REQUIREMENTS[binding]
    with _locked(f"binding-{binding}") as dest:
        if not (dest / ".complete").exists():
            shutil.rmtree(dest, ignore_errors=True)
            pip(["install", "--no-deps", "--target", str(dest), *requirements],
                " ".join(requirements))
            (dest / ".complete").touch()
    return [dest]


def pythonpath(*entries: Path) -> str:
    return os.pathsep.join([*map(str, entries), *filter(None, [os.environ.get("PYTHONPATH")])])


@dataclasses.dataclass
class FeelUOwn:
    target: Path          # pip --target directory: feeluown and its dependencies
    extra: list[Path]     # the Qt binding, when the virtualenv lacks it
    libdirs: list[Path]   # where libmpv and the libraries it needs are
    libmpv: str           # what MPV_DYLIB_PATH must name

    def env(self, home: Path) -> dict[str, str]:
        out = base_env()
        out["HOME"] = str(home)
        for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME",
                    "XDG_RUNTIME_DIR", "FEELUOWN_USER_HOME"):
            out.pop(var, None)
        out["PYTHONPATH"] = pythonpath(self.target, *self.extra)
        out["MPV_DYLIB_PATH"] = self.libmpv
        if self.libdirs:
            out["LD_LIBRARY_PATH"] = os.pathsep.join(
                [*map(str, self.libdirs), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])])
        return out


def feeluown(version: str) -> FeelUOwn:
    spec = FEELUOWN[version]
    requirements = list(spec["requirements"])
    with _locked(f"feeluown-{version}") as dest:
        if not (dest / ".complete").exists():
            shutil.rmtree(dest, ignore_errors=True)
            pip(["install", "--no-deps", "--target", str(dest), *requirements],
                f"feeluown=={version} and its dependencies")
            (dest / "SOURCE").write_text(
                "pip install --no-deps --target from PyPI:\n" + "\n".join(requirements) + "\n")
            (dest / ".complete").touch()
    extra = binding_path(str(spec["binding"]))
    libdirs, libmpv = _libmpv()
    return FeelUOwn(dest, extra, libdirs, libmpv)


# --------------------------------------------------------------------------- qtinter

QTINTER_VERSION = "0.9.1"


def qtinter() -> Path:
    """The qtinter sdist, unpacked: ``src/`` (the library) and ``examples/``."""
    with _locked(f"qtinter-{QTINTER_VERSION}") as dest:
        if not (dest / ".complete").exists():
            shutil.rmtree(dest, ignore_errors=True)
            download = dest.with_name(dest.name + ".download")
            shutil.rmtree(download, ignore_errors=True)
            pip(["download", "--no-deps", "--no-binary", ":all:", "-d", str(download),
                 f"qtinter=={QTINTER_VERSION}"], f"qtinter=={QTINTER_VERSION} (sdist)")
            sdist = next(download.glob("qtinter-*.tar.gz"))
            with tarfile.open(sdist) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(dest, filter="data")
                else:  # pragma: no cover - Pythons without extraction filters
                    archive.extractall(dest)
            (dest / "SOURCE").write_text(f"{sdist.name} from PyPI (pip download --no-binary)\n")
            shutil.rmtree(download, ignore_errors=True)
            (dest / ".complete").touch()
    return dest / f"qtinter-{QTINTER_VERSION}"


def _find_system_libmpv() -> str | None:
    import ctypes.util

    return ctypes.util.find_library("mpv")


def _libmpv() -> tuple[list[Path], str]:
    """libmpv: the system's if it has one, else Debian's ``libmpv2`` unpacked into the cache."""
    found = _find_system_libmpv()
    if found:
        return [], found
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("FeelUOwn needs libmpv, and neither it nor Debian's apt-get is here")
    with _locked("debian-libmpv2") as dest:
        root = dest / "root"
        done = dest / ".complete"
        if not done.exists():
            shutil.rmtree(dest, ignore_errors=True)
            debs = dest / "debs"
            debs.mkdir(parents=True)
            sim = subprocess.run(["apt-get", "install", "--simulate", "--no-install-recommends",
                                  "libmpv2"], capture_output=True, text=True, timeout=120)
            names = re.findall(r"^Inst (\S+)", sim.stdout, re.M)
            if sim.returncode != 0 or not names:
                pytest.skip("cannot fetch Debian's libmpv2: apt-get knows no such package here "
                            f"(run apt-get update?): {sim.stderr.strip()[-500:]}")
            got = subprocess.run(["apt-get", "download", *names], cwd=debs, capture_output=True,
                                 text=True, timeout=600)
            if got.returncode != 0:
                pytest.skip(f"cannot fetch Debian's libmpv2: the Debian archive is unreachable "
                            f"({got.stderr.strip()[-500:]})")
            for deb in sorted(debs.glob("*.deb")):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=120)
            (dest / "SOURCE").write_text(
                "apt-get download + dpkg-deb -x (Debian):\n"
                + "\n".join(sorted(p.name for p in debs.glob("*.deb"))) + "\n")
            shutil.rmtree(debs)
            done.touch()
    libdir = root / "usr" / "lib" / "x86_64-linux-gnu"
    if not libdir.exists():
        libdir = next(p.parent for p in root.rglob("libmpv.so.*"))
    dirs = [libdir, *[p for p in libdir.iterdir() if p.is_dir()]]
    libmpv = next(libdir.glob("libmpv.so.*"))
    return dirs, str(libmpv)


# --------------------------------------------------------------------------- running

@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    seconds: float


def base_env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    out["QT_QPA_PLATFORM"] = "offscreen"
    # pytest-qt exports QT_API (this project's qt_api = "pyside6"); qasync obeys it, and a
    # PyQt app started with it gets qasync on PySide6.  The apps choose their own binding.
    for var in ("QT_API", "PYTEST_QT_API", "PYTHONUNBUFFERED"):
        out.pop(var, None)
    out.update(extra)
    return out


def run(cmd: list[str], *, env: dict[str, str], cwd: Path, stop_after: float | None = None,
        timeout: float = 60, report: Path | None = None, ready: str | None = None) -> Run:
    """Run ``cmd``; with ``stop_after``, send it SIGINT then (3 s later) SIGTERM, SIGKILL.

    ``stop_after`` counts from the start, or, with ``ready``, from the moment the app
    printed ``ready`` on stdout: a cold first start of a big app (its imports read from a
    cold disk on a busy machine) may take longer than the run it is meant to have."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    out_parts: list[str] = []
    err_parts: list[str] = []
    seen_ready = threading.Event()

    def pump(stream: Any, parts: list[str], watch: bool) -> None:
        for line in iter(stream.readline, ""):
            parts.append(line)
            if watch and ready is not None and ready in line:
                seen_ready.set()
        stream.close()

    pumps = [threading.Thread(target=pump, args=(proc.stdout, out_parts, True), daemon=True),
             threading.Thread(target=pump, args=(proc.stderr, err_parts, False), daemon=True)]
    for t in pumps:
        t.start()

    def ended_within(seconds: float) -> bool:
        try:
            proc.wait(timeout=max(0.0, seconds))
            return True
        except subprocess.TimeoutExpired:
            return False

    def collected() -> tuple[str, str]:
        for t in pumps:
            t.join(timeout=10)
        return "".join(out_parts), "".join(err_parts)

    deadline = started + timeout
    if stop_after is None:
        done = ended_within(timeout)
    else:
        if ready is not None:
            while not seen_ready.is_set() and proc.poll() is None \
                    and time.monotonic() < deadline:
                seen_ready.wait(0.05)
        done = ended_within(min(stop_after, deadline - time.monotonic()))
        if not done and time.monotonic() < deadline:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                if ended_within(3):
                    done = True
                    break
    if not done:
        proc.kill()
        proc.wait()
        out, err = collected()
        raise AssertionError(f"{cmd} did not finish in {timeout} s:\n{out}\n{err}")
    out, err = collected()
    seconds = time.monotonic() - started
    data = json.loads(report.read_text()) if report is not None and report.exists() else None
    return Run(proc.returncode, out, err, data, seconds)


def run_python(args: list[str], *, env: dict[str, str], cwd: Path, monitored: bool,
               stop_after: float | None = None, timeout: float = 60,
               ready: str | None = None) -> Run:
    """``python ARGS`` plainly, or with ``LOOPTOOLS=1`` and the report in ``cwd``."""
    report = None
    env = dict(env)
    if monitored:
        report = cwd / f"report-{time.monotonic_ns()}.json"
        env.update(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report))
    return run([sys.executable, *args], env=env, cwd=cwd, stop_after=stop_after,
               timeout=timeout, report=report, ready=ready)


def profile(args: list[str], *, env: dict[str, str], cwd: Path, duration: float,
            timeout: float = 60, ready: str | None = None) -> Run:
    """``looptools profile --no-dashboard --duration D ARGS`` (args: a script or -m module).

    With ``ready``: no ``--duration``; ``duration`` seconds after the app printed ``ready``
    the command gets SIGINT, as from Ctrl-C, and stops the app the same way."""
    report = cwd / f"profile-{time.monotonic_ns()}.json"
    timing = [] if ready is not None else ["--duration", str(duration)]
    cmd = [*LOOPTOOLS, "profile", "--no-dashboard", *timing, "--report", str(report), *args]
    if ready is not None:
        return run(cmd, env=env, cwd=cwd, timeout=timeout, report=report, ready=ready,
                   stop_after=duration)
    return run(cmd, env=env, cwd=cwd, timeout=timeout, report=report)


def marker_line(path: Path, marker: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if f"# {marker}" in line:
            return number
    raise AssertionError(f"no '# {marker}' in {path}")


def describe(report: dict[str, Any] | None) -> str:
    """A short excerpt of a report for assertion messages."""
    if report is None:
        return "no report"
    keep = {k: report.get(k) for k in ("loop", "stall_summary", "detector_errors")}
    keep["stalls"] = [{k: s.get(k) for k in ("started_at_s", "duration_ms", "culprit",
                                             "source", "task", "callback", "stack_source")}
                      for s in report.get("stalls", [])]
    keep["exit"] = report.get("meta", {}).get("exit")
    keep["partial"] = report.get("meta", {}).get("partial")
    return json.dumps(keep, indent=1)


# --------------------------------------------------------------------------- the driver

# Runs a third-party script unmodified as __main__ and calls the test's hooks as soon as the
# script has created its QApplication (its own classes exist by then, its windows do not).
DRIVER = '''\
"""Run SCRIPT unmodified as __main__; call HOOKS.on_app(app, namespace) once it has a QApplication.

usage: python ra_driver.py BINDING HOOKS.py SCRIPT [ARGS...]
"""
import importlib
import importlib.util
import os
import sys
import types

binding, hooks_path, script, *args = sys.argv[1:]
widgets = importlib.import_module(binding + ".QtWidgets")
spec = importlib.util.spec_from_file_location("ra_hooks", hooks_path)
hooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hooks)

_driver = sys.modules["__main__"]
main = types.ModuleType("__main__")
main.__file__ = script
sys.modules["__main__"] = main
sys.argv = [script, *args]
sys.path[0] = os.path.dirname(os.path.abspath(script))

Base = widgets.QApplication


class QApplication(Base):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        hooks.on_app(self, main.__dict__)


widgets.QApplication = QApplication
with open(script, encoding="utf-8") as f:
    code = compile(f.read(), script, "exec")
exec(code, main.__dict__)
'''


def write_driver(where: Path) -> Path:
    path = where / "ra_driver.py"
    path.write_text(DRIVER)
    return path
