"""Chrome trace-event JSON, for Perfetto (ui.perfetto.dev) and chrome://tracing.

Format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
Timestamps are microseconds since the monitor started (``meta.started_at``).
Each kind of record gets its own named track (a pid/tid pair named with ``M``
metadata events), so Perfetto shows them as separate rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from looptools.render import _format as f
from looptools.render.base import Renderer, Report

Event = dict[str, Any]

# One process for what happened on the loop thread over time; one for the
# per-callback aggregates, which have no times of their own.
_PID_LOOP = 1
_PID_CALLBACKS = 2
_TID_STALLS = 1
_TID_QT_BUSY = 2
_TID_MARKS = 3
_TID_FIRST_TASK = 100
#: Tasks beyond this many get no track of their own (each task is one row).
MAX_TASK_TRACKS = 64


def _us(seconds: float) -> float:
    return round(max(0.0, seconds) * 1_000_000, 3)


def _metadata(pid: int, tid: int, kind: str, **args: Any) -> Event:
    return {"ph": "M", "name": kind, "pid": pid, "tid": tid, "ts": 0, "args": args}


class TraceRenderer(Renderer):
    """Stalls, Qt busy windows, task lifetimes and slow callbacks on named tracks."""

    name = "trace"
    aliases = ("perfetto", "chrome")
    extensions = (".trace.json", ".perfetto.json", ".trace")
    description = "Chrome trace-event JSON for Perfetto / chrome://tracing"

    def render(self, report: Report) -> str:
        """``{"traceEvents": [...], "displayTimeUnit": "ms"}`` as compact JSON."""
        doc = {
            "traceEvents": self.events(report),
            "displayTimeUnit": "ms",
            "otherData": {
                "tool": f"looptools {report['tool']['version']}",
                "argv": f.argv_text(report),
                "started_at": report["meta"]["started_at"],
                "loop": f.loop_text(report),
                "threshold_ms": report["meta"]["threshold_ms"],
            },
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"

    def events(self, report: Report) -> list[Event]:
        """All trace events: metadata first, then records in time order per track."""
        meta = report["meta"]
        events: list[Event] = [
            _metadata(_PID_LOOP, 0, "process_name",
                      name=f"event loop (pid {meta['pid']}): {f.argv_text(report)}"),
            _metadata(_PID_LOOP, 0, "process_sort_index", sort_index=0),
            _metadata(_PID_LOOP, _TID_STALLS, "thread_name", name="stalls"),
            _metadata(_PID_LOOP, _TID_STALLS, "thread_sort_index", sort_index=0),
            _metadata(_PID_LOOP, _TID_MARKS, "thread_name", name="run"),
            _metadata(_PID_LOOP, _TID_MARKS, "thread_sort_index", sort_index=-1),
        ]
        events += self._marks(report)
        events += self._stalls(report)
        events += self._qt_busy(report)
        events += self._tasks(report)
        events += self._slow_callbacks(report)
        return events

    def _marks(self, report: Report) -> list[Event]:
        meta = report["meta"]
        end = _us(meta["duration_s"])
        marks: list[Event] = [{
            "ph": "X", "name": "monitored", "cat": "run", "pid": _PID_LOOP, "tid": _TID_MARKS,
            "ts": 0, "dur": end,
            "args": {"loop": f.loop_text(report), "threshold_ms": meta["threshold_ms"],
                     "verdict": f.verdict(report).text},
        }]
        attached = report["loop"].get("attached_at_s")
        if attached is not None:
            marks.append({"ph": "i", "s": "t", "name": "loop attached", "cat": "run",
                          "pid": _PID_LOOP, "tid": _TID_MARKS, "ts": _us(attached)})
        marks.append({"ph": "i", "s": "t", "name": f"exit: {f.exit_text(report)}", "cat": "run",
                      "pid": _PID_LOOP, "tid": _TID_MARKS, "ts": end})
        for error in report.get("detector_errors") or []:
            marks.append({"ph": "i", "s": "t", "name": f"detector error: {error['detector']}",
                          "cat": "error", "pid": _PID_LOOP, "tid": _TID_MARKS, "ts": end,
                          "args": dict(error)})
        return marks

    def _stalls(self, report: Report) -> list[Event]:
        events: list[Event] = []
        stalls = sorted(report.get("stalls") or [], key=lambda s: float(s["started_at_s"]))
        for stall in stalls:
            args: dict[str, Any] = {
                "culprit": f.location(stall.get("culprit")) if stall.get("culprit") else None,
                "function": stall["culprit"]["function"] if stall.get("culprit") else None,
                "duration_ms": stall["duration_ms"],
                "source": stall["source"],
                "callback": stall.get("callback"),
                "task": stall.get("task"),
                "gil_held": stall.get("gil_held"),
                "detected_after_ms": stall.get("detected_after_ms"),
                "stack": f.stack_lines(stall.get("stack") or []),
            }
            events.append({
                "ph": "X",
                "name": f"stall {f.fmt_ms(stall['duration_ms'])}: {f.stall_label(stall)}",
                "cat": "stall", "pid": _PID_LOOP, "tid": _TID_STALLS,
                "ts": _us(stall["started_at_s"]),
                "dur": round(max(0.0, float(stall["duration_ms"])) * 1000, 3),
                "args": args,
            })
        return events

    def _qt_busy(self, report: Report) -> list[Event]:
        dispatcher = report.get("dispatcher")
        if not dispatcher:
            return []
        name = dispatcher.get("name") or report["loop"].get("qt_dispatcher") or "Qt dispatcher"
        events: list[Event] = [
            _metadata(_PID_LOOP, _TID_QT_BUSY, "thread_name", name=f"Qt busy ({name})"),
            _metadata(_PID_LOOP, _TID_QT_BUSY, "thread_sort_index", sort_index=1),
        ]
        for started_at_s, duration_ms in sorted(dispatcher.get("busy_windows") or []):
            events.append({
                "ph": "X", "name": f"busy {f.fmt_ms(duration_ms)}", "cat": "qt",
                "pid": _PID_LOOP, "tid": _TID_QT_BUSY, "ts": _us(started_at_s),
                "dur": round(max(0.0, float(duration_ms)) * 1000, 3),
                "args": {"duration_ms": duration_ms, "busy_fraction": dispatcher["busy_fraction"]},
            })
        return events

    def _tasks(self, report: Report) -> list[Event]:
        tasks = report.get("tasks")
        if not tasks:
            return []
        end_s = float(report["meta"]["duration_s"])
        events: list[Event] = []
        pending = tasks.get("pending_over_time") or []
        for t_s, count in pending:
            events.append({"ph": "C", "name": "pending tasks", "cat": "tasks", "pid": _PID_LOOP,
                           "tid": 0, "ts": _us(t_s), "args": {"pending": count}})
        # A task can be both long pending and still pending at exit: one track each.
        seen: dict[tuple[str, str], list[str]] = {}
        records: list[tuple[Mapping[str, Any], str]] = []
        for key in ("pending_at_exit", "long_pending"):
            for task in tasks.get(key) or []:
                ident = (str(task["name"]), str(task["coro"]))
                if ident in seen:
                    seen[ident].append(key)
                    continue
                seen[ident] = [key]
                records.append((task, key))
        for n, (task, _) in enumerate(records[:MAX_TASK_TRACKS]):
            tid = _TID_FIRST_TASK + n
            lists = seen[(str(task["name"]), str(task["coro"]))]
            events.append(_metadata(_PID_LOOP, tid, "thread_name", name=f"task {task['name']}"))
            events.append(_metadata(_PID_LOOP, tid, "thread_sort_index", sort_index=10 + n))
            args = {
                "coro": task["coro"], "age_s": task.get("age_s"), "state": task.get("state"),
                "created_at": f.frame_text(task.get("created_at")),
                "awaiting": f.frame_text(task.get("awaiting")),
                "pending_at_exit": "pending_at_exit" in lists,
                "long_pending": "long_pending" in lists,
            }
            age = task.get("age_s")
            label = "leaked" if "pending_at_exit" in lists else "long pending"
            if age is None:
                events.append({"ph": "i", "s": "t", "name": f"{label}: {task['coro']}",
                               "cat": "task", "pid": _PID_LOOP, "tid": tid, "ts": _us(end_s),
                               "args": args})
                continue
            # Ages are measured at the end of the run; a task older than the run
            # started before monitoring did, so its bar starts at 0.
            start_s = max(0.0, end_s - float(age))
            events.append({"ph": "X", "name": f"{label}: {task['coro']}", "cat": "task",
                           "pid": _PID_LOOP, "tid": tid, "ts": _us(start_s),
                           "dur": round((end_s - start_s) * 1_000_000, 3), "args": args})
        return events

    def _slow_callbacks(self, report: Report) -> list[Event]:
        callbacks = f.slow_callbacks_by_total(report)
        if not callbacks:
            return []
        # The report keeps per-callback aggregates, not when each run happened, so
        # these bars are laid end to end: their lengths are the total time spent.
        events: list[Event] = [
            _metadata(_PID_CALLBACKS, 0, "process_name",
                      name="slow callbacks: total time each (not a timeline)"),
            _metadata(_PID_CALLBACKS, 0, "process_sort_index", sort_index=1),
            _metadata(_PID_CALLBACKS, 1, "thread_name", name="by total time"),
        ]
        at_us = 0.0
        for cb in callbacks:
            dur = round(max(0.0, float(cb["total_ms"])) * 1000, 3)
            events.append({
                "ph": "X", "name": f"{cb['name']} ×{cb['count']}", "cat": "slow_callback",
                "pid": _PID_CALLBACKS, "tid": 1, "ts": at_us, "dur": dur,
                "args": {k: cb.get(k) for k in ("name", "kind", "location", "count", "total_ms",
                                                 "max_ms", "p50_ms", "p99_ms")},
            })
            at_us = round(at_us + dur, 3)
        return events
