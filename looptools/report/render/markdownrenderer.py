"""A short Markdown summary, made for ``$GITHUB_STEP_SUMMARY``."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from looptools.report.model import ReportModel, WorkerLoopFigures, model_of
from looptools.report.render import _format as f
from looptools.report.render.base import Renderer, Report

_ICON = {"ok": "✅", "warn": "⚠️", "bad": "❌"}


def code(value: object, in_table: bool = True) -> str:
    """*value* as an inline code span that is safe inside a GFM table cell.

    Code spans show ``<script>`` literally; pipes are escaped because GFM
    splits table cells on them even inside code (not with *in_table* false: in
    a paragraph the backslash would show); the fence is longer than any
    backtick run in the value so it cannot be closed early.
    """
    text = f.oneline(value)
    if in_table:
        text = text.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`") or not text.strip():
        text = f" {text} "
    return f"{fence}{text}{fence}"


def plain(value: object) -> str:
    """*value* as table-cell text: HTML-escaped, Markdown punctuation neutralised."""
    text = html.escape(f.oneline(value), quote=False)
    return re.sub(r"([\\`*_\[\]|#~])", r"\\\1", text)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
             right: Sequence[int] = ()) -> list[str]:
    """A GFM table; cells must already be escaped."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def fenced(lines: Sequence[str]) -> list[str]:
    """A fenced code block whose fence no line can close."""
    longest = max((len(m) for line in lines for m in re.findall(r"`{3,}", line)), default=2)
    fence = "`" * (longest + 1)
    return [fence, *lines, fence]


