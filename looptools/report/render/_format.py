"""Wording and number formatting shared by the renderers.

Everything here works on the plain report dict (the JSON contract), so that
every format says the same thing in the same words.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from looptools._culprits import CulpritGroup, culprit_groups
from looptools._culprits import stall_label as stall_label  # re-exported for the renderers
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


def fmt_ms(ms: float | None) -> str:
    """Milliseconds in the unit a reader expects: ``0.42 ms``, ``812 ms``, ``1.81 s``."""
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def fmt_s(seconds: float | None) -> str:
    """A duration or an age given in seconds (``3.21 s``, ``4 min 12 s``)."""
    if seconds is None:
        return "-"
    if seconds >= 120:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes:.0f} min {rest:.0f} s"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.2f} s"


def fmt_at(seconds: float) -> str:
    """A point in time in seconds since the monitor started, e.g. ``+3.210 s``."""
    return f"+{seconds:.3f} s"


def fmt_pct(fraction: float) -> str:
    """A fraction in 0..1 as a percentage."""
    return f"{fraction * 100:.1f}%"


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


def argv_text(report: Report) -> str:
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


# -- culprits (grouped by looptools._culprits, the one definition every view uses) ----------


def culprits(report: Report) -> list[CulpritGroup]:
    """The report's culprit groups, most blocked time first."""
    return culprit_groups(report)


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


def dropped_note(report: Report) -> str | None:
    """Why the groups hold fewer stalls than ``stall_summary`` counted, if they do."""
    dropped = int(report["stall_summary"].get("dropped") or 0)
    if not dropped:
        return None
    return (f"{_plural(dropped, 'more stall')} counted but not kept in the report, "
            "so in no culprit")


def stall_sources(group: CulpritGroup) -> str:
    """``qt``, ``callback, GIL held``: how a group's stalls held the loop."""
    sources = sorted({str(s["source"]) for s in group.stalls})
    held = sum(1 for s in group.stalls if s.get("gil_held"))
    if held:
        sources.append("GIL held" if held == len(group.stalls) else f"GIL held ×{held}")
    return ", ".join(sources)


def slow_callbacks_by_total(report: Report) -> list[Mapping[str, Any]]:
    """Slow callbacks, most total time first."""
    return sorted(report.get("slow_callbacks") or [], key=lambda c: -float(c["total_ms"]))


def loop_text(report: Report) -> str:
    """``qasync (qasync.QSelectorEventLoop, Qt dispatcher QEventDispatcherGlib)``."""
    loop = report["loop"]
    details = [str(loop["class"])] if loop.get("class") else []
    if loop.get("variant"):
        details.append(f"variant {loop['variant']}")
    if loop.get("qt_dispatcher"):
        details.append(f"Qt dispatcher {loop['qt_dispatcher']}")
    details.append("callback timing " + ("on" if loop.get("callback_timing") else "off"))
    return f"{loop['kind']} ({', '.join(details)})"


def exit_text(report: Report) -> str:
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


def tasks_leaked(report: Report) -> list[Mapping[str, Any]]:
    """Tasks still pending when the process exited."""
    tasks = report.get("tasks")
    return list(tasks.get("pending_at_exit") or []) if tasks else []


def blocking_total(report: Report) -> int:
    """How many blocking calls were seen on the loop thread, all kinds together."""
    return sum(int(b.get("count", 0)) for b in report.get("blocking_calls") or [])


@dataclass(frozen=True)
class Verdict:
    """The one-line answer to "is this loop healthy?"."""

    level: str  # "ok", "warn" or "bad"
    text: str

    @property
    def label(self) -> str:
        """``OK``, ``WARN`` or ``STALLED``."""
        return {"ok": "OK", "warn": "WARN", "bad": "STALLED"}[self.level]


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def verdict(report: Report) -> Verdict:
    """Stalls make a report ``bad``; leaks, lost exceptions, blocking, detector errors ``warn``."""
    meta = report["meta"]
    summary = report["stall_summary"]
    problems: list[str] = []
    level = "ok"
    count = int(summary["count"])
    if count:
        level = "bad"
        problems.append(
            f"{_plural(count, 'stall')} over {meta['threshold_ms']:g} ms "
            f"(longest {fmt_ms(summary['max_ms'])}, {fmt_ms(summary['total_ms'])} in total)"
        )
    warnings: list[str] = []
    leaked = len(tasks_leaked(report))
    if leaked:
        warnings.append(f"{_plural(leaked, 'task')} pending at exit")
    tasks = report.get("tasks") or {}
    lost = len(tasks.get("unretrieved_exceptions") or [])
    if lost:
        warnings.append(f"{_plural(lost, 'task exception')} never retrieved")
    blocking = blocking_total(report)
    if blocking:
        warnings.append(f"{_plural(blocking, 'blocking call')} on the loop thread")
    errors = len(report.get("detector_errors") or [])
    if errors:
        warnings.append(f"{_plural(errors, 'detector error')}")
    if warnings and level == "ok":
        level = "warn"
    problems.extend(warnings)
    if not problems:
        return Verdict("ok", f"no stalls over {meta['threshold_ms']:g} ms and nothing leaked")
    return Verdict(level, "; ".join(problems))


