"""Evaluation: a report checked against a budget (limits, allow-list) and a baseline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from looptools.gate.allow import AllowEntry
from looptools.gate.baseline import Baseline, BaselineEntry
from looptools.gate.limits import _KEYS, BUDGET_KEYS, Budget, BudgetKey, Limit, fmt_ms
from looptools.gate.offenders import Kind, Location, Offender, offenders, plural
from looptools.report.model import model_of

__all__ = [
    "CheckResult",
    "Evaluation",
    "Violation",
    "evaluate",
]


@dataclass(frozen=True)
class Violation:
    """One way a report broke its budget; ``offenders`` are the culprits, worst first."""

    key: str
    message: str
    actual: float | None
    limit: Limit
    offenders: tuple[Offender, ...] = ()
    #: where a violation with no offenders of its own points (the worst worker-loop
    #: stall's culprit, the worst hand-off's posting site, the first affinity site)
    site: Location | None = None

    @property
    def culprit(self) -> Offender | None:
        """The worst offender, if the violation can be pinned on one."""
        return self.offenders[0] if self.offenders else None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one budget key.

    ``status`` is ``pass``, ``fail``, ``unchecked`` (no limit) or ``unmeasured`` (a
    default limit on something this report did not measure; an explicit limit on it
    fails instead, so that switching a detector off cannot silently pass CI).
    """

    key: str
    status: Literal["pass", "fail", "unchecked", "unmeasured"]
    limit: Limit | None
    actual: float | None
    source: str
    violations: tuple[Violation, ...] = ()
    excused: int = 0

    @property
    def budget_key(self) -> BudgetKey:
        """The :class:`BudgetKey` this result is about."""
        return _KEYS[self.key]


@dataclass(frozen=True)
class Evaluation:
    """Everything ``looptools check`` reports about one report and budget."""

    checks: tuple[CheckResult, ...]
    allowed: tuple[tuple[Offender, AllowEntry], ...] = ()
    baselined: tuple[Offender, ...] = ()
    expired: tuple[AllowEntry, ...] = ()
    stale: tuple[BaselineEntry, ...] = ()

    @property
    def violations(self) -> list[Violation]:
        """Every violation, in budget-key order."""
        return [v for check in self.checks for v in check.violations]

    @property
    def ok(self) -> bool:
        """True when the report is within budget."""
        return not self.violations


_MEASURED_BY: dict[str, str] = {
    "max_stall_ms": "stalls", "max_total_stall_ms": "stalls",
    "max_slow_callbacks": "slow_callbacks", "max_lag_p99_ms": "lag",
    "max_pending_tasks": "tasks", "max_leaked_tasks": "tasks",
    "max_blocking_calls": "blocking", "max_handoff_p99_ms": "handoffs",
    "max_worker_stall_ms": "worker_loops", "max_affinity_violations": "affinity",
    "max_worker_lag_p99_ms": "worker_lag",
}
_KEY_KINDS: dict[str, Kind] = {
    "max_stall_ms": "stall", "max_total_stall_ms": "stall", "max_slow_callbacks": "slow_callback",
    "max_leaked_tasks": "leaked_task", "max_blocking_calls": "blocking_call",
}


def _measured(report: Mapping[str, Any], detector: str) -> bool:
    detectors = (report.get("meta") or {}).get("detectors") or ()
    if detector == "lag":
        return report.get("lag") is not None
    if detector == "tasks":
        return report.get("tasks") is not None
    if detector == "handoffs":
        return isinstance(report.get("handoffs"), list)
    if detector in ("worker_loops", "affinity"):
        return isinstance(report.get(detector), Mapping)
    if detector == "worker_lag":  # a worker_loops section from before lag was measured: not
        workers = report.get("worker_loops")
        return isinstance(workers, Mapping) and "lag" in workers
    if detector == "slow_callbacks" and not (report.get("loop") or {}).get("callback_timing"):
        return False
    return detector in detectors


