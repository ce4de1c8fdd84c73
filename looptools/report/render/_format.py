"""Wording and number formatting shared by the renderers.

Figures come from the report model (``looptools.report.model``: culprits, the verdict,
totals, peaks, percentiles, what a sampler found); this module only words them, so that
every format says the same thing in the same words.  Durations, shares and counts are
written by ``looptools._units``, the one formatter every view (the exit summary and the
dashboard too) uses.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from looptools._culprits import CulpritGroup, collector_words
from looptools._culprits import stall_label as stall_label  # re-exported for the renderers
from looptools._units import fmt_ms as fmt_ms  # re-exported: the one duration formatter
from looptools._units import fmt_pct as fmt_pct
from looptools._units import fmt_s as fmt_s
from looptools._units import plural as _plural
from looptools.report.model import (
    AffinityFigures,
    BlockingFigures,
    DispatcherFigures,
    HandoffFigures,
    LagFigures,
    ReportModel,
    SamplerCulprit,
    SamplerFigures,
    SamplerFrame,
    StallFigures,
    TaskFigures,
    WorkerLoopFigures,
    model_of,
)
from looptools.report.model import Verdict as Verdict  # re-exported: it moved to the model
from looptools.report.render.base import Report

Frame = Mapping[str, Any]

# C0/C1 control characters (ESC, CSI, NUL...), which a hostile or odd function or
# file name could use to move the cursor or recolour a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def oneline(value: object) -> str:
    """*value* as text on one line, with control characters replaced by spaces."""
    return _CONTROL.sub(" ", str(value))


def counted(n: int, word: str) -> str:
    """``1 site``, ``2 sites``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def fmt_at(seconds: float) -> str:
    """A point in time in seconds since the monitor started, e.g. ``+3.210 s``."""
    return f"+{seconds:.3f} s"


def location(frame: Frame | None) -> str:
    """``file:line`` of a frame (``file`` alone when the line is unknown, ``?`` for no frame)."""
    if not frame:
        return "?"
    line = frame.get("line")
    file = str(frame.get("file") or "?")
    return file if line is None else f"{file}:{line}"


def frame_text(frame: Frame | None) -> str:
    """``function (file:line)`` for a frame, ``-`` for none."""
    if not frame:
        return "-"
    return f"{frame.get('function', '?')} ({location(frame)})"


def argv_text(report: Mapping[str, Any]) -> str:
    """The monitored command line, quoted the way a shell would need it."""
    argv = report["meta"].get("argv") or []
    return shlex.join(str(a) for a in argv) if argv else "(unknown command)"


def same_frame(frame: Frame | None, other: Frame | None) -> bool:
    """Whether two frames are the same function at the same file and line."""
    if not frame or not other:
        return False
    return location(frame) == location(other) and frame.get("function") == other.get("function")


def culprit_share(stall: Mapping[str, Any]) -> str | None:
    """``culprit in N of M samples`` when the culprit was voted on, else None."""
    samples = stall.get("samples") or 0
    if samples <= 1:
        return None
    return f"culprit in {stall.get('culprit_samples')} of {samples} samples"


# -- culprits (grouped by looptools._culprits, the model's ``culprits``) ----------------------


def culprit_where(group: CulpritGroup) -> str:
    """``file:line`` of a culprit, ``-`` when it has no frame (a stall in loop internals)."""
    return location(group.frame) if group.frame else "-"


def culprit_title(group: CulpritGroup) -> str:
    """``function (file:line)``, or just the name for a culprit without a frame."""
    return f"{group.function} ({culprit_where(group)})" if group.frame else group.function


def count_text(group: CulpritGroup) -> str:
    """``3 stalls``, ``412 slow callbacks``, ``1 blocking call``."""
    return _plural(group.count, group.unit)


def blocked_text(group: CulpritGroup) -> str:
    """The group's blocked time (``1.63 s``), ``not timed`` when the report has none."""
    return "not timed" if group.total_ms is None else fmt_ms(group.total_ms)


