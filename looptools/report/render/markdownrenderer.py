"""A short Markdown summary, made for ``$GITHUB_STEP_SUMMARY``."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

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
        """The Markdown summary."""
        meta = report["meta"]
        verdict = f.verdict(report)
        culprits = f.culprits(report)
        lines = [
            f"### {_ICON[verdict.level]} looptools: {plain(verdict.label)}",
            "",
            f"**{plain(verdict.text)}**",
            "",
        ]
        also = f.off_loop_text(report)
        if also:
            lines += [f"**Also:** {plain(also)}", ""]
        if culprits:
            worst = culprits[0]
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
        parts = [self._culprits(report, culprits), self._stalls(report, culprits)]
        parts += [section(report) for section in (self._slow_callbacks, self._health,
                                                  self._tasks, self._blocking,
                                                  self._handoffs, self._worker_loops,
                                                  self._affinity, self._errors)]
        for part in parts:
            if part:
                lines += ["", *part]
        return "\n".join(lines) + "\n"

    def _culprits(self, report: Report, culprits: Sequence[f.CulpritGroup]) -> list[str]:
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
        note = f.dropped_note(report)
        if note:
            lines += ["", f"({plain(note)})"]
        return lines

    def _stalls(self, report: Report, culprits: Sequence[f.CulpritGroup]) -> list[str]:
        summary = report["stall_summary"]
        ranked = [(rank, group) for rank, group in enumerate(culprits, 1) if group.stalls]
        if not ranked:
            return []
        title = f"#### Stalls ({summary['count']}"
        title += f", {summary['dropped']} not kept)" if summary["dropped"] else ")"
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

    def _slow_callbacks(self, report: Report) -> list[str]:
        callbacks = f.slow_callbacks_by_total(report)
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

    def _health(self, report: Report) -> list[str]:
        lag, dispatcher = report.get("lag"), report.get("dispatcher")
        if not lag and not dispatcher:
            return []
        headers, row = [], []
        if lag:
            for label, value in f.percentile_row(lag):
                headers.append(f"lag {label}")
                row.append(value)
        if dispatcher:
            headers += ["Qt busy", "longest busy"]
            row += [f.fmt_pct(dispatcher["busy_fraction"]), f.fmt_ms(dispatcher["longest_busy_ms"])]
        title = " and ".join(name for name, present in
                             (("Loop lag", lag), ("Qt dispatcher", dispatcher)) if present)
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

    def _tasks(self, report: Report) -> list[str]:
        tasks = report.get("tasks")
        if not tasks:
            return []
        lines = ["#### Tasks", "", plain(f.task_counts_text(tasks))]
        leaked = tasks.get("pending_at_exit") or []
        if leaked:
            lines += ["", f"**Pending at exit ({len(leaked)})**", "", *self._task_table(leaked)]
        long_pending = tasks.get("long_pending") or []
        if long_pending:
            lines += ["", f"<details><summary>Long pending ({len(long_pending)})</summary>", "",
                      *self._task_table(long_pending), "", "</details>"]
        lost = tasks.get("unretrieved_exceptions") or []
        if lost:
            rows = [[code(e.get("task") or "?"), code(e["exception"]), plain(e["message"])]
                    for e in lost]
            lines += ["", f"**Exceptions never retrieved ({len(lost)})**", "",
                      *md_table(["task", "exception", "message"], rows)]
        return lines

    def _blocking(self, report: Report) -> list[str]:
        calls = sorted(report.get("blocking_calls") or [], key=lambda b: -int(b["count"]))
        if not calls:
            return []
        rows = []
        for call in calls:
            sites = sorted(call.get("sites") or [], key=lambda s: -int(s.get("count", 0)))
            where = "<br>".join(
                f"{code(f.location(s))} in {code(s.get('function', '?'))}"
                + (f" ×{s['count']}" if s.get("count") is not None else "") for s in sites[:5])
            if len(sites) > 5:
                where += f"<br>… {len(sites) - 5} more"
            rows.append([code(call["call"]), str(call["count"]), where or "-"])
        return [f"#### Blocking calls on the loop thread ({f.blocking_total(report)})", "",
                *md_table(["call", "count", "sites"], rows, right=(1,))]

    def _handoffs(self, report: Report) -> list[str]:
        rows = f.handoffs(report)
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
        return [f"#### {plain(f.handoffs_title(rows))}", "",
                "How long work posted to the loop from another thread waited to run, "
                "worst p99 first.", "",
                *md_table(["via", "thread", "site", "count", "p50", "p99", "max"], table_rows,
                          right=(3, 4, 5, 6))]

    def _worker_loops(self, report: Report) -> list[str]:
        section = f.worker_loops(report)
        if section is None:
            return []
        rows = []
        for row in section.get("threads") or []:
            cells = f.worker_thread_cells(row)
            rows.append([code(cells[0]), *cells[1:2], plain(cells[2]), *cells[3:6],
                         code(cells[6]) if row.get("worst") else "-"])
        lines = [f"#### {plain(f.worker_loops_title(section))}", "",
                 "Their own loops, not the GUI's: not counted in the stalls above.", "",
                 *md_table(["thread", "loops", "kinds", "ran", "stalls", "longest", "worst in"],
                           rows, right=(1, 3, 4, 5))]
        for stall in f.worker_stalls_longest(section, self.max_stacks):
            stack = f.stack_lines(stall.get("stack") or []) or [
                f"(no stack: {stall.get('stack_source') or 'none'})"]
            title = f"stall {f.worker_stall_text(stall)}"
            lines += ["", f"<details><summary>{html.escape(f.oneline(title))}</summary>", "",
                      *fenced([f.oneline(s) for s in stack]), "", "</details>"]
        return lines

    def _affinity(self, report: Report) -> list[str]:
        rows = f.affinity_cells(report)
        if not rows:
            return []
        return [f"#### Thread-affinity violations ({f.counted(len(rows), 'site')})", "",
                "A Qt object or an asyncio loop touched from a thread that does not own it.",
                "", *md_table(["call", "count", "site", "function", "thread", "owner", "object"],
                              [[code(row[0]), row[1], code(row[2]), code(row[3]),
                                plain(row[4]), plain(row[5]), plain(row[6])] for row in rows],
                              right=(1,))]

    def _errors(self, report: Report) -> list[str]:
        errors = report.get("detector_errors") or []
        if not errors:
            return []
        return [f"#### Detector errors ({len(errors)})", "",
                *(f"- {code(e['detector'])}: {plain(e['error'])}" for e in errors)]