def _actual(key: str, report: Mapping[str, Any], counting: list[Offender],
            excused: list[Offender]) -> float:
    """The figure a budget key limits: the one every view shows (the report model's), less
    what the allow-list and the baseline excused."""
    model = model_of(report)
    excused_count = sum(o.count for o in excused)
    if key == "max_stall_ms":
        if counting:
            return max(o.max_ms or 0.0 for o in counting)
        # Every stall dropped by the cap: only the summary knows how long the worst was.
        return 0.0 if excused or model.stalls.kept else model.stalls.max_ms
    if key == "max_total_stall_ms":
        return max(0.0, model.stalls.total_ms - sum(o.total_ms or 0.0 for o in excused))
    if key == "max_lag_p99_ms" and model.lag is not None:
        return model.lag.p99_ms
    if key == "max_pending_tasks" and model.tasks is not None:
        return float(model.tasks.peak)
    if key == "max_leaked_tasks" and model.tasks is not None:
        return float(len(model.tasks.leaked) - excused_count)
    if key == "max_slow_callbacks":
        return float(sum(int(_num(row.get("count"))) for row in model.slow_callbacks)
                     - excused_count)
    # max_blocking_calls: its offenders' calls, which are the model's blocking.count less the
    # excused ones, except in a hand-made report whose sites count more calls than their
    # call does (the offenders count those, and the gate always has).
    if key == "max_handoff_p99_ms":
        rows = model.handoffs.rows  # worst p99 first
        return _num(rows[0].get("p99_ms")) if rows else 0.0
    if key == "max_worker_stall_ms":
        if model.worker_loops is not None:
            return model.worker_loops.stall_max_ms
        # A section with no loops (the model has none): its summary, if any, as written.
        summary = report["worker_loops"].get("stall_summary")
        return float(summary.get("max_ms") or 0.0) if isinstance(summary, Mapping) else 0.0
    if key == "max_worker_lag_p99_ms":
        return max((float(row["lag"].get("p99_ms") or 0.0) for row in _worker_lag_rows(report)),
                   default=0.0)
    if key == "max_affinity_violations":
        return float(len(model.affinity.violations) + model.affinity.dropped)
    return float(sum(o.count for o in counting))


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _affinity_rows(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(model_of(report).affinity.violations)


def _where(frame: Any, otherwise: str = "?") -> str:
    """``function (file:line)`` of a report's frame, or ``otherwise``."""
    if not isinstance(frame, Mapping) or not frame:
        return otherwise
    return f"{frame.get('function')} ({frame.get('file')}:{frame.get('line')})"


def _first_affinity_violation(report: Mapping[str, Any]) -> str:
    rows = _affinity_rows(report)
    if not rows:
        return ""
    row = rows[0]
    where = _where(row.get("site"))
    calling = row.get("calling_thread")
    thread = f", thread {calling.get('name')}" if isinstance(calling, Mapping) else ""
    return f" (first: {row.get('call')} from {where}{thread}, x{row.get('count')})"


def _handoff_rows(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = report.get("handoffs")
    return [row for row in rows if isinstance(row, Mapping)] if isinstance(rows, list) else []


def _worst_handoff_row(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    rows = sorted(_handoff_rows(report), key=lambda r: -float(r.get("p99_ms") or 0.0))
    return rows[0] if rows else None


def _worst_handoff(report: Mapping[str, Any]) -> str:
    row = _worst_handoff_row(report)
    if row is None:
        return ""
    where = _where(row.get("site"))
    during = row.get("worst_during_stall_in")
    held = f"; the longest waited while {during.get('function')} held the loop" \
        if isinstance(during, Mapping) else ""
    return (f" (worst: {row.get('via')} from {where}, thread {row.get('thread')}, "
            f"{row.get('count')} hand-offs, max {fmt_ms(float(row.get('max_ms') or 0.0))}{held})")


def _worst_worker_stall_row(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    workers = report.get("worker_loops")
    stalls = workers.get("stalls") if isinstance(workers, Mapping) else None
    rows = [s for s in stalls if isinstance(s, Mapping)] if isinstance(stalls, list) else []
    return max(rows, key=lambda s: float(s.get("duration_ms") or 0.0)) if rows else None


def _worker_lag_rows(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The worker_loops thread rows that measured a lag."""
    workers = report.get("worker_loops")
    rows = workers.get("threads") if isinstance(workers, Mapping) else None
    return [row for row in rows if isinstance(row, Mapping) and isinstance(row.get("lag"), Mapping)
            ] if isinstance(rows, list) else []


def _worst_worker_lag(report: Mapping[str, Any]) -> str:
    rows = _worker_lag_rows(report)
    if not rows:
        return ""
    row = max(rows, key=lambda r: float(r["lag"].get("p99_ms") or 0.0))
    lag = row["lag"]
    return (f" (worst: thread {row.get('thread')}, p99 {fmt_ms(float(lag.get('p99_ms') or 0.0))}"
            f", max {fmt_ms(float(lag.get('max_ms') or 0.0))} over {lag.get('samples')} "
            f"callbacks)")


def _worst_worker_stall(report: Mapping[str, Any]) -> str:
    stall = _worst_worker_stall_row(report)
    if stall is None:
        return ""
    where = _where(stall.get("culprit"), str(stall.get("callback") or "?"))
    return (f" (worst: {where}, thread {stall.get('thread')}, {stall.get('loop_kind')} loop, "
            f"{fmt_ms(float(stall.get('duration_ms') or 0.0))})")


def _sort_worst(items: Iterable[Offender]) -> list[Offender]:
    return sorted(items, key=lambda o: (-(o.max_ms or 0.0), -o.count, o.label))


def _violations(key: str, limit: Limit, actual: float, counting: list[Offender],
                report: Mapping[str, Any] | None = None) -> tuple[Violation, ...]:
    spec = _KEYS[key]
    if actual <= limit:
        return ()
    limit_text = f"{key} = {spec.fmt(limit)}"
    if key == "max_stall_ms":
        over = [o for o in _sort_worst(counting) if (o.max_ms or 0.0) > limit]
        if not over:
            return (Violation(key, f"longest stall {fmt_ms(actual)} (culprit not kept in the "
                                   f"report) exceeds {limit_text}", actual, limit),)
        return tuple(Violation(key, f"{o.describe()} exceeds {limit_text}", o.max_ms, limit, (o,))
                     for o in over)
    words = {
        "max_total_stall_ms": f"total stall time {fmt_ms(actual)}",
        "max_slow_callbacks": plural(actual, "slow callback"),
        "max_lag_p99_ms": f"loop lag p99 {fmt_ms(actual)}",
        "max_pending_tasks": f"peak of {plural(actual, 'pending task')}",
        "max_leaked_tasks": f"{plural(actual, 'task')} still pending at exit",
        "max_blocking_calls": f"{plural(actual, 'blocking call')} on the loop thread",
        "max_handoff_p99_ms": f"hand-off wait p99 {fmt_ms(actual)}",
        "max_worker_stall_ms": f"longest worker-loop stall {fmt_ms(actual)}",
        "max_worker_lag_p99_ms": f"worker-loop lag p99 {fmt_ms(actual)}",
        "max_affinity_violations":
            f"{plural(actual, 'call site')} touching a Qt object or the loop from another thread",
    }
    if key == "max_total_stall_ms":
        ordered = sorted(counting, key=lambda o: -(o.total_ms or 0.0))
    elif key == "max_slow_callbacks":
        ordered = sorted(counting, key=lambda o: (-o.count, -(o.max_ms or 0.0)))
    else:
        ordered = _sort_worst(counting)
    worst = f" (worst: {ordered[0].describe()})" if ordered else ""
    site: Location | None = None
    if key == "max_handoff_p99_ms" and report is not None:
        worst = _worst_handoff(report)
        site = _site(_worst_handoff_row(report), "site")
    if key == "max_worker_stall_ms" and report is not None:
        worst = _worst_worker_stall(report)
        site = _site(_worst_worker_stall_row(report), "culprit")
    if key == "max_worker_lag_p99_ms" and report is not None:
        worst = _worst_worker_lag(report)
    if key == "max_affinity_violations" and report is not None:
        worst = _first_affinity_violation(report)
        rows = _affinity_rows(report)
        site = _site(rows[0] if rows else None, "site")
    return (Violation(key, f"{words[key]} exceeds {limit_text}{worst}", actual, limit,
                      tuple(ordered), site),)


def _site(row: Mapping[str, Any] | None, field: str) -> Location | None:
    return Location.from_frame(row.get(field)) if row is not None else None


def _allow_candidates(offender: Offender) -> list[tuple[str | None, str | None]]:
    pairs = [(offender.function, offender.file)]
    if offender.kind == "leaked_task":
        pairs.append((offender.label, offender.file))
        pairs.extend((loc.function, loc.file) for loc in offender.stack)
    return pairs


def evaluate(report: Mapping[str, Any], budget: Budget, *, baseline: Baseline | None = None,
             today: date | None = None) -> Evaluation:
    """Check ``report`` against ``budget``.

    An offender excused by a live allow-list entry, or present in ``baseline`` and
    not worse beyond its tolerance, does not count against any budget.  An offender
    matched only by an expired entry counts, and says so in its ``note``.
    """
    today = today or date.today()
    allowed: list[tuple[Offender, AllowEntry]] = []
    baselined: list[Offender] = []
    counting: list[Offender] = []
    used_baseline: set[int] = set()
    for offender in offenders(report):
        # Matched first, so that an entry whose offender is also allowed is not stale.
        index = None if baseline is None else next(
            (i for i, e in enumerate(baseline.entries) if e.matches(offender)), None)
        if index is not None:
            used_baseline.add(index)
        pairs = _allow_candidates(offender)
        matching = [e for e in budget.allow if any(e.matches(f, p) for f, p in pairs)]
        live = [e for e in matching if not e.expired(today)]
        if live:
            allowed.append((offender, live[0]))
            continue
        notes = [f"allow-list entry {e.describe()} ({e.where}) expired on {e.expires}"
                 for e in matching]
        if baseline is not None:
            if index is not None:
                why = baseline.entries[index].worse(offender, baseline.tolerance)
                if not why:
                    baselined.append(offender)
                    continue
                notes.append(f"worse than baseline: {why}")
            else:
                notes.append(f"new since the baseline {baseline.where}".rstrip())
        counting.append(dataclasses.replace(offender, note="; ".join(notes)))

    checks = []
    for spec in BUDGET_KEYS:
        key, limit = spec.name, budget.limits.get(spec.name)
        source = budget.sources.get(key, "default")
        kind = _KEY_KINDS.get(key)
        mine = [o for o in counting if o.kind == kind]
        excused = [o for o, _ in allowed if o.kind == kind] + \
            [o for o in baselined if o.kind == kind]
        if limit is None:
            checks.append(CheckResult(key, "unchecked", None, None, source))
            continue
        if not _measured(report, _MEASURED_BY[key]):
            if source == "default":
                checks.append(CheckResult(key, "unmeasured", limit, None, source))
                continue
            message = (f"{key} is set ({source}) but this report did not measure it "
                       f"(the {_MEASURED_BY[key]} detector was off)")
            checks.append(CheckResult(key, "fail", limit, None, source,
                                      (Violation(key, message, None, limit),)))
            continue
        actual = _actual(key, report, mine, excused)
        found = _violations(key, limit, actual, mine, report)
        checks.append(CheckResult(key, "fail" if found else "pass", limit, actual, source,
                                  found, len(excused)))
    stale = tuple(e for i, e in enumerate(baseline.entries) if i not in used_baseline) \
        if baseline is not None else ()
    expired = tuple(e for e in budget.allow if e.expired(today))
    return Evaluation(tuple(checks), tuple(allowed), tuple(baselined), expired, stale)