def culprit_cost(group: CulpritGroup) -> str:
    """``3 stalls, 1.63 s blocked``: what a culprit cost, the same words in every view."""
    if group.total_ms is None:
        return f"{count_text(group)}, not timed"
    return f"{count_text(group)}, {fmt_ms(group.total_ms)} blocked"


def worst_text(group: CulpritGroup) -> str:
    """The header line: ``worst: f (app.py:12), 3 stalls, 1.63 s blocked``."""
    return f"worst: {culprit_title(group)}, {culprit_cost(group)}"


def kinds_text(group: CulpritGroup) -> str:
    """``Qt slot, blocking call (time.sleep ×3)``: what the culprit was and who saw it."""
    parts = []
    for kind in group.kinds:
        detail: list[str] = []
        if kind == "blocking call":
            for call, site in group.blocking_calls:
                text = f"{call} ×{site.get('count') or 1}"
                if site.get("total_ms") is not None:
                    text += f", {fmt_ms(float(site['total_ms']))}"
                detail.append(text)
        elif kind == "slow callback" and group.stalls:
            detail = [f"{row.get('name')} ×{row.get('count')}" for row in group.slow_callbacks]
        parts.append(f"{kind} ({'; '.join(detail)})" if detail else kind)
    return ", ".join(parts)


def at_text(seconds: float | None) -> str:
    """:func:`fmt_at`, or ``-`` for no time."""
    return "-" if seconds is None else fmt_at(seconds)


def stall_times(stalls: Sequence[Mapping[str, Any]], limit: int = 6) -> str:
    """``810 ms at +5.951 s, 413 ms at +1.503 s, … 14 more``."""
    text = ", ".join(f"{fmt_ms(s['duration_ms'])} at {fmt_at(s['started_at_s'])}"
                     for s in stalls[:limit])
    return text + (f", … {len(stalls) - limit} more" if len(stalls) > limit else "")


def stall_head(group: CulpritGroup) -> str:
    """``f (app.py:12) ×3: longest 810 ms at +5.951 s [qt]`` (no ``×1: longest`` for one)."""
    stall = group.stalls[0]
    how = f"{fmt_ms(stall['duration_ms'])} at {fmt_at(stall['started_at_s'])} " \
          f"[{stall_sources(group)}]"
    many = f" ×{group.count}: longest " if group.count > 1 else ": "
    return culprit_title(group) + many + how


def dropped_note(stalls: StallFigures) -> str | None:
    """Why the groups hold fewer stalls than ``stall_summary`` counted, if they do."""
    if not stalls.dropped:
        return None
    return (f"{_plural(stalls.dropped, 'more stall')} counted but not kept in the report, "
            "so in no culprit")


def stalls_title(stalls: StallFigures) -> str:
    """``11 stalls, longest 810 ms, 2.92 s in total``."""
    return (f"{_plural(stalls.count, 'stall')}, longest {fmt_ms(stalls.max_ms)}, "
            f"{fmt_ms(stalls.total_ms)} in total")


def stall_sources(group: CulpritGroup) -> str:
    """``qt``, ``callback, GIL held``: how a group's stalls held the loop."""
    sources = sorted({str(s["source"]) for s in group.stalls})
    held = sum(1 for s in group.stalls if s.get("gil_held"))
    if held:
        sources.append("GIL held" if held == len(group.stalls) else f"GIL held ×{held}")
    collector = collector_words(group.stalls)
    if collector:
        sources.append(collector)
    return ", ".join(sources)


def slow_callbacks_by_total(report: Report) -> list[Mapping[str, Any]]:
    """Slow callbacks, most total time first (the model's ``slow_callbacks``; kept for the
    renderers that take the report dict)."""
    return list(model_of(report).slow_callbacks)


