"""Bounded-memory statistics: a log-bucket histogram and a sample reservoir."""

from __future__ import annotations

import math
import random
from typing import Any


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
