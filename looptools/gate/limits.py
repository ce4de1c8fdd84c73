"""Budget limits: the keys, their values, and the budget file they are read from.

Settings resolve in one order, highest first: command-line flags > the budget file
(``--budget FILE``, else ``[tool.looptools.budget]`` in the nearest ``pyproject.toml``
that has one) > :data:`BUDGET_KEYS` defaults.  A bad value's error says where it
came from.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from looptools import _units
from looptools.gate.allow import AllowEntry
from looptools.report.load import display_path

__all__ = [
    "BUDGET_KEYS",
    "MAX_LIMIT",
    "OFF",
    "Budget",
    "BudgetError",
    "BudgetKey",
    "Limit",
    "find_budget_file",
    "fmt_ms",
    "load_budget",
    "parse_budget_table",
    "parse_limit",
]


Limit = float | int

#: Written as a budget value (in a file: ``max_lag_p99_ms = "off"``; as a flag:
#: ``--max-stall-ms off``) to leave a key unchecked, e.g. to switch off a default.
OFF = "off"


class BudgetError(ValueError):
    """A budget or baseline could not be used; ``str()`` is one line saying where and why."""


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
    BudgetKey("max_worker_lag_p99_ms", "ms", None,
              "99th percentile lag of the asyncio loops on a worker thread (the worst "
              "thread; never the GUI loop's)"),
    BudgetKey("max_affinity_violations", "count", None,
              "call sites that touched a Qt object or the loop from a thread not its own"),
)
_KEYS: dict[str, BudgetKey] = {key.name: key for key in BUDGET_KEYS}
_ALLOW_KEYS = ("function", "file", "reason", "expires")


def fmt_ms(ms: float) -> str:
    """Milliseconds for people, as every view writes them (:func:`looptools._units.fmt_ms`:
    ``3.20 ms``, ``412 ms``, ``1.25 s``), but for a limit someone wrote as a whole number
    under a second, kept as written (``50 ms``, not ``50.0 ms``)."""
    if not math.isfinite(ms):
        return f"{ms} ms"
    if ms == int(ms) and abs(ms) < 1000:
        return f"{ms:.0f} ms"
    return _units.fmt_ms(ms)


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
    if isinstance(value, bool):
        return "true" if value else "false"  # as the TOML file and the flag spell it
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
