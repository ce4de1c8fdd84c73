"""Build, write and summarise the JSON report (the contract in docs/report-schema.md)."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from looptools._culprits import (
    CulpritGroup,
    collector_words,
    culprit_groups,
    stall_groups,
    stall_label,
    stalls_watched,
)
from looptools._units import fmt_ms, fmt_pct

SCHEMA_VERSION = 1

#: The detectors ``meta.detectors`` may name: the list schema version 1 fixed (its
#: readers check the names against it).  A detector added since shows that it ran
#: by its own field instead (``worker_loops``); see docs/report-schema.md.
LISTED_DETECTORS = ("slow_callbacks", "stalls", "dispatcher", "lag", "tasks", "blocking",
                    "handoffs")


def empty_report() -> dict[str, Any]:
    from looptools._version import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "looptools", "version": __version__},
        "loop": {"kind": "none", "class": None, "variant": None, "callback_timing": False,
                 "qt_dispatcher": None, "attached_at_s": None},
        "meta": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "pid": os.getpid(),
            "argv": [str(arg) for arg in sys.argv],
            "cwd": os.getcwd(),
        },
        "stalls": [],
        "stall_summary": {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "dropped": 0},
        "slow_callbacks": [],
        "lag": None,
        "dispatcher": None,
        "tasks": None,
        "blocking_calls": [],
        "detector_errors": [],
        "profile": None,
    }


def write_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``report`` to ``path`` safely (``looptools._safewrite``: atomic for a file,
    written through for a device or FIFO, never replacing what is not a regular file)."""
    from looptools._safewrite import write_file

    return write_file(path, json.dumps(report, indent=1, default=str) + "\n")