def loop_text(report: Mapping[str, Any]) -> str:
    """``qasync (qasync.QSelectorEventLoop, Qt dispatcher QEventDispatcherGlib)``."""
    loop = report["loop"]
    details = [str(loop["class"])] if loop.get("class") else []
    if loop.get("variant"):
        details.append(f"variant {loop['variant']}")
    if loop.get("qt_dispatcher"):
        details.append(f"Qt dispatcher {loop['qt_dispatcher']}")
    details.append("callback timing " + ("on" if loop.get("callback_timing") else "off"))
    return f"{loop['kind']} ({', '.join(details)})"


def exit_text(report: Mapping[str, Any]) -> str:
    """How the monitored process ended."""
    exit_ = report["meta"]["exit"]
    reason = str(exit_["reason"])
    if reason == "signal" and exit_.get("signal"):
        return f"signal {exit_['signal']}"
    if reason == "exception" and exit_.get("exception"):
        return f"exception: {exit_['exception']}"
    if reason == "exit" and exit_.get("code") is not None:
        return f"exit status {exit_['code']}"
    return reason


def verdict(report: Report) -> Verdict:
    """The model's verdict (kept for the renderers that take the report dict)."""
    return model_of(report).verdict


def percentile_row(lag: LagFigures) -> list[tuple[str, str]]:
    """``(label, value)`` pairs for the lag percentiles the report has."""
    return [(label, fmt_ms(ms)) for label, ms in lag.percentiles]


def probe_text(lag: LagFigures) -> str | None:
    """``every 10 ms``, ``about every 100 ms`` (plain asyncio), None when not known."""
    if lag.probe_ms is None:
        return None
    # A setting, printed as given like the threshold (fmt_ms is for what was measured).
    return f"{'about ' if lag.probe_about else ''}every {lag.probe_ms:g} ms"


def lag_title(lag: LagFigures) -> str:
    """``241 samples every 50 ms``: what the lag figures are made of."""
    probe = probe_text(lag)
    return f"{_plural(lag.samples, 'sample')}{f' {probe}' if probe else ''}"


def dispatcher_text(dispatcher: DispatcherFigures) -> str:
    """``busy 37.2% of the time; 812 iterations (65/s); longest busy 812 ms``."""
    its = f"{dispatcher.iterations} iterations"
    if dispatcher.iterations_per_s is not None:
        its += f" ({dispatcher.iterations_per_s:.0f}/s)"
    return "; ".join([f"busy {fmt_pct(dispatcher.busy_fraction)} of the time", its,
                      f"longest busy {fmt_ms(dispatcher.longest_busy_ms)}"])


def task_counts_text(tasks: TaskFigures) -> str:
    """``peak 14 pending; 230 created; 2 pending at the last audit``.

    (The audit runs once a second: its count includes the run's own main task while
    it runs, so it is not the tasks left pending at exit, which the Tasks section
    lists.  It said "as the report was written", and a fresh-eyes reader looked for
    the pending task in an empty list.)
    """
    parts = [f"peak {tasks.peak} pending"]
    if tasks.created is not None:
        parts.append(f"{tasks.created} created")
    if tasks.pending_now is not None:
        parts.append(f"{tasks.pending_now} pending at the last audit")
    return "; ".join(parts)


#: Detectors whose report sections came after ``meta.detectors`` was fixed (schema 1
#: lists only the first seven there): a section present means the detector ran.
_SECTION_DETECTORS = ("worker_loops", "affinity")


def detectors_text(report: Mapping[str, Any]) -> str:
    """The detectors that ran: ``meta.detectors`` and those known by their section."""
    names = list(report["meta"].get("detectors") or [])
    names += [name for name in _SECTION_DETECTORS
              if isinstance(report.get(name), Mapping) and name not in names]
    return ", ".join(names) or "none"


def blocking_title(count: int, total_ms: float | None) -> str:
    """``Blocking calls on the loop thread (9, 301 ms)``: how many, and their measured time."""
    timed = f", {fmt_ms(total_ms)}" if total_ms is not None else ""
    return f"Blocking calls on the loop thread ({count}{timed})"


