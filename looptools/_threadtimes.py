"""How a thread spent its time: on a CPU, or waiting for one (Linux ``schedstat``).

The stall watchdog uses it to tell *why* it ran late.  Late because the OS
gave its CPU to other processes (a busy machine) is time on the run queue;
late because a C call held the GIL is time blocked while the loop thread ran.
``/proc/self/task/<tid>/schedstat`` holds three numbers — nanoseconds on a
CPU, nanoseconds waiting on a run queue, time slices — readable from any
thread with one ``pread`` and no lock (~1.5 µs measured here).  Where it does
not exist (not Linux, or a kernel without schedstats) :func:`open_times` is
None and the watchdog falls back to judging by lateness alone.
"""

from __future__ import annotations

import os


class ThreadTimes:
    """Cumulative (on-CPU, waiting-for-CPU) seconds of one thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self) -> tuple[float, float]:
        fields = os.pread(self.fd, 96, 0).split()
        return int(fields[0]) * 1e-9, int(fields[1]) * 1e-9

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
    except (OSError, ValueError, IndexError):
        times.close()
        return None
    return times
