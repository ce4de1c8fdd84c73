"""Event-loop budgets: what a report may contain before CI fails.

Pure functions over report dicts (the JSON contract in ``schema/report.schema.json``);
no click, no rich, no printing.  ``looptools check``, ``baseline`` and ``diff`` are
thin layers over this module.

The flow is one way::

    report dict --offenders()--> [Offender]  (stall culprits, blocking-call sites,
                                              slow callbacks, leaked tasks)
    budget file + flags --load_budget()--> Budget (limits, allow-list)
    baseline file --load_baseline()--> Baseline
    evaluate(report, budget, baseline) --> Evaluation (checks, violations, notes)
    diff_reports(before, after) --> Diff

Settings resolve in one order, highest first: command-line flags > the budget file
(``--budget FILE``, else ``[tool.looptools.budget]`` in the nearest ``pyproject.toml``
that has one) > :data:`BUDGET_KEYS` defaults.  A bad value's error says where it
came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from looptools import _jsonsafe
from looptools.report.load import display_path

__all__ = [
    "BASELINE_FORMAT",
    "BUDGET_KEYS",
    "OFF",
    "AllowEntry",
    "Baseline",
    "BaselineEntry",
    "Budget",
    "BudgetError",
    "BudgetKey",
    "Change",
    "CheckResult",
    "Diff",
    "Evaluation",
    "Location",
    "Offender",
    "Tolerance",
    "Violation",
    "baseline_to_dict",
    "diff_reports",
    "evaluate",
    "find_budget_file",
    "fmt_ms",
    "load_baseline",
    "load_budget",
    "make_baseline",
    "offenders",
    "parse_budget_table",
    "parse_limit",
    "plural",
    "relative_file",
    "tighten_baseline",
]

Limit = float | int
Kind = Literal["stall", "blocking_call", "slow_callback", "leaked_task"]

#: Written as a budget value (in a file: ``max_lag_p99_ms = "off"``; as a flag:
#: ``--max-stall-ms off``) to leave a key unchecked, e.g. to switch off a default.
OFF = "off"


class BudgetError(ValueError):
    """A budget or baseline could not be used; ``str()`` is one line saying where and why."""


# --------------------------------------------------------------------------- budget keys


@dataclass(frozen=True)
class BudgetKey:
    """One budget setting: its name, unit, default and what it measures."""

    name: str
    unit: Literal["ms", "count"]
    default: Limit | None
    measures: str

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--max-stall-ms``."""
        return "--" + self.name.replace("_", "-")

    def fmt(self, value: float | None) -> str:
        """``value`` in this key's unit, for people."""
        if value is None:
            return "-"
        return fmt_ms(value) if self.unit == "ms" else f"{value:g}"


#: Every budget key, in the order they are checked and shown.  Only
#: ``max_stall_ms`` has a default (see docs/ci.md for why): the others depend on
#: how long and how hard the app was driven, so only the project can choose them.
BUDGET_KEYS: tuple[BudgetKey, ...] = (
    BudgetKey("max_stall_ms", "ms", 250.0, "longest single stall"),
    BudgetKey("max_total_stall_ms", "ms", None, "sum of all stall durations"),
    BudgetKey("max_slow_callbacks", "count", None, "slow callbacks (sum of counts)"),
    BudgetKey("max_lag_p99_ms", "ms", None, "99th percentile loop lag"),
    BudgetKey("max_pending_tasks", "count", None, "peak number of pending tasks"),
    BudgetKey("max_leaked_tasks", "count", None, "tasks still pending at exit"),
    BudgetKey("max_blocking_calls", "count", None, "blocking calls on the loop thread"),
    BudgetKey("max_handoff_p99_ms", "ms", None,
              "99th percentile wait of work handed to the loop from another thread "
              "(the worst posting site)"),
    BudgetKey("max_worker_stall_ms", "ms", None,
              "longest stall of an asyncio loop on a worker thread (never the GUI loop's)"),
    BudgetKey("max_affinity_violations", "count", None,
              "call sites that touched a Qt object or the loop from a thread not its own"),
)
_KEYS: dict[str, BudgetKey] = {key.name: key for key in BUDGET_KEYS}
_ALLOW_KEYS = ("function", "file", "reason", "expires")


def fmt_ms(ms: float) -> str:
    """Milliseconds for people: ``3.2 ms``, ``412 ms``, ``1.25 s``."""
    if not math.isfinite(ms):
        return f"{ms} ms"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100 or ms == int(ms):
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _type_name(value: object) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
             list: "an array", dict: "a table", date: "a date", datetime: "a date-time"}
    return names.get(type(value), type(value).__name__)