def blocking_time_text(total_ms: float | None, max_ms: float | None) -> str:
    """``301 ms (max 150 ms)`` for a timed call or site, ``not timed`` otherwise."""
    if total_ms is None:
        return "not timed"
    return fmt_ms(total_ms) + (f" (max {fmt_ms(max_ms)})" if max_ms is not None else "")


def histogram_label(upper_ms: float) -> str:
    """Bucket label for a lag histogram bar: ``≤5 ms``."""
    return f"≤{upper_ms:g} ms"


def stack_lines(stack: Sequence[Frame]) -> list[str]:
    """Stack frames as ``file:line in function``, outermost first."""
    return [f"{location(f)} in {f.get('function', '?')}" for f in stack]


# -- asyncio loops on worker threads (``worker_loops``: never the headline) ------------------


def worker_loops_title(workers: WorkerLoopFigures) -> str:
    """``Asyncio loops on worker threads: 12 loops, 2 stalls (longest 250 ms)``."""
    stalls = (f"{_plural(workers.stall_count, 'stall')} (longest {fmt_ms(workers.stall_max_ms)})"
              if workers.stall_count else "no stalls")
    title = f"Asyncio loops on worker threads: {_plural(workers.loops, 'loop')}, {stalls}"
    if workers.dropped:
        title += f", {workers.dropped} not kept"
    return title


def worker_thread_cells(row: Mapping[str, Any]) -> list[str]:
    """One thread row: thread, loops, kinds, running time, stalls, longest, worst culprit."""
    stalls = row.get("stalls") or {}
    kinds = ", ".join(f"{kind} {n}" for kind, n in (row.get("kinds") or {}).items())
    worst = row.get("worst")
    return [str(row.get("thread")), str(row.get("loops")), kinds or "-", fmt_s(row.get("run_s")),
            str(stalls.get("count", 0)),
            fmt_ms(stalls.get("max_ms")) if stalls.get("count") else "-",
            worker_stall_where(worst) if worst else "-"]


def worker_thread_health(row: Mapping[str, Any]) -> str:
    """``lag p99 100 ms (max 100 ms); 2 tasks created, peak 1 pending, 1 leaked`` for one
    thread row; ``""`` when the report has neither (older reports) or no task was created."""
    parts = []
    lag = row.get("lag")
    if isinstance(lag, Mapping):
        parts.append(f"lag p99 {fmt_ms(lag.get('p99_ms'))} (max {fmt_ms(lag.get('max_ms'))})")
    tasks = row.get("tasks")
    if isinstance(tasks, Mapping) and (tasks.get("created") or tasks.get("leaked")):
        parts.append(f"{_plural(int(tasks.get('created') or 0), 'task')} created, "
                     f"peak {tasks.get('peak_pending', 0)} pending, "
                     f"{tasks.get('leaked', 0)} leaked")
    return "; ".join(parts)


def worker_totals_text(workers: WorkerLoopFigures) -> str:
    """``all together: lag p99 1.08 ms (max 100 ms); 2 tasks created, 1 leaked; 2 blocking
    calls (100 ms)``; ``""`` for a report from before these were measured."""
    parts = []
    if workers.lag:
        parts.append(f"lag p99 {fmt_ms(workers.lag.get('p99_ms'))} "
                     f"(max {fmt_ms(workers.lag.get('max_ms'))})")
    if workers.tasks and workers.tasks.get("created"):
        parts.append(f"{_plural(int(workers.tasks['created']), 'task')} created, "
                     f"{workers.tasks.get('leaked', 0)} leaked")
    if workers.blocking_summary and workers.blocking_summary.get("count"):
        parts.append(f"{_plural(int(workers.blocking_summary['count']), 'blocking call')} "
                     f"({fmt_ms(workers.blocking_summary.get('total_ms'))})")
    return f"all together: {'; '.join(parts)}" if parts else ""


