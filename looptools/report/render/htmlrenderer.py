"""One self-contained HTML page: top culprits, timeline, lag histogram, stacks, tasks.

The timeline's rows are the main loop's (stalls, lag, Qt busy, pending tasks) and one
per worker thread whose own asyncio loop stalled (``worker_loops``, never the headline).

The page leads with the answer: the worst culprit in the header, then "Top culprits"
(grouped by ``looptools._culprits``, like every view), then the charts and details.

Nothing is fetched when the page is viewed: styles, charts (inline SVG) and the
small script are all in the file, and a Content-Security-Policy forbids any
network access.  Every string from the report is escaped, because function and
file names come from the monitored program and cannot be trusted; the CSP only
lets the one known script run, as a second line of defence.  The page works
without JavaScript (``<details>`` and SVG links); the script only opens the
culprit whose stall a timeline link points at and adds expand/collapse-all buttons.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import Any

from looptools.report.model import ReportModel, WorkerLoopFigures, model_of
from looptools.report.render import _format as f
from looptools.report.render.base import Renderer, Report
from looptools.report.render.flame import worker_threads

_SCRIPT = """
(function () {
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    var box = el && el.closest("details");
    if (box) { box.open = true; el.scrollIntoView(); }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
  var tools = document.getElementById("stall-tools");
  if (tools) {
    tools.hidden = false;
    tools.addEventListener("click", function (ev) {
      var open = ev.target && ev.target.getAttribute("data-open");
      if (open === null || open === undefined) { return; }
      document.querySelectorAll("#stalls details").forEach(function (d) {
        d.open = open === "1";
      });
    });
  }
})();
""".strip()

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)

_CSS = """
:root { --fg:#1d2330; --muted:#5d6778; --bg:#fff; --panel:#f5f7fa; --line:#d8dde6;
  --bad:#c62828; --warn:#b26a00; --ok:#2e7d32; --stall:#d9480f; --qt:#1971c2;
  --task:#7048e8; --bar:#4c6ef5; --over:#e8590c; --worker:#a61e4d; }
@media (prefers-color-scheme: dark) {
  :root { --fg:#e6e9ef; --muted:#9aa3b2; --bg:#14171c; --panel:#1d2129; --line:#343a46;
    --bad:#ff6b6b; --warn:#ffa94d; --ok:#69db7c; --stall:#ff8a50; --qt:#4dabf7;
    --task:#9775fa; --bar:#748ffc; --over:#ff922b; --worker:#f06595; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1240px; padding: 16px 24px 48px; color: var(--fg);
  background: var(--bg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
code, .mono { font: 12.5px/1.4 ui-monospace, "SF Mono", Menlo, Consolas, monospace; }
.argv { color: var(--muted); margin: 0 0 8px; word-break: break-all; }
.verdict { font-size: 16px; font-weight: 600; padding: 8px 12px; border-radius: 6px;
  border-left: 5px solid; background: var(--panel); }
.verdict-ok { border-color: var(--ok); } .verdict-warn { border-color: var(--warn); }
.verdict-bad { border-color: var(--bad); }
.verdict .label { margin-right: 8px; }
.also { margin: 6px 0; padding: 0 12px; font-weight: 600; color: var(--warn); }
.worst { font-size: 15px; margin: 8px 0; padding: 0 12px; }
.worst .label { font-weight: 600; color: var(--bad); }
table.culprits td:nth-child(2) { min-width: 300px; }
table.culprits td:last-child { max-width: 340px; }
.verdict-ok .label { color: var(--ok); } .verdict-warn .label { color: var(--warn); }
.verdict-bad .label { color: var(--bad); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
nav { margin: 12px 0; } nav a { margin-right: 14px; }
a { color: var(--qt); }
.muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
table.compact { width: auto; } table.compact td, table.compact th { min-width: 90px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: break-word; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.meter { display: inline-block; height: 8px; background: var(--bar); border-radius: 2px;
  vertical-align: middle; margin-right: 6px; }
svg.chart { display: block; width: 100%; height: auto; background: var(--panel);
  border-radius: 6px; }
svg.chart text { fill: var(--fg); font: 11px system-ui, sans-serif; }
svg.chart .axis { stroke: var(--line); }
svg.chart .grid { stroke: var(--line); stroke-dasharray: 2 3; }
svg.chart .tick { fill: var(--muted); }
svg.chart .stall { fill: var(--stall); } svg.chart a:hover .stall { fill: var(--bad); }
svg.chart .qt { fill: var(--qt); opacity: .75; }
svg.chart .worker { fill: var(--worker); } svg.chart a:hover .worker { fill: var(--bad); }
svg.chart .pending { fill: var(--task); opacity: .25; stroke: var(--task); stroke-width: 1; }
svg.chart .bar { fill: var(--bar); } svg.chart .bar.over { fill: var(--over); }
svg.chart .threshold { stroke: var(--bad); stroke-dasharray: 4 3; }
svg.chart .lag { stroke: var(--bar); stroke-width: 1.5; fill: none; }
svg.chart .lag.over { stroke: var(--over); stroke-width: 2; }
svg.chart .bar.empty { fill: none; }
.legend span { margin-right: 16px; } .swatch { display: inline-block; width: 10px; height: 10px;
  border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
details.stall { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0;
  background: var(--panel); }
details.stall > summary { cursor: pointer; padding: 6px 10px; list-style-position: inside; }
details.stall > summary .dur { font-weight: 600; display: inline-block; min-width: 72px; }
details.stall .body { padding: 0 12px 10px; }
ol.stack { margin: 6px 0; padding-left: 28px; }
ol.stack li { padding: 1px 0; }
ol.stack li.culprit { font-weight: 700; color: var(--bad); }
.times span:target { outline: 2px solid var(--stall); }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px;
  border: 1px solid var(--line); color: var(--muted); margin-left: 6px; }
#stall-tools { margin: 4px 0; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
""".strip()


def e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return escape(str(value), quote=True)


def _num(value: float) -> str:
    """A number for an SVG attribute: short, never scientific notation."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _nice_step(span: float, target_ticks: int = 10) -> float:
    """A 1/2/5×10^n step giving at most about *target_ticks* ticks over *span*."""
    if span <= 0:
        return 1.0
    raw = span / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if raw <= mult * power:
            return float(mult * power)
    return float(10 * power)


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}"


def _lag_value(ms: float) -> str:
    """An axis label of the lag histogram: ``0.05 ms``, ``200 ms``, ``2 s``."""
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def _lag_range(lower: float, upper: float) -> str:
    """A lag bucket in words: ``1.22–1.28 ms``; the first of looptools' buckets holds
    everything up to 0.05 ms."""
    if upper <= 0.05:
        return f"≤{upper:.3g} ms"
    return f"{lower:.3g}–{upper:.3g} ms" if upper < 1000 else \
        f"{lower / 1000:.3g}–{upper / 1000:.3g} s"


def _log_ticks(low: float, high: float) -> list[float]:
    """1, 2 and 5 × 10ⁿ between *low* and *high*: powers of ten first, then 5s, then 2s
    (the order labels are placed in when they might collide); both ends when none fall
    inside."""
    ticks: dict[int, list[float]] = {1: [], 5: [], 2: []}
    power = 10.0 ** math.floor(math.log10(low))
    decades = 0
    # Bounded: a histogram's top bucket can be huge or infinite (hypothesis found
    # one that looped here forever, power growing to inf).
    while power <= high and math.isfinite(power) and decades < 64:
        decades += 1
        for mult in (1, 2, 5):
            value = float(f"{mult * power:.12g}")
            if low <= value <= high:
                ticks[mult].append(value)
        power *= 10
    ordered = ticks[1] + ticks[5] + ticks[2]
    return ordered or [float(f"{low:.3g}"), float(f"{high:.3g}")]


def _start_s(stall: Mapping[str, Any]) -> float:
    """When a stall began, seconds since the start; 0 for a value that is not a number."""
    try:
        value = float(stall.get("started_at_s") or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _end_s(stall: Mapping[str, Any]) -> float:
    """When a stall ended, seconds since the start (its start for an unusable duration)."""
    try:
        ms = float(stall.get("duration_ms") or 0.0)
    except (TypeError, ValueError):
        ms = 0.0
    return _start_s(stall) + (ms / 1000 if math.isfinite(ms) and ms > 0 else 0.0)


def _fit(label: str, room: int) -> str:
    """*label* cut to *room* characters (the timeline's label column holds ~20)."""
    return label if len(label) <= room else label[: room - 1] + "…"


def _text_width(text: str) -> float:
    """The width of *text* in the charts' 11 px font, estimated on the wide side."""
    return 7.0 * len(text)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], num: Sequence[int] = (),
           cls: str = "") -> str:
    """An HTML table; *rows* cells are already-escaped HTML."""
    head = "".join(f'<th class="num">{h}</th>' if i in num else f"<th>{h}</th>"
                   for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    cls_attr = f' class="{cls}"' if cls else ""
    return f"<table{cls_attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def c(value: object, cls: str = "") -> str:
    """An escaped ``<code>`` element that may wrap after ``/`` and ``.`` (paths, qualnames)."""
    # <wbr> is inserted after escaping, so it cannot come from the report.
    text = e(value).replace("/", "/<wbr>").replace(".", ".<wbr>")
    return f'<code class="{cls}">{text}</code>' if cls else f"<code>{text}</code>"


def _frame_html(frame: Mapping[str, Any] | None) -> str:
    if not frame:
        return '<span class="muted">-</span>'
    return f"{c(frame.get('function', '?'))} {c(f.location(frame), 'muted')}"


class HtmlRenderer(Renderer):
    """A single HTML file that needs no network to view."""

    name = "html"
    aliases = ("htm",)
    extensions = (".html", ".htm")
    description = "one self-contained HTML page with charts"

    #: Rows in the "Top culprits" table.
    max_culprits = 10
    #: SVG coordinate widths; the charts scale to the page with CSS.
    width = 1200
    label_width = 130
    #: worker threads with a row of their own on the timeline (their stalls; the rest are
    #: counted under it and listed in "Worker-thread loops")
    max_worker_rows = 6

    def render(self, report: Report) -> str:
        """The whole HTML document, its figures from the report's model."""
        model = model_of(report)
        meta = report["meta"]
        verdict = model.verdict
        sections = [
            ("culprits", "Top culprits", self._culprits(model)),
            ("flame", "Where the blocked time went", self._flame(report)),
            ("timeline", "Timeline", self._timeline(model)),
            ("lag", "Loop lag", self._lag(model)),
            ("dispatcher", "Qt dispatcher", self._dispatcher(model)),
            ("stalls", "Stalls", self._stalls(model)),
            ("slow-callbacks", "Slow callbacks", self._slow_callbacks(model)),
            ("tasks", "Tasks", self._tasks(model)),
            ("blocking", "Blocking calls", self._blocking(model)),
            ("sampler", "Sampler", self._sampler(model)),
            ("handoffs", "Hand-offs", self._handoffs(model)),
            ("worker-loops", "Worker-thread loops", self._worker_loops(model)),
            ("affinity", "Thread affinity", self._affinity(model)),
            ("errors", "Detector errors", self._errors(model)),
        ]
        sections = [s for s in sections if s[2]]
        nav = "".join(f'<a href="#{sid}">{e(title)}</a>' for sid, title, _ in sections)
        body = "".join(f'<section id="{sid}"><h2>{e(title)}</h2>{html}</section>'
                       for sid, title, html in sections)
        facts = [
            ("loop", f.loop_text(report)),
            ("ran", f"{f.fmt_s(meta['duration_s'])}: {meta['started_at']} → {meta['ended_at']}"),
            ("threshold", f"{meta['threshold_ms']:g} ms"),
            ("exit", f.exit_text(report)),
            ("process", f"pid {meta['pid']}, Python {meta['python']} on {meta['platform']}"),
            ("detectors", f.detectors_text(report)),
        ]
        if meta.get("cwd"):
            facts.append(("cwd", meta["cwd"]))
        facts_html = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{e(_CSP)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>looptools report: {e(f.argv_text(report))}</title>"
            f"<style>{_CSS}</style></head>\n<body>"
            "<header><h1>looptools report</h1>"
            f'<p class="argv"><code>{e(f.argv_text(report))}</code></p>'
            f'<p class="verdict verdict-{verdict.level}" id="verdict">'
            f'<span class="label">{e(verdict.label)}</span>{e(verdict.text)}</p>'
            f"{self._also(model)}"
            f"{self._worst(model)}"
            f'<dl class="facts">{facts_html}</dl><nav>{nav}</nav></header>\n'
            f"<main>{body}</main>\n"
            f"<footer>looptools {e(report['tool']['version'])}, "
            f"report schema {e(report['schema_version'])}</footer>\n"
            f"<script>{_SCRIPT}</script>\n</body></html>\n"
        )

    # -- timeline ---------------------------------------------------------------------------

    def _timeline(self, model: ReportModel) -> str:
        report = model.report
        meta = report["meta"]
        stalls = report.get("stalls") or []
        dispatcher = model.dispatcher
        windows = dispatcher.busy_windows if dispatcher is not None else ()
        pending = list(model.tasks.over_time) if model.tasks is not None else []
        lag = list(model.lag.over_time) if model.lag is not None else []
        workers = self._worker_rows(model)
        span = max([float(meta["duration_s"]),
                    *(float(s["started_at_s"]) + float(s["duration_ms"]) / 1000 for s in stalls),
                    *(_end_s(stall) for _, row in workers for _, stall in row),
                    *(float(w[0]) + float(w[1]) / 1000 for w in windows),
                    *(t for t, _ in pending), *(t for t, _ in lag)])
        span = span if span > 0 else 1.0
        x0, x1 = self.label_width, self.width - 20
        scale = (x1 - x0) / span

        def x(seconds: float) -> float:
            return x0 + max(0.0, seconds) * scale

        row_h, gap, top = 26, 10, 10
        # (row, label, height) from the top; the lag row is taller: it has a scale.
        rows = [("stalls", f"stalls ({len(stalls)})", row_h)]
        lag_peak = max((ms for _, ms in lag), default=0.0)
        if lag:
            rows.append(("lag", f"lag (max {f.fmt_ms(lag_peak)})", 40))
        if dispatcher is not None:
            rows.append(("qt", f"Qt busy ({len(windows)})", row_h))
        # The task peak of the Tasks section (counted at every task creation); the series is
        # sampled at the audits and may never reach it.
        peak = float(model.tasks.peak) if model.tasks is not None else 0.0
        if pending:
            rows.append(("pending", f"pending tasks (peak {peak:g})", row_h))
        for i, (thread, _) in enumerate(workers):
            rows.append((f"worker-{i}", _fit(thread, 20), row_h))
        ys: dict[str, int] = {}
        y = top
        for key, _, h in rows:
            ys[key] = y
            y += h + gap
        axis_y = y
        height = axis_y + 36

        parts = [f'<svg class="chart" id="timeline-chart" xmlns="http://www.w3.org/2000/svg" '
                 f'viewBox="0 0 {self.width} {height}" width="{self.width}" height="{height}" '
                 'role="img" aria-label="timeline of stalls, lag, Qt busy windows, pending '
                 'tasks and worker-loop stalls">']
        step = _nice_step(span)
        tick = 0.0
        while tick <= span + 1e-9:
            tx = _num(x(tick))
            parts.append(f'<line class="grid" x1="{tx}" x2="{tx}" y1="{top}" y2="{axis_y}"/>'
                         f'<text class="tick" x="{tx}" y="{axis_y + 14}" text-anchor="middle">'
                         f"{_tick_label(tick, step)}</text>")
            tick = round(tick + step, 9)
        parts.append(f'<line class="axis" x1="{x0}" x2="{x1}" y1="{axis_y}" y2="{axis_y}"/>'
                     f'<text class="tick" x="{x1}" y="{axis_y + 31}" text-anchor="end">'
                     "seconds since start</text>")
        for key, label, h in rows:
            parts.append(f'<text x="8" y="{ys[key] + h / 2 + 4:g}">{e(label)}</text>')

        y = ys["stalls"]
        parts.append('<g class="row-stalls">')
        for index, stall in enumerate(stalls):
            width = max(2.0, float(stall["duration_ms"]) / 1000 * scale)
            tip = (f"stall {f.fmt_ms(stall['duration_ms'])} at {f.fmt_at(stall['started_at_s'])}: "
                   f"{f.stall_label(stall)} ({f.location(stall.get('culprit'))})")
            parts.append(
                f'<a href="#stall-{index}"><rect class="stall" '
                f'x="{_num(x(float(stall["started_at_s"])))}" y="{y}" width="{_num(width)}" '
                f'height="{row_h}"><title>{e(tip)}</title></rect></a>')
        parts.append("</g>")
        if lag:
            parts.append(self._lag_track(lag, x, lag_peak, float(meta["threshold_ms"]),
                                         ys["lag"], 40))
        if dispatcher is not None:
            y = ys["qt"]
            parts.append('<g class="row-qt">')
            for started_at_s, duration_ms in windows:
                width = max(2.0, float(duration_ms) / 1000 * scale)
                tip = f"Qt busy {f.fmt_ms(duration_ms)} at {f.fmt_at(started_at_s)}"
                parts.append(f'<rect class="qt" x="{_num(x(float(started_at_s)))}" y="{y}" '
                             f'width="{_num(width)}" height="{row_h}">'
                             f"<title>{e(tip)}</title></rect>")
            parts.append("</g>")
        if pending:
            parts.append(self._step_area(pending, x, peak or 1.0, ys["pending"], row_h))
        for i, (thread, row) in enumerate(workers):
            blocked = sum(_end_s(stall) - _start_s(stall) for _, stall in row) * 1000
            parts.append(f'<g class="row-worker"><title>{e(f"thread {thread}: ")}'
                         f"{len(row)} {'stall' if len(row) == 1 else 'stalls'} of its own "
                         f"asyncio loop, {e(f.fmt_ms(blocked))}</title>")
            for n, stall in row:
                start = _start_s(stall)
                width = max(2.0, (_end_s(stall) - start) * scale)
                rect = (f'<rect class="worker" x="{_num(x(start))}" y="{ys[f"worker-{i}"]}" '
                        f'width="{_num(width)}" height="{row_h}">'
                        f"<title>{e('worker-loop stall ' + f.worker_stall_text(stall))}</title>"
                        "</rect>")
                # Only the longest max_culprits have their stack below to link to.
                parts.append(f'<a href="#worker-stall-{n}">{rect}</a>'
                             if n < self.max_culprits else rect)
            parts.append("</g>")
        parts.append("</svg>")

        legend = ('<p class="legend muted"><span><i class="swatch" style="background:var(--stall)">'
                  "</i>stall (click for its stack)</span>")
        if lag:
            step_s = model.lag.over_time_step_s if model.lag is not None else None
            window = f"{step_s:g} s" if step_s is not None else "window"
            legend += ('<span><i class="swatch" style="background:var(--bar)"></i>'
                       f"loop lag: the largest in each {e(window)} (log scale; orange over "
                       "the threshold)</span>")
        if dispatcher is not None:
            legend += ('<span><i class="swatch" style="background:var(--qt)"></i>'
                       "Qt dispatcher busy window</span>")
        if pending:
            legend += ('<span><i class="swatch" style="background:var(--task)"></i>'
                       f"pending tasks, sampled at the task audits (peak {peak:g})</span>")
        if workers:
            legend += ('<span><i class="swatch" style="background:var(--worker)"></i>'
                       "a worker thread's own asyncio loop stalled (not the GUI's)</span>")
        legend += "</p>"
        more = len(model.worker_loops.stalls) - sum(len(row) for _, row in workers) \
            if model.worker_loops is not None else 0
        if more > 0:
            legend += (f'<p class="muted">{more} more worker-loop '
                       f'{"stall" if more == 1 else "stalls"} on other threads: see '
                       '<a href="#worker-loops">Worker-thread loops</a>.</p>')
        if not stalls:
            legend += f'<p class="muted">No stalls over {meta["threshold_ms"]:g} ms.</p>'
        return "".join(parts) + legend

    def _worker_rows(self, model: ReportModel
                     ) -> list[tuple[str, list[tuple[int, Mapping[str, Any]]]]]:
        """The kept worker-loop stalls by thread (:func:`flame.worker_threads`: name and
        ident, most blocked time first), at most ``max_worker_rows`` threads; labelled by
        name, with the ident only where threads share a name; each stall with its index
        in ``model.worker_loops.stalls`` (its ``worker-stall-N`` anchor)."""
        if model.worker_loops is None:
            return []
        index = {id(stall): n for n, stall in enumerate(model.worker_loops.stalls)}
        threads = [thread for thread in worker_threads(model.report)
                   if all(id(stack.stall) in index for stack in thread.stacks)]
        names = [thread.name for thread in threads]
        return [(thread.name if names.count(thread.name) == 1
                 else f"{thread.name} ({thread.ident})",
                 [(index[id(stack.stall)], stack.stall) for stack in thread.stacks])
                for thread in threads[: self.max_worker_rows]]

    @staticmethod
    def _lag_track(points: Sequence[tuple[float, float]], x: Callable[[float], float],
                   peak: float, threshold_ms: float, y: float, height: float) -> str:
        """Loop lag over time as one spike per point (``[t_s, ms]``) inside one timeline
        row, on a log scale (a 1 ms jitter and an 800 ms stall both show); spikes over the
        threshold in the second path, and the threshold as a dashed line."""
        base = y + height
        top = math.log10(1 + max(peak, threshold_ms, 1.0))

        def level(ms: float) -> float:
            return base - height * math.log10(1 + ms) / top

        under: list[str] = []
        over: list[str] = []
        for t, ms in points:
            (over if ms > threshold_ms else under).append(
                f"M{_num(x(t))} {_num(base)}V{_num(min(base - 1, level(ms)))}")
        worst_t, worst = max(points, key=lambda point: point[1])
        tip = (f"loop lag over time (log scale): the largest {f.fmt_ms(worst)} at "
               f"{f.fmt_at(worst_t)}; threshold {threshold_ms:g} ms")
        x_start, x_end = _num(x(0.0)), _num(x(points[-1][0]))
        ty = _num(level(threshold_ms))
        html = (f'<g class="row-lag"><title>{e(tip)}</title>'
                f'<line class="threshold" x1="{x_start}" x2="{x_end}" y1="{ty}" y2="{ty}"/>')
        if under:
            html += f'<path class="lag" d="{"".join(under)}"/>'
        if over:
            html += f'<path class="lag over" d="{"".join(over)}"/>'
        return html + "</g>"

    @staticmethod
    def _step_area(points: Sequence[tuple[float, float]], x: Callable[[float], float],
                   peak: float, y: float, height: float) -> str:
        """Pending-task count as a filled step chart inside one timeline row."""
        base = y + height

        def level(n: float) -> str:
            return _num(base - height * n / peak)

        coords = [f"{_num(x(points[0][0]))},{_num(base)}"]
        previous: str | None = None
        for t, n in points:
            if previous is not None:
                coords.append(f"{_num(x(t))},{previous}")
            previous = level(n)
            coords.append(f"{_num(x(t))},{previous}")
        coords.append(f"{_num(x(points[-1][0]))},{_num(base)}")
        tip = f"pending tasks, peak {peak:g}"
        return (f'<polygon class="pending" points="{" ".join(coords)}">'
                f"<title>{e(tip)}</title></polygon>")

    # -- lag ----------------------------------------------------------------------------------

    #: Widest bar: a few buckets do not spread over the whole width.
    max_slot_width = 48.0

    def _lag(self, model: ReportModel) -> str:
        lag = model.lag
        if lag is None:
            return '<p class="muted">Lag was not measured.</p>'
        cells = f.percentile_row(lag)
        over_time = (" Over time it is the lag row of the "
                     '<a href="#timeline">timeline</a>.' if lag.over_time else "")
        html = (f'<p class="muted">{e(f.lag_title(lag))}: how late the loop '
                f"ran a callback scheduled to run at once.{over_time}</p>"
                + _table([e(k) for k, _ in cells], [[e(v) for _, v in cells]],
                         num=range(len(cells)), cls="compact"))
        if not lag.slots:
            return html + '<p class="muted">No histogram in the report.</p>'
        return html + self._histogram(lag.slots, model.threshold_ms)

    @staticmethod
    def _dispatcher(model: ReportModel) -> str:
        """How busy the Qt dispatcher was (its busy windows are a row of the timeline)."""
        dispatcher = model.dispatcher
        if dispatcher is None:
            return ""
        return (f'<p class="muted">{e(dispatcher.name)}: the share of the time the Qt event '
                "loop was handling events rather than waiting for them. Its longest busy "
                'windows are a row of the <a href="#timeline">timeline</a>.</p>'
                + _table(["Qt busy", "iterations", "per second", "longest busy"],
                         [[e(f.fmt_pct(dispatcher.busy_fraction)), e(dispatcher.iterations),
                           e(f"{dispatcher.iterations_per_s:.0f}"
                             if dispatcher.iterations_per_s is not None else "-"),
                           e(f.fmt_ms(dispatcher.longest_busy_ms))]],
                         num=range(4), cls="compact"))

    def _histogram(self, slots: Sequence[tuple[float, float, float]], threshold_ms: float) -> str:
        """The lag histogram: a log x axis of lag (every bucket its own slot, so an empty
        stretch is a gap), a log y axis of samples, labels that never overlap."""
        height, top, bottom, left, right = 236, 30, 46, 70, 20
        plot_h = height - top - bottom
        lo, hi = math.log10(slots[0][0]), math.log10(slots[-1][1])
        span = hi - lo if hi > lo else 1.0
        slot_span = math.log10(slots[0][1] / slots[0][0]) or span
        plot_w = min(float(self.width - left - right), self.max_slot_width * span / slot_span)

        def x(value: float) -> float:
            return left + (math.log10(value) - lo) / span * plot_w

        peak = max(count for _, _, count in slots)
        log_peak = math.log10(peak + 1) or 1.0  # 0 for no samples, or a tiny fraction

        def y(count: float) -> float:
            return top + plot_h - plot_h * math.log10(count + 1) / log_peak

        base = top + plot_h
        parts = [f'<svg class="chart" id="lag-histogram" xmlns="http://www.w3.org/2000/svg" '
                 f'viewBox="0 0 {self.width} {height}" width="{self.width}" height="{height}" '
                 'role="img" aria-label="loop lag histogram, log scales">']
        # y axis: samples (log scale), labels at least a line apart: powers of ten; when
        # that leaves a single label (a peak under 10), 5s and 2s too, and failing those the
        # smallest and the largest count: two labels at least, so bar heights can be read.
        parts.append('<g class="y-axis">')
        counts = [count for _, _, count in slots if count > 0]
        ticks = _log_ticks(min(1.0, min(counts)), peak) if counts else []
        candidates = [(v, f"{v:g}") for v in ticks if v <= peak and math.log10(v) % 1 == 0]
        if counts and len(candidates) < 2 and (len(set(counts)) > 1 or peak != 1):
            candidates += [(v, f"{v:g}") for v in ticks if v <= peak]
            candidates += [(v, f"{v:.3g}") for v in (min(counts), peak)]
        placed: list[float] = []
        for value, label in candidates:
            ty = y(value)
            if any(abs(ty - other) < 14 for other in placed):
                continue
            placed.append(ty)
            parts.append(f'<line class="grid" x1="{left}" x2="{_num(left + plot_w)}" '
                         f'y1="{_num(ty)}" y2="{_num(ty)}"/>'
                         f'<text class="tick" x="{left - 6}" y="{_num(ty + 4)}" '
                         f'text-anchor="end">{e(label)}</text>')
        parts.append(f'<text class="tick" transform="translate(16 {_num(top + plot_h / 2)}) '
                     'rotate(-90)" text-anchor="middle">samples (log)</text></g>')
        # x axis: lag, log scale; 1-2-5 ticks, decades first, never two labels overlapping
        # (its grid goes under the bars, its labels after them)
        x_axis = [f'<g class="x-axis"><line class="axis" x1="{left}" '
                  f'x2="{_num(left + plot_w)}" y1="{base}" y2="{base}"/>']
        taken: list[tuple[float, float]] = []
        for value in _log_ticks(slots[0][0], slots[-1][1]):
            label = _lag_value(value)
            tx = x(value)
            half = _text_width(label) / 2 + 5
            if tx - half < 0 or tx + half > self.width or any(
                    tx - half < b and a < tx + half for a, b in taken):
                continue
            taken.append((tx - half, tx + half))
            parts.append(f'<line class="grid" x1="{_num(tx)}" x2="{_num(tx)}" y1="{top}" '
                         f'y2="{base + 4}"/>')
            x_axis.append(f'<text class="tick" x="{_num(tx)}" y="{base + 17}" '
                          f'text-anchor="middle">{e(label)}</text>')
        x_axis.append(f'<text class="tick" x="{_num(left + plot_w)}" y="{height - 8}" '
                      'text-anchor="end">lag (log scale); a bar is one bucket, empty buckets '
                      "are gaps</text></g>")
        # bars: one per bucket; an empty bucket is an empty slot
        parts.append('<g class="bars">')
        for lower, upper, count in slots:
            bx, bw = x(lower), x(upper) - x(lower)
            inset = min(bw * 0.12, 1.5)
            bar_h = max(1.0, base - y(count)) if count > 0 else 0.0
            cls = "bar" + (" over" if upper > threshold_ms else "") + ("" if count else " empty")
            samples = f"{count:.0f}" if count == int(count) else f"{count:g}"
            parts.append(
                f'<rect class="{cls}" x="{_num(bx + inset)}" y="{_num(base - bar_h)}" '
                f'width="{_num(max(0.5, bw - 2 * inset))}" height="{_num(bar_h)}" '
                f'data-upper="{upper:.6g}" data-count="{samples}"><title>'
                f"{e(_lag_range(lower, upper))}: {samples} samples</title></rect>")
        parts.append("</g>")
        parts += x_axis
        if slots[0][0] <= threshold_ms <= slots[-1][1]:
            tx = x(threshold_ms)
            label = f"threshold {threshold_ms:g} ms"
            anchor, lx = ("end", tx - 4) if tx + 4 + _text_width(label) > self.width else \
                ("start", tx + 4)
            parts.append(f'<g class="threshold-mark"><line class="threshold" x1="{_num(tx)}" '
                         f'x2="{_num(tx)}" y1="{top - 6}" y2="{base}"/><text class="tick" '
                         f'x="{_num(lx)}" y="{top - 10}" text-anchor="{anchor}">{e(label)}'
                         "</text></g>")
        parts.append("</svg>")
        note = (f'<p class="legend muted"><span><i class="swatch" style="background:var(--bar)">'
                f'</i>within the {threshold_ms:g} ms threshold</span><span><i class="swatch" '
                'style="background:var(--over)"></i>over the threshold</span></p>')
        return "".join(parts) + note

    # -- stalls and offenders -----------------------------------------------------------------

    def _worst(self, model: ReportModel) -> str:
        worst = model.worst
        if worst is None:
            return ""
        where = f" ({c(f.culprit_where(worst))})" if worst.frame else ""
        return (f'<p class="worst" id="worst"><span class="label">worst:</span> '
                f"{c(worst.function)}{where}, {e(f.culprit_cost(worst))}</p>")

    def _culprits(self, model: ReportModel) -> str:
        culprits = model.culprits
        if not culprits:
            return ""
        top = max(group.total_ms or 0.0 for group in culprits) or 1.0
        rows = []
        for rank, group in enumerate(culprits[: self.max_culprits], 1):
            meter = ""
            if group.total_ms is not None:
                width = max(1, round(120 * group.total_ms / top))
                meter = f'<span class="meter" style="width:{width}px"></span>'
            where = f'<br>{c(f.culprit_where(group), "muted")}' if group.frame else ""
            rows.append([
                f'<a href="#culprit-{rank}">{rank}</a>' if group.stalls else str(rank),
                c(group.function) + where, e(f.count_text(group)),
                meter + e(f.blocked_text(group)), e(f.fmt_ms(group.worst_ms)),
                e(f.at_text(group.first_s)), e(f.at_text(group.last_s)),
                e(f.kinds_text(group)),
            ])
        html = _table(["#", "culprit", "count", "blocked", "worst", "first", "last", "kinds"],
                      rows, num=(0, 2, 3, 4, 5, 6), cls="culprits")
        more = len(culprits) - self.max_culprits
        if more > 0:
            html += f'<p class="muted">… and {more} more.</p>'
        note = f.dropped_note(model.stalls)
        if note:
            html += f'<p class="muted">{e(note)}.</p>'
        return html

    def _stalls(self, model: ReportModel) -> str:
        ranked = model.stall_culprits
        stalls = model.stalls
        if not ranked:
            return ""
        head = (f'<p class="muted">{e(f.stalls_title(stalls))}'
                + (f"; {e(stalls.dropped)} more were counted but not kept"
                   if stalls.dropped else "")
                + ". One entry per culprit, numbered as in Top culprits; open one to see the "
                "stack of its longest stall (innermost last).</p>"
                '<p id="stall-tools" hidden>'
                '<button type="button" data-open="1">expand all</button> '
                '<button type="button" data-open="0">collapse all</button></p>')
        index = {id(stall): n for n, stall in enumerate(model.report.get("stalls") or [])}
        items = [self._stall_group(rank, group, index, is_open=n == 0)
                 for n, (rank, group) in enumerate(ranked)]
        return head + "".join(items)

    @staticmethod
    def _stall_group(rank: int, group: f.CulpritGroup, index: Mapping[int, int],
                     is_open: bool) -> str:
        """One culprit's stalls: ``<details id="culprit-N">``, each stall ``id="stall-I"``."""
        stall = group.stalls[0]
        culprit = stall.get("culprit")
        where = c(f.culprit_where(group), "muted") + " " if group.frame else ""
        badges = "".join(f'<span class="badge">{e(source)}</span>'
                         for source in f.stall_sources(group).split(", "))
        if group.count > 1:
            badges = f'<span class="badge">×{group.count}</span>' + badges
        summary_html = (
            f'<span class="dur">{e(f.fmt_ms(stall["duration_ms"]))}</span> '
            f'<span class="muted">#{rank}</span> {c(group.function)} {where}'
            f'<span class="muted">{"longest " if group.count > 1 else ""}'
            f'at {e(f.fmt_at(stall["started_at_s"]))}</span>{badges}')
        facts = []
        for key in ("callback", "task"):
            if stall.get(key):
                facts.append(f"{key} {c(stall[key])}")
        if stall.get("detected_after_ms") is not None:
            facts.append(f"seen after {e(f.fmt_ms(stall['detected_after_ms']))}")
        if stall.get("stack_source"):
            facts.append(f"stack: {e(stall['stack_source'])}")
        share = f.culprit_share(stall)
        if share:
            facts.append(e(share))
        times = ", ".join(
            f'<span id="stall-{index[id(s)]}">{e(f.fmt_ms(s["duration_ms"]))} at '
            f'{e(f.fmt_at(s["started_at_s"]))}</span>' for s in group.stalls)
        frames = []
        for frame in stall.get("stack") or []:
            cls = ' class="culprit"' if f.same_frame(frame, culprit) else ""
            frames.append(f"<li{cls}>{_frame_html(frame)}</li>")
        stack_html = (f'<ol class="stack mono">{"".join(frames)}</ol>' if frames
                      else '<p class="muted">No stack was captured.</p>')
        return (
            f'<details class="stall" id="culprit-{rank}"{" open" if is_open else ""}>'
            f"<summary>{summary_html}</summary><div class=\"body\">"
            f'<p class="times">{e(f.culprit_cost(group))}: {times}</p>'
            f'<p class="muted">{" · ".join(facts)}</p>{stack_html}</div></details>')

    def _slow_callbacks(self, model: ReportModel) -> str:
        callbacks = model.slow_callbacks
        if not callbacks:
            return ""
        top = max(float(cb["total_ms"]) for cb in callbacks) or 1.0
        rows = []
        for cb in callbacks:
            width = max(1, round(120 * float(cb["total_ms"]) / top))
            rows.append([
                c(cb["name"]), e(cb.get("kind", "")), c(cb["location"] or "?"), e(cb["count"]),
                f'<span class="meter" style="width:{width}px"></span>{e(f.fmt_ms(cb["total_ms"]))}',
                e(f.fmt_ms(cb["max_ms"])), e(f.fmt_ms(cb["p50_ms"])), e(f.fmt_ms(cb["p99_ms"])),
            ])
        return _table(["callback", "kind", "location", "count", "total", "max", "p50", "p99"],
                      rows, num=(3, 4, 5, 6, 7))

    # -- tasks, blocking calls, errors --------------------------------------------------------

    def _task_table(self, tasks: Sequence[Mapping[str, Any]]) -> str:
        rows = [[
            c(t["name"]), c(t["coro"]),
            e(f.fmt_s(t.get("age_s"))), _frame_html(t.get("created_at")),
            _frame_html(t.get("awaiting")), e(t.get("state") or ""),
        ] for t in tasks]
        return _table(["task", "coroutine", "age", "created at", "awaiting", "state"], rows,
                      num=(2,))

    def _tasks(self, model: ReportModel) -> str:
        tasks = model.tasks
        if tasks is None:
            return ""
        html = f"<p>{e(f.task_counts_text(tasks))}.</p>"
        leaked = tasks.leaked
        html += f"<h3>Pending at exit ({len(leaked)})</h3>"
        html += self._task_table(leaked) if leaked else '<p class="muted">None leaked.</p>'
        long_pending = tasks.long_pending
        if long_pending:
            after = tasks.long_pending_after_s
            label = f" (over {f.fmt_s(after)})" if after else ""
            html += f"<h3>Long pending{e(label)} ({len(long_pending)})</h3>"
            html += self._task_table(long_pending)
        lost = tasks.unretrieved
        if lost:
            html += f"<h3>Exceptions never retrieved ({len(lost)})</h3>"
            html += _table(["task", "coroutine", "exception", "message", "created at"], [[
                c(x.get("task") or "?"), c(x.get("coro") or "-"), c(x["exception"]),
                e(x["message"]),
                _frame_html(x.get("created_at")),
            ] for x in lost])
        return html

    def _blocking(self, model: ReportModel) -> str:
        blocking = model.blocking
        if not blocking:
            return ""
        timed = blocking.total_ms is not None
        rows = []
        for call in blocking.calls:
            where = "<br>".join(
                f"{_frame_html(s)}" + (f" ×{e(s['count'])}" if s.get("count") is not None else "")
                for s in call.sites) or '<span class="muted">-</span>'
            time = [e(f.blocking_time_text(call.total_ms, call.max_ms))] if timed else []
            rows.append([c(call.call), e(call.count), *time, where])
        return (f"<p>{e(f.blocking_title(blocking.count, blocking.total_ms))}.</p>"
                + _table(["call", "count", *(["time"] if timed else []), "sites"], rows,
                         num=(1, 2) if timed else (1,)))

    def _sampler(self, model: ReportModel) -> str:
        """What py-spy or yappi found: the stall culprits as it saw them, its top frames."""
        sampler = model.sampler
        if sampler is None:
            return ""
        html = f"<p>{e(f.sampler_title(sampler))}.</p>"
        if sampler.at_culprits:
            ranks = {id(group): rank for rank, group in model.stall_culprits}
            rows = [[
                f'<a href="#culprit-{ranks[id(found.group)]}">{ranks[id(found.group)]}</a>'
                if id(found.group) in ranks else "?",
                c(found.group.function) + f'<br>{c(f.culprit_where(found.group), "muted")}',
                e(f.culprit_cost(found.group)), e(f.sampler_culprit_text(found)),
            ] for found in sampler.at_culprits[: self.max_culprits]]
            html += ("<h3>At the stall culprits</h3><p class=\"muted\">What the sampler saw of "
                     "each culprit with stalls: it keeps no time per sample, so this is all its "
                     "time in the culprit's function, set next to the stalls' own.</p>"
                     + _table(["#", "culprit", "stalls", e(sampler.sampler)], rows, num=(0,)))
        for title, frames in (("Top frames by self time (innermost frame)", sampler.top_self),
                              ("Top frames on the stack", sampler.top_total)):
            if frames:
                html += f"<h3>{e(title)}</h3>" + _table(
                    ["function", "where", "time"],
                    [[c(row.function), c(f.sampler_where(row), "muted"),
                      e(f.sampler_amount(row))] for row in frames], num=(2,))
        files = {str(k): str(v) for k, v in sampler.files.items()}
        if files:
            html += ('<p class="muted">Its files: '
                     + ", ".join(f"{e(k)} {c(v)}" for k, v in sorted(files.items())) + ".</p>")
        return html

    # -- off the main loop: hand-offs, worker-thread loops, thread affinity -----------------

    @staticmethod
    def _also(model: ReportModel) -> str:
        """What the verdict (about the main loop) leaves out: worker-loop stalls, affinity."""
        also = f.off_loop_text(model)
        return f'<p class="also" id="verdict-also">also: {e(also)}</p>' if also else ""

    @staticmethod
    def _handoffs(model: ReportModel) -> str:
        rows = model.handoffs.rows
        if not rows:
            return ""
        cells = []
        for row in rows:
            via, thread, where, function, *figures = f.handoff_cells(row)
            site = f"{c(function)} {c(where, 'muted')}"
            held = f.handoff_held(row)
            if held is not None:
                site += (f'<br><span class="muted">the longest waited while</span> {c(held)} '
                         '<span class="muted">held the loop</span>')
            cells.append([c(via), c(thread), site, *(e(x) for x in figures)])
        return (f'<p class="muted">{e(f.handoffs_title(model.handoffs))}: how long work '
                "posted to the loop from another thread waited to run, worst p99 first.</p>"
                + _table(["via", "thread", "site", "count", "p50", "p99", "max"], cells,
                         num=(3, 4, 5, 6)))

    def _worker_loops(self, model: ReportModel) -> str:
        workers = model.worker_loops
        if workers is None:
            return ""
        rows = []
        for row in workers.threads:
            cells = f.worker_thread_cells(row)
            worst = row.get("worst")
            culprit = worst.get("culprit") if isinstance(worst, Mapping) else None
            rows.append([c(cells[0]), *(e(x) for x in cells[1:6]),
                         _frame_html(culprit) if culprit else e(cells[6])])
        html = (f"<p>{e(f.worker_loops_title(workers))}.</p>"
                "<p class=\"muted\">Their own loops, not the GUI's: not counted in the stalls "
                "above. The longest stalls, with their stacks (innermost last):</p>"
                + _table(["thread", "loops", "kinds", "ran", "stalls", "longest", "worst in"],
                         rows, num=(1, 3, 4, 5))
                + self._worker_health(workers))
        for n, stall in enumerate(workers.stalls[: self.max_culprits]):
            culprit = stall.get("culprit")
            frames = "".join(
                ('<li class="culprit">' if f.same_frame(frame, culprit) else "<li>")
                + f"{_frame_html(frame)}</li>" for frame in stall.get("stack") or [])
            stack = (f'<ol class="stack mono">{frames}</ol>' if frames else
                     f'<p class="muted">No stack ({e(stall.get("stack_source") or "none")}).</p>')
            html += (f'<details class="stall" id="worker-stall-{n}"{" open" if n == 0 else ""}>'
                     f"<summary>{e(f.worker_stall_text(stall))}</summary>"
                     f'<div class="body">{stack}</div></details>')
        return html

    @staticmethod
    def _worker_health(workers: WorkerLoopFigures) -> str:
        """Per thread its lag, tasks and blocking calls; the totals; the leaked tasks."""
        items = []
        for i, row in enumerate(workers.threads):
            health = f.worker_thread_health(row)
            calls = (f.worker_blocking_lines(workers.thread_blocking[i])
                     if i < len(workers.thread_blocking) else [])
            if health or calls:
                blocking = "".join(f'<li>blocking {c(call)}</li>' for call in calls)
                items.append(f"<li>{c(row.get('thread'))}: {e(health or 'no lag measured')}"
                             + (f"<ul>{blocking}</ul>" if blocking else "") + "</li>")
        html = f'<ul id="worker-health">{"".join(items)}</ul>' if items else ""
        totals = f.worker_totals_text(workers)
        if totals:
            html += f'<p class="muted">{e(totals[0].upper() + totals[1:])}.</p>'
        if workers.leaked:
            html += (f"<p>Leaked tasks ({len(workers.leaked)}):</p>"
                     '<ul id="worker-leaked">'
                     + "".join(f"<li>{c(f.worker_leaked_text(t))}</li>" for t in workers.leaked)
                     + "</ul>")
        return html

    @staticmethod
    def _affinity(model: ReportModel) -> str:
        rows = f.affinity_cells(model.affinity)
        if not rows:
            return ""
        return (f"<p>Thread-affinity violations ({f.counted(len(rows), 'site')}): a Qt object "
                "or an asyncio loop touched from a thread that does not own it.</p>"
                + _table(["call", "count", "site", "function", "thread", "owner", "object"],
                         [[c(row[0]), e(row[1]), c(row[2], "muted"), c(row[3]),
                           *(e(x) for x in row[4:])] for row in rows], num=(1,)))

    def _errors(self, model: ReportModel) -> str:
        errors = model.detector_errors
        if not errors:
            return ""
        return _table(["detector", "error"],
                      [[c(x["detector"]), e(x["error"])] for x in errors])

    # -- where the blocked time went (flame graph) --------------------------------------------

    #: Height of one row of the flame graph, in SVG units; what a label's character is taken
    #: to need (11 px system-ui: wider than any such font's average, so a label fits).
    flame_row = 18
    flame_char = 7.0

    def _flame(self, report: Report) -> str:
        """All stall stacks merged (``looptools.report.render.flame``) as an inline SVG icicle."""
        from looptools.report.render.flame import flame_graph, icicle, lines_text

        graph = flame_graph(report)
        threshold = f"{report['meta']['threshold_ms']:g} ms"
        if graph.unstacked == 0 and not graph.stacks:
            return f'<p class="muted">No stalls over {e(threshold)}: no blocked time to show.</p>'
        left_out = (f"{graph.unstacked} stall{'s' if graph.unstacked != 1 else ''} "
                    f"({f.fmt_ms(graph.unstacked_ms)}) had no stack")
        if not graph.stacks:
            return f'<p class="muted">{e(left_out)}: nothing to draw.</p>'
        total = graph.total_ms
        count = len(graph.stacks)
        intro = (f"{count} stall{'s' if count != 1 else ''} over {threshold}, "
                 f"{f.fmt_ms(total)} blocked, their stacks merged by function: the outermost "
                 "frame on top, each box as wide as the time the stalls through it blocked the "
                 "loop. Hover a box for its file, lines and share.")
        if graph.unstacked:
            intro += f" {left_out} and {'is' if graph.unstacked == 1 else 'are'} not drawn."
        boxes = icicle(graph, min_width=0.5 / self.width)
        if not boxes:  # stalls of no length (a report's own figures, unchecked)
            return (f'<p class="muted">{count} stall{"s" if count != 1 else ""} with a stack, '
                    f'{e(f.fmt_ms(total))} blocked: nothing to draw.</p>')
        rows = 1 + max(box.depth for box in boxes)
        row = self.flame_row
        height = rows * row
        parts = [f'<svg class="chart" id="flame-graph" xmlns="http://www.w3.org/2000/svg" '
                 f'viewBox="0 0 {self.width} {height}" width="{self.width}" height="{height}" '
                 f'role="img" aria-label="flame graph of the stall stacks, by blocked time">'
                 "<style>#flame-graph text { fill: #1d2330; pointer-events: none; }"
                 "#flame-graph g.frame:hover rect { stroke: var(--fg); stroke-width: 1; }"
                 "</style>"]
        for box in boxes:
            node = box.node
            x, width = box.x * self.width, box.width * self.width
            if box.depth == 0:
                fill = "hsl(220, 14%, 84%)"  # light in both colour schemes, like the others
                tip = (f"all {count} stalls with stacks\n{f.fmt_ms(total)} blocked"
                       f"{f', and {left_out}' if graph.unstacked else ''}")
                label = f"all stalls: {f.fmt_ms(total)}"
            else:
                # Application code warm, libraries grey-blue; the hue varies by name so that
                # neighbours differ, and the same function has one colour everywhere.
                hue = sum(node.function.encode()) % 36
                fill = (f"hsl({12 + hue}, 80%, {60 + hue % 3 * 4}%)" if node.application
                        else f"hsl({200 + hue}, 22%, {72 + hue % 3 * 4}%)")
                share = f.fmt_pct(node.ms / total)
                tip = (f"{node.function}\n{lines_text(node)}\n{f.fmt_ms(node.ms)}, {share} of "
                       f"the blocked time, {node.stalls} stall{'s' if node.stalls != 1 else ''}")
                if node.self_ms and node.children:
                    tip += f"\n{f.fmt_ms(node.self_ms)} with {node.function} innermost"
                label = node.function
            fits = int((width - 6) / self.flame_char)
            if len(label) > fits:
                label = label[: fits - 1] + "…" if fits >= 4 else ""
            text = (f'<text x="{_num(x + 3)}" y="{box.depth * row + 13}">{e(label)}</text>'
                    if label else "")
            parts.append(
                f'<g class="frame" data-ms="{node.ms:.3f}"><title>{e(tip)}</title>'
                f'<rect x="{_num(x)}" y="{box.depth * row}" width="{_num(max(width - 1, 0.5))}" '
                f'height="{row - 1}" fill="{fill}"/>{text}</g>')
        parts.append("</svg>")
        legend = ('<p class="legend muted"><span><i class="swatch" style="background:'
                  'hsl(25, 80%, 62%)"></i>application code</span><span><i class="swatch" '
                  'style="background:hsl(215, 22%, 74%)"></i>standard library and installed '
                  "packages</span><span>Also as a speedscope file: <code>looptools report "
                  "REPORT.json -f speedscope</code></span></p>")
        return f'<p class="muted">{e(intro)}</p>' + "".join(parts) + legend
