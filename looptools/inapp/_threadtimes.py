"""How a thread spent its time: on a CPU, or waiting for one (Linux ``schedstat``).

The stall watchdog uses it to tell *why* it ran late.  Late because the OS
gave its CPU to other processes (a busy machine) is time on the run queue;
late because a C call held the GIL is time blocked while the loop thread ran.
``/proc/self/task/<tid>/schedstat`` holds three numbers — nanoseconds on a
CPU, nanoseconds waiting on a run queue, time slices — readable from any
thread with one ``pread`` and no lock (~1.5 µs measured here), made without
releasing the GIL.  Where it does
not exist (not Linux, or a kernel without schedstats) :func:`open_times` is
None and the watchdog falls back to the loop thread's CPU clock
(``time.pthread_getcpuclockid``), and where there is none either (macOS,
Windows), to judging by lateness alone.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

_libc: Any = None


def pread_holding_gil(fd: int, buffer: ctypes.Array[ctypes.c_char], offset: int = 0) -> bytes:
    """``os.pread`` without releasing the GIL (a ``ctypes.PyDLL`` call).

    The watchdog thread reads a few bytes at each look; every release of the
    GIL there would have to be won back from a busy loop thread, and each
    hand-over costs that thread a switch (measured: 5-8 % of a plain asyncio
    callback chain for two ``os.pread`` calls a look).
    """
    libc = _lib()
    if libc is None:
        raise OSError(errno.ENOSYS, "no pread in the C library")
    got = libc.pread(fd, buffer, len(buffer), offset)
    if got < 0:
        raise OSError(ctypes.get_errno(), "pread failed")
    return buffer.raw[:got]


def _lib() -> Any:
    """The C library's ``pread`` through ``ctypes.PyDLL``; None where there is none
    (Windows' C library is not loaded by name, and has no ``pread``)."""
    global _libc
    if _libc is None:
        try:
            libc = ctypes.PyDLL(None, use_errno=True)
            libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                                   ctypes.c_long]
            libc.pread.restype = ctypes.c_ssize_t
            _libc = libc
        except (OSError, AttributeError, TypeError):
            _libc = False
    return _libc or None


def reads_holding_gil() -> bool:
    """Can :func:`pread_holding_gil` read here?"""
    return _lib() is not None


class ThreadTimes:
    """Cumulative (on-CPU, waiting-for-CPU) seconds of one thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = ctypes.create_string_buffer(96)

    def read(self) -> tuple[float, float]:
        fields = pread_holding_gil(self.fd, self._buffer).split()
        return int(fields[0]) * 1e-9, int(fields[1]) * 1e-9

    def read_all(self) -> tuple[float, float, int]:
        """(on-CPU, waiting-for-CPU) seconds and how many times it was given a CPU."""
        fields = pread_holding_gil(self.fd, self._buffer).split()
        return int(fields[0]) * 1e-9, int(fields[1]) * 1e-9, int(fields[2])

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def open_times(native_id: int | None) -> ThreadTimes | None:
    """Times of the thread ``native_id`` of this process, or None where unavailable."""
    if native_id is None:
        return None
    try:
        fd = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    times = ThreadTimes(fd)
    try:
        times.read()
    except Exception:  # no pread (OSError), a format we cannot read: none
        times.close()
        return None
    return times


def missing() -> str | None:
    """Why :func:`open_times` finds nothing here (None: it works), tried on this thread."""
    if not reads_holding_gil():
        return "no pread in the C library"
    import threading

    times = open_times(threading.get_native_id())
    if times is None:
        return "no /proc/self/task/<tid>/schedstat"
    times.close()
    return None
