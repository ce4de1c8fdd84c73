"""Diffs: what got worse (and better) from one report to another (``looptools diff``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from looptools.gate.baseline import Tolerance
from looptools.gate.limits import fmt_ms
from looptools.gate.offenders import _KIND_WORDS, Offender, offenders

__all__ = [
    "Change",
    "Diff",
    "diff_reports",
]


@dataclass(frozen=True)
class Change:
    """One difference between two reports; ``worse`` ones make ``looptools diff`` fail."""

    what: str
    message: str
    worse: bool
    before: float | None = None
    after: float | None = None
    threshold: float | None = None
    offender: Offender | None = None


@dataclass(frozen=True)
class Diff:
    """What changed from one report to another."""

    changes: tuple[Change, ...]

    @property
    def worse(self) -> list[Change]:
        """The changes for the worse."""
        return [c for c in self.changes if c.worse]

    @property
    def better(self) -> list[Change]:
        """The changes for the better."""
        return [c for c in self.changes if not c.worse]


def _compare_ms(what: str, before: float | None, after: float | None,
                tol: Tolerance) -> Change | None:
    if before is None or after is None:
        return None
    limit = tol.ms_limit(before)
    if after > limit:
        return Change(what, f"{what} {fmt_ms(before)} -> {fmt_ms(after)} "
                            f"(worse above {fmt_ms(limit)})", True, before, after, limit)
    if before > tol.ms_limit(after):
        return Change(what, f"{what} {fmt_ms(before)} -> {fmt_ms(after)}", False, before, after,
                      limit)
    return None


def _compare_count(what: str, before: float | None, after: float | None,
                   tol: Tolerance) -> Change | None:
    if before is None or after is None:
        return None
    limit = tol.count_limit(before)
    if after > limit:
        return Change(what, f"{what} {before:g} -> {after:g} (worse above {math.floor(limit)})",
                      True, before, after, limit)
    if before > tol.count_limit(after):
        return Change(what, f"{what} {before:g} -> {after:g}", False, before, after, limit)
    return None


def _get(report: Mapping[str, Any], *path: str) -> float | None:
    value: Any = report
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return float(value) if isinstance(value, int | float) else None


def diff_reports(before: Mapping[str, Any], after: Mapping[str, Any],
                 tolerance: Tolerance | None = None) -> Diff:
    """What got worse (and better) from ``before`` to ``after``.

    Worse: a new stall culprit, blocking-call site, slow callback or leaked task; a
    known one grown beyond ``tolerance``; and beyond it, the longest stall, total
    stall time, loop lag p99, dispatcher busy fraction, peak pending tasks and tasks
    pending at exit.
    """
    tol = tolerance or Tolerance()
    changes: list[Change] = []

    def add(change: Change | None) -> None:
        if change is not None:
            changes.append(change)

    add(_compare_ms("longest stall", _get(before, "stall_summary", "max_ms"),
                    _get(after, "stall_summary", "max_ms"), tol))
    add(_compare_ms("total stall time", _get(before, "stall_summary", "total_ms"),
                    _get(after, "stall_summary", "total_ms"), tol))
    add(_compare_ms("loop lag p99", _get(before, "lag", "p99_ms"), _get(after, "lag", "p99_ms"),
                    tol))
    busy_before = _get(before, "dispatcher", "busy_fraction")
    busy_after = _get(after, "dispatcher", "busy_fraction")
    if busy_before is not None and busy_after is not None:
        limit = busy_before + tol.busy
        text = f"dispatcher busy {busy_before:.0%} -> {busy_after:.0%}"
        if busy_after > limit:
            changes.append(Change("busy fraction", f"{text} (worse above {limit:.0%})", True,
                                  busy_before, busy_after, limit))
        elif busy_before > busy_after + tol.busy:
            changes.append(Change("busy fraction", text, False, busy_before, busy_after, limit))
    add(_compare_count("peak pending tasks", _get(before, "tasks", "peak_pending"),
                       _get(after, "tasks", "peak_pending"), tol))
    leaked_before = (before.get("tasks") or {}).get("pending_at_exit")
    leaked_after = (after.get("tasks") or {}).get("pending_at_exit")
    if leaked_before is not None and leaked_after is not None:
        add(_compare_count("tasks pending at exit", len(leaked_before), len(leaked_after), tol))

    old, new = offenders(before), offenders(after)
    for offender in new:
        match = next((o for o in old if o.same(offender.kind, offender.label, offender.function,
                                               offender.file)), None)
        word = _KIND_WORDS[offender.kind]
        if match is None:
            new_word = "new stall culprit" if offender.kind == "stall" else f"new {word}"
            changes.append(Change(new_word, f"{new_word}: {offender.describe()}", True, None,
                                  offender.max_ms if offender.max_ms is not None
                                  else offender.count, None, offender))
            continue
        if offender.kind in ("stall", "slow_callback"):
            change = _compare_ms(f"{word} in {offender.function or offender.label}",
                                 match.max_ms, offender.max_ms, tol)
        else:
            change = _compare_count(f"{word} {offender.label}"
                                    + (f" in {offender.function}" if offender.function else ""),
                                    match.count, offender.count, tol)
        if change is not None:
            changes.append(dataclasses.replace(change, offender=offender))
    for gone in old:
        if not any(o.same(gone.kind, gone.label, gone.function, gone.file) for o in new):
            changes.append(Change(f"{_KIND_WORDS[gone.kind]} gone",
                                  f"gone: {gone.describe()}", False, offender=gone))
    return Diff(tuple(changes))
