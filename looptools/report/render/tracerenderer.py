"""Chrome trace-event JSON, for Perfetto (ui.perfetto.dev) and chrome://tracing.

Format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
Timestamps are microseconds since the monitor started (``meta.started_at``).
Each kind of record gets its own named track (a pid/tid pair named with ``M``
metadata events), so Perfetto shows them as separate rows: stalls with their stacks
nested under them (cleaned as the flame graph cleans them: no frame of looptools'
own), the loop thread with its slow callbacks (complete events at their times) and
blocking calls (instants), the hand-offs from other threads (per posting site, and on
the stall their longest wait fell in), Qt busy windows, one track per task, the lag
and pending-task counters (``C`` events), and one track per worker thread whose
asyncio loop stalled, with those stalls and their stacks.

Figures come from the report model (``looptools.report.model``): the verdict, task peak,
lag and pending-task series, slow callbacks, blocking calls, hand-offs, Qt busy and the
worker threads' rows; stall stacks are cleaned by ``looptools.report.render.flame``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from looptools.report.model import TaskFigures, model_of
from looptools.report.render import _format as f
from looptools.report.render.base import Renderer, Report
from looptools.report.render.flame import StallStack, stall_stacks, worker_threads

Event = dict[str, Any]

# One process, the monitored event loop; one track (a "thread") per kind of record,
# and one per task.
_PID_LOOP = 1
_TID_STALLS = 1
_TID_QT_BUSY = 2
_TID_MARKS = 3
_TID_LOOP = 4
_TID_HANDOFFS = 5
_TID_FIRST_TASK = 100
#: Tasks beyond this many get no track of their own (each task is one row).
MAX_TASK_TRACKS = 64
#: Worker threads (whose asyncio loops stalled) each get a track, after the tasks'.
_TID_FIRST_WORKER = 1000
_SORT_FIRST_WORKER = 10 + MAX_TASK_TRACKS
MAX_WORKER_TRACKS = 64


def _us(seconds: float) -> float:
    return round(max(0.0, seconds) * 1_000_000, 3)


def _dur_us(ms: float) -> float:
    return round(max(0.0, float(ms)) * 1000, 3)


def _metadata(pid: int, tid: int, kind: str, **args: Any) -> Event:
    # "cat" as Chrome writes it: some readers of the format expect one on every event.
    return {"ph": "M", "name": kind, "cat": "__metadata", "pid": pid, "tid": tid, "ts": 0,
            "args": args}


def _track(tid: int, name: str, sort_index: int) -> list[Event]:
    return [_metadata(_PID_LOOP, tid, "thread_name", name=name),
            _metadata(_PID_LOOP, tid, "thread_sort_index", sort_index=sort_index)]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# Python's numbered default thread names, folded into one row of ``worker_loops.threads``
# as the detector folds them (``Thread-12 (run)`` -> ``Thread-* (run)``).
_NUMBERED = re.compile(r"^(Thread|Dummy)-\d+")


def _row_key(name: str) -> str:
    return _NUMBERED.sub(lambda m: f"{m.group(1)}-*", name, count=1)


def _stall_slices(stacks: Sequence[StallStack], tid: int,
                  extra: Mapping[str, Any] | None = None) -> list[Event]:
    """Each stall on track *tid*, and under it its stack as nested slices (outermost
    first), cleaned as the flame graph cleans it (no frame of looptools' own).

    A frame's slice is 1 µs shorter at each end than its parent's, so that every
    viewer nests it the same way (two slices with equal bounds may be drawn either
    way round)."""
    events: list[Event] = []
    end_of_last = 0.0
    for stack in sorted(stacks, key=lambda s: float(s.stall["started_at_s"])):
        stall = stack.stall
        culprit = stall.get("culprit")
        frames = [{"function": function, "file": file, "line": line}
                  for function, file, line in stack.frames]
        ts = max(_us(stall["started_at_s"]), end_of_last)
        dur = max(0.0, round(_us(stall["started_at_s"]) + _dur_us(stall["duration_ms"])
                             - ts, 3))
        end_of_last = ts + dur
        args: dict[str, Any] = {
            "culprit": f.location(culprit) if culprit else None,
            "function": culprit["function"] if culprit else None,
            "duration_ms": stall["duration_ms"],
            "source": stall.get("source"),
            "callback": stall.get("callback"),
            "task": stall.get("task"),
            "gil_held": stall.get("gil_held"),
            "detected_after_ms": stall.get("detected_after_ms"),
            "stack_source": stall.get("stack_source"),
            "stack": f.stack_lines(frames),
            **(extra or {}),
        }
        events.append({
            "ph": "X",
            "name": f"stall {f.fmt_ms(stall['duration_ms'])}: {f.stall_label(stall)}",
            "cat": "stall", "pid": _PID_LOOP, "tid": tid, "ts": ts, "dur": dur,
            "args": args,
        })
        innermost = _culprit_depth(frames, culprit)
        for depth, frame in enumerate(frames, 1):
            if dur - 2 * depth <= 0:
                break
            events.append({
                "ph": "X", "name": str(frame["function"]), "cat": "stack",
                "pid": _PID_LOOP, "tid": tid, "ts": round(ts + depth, 3),
                "dur": round(dur - 2 * depth, 3),
                "args": {"location": f.location(frame), "depth": depth,
                         "culprit": depth == innermost},
            })
    return events


def _culprit_depth(frames: Sequence[Mapping[str, Any]], culprit: Any) -> int | None:
    """The depth (1 = outermost) of the innermost frame that is the stall's culprit.  A
    frame of a stack dumped by faulthandler has been given its qualified name
    (``Runner.run``) where the culprit may keep faulthandler's (``run``)."""
    if not isinstance(culprit, Mapping):
        return None
    short = str(culprit.get("function")).rpartition(".")[2]
    for depth in range(len(frames), 0, -1):
        frame = frames[depth - 1]
        if f.location(frame) == f.location(culprit) and \
                str(frame["function"]).rpartition(".")[2] == short:
            return depth
    return None


class TraceRenderer(Renderer):
    """Stalls with their stacks, slow callbacks and blocking calls on the loop thread,
    hand-offs, Qt busy windows, one track per task, lag and pending-task counters, and a
    track per stalled worker thread."""

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
            *_track(_TID_MARKS, "run", -1),
            *_track(_TID_STALLS, "stalls", 0),
            *_track(_TID_LOOP, "loop thread: slow callbacks, blocking calls", 1),
        ]
        events += self._marks(report)
        events += self._stalls(report)
        events += self._handoffs(report)
        events += self._slow_callbacks(report)
        events += self._blocking_calls(report)
        events += self._qt_busy(report)
        events += self._lag(report)
        events += self._tasks(report)
        events += self._workers(report)
        return events

    def _marks(self, report: Report) -> list[Event]:
        meta = report["meta"]
        model = model_of(report)
        end = _us(meta["duration_s"])
        marks: list[Event] = [{
            "ph": "X", "name": "monitored", "cat": "run", "pid": _PID_LOOP, "tid": _TID_MARKS,
            "ts": 0, "dur": end,
            "args": {"loop": f.loop_text(report), "threshold_ms": meta["threshold_ms"],
                     "verdict": model.verdict.text,
                     "task_peak": model.tasks.peak if model.tasks is not None else None},
        }]
        attached = report["loop"].get("attached_at_s")
        if attached is not None:
            marks.append({"ph": "i", "s": "t", "name": "loop attached", "cat": "run",
                          "pid": _PID_LOOP, "tid": _TID_MARKS, "ts": _us(attached)})
        marks.append({"ph": "i", "s": "t", "name": f"exit: {f.exit_text(report)}", "cat": "run",
                      "pid": _PID_LOOP, "tid": _TID_MARKS, "ts": end})
        for error in model.detector_errors:
            marks.append({"ph": "i", "s": "t", "name": f"detector error: {error['detector']}",
                          "cat": "error", "pid": _PID_LOOP, "tid": _TID_MARKS, "ts": end,
                          "args": dict(error)})
        return marks

    def _stalls(self, report: Report) -> list[Event]:
        """The main loop's stalls, each with its stack nested under it."""
        return _stall_slices(stall_stacks(report), _TID_STALLS)

    def _workers(self, report: Report) -> list[Event]:
        """A track per worker thread whose asyncio loop stalled, named by its thread name
        and ident, with its kept stalls at their times and their stacks under them."""
        workers = model_of(report).worker_loops
        rows = {str(row.get("thread")): row for row in
                (workers.threads if workers is not None else ())}
        events: list[Event] = []
        for n, thread in enumerate(worker_threads(report)[:MAX_WORKER_TRACKS]):
            tid = _TID_FIRST_WORKER + n
            kinds = ", ".join(thread.loop_kinds)
            events += _track(tid, f"worker thread {thread.label}: stalls of its {kinds} loop",
                             _SORT_FIRST_WORKER + n)
            row = rows.get(thread.name) or rows.get(_row_key(thread.name))
            extra: dict[str, Any] = {"thread": thread.name, "thread_ident": thread.ident,
                                     "loop_kind": kinds}
            if row is not None:  # the summary of every loop that ran under this name
                extra["thread_row"] = {key: row.get(key)
                                       for key in ("thread", "loops", "run_s", "stalls")}
            events += _stall_slices(list(thread.stacks), tid, extra)
        return events

    def _handoffs(self, report: Report) -> list[Event]:
        """The ``handoffs`` section holds one aggregate per posting site (count, p50, p99,
        max) and the culprit of the stall its longest wait fell in; no hand-off's own time.
        So: each site as an instant at the end of the run on a track of its own (its
        figures in the args, "times not recorded"), and, where a site is linked to a
        stall, an instant on that stall at its end, when the waiting work could run:
        "hand-offs from audio waited up to 290 ms".  A stall qualifies when its culprit is
        the linked one and it lasted at least half that wait (the detector links a wait to
        the stall that held the loop through at least half of it); when several do, each
        gets the instant and says it is one of them."""
        rows = model_of(report).handoffs.rows
        if not rows:
            return []
        end = _us(report["meta"]["duration_s"])
        stalls = [s for s in report.get("stalls") or [] if isinstance(s, Mapping)]
        events: list[Event] = _track(_TID_HANDOFFS, "hand-offs to the loop from other threads "
                                     "(per posting site; times not recorded)", 3)
        linked: list[Event] = []
        for row in sorted(rows, key=lambda r: -_number(r.get("max_ms"))):
            site = row.get("site") if isinstance(row.get("site"), Mapping) else None
            where = f.frame_text(site) if site else "an unknown site"
            args = {key: row.get(key) for key in ("via", "thread", "count", "p50_ms",
                                                  "p99_ms", "max_ms")}
            args["site"] = f.location(site) if site else None
            during = row.get("worst_during_stall_in")
            args["longest_wait_during_stall_in"] = (f.frame_text(during)
                                                    if isinstance(during, Mapping) else None)
            events.append({
                "ph": "i", "s": "t", "cat": "handoff", "pid": _PID_LOOP,
                "tid": _TID_HANDOFFS, "ts": end,
                "name": f"{row.get('via')} from thread {row.get('thread')} at {where}: "
                        f"{row.get('count')}, p99 {f.fmt_ms(row.get('p99_ms'))}, "
                        f"max {f.fmt_ms(row.get('max_ms'))}",
                "args": args})
            if not isinstance(during, Mapping):
                continue
            max_ms = _number(row.get("max_ms"))
            held = [s for s in stalls if f.same_frame(s.get("culprit"), during)
                    and _number(s.get("duration_ms")) >= 0.5 * max_ms]
            poster = str(row.get("thread"))
            if site is not None:
                poster += f" ({site.get('function', '?')}, line {site.get('line')})"
            for stall in held:
                one_of = f" (one of {len(held)} stalls of it)" if len(held) > 1 else ""
                linked.append({
                    "ph": "i", "s": "t", "cat": "handoff_wait", "pid": _PID_LOOP,
                    "tid": _TID_STALLS,
                    "ts": min(end, _us(stall["started_at_s"]) + _dur_us(stall["duration_ms"])),
                    "name": f"hand-offs from {poster} waited up to "
                            f"{f.fmt_ms(max_ms)} while {during.get('function', '?')} held "
                            f"the loop{one_of}",
                    "args": {**args, "candidate_stalls": len(held)}})
        return events + sorted(linked, key=lambda event: float(event["ts"]))

    def _slow_callbacks(self, report: Report) -> list[Event]:
        """Each kept run of a slow callback at its time on the loop thread's track.

        A report without run times (written before they were recorded) gets one
        instant per callback at the end of the run, with its aggregates."""
        end = _us(report["meta"]["duration_s"])
        runs: list[tuple[float, float, Mapping[str, Any]]] = []
        untimed: list[Event] = []
        for cb in model_of(report).slow_callbacks:
            aggregates = {k: cb.get(k) for k in ("name", "kind", "location", "count",
                                                 "total_ms", "max_ms", "p50_ms", "p99_ms")}
            if "runs" not in cb:
                untimed.append({
                    "ph": "i", "s": "t", "name": f"{cb['name']} ×{cb['count']} (times not "
                    "recorded)", "cat": "slow_callback", "pid": _PID_LOOP, "tid": _TID_LOOP,
                    "ts": end, "args": aggregates})
                continue
            for started_at_s, duration_ms in cb["runs"]:
                runs.append((_us(started_at_s), _dur_us(duration_ms),
                             {**aggregates, "duration_ms": duration_ms,
                              "runs_kept": len(cb["runs"])}))
        events: list[Event] = []
        # One thread runs them one after another: one that starts before the previous
        # one ended (rounding) starts at its end instead, so slices never half-overlap;
        # one inside the other (a nested loop) stays nested.
        open_slices: list[tuple[float, float]] = []
        for ts, dur, args in sorted(runs, key=lambda run: (run[0], -run[1])):
            end = ts + dur
            while True:
                while open_slices and open_slices[-1][1] <= ts:
                    open_slices.pop()
                if not open_slices:
                    break
                start_of, end_of = open_slices[-1]
                if start_of <= ts and end <= end_of:
                    break  # inside it
                ts, end = end_of, max(end, end_of)
            open_slices.append((ts, end))
            events.append({"ph": "X", "name": str(args["name"]), "cat": "slow_callback",
                           "pid": _PID_LOOP, "tid": _TID_LOOP, "ts": ts,
                           "dur": round(end - ts, 3), "args": args})
        return events + untimed

    def _blocking_calls(self, report: Report) -> list[Event]:
        """Each kept blocking call as an instant on the loop thread at its start."""
        events: list[Event] = []
        for call in model_of(report).blocking.calls:
            for site in call.sites:
                for started_at_s, duration_ms in site.get("runs") or []:
                    events.append({
                        "ph": "i", "s": "t", "name": call.call, "cat": "blocking",
                        "pid": _PID_LOOP, "tid": _TID_LOOP, "ts": _us(started_at_s),
                        "args": {"duration_ms": duration_ms, "site": f.frame_text(site),
                                 "count_at_site": site.get("count")}})
        events.sort(key=lambda event: float(event["ts"]))
        return events

    def _qt_busy(self, report: Report) -> list[Event]:
        dispatcher = model_of(report).dispatcher
        if dispatcher is None:
            return []
        events: list[Event] = _track(_TID_QT_BUSY, f"Qt busy ({dispatcher.name})", 2)
        # Their starts are kept to 0.1 ms: one may begin before the last one ended.
        end_of_last = 0.0
        for started_at_s, duration_ms in dispatcher.busy_windows:
            ts = max(_us(started_at_s), end_of_last)
            dur = max(0.0, round(_us(started_at_s) + _dur_us(duration_ms) - ts, 3))
            end_of_last = ts + dur
            events.append({
                "ph": "X", "name": f"busy {f.fmt_ms(duration_ms)}", "cat": "qt",
                "pid": _PID_LOOP, "tid": _TID_QT_BUSY, "ts": ts, "dur": dur,
                "args": {"duration_ms": duration_ms,
                         "busy_fraction": dispatcher.busy_fraction},
            })
        return events

    def _lag(self, report: Report) -> list[Event]:
        """The loop lag counter: the largest lag of each window (``lag.over_time``)."""
        lag = model_of(report).lag
        return [{"ph": "C", "name": "loop lag", "cat": "lag", "pid": _PID_LOOP, "tid": 0,
                 "ts": _us(t_s), "args": {"ms": ms}}
                for t_s, ms in (lag.over_time if lag is not None else ())]

    def _tasks(self, report: Report) -> list[Event]:
        tasks = model_of(report).tasks
        if tasks is None:
            return []
        end_s = float(report["meta"]["duration_s"])
        events: list[Event] = []
        for t_s, count in tasks.over_time:
            events.append({"ph": "C", "name": "pending tasks", "cat": "tasks", "pid": _PID_LOOP,
                           "tid": 0, "ts": _us(t_s), "args": {"pending": count}})
        # Tasks pending at exit first when there are too many; then in order of creation.
        kept = sorted(_distinct_tasks(tasks)[:MAX_TASK_TRACKS], key=lambda record: (
            record[0].get("started_at_s") is None, record[0].get("started_at_s") or 0.0))
        for n, (task, lists) in enumerate(kept):
            tid = _TID_FIRST_TASK + n
            ident = f" (#{task['id']})" if task.get("id") is not None else ""
            events += _track(tid, f"task {task['name']}{ident}", 10 + n)
            args = {
                "coro": task["coro"], "id": task.get("id"), "age_s": task.get("age_s"),
                "state": task.get("state"),
                "created_at": f.frame_text(task.get("created_at")),
                "awaiting": f.frame_text(task.get("awaiting")),
                "pending_at_exit": "pending_at_exit" in lists,
                "long_pending": "long_pending" in lists,
            }
            label = "leaked" if "pending_at_exit" in lists else "long pending"
            age = task.get("age_s")
            if age is None:
                events.append({"ph": "i", "s": "t", "name": f"{label}: {task['coro']}",
                               "cat": "task", "pid": _PID_LOOP, "tid": tid, "ts": _us(end_s),
                               "args": args})
                continue
            # From its creation to when its age was taken (the end of the loop for a task
            # pending at exit); an older report has no creation time: back from the end.
            started = task.get("started_at_s")
            if started is None:
                start_s, last_s = max(0.0, end_s - float(age)), end_s
            else:
                start_s, last_s = float(started), float(started) + float(age)
            events.append({"ph": "X", "name": f"{label}: {task['coro']}", "cat": "task",
                           "pid": _PID_LOOP, "tid": tid, "ts": _us(start_s),
                           "dur": round(max(0.0, _us(last_s) - _us(start_s)), 3),
                           "args": args})
        return events


