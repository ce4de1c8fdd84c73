"""Loop lag: how late the periodic heartbeat ran (like Node's ``monitorEventLoopDelay``).

Lag is ``actual - scheduled`` of each heartbeat, clamped at 0: Qt's whole-ms
timers can fire up to a millisecond early, which would otherwise read as
negative lag (loopmon's reading on qasync; see docs/design.md).

Besides the histogram, the report gets the lag over time for the HTML timeline and
the trace: the largest lag of each 0.05 s window, at most ``SERIES_POINTS`` points
(``looptools.inapp._stats.Series``: windows merge two by two as a long run fills it).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from looptools.inapp._stats import LogHistogram, Series
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: Points of ``lag.over_time`` at most (up to about 55 kB of the indented report).
SERIES_POINTS = 2000
#: Its first window, in seconds; doubled each time the series fills up.
SERIES_STEP_S = 0.05


class LoopLag(Detector):
    name = "lag"

    def __init__(self, settings: Settings) -> None:
        self.interval_ms = settings.heartbeat_ms
        self.histogram = LogHistogram()
        # (t_s, max lag ms) per half-second window, for sparklines.
        self.recent: deque[tuple[float, float]] = deque(maxlen=240)
        self._window_start = 0.0
        self._window_max = 0.0
        #: (t_s, largest lag ms) per window, for lag.over_time
        self.series = Series(SERIES_POINTS, SERIES_STEP_S)

    def attach(self, state: Any, plugin: Any) -> None:
        # What the heartbeat really runs at: plain asyncio's probes go at most every
        # 100 ms (looptools.plugins.asyncio_loop.PROBE_INTERVAL_S), whatever was asked.
        self.interval_ms = round(plugin.heartbeat_interval_s(self.interval_ms / 1000.0)
                                 * 1000.0, 3)

    def heartbeat(self, now: float, lag: float) -> None:
        lag_ms = lag * 1000.0
        self.histogram.add(lag_ms)
        origin = self.hub.started if self.hub is not None else 0.0
        self.series.add(now - origin, lag_ms)
        if lag_ms > self._window_max:
            self._window_max = lag_ms
        if now - self._window_start >= 0.5:
            self.recent.append((round(now - origin, 3), round(self._window_max, 3)))
            self._window_start = now
            self._window_max = 0.0

    def summary(self) -> dict[str, Any] | None:
        if not self.histogram.count:
            return None
        out = self.histogram.summary()
        out["interval_ms"] = self.interval_ms
        out["histogram"] = self.histogram.pairs()
        out["over_time"] = self.series.snapshot()
        out["over_time_step_s"] = self.series.step
        return out

    def contribute(self, report: dict[str, Any]) -> None:
        report["lag"] = self.summary()

    def snapshot(self) -> dict[str, Any]:
        summary = self.histogram.summary() if self.histogram.count else None
        return {"lag": summary, "lag_recent": list(self.recent)[-60:]}
