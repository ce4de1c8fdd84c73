"""Drivers for the samplers of ``looptools profile --sampler py-spy|yappi``.

* **py-spy** runs outside the app: ``py-spy record --idle --subprocesses --format
  speedscope -- python -S -c <shim> STATUS app...``.  The app is a descendant of
  py-spy, so no ptrace privilege is needed.  py-spy exits 0 whatever the app did
  (benfred/py-spy#717), so a tiny shim between them (``python -S``: no site, so no
  looptools start-up hook) starts the app, survives the SIGINT/SIGTERM meant for
  the app and writes the app's pid and exit status to STATUS.
  :func:`speedscope_summary` turns the speedscope file into the report's
  ``profile`` section.
* **yappi** runs inside the app: with ``LOOPTOOLS_YAPPI=<path prefix>`` in its
  environment the monitor adds :class:`YappiSampler`, which starts yappi's
  wall clock (coroutine-aware) for the main thread at start-up, and when the
  monitor stops saves ``<prefix>.pstat`` and ``<prefix>.callgrind`` and puts the
  top functions in the report's ``profile`` section.

``python -m looptools.profilers`` measures what each costs (docs/profile.md).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from looptools.inapp.hub import Detector

__all__ = [
    "YappiSampler",
    "find_py_spy",
    "main_thread_index",
    "open_on_main_thread",
    "py_spy_command",
    "read_status",
    "sampler_from_env",
    "speedscope_summary",
]

TOP = 15

# The shim between py-spy and the app.  Kept tiny: py-spy samples it too (idle in wait()).
_SHIM = r"""
import json, os, signal, subprocess, sys
status, argv = sys.argv[1], sys.argv[2:]
def note(**data):
    tmp = status + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, status)
def forward(signum, frame):
    pass  # the app is in our process group and got the signal itself
for name in ("SIGINT", "SIGTERM", "SIGHUP"):
    if hasattr(signal, name):  # no SIGHUP on Windows
        signal.signal(getattr(signal, name), forward)
LINUX = sys.platform.startswith("linux")
def die_with(signum):
    # PR_SET_PDEATHSIG: if our parent dies (py-spy, whose parent, looptools profile,
    # was killed), the kernel sends signum.  The shim dies of SIGKILL; the app gets
    # SIGTERM, as it would from looptools profile itself.  Linux only: elsewhere
    # the app of a killed profile runs on.
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, int(signum), 0, 0, 0)
    except Exception:
        pass
if LINUX:
    die_with(signal.SIGKILL)
try:
    # preexec_fn: POSIX only (Windows has no SIGKILL and refuses preexec_fn).
    app = subprocess.Popen(argv, preexec_fn=(lambda: die_with(signal.SIGTERM)) if LINUX
                           else None)
except OSError as exc:
    code = 127 if isinstance(exc, FileNotFoundError) else 126
    note(shim=os.getpid(), pid=None, returncode=code, error=str(exc))
    sys.exit(code)
note(shim=os.getpid(), pid=app.pid)
while True:
    try:
        code = app.wait()
        break
    except InterruptedError:
        continue
note(shim=os.getpid(), pid=app.pid, returncode=code)
sys.exit(code if code >= 0 else 128 - code)
"""


# -- py-spy -------------------------------------------------------------------------------
def find_py_spy() -> str | None:
    """The py-spy executable: next to this Python first (a venv), then on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def py_spy_command(py_spy: str, argv: list[str], output: str | os.PathLike[str],
                   status: str | os.PathLike[str], rate: int = 100) -> list[str]:
    """The command that runs ``argv`` under ``py-spy record`` with the exit-status shim."""
    return [py_spy, "record", "--idle", "--subprocesses", "--rate", str(rate),
            "--format", "speedscope", "--output", os.fspath(output), "--",
            sys.executable, "-S", "-c", _SHIM, os.fspath(status), *argv]