#: The largest budget value: 10^15 ms is 31,000 years, and a count beyond it cannot occur.
#: Larger values (``--max-blocking-calls 1e400``, an integer of 400 digits) are refused
#: rather than overflow when compared or printed.
MAX_LIMIT = 10**15


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` for a message: short, one line, never raising (huge ints, deep lists)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_LIMIT:
        return "a huge integer"
    if isinstance(value, list | dict):
        return _type_name(value)
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return _type_name(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_limit(name: str, value: object, where: str) -> Limit | None:
    """Check one budget value; ``None`` means unchecked (the value was ``"off"``).

    Raises :class:`BudgetError` naming ``name`` and ``where`` when the key is unknown
    or the value has the wrong type or is out of range (below 0, above
    :data:`MAX_LIMIT`, not finite).
    """
    key = _KEYS.get(name)
    if key is None:
        raise BudgetError(f"budget key {_shown(name)} in {where} is not known"
                          f"{_did_you_mean(name, _KEYS)}")
    if isinstance(value, str) and value.strip().lower() == OFF:
        return None
    if key.unit == "ms":
        # The comparisons also refuse NaN and infinities (math.isfinite would raise
        # OverflowError on an integer of 400 digits).
        ok = isinstance(value, int | float) and not isinstance(value, bool) \
            and 0 <= value <= MAX_LIMIT
        if not ok:
            raise BudgetError(f"budget key {name!r} in {where} must be a number of milliseconds "
                              f">= 0 (at most 1e15) or \"off\", not {_shown(value)} "
                              f"({_type_name(value)})")
        return float(value)  # type: ignore[arg-type]
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_LIMIT):
        raise BudgetError(f"budget key {name!r} in {where} must be a whole number >= 0 "
                          f"(at most 1e15) or \"off\", not {_shown(value)} ({_type_name(value)})")
    return value


# --------------------------------------------------------------------------- allow-list


def _norm(file: str | None) -> str | None:
    return file.replace("\\", "/") if file else None


def _glob_file(file: str | None, pattern: str) -> bool:
    """``pattern`` matches the whole path or any trailing part of it.

    Reports hold absolute paths from whichever machine ran the app, so
    ``file = "sample_apps/*.py"`` must match ``/home/runner/work/x/sample_apps/a.py``.
    """
    path = _norm(file)
    if not path:
        return False
    pattern = pattern.replace("\\", "/")
    parts = PurePosixPath(path).parts
    return any(fnmatch.fnmatchcase("/".join(parts[i:]).replace("//", "/"), pattern)
               for i in range(len(parts))) or fnmatch.fnmatchcase(path, pattern)


def _glob_function(function: str | None, pattern: str) -> bool:
    if not function:
        return False
    # Frames may carry a qualified name (ChatWindow.on_send); match either form.
    return fnmatch.fnmatchcase(function, pattern) or \
        fnmatch.fnmatchcase(function.rsplit(".", 1)[-1], pattern)


@dataclass(frozen=True)
class AllowEntry:
    """One ``[[tool.looptools.budget.allow]]`` entry: offenders it excuses, and why."""

    reason: str
    where: str
    function: str | None = None
    file: str | None = None
    expires: date | None = None

    def expired(self, today: date) -> bool:
        """True after the ``expires`` day (the entry still allows on that day)."""
        return self.expires is not None and today > self.expires

    def matches(self, function: str | None, file: str | None) -> bool:
        """True when both given globs match (an entry has at least one)."""
        if self.function is not None and not _glob_function(function, self.function):
            return False
        return self.file is None or _glob_file(file, self.file)

    def describe(self) -> str:
        """``function="legacy_*" file="net/*.py"``, as written."""
        parts = [f'{name}="{value}"' for name, value in
                 (("function", self.function), ("file", self.file)) if value is not None]
        return " ".join(parts)


def _parse_expires(value: object, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise BudgetError(f"allow-list key 'expires' in {where} must be a date such as "
                      f"2026-12-31, not {_shown(value)} ({_type_name(value)})")


def _parse_allow(value: object, where: str) -> tuple[AllowEntry, ...]:
    if not isinstance(value, list):
        raise BudgetError(f"budget key 'allow' in {where} must be an array of tables "
                          f"([[...allow]] entries), not {_type_name(value)}")
    entries = []
    for index, item in enumerate(value, start=1):
        entry_where = f"{where} allow entry {index}"
        if not isinstance(item, dict):
            raise BudgetError(f"{entry_where} must be a table with function/file and reason, "
                              f"not {_type_name(item)}")
        for key in item:
            if key not in _ALLOW_KEYS:
                raise BudgetError(f"allow-list key {key!r} in {entry_where} is not known"
                                  f"{_did_you_mean(key, _ALLOW_KEYS)}")
        for key in ("function", "file", "reason"):
            if key in item and (not isinstance(item[key], str) or not item[key].strip()):
                raise BudgetError(f"allow-list key {key!r} in {entry_where} must be a non-empty "
                                  f"string, not {_shown(item[key])} ({_type_name(item[key])})")
        if "reason" not in item:
            raise BudgetError(f"{entry_where} needs a reason = \"...\" (why this offender is "
                              f"allowed)")
        if "function" not in item and "file" not in item:
            raise BudgetError(f"{entry_where} needs function = \"glob\" and/or file = \"glob\"")
        entries.append(AllowEntry(
            reason=item["reason"].strip(), where=entry_where,
            function=item.get("function"), file=item.get("file"),
            expires=_parse_expires(item["expires"], entry_where) if "expires" in item else None,
        ))
    return tuple(entries)


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    """Resolved limits (``None``: unchecked), where each came from, and the allow-list."""

    limits: Mapping[str, Limit | None]
    sources: Mapping[str, str]
    allow: tuple[AllowEntry, ...] = ()
    file: str | None = None

    @classmethod
    def defaults(cls) -> Budget:
        """The documented defaults, with nothing read from files or flags."""
        return cls({k.name: k.default for k in BUDGET_KEYS}, dict.fromkeys(_KEYS, "default"))


def parse_budget_table(table: Mapping[str, Any], where: str
                       ) -> tuple[dict[str, Limit | None], tuple[AllowEntry, ...]]:
    """Limits and allow-list from one budget table; errors name the key and ``where``."""
    limits: dict[str, Limit | None] = {}
    allow: tuple[AllowEntry, ...] = ()
    for name, value in table.items():
        if name == "allow":
            allow = _parse_allow(value, where)
        elif name not in _KEYS:
            raise BudgetError(f"budget key {name!r} in {where} is not known"
                              f"{_did_you_mean(name, [*_KEYS, 'allow'])}")
        else:
            limits[name] = parse_limit(name, value, where)
    return limits, allow


def _read_toml(path: Path) -> dict[str, Any]:
    name = display_path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise BudgetError(f"budget file {name} does not exist") from None
    except OSError as exc:
        raise BudgetError(f"cannot read budget file {name}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BudgetError(f"budget file {name} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise BudgetError(f"budget file {name} is not UTF-8 text") from None
    except RecursionError:
        raise BudgetError(f"budget file {name} is nested too deeply to read") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise BudgetError(f"budget file {name} cannot be read: {exc}") from None


def _section(data: Mapping[str, Any]) -> Any:
    tool = data.get("tool")
    looptools = tool.get("looptools") if isinstance(tool, dict) else None
    return looptools.get("budget") if isinstance(looptools, dict) else None


def find_budget_file(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` with ``[tool.looptools.budget]``."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and _section(_read_toml(candidate)) is not None:
            return candidate
    return None


def _table_from_file(path: Path) -> tuple[Mapping[str, Any], str]:
    data = _read_toml(path)
    name = display_path(path)
    section = _section(data)
    if section is not None:
        where = f"{name} [tool.looptools.budget]"
        if not isinstance(section, dict):
            raise BudgetError(f"{where} must be a table, not {_type_name(section)}")
        return section, where
    if "tool" in data:
        raise BudgetError(f"budget file {name} has no [tool.looptools.budget] table")
    # A budget file of its own may keep its keys at the top level.
    return data, name