def worker_blocking_lines(blocking: BlockingFigures) -> list[str]:
    """A thread's blocking calls, one line per site: ``time.sleep ×1, 100 ms (max 100 ms) at
    app.py:114 in problem_job``."""
    lines = []
    for call in blocking.calls:
        sites = call.sites or ({},)
        for site in sites:
            count = site.get("count", call.count) if site else call.count
            total = site.get("total_ms") if site else call.total_ms
            worst = site.get("max_ms") if site else call.max_ms
            where = f" at {location(site)} in {site.get('function', '?')}" if site else ""
            lines.append(f"{call.call} ×{count}, {blocking_time_text(total, worst)}{where}")
    return lines


def worker_leaked_text(task: Mapping[str, Any]) -> str:
    """``device-watch (watch_device) on job_0, cancelled; created at app.py:116 in
    problem_job``."""
    created = task.get("created_at")
    made = (f"; created at {location(created)} in {created.get('function', '?')}"
            if isinstance(created, Mapping) else "")
    return (f"{task.get('name')} ({task.get('coro')}) on {task.get('thread')}, "
            f"{task.get('state')}{made}")


def worker_stall_where(stall: Mapping[str, Any]) -> str:
    """Where a worker-loop stall was: its culprit, else the callback it was in."""
    culprit = stall.get("culprit")
    return frame_text(culprit) if culprit else str(stall.get("callback") or "?")


def worker_stall_text(stall: Mapping[str, Any]) -> str:
    """``250 ms at +0.45 s in Poller._poll (app.py:100), thread device-poller (ident 1403…),
    asyncio loop``."""
    return (f"{fmt_ms(stall.get('duration_ms'))} at {fmt_at(float(stall.get('started_at_s') or 0))}"
            f" in {worker_stall_where(stall)}, thread {stall.get('thread')} "
            f"(ident {stall.get('thread_ident')}), {stall.get('loop_kind')} loop")


def affinity_cells(affinity: AffinityFigures) -> list[list[str]]:
    """Thread-affinity violations, one row per call site: call, count, site, function,
    calling thread, owning thread, object (docs/threads.md#thread-affinity)."""
    rows = []
    for row in affinity.violations:
        site = row.get("site") if isinstance(row.get("site"), Mapping) else None
        calling = row.get("calling_thread") or {}
        owner = row.get("owner_thread") or {}
        obj = row.get("object") or {}
        what = obj.get("class") or ""
        if obj.get("object_name"):
            what += f" {obj['object_name']!r}"
        rows.append([str(row.get("call")), str(row.get("count")),
                     location(site) if site else "?",
                     str(site.get("function")) if site else "?",
                     str(calling.get("name") or "?"), str(owner.get("name") or "?"),
                     what or "-"])
    return rows


# -- work posted to the loop from other threads (``handoffs``, docs/threads.md) ---------------


def handoffs_title(handoffs: HandoffFigures) -> str:
    """``Hand-offs from other threads: 3 posting sites, 120 posted``."""
    return (f"Hand-offs from other threads: {_plural(len(handoffs.rows), 'posting site')}, "
            f"{handoffs.posted} posted")


def handoff_cells(row: Mapping[str, Any]) -> list[str]:
    """One posting site: via, thread, site (``file:line``), function, count, p50, p99, max."""
    site = row.get("site") if isinstance(row.get("site"), Mapping) else None
    return [str(row.get("via")), str(row.get("thread")), location(site),
            str(site.get("function", "?")) if site else "?", str(row.get("count")),
            fmt_ms(row.get("p50_ms")), fmt_ms(row.get("p99_ms")), fmt_ms(row.get("max_ms"))]


def handoff_held(row: Mapping[str, Any]) -> str | None:
    """The function that held the loop while this site's longest hand-off waited, if known."""
    during = row.get("worst_during_stall_in")
    return str(during.get("function", "?")) if isinstance(during, Mapping) else None


def handoff_held_text(row: Mapping[str, Any]) -> str | None:
    """``the longest waited while ChatWindow.on_send_clicked held the loop``, or None."""
    held = handoff_held(row)
    return None if held is None else f"the longest waited while {held} held the loop"


