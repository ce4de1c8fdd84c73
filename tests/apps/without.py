"""Run a Python program as if this platform lacked some of what looptools uses.

    python without.py MECHANISMS (SCRIPT | -m MODULE | -c CODE) [ARGS...]

MECHANISMS is a comma-separated list of names from ``REMOVE`` or ``PRESETS``
(``macos``, ``all``), or ``none``.  Each is taken away the way it is missing on
macOS or Windows — attributes deleted from ``signal``, ``time``, ``os`` and ``faulthandler``,
symbols the C library does not have (``ctypes`` raises ``AttributeError``, as
``dlsym`` fails), a ``/proc`` file that does not exist — *before* looptools is
imported.  Then, if ``LOOPTOOLS=1`` was asked for with ``LOOPTOOLS_TEST_START=1``,
looptools starts exactly as its ``.pth`` start-up hook would start it (the hook
itself runs before any ``sitecustomize``, too early to take anything away
first), and the program runs as ``__main__``.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import runpy
import signal
import sys
import time

#: mechanism -> what is taken away (module attributes, C symbols, /proc files)
REMOVE: dict[str, dict[str, tuple[str, ...]]] = {
    # Linux timer_create(SIGEV_THREAD_ID): macOS and Windows have none
    "posix-timers": {"libc": ("timer_create", "timer_settime", "timer_delete")},
    # real-time signals: not on macOS or Windows
    "rt-signals": {"signal": ("SIGRTMIN", "SIGRTMAX")},
    # setitimer's SIGALRM: not on Windows
    "sigalrm": {"signal": ("setitimer", "getitimer", "ITIMER_REAL", "SIGALRM")},
    # per-thread signal masks and thread-directed signals: not on Windows
    "pthread-sigmask": {"signal": ("pthread_sigmask",)},
    "pthread-kill": {"signal": ("pthread_kill",)},
    # waiting for a signal with a timeout: not on macOS or Windows
    "sigtimedwait": {"signal": ("sigtimedwait",)},
    # waiting for a signal without a timeout (the watchdog thread's wake-up): not on Windows
    "sigwait": {"signal": ("sigwait",)},
    # another thread's CPU clock: not on macOS or Windows
    "cpu-clock": {"time": ("pthread_getcpuclockid",)},
    # /proc/<pid>/task/<tid>/schedstat: Linux only
    "schedstat": {"proc": ("schedstat",)},
    # unshare(CLONE_FILES): Linux only
    "unshare": {"libc": ("unshare",)},
    # faulthandler.register: not on Windows
    "faulthandler-register": {"faulthandler": ("register", "unregister")},
    # faulthandler's timer thread: present everywhere CPython has threads; taken
    # away to prove that stalls are still caught without any C-level dump
    "faulthandler-later": {"faulthandler": ("dump_traceback_later",
                                            "cancel_dump_traceback_later")},
    # prctl(PR_SET_PDEATHSIG): Linux only
    "prctl": {"libc": ("prctl",)},
    # pread: not in Windows' os module, nor in its C library
    "pread": {"os": ("pread",), "libc": ("pread",)},
}

#: What macOS lacks of them (it has setitimer, pthread_sigmask and pthread_kill,
#: faulthandler.register and pread).  ``all`` is, as far as looptools' watchdog can
#: tell, Windows (which also lacks ``fcntl``: see docs/design.md, "Other platforms").
PRESETS: dict[str, list[str]] = {
    "macos": ["posix-timers", "rt-signals", "sigtimedwait", "cpu-clock", "schedstat",
              "unshare", "prctl"],
    "all": list(REMOVE),
}

_MODULES = {"signal": signal, "time": time, "os": os, "faulthandler": faulthandler}


def take_away(names: list[str]) -> None:
    symbols: set[str] = set()
    files: set[str] = set()
    for name in names:
        for where, items in REMOVE[name].items():
            if where == "libc":
                symbols.update(items)
            elif where == "proc":
                files.update(items)
            else:
                for item in items:
                    if hasattr(_MODULES[where], item):
                        delattr(_MODULES[where], item)
    if symbols:
        original = ctypes.CDLL.__getitem__  # CDLL.__getattr__ goes through it too

        def getitem(self: ctypes.CDLL, name: object) -> object:
            if isinstance(name, str) and name in symbols:
                raise AttributeError(f"{self._name}: undefined symbol: {name}")
            return original(self, name)  # type: ignore[arg-type]

        ctypes.CDLL.__getitem__ = getitem  # type: ignore[assignment,method-assign]
    if files:
        real_open = os.open

        def open_(path: object, *args: object, **kwargs: object) -> int:
            if any(str(path).endswith("/" + name) for name in files):
                raise FileNotFoundError(2, "No such file or directory", str(path))
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

        os.open = open_  # type: ignore[assignment]


def main() -> None:
    which, rest = sys.argv[1], sys.argv[2:]
    names: list[str] = []
    for name in which.split(","):
        names.extend(PRESETS.get(name, [] if name in ("", "none") else [name]))
    unknown = [n for n in names if n not in REMOVE]
    if unknown:
        raise SystemExit(f"without.py: unknown mechanism {unknown[0]!r}; "
                         f"known: {', '.join(REMOVE)}")
    take_away(names)
    if os.environ.pop("LOOPTOOLS_TEST_START", "") == "1":
        os.environ["LOOPTOOLS"] = "1"
        import looptools._autostart  # noqa: F401  (what looptools.pth does)
    if rest[0] == "-m":
        sys.argv = [rest[1], *rest[2:]]
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    elif rest[0] == "-c":
        sys.argv = ["-c", *rest[2:]]
        exec(compile(rest[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = rest
        sys.path[0] = os.path.dirname(os.path.abspath(rest[0]))
        runpy.run_path(rest[0], run_name="__main__")


if __name__ == "__main__":
    main()