def load_budget(path: Path | None = None, overrides: Mapping[str, object] | None = None,
                *, start: Path | None = None, search: bool = True) -> Budget:
    """Resolve the budget: ``overrides`` (flags) > ``path`` or found pyproject > defaults.

    ``overrides`` maps key names to values as given on the command line (``"off"`` to
    uncheck); its ``where`` is the flag.  With ``path`` None and ``search`` true, the
    nearest ``pyproject.toml`` above ``start`` (default: the current directory) holding
    ``[tool.looptools.budget]`` is used, if any.
    """
    limits: dict[str, Limit | None] = {k.name: k.default for k in BUDGET_KEYS}
    sources: dict[str, str] = dict.fromkeys(_KEYS, "default")
    allow: tuple[AllowEntry, ...] = ()
    file_where: str | None = None
    if path is None and search:
        path = find_budget_file(start)
    if path is not None:
        table, file_where = _table_from_file(path)
        file_limits, allow = parse_budget_table(table, file_where)
        limits.update(file_limits)
        sources.update(dict.fromkeys(file_limits, file_where))
    for name, value in (overrides or {}).items():
        where = _KEYS[name].flag if name in _KEYS else f"--{name.replace('_', '-')}"
        limits[name] = parse_limit(name, value, where)
        sources[name] = where
    return Budget(limits, sources, allow, file_where)


# --------------------------------------------------------------------------- offenders


@dataclass(frozen=True)
class Location:
    """One frame: function, file and line (line may be unknown)."""

    function: str | None
    file: str | None
    line: int | None

    @classmethod
    def from_frame(cls, frame: Any) -> Location | None:
        """A frame object of the report, or ``None`` when there is none."""
        if not isinstance(frame, Mapping):
            return None
        line = frame.get("line")
        return cls(frame.get("function") or None, frame.get("file") or None,
                   line if isinstance(line, int) else None)


_KIND_WORDS: dict[str, str] = {
    "stall": "stall", "blocking_call": "blocking call", "slow_callback": "slow callback",
    "leaked_task": "leaked task",
}
_SOURCE_WORDS: dict[str, str] = {
    "qt": "Qt dispatch", "callback": "asyncio callback", "task": "task step",
    "loop": "loop internals",
}


@dataclass(frozen=True)
class Offender:
    """Something in a report that counts against a budget, grouped by identity.

    Identity (what baselines and diffs match on) is ``kind``, ``label`` for blocking
    calls, slow callbacks and leaked tasks (call, callback name, coroutine), and
    ``function`` + ``file``; never the line, because lines move.  ``line`` is that of
    the worst occurrence.
    """

    kind: Kind
    label: str
    function: str | None
    file: str | None
    line: int | None
    count: int
    max_ms: float | None = None
    total_ms: float | None = None
    detail: str = ""
    stack: tuple[Location, ...] = ()
    note: str = ""

    def same(self, kind: str, label: str, function: str | None, file: str | None) -> bool:
        """True when this offender has that identity (files compare by trailing path)."""
        if kind != self.kind or not _same_function(function, self.function) \
                or not _same_file(file, self.file):
            return False
        return kind == "stall" or label == self.label

    def describe(self) -> str:
        """One line for people, e.g. ``stall of 412 ms in ChatWindow.on_send (Qt dispatch)``."""
        where = f" in {self.function}" if self.function else ""
        if self.kind == "stall":
            extra = [self.detail] if self.detail else []
            if self.count > 1:
                extra.append(f"{self.count} stalls")
            what = f" ({', '.join(extra)})" if extra else ""
            return f"stall of {fmt_ms(self.max_ms or 0.0)}{where or ' with no culprit frame'}{what}"
        if self.kind == "blocking_call":
            return (f"blocking call {self.label}{where} "
                    f"({plural(self.count, 'call')} on the loop thread)")
        if self.kind == "slow_callback":
            return (f"slow callback {self.label} ({plural(self.count, 'time')}, "
                    f"longest {fmt_ms(self.max_ms or 0.0)})")
        tasks = "" if self.count == 1 else f"{self.count} tasks "
        created = f", created in {self.function}" if self.function else ""
        awaiting = f", awaiting {self.detail}" if self.detail else ""
        return f"{tasks}{self.label} still pending at exit{created}{awaiting}"


def plural(count: float, word: str) -> str:
    """``1 call``, ``2 calls``."""
    return f"{count:g} {word}" + ("" if count == 1 else "s")


def _same_function(a: str | None, b: str | None) -> bool:
    if a == b:
        return True
    if not a or not b or ("." in a and "." in b):
        return False
    # Stacks read with faulthandler (GIL held) carry co_name only, sampled ones the
    # qualified name: "on_export_clicked" is "ChatWindow.on_export_clicked".
    return a.rsplit(".", 1)[-1] == b.rsplit(".", 1)[-1]


def _same_file(a: str | None, b: str | None) -> bool:
    a, b = _norm(a), _norm(b)
    if a is None or b is None:
        return a == b
    return a == b or a.endswith("/" + b.lstrip("./")) or b.endswith("/" + a.lstrip("./"))


def relative_file(file: str | None, roots: Sequence[str | os.PathLike[str] | None]) -> str | None:
    """``file`` relative to the first of ``roots`` it is inside, as a posix path.

    Used for display (GitHub wants paths relative to the checkout) and for baselines,
    which must match reports made in another directory or on another machine.
    """
    if not file:
        return file
    path = Path(file)
    if not path.is_absolute():
        return _norm(file)
    for root in roots:
        if not root:
            continue
        try:
            return path.relative_to(Path(root)).as_posix()
        except ValueError:
            continue
    return _norm(file)


