"""What to call the calling thread in a report row.

``threading`` names the threads it started (``audio``, ``Thread-3 (run)``), but a thread
it did not start — a ``QThread``, a ``QThreadPool`` thread, qasync's executor (its
workers are ``QThread``\\ s), a C library's — is only ``Dummy-3`` to it, a number that
says nothing about which thread it is.  The OS knows better (Linux:
``/proc/self/task/<tid>/comm``): Qt names its threads there after the ``QThread``'s
``objectName`` or class (``_QThreadWorker`` for qasync's executor, ``Thread (pooled)``
for a pool thread).  When the OS has no name of its own for the thread either (a new
thread inherits its creator's, so it reads as the process's), the row says so:
``unnamed thread <native id>``.  A name the app gave such a thread itself
(``threading.current_thread().name = "ticker"`` in a ``QThread``) is kept.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

#: (ident, native id) -> (threading's object for it, or None; the name); bounded.
_NAMES: dict[tuple[int, int], tuple[Any, str]] = {}
_MAX_NAMES = 256
_PROCESS_NAME: list[str | None] = []
#: ``threading``'s own name for a thread it did not start.
DUMMY_NAME = re.compile(r"Dummy-\d+")


def _read_name(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 64).decode("utf-8", "replace").strip() or None
    except OSError:
        return None
    finally:
        os.close(fd)


def os_thread_name() -> str | None:
    """The OS's name of the calling thread (Linux), when it says more than the
    process's: a ``QThreadPool`` thread is ``Thread (pooled)`` to the OS and only
    ``Dummy-3`` to Python."""
    native = getattr(threading, "get_native_id", None)
    if native is None or not os.path.isdir("/proc/self/task"):
        return None
    if not _PROCESS_NAME:
        _PROCESS_NAME.append(_read_name("/proc/self/comm"))
    name = _read_name(f"/proc/self/task/{native()}/comm")
    return name if name and name != _PROCESS_NAME[0] else None


def current_thread_name() -> str:
    """The calling thread's name: ``threading``'s for a thread it started (or one the
    app named), else the OS's, else ``unnamed thread <native id>``.  Makes no
    ``_DummyThread`` (unlike ``threading.current_thread()``); the OS is asked once per
    thread."""
    ident = threading.get_ident()
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    if thread is not None and not isinstance(thread, threading._DummyThread):  # type: ignore[attr-defined]
        return str(thread.name)
    if thread is not None and not DUMMY_NAME.fullmatch(thread.name):
        # A name the app gave it (threading.current_thread().name = ...).  (A
        # _DummyThread outlives its thread in threading._active, and a new thread
        # given the same ident is handed it by current_thread(): the app sees that
        # name there too.)
        return str(thread.name)
    native = threading.get_native_id()
    known = _NAMES.get((ident, native))
    if known is not None and known[0] is thread:
        return known[1]
    name = os_thread_name() or f"unnamed thread {native}"
    if len(_NAMES) >= _MAX_NAMES:
        _NAMES.clear()
    _NAMES[(ident, native)] = (thread, name)
    return name
