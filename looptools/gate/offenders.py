"""Offenders: what in a report counts against a budget (stall culprits, blocking-call
sites, slow callbacks, leaked tasks), grouped by identity."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from looptools._culprits import collected
from looptools.gate.allow import _norm
from looptools.gate.limits import fmt_ms

__all__ = [
    "Kind",
    "Location",
    "Offender",
    "offenders",
    "plural",
    "relative_file",
]


Kind = Literal["stall", "blocking_call", "slow_callback", "leaked_task"]


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
    # Stalls without a culprit frame group apart when they were the garbage
    # collector's (looptools._culprits.collected) and when they were not.
    groups: dict[tuple[str | None, str | None, bool], list[Mapping[str, Any]]] = {}
    for stall in report.get("stalls") or ():
        culprit = Location.from_frame(stall.get("culprit"))
        key = (culprit.function, _norm(culprit.file), False) if culprit \
            else (None, None, collected(stall))
        groups.setdefault(key, []).append(stall)
    found = []
    for (_function, _file, by_gc), stalls in groups.items():
        worst = max(stalls, key=lambda s: float(s["duration_ms"]))
        culprit = Location.from_frame(worst.get("culprit")) or Location(None, None, None)
        source = _SOURCE_WORDS.get(str(worst.get("source")), str(worst.get("source") or ""))
        if by_gc:
            generation = worst.get("gc_generation")
            source = "garbage collection" + (
                f" of generation {generation}" if generation is not None else "")
        elif worst.get("task"):
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