def _stall_offenders(report: Mapping[str, Any]) -> list[Offender]:
    groups: dict[tuple[str | None, str | None], list[Mapping[str, Any]]] = {}
    for stall in report.get("stalls") or ():
        culprit = Location.from_frame(stall.get("culprit"))
        key = (culprit.function, _norm(culprit.file)) if culprit else (None, None)
        groups.setdefault(key, []).append(stall)
    found = []
    for stalls in groups.values():
        worst = max(stalls, key=lambda s: float(s["duration_ms"]))
        culprit = Location.from_frame(worst.get("culprit")) or Location(None, None, None)
        source = _SOURCE_WORDS.get(str(worst.get("source")), str(worst.get("source") or ""))
        if worst.get("task"):
            source = f"{source} of {worst['task']}"
        elif worst.get("callback") and worst.get("source") == "callback":
            source = f"{source} {worst['callback']}"
        stack = tuple(loc for loc in map(Location.from_frame, worst.get("stack") or ())
                      if loc is not None)
        found.append(Offender(
            "stall", culprit.function or "(unknown)", culprit.function, culprit.file,
            culprit.line, len(stalls), float(worst["duration_ms"]),
            sum(float(s["duration_ms"]) for s in stalls), source, stack))
    return found


def _blocking_offenders(report: Mapping[str, Any]) -> list[Offender]:
    found: list[Offender] = []
    for call in report.get("blocking_calls") or ():
        name = str(call.get("call"))
        sites = call.get("sites") or ()
        attributed = 0
        for site in sites:
            loc = Location.from_frame(site) or Location(None, None, None)
            count = int(site.get("count", 1))
            attributed += count
            for i, seen in enumerate(found):
                if seen.same("blocking_call", name, loc.function, loc.file):
                    line = seen.line if seen.count >= count else loc.line
                    found[i] = dataclasses.replace(seen, count=seen.count + count, line=line)
                    break
            else:
                found.append(Offender("blocking_call", name, loc.function, loc.file, loc.line,
                                      count))
        rest = int(call.get("count", 0)) - attributed
        if rest > 0:
            found.append(Offender("blocking_call", name, None, None, None, rest,
                                  detail="call site not recorded"))
    return found


def _split_location(location: str | None) -> tuple[str | None, int | None]:
    if not location:
        return None, None
    file, sep, line = location.rpartition(":")
    if sep and line.isdigit():
        return file, int(line)
    return location, None


def _slow_callback_offenders(report: Mapping[str, Any]) -> list[Offender]:
    found: list[Offender] = []
    for cb in report.get("slow_callbacks") or ():
        file, line = _split_location(cb.get("location"))
        name = str(cb.get("name"))
        # The callback's name is its function: allow-list globs match it.
        new = Offender("slow_callback", name, name, file, line, int(cb["count"]),
                       float(cb["max_ms"]), float(cb["total_ms"]), str(cb.get("kind") or ""))
        for i, seen in enumerate(found):
            if seen.same("slow_callback", name, name, file):
                found[i] = dataclasses.replace(
                    seen, count=seen.count + new.count,
                    max_ms=max(seen.max_ms or 0.0, new.max_ms or 0.0),
                    total_ms=(seen.total_ms or 0.0) + (new.total_ms or 0.0),
                    line=seen.line if (seen.max_ms or 0) >= (new.max_ms or 0) else line)
                break
        else:
            found.append(new)
    return found


def _leaked_offenders(report: Mapping[str, Any]) -> list[Offender]:
    tasks = report.get("tasks")
    found: list[Offender] = []
    for task in (tasks or {}).get("pending_at_exit") or ():
        created = Location.from_frame(task.get("created_at")) or Location(None, None, None)
        awaiting = Location.from_frame(task.get("awaiting"))
        coro = str(task.get("coro") or task.get("name"))
        detail = ""
        if awaiting is not None:
            detail = f"{awaiting.function or '?'}"
            if awaiting.file:
                line = f":{awaiting.line}" if awaiting.line is not None else ""
                detail += f" ({PurePosixPath(_norm(awaiting.file) or '').name}{line})"
        stack = (awaiting,) if awaiting is not None else ()
        for i, seen in enumerate(found):
            if seen.same("leaked_task", coro, created.function, created.file):
                found[i] = dataclasses.replace(seen, count=seen.count + 1)
                break
        else:
            found.append(Offender("leaked_task", coro, created.function, created.file,
                                  created.line, 1, detail=detail, stack=stack))
    return found


def offenders(report: Mapping[str, Any]) -> list[Offender]:
    """Every offender in ``report``: stall culprits, blocking-call sites, slow callbacks
    and tasks pending at exit, each grouped by identity (see :class:`Offender`)."""
    return [*_stall_offenders(report), *_blocking_offenders(report),
            *_slow_callback_offenders(report), *_leaked_offenders(report)]


def _allow_candidates(offender: Offender) -> list[tuple[str | None, str | None]]:
    pairs = [(offender.function, offender.file)]
    if offender.kind == "leaked_task":
        pairs.append((offender.label, offender.file))
        pairs.extend((loc.function, loc.file) for loc in offender.stack)
    return pairs


# --------------------------------------------------------------------------- baselines

#: ``"looptools_baseline"`` value of the baseline files this looptools writes and reads.
BASELINE_FORMAT = 1


@dataclass(frozen=True)
class Tolerance:
    """How much worse than before is still "the same".

    A duration is worse when ``after > before * ratio + ms``; a count when
    ``after > before * ratio + count``; the dispatcher's busy fraction when
    ``after > before + busy``.
    """

    ratio: float = 1.25
    ms: float = 10.0
    count: int = 1
    busy: float = 0.05

    def ms_limit(self, before: float) -> float:
        """The longest duration that is not worse than ``before``."""
        return before * self.ratio + self.ms

    def count_limit(self, before: float) -> float:
        """The largest count that is not worse than ``before``."""
        return before * self.ratio + self.count


@dataclass(frozen=True)
class BaselineEntry:
    """One offender recorded in a baseline: identity, and how bad it was then.

    Stalls and slow callbacks are compared by ``max_ms`` (how many there are depends
    on timing and run length); blocking calls and leaked tasks by ``count``.
    """

    kind: Kind
    label: str
    function: str | None
    file: str | None
    line: int | None
    count: int
    max_ms: float | None = None

    def matches(self, offender: Offender) -> bool:
        """True when ``offender`` is this entry's offender (function + file, not line)."""
        return offender.same(self.kind, self.label, self.function, self.file)

    def worse(self, offender: Offender, tolerance: Tolerance) -> str:
        """Why ``offender`` is worse than recorded, or ``""`` when it is not."""
        if self.kind in ("stall", "slow_callback"):
            before, after = self.max_ms or 0.0, offender.max_ms or 0.0
            if after > tolerance.ms_limit(before):
                return (f"{fmt_ms(after)}, was {fmt_ms(before)} in the baseline "
                        f"(worse above {fmt_ms(tolerance.ms_limit(before))})")
            return ""
        if offender.count > tolerance.count_limit(self.count):
            return (f"{offender.count}, was {self.count} in the baseline "
                    f"(worse above {math.floor(tolerance.count_limit(self.count))})")
        return ""

    def describe(self) -> str:
        """One line naming the entry, e.g. ``stall in ChatWindow.on_send (chat.py)``."""
        where = f" in {self.function}" if self.function and self.kind != "slow_callback" else ""
        file = f" ({self.file})" if self.file else ""
        label = "" if self.kind == "stall" else f" {self.label}"
        return f"{_KIND_WORDS[self.kind]}{label}{where}{file}"


