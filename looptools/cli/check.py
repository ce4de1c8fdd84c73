"""``looptools check``, ``baseline`` and ``diff``: gate CI on event-loop budgets.

Thin on purpose: reading, judging and comparing reports lives in
:mod:`looptools.gate` and :mod:`looptools.report.load`; this module turns their
results into text, GitHub annotations, JSON or JUnit XML, and into exit codes:

* 0 -- within budget / nothing got worse,
* 1 -- a budget was exceeded / something got worse,
* 2 -- the command could not judge: bad usage, a missing, truncated or invalid
  report, a bad budget or baseline.  Always one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import click

from looptools._jsonsafe import safe_text
from looptools._safewrite import why, write_file
from looptools.cli import FiniteFloat
from looptools.cli._oneline import EXIT_USAGE, OneLineCommand
from looptools.gate.baseline import (
    Tolerance,
    baseline_to_dict,
    load_baseline,
    make_baseline,
    tighten_baseline,
)
from looptools.gate.diff import Change, Diff, diff_reports
from looptools.gate.evaluate import Evaluation, Violation, evaluate
from looptools.gate.limits import BUDGET_KEYS, MAX_LIMIT, OFF, BudgetError, BudgetKey, load_budget
from looptools.gate.offenders import Location, Offender, plural, relative_file
from looptools.report.load import ReportError, display_path, load_report
from looptools.report.render._format import oneline

__all__ = ["baseline", "check", "diff"]

EXIT_OK = 0
EXIT_WORSE = 1
EXIT_ERROR = EXIT_USAGE  # a bad baseline or report is the user's error too

class _InputError(click.ClickException):
    """A usage or input error: one ``looptools check: ...`` line on stderr, exit status 2."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, who: str | None = None) -> None:
        super().__init__(message)
        # "looptools check: ...", as every command names itself (profile, report, ...);
        # taken now: the command's context is gone by the time click shows it.
        ctx = click.get_current_context(silent=True)
        name = ctx.command.name if ctx is not None else None
        self.who = who or (f"looptools {name}" if name else "looptools")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{self.who}: {safe_text(oneline(self.message))}", err=True)


def _fail(message: str) -> NoReturn:
    raise _InputError(message)


def _load(path: Path) -> dict[str, Any]:
    try:
        return load_report(path)
    except ReportError as exc:
        _fail(exc.message)


def _roots(report: dict[str, Any]) -> list[str | None]:
    """Directories culprit paths are shown relative to: here, then where the app ran."""
    return [str(Path.cwd()), (report.get("meta") or {}).get("cwd")]


def _where(loc: Offender | Location | None, roots: Sequence[str | None]) -> str:
    if loc is None or not loc.file:
        return "-"
    path = relative_file(loc.file, roots) or loc.file
    return oneline(f"{path}:{loc.line}" if loc.line is not None else path)


# --------------------------------------------------------------------------- budget flags


class _LimitParam(click.ParamType):
    """A budget value on the command line: a number, or ``off`` to leave it unchecked."""

    def __init__(self, key: BudgetKey) -> None:
        self.key = key
        self.name = "MS" if key.unit == "ms" else "N"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if value.strip().lower() == OFF:
            return OFF
        try:
            return float(value) if self.key.unit == "ms" else int(value)
        except ValueError:  # also an integer of over 4,300 digits
            unit = "a number of milliseconds" if self.key.unit == "ms" else "a whole number"
            shown = value if len(value) <= 40 else value[:37] + "..."
            self.fail(f"{shown!r} is not {unit} or 'off'", param, ctx)



def _budget_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for key in reversed(BUDGET_KEYS):
        default = "unchecked" if key.default is None else key.fmt(key.default)
        unit = "MS" if key.unit == "ms" else "N"
        func = click.option(
            key.flag, key.name, type=_LimitParam(key), default=None,
            help=f"{key.measures[0].upper()}{key.measures[1:]}: at most {unit}, or 'off'. "
                 f"Default: {default}.",
        )(func)
    return func


# --------------------------------------------------------------------------- check output