def percentile_row(lag: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` pairs for the lag percentiles present in *lag*."""
    row = [(k, fmt_ms(lag[f"{k}_ms"])) for k in ("p50", "p90", "p99", "max")]
    if lag.get("mean_ms") is not None:
        row.append(("mean", fmt_ms(lag["mean_ms"])))
    return row


def dispatcher_text(dispatcher: Mapping[str, Any]) -> str:
    """``busy 37.2% of the time; 812 iterations (65/s); longest busy 812 ms``."""
    parts = [f"busy {fmt_pct(dispatcher['busy_fraction'])} of the time"]
    its = f"{dispatcher['iterations']} iterations"
    if dispatcher.get("iterations_per_s") is not None:
        its += f" ({dispatcher['iterations_per_s']:.0f}/s)"
    parts.append(its)
    parts.append(f"longest busy {fmt_ms(dispatcher['longest_busy_ms'])}")
    return "; ".join(parts)


def task_counts_text(tasks: Mapping[str, Any]) -> str:
    """``peak 14 pending; 230 created; 2 pending now``."""
    parts = [f"peak {tasks['peak_pending']} pending"]
    if tasks.get("created") is not None:
        parts.append(f"{tasks['created']} created")
    if tasks.get("pending_now") is not None:
        parts.append(f"{tasks['pending_now']} pending now")
    return "; ".join(parts)


def histogram_label(upper_ms: float) -> str:
    """Bucket label for a lag histogram bar: ``≤5 ms``."""
    return f"≤{upper_ms:g} ms"


def stack_lines(stack: Sequence[Frame]) -> list[str]:
    """Stack frames as ``file:line in function``, outermost first."""
    return [f"{location(f)} in {f.get('function', '?')}" for f in stack]


# -- asyncio loops on worker threads (``worker_loops``: never the headline) ------------------


def worker_loops(report: Report) -> Mapping[str, Any] | None:
    """The report's ``worker_loops`` section when any worker loop ran, else None."""
    section = report.get("worker_loops")
    if not isinstance(section, Mapping) or not section.get("loops"):
        return None
    return section


def worker_loops_title(section: Mapping[str, Any]) -> str:
    """``Asyncio loops on worker threads: 12 loops, 2 stalls (longest 250 ms)``."""
    loops = int(section.get("loops") or 0)
    summary = section.get("stall_summary") or {}
    count = int(summary.get("count") or 0)
    stalls = (f"{_plural(count, 'stall')} (longest {fmt_ms(summary.get('max_ms'))})"
              if count else "no stalls")
    title = f"Asyncio loops on worker threads: {_plural(loops, 'loop')}, {stalls}"
    if summary.get("dropped"):
        title += f", {summary['dropped']} not kept"
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


def worker_stall_where(stall: Mapping[str, Any]) -> str:
    """Where a worker-loop stall was: its culprit, else the callback it was in."""
    culprit = stall.get("culprit")
    return frame_text(culprit) if culprit else str(stall.get("callback") or "?")


def worker_stalls_longest(section: Mapping[str, Any], limit: int) -> list[Mapping[str, Any]]:
    """The ``limit`` longest worker-loop stalls, longest first."""
    stalls = [s for s in section.get("stalls") or [] if isinstance(s, Mapping)]
    return sorted(stalls, key=lambda s: -float(s.get("duration_ms") or 0))[:limit]


def worker_stall_text(stall: Mapping[str, Any]) -> str:
    """``250 ms at +0.45 s in Poller._poll (app.py:100), thread device-poller (ident 1403…),
    asyncio loop``."""
    return (f"{fmt_ms(stall.get('duration_ms'))} at {fmt_at(float(stall.get('started_at_s') or 0))}"
            f" in {worker_stall_where(stall)}, thread {stall.get('thread')} "
            f"(ident {stall.get('thread_ident')}), {stall.get('loop_kind')} loop")


def affinity_cells(report: Report) -> list[list[str]]:
    """Thread-affinity violations, one row per call site: call, count, site, function,
    calling thread, owning thread, object (docs/threads.md#thread-affinity)."""
    section = report.get("affinity")
    if not isinstance(section, Mapping):
        return []
    rows = []
    for row in section.get("violations") or []:
        if not isinstance(row, Mapping):
            continue
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


def handoffs(report: Report) -> list[Mapping[str, Any]]:
    """The report's hand-off rows (one per posting site), worst p99 first; ``[]`` when the
    detector was off, the loop could not be wrapped (``null``) or nothing was posted."""
    rows = [r for r in report.get("handoffs") or [] if isinstance(r, Mapping)]
    return sorted(rows, key=lambda r: (-float(r.get("p99_ms") or 0),
                                       -float(r.get("max_ms") or 0)))


def handoffs_title(rows: Sequence[Mapping[str, Any]]) -> str:
    """``Hand-offs from other threads: 3 posting sites, 120 posted``."""
    posted = sum(int(r.get("count") or 0) for r in rows)
    return (f"Hand-offs from other threads: {_plural(len(rows), 'posting site')}, "
            f"{posted} posted")


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


def off_loop_text(report: Report) -> str | None:
    """``2 stalls in worker-thread loops (longest 250 ms); thread-affinity violations at 3
    sites (7 calls)``: problems off the main loop, which never change its verdict."""
    parts = []
    section = worker_loops(report)
    summary = (section or {}).get("stall_summary") or {}
    count = int(summary.get("count") or 0)
    if count:
        parts.append(f"{_plural(count, 'stall')} in worker-thread loops "
                     f"(longest {fmt_ms(summary.get('max_ms'))})")
    affinity = report.get("affinity")
    rows = [r for r in (affinity.get("violations") or [] if isinstance(affinity, Mapping) else [])
            if isinstance(r, Mapping)]
    if rows:
        calls = sum(int(r.get("count") or 0) for r in rows)
        parts.append(f"thread-affinity violations at {_plural(len(rows), 'site')} "
                     f"({_plural(calls, 'call')})")
    return "; ".join(parts) if parts else None