# -- what the verdict, about the main loop, does not cover ------------------------------------


def off_loop_text(model: ReportModel) -> str | None:
    """``2 stalls in worker-thread loops (longest 250 ms); thread-affinity violations at 3
    sites (7 calls)``: problems off the main loop, which never change its verdict."""
    parts = []
    workers = model.worker_loops
    if workers is not None and workers.stall_count:
        parts.append(f"{_plural(workers.stall_count, 'stall')} in worker-thread loops "
                     f"(longest {fmt_ms(workers.stall_max_ms)})")
    affinity = model.affinity
    if affinity:
        parts.append(f"thread-affinity violations at {_plural(len(affinity.violations), 'site')}"
                     f" ({_plural(affinity.calls, 'call')})")
    return "; ".join(parts) if parts else None


# -- what a sampler found (``profile``: looptools profile --sampler py-spy|yappi) -------------


def sampler_title(sampler: SamplerFigures) -> str:
    """``py-spy: 158 samples of the main thread at 100 Hz (1.58 s), idle included`` or
    ``yappi: wall clock, 2.03 s, 1057 functions``."""
    parts: list[str] = []
    if sampler.samples is not None:
        rate = f" at {sampler.rate_hz:g} Hz" if sampler.rate_hz else ""
        seconds = f" ({fmt_s(sampler.seconds)})" if sampler.seconds is not None else ""
        parts.append(f"{_plural(sampler.samples, 'sample')} of the main thread{rate}{seconds}")
        if sampler.idle_included:
            parts.append("idle included")
    else:
        if sampler.clock:
            parts.append(f"{sampler.clock} clock")
        if sampler.seconds is not None:
            parts.append(fmt_s(sampler.seconds))
        if sampler.functions is not None:
            parts.append(_plural(sampler.functions, "function"))
    return f"{sampler.sampler}: {', '.join(parts)}" if parts else sampler.sampler


def sampler_where(row: SamplerFrame) -> str:
    """``file:line`` of a sampler row (``file`` alone without a line)."""
    return row.file if row.line is None else f"{row.file}:{row.line}"


def sampler_amount(row: SamplerFrame | None) -> str:
    """``31 samples (310 ms, 19.6%)`` (py-spy) or ``313 ms, 2 calls`` (yappi); ``-`` for none."""
    if row is None:
        return "-"
    if row.samples is not None:
        share = f", {fmt_pct(row.fraction)}" if row.fraction is not None else ""
        return f"{_plural(row.samples, 'sample')} ({fmt_ms(row.ms)}{share})"
    calls = f", {_plural(row.calls, 'call')}" if row.calls is not None else ""
    return f"{fmt_ms(row.ms)}{calls}"


def sampler_culprit_text(found: SamplerCulprit) -> str:
    """What the sampler saw of one stall culprit: ``31 samples (310 ms) innermost, at line
    147; 40 samples (400 ms) on the stack``, or that it is not among the top frames."""
    parts = []
    if found.self_rows:
        lines = sorted({row.line for row in found.self_rows if row.line is not None})
        at = f", at {'line' if len(lines) == 1 else 'lines'} {', '.join(map(str, lines))}" \
            if lines and found.self_rows[0].samples is not None else ""
        if found.self_samples is not None:
            parts.append(f"{_plural(found.self_samples, 'sample')} ({fmt_ms(found.self_ms)}) "
                         f"innermost{at}")
        else:
            calls = sum(row.calls or 0 for row in found.self_rows)
            parts.append(f"{fmt_ms(found.self_ms)} self"
                         + (f" in {_plural(calls, 'call')}" if calls else ""))
    if found.on_stack is not None:
        row = found.on_stack
        amount = (f"{_plural(row.samples, 'sample')} ({fmt_ms(row.ms)})"
                  if row.samples is not None else fmt_ms(row.ms))
        parts.append(f"{amount} on the stack")
    return "; ".join(parts) if parts else "not among its top frames"