def _rows(evaluation: Evaluation, roots: Sequence[str | None]) -> list[tuple[str, ...]]:
    """(budget, actual, limit, culprit, what) rows, one per offender of each violation."""
    rows: list[tuple[str, ...]] = []
    for check in evaluation.checks:
        spec = check.budget_key
        for violation in check.violations:
            head = (violation.key, spec.fmt(violation.actual), spec.fmt(violation.limit))
            if not violation.offenders:
                rows.append((*head, _where(violation.site, roots), oneline(violation.message)))
                continue
            for i, offender in enumerate(violation.offenders):
                what = offender.describe() + (f" [{offender.note}]" if offender.note else "")
                rows.append((*(head if i == 0 else ("", "", "")), _where(offender, roots),
                             oneline(what)))
    return rows


def _stack_lines(violation: Violation, roots: Sequence[str | None]) -> list[str]:
    culprit = violation.culprit
    if culprit is None or not culprit.stack:
        return []
    names = [oneline(loc.function or "?") for loc in culprit.stack]
    width = max(map(len, names))
    return ["    stack, outermost first:"] + [
        f"      {name.ljust(width)}  {_where(loc, roots)}"
        for name, loc in zip(names, culprit.stack, strict=True)]


def _notes(evaluation: Evaluation, roots: Sequence[str | None],
           baseline_where: str | None) -> list[str]:
    lines = []
    for check in evaluation.checks:
        spec = check.budget_key
        if check.status == "pass":
            excused = f", {check.excused} excused" if check.excused else ""
            lines.append(f"ok: {check.key} {spec.fmt(check.actual)} <= "
                         f"{spec.fmt(check.limit)} ({check.source}{excused})")
    unchecked = [c.key for c in evaluation.checks if c.status == "unchecked"]
    if unchecked:
        lines.append(f"unchecked (no limit): {', '.join(unchecked)}")
    for check in evaluation.checks:
        if check.status == "unmeasured":
            lines.append(f"not measured: {check.key} (its detector was off in this run)")
    for offender, entry in evaluation.allowed:
        lines.append(f"allowed: {oneline(offender.describe())} at {_where(offender, roots)}, "
                     f"because \"{oneline(entry.reason)}\" ({entry.where})")
    if evaluation.baselined:
        lines.append(f"in baseline {baseline_where}: "
                     f"{plural(len(evaluation.baselined), 'offender')} not worse than recorded")
    for entry in evaluation.expired:
        lines.append(f"expired: allow-list entry {oneline(entry.describe())} ({entry.where}) "
                     f"expired on {entry.expires}; it no longer allows anything")
    for stale in evaluation.stale:
        lines.append(f"stale baseline entry: {oneline(stale.describe())} no longer occurs "
                     f"(tighten with: looptools baseline REPORT -o {baseline_where} --tighten)")
    return lines


def _table_text(rows: list[tuple[str, ...]]) -> list[str]:
    header = ("budget", "actual", "limit", "culprit", "what")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
            + "  " + row[4] for row in [header, *rows]]


def _print_text(evaluation: Evaluation, report_name: str, roots: Sequence[str | None],
                stack: bool, baseline_where: str | None) -> None:
    violations = evaluation.violations
    if violations:
        click.echo(f"looptools check: {report_name} is over budget "
                   f"({plural(len(violations), 'violation')})")
    else:
        click.echo(f"looptools check: {report_name} is within budget")
    rows = _rows(evaluation, roots)
    if rows and _stdout_is_terminal():
        _print_rich(rows, evaluation, roots, stack)
    elif rows:
        lines = _table_text(rows)
        click.echo(lines[0].rstrip())
        index = 1
        for violation in violations:
            for _ in violation.offenders or (None,):
                click.echo(lines[index].rstrip())
                index += 1
            if stack:
                for line in _stack_lines(violation, roots):
                    click.echo(line)
    for line in _notes(evaluation, roots, baseline_where):
        click.echo(line)


def _stdout_is_terminal() -> bool:
    # Plain text when piped or captured (CI logs, tests): stable and greppable; the rich
    # table on a terminal or with FORCE_COLOR, never with NO_COLOR or TERM=dumb.
    from looptools.cli import colour_wanted

    return colour_wanted()


