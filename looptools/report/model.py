"""The report model: one typed reading of a report, every derived figure computed here once.

Every built-in view reads its figures from a :class:`ReportModel` — text, Markdown and HTML
(``looptools.report.render``), ``looptools report``, and the dashboard's final screen — so
that two views of one report cannot disagree: the stall count, the worst culprit and what it
cost, the lag percentiles and how often the loop was probed, the task peak, the Qt busy
share, the blocking-call totals, hand-offs, worker-thread loops, thread affinity and what a
sampler (py-spy, yappi) found.  Wording and number formatting stay with the views
(``looptools.report.render._format``, ``looptools._units``).

>>> model = model_of(load_report("run.json"))       # doctest: +SKIP
>>> model.worst.function, model.stalls.count, model.lag.p99_ms, model.tasks.peak  # +SKIP

:func:`model_of` builds the model once per report dict and keeps the last few, so several
views of one report (``looptools profile`` writes four) share one.  The report must already
be valid (``looptools.report.load.load_report`` validates it once; the model does not check
it again).  Change a report only before it is first rendered, or render a copy: a report
changed in place afterwards is noticed only when a top-level section (or one of its fields)
was replaced or a list changed length.

Standard library only, and nothing from the renderers (they import this module).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from looptools._culprits import CulpritGroup, culprit_groups, stall_groups, stalls_watched
from looptools._units import fmt_ms, plural

__all__ = [
    "ASYNCIO_PROBE_MS",
    "AffinityFigures",
    "BlockingCall",
    "BlockingFigures",
    "DispatcherFigures",
    "HandoffFigures",
    "LagFigures",
    "ReportModel",
    "SamplerCulprit",
    "SamplerFigures",
    "SamplerFrame",
    "StallFigures",
    "TaskFigures",
    "Verdict",
    "WorkerLoopFigures",
    "build_model",
    "model_of",
]

Frame = Mapping[str, Any]

#: How often plain asyncio (and a loop of unknown kind) is probed at most: its heartbeat is
#: a probe queued from another thread, at most ten a second whatever ``heartbeat_ms`` says
#: (``looptools.plugins.asyncio_loop.PROBE_INTERVAL_S``; tests/test_model.py pins the two).
ASYNCIO_PROBE_MS = 100.0
#: The loop kinds probed that way (uvloop's heartbeat is a timer on the loop, every
#: ``heartbeat_ms``; the Qt loops' a Qt timer).
PROBED_KINDS = ("asyncio", "unknown")

#: How the report's lag buckets grow (``looptools.inapp._stats.LogHistogram``: 5 %).
LAG_BUCKET_GROWTH = 1.05
#: Lag histogram slots at most (0.05 ms to four hours in 5 % steps).
MAX_LAG_SLOTS = 400


def _num(value: Any, default: float = 0.0) -> float:
    """*value* as a float (a report's numbers are valid, but optional ones may be null)."""
    return float(value) if isinstance(value, int | float) else default


def _opt(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _rows(value: Any) -> list[Mapping[str, Any]]:
    """The mappings of a list field (a missing or null list is empty)."""
    return [row for row in value if isinstance(row, Mapping)] \
        if isinstance(value, list | tuple) else []


def _pairs(value: Any) -> tuple[tuple[float, float], ...]:
    """``[[a, b], ...]`` as float pairs, in the order given."""
    out = []
    for pair in value if isinstance(value, list | tuple) else []:
        if isinstance(pair, list | tuple) and len(pair) == 2 \
                and all(isinstance(x, int | float) for x in pair):
            out.append((float(pair[0]), float(pair[1])))
    return tuple(out)


# -- the figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The one-line answer to "is this loop healthy?" (about the main loop only)."""

    level: str  # "ok", "warn" or "bad"
    text: str

    @property
    def label(self) -> str:
        """``OK``, ``WARN`` or ``STALLED``."""
        return {"ok": "OK", "warn": "WARN", "bad": "STALLED"}[self.level]


@dataclass(frozen=True)
class StallFigures:
    """The main loop's stalls, from ``stall_summary`` (which also counts those not kept)."""

    #: Every stall over the threshold, kept in ``stalls`` or not.
    count: int
    kept: int
    #: Counted but not kept (beyond ``max_stalls``): in no culprit.
    dropped: int
    total_ms: float
    max_ms: float
    threshold_ms: float
    #: The longest kept stall, None without any.
    longest: Mapping[str, Any] | None


@dataclass(frozen=True)
class LagFigures:
    """Loop lag: percentiles, how often it was measured, the histogram and the series."""

    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float | None
    #: How often the loop was probed, as a view may print it (None when the report does not
    #: say), and whether that is approximate: plain asyncio is probed about every
    #: :data:`ASYNCIO_PROBE_MS` (at most ten times a second, on the watchdog's ticks),
    #: however short ``heartbeat_ms`` is.
    probe_ms: float | None
    probe_about: bool
    #: ``(lower, upper, count)`` of each histogram bucket to draw, smallest first: on
    #: looptools' 5 % grid every bucket between the smallest and the largest, the empty ones
    #: too; off it (a hand-made report) its own buckets, each as wide as the narrowest step.
    slots: tuple[tuple[float, float, float], ...]
    #: ``(t_s, ms)``: the largest lag of each window of ``over_time_step_s``, in time order.
    over_time: tuple[tuple[float, float], ...]
    over_time_step_s: float | None

    @property
    def percentiles(self) -> list[tuple[str, float]]:
        """``(label, ms)`` of p50, p90, p99, max and (when the report has it) mean."""
        row = [("p50", self.p50_ms), ("p90", self.p90_ms), ("p99", self.p99_ms),
               ("max", self.max_ms)]
        if self.mean_ms is not None:
            row.append(("mean", self.mean_ms))
        return row

    @property
    def over_time_peak(self) -> float:
        """The largest value of the series (0 without one)."""
        return max((ms for _, ms in self.over_time), default=0.0)


@dataclass(frozen=True)
class DispatcherFigures:
    """How busy the Qt dispatcher was."""

    name: str
    busy_fraction: float
    iterations: int
    iterations_per_s: float | None
    longest_busy_ms: float
    #: ``(started_at_s, duration_ms)`` of the longest busy windows, in time order.
    busy_windows: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class TaskFigures:
    """The task audit."""

    #: The most tasks pending at once: ``peak_pending``, which the detector counts at every
    #: task creation.  ``over_time`` is sampled at the audits (about once a second), so its
    #: largest value may be lower and is never the peak (the timeline and the Tasks section
    #: both print this one).
    peak: int
    created: int | None
    pending_now: int | None
    over_time: tuple[tuple[float, float], ...]
    long_pending: tuple[Mapping[str, Any], ...]
    long_pending_after_s: float | None
    #: Tasks still pending at exit.
    leaked: tuple[Mapping[str, Any], ...]
    unretrieved: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class BlockingCall:
    """One kind of blocking call (``time.sleep``) and the sites that made it."""

    call: str
    count: int
    #: Measured time of all its calls (None when the report did not time them).
    total_ms: float | None
    max_ms: float | None
    #: Its sites (report frames with ``count``, ``total_ms``...), most calls first.
    sites: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class BlockingFigures:
    """Blocking calls seen on the loop thread, most calls first."""

    calls: tuple[BlockingCall, ...]
    #: All kinds together.
    count: int
    #: Their measured time together (None when none was timed).
    total_ms: float | None

    def __bool__(self) -> bool:
        return bool(self.calls)


@dataclass(frozen=True)
class HandoffFigures:
    """Work posted to the loop from other threads, one row per posting site, worst p99 first
    (``()`` when the detector was off, the loop could not be wrapped or nothing was posted)."""

    rows: tuple[Mapping[str, Any], ...]
    posted: int

    def __bool__(self) -> bool:
        return bool(self.rows)


@dataclass(frozen=True)
class WorkerLoopFigures:
    """Asyncio loops on worker threads (never the main loop's verdict)."""

    section: Mapping[str, Any]
    loops: int
    stall_count: int
    stall_max_ms: float
    stall_total_ms: float
    dropped: int
    threads: tuple[Mapping[str, Any], ...]
    #: Their kept stalls, longest first.
    stalls: tuple[Mapping[str, Any], ...]
    #: Every worker loop's callbacks together, ``{samples, p50_ms, p99_ms, max_ms}``; None in
    #: reports from before it was measured, or when no timed loop ran a callback.
    lag: Mapping[str, Any] | None = None
    #: ``{created, peak_pending, leaked}`` over all worker loops; None in older reports.
    tasks: Mapping[str, Any] | None = None
    #: The leaked tasks (``tasks.pending_at_close``), in the report's order.
    leaked: tuple[Mapping[str, Any], ...] = ()
    #: ``{count, total_ms, max_ms}`` of their blocking calls; None in older reports.
    blocking_summary: Mapping[str, Any] | None = None
    #: Per row of ``threads`` (same order): its blocking calls, most first (empty in older
    #: reports).
    thread_blocking: tuple[BlockingFigures, ...] = ()


@dataclass(frozen=True)
class AffinityFigures:
    """Thread-affinity violations, one row per call site."""

    violations: tuple[Mapping[str, Any], ...]
    #: Calls at all sites together.
    calls: int
    #: Call sites not kept (beyond the detector's cap).
    dropped: int = 0

    def __bool__(self) -> bool:
        return bool(self.violations)


@dataclass(frozen=True)
class SamplerFrame:
    """One row of a sampler's top list."""

    function: str
    file: str
    line: int | None
    #: The time this row stands for: py-spy's samples over its rate, yappi's self time (in
    #: a top-self list) or total time (in a top-total list).
    ms: float | None
    #: py-spy: samples, and their share of the main thread's samples.
    samples: int | None
    fraction: float | None
    #: yappi: calls.
    calls: int | None


@dataclass(frozen=True)
class SamplerCulprit:
    """A stall culprit as the sampler saw it: its time in the culprit's function.

    Neither py-spy's speedscope output nor yappi's statistics keep a time per sample, so
    which samples fell *during* a stall cannot be told; the time the sampler put in the
    culprit's function (at any line, any time) is what can be set next to the stalls' own.
    """

    group: CulpritGroup
    #: Top-self rows in the culprit's function and file (any line), most time first.
    self_rows: tuple[SamplerFrame, ...]
    #: The function's top-total row (time with it anywhere on the stack), if listed.
    on_stack: SamplerFrame | None

    @property
    def self_ms(self) -> float | None:
        """The sampler's self time in the culprit's function (None when not in its list)."""
        times = [row.ms for row in self.self_rows if row.ms is not None]
        return sum(times) if times else None

    @property
    def self_samples(self) -> int | None:
        """py-spy: samples with the culprit's function innermost."""
        counts = [row.samples for row in self.self_rows if row.samples is not None]
        return sum(counts) if counts else None


@dataclass(frozen=True)
class SamplerFigures:
    """What ``looptools profile --sampler py-spy|yappi`` found (``report["profile"]``)."""

    sampler: str
    #: The main thread's samples (py-spy) and how fast they were taken.
    samples: int | None
    rate_hz: float | None
    seconds: float | None
    idle_included: bool
    #: yappi: its clock and the functions it saw.
    clock: str | None
    functions: int | None
    #: Where the time went: the innermost frame (py-spy, by line) or self time (yappi).
    top_self: tuple[SamplerFrame, ...]
    #: Functions by time anywhere on the stack.
    top_total: tuple[SamplerFrame, ...]
    #: Each stall culprit (most blocked first) with what the sampler saw of it.
    at_culprits: tuple[SamplerCulprit, ...]
    files: Mapping[str, Any]


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportModel:
    """A validated report with its derived figures (see the module's docstring)."""

    #: The report as loaded (the JSON contract, docs/report-schema.md).
    report: Mapping[str, Any]
    loop_kind: str
    threshold_ms: float
    duration_s: float
    #: Stalls, slow callbacks and blocking calls grouped by culprit, most blocked first
    #: (``looptools._culprits``).
    culprits: tuple[CulpritGroup, ...]
    stalls: StallFigures
    #: Slow-callback rows, most total time first.
    slow_callbacks: tuple[Mapping[str, Any], ...]
    lag: LagFigures | None
    dispatcher: DispatcherFigures | None
    tasks: TaskFigures | None
    blocking: BlockingFigures
    handoffs: HandoffFigures
    worker_loops: WorkerLoopFigures | None
    affinity: AffinityFigures
    sampler: SamplerFigures | None
    detector_errors: tuple[Mapping[str, Any], ...]
    verdict: Verdict

    @property
    def worst(self) -> CulpritGroup | None:
        """The culprit that cost the most blocked time, None when nothing was attributed."""
        return self.culprits[0] if self.culprits else None

    @property
    def stall_culprits(self) -> list[tuple[int, CulpritGroup]]:
        """``(rank, group)`` of the culprits with stalls, ranked as in :attr:`culprits`."""
        return [(rank, group) for rank, group in enumerate(self.culprits, 1) if group.stalls]


def build_model(report: Mapping[str, Any]) -> ReportModel:
    """The model of *report* (already valid), built afresh; :func:`model_of` caches it."""
    meta = report.get("meta") or {}
    threshold = _num(meta.get("threshold_ms"))
    loop = report.get("loop") or {}
    culprits = tuple(culprit_groups(report))
    stalls = _stall_figures(report, threshold)
    tasks = _task_figures(report.get("tasks"))
    blocking = _blocking_figures(report.get("blocking_calls"))
    worker_loops = _worker_loop_figures(report.get("worker_loops"))
    affinity = _affinity_figures(report.get("affinity"))
    errors = tuple(_rows(report.get("detector_errors")))
    return ReportModel(
        report=report,
        loop_kind=str(loop.get("kind") or "none"),
        threshold_ms=threshold,
        duration_s=_num(meta.get("duration_s")),
        culprits=culprits,
        stalls=stalls,
        slow_callbacks=tuple(sorted(_rows(report.get("slow_callbacks")),
                                    key=lambda row: -_num(row.get("total_ms")))),
        lag=_lag_figures(report.get("lag"), str(loop.get("kind") or "none")),
        dispatcher=_dispatcher_figures(report.get("dispatcher"), loop),
        tasks=tasks,
        blocking=blocking,
        handoffs=_handoff_figures(report.get("handoffs")),
        worker_loops=worker_loops,
        affinity=affinity,
        sampler=_sampler_figures(report.get("profile"), culprits),
        detector_errors=errors,
        verdict=_verdict(stalls, tasks, blocking, len(errors), stalls_watched(report)),
    )


def _stall_figures(report: Mapping[str, Any], threshold: float) -> StallFigures:
    summary = report.get("stall_summary") or {}
    kept = _rows(report.get("stalls"))
    return StallFigures(
        count=int(_num(summary.get("count"), len(kept))),
        kept=len(kept),
        dropped=int(_num(summary.get("dropped"))),
        total_ms=_num(summary.get("total_ms")),
        max_ms=_num(summary.get("max_ms")),
        threshold_ms=threshold,
        longest=max(kept, key=lambda s: _num(s.get("duration_ms")), default=None),
    )


def _lag_figures(lag: Any, loop_kind: str) -> LagFigures | None:
    if not isinstance(lag, Mapping):
        return None
    interval = _opt(lag.get("interval_ms"))
    about = loop_kind in PROBED_KINDS
    probe = max(interval or 0.0, ASYNCIO_PROBE_MS) if about else interval
    step = _opt(lag.get("over_time_step_s"))
    return LagFigures(
        samples=int(_num(lag.get("samples"))),
        p50_ms=_num(lag.get("p50_ms")), p90_ms=_num(lag.get("p90_ms")),
        p99_ms=_num(lag.get("p99_ms")), max_ms=_num(lag.get("max_ms")),
        mean_ms=_opt(lag.get("mean_ms")),
        probe_ms=probe, probe_about=about,
        slots=tuple(lag_slots(_pairs(lag.get("histogram")))),
        over_time=tuple(sorted((t, max(0.0, ms)) for t, ms in _pairs(lag.get("over_time")))),
        over_time_step_s=step,
    )


def lag_slots(buckets: Sequence[tuple[float, float]]) -> list[tuple[float, float, float]]:
    """``(lower, upper, count)`` of each lag bucket to draw, smallest first.

    On looptools' 5 % grid every bucket between the smallest and the largest is a slot, the
    empty ones too.  A histogram off that grid (made by hand, or by another version) keeps
    only its buckets, each as wide as the narrowest step between two of them: on a log axis
    an empty stretch is still a gap.
    """
    merged: dict[float, float] = {}
    for upper, count in buckets:
        if upper >= 1e-6 and math.isfinite(upper) and count >= 0:
            merged[upper] = merged.get(upper, 0.0) + count
    valid = sorted(merged.items())
    if not valid:
        return []
    growth = LAG_BUCKET_GROWTH
    base = valid[0][0]
    steps = [math.log(upper / base, growth) for upper, _ in valid]
    if all(abs(k - round(k)) < 0.1 for k in steps) and steps[-1] < MAX_LAG_SLOTS:
        counts = {round(k): c for k, (_, c) in zip(steps, valid, strict=True)}
        uppers = {round(k): u for k, (u, _) in zip(steps, valid, strict=True)}
        return [(uppers.get(i, base * growth**i) / growth, uppers.get(i, base * growth**i),
                 counts.get(i, 0.0)) for i in range(round(steps[-1]) + 1)]
    ratios = [b / a for (a, _), (b, _) in itertools.pairwise(valid)]
    width = max(1.0001, min(ratios, default=2.0))
    return [(upper / width, upper, count) for upper, count in valid]


def _dispatcher_figures(dispatcher: Any, loop: Mapping[str, Any]) -> DispatcherFigures | None:
    if not isinstance(dispatcher, Mapping):
        return None
    return DispatcherFigures(
        name=str(dispatcher.get("name") or loop.get("qt_dispatcher") or "Qt dispatcher"),
        busy_fraction=_num(dispatcher.get("busy_fraction")),
        iterations=int(_num(dispatcher.get("iterations"))),
        iterations_per_s=_opt(dispatcher.get("iterations_per_s")),
        longest_busy_ms=_num(dispatcher.get("longest_busy_ms")),
        busy_windows=tuple(sorted(_pairs(dispatcher.get("busy_windows")))),
    )


def _task_figures(tasks: Any) -> TaskFigures | None:
    if not isinstance(tasks, Mapping):
        return None
    over_time = tuple(sorted(_pairs(tasks.get("pending_over_time"))))
    # The sampled series can only be lower; max() keeps a hand-made report honest too.
    peak = max([int(_num(tasks.get("peak_pending")))] + [int(n) for _, n in over_time])
    created, now = _opt(tasks.get("created")), _opt(tasks.get("pending_now"))
    return TaskFigures(
        peak=peak,
        created=None if created is None else int(created),
        pending_now=None if now is None else int(now),
        over_time=over_time,
        long_pending=tuple(_rows(tasks.get("long_pending"))),
        long_pending_after_s=_opt(tasks.get("long_pending_after_s")),
        leaked=tuple(_rows(tasks.get("pending_at_exit"))),
        unretrieved=tuple(_rows(tasks.get("unretrieved_exceptions"))),
    )


def _blocking_figures(rows: Any) -> BlockingFigures:
    calls = []
    for row in _rows(rows):
        sites = tuple(sorted(_rows(row.get("sites")), key=lambda s: -_num(s.get("count"))))
        timed = [s for s in sites if isinstance(s.get("total_ms"), int | float)]
        total = _opt(row.get("total_ms"))
        worst = _opt(row.get("max_ms"))
        if total is None and timed:
            total = sum(_num(s.get("total_ms")) for s in timed)
            worst = max(_num(s.get("max_ms")) for s in timed)
        calls.append(BlockingCall(call=str(row.get("call")), count=int(_num(row.get("count"))),
                                  total_ms=total, max_ms=worst, sites=sites))
    calls.sort(key=lambda c: -c.count)
    times = [c.total_ms for c in calls if c.total_ms is not None]
    return BlockingFigures(calls=tuple(calls), count=sum(c.count for c in calls),
                           total_ms=sum(times) if times else None)


def _handoff_figures(rows: Any) -> HandoffFigures:
    ranked = sorted(_rows(rows), key=lambda r: (-_num(r.get("p99_ms")), -_num(r.get("max_ms"))))
    return HandoffFigures(rows=tuple(ranked),
                          posted=sum(int(_num(r.get("count"))) for r in ranked))


def _worker_loop_figures(section: Any) -> WorkerLoopFigures | None:
    if not isinstance(section, Mapping) or not section.get("loops"):
        return None
    summary = section.get("stall_summary") or {}
    return WorkerLoopFigures(
        section=section,
        loops=int(_num(section.get("loops"))),
        stall_count=int(_num(summary.get("count"))),
        stall_max_ms=_num(summary.get("max_ms")),
        stall_total_ms=_num(summary.get("total_ms")),
        dropped=int(_num(summary.get("dropped"))),
        threads=tuple(_rows(section.get("threads"))),
        stalls=tuple(sorted(_rows(section.get("stalls")),
                            key=lambda s: -_num(s.get("duration_ms")))),
        lag=_mapping(section.get("lag")),
        tasks=_mapping(section.get("tasks")),
        leaked=tuple(_rows((_mapping(section.get("tasks")) or {}).get("pending_at_close"))),
        blocking_summary=_mapping(section.get("blocking_summary")),
        thread_blocking=tuple(_blocking_figures(row.get("blocking_calls"))
                              for row in _rows(section.get("threads"))),
    )


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _affinity_figures(section: Any) -> AffinityFigures:
    rows = tuple(_rows(section.get("violations"))) if isinstance(section, Mapping) else ()
    dropped = section.get("dropped") if isinstance(section, Mapping) else None
    return AffinityFigures(violations=rows, calls=sum(int(_num(r.get("count"))) for r in rows),
                           dropped=dropped if isinstance(dropped, int) and dropped > 0 else 0)


# -- what a sampler found ---------------------------------------------------------------------


def _sampler_rows(rows: Any, sampler: str, rate: float | None, key: str) -> tuple[SamplerFrame,
                                                                                    ...]:
    out = []
    for row in _rows(rows):
        samples = row.get("samples")
        samples = int(samples) if isinstance(samples, int | float) else None
        if sampler == "py-spy" and samples is not None and rate:
            ms: float | None = samples * 1000.0 / rate
        else:
            ms = _opt(row.get(key))
        line = row.get("line")
        calls = row.get("calls")
        out.append(SamplerFrame(
            function=str(row.get("function", "?")), file=str(row.get("file") or "?"),
            line=line if isinstance(line, int) else None, ms=ms, samples=samples,
            fraction=_opt(row.get("fraction")),
            calls=int(calls) if isinstance(calls, int | float) else None))
    return tuple(out)


def _same_file(mine: str | None, theirs: str) -> bool:
    """Whether two spellings of a file name the same file (one may be relative)."""
    if not mine:
        return False
    a, b = mine.replace("\\", "/"), theirs.replace("\\", "/")
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)


def _sampler_figures(profile: Any, culprits: Sequence[CulpritGroup]) -> SamplerFigures | None:
    if not isinstance(profile, Mapping) or not profile.get("sampler"):
        return None
    sampler = str(profile.get("sampler"))
    rate = _opt(profile.get("rate_hz"))
    top_self = _sampler_rows(profile.get("top_self"), sampler, rate, "self_ms")
    top_total = _sampler_rows(profile.get("top_total"), sampler, rate, "total_ms")
    at_culprits = []
    for group in stall_groups(culprits):
        if group.file is None:
            continue

        def here(row: SamplerFrame, group: CulpritGroup = group) -> bool:
            return row.function == group.function and _same_file(group.file, row.file)

        at_culprits.append(SamplerCulprit(
            group=group,
            self_rows=tuple(sorted((r for r in top_self if here(r)), key=lambda r: -(r.ms or 0))),
            on_stack=next((r for r in top_total if here(r)), None)))
    samples, functions = profile.get("samples"), profile.get("functions")
    files = profile.get("files")
    return SamplerFigures(
        sampler=sampler,
        samples=int(samples) if isinstance(samples, int | float) else None,
        rate_hz=rate, seconds=_opt(profile.get("seconds")),
        idle_included=bool(profile.get("idle_included")),
        clock=str(profile["clock"]) if profile.get("clock") else None,
        functions=int(functions) if isinstance(functions, int | float) else None,
        top_self=top_self, top_total=top_total, at_culprits=tuple(at_culprits),
        files=files if isinstance(files, Mapping) else {},
    )


# -- the verdict ------------------------------------------------------------------------------


def _verdict(stalls: StallFigures, tasks: TaskFigures | None, blocking: BlockingFigures,
             errors: int, watched: bool = True) -> Verdict:
    """Stalls make a report ``bad``; leaks, lost exceptions, blocking, detector errors ``warn``.
    Without the watchdog (``watched`` false) no stall was looked for, and it says so."""
    threshold = f"{stalls.threshold_ms:g} ms"
    problems: list[str] = []
    level = "ok"
    if stalls.count:
        level = "bad"
        problems.append(f"{plural(stalls.count, 'stall')} over {threshold} (longest "
                        f"{fmt_ms(stalls.max_ms)}, {fmt_ms(stalls.total_ms)} in total)")
    warnings: list[str] = []
    if tasks is not None and tasks.leaked:
        warnings.append(f"{plural(len(tasks.leaked), 'task')} pending at exit")
    if tasks is not None and tasks.unretrieved:
        warnings.append(f"{plural(len(tasks.unretrieved), 'task exception')} never retrieved")
    if blocking.count:
        warnings.append(f"{plural(blocking.count, 'blocking call')} on the loop thread")
    if errors:
        warnings.append(plural(errors, "detector error"))
    if warnings and level == "ok":
        level = "warn"
    problems.extend(warnings)
    if not watched:
        problems.insert(0, "stall detection off")
        if not warnings:
            problems.append("nothing leaked")
    if not problems:
        return Verdict("ok", f"no stalls over {threshold} and nothing leaked")
    return Verdict(level, "; ".join(problems))


# -- one model per report ---------------------------------------------------------------------

#: Models kept: enough for every view of one run (``looptools profile`` writes up to four
#: outputs of one report, and its dashboard shows the same report at the end).
CACHE_SIZE = 4
_cache: list[tuple[Mapping[str, Any], tuple[Any, ...], ReportModel]] = []
_cache_lock = threading.Lock()


def _fingerprint(report: Mapping[str, Any]) -> tuple[Any, ...]:
    """What tells a report changed in place since its model was built: the identity of each
    section and of each section's fields, and the length of every list among them."""
    out: list[Any] = []
    for key, value in report.items():
        out.append((key, id(value), len(value) if isinstance(value, list) else None))
        if isinstance(value, Mapping):
            out.extend((key, sub, id(item), len(item) if isinstance(item, list) else None)
                       for sub, item in value.items())
    return tuple(out)


def model_of(report: Mapping[str, Any]) -> ReportModel:
    """The model of *report* (already valid): built on first use, then kept for the same
    dict, so every view of one report reads one model.

    The cache holds the report itself, so its identity cannot be taken by another dict
    while the entry lives.
    """
    print_ = _fingerprint(report)
    with _cache_lock:
        for n, (seen, fingerprint, model) in enumerate(_cache):
            if seen is report and fingerprint == print_:
                _cache.append(_cache.pop(n))
                return model
    model = build_model(report)
    with _cache_lock:
        _cache[:] = [entry for entry in _cache if entry[0] is not report]
        _cache.append((report, print_, model))
        del _cache[:-CACHE_SIZE]
    return model
