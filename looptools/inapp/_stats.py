"""Bounded-memory statistics: a log-bucket histogram, a sample reservoir, the longest
runs of something and a decimated time series."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LogHistogram:
    """Counts values in buckets growing by 5 %: percentiles within ~5 %, O(1) memory.

    Values are milliseconds; the first bucket holds everything up to ``floor``.
    """

    __slots__ = ("buckets", "count", "floor", "max", "sum")
    _GROWTH = 1.05

    def __init__(self, floor: float = 0.05) -> None:
        self.floor = floor
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def _index(self, value: float) -> int:
        if value <= self.floor:
            return 0
        return 1 + int(math.log(value / self.floor, self._GROWTH))

    def _upper(self, index: int) -> float:
        return self.floor * self._GROWTH**index

    def add(self, value: float) -> None:
        index = self._index(value)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.sum += value
        if value > self.max:
            self.max = value

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s values (a histogram with the same floor) to this one; ``other``
        may be filled meanwhile by another thread (its buckets are copied first)."""
        for index, n in list(other.buckets.items()):
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.sum += other.sum
        if other.max > self.max:
            self.max = other.max

    def percentile(self, q: float) -> float:
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(self._upper(index), self.max) if index else min(self.floor, self.max)
        return self.max

    def pairs(self) -> list[list[float]]:
        """``[upper bound ms, count]`` per non-empty bucket."""
        return [[round(self._upper(i), 4), float(n)] for i, n in sorted(self.buckets.items())]

    def summary(self) -> dict[str, Any]:
        return {
            "p50_ms": round(self.percentile(50), 3),
            "p90_ms": round(self.percentile(90), 3),
            "p99_ms": round(self.percentile(99), 3),
            "max_ms": round(self.max, 3),
            "mean_ms": round(self.sum / self.count, 3) if self.count else 0.0,
            "samples": self.count,
        }


class Reservoir:
    """At most ``size`` uniformly sampled values, for percentiles of a stream."""

    __slots__ = ("_rng", "seen", "size", "values")

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0
        self._rng = random.Random(0x100F)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            slot = self._rng.randrange(self.seen)
            if slot < self.size:
                self.values[slot] = value

    def percentile(self, q: float) -> float:
        if not self.values:
            return 0.0
        ordered = sorted(self.values)
        rank = max(1, math.ceil(q / 100.0 * len(ordered)))
        return ordered[rank - 1]


class Longest(Generic[T]):
    """The ``size`` items with the longest durations seen, each added in O(log size).

    Used for the times of single runs (a slow callback, a blocking call) kept for the
    trace: the longest are the ones a reader looks for.  ``seen`` counts them all.
    """

    __slots__ = ("_heap", "_order", "seen", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        # (duration, order, item): the shortest at the top, order breaks ties.
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()

    def add(self, duration: float, item: T) -> None:
        self.seen += 1
        entry = (duration, next(self._order), item)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        elif duration > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[T]:
        """The items kept, in the order they were added."""
        return [item for _, _, item in sorted(list(self._heap), key=lambda entry: entry[1])]


class Series:
    """At most ``size`` ``[t, max value]`` points of a stream, each the largest value
    seen in a window of ``step`` seconds; when full, neighbouring windows are merged
    two by two and ``step`` doubles, so any length of run fits and a peak is never lost.

    ``add`` is O(1) (the merge, O(size), happens once per doubling).
    """

    __slots__ = ("_max", "_max_t", "_start", "points", "size", "step")

    def __init__(self, size: int = 2000, step: float = 0.1) -> None:
        self.size = max(2, size)
        self.step = step
        self.points: list[list[float]] = []
        self._start: float | None = None
        self._max = 0.0
        self._max_t = 0.0

    def add(self, t: float, value: float) -> None:
        start = self._start
        if start is None or t - start >= self.step:
            if start is not None:
                self.points.append([self._max_t, self._max])
                if len(self.points) >= self.size:
                    self._halve()
            self._start = t
            self._max_t, self._max = t, value
        elif value > self._max:
            self._max_t, self._max = t, value

    def _halve(self) -> None:
        merged = []
        points = self.points
        for n in range(0, len(points) - 1, 2):
            a, b = points[n], points[n + 1]
            merged.append(b if b[1] > a[1] else a)
        if len(points) % 2:
            merged.append(points[-1])
        self.points = merged
        self.step *= 2

    def snapshot(self, digits: int = 3) -> list[list[float]]:
        """The points so far, the open window last: ``[t, max value]``, rounded."""
        points = list(self.points)
        if self._start is not None:
            points.append([self._max_t, self._max])
        return [[round(t, digits), round(v, digits)] for t, v in points]