def _print_rich(rows: list[tuple[str, ...]], evaluation: Evaluation,
                roots: Sequence[str | None], stack: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    for name in ("budget", "actual", "limit"):
        table.add_column(name, no_wrap=True)
    # Culprit and description share a cell so that the table fits 80 columns.
    table.add_column("culprit", overflow="fold")
    for key, actual, limit, culprit, what in rows:
        cell = Text()
        if culprit != "-":
            cell.append(culprit + "\n", style="bold cyan")
        cell.append(what)
        table.add_row(Text(key, style="red"), Text(actual), Text(limit), cell)
    console = Console()
    console.print(table)
    if stack:
        for violation in evaluation.violations:
            lines = _stack_lines(violation, roots)
            if lines:
                console.print(Text(f"  {violation.key}: {violation.message}"))
                for line in lines:
                    console.print(Text(line))


# GitHub workflow commands: https://docs.github.com/actions/using-workflows/workflow-commands
def _gh_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(value: str) -> str:
    return _gh_data(value).replace(":", "%3A").replace(",", "%2C")


def _annotation(level: str, message: str, file: str | None = None,
                line: int | None = None) -> str:
    props = []
    if file:
        props.append(f"file={_gh_property(file)}")
        if line is not None:
            props.append(f"line={line}")
    props.append("title=looptools")
    return f"::{level} {','.join(props)}::{_gh_data(message)}"


def github_annotations(evaluation: Evaluation, roots: Sequence[str | None]) -> list[str]:
    """GitHub workflow-command lines: an error at each culprit line, a notice per stale
    baseline entry, a warning per expired allow-list entry."""
    lines = []
    for violation in evaluation.violations:
        spec = next(k for k in BUDGET_KEYS if k.name == violation.key)
        if not violation.offenders:
            site = violation.site
            lines.append(_annotation("error", violation.message,
                                     relative_file(site.file, roots) if site else None,
                                     site.line if site else None))
        for offender in violation.offenders:
            text = (f"{offender.describe()}: {violation.key} is {spec.fmt(violation.limit)} "
                    f"(this run: {spec.fmt(violation.actual)})")
            if offender.note:
                text += f"; {offender.note}"
            lines.append(_annotation("error", text, relative_file(offender.file, roots),
                                     offender.line))
    for entry in evaluation.expired:
        lines.append(_annotation("warning", f"allow-list entry {entry.describe()} ({entry.where}) "
                                            f"expired on {entry.expires}"))
    for stale in evaluation.stale:
        lines.append(_annotation("notice", f"stale baseline entry: {stale.describe()} no longer "
                                           f"occurs; tighten the baseline",
                                 stale.file, stale.line))
    return lines


def _offender_json(offender: Offender, roots: Sequence[str | None]) -> dict[str, Any]:
    return {"kind": offender.kind, "label": offender.label, "function": offender.function,
            "file": offender.file, "path": relative_file(offender.file, roots),
            "line": offender.line, "count": offender.count, "max_ms": offender.max_ms,
            "description": offender.describe(), "note": offender.note or None}


def evaluation_json(evaluation: Evaluation, report_name: str,
                    roots: Sequence[str | None]) -> dict[str, Any]:
    """The ``--format json`` document of ``looptools check``."""
    return {
        "ok": evaluation.ok,
        "report": report_name,
        "checks": [{"key": c.key, "status": c.status, "limit": c.limit, "actual": c.actual,
                    "source": c.source, "excused": c.excused} for c in evaluation.checks],
        "violations": [{"key": v.key, "message": v.message, "actual": v.actual,
                        "limit": v.limit,
                        "offenders": [_offender_json(o, roots) for o in v.offenders]}
                       for v in evaluation.violations],
        "allowed": [{"offender": _offender_json(o, roots), "reason": e.reason,
                     "entry": e.where} for o, e in evaluation.allowed],
        "baselined": [_offender_json(o, roots) for o in evaluation.baselined],
        "expired_allow": [{"entry": e.where, "match": e.describe(),
                           "expires": e.expires.isoformat() if e.expires else None}
                          for e in evaluation.expired],
        "stale_baseline": [{"kind": s.kind, "label": s.label, "function": s.function,
                            "file": s.file, "line": s.line, "description": s.describe()}
                           for s in evaluation.stale],
    }


def junit_xml(evaluation: Evaluation, report_name: str, roots: Sequence[str | None]) -> bytes:
    """JUnit XML with one testcase per budget key; violations are ``<failure>``s."""
    failures = sum(1 for c in evaluation.checks if c.status == "fail")
    skipped = sum(1 for c in evaluation.checks if c.status in ("unchecked", "unmeasured"))
    counts = {"tests": str(len(evaluation.checks)), "failures": str(failures),
              "errors": "0", "skipped": str(skipped)}
    suites = ET.Element("testsuites", {"name": "looptools check", **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": "looptools.budget", **counts,
                                                "time": "0"})
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "report", "value": report_name})
    for check in evaluation.checks:
        spec = check.budget_key
        case = ET.SubElement(suite, "testcase", {"classname": "looptools.budget",
                                                 "name": check.key, "time": "0"})
        if check.status == "fail":
            for violation in check.violations:
                failure = ET.SubElement(case, "failure", {"type": check.key,
                                                          "message": oneline(violation.message)})
                failure.text = "\n".join(
                    f"{_where(o, roots)}: {oneline(o.describe())}"
                    + (f" [{oneline(o.note)}]" if o.note else "")
                    for o in violation.offenders) or oneline(violation.message)
        elif check.status == "unchecked":
            ET.SubElement(case, "skipped", {"message": "no limit set"})
        elif check.status == "unmeasured":
            ET.SubElement(case, "skipped", {"message": "not measured in this run"})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = (f"{spec.fmt(check.actual)} <= {spec.fmt(check.limit)} "
                        f"({check.source})")
    notes = _notes(evaluation, roots, None)
    if notes:
        ET.SubElement(suite, "system-out").text = "\n".join(oneline(n) for n in notes)
    ET.indent(suites)
    document: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