@dataclass(frozen=True)
class Baseline:
    """Offenders accepted as they were on the day the baseline was made."""

    entries: tuple[BaselineEntry, ...]
    tolerance: Tolerance = Tolerance()
    where: str = "baseline"
    made_from: Mapping[str, Any] = field(default_factory=dict)


def make_baseline(report: Mapping[str, Any], *, roots: Sequence[str | None] = (),
                  report_name: str = "") -> Baseline:
    """Today's offenders of ``report``, with files relative to ``roots`` (default: the
    report's ``meta.cwd`` and the current directory) so the baseline matches elsewhere."""
    meta = report.get("meta") or {}
    roots = roots or (meta.get("cwd"), str(Path.cwd()))
    entries = tuple(
        BaselineEntry(o.kind, o.label, o.function, relative_file(o.file, roots), o.line,
                      o.count, o.max_ms)
        for o in offenders(report))
    made_from = {"report": report_name, "started_at": meta.get("started_at"),
                 "argv": list(meta.get("argv") or ()),
                 "looptools": (report.get("tool") or {}).get("version")}
    return Baseline(entries, Tolerance(), report_name, made_from)


def tighten_baseline(old: Baseline, new: Baseline) -> Baseline:
    """``old`` minus entries that no longer occur, with values lowered to ``new``'s.

    Never adds an offender and never raises a value: a baseline only tightens.
    """
    kept = []
    for entry in old.entries:
        probe = Offender(entry.kind, entry.label, entry.function, entry.file, entry.line,
                         entry.count, entry.max_ms)
        today = next((e for e in new.entries if e.matches(probe)), None)
        if today is None:
            continue
        max_ms = entry.max_ms if entry.max_ms is None or today.max_ms is None \
            else min(entry.max_ms, today.max_ms)
        kept.append(dataclasses.replace(entry, count=min(entry.count, today.count),
                                        max_ms=max_ms, line=today.line))
    return Baseline(tuple(kept), old.tolerance, old.where, new.made_from)


_KIND_KEYS: dict[str, Kind] = {"stalls": "stall", "blocking_calls": "blocking_call",
                               "slow_callbacks": "slow_callback", "leaked_tasks": "leaked_task"}


def baseline_to_dict(baseline: Baseline) -> dict[str, Any]:
    """The JSON document of a baseline file (see docs/ci.md, "Baselines")."""
    out: dict[str, Any] = {
        "looptools_baseline": BASELINE_FORMAT,
        "made_from": dict(baseline.made_from),
        # busy is a diff-only threshold: a baseline records no busy fraction.
        "tolerance": {k: v for k, v in dataclasses.asdict(baseline.tolerance).items()
                      if k != "busy"},
    }
    for section, kind in _KIND_KEYS.items():
        rows = []
        for e in baseline.entries:
            if e.kind != kind:
                continue
            row: dict[str, Any] = {"function": e.function, "file": e.file, "line": e.line}
            if kind == "stall":
                row.update(max_ms=round(e.max_ms or 0.0, 3), count=e.count)
            elif kind == "slow_callback":
                row = {"name": e.label, "file": e.file, "line": e.line,
                       "max_ms": round(e.max_ms or 0.0, 3), "count": e.count}
            elif kind == "blocking_call":
                row = {"call": e.label, **row, "count": e.count}
            else:
                row = {"coro": e.label, **row, "count": e.count}
            rows.append(row)
        out[section] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    return out


def _baseline_error(where: str, problem: str) -> BudgetError:
    return BudgetError(f"baseline {where} {problem}")


_BASELINE_NAME_KEYS: dict[str, str] = {"stall": "function", "slow_callback": "name",
                                        "blocking_call": "call", "leaked_task": "coro"}


