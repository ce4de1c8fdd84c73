"""Build, write and summarise the JSON report (the contract in docs/report-schema.md)."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from looptools._culprits import CulpritGroup, culprit_groups, stall_groups

SCHEMA_VERSION = 1


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
    return (f"stall {float(stall.get('duration_ms') or 0):7.0f} ms at "
            f"{float(stall.get('started_at_s') or 0):.2f} s in "
            f"{_where(stall.get('culprit'))} [{stall.get('source')}{gil}]")


def _group_line(group: CulpritGroup) -> str:
    stalls = group.stalls
    kinds = sorted({str(s.get("source")) for s in stalls})
    if any(s.get("gil_held") for s in stalls):
        kinds.append("GIL held")
    return (f"stalls x{group.count}, total {group.total_ms or 0:.0f} ms, worst "
            f"{group.worst_ms or 0:.0f} ms, first at {group.first_s or 0:.2f} s, in "
            f"{_where(stalls[0].get('culprit'))} [{', '.join(kinds)}]")


def summary_lines(report: dict[str, Any], report_path: str | None = None) -> list[str]:
    """A few lines for stderr at exit: top stalls with culprits, leaks, blocking calls."""
    meta = report["meta"]
    loop = report["loop"]
    stalls = report["stall_summary"]
    lines = [
        f"looptools: {loop['kind']} loop, {meta.get('duration_s', 0):.1f} s, "
        f"threshold {meta.get('threshold_ms', 0):g} ms: "
        + (
            f"{stalls['count']} stall{'s' if stalls['count'] != 1 else ''} "
            f"(longest {stalls['max_ms']:.0f} ms, total {stalls['total_ms']:.0f} ms)"
            if stalls["count"]
            else "no stalls"
        )
    ]
    rejected = meta.get("settings_rejected") or []
    if rejected:
        lines.append("  settings rejected (defaults used): " + ", ".join(
            f"{r.get('setting')}={r.get('value')!r}" for r in rejected))
    # The culprits the renderers lead with (looptools._culprits), those with stalls.
    for group in stall_groups(culprit_groups(report))[:5]:
        lines.append("  " + (stall_line(group.stalls[0]) if group.count == 1
                             else _group_line(group)))
    slow = report["slow_callbacks"]
    if slow:
        worst = slow[0]
        lines.append(
            f"  slow callbacks: {sum(row['count'] for row in slow)} "
            f"(most time: {worst['name']} x{worst['count']}, max {worst['max_ms']:.0f} ms)"
        )
    extras = []
    if report["lag"]:
        extras.append(f"lag p99 {report['lag']['p99_ms']:.1f} ms")
    if report["dispatcher"]:
        extras.append(f"Qt busy {100 * report['dispatcher']['busy_fraction']:.0f}%")
    tasks = report["tasks"]
    if tasks:
        extras.append(f"tasks peak {tasks['peak_pending']}")
    if extras:
        lines.append("  " + ", ".join(extras))
    if tasks:
        for task in tasks["pending_at_exit"][:5]:
            lines.append(
                f"  task pending at exit: {task['name']} ({task['coro']}) "
                f"created at {_where(task['created_at'])}, awaiting {_where(task['awaiting'])}"
            )
        for lost in tasks["unretrieved_exceptions"][:3]:
            lines.append(f"  exception never retrieved: {lost['task']}: {lost['exception']}")
    for row in report["blocking_calls"][:5]:
        site = row["sites"][0] if row["sites"] else None
        lines.append(f"  blocking call {row['call']} x{row['count']}, first at {_where(site)}")
    threshold = float(meta.get("threshold_ms") or 0)
    for row in [r for r in report.get("handoffs") or [] if r["max_ms"] >= threshold][:3]:
        during = row.get("worst_during_stall_in")
        held = f", while {during['function']} held the loop" if during else ""
        lines.append(
            f"  hand-offs from {_where(row['site'])} (thread {row['thread']}) via "
            f"{row['via']} x{row['count']}: p99 {row['p99_ms']:.0f} ms, max "
            f"{row['max_ms']:.0f} ms{held}")
    for error in report["detector_errors"]:
        lines.append(f"  detector {error['detector']} was switched off: {error['error']}")
    if report_path:
        lines.append(f"  report: {_short(report_path)}")
    return lines