# --------------------------------------------------------------------------- commands


_FORMATS = click.Choice(["text", "github", "json"])


@click.command(cls=OneLineCommand)
@click.argument("report", type=click.Path(path_type=Path))
@click.option("--budget", "budget_file", type=click.Path(path_type=Path), metavar="FILE",
              help="Budget TOML (keys at top level or under [tool.looptools.budget]); "
                   "default: the nearest pyproject.toml with [tool.looptools.budget].")
@_budget_options
@click.option("--baseline", "baseline_file", type=click.Path(path_type=Path), metavar="FILE",
              help="Only offenders new since this baseline, or worse, count.")
@click.option("--format", "fmt", type=_FORMATS, default="text", show_default=True,
              help="github: workflow annotations at the culprit lines, then the text.")
@click.option("--junit", type=click.Path(), metavar="PATH",
              help="Also write JUnit XML: one testcase per budget key.")
@click.option("--stack", is_flag=True, help="Show the stack of each stall over budget.")
def check(report: Path, budget_file: Path | None, baseline_file: Path | None, fmt: str,
          junit: str | None, stack: bool, **limits: Any) -> None:
    """Fail (exit 1) when REPORT exceeds the event-loop budget.

    Limits come from flags, then the budget file, then the defaults. Exit status:
    0 within budget, 1 over budget, 2 on a usage error or a bad report, budget or
    baseline.
    """
    data = _load(report)
    report_name = display_path(report)
    overrides = {name: value for name, value in limits.items() if value is not None}
    try:
        budget = load_budget(budget_file, overrides)
        baseline = load_baseline(baseline_file) if baseline_file is not None else None
    except BudgetError as exc:
        _fail(str(exc))
    evaluation = evaluate(data, budget, baseline=baseline)
    roots = _roots(data)
    baseline_where = baseline.where if baseline is not None else None
    if junit is not None:
        try:
            write_file(junit, junit_xml(evaluation, report_name, roots))
        except OSError as exc:
            _fail(f"cannot write JUnit XML to {display_path(junit)}: {why(exc, junit)}")
    if fmt == "json":
        click.echo(json.dumps(evaluation_json(evaluation, report_name, roots), indent=2))
    else:
        if fmt == "github":
            for line in github_annotations(evaluation, roots):
                click.echo(line)
        _print_text(evaluation, report_name, roots, stack, baseline_where)
    sys.exit(EXIT_OK if evaluation.ok else EXIT_WORSE)


@click.command(cls=OneLineCommand)
@click.argument("report", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(), required=True, metavar="FILE",
              help="Baseline file to write (JSON); '-' for stdout.")
@click.option("--tighten", is_flag=True,
              help="If FILE exists, only drop entries that no longer occur and lower values "
                   "to today's; never add an offender.")
