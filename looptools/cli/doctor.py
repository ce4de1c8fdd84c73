"""``looptools doctor``: check this environment and say what is wrong and how to fix it.

Each check gives ``ok``, ``note`` (worth knowing, nothing to fix) or
``problem`` (something will not work, with the fix).  Exit statuses: 0 no
problem, 1 at least one problem, 2 bad usage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import site
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from looptools.cli._oneline import OneLineCommand

__all__ = ["Check", "check_platform", "doctor", "run_checks"]

EXIT_OK = 0
EXIT_PROBLEM = 1


@dataclasses.dataclass
class Check:
    """One finding: ``level`` is ok, note or problem; ``fix`` says what to do."""

    name: str
    level: str
    message: str
    fix: str | None = None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


# -- the checks ---------------------------------------------------------------------------------
def check_python() -> list[Check]:
    impl = platform.python_implementation()
    version = platform.python_version()
    level = "ok" if impl == "CPython" else "note"
    message = f"{impl} {version} ({sys.executable})"
    if impl != "CPython":
        message += "; stall stacks and py-spy are tested on CPython only"
    return [Check("python", level, message)]


def check_qt(python: tuple[int, int] | None = None,
             versions: Callable[[str], str | None] = _version) -> list[Check]:
    """PySide6 and qasync versions, and the combinations known to crash."""
    python = python or (sys.version_info[0], sys.version_info[1])
    found: list[Check] = []
    pyside = versions("PySide6") or versions("PySide6-Essentials")
    addons = versions("PySide6-Addons") or (versions("PySide6") if pyside else None)
    if pyside is None:
        found.append(Check("pyside6", "note",
                           "PySide6 is not installed (fine for plain asyncio apps)"))
    else:
        crash = _tuple(pyside)[:2] == (6, 12) and python == (3, 11)
        if crash:
            found.append(Check(
                "pyside6", "problem",
                f"PySide6 {pyside} on CPython 3.11 crashes: every Qt call drops None's "
                "reference count and the app dies with 'Fatal Python error: none_dealloc' "
                "after a few thousand events",
                "pip install 'PySide6-Essentials<6.12' 'PySide6-Addons<6.12' "
                "(or use Python 3.12+)"))
        elif _tuple(pyside) < (6, 7):
            found.append(Check("pyside6", "problem", f"PySide6 {pyside} is older than 6.7",
                               "pip install -U 'PySide6-Essentials>=6.7'"))
        else:
            found.append(Check("pyside6", "ok", f"PySide6 {pyside}"))
        if addons is None:
            found.append(Check("qtasyncio", "note",
                               "PySide6-Addons is not installed, so PySide6.QtAsyncio is "
                               "missing (only needed for QtAsyncio apps)",
                               "pip install PySide6-Addons"))
    found.append(check_binding(versions))
    qasync = versions("qasync")
    if qasync is None:
        found.append(Check("qasync", "note", "qasync is not installed (only needed for "
                                             "qasync apps)"))
    elif _tuple(qasync) < (0, 27):
        found.append(Check("qasync", "problem", f"qasync {qasync} is older than 0.27, which "
                                                "looptools is tested with",
                           "pip install -U 'qasync>=0.27'"))
    else:
        found.append(Check("qasync", "ok", f"qasync {qasync}"))
    return found


#: The four Qt bindings in qasync's order, with the distribution that carries each.
_BINDINGS = (("PyQt5", "PyQt5"), ("PyQt6", "PyQt6"), ("PySide2", "PySide2"),
             ("PySide6", "PySide6-Essentials"))


def check_binding(versions: Callable[[str], str | None] = _version,
                  qt_api: str | None = None) -> Check:
    """Which Qt bindings are installed, and which one a qasync app gets (nothing imported)."""
    installed = [(name, versions(dist) or versions(name)) for name, dist in _BINDINGS]
    present = [(name, version) for name, version in installed if version]
    if not present:
        return Check("qt binding", "note",
                     "no Qt binding is installed (PySide6, PyQt6, PyQt5, PySide2): "
                     "fine for plain asyncio apps")
    listed = ", ".join(f"{name} {version}" for name, version in present)
    qt_api = (os.environ.get("QT_API", "") if qt_api is None else qt_api).strip().lower()
    wanted = {"pyqt5": "PyQt5", "pyqt6": "PyQt6", "pyside2": "PySide2",
              "pyside6": "PySide6"}.get(qt_api)
    if qt_api and wanted is None:
        return Check("qt binding", "problem", f"QT_API={qt_api!r} names no Qt binding "
                     f"(installed: {listed})", "QT_API=pyside6, pyqt6, pyqt5 or pyside2")
    if wanted is not None and wanted not in dict(present):
        return Check("qt binding", "problem", f"QT_API={qt_api} but {wanted} is not "
                     f"installed (installed: {listed})", f"pip install {wanted}")
    chosen = wanted or present[0][0]
    why = "QT_API" if wanted else "the first installed in qasync's order, unless the app " \
        "imports another first"
    return Check("qt binding", "ok", f"{listed}; a qasync app gets {chosen} ({why}); "
                 "looptools follows whichever the app's loop runs on")


def _site_dirs() -> list[str]:
    dirs: list[str] = []
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.append(path)
    try:
        dirs.extend(site.getsitepackages())
    except AttributeError:  # pragma: no cover - old virtualenv's site.py
        pass
    try:
        dirs.append(site.getusersitepackages())
    except AttributeError:  # pragma: no cover
        pass
    return list(dict.fromkeys(dirs))


def check_startup_hook(dirs: list[str] | None = None) -> list[Check]:
    """Is ``looptools.pth`` in a site-packages folder of this Python (for LOOPTOOLS=1)?"""
    for folder in dirs if dirs is not None else _site_dirs():
        pth = Path(folder) / "looptools.pth"
        try:
            text = pth.read_text("utf-8")
        except OSError:
            continue
        if "looptools._autostart" not in text:
            return [Check("startup hook", "problem",
                          f"{pth} exists but does not start looptools",
                          "reinstall: pip install --force-reinstall looptools-health")]
        return [Check("startup hook", "ok", f"LOOPTOOLS=1 works for this Python ({pth})")]
    return [Check("startup hook", "problem",
                  f"looptools.pth is not in any site-packages folder of {sys.executable}, so "
                  "LOOPTOOLS=1 (and looptools profile) will not monitor apps run with it",
                  "reinstall looptools into this Python (pip install looptools-health); in an "
                  "editable checkout, 'pip install -e .' installs the hook too")]


def check_py_spy(scope_file: str = "/proc/sys/kernel/yama/ptrace_scope",
                 probe: bool = True) -> list[Check]:
    """py-spy installed, and whether it can sample (ptrace rules, a real trial run)."""
    from looptools.profilers import find_py_spy

    found: list[Check] = []
    exe = find_py_spy()
    if exe is None:
        return [Check("py-spy", "note", "py-spy is not installed (only needed for "
                                        "--sampler py-spy)", "pip install py-spy")]
    try:
        scope = Path(scope_file).read_text().strip()
    except OSError:
        scope = None
    if scope is None:
        found.append(Check("ptrace", "ok", "no Yama ptrace restrictions on this system"))
    elif scope == "0":
        found.append(Check("ptrace", "ok", "ptrace_scope 0: py-spy may attach to any of "
                                           "your processes"))
    elif scope == "1":
        found.append(Check("ptrace", "note",
                           "ptrace_scope 1: py-spy can sample apps it starts (what "
                           "'looptools profile --sampler py-spy' does) but 'py-spy dump "
                           "--pid' on a running app needs sudo"))
    elif scope == "2" and os.geteuid() != 0:
        found.append(Check("ptrace", "problem",
                           "ptrace_scope 2: only root (CAP_SYS_PTRACE) may sample processes",
                           "run as root, or: echo 1 | sudo tee " + scope_file))
    elif scope == "3":
        found.append(Check("ptrace", "problem",
                           "ptrace_scope 3: sampling is disabled until reboot",
                           "set kernel.yama.ptrace_scope=1 at boot (sysctl.conf) and reboot"))
    else:
        found.append(Check("ptrace", "ok", f"ptrace_scope {scope} (running as root)"))
    if probe:
        found.append(_probe_py_spy(exe))
    else:
        found.append(Check("py-spy", "ok", f"py-spy at {exe}"))
    return found


def _probe_py_spy(exe: str) -> Check:
    with tempfile.TemporaryDirectory(prefix="looptools-doctor-") as folder:
        out = Path(folder, "p.json")
        command = [exe, "record", "--idle", "--rate", "50", "--format", "speedscope",
                   "--output", str(out), "--", sys.executable, "-S", "-c",
                   "import time; time.sleep(0.3)"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check("py-spy", "problem", f"py-spy at {exe} could not run: {exc}",
                         "reinstall it: pip install --force-reinstall py-spy")
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return Check("py-spy", "problem", f"py-spy at {exe} cannot sample here: {last}",
                         "in a container, add the SYS_PTRACE capability "
                         "(docker run --cap-add SYS_PTRACE)")
    return Check("py-spy", "ok", f"py-spy at {exe} sampled a test process")


def check_yappi() -> list[Check]:
    version = _version("yappi")
    if version is None:
        return [Check("yappi", "note", "yappi is not installed (only needed for "
                                       "--sampler yappi)", "pip install yappi")]
    return [Check("yappi", "ok", f"yappi {version}")]


def check_streaming() -> list[Check]:
    """Unix sockets and a private registry folder for 'looptools dashboard PID'."""
    if not hasattr(socket, "AF_UNIX"):
        return [Check("streaming", "problem", "this platform has no Unix domain sockets: "
                                              "no live dashboard", None)]
    from looptools.live.stream import registry_dir

    folder = registry_dir()
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return [Check("streaming", "ok", f"dashboards will meet apps in {folder} "
                                         "(created on first use, mode 0700)")]
    except OSError as exc:
        return [Check("streaming", "problem", f"cannot look at {folder}: {exc}")]
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return [Check("streaming", "problem", f"{folder} is not a directory; apps will "
                                              "not be listed by 'looptools ps'",
                      f"remove it: rm {folder}")]
    if info.st_uid != os.getuid():
        return [Check("streaming", "problem", f"{folder} belongs to uid {info.st_uid}",
                      "set XDG_RUNTIME_DIR to a folder of yours, or remove it")]
    return [Check("streaming", "ok", f"dashboards meet apps in {folder}")]


def check_terminal(stream: Any = None, environ: dict[str, str] | None = None) -> list[Check]:
    """Is the dashboard going to show here: a terminal, its size, colours."""
    stream = stream if stream is not None else sys.stdout
    environ = dict(os.environ) if environ is None else environ
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return [Check("terminal", "note", "standard output is not a terminal: "
                                          "'looptools profile' prints a summary instead of "
                                          "the live dashboard")]
    found: list[Check] = []
    size = shutil.get_terminal_size((0, 0))
    if environ.get("TERM") == "dumb":
        found.append(Check("terminal", "note", "TERM=dumb: no live dashboard"))
    elif size.columns and (size.columns < 80 or size.lines < 24):
        found.append(Check("terminal", "note",
                           f"terminal is {size.columns}×{size.lines}: the dashboard fits "
                           "80×24 and shows less when smaller"))
    else:
        found.append(Check("terminal", "ok", f"terminal {size.columns}×{size.lines}"))
    from rich.console import Console

    console = Console(file=stream)
    colours = console.color_system or "none"
    if "NO_COLOR" in environ:
        colours += " (NO_COLOR set)"
    found.append(Check("colour", "ok" if console.color_system else "note", f"colours: {colours}"
                       + ("" if console.encoding.lower().startswith("utf")
                          else f"; encoding {console.encoding}: ASCII sparklines")))
    return found


def check_settings(environ: dict[str, str] | None = None) -> list[Check]:
    """``LOOPTOOLS_*`` values and ``[tool.looptools]`` that cannot be used."""
    from looptools.settings import resolve

    try:
        settings = resolve(environ=environ)
    except Exception as exc:  # a broken pyproject.toml: say it, don't crash the doctor
        return [Check("settings", "problem", str(exc))]
    if settings.problems:
        return [Check("settings", "problem", problem,
                      "fix or unset that value")
                for problem in settings.problems]
    return [Check("settings", "ok", "LOOPTOOLS_* and [tool.looptools] settings are valid")]


def check_display(environ: dict[str, str] | None = None) -> list[Check]:
    environ = dict(os.environ) if environ is None else environ
    if sys.platform.startswith("linux") and not any(
            environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        return [Check("display", "note", "no DISPLAY, WAYLAND_DISPLAY or QT_QPA_PLATFORM: "
                                         "Qt apps will not start here",
                      "export QT_QPA_PLATFORM=offscreen to run them headless")]
    return []


def _setting_off(name: str, environ: dict[str, str] | None) -> str | None:
    """``LOOPTOOLS_NAME=0`` (or the pyproject value) when the setting ``name`` is off."""
    from looptools.settings import resolve

    try:
        settings = resolve(environ=environ)
    except Exception:  # the settings check says what is wrong
        return None
    if getattr(settings, name):
        return None
    where = settings.sources.get(name, "default")
    return f"LOOPTOOLS_{name.upper()}=0" if where == "environment" else f"{name} = false ({where})"


def _mechanism(name: str, uses: str, missing: str | None, fallback: str,
               setting: str | None = None, environ: dict[str, str] | None = None,
               when_off: str | None = None) -> Check:
    """One line: ``uses`` is in use here (ok), or why not and the fallback in use (note);
    ``when_off`` is what runs instead when ``setting`` switches it off, if not ``fallback``."""
    off = _setting_off(setting, environ) if setting else None
    if off is not None:
        return Check(name, "note", f"switched off ({off}): {when_off or fallback}")
    if missing is not None:
        return Check(name, "note", f"{missing}: {fallback}")
    return Check(name, "ok", f"{uses}; without it: {fallback}")


def _tick_timer_missing() -> str | None:
    """Why no POSIX timer can signal the loop thread here: a real trial (a timer is
    made for this thread and deleted, never armed)."""
    import threading

    from looptools.inapp import _posix_timer

    why = _posix_timer.missing()
    if why is not None:
        return why
    signals = _posix_timer.free_signals(1)
    if not signals:
        return "no free real-time signal"
    timer = _posix_timer.create(_posix_timer.CLOCK_MONOTONIC, threading.get_native_id(),
                                signals[0], 0.005, 0.005)
    if timer is None:
        return "timer_create failed"
    timer.delete()
    return None


def _cpu_clock_missing() -> str | None:
    import threading
    import time

    try:
        time.clock_gettime(time.pthread_getcpuclockid(threading.get_ident()))
    except (AttributeError, OSError):
        return "no per-thread CPU clocks (time.pthread_getcpuclockid)"
    return None


def check_platform(environ: dict[str, str] | None = None) -> list[Check]:
    """The stall watchdog's platform-specific mechanisms, one line each: in use on this
    machine, or why not and which fallback is (docs/design.md, "Other platforms")."""
    import faulthandler
    import signal

    from looptools.cli.profile import _die_with_parent
    from looptools.inapp import _fdtable, _ourthreads, _pending, _sigdump, _threadtimes

    sigalrm = all(hasattr(signal, n) for n in ("setitimer", "getitimer", "SIGALRM"))
    later = hasattr(faulthandler, "dump_traceback_later")
    after = "a GIL-holding call's stack is sampled just after it (the line may be the next)"
    cpu_clock = _cpu_clock_missing()
    lateness = "lateness alone (on a busy machine a Python stall may be marked gil_held)"
    return [
        _mechanism("ticks", "a POSIX timer signals the loop thread (timer_create)",
                   _tick_timer_missing(),
                   "SIGALRM interval timer (not if the app uses SIGALRM)" if sigalrm else
                   "no ticks: the watchdog thread looks every few ms (dearer on a busy loop)",
                   "signal_ticks", environ,
                   "the watchdog thread looks every few ms (dearer on a busy loop)"),
        _mechanism("wake timer", "the watchdog thread sleeps while the ticks flow, woken by a "
                                 "POSIX timer they put back (timer_create, sigwait)",
                   _tick_timer_missing() or (
                       None if hasattr(signal, "pthread_sigmask") else "no signal.pthread_sigmask")
                   or (None if hasattr(signal, "sigwait") else "no signal.sigwait"),
                   "the watchdog thread wakes about once a threshold to look (1-3 % of a busy "
                   "loop)", "wake_timer", environ),
        _mechanism("thread dumps", "the loop thread dumps its own stack in a GIL-holding call "
                                   "(faulthandler.register, a CPU-clock timer)",
                   _sigdump.missing() or _tick_timer_missing(),
                   "faulthandler's timer thread dumps it later" if later else after,
                   "thread_dump", environ),
        _mechanism("faulthandler timer", "faulthandler.dump_traceback_later, where the loop "
                                         "thread cannot dump its own",
                   None if later else "no faulthandler.dump_traceback_later", after,
                   "gil_capture", environ),
        _mechanism("schedstat", "run-queue times tell a GIL-holding call from a busy machine",
                   _threadtimes.missing(),
                   "the loop thread's CPU clock" if cpu_clock is None else lateness,
                   "thread_times", environ, lateness),
        _mechanism("cpu clock", "the watchdog reads the loop thread's CPU clock "
                                "(time.pthread_getcpuclockid)", cpu_clock,
                   "lateness alone where there is no schedstat either", "thread_times",
                   environ, lateness),
        _mechanism("private fds", "the watchdog thread has a descriptor table of its own "
                                  "(unshare)", _fdtable.missing(),
                   "it shares the app's (a busy loop's epoll_wait and read cost 2-5 % more)",
                   "private_fds", environ),
        _mechanism("signal masks", "looptools' threads block process signals (pthread_sigmask)",
                   _ourthreads.missing(), "one of them may take a process signal; its handler "
                                          "runs at the loop's next wake-up"),
        _mechanism("qt probe", "a real-time signal to the main thread finds a Qt app without "
                               "asyncio (pthread_kill)", _posix_timer_signal_missing(),
                   "CPython's pending calls (Py_AddPendingCall)" if _pending.missing() is None
                   else "a Qt app without asyncio is not monitored"),
        _mechanism("pdeathsig", "the app of a killed 'looptools profile' gets SIGTERM "
                                "(prctl PR_SET_PDEATHSIG)",
                   None if _die_with_parent(signal.SIGTERM) is not None else "no prctl",
                   "if profile is killed with SIGKILL, its app runs on"),
    ]


def _posix_timer_signal_missing() -> str | None:
    import signal

    from looptools.inapp import _posix_timer

    if not hasattr(signal, "pthread_kill"):
        return "no signal.pthread_kill"
    if not _posix_timer.free_signals(1):
        return "no real-time signals"
    return None


def run_checks(probe: bool = True) -> list[Check]:
    """All checks, in the order they are shown."""
    checks: list[Check] = []
    for check in (check_python, check_qt, check_startup_hook, check_settings, check_platform,
                  check_streaming, lambda: check_py_spy(probe=probe), check_yappi,
                  check_display, check_terminal):
        try:
            checks.extend(check())
        except Exception as exc:  # one broken check must not hide the others
            checks.append(Check(getattr(check, "__name__", "check"), "problem",
                                f"the check itself failed: {type(exc).__name__}: {exc}"))
    return checks


_MARK = {"ok": ("ok", "green"), "note": ("note", "yellow"), "problem": ("PROBLEM", "red")}


@click.command("doctor", cls=OneLineCommand,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
@click.option("--no-probe", is_flag=True, help="Do not try a real py-spy run (faster).")
def doctor(as_json: bool, no_probe: bool) -> None:
    """Check Python, Qt, the LOOPTOOLS start-up hook, py-spy and the terminal.

    Exits 0 when nothing is wrong, 1 when there is at least one problem.
    """
    checks = run_checks(probe=not no_probe)
    from looptools.cli import colour_wanted

    color = colour_wanted()
    for check in checks:
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(check)))
            continue
        label, colour = _MARK[check.level]
        mark = click.style(f"{label:>7}", fg=colour, bold=True) if color else f"{label:>7}"
        click.echo(f"{mark}  {check.name}: {check.message}", color=color)
        if check.fix and check.level != "ok":
            click.echo(f"{'':>7}  fix: {check.fix}")
    problems = sum(1 for c in checks if c.level == "problem")
    if not as_json:
        click.echo(f"{problems} problem{'s' if problems != 1 else ''} found" if problems
                   else "no problems found")
    raise click.exceptions.Exit(EXIT_PROBLEM if problems else EXIT_OK)
