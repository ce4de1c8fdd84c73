"""State shared between the loop thread's hot path and the watchdog thread.

The loop thread writes plain attributes (a few stores per callback); the
watchdog thread only reads them.  Under the GIL each store is atomic, and the
watchdog tolerates reading a slightly stale combination.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class LoopState:
    __slots__ = (
        "beats",
        "busy",
        "cur",
        "cur_t0",
        "idle_check",
        "idle_seen",
        "last_beat",
        "last_end",
        "loop",
        "running",
        "slow",
        "thr",
        "thread_id",
    )

    def __init__(self, loop: Any, thread_id: int, threshold_s: float) -> None:
        now = time.perf_counter()
        self.loop = loop
        self.thread_id = thread_id
        self.thr = threshold_s
        self.running = False
        #: the asyncio handle running now, or None
        self.cur: Any = None
        #: when ``cur`` started
        self.cur_t0 = now
        #: when the last asyncio callback ended
        self.last_end = now
        #: when the heartbeat last ran
        self.last_beat = now
        self.beats = 0
        #: total seconds spent in timed asyncio callbacks
        self.busy = 0.0
        #: when the watchdog last saw the loop thread waiting for I/O
        self.idle_seen = now
        #: idle_check(frame) -> True when the loop thread's top frame is the loop
        #: waiting for I/O (plain asyncio: the selector), set by the plugin
        self.idle_check: Callable[[Any], bool] | None = None
        #: called as slow(handle, started, duration) for callbacks over ``thr``
        self.slow: Callable[[Any, float, float], None] | None = None

    def last_seen(self) -> float:
        """The last moment the loop thread was known to be back in the loop."""
        cur = self.cur
        seen = max(self.last_beat, self.last_end, self.idle_seen)
        if cur is not None and self.cur_t0 > seen:
            return self.cur_t0
        return seen
