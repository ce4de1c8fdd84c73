"""State shared between the loop thread's hot path and the watchdog thread.

The loop thread writes plain attributes; the watchdog thread reads them and
writes only ``armed``/``armed_t0`` and ``idle_seen``.  Under the GIL each load
and store is atomic, and the watchdog tolerates a slightly stale combination.

Two hot paths fill it (see ``looptools.plugins.asyncio_loop``):

* **lean** (the default): per callback only ``cur`` and the run counter ``n``
  are stored, and no clock is read.  A clock read costs 60-80 ns on the
  virtual machines we measured, as much as the rest of the timing put
  together.  The watchdog, which looks every few milliseconds, dates each run
  by the first look that saw it, and *arms* that run: when an armed run ends
  the loop thread reads the clock once, so the end (and a slow callback's
  duration) is exact and the start is late by at most one look.
* **precise**: both ends of every run are read from the clock and the time in
  callbacks is summed (``busy``).  Used while the Qt dispatcher detector is
  watching, which needs it for its busy accounting.

On asyncio's own selector loop there is **no hook** on callbacks at all (the
lean one was most of looptools' cost on a busy callback chain: ~70 ns of a
1.8 µs callback).  The watchdog finds the running handle itself at each look:
it is the ``self`` of the ``Handle._run`` frame on the loop thread's stack
(``run_code``), and the watchdog stores it in ``cur`` and counts a new run in
``n`` whenever it changes.  A run seen at two looks is long enough to be worth
timing: ``end_watch`` then replaces ``Handle._run`` and the selector's
``select`` until the loop thread reaches either, which ends the run exactly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class LoopState:
    __slots__ = (
        "armed",
        "armed_t0",
        "beats",
        "busy",
        "conservative",
        "cur",
        "end_watch",
        "idle_check",
        "idle_frame",
        "idle_seen",
        "last_beat",
        "last_end",
        "loop",
        "n",
        "native_id",
        "run_code",
        "running",
        "slow",
        "t0",
        "t0_n",
        "thr",
        "thread_id",
    )

    def __init__(self, loop: Any, thread_id: int, threshold_s: float) -> None:
        now = time.perf_counter()
        self.loop = loop
        self.thread_id = thread_id
        #: the OS's id of the loop thread (made on it: the monitor attaches there)
        self.native_id: int | None = (
            threading.get_native_id() if threading.get_ident() == thread_id else None)
        self.thr = threshold_s
        self.running = False
        #: the asyncio handle running now, or None
        self.cur: Any = None
        #: how many callbacks have started (the run number of the latest)
        self.n = 0
        #: the run number whose end the loop thread should time (0: none), and
        #: the watchdog's estimate of when that run began
        self.armed = 0
        self.armed_t0 = now
        #: precise hot path only: when run ``t0_n`` began
        self.t0 = now
        self.t0_n = 0
        #: when the last timed callback ended (precise runs and armed runs)
        self.last_end = now
        #: when the heartbeat last ran
        self.last_beat = now
        self.beats = 0
        #: total seconds spent in callbacks timed by the precise hot path
        self.busy = 0.0
        #: when the watchdog last saw the loop thread waiting for I/O
        self.idle_seen = now
        #: idle_check(frame) -> True when the loop thread's top frame is the loop
        #: waiting for I/O (plain asyncio: the selector), set by the plugin
        self.idle_check: Callable[[Any], bool] | None = None
        #: called as slow(handle, started, duration) for callbacks over ``thr``
        self.slow: Callable[[Any, float, float], None] | None = None
        #: a loop of unknown kind: its idle wait is not recognised, so only a
        #: callback in progress (``cur``) can be stalled
        self.conservative = False
        #: no hook at all (plain asyncio, see the module's docstring): the code of
        #: ``Handle._run`` whose frame on the loop thread's stack holds ``cur``
        self.run_code: Any = None
        #: with ``run_code``: times the end of a long run (plugins.asyncio_loop.EndWatch)
        self.end_watch: Any = None
        #: (function, file) of the frame the loop thread idles in on a Qt loop
        #: (the one that called into Qt's event loop), learnt at the first beat
        self.idle_frame: tuple[str, str] | None = None

    def ended(self, handle: Any, n: int) -> None:
        """Loop thread, lean hot path: armed run ``n`` has just ended."""
        if self.armed != n:
            return
        now = time.perf_counter()
        self.armed = 0
        self.last_end = now
        started = self.armed_t0
        duration = now - started
        if duration > self.thr and self.slow is not None:
            self.slow(handle, started, duration)

    def restart(self, now: float) -> None:
        """The loop (re)starts running: everything before ``now`` is history."""
        self.last_beat = self.last_end = self.idle_seen = self.t0 = self.armed_t0 = now
        self.armed = 0