class MarkdownRenderer(Renderer):
    """Tables and collapsible stacks, short enough for a CI job summary."""

    name = "md"
    aliases = ("markdown", "gfm")
    extensions = (".md", ".markdown")
    description = "Markdown summary for a GitHub job summary"

    max_culprits = 10
    max_stacks = 5
    max_callbacks = 10
    max_tasks = 10

    def render(self, report: Report) -> str:
        """The Markdown summary, its figures from the report's model."""
        model = model_of(report)
        meta = report["meta"]
        verdict = model.verdict
        lines = [
            f"### {_ICON[verdict.level]} looptools: {plain(verdict.label)}",
            "",
            f"**{plain(verdict.text)}**",
            "",
        ]
        also = f.off_loop_text(model)
        if also:
            lines += [f"**Also:** {plain(also)}", ""]
        worst = model.worst
        if worst is not None:
            where = f" ({code(f.culprit_where(worst), False)})" if worst.frame else ""
            lines += [f"**worst:** {code(worst.function, False)}{where}, "
                      f"{plain(f.culprit_cost(worst))}", ""]
        lines += [
            *md_table(
                ["command", "loop", "ran", "threshold", "exit"],
                [[code(f.argv_text(report)), code(f.loop_text(report)),
                  f.fmt_s(meta["duration_s"]), f"{meta['threshold_ms']:g} ms",
                  plain(f.exit_text(report))]],
            ),
        ]
        parts = [section(model) for section in (
            self._culprits, self._stalls, self._slow_callbacks, self._health, self._tasks,
            self._blocking, self._sampler, self._handoffs, self._worker_loops, self._affinity,
            self._errors)]
        for part in parts:
            if part:
                lines += ["", *part]
        return "\n".join(lines) + "\n"

    def _culprits(self, model: ReportModel) -> list[str]:
        culprits = model.culprits
        if not culprits:
            return []
        rows = [[
            str(rank), code(group.function),
            code(f.culprit_where(group)) if group.frame else "-", plain(f.count_text(group)),
            plain(f.blocked_text(group)), f.fmt_ms(group.worst_ms), f.at_text(group.first_s),
            f.at_text(group.last_s), plain(f.kinds_text(group)),
        ] for rank, group in enumerate(culprits[: self.max_culprits], 1)]
        lines = [f"#### Top culprits ({len(culprits)}), most blocked time first", "",
                 *md_table(["#", "culprit", "where", "count", "blocked", "worst", "first",
                            "last", "kinds"], rows, right=(0, 3, 4, 5, 6, 7))]
        if len(culprits) > self.max_culprits:
            lines += ["", f"… and {len(culprits) - self.max_culprits} more"]
        note = f.dropped_note(model.stalls)
        if note:
            lines += ["", f"({plain(note)})"]
        return lines

    def _stalls(self, model: ReportModel) -> list[str]:
        stalls = model.stalls
        ranked = model.stall_culprits
        if not ranked:
            return []
        title = f"#### Stalls ({stalls.count}"
        title += f", {stalls.dropped} not kept)" if stalls.dropped else ")"
        lines = [title, "", "One entry per culprit, numbered as in Top culprits, with the stack "
                 "of its longest stall (innermost frame last)."]
        for rank, group in ranked[: self.max_stacks]:
            stall = group.stalls[0]
            title = f"#{rank} {f.stall_head(group)}"
            share = f.culprit_share(stall)
            if share:
                title += f" — {share}"
            stack = f.stack_lines(stall.get("stack") or []) or [
                f"(no stack: {stall.get('stack_source') or 'none'})"]
            lines += ["", f"<details><summary>{html.escape(f.oneline(title))}</summary>", ""]
            if group.count > 1:
                lines += [plain(f"all {group.count}: {f.stall_times(group.stalls)}"), ""]
            lines += [*fenced([f.oneline(s) for s in stack]), "", "</details>"]
        if len(ranked) > self.max_stacks:
            lines += ["", f"… and {len(ranked) - self.max_stacks} more culprits with stalls"]
        return lines

    def _slow_callbacks(self, model: ReportModel) -> list[str]:
        callbacks = model.slow_callbacks
        if not callbacks:
            return []
        rows = [[
            code(c["name"]), code(c["location"] or "?"), str(c["count"]), f.fmt_ms(c["total_ms"]),
            f.fmt_ms(c["max_ms"]), f.fmt_ms(c["p99_ms"]),
        ] for c in callbacks[: self.max_callbacks]]
        lines = [f"#### Slow callbacks ({len(callbacks)})", "",
                 *md_table(["callback", "location", "count", "total", "max", "p99"], rows,
                           right=(2, 3, 4, 5))]
        if len(callbacks) > self.max_callbacks:
            lines += ["", f"… and {len(callbacks) - self.max_callbacks} more"]
        return lines

    def _health(self, model: ReportModel) -> list[str]:
        lag, dispatcher = model.lag, model.dispatcher
        if lag is None and dispatcher is None:
            return []
        headers, row = [], []
        if lag is not None:
            for label, value in f.percentile_row(lag):
                headers.append(f"lag {label}")
                row.append(value)
        if dispatcher is not None:
            headers += ["Qt busy", "longest busy"]
            row += [f.fmt_pct(dispatcher.busy_fraction), f.fmt_ms(dispatcher.longest_busy_ms)]
        title = " and ".join(name for name, present in
                             (("Loop lag", lag), ("Qt dispatcher", dispatcher))
                             if present is not None)
        return [f"#### {title}", "", *md_table(headers, [row], right=range(len(headers)))]

    def _task_table(self, tasks: Sequence[Mapping[str, Any]]) -> list[str]:
        rows = [[
            code(t["name"]), code(t["coro"]), f.fmt_s(t.get("age_s")),
            code(f.location(t["created_at"])) if t.get("created_at") else "-",
            code(f.frame_text(t["awaiting"])) if t.get("awaiting") else "-",
        ] for t in tasks[: self.max_tasks]]
        lines = md_table(["task", "coroutine", "age", "created at", "awaiting"], rows, right=(2,))
        if len(tasks) > self.max_tasks:
            lines += ["", f"… and {len(tasks) - self.max_tasks} more"]
        return lines

    def _tasks(self, model: ReportModel) -> list[str]:
        tasks = model.tasks
        if tasks is None:
            return []
        lines = ["#### Tasks", "", plain(f.task_counts_text(tasks))]
        leaked = tasks.leaked
        if leaked:
            lines += ["", f"**Pending at exit ({len(leaked)})**", "", *self._task_table(leaked)]
        long_pending = tasks.long_pending
        if long_pending:
            lines += ["", f"<details><summary>Long pending ({len(long_pending)})</summary>", "",
                      *self._task_table(long_pending), "", "</details>"]
        lost = tasks.unretrieved
        if lost:
            rows = [[code(e.get("task") or "?"), code(e["exception"]), plain(e["message"])]
                    for e in lost]
            lines += ["", f"**Exceptions never retrieved ({len(lost)})**", "",
                      *md_table(["task", "exception", "message"], rows)]
        return lines

    def _blocking(self, model: ReportModel) -> list[str]:
        blocking = model.blocking
        if not blocking:
            return []
        timed = blocking.total_ms is not None
        rows = []
        for call in blocking.calls:
            sites = call.sites
            where = "<br>".join(
                f"{code(f.location(s))} in {code(s.get('function', '?'))}"
                + (f" ×{s['count']}" if s.get("count") is not None else "") for s in sites[:5])
            if len(sites) > 5:
                where += f"<br>… {len(sites) - 5} more"
            time = [plain(f.blocking_time_text(call.total_ms, call.max_ms))] if timed else []
            rows.append([code(call.call), str(call.count), *time, where or "-"])
        headers = ["call", "count", *(["time"] if timed else []), "sites"]
        return [f"#### {plain(f.blocking_title(blocking.count, blocking.total_ms))}", "",
                *md_table(headers, rows, right=(1, 2) if timed else (1,))]

    def _sampler(self, model: ReportModel) -> list[str]:
        sampler = model.sampler
        if sampler is None:
            return []
        lines = [f"#### Sampler {plain(f.sampler_title(sampler))}"]
        if sampler.at_culprits:
            ranks = {id(group): rank for rank, group in model.stall_culprits}
            rows = [[str(ranks.get(id(found.group), "?")), code(found.group.function),
                     plain(f.culprit_cost(found.group)),
                     plain(f.sampler_culprit_text(found))]
                    for found in sampler.at_culprits[: self.max_culprits]]
            lines += ["", "The stall culprits as the sampler saw them (it keeps no time per "
                      "sample: this is all its time in each culprit's function).", "",
                      *md_table(["#", "culprit", "stalls", sampler.sampler], rows,
                                right=(0,))]
        for label, frames in (("by self time (innermost frame)", sampler.top_self),
                              ("on the stack", sampler.top_total)):
            if frames:
                rows = [[code(row.function), code(f.sampler_where(row)),
                         plain(f.sampler_amount(row))] for row in frames[: self.max_callbacks]]
                lines += ["", f"<details><summary>Top frames {label}</summary>", "",
                          *md_table(["function", "where", "time"], rows), "", "</details>"]
        return lines

    def _handoffs(self, model: ReportModel) -> list[str]:
        handoffs = model.handoffs
        rows = handoffs.rows
        if not rows:
            return []
        table_rows = []
        for row in rows:
            via, thread, where, function, *figures = f.handoff_cells(row)
            site = f"{code(function)} {code(where)}"
            held = f.handoff_held(row)
            if held is not None:
                site += f"<br>the longest waited while {code(held)} held the loop"
            table_rows.append([code(via), code(thread), site, *figures])
        return [f"#### {plain(f.handoffs_title(handoffs))}", "",
                "How long work posted to the loop from another thread waited to run, "
                "worst p99 first.", "",
                *md_table(["via", "thread", "site", "count", "p50", "p99", "max"], table_rows,
                          right=(3, 4, 5, 6))]

    def _worker_loops(self, model: ReportModel) -> list[str]:
        workers = model.worker_loops
        if workers is None:
            return []
        rows = []
        for row in workers.threads:
            cells = f.worker_thread_cells(row)
            rows.append([code(cells[0]), *cells[1:2], plain(cells[2]), *cells[3:6],
                         code(cells[6]) if row.get("worst") else "-"])
        lines = [f"#### {plain(f.worker_loops_title(workers))}", "",
                 "Their own loops, not the GUI's: not counted in the stalls above.", "",
                 *md_table(["thread", "loops", "kinds", "ran", "stalls", "longest", "worst in"],
                           rows, right=(1, 3, 4, 5))]
        lines += self._worker_health(workers)
        for stall in workers.stalls[: self.max_stacks]:
            stack = f.stack_lines(stall.get("stack") or []) or [
                f"(no stack: {stall.get('stack_source') or 'none'})"]
            title = f"stall {f.worker_stall_text(stall)}"
            lines += ["", f"<details><summary>{html.escape(f.oneline(title))}</summary>", "",
                      *fenced([f.oneline(s) for s in stack]), "", "</details>"]
        return lines

    @staticmethod
    def _worker_health(workers: WorkerLoopFigures) -> list[str]:
        """Per thread its lag, tasks and blocking calls; the totals; the leaked tasks."""
        items: list[str] = []
        for i, row in enumerate(workers.threads):
            health = f.worker_thread_health(row)
            calls = (f.worker_blocking_lines(workers.thread_blocking[i])
                     if i < len(workers.thread_blocking) else [])
            if health or calls:
                items.append(f"- {code(row.get('thread'), in_table=False)}: "
                             f"{plain(health or 'no lag measured')}")
                items += [f"  - blocking {code(c, in_table=False)}" for c in calls]
        totals = f.worker_totals_text(workers)
        lines = ["", *items] if items else []
        if totals:
            lines += ["", plain(totals[0].upper() + totals[1:]) + "."]
        if workers.leaked:
            lines += ["", f"**Leaked tasks ({len(workers.leaked)})**", "",
                      *(f"- {code(f.worker_leaked_text(t), in_table=False)}"
                        for t in workers.leaked)]
        return lines

    def _affinity(self, model: ReportModel) -> list[str]:
        rows = f.affinity_cells(model.affinity)
        if not rows:
            return []
        return [f"#### Thread-affinity violations ({f.counted(len(rows), 'site')})", "",
                "A Qt object or an asyncio loop touched from a thread that does not own it.",
                "", *md_table(["call", "count", "site", "function", "thread", "owner", "object"],
                              [[code(row[0]), row[1], code(row[2]), code(row[3]),
                                plain(row[4]), plain(row[5]), plain(row[6])] for row in rows],
                              right=(1,))]

    def _errors(self, model: ReportModel) -> list[str]:
        errors = model.detector_errors
        if not errors:
            return []
        return [f"#### Detector errors ({len(errors)})", "",
                *(f"- {code(e['detector'])}: {plain(e['error'])}" for e in errors)]
