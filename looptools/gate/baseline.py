"""Baselines: the offenders accepted as they were on one day (``looptools baseline``),
their tolerance, and the baseline file."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looptools import _jsonsafe
from looptools.gate.limits import BudgetError, _shown, _type_name, fmt_ms
from looptools.gate.offenders import _KIND_WORDS, Kind, Offender, offenders, relative_file
from looptools.report.load import display_path

__all__ = [
    "BASELINE_FORMAT",
    "Baseline",
    "BaselineEntry",
    "Tolerance",
    "baseline_to_dict",
    "load_baseline",
    "make_baseline",
    "tighten_baseline",
]


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
