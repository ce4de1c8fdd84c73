"""Plain-text report for a terminal: what a person reads after ``looptools profile``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from looptools.report.model import ReportModel, WorkerLoopFigures, model_of
from looptools.report.render import _format as f
from looptools.report.render.base import Renderer, Report

_RESET = "\x1b[0m"
_STYLES = {"bold": "\x1b[1m", "dim": "\x1b[2m", "red": "\x1b[31m", "yellow": "\x1b[33m",
           "green": "\x1b[32m", "cyan": "\x1b[36m"}
_VERDICT_STYLE = {"ok": "green", "warn": "yellow", "bad": "red"}

#: Longest cell before it is shortened (paths keep their end: the file name and line).
_MAX_CELL = 64


def _clip(text: str, keep_end: bool = False) -> str:
    if len(text) <= _MAX_CELL:
        return text
    return "…" + text[-(_MAX_CELL - 1):] if keep_end else text[: _MAX_CELL - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = (),
          indent: str = "  ") -> list[str]:
    """Rows padded into columns; column indexes in *right* are right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w)
               for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return (indent + "  ".join(out)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


class TextRenderer(Renderer):
    """Plain text, no colour unless asked (the CLI asks only when stdout is a terminal)."""

    name = "text"
    aliases = ("txt",)
    extensions = (".txt", ".text")
    description = "plain text for a terminal (the default)"

    #: How many culprits to list in "Top culprits", how many culprits with stalls to
    #: detail under "Stalls", and how many of those get their stack printed.
    max_culprits = 10
    max_stalls = 10
    max_stacks = 5
    #: Innermost frames shown per stack.
    stack_depth = 8

    def _style(self, text: str, *styles: str) -> str:
        if not self.color:
            return text
        return "".join(_STYLES[s] for s in styles) + text + _RESET

    def _heading(self, text: str) -> list[str]:
        return ["", self._style(text, "bold")]

    def render(self, report: Report) -> str:
        """The whole report as plain text, its figures from the report's model."""
        model = model_of(report)
        lines: list[str] = []
        for section in (self._header, self._culprits, self._stalls, self._slow_callbacks,
                        self._lag, self._dispatcher, self._tasks, self._blocking,
                        self._sampler, self._handoffs, self._worker_loops, self._affinity,
                        self._errors):
            lines += section(model)
        return "\n".join(lines) + "\n"

    def _header(self, model: ReportModel) -> list[str]:
        report = model.report
        meta = report["meta"]
        verdict = model.verdict
        detectors = f.detectors_text(report)
        lines = [
            self._style("looptools report", "bold") + f"  {f.oneline(f.argv_text(report))}",
            f"  loop      {f.oneline(f.loop_text(report))}",
            f"  ran       {f.fmt_s(meta['duration_s'])} from {f.oneline(meta['started_at'])} "
            f"to {f.oneline(meta['ended_at'])}, exit: {f.oneline(f.exit_text(report))}",
            f"  threshold {meta['threshold_ms']:g} ms; detectors: {f.oneline(detectors)}",
            f"  process   pid {meta['pid']}, Python {f.oneline(meta['python'])} "
            f"on {f.oneline(meta['platform'])}",
            "",
            self._style(f"{verdict.label}: {f.oneline(verdict.text)}", "bold",
                        _VERDICT_STYLE[verdict.level]),
        ]
        also = f.off_loop_text(model)
        if also:
            lines.append(self._style(f"also: {f.oneline(also)}", "yellow"))
        if model.worst is not None:
            lines.append(self._style(f.oneline(f.worst_text(model.worst)), "bold"))
        return lines

    def _culprits(self, model: ReportModel) -> list[str]:
        culprits = model.culprits
        if not culprits:
            return []
        lines = self._heading(f"Top culprits ({len(culprits)}), most blocked time first")
        rows = [[
            str(rank), _clip(f.oneline(group.function)),
            _clip(f.oneline(f.culprit_where(group)), keep_end=True), f.count_text(group),
            f.blocked_text(group), f.fmt_ms(group.worst_ms), f.at_text(group.first_s),
            f.at_text(group.last_s), f.oneline(f.kinds_text(group)),
        ] for rank, group in enumerate(culprits[: self.max_culprits], 1)]
        lines += table(["#", "culprit", "where", "count", "blocked", "worst", "first", "last",
                        "kinds"], rows, right=(0, 3, 4, 5, 6, 7))
        if len(culprits) > self.max_culprits:
            lines.append(f"  … and {len(culprits) - self.max_culprits} more")
        note = f.dropped_note(model.stalls)
        if note:
            lines.append(self._style(f"  ({note})", "dim"))
        return lines

    def _stalls(self, model: ReportModel) -> list[str]:
        stalls = model.stalls
        ranked = model.stall_culprits
        if not ranked and not stalls.count:
            return []
        title = f"Stalls: {stalls.count} recorded, longest {f.fmt_ms(stalls.max_ms)}, " \
                f"{f.fmt_ms(stalls.total_ms)} in total"
        if stalls.dropped:
            title += f" ({stalls.dropped} not kept)"
        lines = self._heading(title)
        if ranked:
            lines.append(self._style("  one entry per culprit (numbered as in Top culprits), "
                                     "with the stack of its longest stall", "dim"))
        for n, (rank, group) in enumerate(ranked[: self.max_stalls]):
            lines += self._stall_group(rank, group, with_stack=n < self.max_stacks)
        if len(ranked) > self.max_stalls:
            lines += ["", f"  … and {len(ranked) - self.max_stalls} more culprits"]
        return lines

    def _stall_group(self, rank: int, group: f.CulpritGroup, with_stack: bool) -> list[str]:
        stall = group.stalls[0]
        head = f"  #{rank} {f.oneline(f.stall_head(group))}"
        extra = [f"{k} {f.oneline(stall[k])}" for k in ("callback", "task") if stall.get(k)]
        share = f.culprit_share(stall)
        if share:
            extra.append(share)
        if extra:
            head += " (" + "; ".join(extra) + ")"
        lines = ["", self._style(head, "bold") if with_stack else head]
        if group.count > 1:
            lines.append(f"      all {group.count}: {f.stall_times(group.stalls)}")
        if with_stack:
            lines += self._stack(stall)
        return lines

    def _stack(self, stall: Mapping[str, Any]) -> list[str]:
        stack = list(stall.get("stack") or [])
        if not stack:
            how = stall.get("stack_source") or "none"
            return [self._style(f"      (no stack: {how})", "dim")]
        lines = []
        hidden = len(stack) - self.stack_depth
        if hidden > 0:
            lines.append(self._style(f"      … {hidden} outer frames", "dim"))
            stack = stack[-self.stack_depth:]
        culprit = stall.get("culprit")
        for frame in stack:
            function = f.oneline(frame.get("function", "?"))
            text = f"      {f.oneline(f.location(frame))} in {function}"
            if f.same_frame(frame, culprit):
                text = self._style(text + "   <- culprit", "bold")
            lines.append(text)
        return lines

    def _slow_callbacks(self, model: ReportModel) -> list[str]:
        callbacks = model.slow_callbacks
        if not callbacks:
            return []
        lines = self._heading(f"Slow callbacks ({len(callbacks)})")
        rows = [[
            _clip(f.oneline(c["name"])), str(c.get("kind", "")),
            _clip(f.oneline(c["location"] or "?"), keep_end=True), str(c["count"]),
            f.fmt_ms(c["total_ms"]), f.fmt_ms(c["max_ms"]), f.fmt_ms(c["p50_ms"]),
            f.fmt_ms(c["p99_ms"]),
        ] for c in callbacks]
        lines += table(["name", "kind", "location", "count", "total", "max", "p50", "p99"], rows,
                       right=(3, 4, 5, 6, 7))
        return lines

    def _lag(self, model: ReportModel) -> list[str]:
        lag = model.lag
        if lag is None:
            return []
        lines = self._heading(f"Loop lag ({f.lag_title(lag)})")
        lines.append("  " + "   ".join(f"{k} {v}" for k, v in f.percentile_row(lag)))
        return lines

    def _dispatcher(self, model: ReportModel) -> list[str]:
        dispatcher = model.dispatcher
        if dispatcher is None:
            return []
        lines = self._heading(f"Qt dispatcher ({f.oneline(dispatcher.name)})")
        lines.append("  " + f.dispatcher_text(dispatcher))
        return lines

    def _task_rows(self, tasks: Sequence[Mapping[str, Any]]) -> list[str]:
        rows = [[
            _clip(f.oneline(t["name"])), _clip(f.oneline(t["coro"])), f.fmt_s(t.get("age_s")),
            _clip(f.oneline(f.location(t.get("created_at")) if t.get("created_at") else "-"),
                  keep_end=True),
            _clip(f.oneline(f.frame_text(t.get("awaiting"))), keep_end=True),
        ] for t in tasks]
        return table(["name", "coro", "age", "created at", "awaiting"], rows, right=(2,),
                     indent="    ")

    def _tasks(self, model: ReportModel) -> list[str]:
        tasks = model.tasks
        if tasks is None:
            return []
        lines = self._heading("Tasks")
        lines.append("  " + f.task_counts_text(tasks))
        if tasks.long_pending:
            after = tasks.long_pending_after_s
            label = f"Long pending (over {f.fmt_s(after)})" if after else "Long pending"
            lines += ["", f"  {label}: {len(tasks.long_pending)}"]
            lines += self._task_rows(tasks.long_pending)
        leaked = tasks.leaked
        if leaked:
            lines += ["", self._style(f"  Leaked (pending at exit): {len(leaked)}", "yellow")]
            lines += self._task_rows(leaked)
        lost = tasks.unretrieved
        if lost:
            lines += ["", self._style(f"  Exceptions never retrieved: {len(lost)}", "yellow")]
            rows = [[
                _clip(f.oneline(e.get("task") or "?")),
                _clip(f.oneline(f"{e['exception']}: {e['message']}")),
                _clip(f.oneline(f.location(e.get("created_at")) if e.get("created_at") else "-"),
                      keep_end=True),
            ] for e in lost]
            lines += table(["task", "exception", "created at"], rows, indent="    ")
        return lines

    def _blocking(self, model: ReportModel) -> list[str]:
        blocking = model.blocking
        if not blocking:
            return []
        lines = self._heading(f.blocking_title(blocking.count, blocking.total_ms))
        timed = blocking.total_ms is not None
        rows: list[list[str]] = []
        for call in blocking.calls:
            time = [f.blocking_time_text(call.total_ms, call.max_ms)] if timed else []
            rows.append([_clip(f.oneline(call.call)), str(call.count), *time, "", ""])
            for site in call.sites:
                time = [f.blocking_time_text(site.get("total_ms"), site.get("max_ms"))
                        if site.get("total_ms") is not None else ""] if timed else []
                rows.append([
                    "", str(site["count"]) if site.get("count") is not None else "", *time,
                    _clip(f.oneline(f.location(site)), keep_end=True),
                    _clip(f.oneline(site.get("function", "?"))),
                ])
        headers = ["call", "count", *(["time"] if timed else []), "site", "function"]
        lines += table(headers, rows, right=(1, 2) if timed else (1,))
        return lines

    def _sampler(self, model: ReportModel) -> list[str]:
        """What py-spy or yappi found: the stall culprits as it saw them, then its top
        frames by self time and on the stack."""
        sampler = model.sampler
        if sampler is None:
            return []
        lines = self._heading(f"Sampler {f.oneline(f.sampler_title(sampler))}")
        if sampler.at_culprits:
            lines.append(self._style("  the stall culprits as the sampler saw them (it keeps no "
                                     "time per sample: this is all its time in each culprit's "
                                     "function)", "dim"))
            ranks = {id(group): rank for rank, group in model.stall_culprits}
            for found in sampler.at_culprits[: self.max_stalls]:
                group = found.group
                lines.append(f"  #{ranks.get(id(group), '?')} "
                             f"{f.oneline(f.culprit_title(group))}: {f.culprit_cost(group)}; "
                             f"{sampler.sampler}: {f.oneline(f.sampler_culprit_text(found))}")
        for label, rows in (("by self time (innermost frame)", sampler.top_self),
                            ("on the stack", sampler.top_total)):
            if not rows:
                continue
            lines += ["", f"  Top frames {label}"]
            lines += table(["function", "where", "time"],
                           [[_clip(f.oneline(row.function)),
                             _clip(f.oneline(f.sampler_where(row)), keep_end=True),
                             f.sampler_amount(row)] for row in rows[: self.max_culprits]],
                           indent="    ")
        return lines

    def _handoffs(self, model: ReportModel) -> list[str]:
        handoffs = model.handoffs
        rows = handoffs.rows
        if not rows:
            return []
        lines = self._heading(f.handoffs_title(handoffs) + ", worst p99 first")
        lines.append(self._style("  how long work posted to the loop from another thread "
                                 "waited to run", "dim"))
        cells = [[_clip(f.oneline(cell), keep_end=i == 2)
                  for i, cell in enumerate(f.handoff_cells(row))] for row in rows]
        table_lines = table(["via", "thread", "site", "function", "count", "p50", "p99", "max"],
                            cells, right=(4, 5, 6, 7))
        lines.append(table_lines[0])
        for row, line in zip(rows, table_lines[1:], strict=True):
            lines.append(line)
            held = f.handoff_held_text(row)
            if held:
                lines.append(f"      {f.oneline(held)}")
        return lines

    def _worker_loops(self, model: ReportModel) -> list[str]:
        workers = model.worker_loops
        if workers is None:
            return []
        lines = self._heading(f.worker_loops_title(workers))
        lines.append(self._style("  their own loops, not the GUI's: not in the stalls above",
                                 "dim"))
        rows = [[_clip(f.oneline(cell), keep_end=i == 6)
                 for i, cell in enumerate(f.worker_thread_cells(row))]
                for row in workers.threads]
        lines += table(["thread", "loops", "kinds", "ran", "stalls", "longest", "worst in"],
                       rows, right=(1, 3, 4, 5))
        lines += self._worker_health(workers)
        for stall in workers.stalls[: self.max_stacks]:
            lines += ["", self._style(f"  stall {f.oneline(f.worker_stall_text(stall))}",
                                      "bold")]
            lines += self._stack(stall)
        return lines

    def _worker_health(self, workers: WorkerLoopFigures) -> list[str]:
        """Per thread its lag, tasks and blocking calls; the totals; the leaked tasks."""
        lines: list[str] = []
        for i, row in enumerate(workers.threads):
            health = f.worker_thread_health(row)
            calls = (f.worker_blocking_lines(workers.thread_blocking[i])
                     if i < len(workers.thread_blocking) else [])
            if health or calls:
                lines.append(f"  {_clip(f.oneline(row.get('thread')))}: "
                             f"{f.oneline(health or 'no lag measured')}")
                lines += [self._style(f"    blocking {f.oneline(c)}",
                                      "yellow") for c in calls]
        totals = f.worker_totals_text(workers)
        if totals:
            lines.append(self._style(f"  {f.oneline(totals)}", "dim"))
        if workers.leaked:
            lines.append(self._style(f"  Leaked tasks: {len(workers.leaked)}", "yellow"))
            lines += [f"    {f.oneline(f.worker_leaked_text(t))}" for t in workers.leaked]
        return ["", *lines] if lines else []

    def _affinity(self, model: ReportModel) -> list[str]:
        rows = f.affinity_cells(model.affinity)
        if not rows:
            return []
        lines = self._heading(f"Thread-affinity violations ({f.counted(len(rows), 'site')})")
        lines.append(self._style("  a Qt object or an asyncio loop touched from a thread "
                                 "that does not own it", "dim"))
        lines += table(["call", "count", "site", "function", "thread", "owner", "object"],
                       [[_clip(f.oneline(cell), keep_end=i == 2) for i, cell in enumerate(row)]
                        for row in rows], right=(1,))
        return lines

    def _errors(self, model: ReportModel) -> list[str]:
        errors = model.detector_errors
        if not errors:
            return []
        lines = self._heading(f"Detector errors ({len(errors)})")
        lines += [f"  {f.oneline(e['detector'])}: {f.oneline(e['error'])}" for e in errors]
        return lines
