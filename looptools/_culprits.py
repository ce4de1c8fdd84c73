"""Top culprits: a report's stalls, slow callbacks and blocking calls grouped by culprit.

The one definition behind every view that names culprits: the exit summary
(``looptools.inapp.writer.summary_lines``) and the text, Markdown and HTML renderers
(``looptools.report.render``).  Standard library only and no renderer imports: ``inapp.writer``
imports it inside monitored apps.

How records are grouped (the culprit is a *frame*: function, file, line)
------------------------------------------------------------------------

* **Stalls** group by their culprit frame (the innermost application frame), exactly.
  A stall without a culprit frame groups by what it is called instead
  (:func:`stall_label`: its callback, its task, or ``(loop internals)``...).
  Exception: a stall whose stack was taken ``after`` a GIL-holding call has the right
  function but maybe the next line (docs/report-schema.md); it joins the group of the same
  function and file when exactly one such group has a stall whose line is reliable, and
  keeps its own line otherwise.
* **Blocking-call sites** are frames of the same kind (the application frame that made the
  call), so a site joins the group with exactly its function, file and line.  Not by
  function and file alone: one function can block at two lines (a ``stat`` on one, a
  ``write`` on the next), and only the stalled line is known to have blocked the loop.  A
  site that matches no group is a group of its own (with any other call at that site).
* **Slow callbacks** are named by the callback (its qualified name) and the ``file:line``
  where it is *defined*, never the line that was slow, so their line cannot be compared with
  a culprit's, and function + file proves nothing either (the culprit function may also
  run outside that callback).  A slow callback instead joins the groups of the stalls that
  ran *inside* it, as those stalls' own ``callback``/``task`` fields say (named the same
  way, by ``looptools.inapp._describe.describe_handle``); failing that, the group with exactly
  its function, file and line; failing that, it is a group of its own.

The figures
-----------

A group with stalls counts its stalls and only their time: a blocking call or slow callback
seen during a stall is the same blocked time seen by a second detector, and adding it would
count it twice.  So over all groups, stall counts and times add up to the report's kept
stalls (``stall_summary`` also counts the stalls dropped beyond ``max_stalls``, which no
group holds).  A group without stalls counts what its own detector measured: slow-callback
runs and their time, or blocking calls and their time (``None`` when the report did not
time them).  First and last seen are the start times of the group's first and last stall.
Groups come most blocked time first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from looptools._units import fmt_ms

#: (function, file, line) of a culprit; file and line are None for a stall without a frame.
Key = tuple[str, str | None, int | None]

#: Every kind a group can have, in the order they are listed.
KINDS = ("Qt slot", "Qt dispatch", "task", "callback", "loop", "garbage collection", "GIL held",
         "slow callback", "blocking call")

_SOURCE_KIND = {"qt": "Qt slot", "task": "task", "callback": "callback", "loop": "loop"}

# What to call a stall that has no culprit frame, callback or task, by its source.
GARBAGE_COLLECTION = "(garbage collection)"
_NO_CULPRIT = {"callback": "(a callback)", "task": "(a task step)", "qt": "(Qt dispatch)",
               "loop": "(loop internals)"}


def collected(stall: Mapping[str, Any]) -> bool:
    """The stall was the cyclic garbage collector's (the watchdog then names no culprit
    line: the line that allocated is not what held), as the watchdog judged it
    (``collected``); in a report from before that field, the collector ran for at least
    half of it and no line was named."""
    if "collected" in stall:
        return bool(stall["collected"])
    return not stall.get("culprit") \
        and _ms(stall.get("gc_ms")) >= 0.5 * _ms(stall.get("duration_ms")) > 0.0


def collector_ms(stalls: Iterable[Mapping[str, Any]]) -> float:
    """The garbage collector's part of stalls named by their own line (0 when it is
    under a tenth of them): a 200 ms line and a 150 ms full collection are one stall
    of 350 ms in that line, which says how much of it the line did not do."""
    spent = total = 0.0
    for stall in stalls:
        if collected(stall):
            continue
        total += _ms(stall.get("duration_ms"))
        spent += min(_ms(stall.get("gc_ms")), _ms(stall.get("duration_ms")))
    return spent if total > 0.0 and spent >= 0.1 * total else 0.0


def collector_words(stalls: Iterable[Mapping[str, Any]]) -> str:
    """``150 ms of it garbage collection`` (see :func:`collector_ms`), or ``""``."""
    spent = collector_ms(stalls)
    return f"{fmt_ms(spent)} of it garbage collection" if spent else ""


def stall_label(stall: Mapping[str, Any]) -> str:
    """What a stall is best called: its culprit function, else the garbage collector,
    else its callback or task."""
    culprit = stall.get("culprit")
    if culprit:
        return str(culprit.get("function", "?"))
    if collected(stall):
        return GARBAGE_COLLECTION
    for key in ("callback", "task"):
        if stall.get(key):
            return str(stall[key])
    return _NO_CULPRIT.get(str(stall.get("source")), "(unknown)")


def _ms(value: Any) -> float:
    return float(value) if value else 0.0


@dataclass(frozen=True)
class CulpritGroup:
    """Everything in one report attributed to one culprit (see the module's docstring)."""

    function: str
    file: str | None
    line: int | None
    #: The group's stalls, longest first.
    stalls: tuple[Mapping[str, Any], ...]
    #: Rows of ``report["slow_callbacks"]``: the callbacks its stalls ran in, or its own.
    slow_callbacks: tuple[Mapping[str, Any], ...]
    #: ``(call, site)`` for each blocking-call site at this culprit, most calls first.
    blocking_calls: tuple[tuple[str, Mapping[str, Any]], ...]
    #: Stalls when there are any, else slow-callback runs, else blocking calls...
    count: int
    #: ...which is what ``unit`` names: ``stall``, ``slow callback`` or ``blocking call``.
    unit: str
    #: Blocked time in ms (see the module's docstring); None when nothing timed it.
    total_ms: float | None
    worst_ms: float | None
    #: A subset of :data:`KINDS`, in that order.
    kinds: tuple[str, ...]
    #: Start of the first and of the last stall, seconds since the monitor started.
    first_s: float | None
    last_s: float | None

    @property
    def frame(self) -> dict[str, Any] | None:
        """The culprit as a report frame, None when the group has no file."""
        if self.file is None:
            return None
        return {"function": self.function, "file": self.file, "line": self.line}

    @property
    def worst_stall(self) -> Mapping[str, Any] | None:
        """The group's longest stall, if it has stalls."""
        return self.stalls[0] if self.stalls else None


class _Draft:
    """A group being built."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.stalls: list[Mapping[str, Any]] = []
        self.slow: list[Mapping[str, Any]] = []
        self.blocking: list[tuple[str, Mapping[str, Any]]] = []

    def add_slow(self, row: Mapping[str, Any]) -> None:
        if not any(row is mine for mine in self.slow):
            self.slow.append(row)


def _frame_key(frame: Mapping[str, Any]) -> Key:
    line = frame.get("line")
    return (str(frame.get("function", "?")), str(frame.get("file") or "?"),
            line if isinstance(line, int) else None)


def stall_key(stall: Mapping[str, Any]) -> Key:
    """The exact culprit of a stall: its culprit frame, else its :func:`stall_label`."""
    culprit = stall.get("culprit")
    if culprit:
        return _frame_key(culprit)
    return (stall_label(stall), None, None)


def _slow_key(row: Mapping[str, Any]) -> Key:
    location = row.get("location")
    if location:
        file, _, line = str(location).rpartition(":")
        if file and line.isdigit():
            return (str(row.get("name")), file, int(line))
        return (str(row.get("name")), str(location), None)
    return (str(row.get("name")), None, None)


def _ran_in(stall: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(kind, name)`` of the callback or task step a stall ran in, as slow callbacks name it.

    The stall detector writes ``callback`` as ``"<coroutine> step"`` and ``task`` as
    ``"<task name> (<coroutine>)"`` for a task step, and ``callback`` as ``"<name>"`` or
    ``"<name> (<file:line>)"`` for a plain callback.
    """
    callback, task = stall.get("callback"), stall.get("task")
    if task:
        if callback and str(callback).endswith(" step"):
            return ("task", str(callback)[: -len(" step")])
        _, paren, coro = str(task).rpartition(" (")
        return ("task", coro[:-1]) if paren and coro.endswith(")") else None
    if callback:
        return ("callback", str(callback))
    return None


def _is_run_of(row: Mapping[str, Any], ran_in: tuple[str, str]) -> bool:
    kind, name = ran_in
    if row.get("kind") and row.get("kind") != kind:
        return False
    if name == row.get("name"):
        return True
    return kind == "callback" and bool(row.get("location")) \
        and name == f"{row.get('name')} ({row.get('location')})"


def _merge_after_stalls(drafts: dict[Key, _Draft]) -> None:
    """Put groups of ``after``-only stalls into the one same-function group placed reliably."""
    for key, draft in list(drafts.items()):
        if key[1] is None or any(s.get("stack_source") != "after" for s in draft.stalls):
            continue
        homes = [other for other_key, other in drafts.items()
                 if other is not draft and other_key[:2] == key[:2]
                 and any(s.get("stack_source") != "after" for s in other.stalls)]
        if len(homes) == 1:
            homes[0].stalls.extend(draft.stalls)
            del drafts[key]


def _finish(draft: _Draft) -> CulpritGroup:
    stalls = sorted(draft.stalls, key=lambda s: (-_ms(s.get("duration_ms")),
                                                 _ms(s.get("started_at_s"))))
    blocking = sorted(draft.blocking, key=lambda pair: -int(pair[1].get("count") or 1))
    kinds: set[str] = set()
    for stall in stalls:
        kind = _SOURCE_KIND.get(str(stall.get("source")), "loop")
        if collected(stall):
            kind = "garbage collection"
        elif kind == "Qt slot" and not stall.get("culprit"):
            # Qt's own work (a paint, a layout, a C++ slot): no Python slot in it.
            kind = "Qt dispatch"
        kinds.add(kind)
        if stall.get("gil_held"):
            kinds.add("GIL held")
    for row in draft.slow:
        kinds.add("slow callback")
        if not stalls:
            kinds.add("task" if row.get("kind") == "task" else "callback")
    if blocking:
        kinds.add("blocking call")
    first = last = None
    total: float | None
    worst: float | None
    if stalls:
        unit, count = "stall", len(stalls)
        total = sum(_ms(s.get("duration_ms")) for s in stalls)
        worst = _ms(stalls[0].get("duration_ms"))
        starts = [_ms(s.get("started_at_s")) for s in stalls]
        first, last = min(starts), max(starts)
    elif draft.slow:
        unit, count = "slow callback", sum(int(row.get("count") or 0) for row in draft.slow)
        total = sum(_ms(row.get("total_ms")) for row in draft.slow)
        worst = max(_ms(row.get("max_ms")) for row in draft.slow)
    else:
        unit = "blocking call"
        count = sum(int(site.get("count") or 1) for _, site in blocking)
        timed = [site for _, site in blocking if site.get("total_ms") is not None]
        total = sum(_ms(site.get("total_ms")) for site in timed) if timed else None
        worst = max(_ms(site.get("max_ms")) for site in timed) if timed else None
    function, file, line = draft.key
    return CulpritGroup(
        function=function, file=file, line=line, stalls=tuple(stalls),
        slow_callbacks=tuple(draft.slow), blocking_calls=tuple(blocking), count=count,
        unit=unit, total_ms=total, worst_ms=worst,
        kinds=tuple(k for k in KINDS if k in kinds), first_s=first, last_s=last,
    )


def _order(group: CulpritGroup) -> tuple[Any, ...]:
    return (-(group.total_ms or 0.0), -group.count, -(group.worst_ms or 0.0),
            group.first_s if group.first_s is not None else float("inf"),
            group.function, group.file or "", group.line or 0)


def group_records(
    stalls: Iterable[Mapping[str, Any]],
    slow_callbacks: Iterable[Mapping[str, Any]] = (),
    blocking_calls: Iterable[Mapping[str, Any]] = (),
) -> list[CulpritGroup]:
    """Group stalls, slow-callback rows and blocking-call rows by culprit, worst first."""
    drafts: dict[Key, _Draft] = {}
    for stall in stalls:
        key = stall_key(stall)
        drafts.setdefault(key, _Draft(key)).stalls.append(stall)
    _merge_after_stalls(drafts)
    with_stalls = list(drafts.values())
    for row in slow_callbacks:
        homes = [draft for draft in with_stalls
                 if any((ran := _ran_in(s)) is not None and _is_run_of(row, ran)
                        for s in draft.stalls)]
        if not homes:
            key = _slow_key(row)
            homes = [drafts.setdefault(key, _Draft(key))]
        for draft in homes:
            draft.add_slow(row)
    for call in blocking_calls:
        for site in call.get("sites") or []:
            key = _frame_key(site)
            drafts.setdefault(key, _Draft(key)).blocking.append((str(call.get("call")), site))
    return sorted((_finish(draft) for draft in drafts.values()), key=_order)


def culprit_groups(report: Mapping[str, Any]) -> list[CulpritGroup]:
    """The report's culprit groups, most blocked time first (see the module's docstring)."""
    return group_records(report.get("stalls") or [], report.get("slow_callbacks") or [],
                         report.get("blocking_calls") or [])


def stall_groups(groups: Sequence[CulpritGroup]) -> list[CulpritGroup]:
    """Those of *groups* that hold stalls, in the same order."""
    return [group for group in groups if group.stalls]


def stalls_watched(report: Mapping[str, Any]) -> bool:
    """Was the stall watchdog among the run's detectors?  (A report that does not say
    is taken to have run it.)  Without it "no stalls" would be untrue."""
    detectors = (report.get("meta") or {}).get("detectors")
    return not isinstance(detectors, list) or "stalls" in detectors