def _distinct_tasks(tasks: TaskFigures) -> list[tuple[Mapping[str, Any], set[str]]]:
    """Each task of ``pending_at_exit`` and ``long_pending`` once, with the lists it is in.

    Tasks are told apart by their ``id``: two tasks may share a name.  A record without
    one (an older report, a task created before monitoring) is the same task as one in
    the other list only when that name and coroutine are in each list once.
    """
    out: list[tuple[Mapping[str, Any], set[str]]] = []
    by_id: dict[Any, int] = {}
    by_name: dict[tuple[str, str], list[int]] = {}
    named_in: dict[tuple[str, str, str], int] = {}
    lists = {"pending_at_exit": tasks.leaked, "long_pending": tasks.long_pending}
    for key in ("pending_at_exit", "long_pending"):
        for task in lists[key]:
            name = (str(task["name"]), str(task["coro"]))
            named_in[(key, *name)] = named_in.get((key, *name), 0) + 1
    for key in ("pending_at_exit", "long_pending"):
        for task in lists[key]:
            ident = task.get("id")
            name = (str(task["name"]), str(task["coro"]))
            same: int | None = None
            if ident is not None:
                same = by_id.get(ident)
            elif key == "long_pending" and named_in.get(("pending_at_exit", *name)) == 1 \
                    and named_in.get(("long_pending", *name)) == 1:
                same = next((i for i in by_name.get(name, [])
                             if out[i][0].get("id") is None), None)
            if same is not None:
                out[same][1].add(key)
                if task.get("age_s") is not None and (out[same][0].get("age_s") is None):
                    out[same] = (task, out[same][1])
                continue
            if ident is not None:
                by_id[ident] = len(out)
            by_name.setdefault(name, []).append(len(out))
            out.append((task, {key}))
    return out