def baseline(report: Path, output: str, tighten: bool) -> None:
    """Record REPORT's offenders so `looptools check --baseline` fails only on new or worse.

    Stall culprits (longest stall), blocking-call sites (count), slow callbacks
    (longest) and tasks pending at exit (count), matched later by function and file.
    """
    data = _load(report)
    made = make_baseline(data, report_name=display_path(report))
    to_stdout = output == "-"
    if tighten and not to_stdout and Path(output).exists():
        try:
            made = tighten_baseline(load_baseline(Path(output)), made)
        except BudgetError as exc:
            _fail(str(exc))
    text = json.dumps(baseline_to_dict(made), indent=2) + "\n"
    if to_stdout:
        click.echo(text, nl=False)
        return
    try:
        write_file(output, text)
    except OSError as exc:
        _fail(f"cannot write baseline {display_path(output)}: {why(exc, output)}")
    kinds = [e.kind for e in made.entries]
    click.echo(f"looptools: wrote baseline {display_path(output)}: "
               f"{plural(kinds.count('stall'), 'stall culprit')}, "
               f"{plural(kinds.count('blocking_call'), 'blocking-call site')}, "
               f"{plural(kinds.count('slow_callback'), 'slow callback')}, "
               f"{plural(kinds.count('leaked_task'), 'leaked task')}")


def _change_line(change: Change, roots: Sequence[str | None]) -> str:
    where = _where(change.offender, roots) if change.offender is not None else "-"
    at = f" at {where}" if where != "-" else ""
    return f"{'worse' if change.worse else 'better':<7}{oneline(change.message)}{at}"


def diff_json(result: Diff, before: str, after: str,
              roots: Sequence[str | None]) -> dict[str, Any]:
    """The ``--format json`` document of ``looptools diff``."""
    return {
        "worse": bool(result.worse), "before": before, "after": after,
        "changes": [{"what": c.what, "message": c.message, "worse": c.worse,
                     "before": c.before, "after": c.after, "threshold": c.threshold,
                     "offender": _offender_json(c.offender, roots) if c.offender else None}
                    for c in result.changes],
    }


@click.command(cls=OneLineCommand)
@click.argument("before", type=click.Path(path_type=Path))
@click.argument("after", type=click.Path(path_type=Path))
@click.option("--tolerance", type=FiniteFloat(min=1.0, max=MAX_LIMIT), default=Tolerance.ratio,
              show_default=True, metavar="RATIO",
              help="A duration or count is worse above before x RATIO + slack.")
@click.option("--slack-ms", type=FiniteFloat(min=0.0, max=MAX_LIMIT), default=Tolerance.ms,
              show_default=True, metavar="MS", help="Slack added to durations.")
@click.option("--slack-count", type=click.IntRange(min=0, max=MAX_LIMIT),
              default=Tolerance.count,
              show_default=True, metavar="N", help="Slack added to counts.")
@click.option("--slack-busy", type=FiniteFloat(0.0, 1.0), default=Tolerance.busy,
              show_default=True, metavar="FRACTION",
              help="Worse when the dispatcher's busy fraction grows by more than this.")
@click.option("--format", "fmt", type=_FORMATS, default="text", show_default=True)
def diff(before: Path, after: Path, tolerance: float, slack_ms: float, slack_count: int,
         slack_busy: float, fmt: str) -> None:
    """Say what got worse from BEFORE to AFTER; exit 1 if anything did.

    New stall culprits, blocking calls, slow callbacks and leaked tasks; longer
    stalls, higher p99 lag, a busier dispatcher, more pending tasks. Exit status 2
    on a bad report.
    """
    old, new = _load(before), _load(after)
    result = diff_reports(old, new, Tolerance(tolerance, slack_ms, slack_count, slack_busy))
    roots = _roots(new)
    names = display_path(before), display_path(after)
    if fmt == "json":
        click.echo(json.dumps(diff_json(result, *names, roots), indent=2))
        sys.exit(EXIT_WORSE if result.worse else EXIT_OK)
    if fmt == "github":
        for change in result.worse:
            offender = change.offender
            click.echo(_annotation("error", change.message,
                                   relative_file(offender.file, roots) if offender else None,
                                   offender.line if offender else None))
    worse, better = len(result.worse), len(result.better)
    if worse:
        click.echo(f"looptools diff: {worse} worse, {better} better ({names[0]} -> {names[1]})")
    else:
        click.echo(f"looptools diff: nothing got worse, {better} better "
                   f"({names[0]} -> {names[1]})")
    for change in [*result.worse, *result.better]:
        click.echo(_change_line(change, roots))
    sys.exit(EXIT_WORSE if result.worse else EXIT_OK)
