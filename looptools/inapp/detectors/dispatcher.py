"""Qt dispatcher busy/idle accounting from ``aboutToBlock`` plus the heartbeat.

What we measured (tests/test_dispatcher.py proves it on both dispatchers):

* On ``QEventDispatcherGlib`` a 200 ms slot runs *between* ``aboutToBlock`` and
  the next ``awake``: glib waits and then dispatches inside one
  ``g_main_context_iteration``, and ``awake`` comes after.  An idle 200 ms wait
  looks the same.  The naive "awake→aboutToBlock is busy" reading is wrong there.
* On ``QEventDispatcherUNIX`` the slot sits in awake→aboutToBlock, but timers and
  socket notifiers are dispatched right after the wait, before the next awake.

What holds on both: ``aboutToBlock`` is emitted just before the thread may
wait, so each window between two ``aboutToBlock`` emissions is *wait first,
then dispatch*.  The wait cannot outlast the next heartbeat (a precise Qt timer
every ``heartbeat_ms``), and it has certainly ended when the heartbeat slot
runs.  So in each window::

    idle = min(first heartbeat in the window, heartbeat due time) - window start
    busy = window length - idle

which is exact to within one heartbeat period.  Time spent in timed asyncio
callbacks inside a window is busy for certain, so a window is at least that
busy: on a loop saturated with small callbacks the heartbeat bound alone would
call every tiny window idle.  ``awake`` carries no extra
information on glib and costs as much as ``aboutToBlock`` per emission (two
emissions per asyncio callback on a busy loop), so it is not connected.

While it watches, the loop plugin times every callback precisely (the
"precise" hot path in ``looptools.inapp.state``), because the accounting above needs
the time spent in callbacks.

On a loop saturated with small events (over 2,000 iterations a second) the
slot and the precise timing cost ~10-40 % of throughput while connected, so the
detector decides within 30 ms whether the loop is saturated, and then watches
0.1 s in every 2 s and reports the busy fraction over the watched time
(``observed_fraction`` says how much was watched).  Stalls are seen by the
watchdog regardless, and the longest of them counts as a busy window.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from looptools.inapp._shield import GuardedSlot, guarded_slot
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: Above this many iterations a second the loop is saturated with small events,
#: and the Python slot on aboutToBlock costs ~10 % of its throughput
#: (benchmarks/overhead.py).  Then the detector watches 0.1 s in every 2 s.
SATURATED_PER_S = 2000.0
FIRST_WATCH_S = 0.03  # long enough to count iterations, short enough to be cheap
WATCH_S = 0.1
REST_S = 1.9


class DispatcherBusy(Detector):
    name = "dispatcher"

    def __init__(self, settings: Settings) -> None:
        self.interval = settings.heartbeat_ms / 1000.0
        self.dispatcher: Any = None
        self.dispatcher_name: str | None = None
        self.busy = 0.0
        self.idle = 0.0
        self.iterations = 0
        self.longest = 0.0
        self.windows: list[tuple[float, float]] = []  # (start, busy s), the longest few
        self._window_start: float | None = None
        self._first_beat: float | None = None
        self._first_beat_due = 0.0
        self._next_due = 0.0
        self._connected = False
        self._since = 0.0
        self.observed = 0.0  # seconds the signal was connected
        self._connected_at = 0.0
        self._iterations_at = 0
        self._resume_at: float | None = None
        self.sampling = False
        self.state: Any = None
        self.plugin: Any = None
        self._callbacks_at = 0.0
        self._watch_s = FIRST_WATCH_S
        self._slot: GuardedSlot | None = None

    def attach(self, state: Any, plugin: Any) -> None:
        if not plugin.is_qt:
            return
        self.state = state
        self.plugin = plugin
        from looptools.plugins._qt import dispatcher_name

        self.dispatcher = plugin.dispatcher()
        if self.dispatcher is None:
            return
        self.dispatcher_name = dispatcher_name(self.dispatcher)
        self._since = perf_counter()
        self._next_due = self._since + self.interval
        self._connect(self._since)

    def _connect(self, now: float) -> None:
        if self._slot is None:
            # not a Python function: a Ctrl-C is passed on (looptools.inapp._shield)
            self._slot = guarded_slot(self._about_to_block)
        self.dispatcher.aboutToBlock.connect(self._slot.slot)
        self._precise(True)
        self._connected = True
        self._connected_at = now
        self._iterations_at = self.iterations
        self._window_start = None

    def _precise(self, on: bool) -> None:
        if self.plugin is not None:
            self.plugin.set_precise(on)
            if on and self.state is not None:
                self._callbacks_at = self.state.busy

    def _disconnect(self, now: float) -> None:
        self._precise(False)
        try:
            if self._slot is not None:
                self.dispatcher.aboutToBlock.disconnect(self._slot.slot)
        except (RuntimeError, TypeError):  # the dispatcher went away with the app
            pass
        self._connected = False
        self.observed += now - self._connected_at

    def _duty(self, now: float) -> None:
        # From the heartbeat (loop thread): while saturated, watch 1 part in 5.
        if self._connected:
            span = now - self._connected_at
            rate = (self.iterations - self._iterations_at) / span if span > 0 else 0.0
            if span >= self._watch_s and rate > SATURATED_PER_S:
                self.sampling = True
                self._watch_s = WATCH_S
                self._disconnect(now)
                self._resume_at = now + REST_S
        elif self._resume_at is not None and now >= self._resume_at:
            self._resume_at = None
            self._connect(now)

    def forget(self) -> None:
        # A forked child: Qt is not usable there; just let go.
        self._connected = False
        self.dispatcher = None
        self.plugin = None
        self.state = None
        self._slot = None

    def detach(self) -> None:
        if self._connected and self.dispatcher is not None:
            self._disconnect(perf_counter())
        self._resume_at = None
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.close()

    def loop_started(self, now: float) -> None:
        self._window_start = None

    def heartbeat(self, now: float, lag: float) -> None:
        if self._first_beat is None:
            # The wait in this window ended by the time this beat was due (its
            # timer would have woken the thread), even if a slot ran before it.
            self._first_beat = now
            self._first_beat_due = self._next_due
        self._next_due = now + self.interval
        if self.dispatcher is not None and (
                not self._connected or now - self._connected_at >= self._watch_s):
            self._duty(now)

    def _about_to_block(self) -> None:
        self._window(perf_counter())

    def _window(self, now: float) -> None:
        # Runs once per dispatcher iteration: keep it small.
        start = self._window_start
        self._window_start = now
        first_beat = self._first_beat
        self._first_beat = None
        self.iterations += 1
        state = self.state
        callbacks = state.busy - self._callbacks_at if state is not None else 0.0
        if state is not None:
            self._callbacks_at = state.busy
        if start is None:
            return
        length = now - start
        due = self._next_due if first_beat is None else self._first_beat_due
        wait_ended = due if first_beat is None or first_beat > due else first_beat
        if callbacks > 0.0 and state is not None and start < state.t0 < wait_ended:
            # The wait was over when the (last) callback of this window began.
            wait_ended = state.t0
        idle = wait_ended - start
        if idle < 0.0:
            idle = 0.0
        elif idle > length:
            idle = length
        busy = length - idle
        # Timed asyncio callbacks in this window are busy time for certain: on a
        # loop saturated with small callbacks the heartbeat bound alone would
        # call the whole window idle.
        if callbacks > busy:
            busy = callbacks if callbacks < length else length
            idle = length - busy
        self.busy += busy
        self.idle += idle
        if busy > self.longest:
            self.longest = busy
        if busy >= 0.010:
            windows = self.windows
            windows.append((start, busy))
            if len(windows) > 400:
                windows.sort(key=lambda w: w[1], reverse=True)
                del windows[200:]

    def totals(self) -> dict[str, Any] | None:
        if self.dispatcher is None:
            return None
        now = perf_counter()
        observed = self.observed + (now - self._connected_at if self._connected else 0.0)
        elapsed = max(1e-9, now - self._since)
        stalls = self.hub.get("stalls") if self.hub is not None else None
        # A stall is one busy window even if it fell outside a watched second.
        longest = max(self.longest, getattr(stalls, "longest", 0.0))
        accounted = self.busy + self.idle
        origin = self.hub.started if self.hub is not None else 0.0
        kept = sorted(self.windows, key=lambda w: w[1], reverse=True)[:200]
        return {
            "name": self.dispatcher_name or "unknown",
            "busy_fraction": round(self.busy / accounted, 4) if accounted > 0 else 0.0,
            "busy_ms": round(self.busy * 1000.0, 3),
            "idle_ms": round(self.idle * 1000.0, 3),
            "iterations": self.iterations,
            "iterations_per_s": round(self.iterations / max(observed, 1e-9), 2),
            "longest_busy_ms": round(longest * 1000.0, 3),
            "observed_fraction": round(min(1.0, observed / elapsed), 4),
            "busy_windows": sorted(
                [[round(s - origin, 4), round(b * 1000.0, 3)] for s, b in kept]
            ),
        }

    def contribute(self, report: dict[str, Any]) -> None:
        report["dispatcher"] = self.totals()

    def snapshot(self) -> dict[str, Any]:
        totals = self.totals()
        if totals is not None:
            totals.pop("busy_windows", None)
        return {"dispatcher": totals}
