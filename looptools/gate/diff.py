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
from looptools.report.model import model_of

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

    # The figures every view shows (the report model's), compared where both reports have
    # them: a field missing or null (a hand-made report) is no comparison, as it always was.
    models = model_of(before), model_of(after)

    def figure(path: tuple[str, ...], value: Any) -> tuple[float | None, float | None]:
        have = [_get(report, *path) is not None for report in (before, after)]
        values = [float(value(m)) if ok else None for m, ok in zip(models, have, strict=True)]
        return values[0], values[1]

    add(_compare_ms("longest stall", *figure(("stall_summary", "max_ms"),
                                             lambda m: m.stalls.max_ms), tol))
    add(_compare_ms("total stall time", *figure(("stall_summary", "total_ms"),
                                                lambda m: m.stalls.total_ms), tol))
    add(_compare_ms("loop lag p99", *figure(("lag", "p99_ms"), lambda m: m.lag.p99_ms), tol))
    busy_before, busy_after = figure(("dispatcher", "busy_fraction"),
                                     lambda m: m.dispatcher.busy_fraction)
    if busy_before is not None and busy_after is not None:
        limit = busy_before + tol.busy
        text = f"dispatcher busy {busy_before:.0%} -> {busy_after:.0%}"
        if busy_after > limit:
            changes.append(Change("busy fraction", f"{text} (worse above {limit:.0%})", True,
                                  busy_before, busy_after, limit))
        elif busy_before > busy_after + tol.busy:
            changes.append(Change("busy fraction", text, False, busy_before, busy_after, limit))
    add(_compare_count("peak pending tasks", *figure(("tasks", "peak_pending"),
                                                     lambda m: m.tasks.peak), tol))
    if all(isinstance((r.get("tasks") or {}).get("pending_at_exit"), list)
           for r in (before, after)):
        leaked_before, leaked_after = (len(m.tasks.leaked) if m.tasks else 0 for m in models)
        add(_compare_count("tasks pending at exit", leaked_before, leaked_after, tol))

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