def read_status(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the shim wrote: ``{"shim": pid, "pid": app pid, "returncode": n}`` (so far)."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


_PROFILE_NAME = re.compile(r"Process (\d+) Thread (\d+)")


def _frame(frames: list[dict[str, Any]], index: int) -> tuple[str, str, int | None]:
    frame = frames[index] if 0 <= index < len(frames) else {}
    line = frame.get("line")
    return (str(frame.get("name", "?")), str(frame.get("file", "?")),
            line if isinstance(line, int) else None)


_OURS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def _self_frame(stack: list[tuple[str, str, int | None]]) -> tuple[str, str, int | None]:
    """The innermost frame outside looptools: time in our wrappers (the blocking-call
    recorder around ``time.sleep``) belongs to the app code that called them."""
    for frame in reversed(stack):
        if not frame[1].startswith(_OURS):
            return frame
    return stack[-1]


def main_thread_index(profiles: list[Any], app_pid: int | None,
                      skip_pids: set[int] | None = None) -> int | None:
    """The index of the app's main thread among py-spy's speedscope profiles, or None.

    py-spy names a profile ``Process <pid> Thread <tid> "<thread name>"``.  The main
    thread is the app's profile with ``tid == pid`` (Linux), else its ``"MainThread"``,
    else its first profile.  Without the app's pid, the first such profile of a process
    not in ``skip_pids`` (the shim) is taken.
    """
    skip = skip_pids or set()
    named: list[tuple[int, int, int, str]] = []
    for index, profile in enumerate(profiles):
        name = str(profile.get("name", "")) if isinstance(profile, dict) else ""
        match = _PROFILE_NAME.search(name)
        if match:
            pid, tid = int(match.group(1)), int(match.group(2))
            if pid not in skip:
                named.append((index, pid, tid, name))
    if app_pid is not None:
        named = [entry for entry in named if entry[1] == app_pid]
    for test in (lambda pid, tid, name: pid == tid,
                 lambda pid, tid, name: name.endswith('"MainThread"'),
                 lambda pid, tid, name: True):
        for index, pid, tid, name in named:
            if test(pid, tid, name):
                return index
    return None


def open_on_main_thread(path: str | os.PathLike[str], app_pid: int | None,
                        skip_pids: set[int] | None = None) -> str:
    """py-spy's speedscope file made to open on the app's main thread.

    py-spy writes one profile per thread, the shim's first, and ``"activeProfileIndex":
    null``, so speedscope opens on the shim.  This sets ``activeProfileIndex`` to
    :func:`main_thread_index` and drops the ``null`` values speedscope's file-format
    schema has no room for (that index, a frame's ``col``).  Raises :class:`ValueError`
    for a file that is not a speedscope file.
    """
    try:
        data = json.loads(Path(path).read_text("utf-8"))
        profiles: list[Any] = data["profiles"]
        frames: list[Any] = data["shared"]["frames"]
        if not isinstance(profiles, list) or not isinstance(frames, list):
            raise TypeError("profiles and frames must be lists")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable speedscope file ({exc})") from None
    for frame in frames:
        if isinstance(frame, dict):
            for key in [key for key, value in frame.items() if value is None]:
                del frame[key]
    index = main_thread_index(profiles, app_pid, skip_pids)
    if index is None:
        data.pop("activeProfileIndex", None)
    else:
        data["activeProfileIndex"] = index
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def speedscope_summary(path: str | os.PathLike[str], skip_pids: set[int] | None = None,
                       rate: int = 100, top: int = TOP) -> dict[str, Any]:
    """The top frames of the app's main thread in a py-spy speedscope file.

    ``top_self``: the innermost frames (function, file, line) with the most
    samples — where time went, idle waits included (``--idle``).  ``top_total``:
    functions by samples in which they were anywhere on the stack.  Profiles of
    ``skip_pids`` (the shim) are left out.  Raises :class:`ValueError` for a file
    that is not a speedscope file.
    """
    try:
        data = json.loads(Path(path).read_text("utf-8"))
        frames: list[dict[str, Any]] = data["shared"]["frames"]
        profiles: list[dict[str, Any]] = data["profiles"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable speedscope file ({exc})") from None
    skip = skip_pids or set()
    chosen: list[tuple[int, dict[str, Any]]] = []
    threads = 0
    for profile in profiles:
        match = _PROFILE_NAME.search(str(profile.get("name", "")))
        pid, tid = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        if pid in skip:
            continue
        threads += 1
        if pid == tid:  # Linux: the main thread's id is the process id
            chosen.append((pid, profile))
    if not chosen:
        chosen = [(0, p) for p in profiles[:1]]
    self_counts: collections.Counter[tuple[str, str, int | None]] = collections.Counter()
    total_counts: collections.Counter[tuple[str, str]] = collections.Counter()
    samples = 0
    for _, profile in chosen:
        for indexes in profile.get("samples", []):
            # py-spy --subprocesses puts "process N: cmdline" pseudo-frames at the root.
            stack = [f for f in (_frame(frames, i) for i in indexes)
                     if f[1] or not f[0].startswith("process ")]
            if not stack:
                continue
            samples += 1
            self_counts[_self_frame(stack)] += 1
            total_counts.update({frame[:2] for frame in stack})

    def share(n: int) -> float:
        return round(n / samples, 4) if samples else 0.0

    return {
        "sampler": "py-spy",
        "rate_hz": rate,
        "idle_included": True,
        "samples": samples,
        "seconds": round(samples / rate, 2) if rate else None,
        "pids": sorted({pid for pid, _ in chosen if pid}),
        "threads": threads,
        "top_self": [
            {"function": f, "file": file, "line": line, "samples": n, "fraction": share(n)}
            for (f, file, line), n in self_counts.most_common(top)
        ],
        "top_total": [
            {"function": f, "file": file, "samples": n, "fraction": share(n)}
            for (f, file), n in total_counts.most_common(top)
        ],
    }


# -- yappi (in the app) ---------------------------------------------------------------------
class YappiSampler(Detector):
    """yappi's wall clock on the main thread from start-up until the monitor stops.

    ``is_final()`` tells :meth:`contribute` that the report being built is the
    last one; only then is yappi stopped and its files written.
    """

    name = "yappi"

    def __init__(self, prefix: str, is_final: Callable[[], bool]) -> None:
        import yappi

        self.prefix = prefix
        self.is_final = is_final
        self._yappi = yappi
        self.started = time.perf_counter()
        self.done = False
        if not yappi.is_running():
            yappi.set_clock_type("wall")
            # Only the calling (main) thread: our watchdog and writer threads stay out.
            yappi.start(builtins=False, profile_threads=False)

    def detach(self) -> None:
        """Nothing: the monitor detaches when a loop stops, yet the app runs on."""

    def contribute(self, report: dict[str, Any]) -> None:
        if self.done or not self.is_final():
            return
        self.done = True
        yappi = self._yappi
        yappi.stop()
        seconds = time.perf_counter() - self.started
        stats = yappi.get_func_stats()
        files: dict[str, str] = {}
        for kind in ("pstat", "callgrind"):
            target = f"{self.prefix}.{kind}"
            try:
                stats.save(target, type=kind)
                files[kind] = target
            except Exception as exc:  # a write failure must not lose the report
                files[kind] = f"not written: {type(exc).__name__}: {exc}"
        report["profile"] = yappi_summary(stats, seconds, files)
        yappi.clear_stats()


def yappi_summary(stats: Any, seconds: float, files: dict[str, str],
                  top: int = TOP) -> dict[str, Any]:
    """The report's ``profile`` section from yappi function stats.

    looptools' own functions are left out, and their self time (the blocking-call
    recorder around ``time.sleep``, for one) is given to the app functions that
    called them.
    """
    entries = [stat for stat in stats if os.path.basename(str(stat.module)) != "yappi.py"]

    def exclusive(stat: Any) -> float:
        # Wall time not spent in profiled callees: with builtins off, this includes
        # C calls such as time.sleep (yappi's own tsub leaves those out).
        inner = sum(float(child.ttot) for child in getattr(stat, "children", None) or [])
        return max(0.0, float(stat.ttot) - inner)

    ours = {stat.full_name: stat for stat in entries
            if str(stat.module).startswith(_OURS)}
    chain: dict[str, float] = {}

    def ours_below(stat: Any, depth: int = 0) -> float:
        """Self time of ``stat`` (one of ours) and of our functions it called, down the
        wrappers (the blocking-call recorder, then its timer, then time.sleep)."""
        known = chain.get(stat.full_name)
        if known is not None:
            return known
        total = exclusive(stat)
        if depth < 8:
            for child in getattr(stat, "children", None) or []:
                callee = ours.get(child.full_name)
                if callee is not None and callee is not stat and callee.ttot > 0:
                    total += ours_below(callee, depth + 1) * float(child.ttot) / callee.ttot
        chain[stat.full_name] = total
        return total

    moved: dict[str, float] = collections.defaultdict(float)
    for stat in entries:
        if stat.full_name in ours:
            continue
        for child in getattr(stat, "children", None) or []:
            callee = ours.get(child.full_name)
            if callee is not None and callee.ttot > 0:
                moved[stat.full_name] += ours_below(callee) * float(child.ttot) / callee.ttot
    kept = [stat for stat in entries if stat.full_name not in ours]

    def self_s(stat: Any) -> float:
        return exclusive(stat) + moved.get(stat.full_name, 0.0)

    def row(stat: Any) -> dict[str, Any]:
        return {"function": str(stat.name), "file": str(stat.module), "line": int(stat.lineno),
                "calls": int(stat.ncall), "total_ms": round(stat.ttot * 1000.0, 3),
                "self_ms": round(self_s(stat) * 1000.0, 3)}

    by_total = sorted(kept, key=lambda s: s.ttot, reverse=True)[:top]
    by_self = sorted(kept, key=self_s, reverse=True)[:top]
    return {
        "sampler": "yappi",
        "clock": "wall",
        "seconds": round(seconds, 3),
        "functions": len(kept),
        "top_self": [row(s) for s in by_self],
        "top_total": [row(s) for s in by_total],
        "files": files,
    }


def sampler_from_env(is_final: Callable[[], bool],
                     environ: dict[str, str] | None = None) -> YappiSampler | None:
    """A :class:`YappiSampler` when ``LOOPTOOLS_YAPPI`` names an output prefix, else None.

    ``is_final()`` says whether the monitor stopped; the monitor adds the sampler and
    passes it, so this module never imports the monitor.
    """
    environ = dict(os.environ) if environ is None else environ
    prefix = environ.get("LOOPTOOLS_YAPPI", "").strip()
    if not prefix:
        return None
    return YappiSampler(prefix, is_final)


# -- measuring the cost ---------------------------------------------------------------------
_WORKLOAD = r"""
import asyncio, json, sys, time
kind, callbacks, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def work():
    total = 0
    for i in range(20):
        total += i * i
    return total

async def chain():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = [callbacks]
    def callback():
        work()
        left[0] -= 1
        if left[0]:
            loop.call_soon(callback)
        else:
            done.set_result(None)
    t0 = time.perf_counter()
    loop.call_soon(callback)
    await done
    t1 = time.perf_counter()
    for _ in range(steps):
        work()
        await asyncio.sleep(0)
    t2 = time.perf_counter()
    print(json.dumps({"callback_us": (t1 - t0) / callbacks * 1e6,
                      "step_us": (t2 - t1) / steps * 1e6}), flush=True)

if kind == "asyncio":
    asyncio.run(chain())
else:
    import os
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    if kind == "qasync":
        import qasync
        qasync.run(chain())
    else:
        import PySide6.QtAsyncio as QtAsyncio
        QtAsyncio.run(chain(), keep_running=False, quit_qapp=True)
"""


def measure(kinds: tuple[str, ...] = ("asyncio", "qasync"), callbacks: int = 100_000,
            steps: int = 30_000, repeat: int = 3) -> list[dict[str, Any]]:
    """Per-callback and per-task-step cost under each configuration (best of ``repeat``)."""
    import subprocess
    import tempfile

    from looptools.live.stream import StreamServer

    rows: list[dict[str, Any]] = []
    py_spy = find_py_spy()
    with tempfile.TemporaryDirectory(prefix="looptools-bench-") as folder:
        script = Path(folder, "workload.py")
        script.write_text(_WORKLOAD)
        server = StreamServer(Path(folder, "s.sock"), lambda message, n: None).start()
        base = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
        base["QT_QPA_PLATFORM"] = "offscreen"
        monitored = {"LOOPTOOLS": "1", "LOOPTOOLS_SUMMARY": "0", "LOOPTOOLS_LISTEN": "0",
                     "LOOPTOOLS_REPORT": str(Path(folder, "r.json"))}
        streamed = {**monitored, "LOOPTOOLS_STREAM": str(server.path)}
        configs: list[tuple[str, dict[str, str], bool]] = [
            ("no monitoring", {}, False),
            ("monitor (LOOPTOOLS=1)", monitored, False),
            ("monitor + stream (profile)", streamed, False),
            ("monitor + stream + yappi", {**streamed,
                                          "LOOPTOOLS_YAPPI": str(Path(folder, "y"))}, False),
        ]
        if py_spy:
            configs.append(("monitor + stream + py-spy 100 Hz", streamed, True))
        try:
            for kind in kinds:
                baseline: dict[str, float] = {}
                for label, extra, spy in configs:
                    best: dict[str, float] = {}
                    argv = [sys.executable, str(script), kind, str(callbacks), str(steps)]
                    for _ in range(repeat):
                        command = argv
                        if spy and py_spy:
                            command = py_spy_command(py_spy, argv, Path(folder, "p.json"),
                                                     Path(folder, "status.json"))
                        out = subprocess.run(command, env={**base, **extra}, text=True,
                                             capture_output=True, timeout=600)
                        line = [s for s in out.stdout.splitlines() if s.startswith("{")]
                        if not line:
                            raise RuntimeError(f"{kind}/{label} failed: {out.stderr[-500:]}")
                        result = json.loads(line[-1])
                        for key, value in result.items():
                            best[key] = min(best.get(key, value), value)
                    if not baseline:
                        baseline = best
                    rows.append({"loop": kind, "config": label, **{
                        k: round(v, 2) for k, v in best.items()}, **{
                        k.replace("_us", "_x"): round(v / baseline[k], 2)
                        for k, v in best.items()}})
        finally:
            server.close()
    return rows


_LOOP_KINDS = ("asyncio", "qasync", "qtasyncio")


def main(argv: list[str] | None = None) -> int:
    """``python -m looptools.profilers [loop kinds...]``: print the cost table."""
    import argparse
    import platform

    parser = argparse.ArgumentParser(
        prog="python -m looptools.profilers",
        description="Measure what monitoring, streaming, yappi and py-spy cost per asyncio "
                    "callback and per task step (docs/profile.md, 'What it costs'): each "
                    "configuration runs in a fresh process, best of three. Takes minutes.")
    parser.add_argument("kinds", nargs="*", metavar="LOOP",
                        help=f"loop kinds to measure, of {', '.join(_LOOP_KINDS)} "
                             "(default: asyncio qasync)")
    args = parser.parse_args(argv)
    unknown = [kind for kind in args.kinds if kind not in _LOOP_KINDS]
    if unknown:
        parser.error(f"unknown loop kind {unknown[0]!r} (choose from {', '.join(_LOOP_KINDS)})")
    kinds = tuple(args.kinds) or ("asyncio", "qasync")
    rows = measure(kinds)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.platform()}")
    print("| loop | configuration | µs/callback | × | µs/task step | × |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['loop']} | {row['config']} | {row['callback_us']} | "
              f"×{row['callback_x']} | {row['step_us']} | ×{row['step_x']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