def _short(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return relative if not relative.startswith("..") else path


def _where(frame: Mapping[str, Any] | None) -> str:
    if not frame:
        return "?"
    line = frame.get("line")
    return f"{frame.get('function')} ({_short(str(frame.get('file')))}:{line})"


def stall_line(stall: Mapping[str, Any]) -> str:
    """One stall on one line: duration, when, culprit, kind (the summary and the live
    progress of ``looptools profile --no-dashboard`` print the same)."""
    gil = ", GIL held" if stall.get("gil_held") else ""
    collector = collector_words([stall])
    collector = f", {collector}" if collector else ""
    return (f"stall {fmt_ms(float(stall.get('duration_ms') or 0)):>10} at "
            f"{float(stall.get('started_at_s') or 0):.2f} s in "
            f"{_where(stall.get('culprit')) if stall.get('culprit') else stall_label(stall)} "
            f"[{stall.get('source')}{gil}{collector}]")


def _and_more(lines: list[str], total: int, shown: int, what: str) -> None:
    """Say how many a list the summary cut short left out (the report has them all)."""
    if total > shown:
        lines.append(f"  ... and {total - shown} more {what} (in the report)")


def _group_line(group: CulpritGroup) -> str:
    stalls = group.stalls
    kinds = sorted({str(s.get("source")) for s in stalls})
    if any(s.get("gil_held") for s in stalls):
        kinds.append("GIL held")
    collector = collector_words(stalls)
    if collector:
        kinds.append(collector)
    # (No culprit: named as the report's views name it, e.g. "(Qt dispatch)".)
    first = stalls[0]
    where = _where(first.get("culprit")) if first.get("culprit") else stall_label(first)
    return (f"stalls x{group.count}, total {fmt_ms(group.total_ms or 0)}, worst "
            f"{fmt_ms(group.worst_ms or 0)}, first at {group.first_s or 0:.2f} s, in "
            f"{where} [{', '.join(kinds)}]")


def worker_stall_line(report: Mapping[str, Any]) -> str | None:
    """One line for the stalls of asyncio loops on worker threads, None when there were
    none: they are not the GUI's, so they never count in the headline."""
    workers = report.get("worker_loops")
    if not isinstance(workers, Mapping):
        return None
    summary = workers.get("stall_summary") or {}
    count = int(summary.get("count") or 0)
    if not count:
        return None
    stalls = [s for s in workers.get("stalls") or [] if isinstance(s, Mapping)]
    worst = max(stalls, key=lambda s: float(s.get("duration_ms") or 0), default=None)
    where = ""
    if worst is not None:
        what = _where(worst.get("culprit")) if worst.get("culprit") \
            else str(worst.get("callback") or "?")
        where = (f"; longest in {what}, thread {worst.get('thread')}, "
                 f"{worst.get('loop_kind')} loop")
    return (f"worker-thread loops: {count} stall{'s' if count != 1 else ''} (longest "
            f"{fmt_ms(float(summary.get('max_ms') or 0))}, total "
            f"{fmt_ms(float(summary.get('total_ms') or 0))}) in {workers.get('loops')} "
            f"loop{'s' if workers.get('loops') != 1 else ''}{where}")


def affinity_line(report: Mapping[str, Any]) -> str | None:
    """One line for thread-affinity violations (a Qt object or an asyncio loop touched
    from a thread that does not own it), None when there were none."""
    affinity = report.get("affinity")
    if not isinstance(affinity, Mapping):
        return None
    rows = [r for r in affinity.get("violations") or [] if isinstance(r, Mapping)]
    if not rows:
        return None
    calls = sum(int(r.get("count") or 0) for r in rows)
    first = rows[0]
    calling = first.get("calling_thread") or {}
    return (f"thread-affinity violations: {len(rows)} site{'s' if len(rows) != 1 else ''} "
            f"({calls} call{'s' if calls != 1 else ''}); first {first.get('call')} at "
            f"{_where(first.get('site'))} from thread {calling.get('name')}")


def summary_lines(report: dict[str, Any], report_path: str | None = None) -> list[str]:
    """A few lines for stderr at exit: top stalls with culprits, leaks, blocking calls."""
    meta = report["meta"]
    loop = report["loop"]
    stalls = report["stall_summary"]
    # (kind "none": the app ended before any event loop ran)
    ran = "no loop ran" if loop.get("kind") in (None, "none") else f"{loop['kind']} loop"
    lines = [
        f"looptools: {ran}, {meta.get('duration_s', 0):.1f} s, "
        f"threshold {meta.get('threshold_ms', 0):g} ms: "
        + (
            f"{stalls['count']} stall{'s' if stalls['count'] != 1 else ''} "
            f"(longest {fmt_ms(stalls['max_ms'])}, total {fmt_ms(stalls['total_ms'])})"
            if stalls["count"]
            else "no stalls" if stalls_watched(report) else "stall detection off"
        )
    ]
    rejected = meta.get("settings_rejected") or []
    if rejected:
        lines.append("  settings rejected (defaults used): " + ", ".join(
            f"{r.get('setting')}={r.get('value')!r}" for r in rejected))
    # The culprits the renderers lead with (looptools._culprits), those with stalls.
    groups = stall_groups(culprit_groups(report))
    for group in groups[:5]:
        lines.append("  " + (stall_line(group.stalls[0]) if group.count == 1
                             else _group_line(group)))
    _and_more(lines, len(groups), 5, "stall culprits")
    slow = report["slow_callbacks"]
    if slow:
        worst = slow[0]
        lines.append(
            f"  slow callbacks: {sum(row['count'] for row in slow)} "
            f"(most time: {worst['name']} x{worst['count']}, max {fmt_ms(worst['max_ms'])})"
        )
    extras = []
    if report["lag"]:
        extras.append(f"lag p99 {fmt_ms(report['lag']['p99_ms'])}")
    if report["dispatcher"]:
        extras.append(f"Qt busy {fmt_pct(report['dispatcher']['busy_fraction'])}")
    tasks = report["tasks"]
    if tasks:
        extras.append(f"tasks peak {tasks['peak_pending']}")
    if extras:
        lines.append("  " + ", ".join(extras))
    if tasks:
        for task in tasks["pending_at_exit"][:5]:
            # No creation site: made before looptools attached ("created at ?" read as
            # a fault of ours; helper 48, a task QtAsyncio.run was given).
            created = (f"created at {_where(task['created_at'])}" if task["created_at"]
                       else "created before monitoring began")
            lines.append(
                f"  task pending at exit: {task['name']} ({task['coro']}) "
                f"{created}, awaiting {_where(task['awaiting'])}"
            )
        _and_more(lines, len(tasks["pending_at_exit"]), 5, "tasks pending at exit")
        for lost in tasks["unretrieved_exceptions"][:3]:
            lines.append(f"  exception never retrieved: {lost['task']}: {lost['exception']}")
        _and_more(lines, len(tasks["unretrieved_exceptions"]), 3,
                  "exceptions never retrieved")
    for row in report["blocking_calls"][:5]:
        site = row["sites"][0] if row["sites"] else None
        timed = f" ({fmt_ms(row['total_ms'])})" if row.get("total_ms") is not None else ""
        lines.append(f"  blocking call {row['call']} x{row['count']}{timed}, first at "
                     f"{_where(site)}")
    _and_more(lines, len(report["blocking_calls"]), 5, "kinds of blocking call")
    threshold = float(meta.get("threshold_ms") or 0)
    late = [r for r in report.get("handoffs") or [] if r["max_ms"] >= threshold]
    for row in late[:3]:
        during = row.get("worst_during_stall_in")
        held = f", while {during['function']} held the loop" if during else ""
        lines.append(
            f"  hand-offs from {_where(row['site'])} (thread {row['thread']}) via "
            f"{row['via']} x{row['count']}: p99 {fmt_ms(row['p99_ms'])}, max "
            f"{fmt_ms(row['max_ms'])}{held}")
    _and_more(lines, len(late), 3, "hand-off sites that waited over the threshold")
    worker = worker_stall_line(report)
    if worker:
        lines.append("  " + worker)
    affinity = affinity_line(report)
    if affinity:
        lines.append("  " + affinity)
    for error in report["detector_errors"]:
        lines.append(f"  detector {error['detector']} was switched off: {error['error']}")
    if report_path:
        lines.append(f"  report: {_short(report_path)}")
    return lines
