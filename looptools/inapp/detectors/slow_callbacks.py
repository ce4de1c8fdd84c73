"""Slow callbacks: asyncio callbacks and task steps that ran longer than the threshold.

The timing itself is done by the loop plugin's replacement of the handle's run
method; this detector only sees callbacks already known to be slow, so its
per-call work (naming the callback) is off the common path.

Besides per-callback aggregates, the longest ``MAX_RUNS`` runs of the whole run are
kept with their start times (each row's ``runs``), for the trace.
"""

from __future__ import annotations

from typing import Any

from looptools.inapp._describe import describe_handle, describe_task
from looptools.inapp._stats import Longest, Reservoir
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: Slow-callback runs kept with their start times (the longest), over all callbacks.
MAX_RUNS = 1000


class _Stats:
    __slots__ = ("count", "kind", "location", "max", "name", "samples", "total")

    def __init__(self, kind: str, name: str, location: str | None) -> None:
        self.kind = kind
        self.name = name
        self.location = location
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.samples = Reservoir(128)

    def add(self, duration_ms: float) -> None:
        self.count += 1
        self.total += duration_ms
        if duration_ms > self.max:
            self.max = duration_ms
        self.samples.add(duration_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "location": self.location,
            "count": self.count,
            "total_ms": round(self.total, 3),
            "max_ms": round(self.max, 3),
            "p50_ms": round(self.samples.percentile(50), 3),
            "p99_ms": round(self.samples.percentile(99), 3),
        }


class SlowCallbacks(Detector):
    name = "slow_callbacks"

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.max_callbacks
        self.by_identity: dict[tuple[str, str, str | None], _Stats] = {}
        #: (stats, started_at_s, duration_ms) of the longest runs
        self.runs: Longest[tuple[_Stats, float, float]] = Longest(MAX_RUNS)

    def slow_callback(self, handle: Any, started: float, duration: float) -> None:
        kind, name, location, task = describe_handle(handle)
        key = (kind, name, location)
        stats = self.by_identity.get(key)
        if stats is None:
            if len(self.by_identity) >= self.limit:
                key = ("callback", "<other>", None)
                stats = self.by_identity.get(key)
            if stats is None:
                stats = self.by_identity[key] = _Stats(*key)
        stats.add(duration * 1000.0)
        origin = self.hub.started if self.hub is not None else 0.0
        self.runs.add(duration, (stats, started - origin, duration * 1000.0))
        if self.hub is not None and self.hub.has("event"):  # no formatting for nobody
            self.hub.emit(
                "slow_callback",
                name=name,
                kind=kind,
                location=location,
                task=describe_task(task) if task is not None else None,
                duration_ms=round(duration * 1000.0, 3),
            )

    def top(self, n: int | None = None) -> list[dict[str, Any]]:
        rows = [stats.as_dict() for stats in list(self.by_identity.values())]
        rows.sort(key=lambda row: row["total_ms"], reverse=True)
        return rows[:n] if n else rows

    def contribute(self, report: dict[str, Any]) -> None:
        runs: dict[int, list[list[float]]] = {}
        for stats, started_at_s, duration_ms in self.runs.items():
            runs.setdefault(id(stats), []).append(
                [round(started_at_s, 6), round(duration_ms, 3)])
        rows = []
        for stats in list(self.by_identity.values()):
            row = stats.as_dict()
            row["runs"] = sorted(runs.get(id(stats), []))
            rows.append(row)
        rows.sort(key=lambda row: row["total_ms"], reverse=True)
        report["slow_callbacks"] = rows

    def snapshot(self) -> dict[str, Any]:
        return {"slow_callbacks": self.top(10)}