def _baseline_row(row: object, kind: Kind, at: str, where: str) -> BaselineEntry:
    """One entry of a baseline file, its fields checked (an error names ``at``)."""
    if not isinstance(row, dict):
        raise _baseline_error(where, f"has a malformed entry {at}: expected an object, "
                                     f"not {_type_name(row)}")

    def field(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise _baseline_error(where, f"has a malformed entry {at}: {key!r} must be "
                                         f"{expected}, not {_shown(row[key])}")

    for key in ("function", "file", "name", "call", "coro"):
        if key in row:
            field(key, row[key] is None or isinstance(row[key], str), "a string or null")
    line, count, max_ms = row.get("line"), row.get("count", 0), row.get("max_ms")
    if "line" in row:
        field("line", line is None or (isinstance(line, int) and not isinstance(line, bool)),
              "an integer or null")
    if "count" in row:
        field("count", isinstance(count, int) and not isinstance(count, bool) and count >= 0,
              "a whole number >= 0")
    if "max_ms" in row:
        field("max_ms", max_ms is None or (isinstance(max_ms, int | float)
                                           and not isinstance(max_ms, bool)), "a number or null")
    name = row.get(_BASELINE_NAME_KEYS[kind])
    label = (name or "(unknown)") if kind == "stall" else str(name)
    function = row.get("name") if kind == "slow_callback" else row.get("function")
    return BaselineEntry(kind, label, function, row.get("file"), line, count,
                         float(max_ms) if max_ms is not None else None)


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file written by ``looptools baseline``.

    Raises :class:`BudgetError` (one line naming the file, and the entry when one is
    malformed) for a file that is missing, not JSON, not a baseline, or holds values
    of the wrong type, numbers that are not finite or out of range, or deep nesting.
    """
    where = display_path(path)
    from looptools.report.load import TooBig, read_capped

    try:
        data = _jsonsafe.loads(read_capped(path))
    except TooBig:
        raise _baseline_error(where, "is too large to be a baseline") from None
    except FileNotFoundError:
        raise _baseline_error(where, "does not exist") from None
    except _jsonsafe.UnsafeJSON as exc:
        raise _baseline_error(where, f"cannot be used: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _baseline_error(where, f"is not valid JSON: {exc.msg} at line {exc.lineno}"
                              ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _baseline_error(where, f"cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("looptools_baseline") != BASELINE_FORMAT:
        raise _baseline_error(where, f"is not a looptools baseline (format "
                                     f"{BASELINE_FORMAT}); write one with `looptools baseline`")
    tol = data.get("tolerance") or {}
    if not isinstance(tol, dict) or any(
            isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in tol.values()):
        raise _baseline_error(where, "has a bad tolerance: expected numbers >= 0 for ratio, "
                                     "ms and count")
    tolerance = Tolerance(**{k: tol[k] for k in ("ratio", "ms", "count") if k in tol})
    entries: list[BaselineEntry] = []
    for section, kind in _KIND_KEYS.items():
        rows = data.get(section) or []
        if not isinstance(rows, list):
            raise _baseline_error(where, f"has a malformed {section!r}: expected an array, "
                                         f"not {_type_name(rows)}")
        entries.extend(_baseline_row(row, kind, f"{section}[{index}]", where)
                       for index, row in enumerate(rows))
    made_from = data.get("made_from")
    return Baseline(tuple(entries), tolerance, where,
                    made_from if isinstance(made_from, dict) else {})


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Violation:
    """One way a report broke its budget; ``offenders`` are the culprits, worst first."""

    key: str
    message: str
    actual: float | None
    limit: Limit
    offenders: tuple[Offender, ...] = ()

    @property
    def culprit(self) -> Offender | None:
        """The worst offender, if the violation can be pinned on one."""
        return self.offenders[0] if self.offenders else None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one budget key.

    ``status`` is ``pass``, ``fail``, ``unchecked`` (no limit) or ``unmeasured`` (a
    default limit on something this report did not measure; an explicit limit on it
    fails instead, so that switching a detector off cannot silently pass CI).
    """

    key: str
    status: Literal["pass", "fail", "unchecked", "unmeasured"]
    limit: Limit | None
    actual: float | None
    source: str
    violations: tuple[Violation, ...] = ()
    excused: int = 0

    @property
    def budget_key(self) -> BudgetKey:
        """The :class:`BudgetKey` this result is about."""
        return _KEYS[self.key]


@dataclass(frozen=True)
class Evaluation:
    """Everything ``looptools check`` reports about one report and budget."""

    checks: tuple[CheckResult, ...]
    allowed: tuple[tuple[Offender, AllowEntry], ...] = ()
    baselined: tuple[Offender, ...] = ()
    expired: tuple[AllowEntry, ...] = ()
    stale: tuple[BaselineEntry, ...] = ()

    @property
    def violations(self) -> list[Violation]:
        """Every violation, in budget-key order."""
        return [v for check in self.checks for v in check.violations]

    @property
    def ok(self) -> bool:
        """True when the report is within budget."""
        return not self.violations


_MEASURED_BY: dict[str, str] = {
    "max_stall_ms": "stalls", "max_total_stall_ms": "stalls",
    "max_slow_callbacks": "slow_callbacks", "max_lag_p99_ms": "lag",
    "max_pending_tasks": "tasks", "max_leaked_tasks": "tasks",
    "max_blocking_calls": "blocking", "max_handoff_p99_ms": "handoffs",
    "max_worker_stall_ms": "worker_loops", "max_affinity_violations": "affinity",
}
_KEY_KINDS: dict[str, Kind] = {
    "max_stall_ms": "stall", "max_total_stall_ms": "stall", "max_slow_callbacks": "slow_callback",
    "max_leaked_tasks": "leaked_task", "max_blocking_calls": "blocking_call",
}


def _measured(report: Mapping[str, Any], detector: str) -> bool:
    detectors = (report.get("meta") or {}).get("detectors") or ()
    if detector == "lag":
        return report.get("lag") is not None
    if detector == "tasks":
        return report.get("tasks") is not None
    if detector == "handoffs":
        return isinstance(report.get("handoffs"), list)
    if detector in ("worker_loops", "affinity"):
        return isinstance(report.get(detector), Mapping)
    if detector == "slow_callbacks" and not (report.get("loop") or {}).get("callback_timing"):
        return False
    return detector in detectors


def _actual(key: str, report: Mapping[str, Any], counting: list[Offender],
            excused: list[Offender]) -> float:
    if key == "max_stall_ms":
        if counting:
            return max(o.max_ms or 0.0 for o in counting)
        # Every stall dropped by the cap: only the summary knows how long the worst was.
        summary = report.get("stall_summary") or {}
        return 0.0 if excused or report.get("stalls") else float(summary.get("max_ms", 0.0))
    if key == "max_total_stall_ms":
        total = float((report.get("stall_summary") or {}).get("total_ms", 0.0))
        return max(0.0, total - sum(o.total_ms or 0.0 for o in excused))
    if key == "max_lag_p99_ms":
        return float(report["lag"]["p99_ms"])
    if key == "max_pending_tasks":
        return float(report["tasks"]["peak_pending"])
    if key == "max_handoff_p99_ms":
        return max((float(row.get("p99_ms") or 0.0) for row in _handoff_rows(report)),
                   default=0.0)
    if key == "max_worker_stall_ms":
        summary = report["worker_loops"].get("stall_summary")
        return float(summary.get("max_ms") or 0.0) if isinstance(summary, Mapping) else 0.0
    if key == "max_affinity_violations":
        dropped = report["affinity"].get("dropped")
        return float(len(_affinity_rows(report))
                     + (dropped if isinstance(dropped, int) and dropped > 0 else 0))
    return float(sum(o.count for o in counting))


def _affinity_rows(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    affinity = report.get("affinity")
    rows = affinity.get("violations") if isinstance(affinity, Mapping) else None
    return [row for row in rows if isinstance(row, Mapping)] if isinstance(rows, list) else []


def _where(frame: Any, otherwise: str = "?") -> str:
    """``function (file:line)`` of a report's frame, or ``otherwise``."""
    if not isinstance(frame, Mapping) or not frame:
        return otherwise
    return f"{frame.get('function')} ({frame.get('file')}:{frame.get('line')})"


def _first_affinity_violation(report: Mapping[str, Any]) -> str:
    rows = _affinity_rows(report)
    if not rows:
        return ""
    row = rows[0]
    where = _where(row.get("site"))
    calling = row.get("calling_thread")
    thread = f", thread {calling.get('name')}" if isinstance(calling, Mapping) else ""
    return f" (first: {row.get('call')} from {where}{thread}, x{row.get('count')})"


def _handoff_rows(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = report.get("handoffs")
    return [row for row in rows if isinstance(row, Mapping)] if isinstance(rows, list) else []


def _worst_handoff(report: Mapping[str, Any]) -> str:
    rows = sorted(_handoff_rows(report), key=lambda r: -float(r.get("p99_ms") or 0.0))
    if not rows:
        return ""
    row = rows[0]
    where = _where(row.get("site"))
    during = row.get("worst_during_stall_in")
    held = f"; the longest waited while {during.get('function')} held the loop" \
        if isinstance(during, Mapping) else ""
    return (f" (worst: {row.get('via')} from {where}, thread {row.get('thread')}, "
            f"{row.get('count')} hand-offs, max {fmt_ms(float(row.get('max_ms') or 0.0))}{held})")


def _worst_worker_stall(report: Mapping[str, Any]) -> str:
    workers = report.get("worker_loops")
    stalls = workers.get("stalls") if isinstance(workers, Mapping) else None
    rows = [s for s in stalls if isinstance(s, Mapping)] if isinstance(stalls, list) else []
    if not rows:
        return ""
    stall = max(rows, key=lambda s: float(s.get("duration_ms") or 0.0))
    where = _where(stall.get("culprit"), str(stall.get("callback") or "?"))
    return (f" (worst: {where}, thread {stall.get('thread')}, {stall.get('loop_kind')} loop, "
            f"{fmt_ms(float(stall.get('duration_ms') or 0.0))})")


def _sort_worst(items: Iterable[Offender]) -> list[Offender]:
    return sorted(items, key=lambda o: (-(o.max_ms or 0.0), -o.count, o.label))


def _violations(key: str, limit: Limit, actual: float, counting: list[Offender],
                report: Mapping[str, Any] | None = None) -> tuple[Violation, ...]:
    spec = _KEYS[key]
    if actual <= limit:
        return ()
    limit_text = f"{key} = {spec.fmt(limit)}"
    if key == "max_stall_ms":
        over = [o for o in _sort_worst(counting) if (o.max_ms or 0.0) > limit]
        if not over:
            return (Violation(key, f"longest stall {fmt_ms(actual)} (culprit not kept in the "
                                   f"report) exceeds {limit_text}", actual, limit),)
        return tuple(Violation(key, f"{o.describe()} exceeds {limit_text}", o.max_ms, limit, (o,))
                     for o in over)
    words = {
        "max_total_stall_ms": f"total stall time {fmt_ms(actual)}",
        "max_slow_callbacks": plural(actual, "slow callback"),
        "max_lag_p99_ms": f"loop lag p99 {fmt_ms(actual)}",
        "max_pending_tasks": f"peak of {plural(actual, 'pending task')}",
        "max_leaked_tasks": f"{plural(actual, 'task')} still pending at exit",
        "max_blocking_calls": f"{plural(actual, 'blocking call')} on the loop thread",
        "max_handoff_p99_ms": f"hand-off wait p99 {fmt_ms(actual)}",
        "max_worker_stall_ms": f"longest worker-loop stall {fmt_ms(actual)}",
        "max_affinity_violations":
            f"{plural(actual, 'call site')} touching a Qt object or the loop from another thread",
    }
    if key == "max_total_stall_ms":
        ordered = sorted(counting, key=lambda o: -(o.total_ms or 0.0))
    elif key == "max_slow_callbacks":
        ordered = sorted(counting, key=lambda o: (-o.count, -(o.max_ms or 0.0)))
    else:
        ordered = _sort_worst(counting)
    worst = f" (worst: {ordered[0].describe()})" if ordered else ""
    if key == "max_handoff_p99_ms" and report is not None:
        worst = _worst_handoff(report)
    if key == "max_worker_stall_ms" and report is not None:
        worst = _worst_worker_stall(report)
    if key == "max_affinity_violations" and report is not None:
        worst = _first_affinity_violation(report)
    return (Violation(key, f"{words[key]} exceeds {limit_text}{worst}", actual, limit,
                      tuple(ordered)),)


def evaluate(report: Mapping[str, Any], budget: Budget, *, baseline: Baseline | None = None,
             today: date | None = None) -> Evaluation:
    """Check ``report`` against ``budget``.

    An offender excused by a live allow-list entry, or present in ``baseline`` and
    not worse beyond its tolerance, does not count against any budget.  An offender
    matched only by an expired entry counts, and says so in its ``note``.
    """
    today = today or date.today()
    allowed: list[tuple[Offender, AllowEntry]] = []
    baselined: list[Offender] = []
    counting: list[Offender] = []
    used_baseline: set[int] = set()
    for offender in offenders(report):
        # Matched first, so that an entry whose offender is also allowed is not stale.
        index = None if baseline is None else next(
            (i for i, e in enumerate(baseline.entries) if e.matches(offender)), None)
        if index is not None:
            used_baseline.add(index)
        pairs = _allow_candidates(offender)
        matching = [e for e in budget.allow if any(e.matches(f, p) for f, p in pairs)]
        live = [e for e in matching if not e.expired(today)]
        if live:
            allowed.append((offender, live[0]))
            continue
        notes = [f"allow-list entry {e.describe()} ({e.where}) expired on {e.expires}"
                 for e in matching]
        if baseline is not None:
            if index is not None:
                why = baseline.entries[index].worse(offender, baseline.tolerance)
                if not why:
                    baselined.append(offender)
                    continue
                notes.append(f"worse than baseline: {why}")
            else:
                notes.append(f"new since the baseline {baseline.where}".rstrip())
        counting.append(dataclasses.replace(offender, note="; ".join(notes)))

    checks = []
    for spec in BUDGET_KEYS:
        key, limit = spec.name, budget.limits.get(spec.name)
        source = budget.sources.get(key, "default")
        kind = _KEY_KINDS.get(key)
        mine = [o for o in counting if o.kind == kind]
        excused = [o for o, _ in allowed if o.kind == kind] + \
            [o for o in baselined if o.kind == kind]
        if limit is None:
            checks.append(CheckResult(key, "unchecked", None, None, source))
            continue
        if not _measured(report, _MEASURED_BY[key]):
            if source == "default":
                checks.append(CheckResult(key, "unmeasured", limit, None, source))
                continue
            message = (f"{key} is set ({source}) but this report did not measure it "
                       f"(the {_MEASURED_BY[key]} detector was off)")
            checks.append(CheckResult(key, "fail", limit, None, source,
                                      (Violation(key, message, None, limit),)))
            continue
        actual = _actual(key, report, mine, excused)
        found = _violations(key, limit, actual, mine, report)
        checks.append(CheckResult(key, "fail" if found else "pass", limit, actual, source,
                                  found, len(excused)))
    stale = tuple(e for i, e in enumerate(baseline.entries) if i not in used_baseline) \
        if baseline is not None else ()
    expired = tuple(e for e in budget.allow if e.expired(today))
    return Evaluation(tuple(checks), tuple(allowed), tuple(baselined), expired, stale)


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    """One difference between two reports; ``worse`` ones make ``looptools diff`` fail."""

    what: str
    message: str
    worse: bool
    before: float | None = None
    after: float | None = None
    threshold: float | None = None
    offender: Offender | None = None


@dataclass(frozen=True)
class Diff:
    """What changed from one report to another."""

    changes: tuple[Change, ...]

    @property
    def worse(self) -> list[Change]:
        """The changes for the worse."""
        return [c for c in self.changes if c.worse]

    @property
    def better(self) -> list[Change]:
        """The changes for the better."""
        return [c for c in self.changes if not c.worse]


def _compare_ms(what: str, before: float | None, after: float | None,
                tol: Tolerance) -> Change | None:
    if before is None or after is None:
        return None
    limit = tol.ms_limit(before)
    if after > limit:
        return Change(what, f"{what} {fmt_ms(before)} -> {fmt_ms(after)} "
                            f"(worse above {fmt_ms(limit)})", True, before, after, limit)
    if before > tol.ms_limit(after):
        return Change(what, f"{what} {fmt_ms(before)} -> {fmt_ms(after)}", False, before, after,
                      limit)
    return None


def _compare_count(what: str, before: float | None, after: float | None,
                   tol: Tolerance) -> Change | None:
    if before is None or after is None:
        return None
    limit = tol.count_limit(before)
    if after > limit:
        return Change(what, f"{what} {before:g} -> {after:g} (worse above {math.floor(limit)})",
                      True, before, after, limit)
    if before > tol.count_limit(after):
        return Change(what, f"{what} {before:g} -> {after:g}", False, before, after, limit)
    return None


def _get(report: Mapping[str, Any], *path: str) -> float | None:
    value: Any = report
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return float(value) if isinstance(value, int | float) else None


def diff_reports(before: Mapping[str, Any], after: Mapping[str, Any],
                 tolerance: Tolerance | None = None) -> Diff:
    """What got worse (and better) from ``before`` to ``after``.

    Worse: a new stall culprit, blocking-call site, slow callback or leaked task; a
    known one grown beyond ``tolerance``; and beyond it, the longest stall, total
    stall time, loop lag p99, dispatcher busy fraction, peak pending tasks and tasks
    pending at exit.
    """
    tol = tolerance or Tolerance()
    changes: list[Change] = []

    def add(change: Change | None) -> None:
        if change is not None:
            changes.append(change)

    add(_compare_ms("longest stall", _get(before, "stall_summary", "max_ms"),
                    _get(after, "stall_summary", "max_ms"), tol))
    add(_compare_ms("total stall time", _get(before, "stall_summary", "total_ms"),
                    _get(after, "stall_summary", "total_ms"), tol))
    add(_compare_ms("loop lag p99", _get(before, "lag", "p99_ms"), _get(after, "lag", "p99_ms"),
                    tol))
    busy_before = _get(before, "dispatcher", "busy_fraction")
    busy_after = _get(after, "dispatcher", "busy_fraction")
    if busy_before is not None and busy_after is not None:
        limit = busy_before + tol.busy
        text = f"dispatcher busy {busy_before:.0%} -> {busy_after:.0%}"
        if busy_after > limit:
            changes.append(Change("busy fraction", f"{text} (worse above {limit:.0%})", True,
                                  busy_before, busy_after, limit))
        elif busy_before > busy_after + tol.busy:
            changes.append(Change("busy fraction", text, False, busy_before, busy_after, limit))
    add(_compare_count("peak pending tasks", _get(before, "tasks", "peak_pending"),
                       _get(after, "tasks", "peak_pending"), tol))
    leaked_before = (before.get("tasks") or {}).get("pending_at_exit")
    leaked_after = (after.get("tasks") or {}).get("pending_at_exit")
    if leaked_before is not None and leaked_after is not None:
        add(_compare_count("tasks pending at exit", len(leaked_before), len(leaked_after), tol))

    old, new = offenders(before), offenders(after)
    for offender in new:
        match = next((o for o in old if o.same(offender.kind, offender.label, offender.function,
                                               offender.file)), None)
        word = _KIND_WORDS[offender.kind]
        if match is None:
            new_word = "new stall culprit" if offender.kind == "stall" else f"new {word}"
            changes.append(Change(new_word, f"{new_word}: {offender.describe()}", True, None,
                                  offender.max_ms if offender.max_ms is not None
                                  else offender.count, None, offender))
            continue
        if offender.kind in ("stall", "slow_callback"):
            change = _compare_ms(f"{word} in {offender.function or offender.label}",
                                 match.max_ms, offender.max_ms, tol)
        else:
            change = _compare_count(f"{word} {offender.label}"
                                    + (f" in {offender.function}" if offender.function else ""),
                                    match.count, offender.count, tol)
        if change is not None:
            changes.append(dataclasses.replace(change, offender=offender))
    for gone in old:
        if not any(o.same(gone.kind, gone.label, gone.function, gone.file) for o in new):
            changes.append(Change(f"{_KIND_WORDS[gone.kind]} gone",
                                  f"gone: {gone.describe()}", False, offender=gone))
    return Diff(tuple(changes))
