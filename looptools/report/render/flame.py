"""Where the blocked time went: every stall's stack merged into one tree, weighted by blocked time.

The one definition behind the HTML report's flame graph (an icicle: the outermost frame on
top) and the speedscope export (``looptools report -f speedscope``, ``looptools profile
--speedscope``), so that the two show the same picture; the trace's nested stack slices use
the same cleaned stacks (:func:`clean_stacks`).  The tree is the main loop's; the stalls of
worker-thread loops are grouped per thread by :func:`worker_threads` (speedscope gives each
its own profile, the trace its own track).

* A stall counts with its **stack** as the report holds it (outermost first), weighted by its
  duration in milliseconds.  A stall without a stack is left out and counted apart
  (:attr:`FlameGraph.unstacked`): nothing says where its time went.
* looptools' own frames never appear (the wrappers it runs callbacks, slots and blocking calls
  through): the monitor already leaves them out of the stacks it records
  (``looptools._frames.without_ours``); a report written by an older looptools is cleaned
  here too.  A stack of nothing but ours counts as no stack.
* A **node** is a function (qualified name and file), not a line: two stalls through the same
  function merge there even when they passed through it at different lines (a node keeps the
  blocked time per line).  A node's weight is the blocked time of the stalls whose stack passes
  through it, so a parent weighs at least as much as its children together; what it weighs more
  is time with the node itself innermost.
* A stack dumped by faulthandler (a stall that held the GIL, ``stack_source: faulthandler``)
  names functions by ``co_name`` only (``run``, not ``Runner.run``).  A frame of such a stack
  takes the one qualified name that the sampled stacks of the same report give the same
  ``co_name`` in the same file, at the same line or under the same caller, so that both kinds
  of stack merge at the functions they share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from looptools._frames import Frame, is_app_file, is_ours

#: ``(function, file)``: what a node (and a speedscope frame) stands for.
FunctionKey = tuple[str, str]

# Library code on any machine: a report may come from another one, whose standard library
# and site-packages are not where this one's are (``is_app_file`` knows only this one's).
_LIBRARY = re.compile(r"[/\\](?:site|dist)-packages[/\\]|[/\\]lib[/\\]python\d[^/\\]*[/\\]")


def is_application(file: str) -> bool:
    """Whether a frame's file is the application's: not the standard library, not an
    installed package, not a ``<string>`` or ``<frozen ...>`` pseudo-file."""
    return bool(file) and not file.startswith("<") and not _LIBRARY.search(file) \
        and is_app_file(file)


def _frames_of(stack: Any) -> list[Frame]:
    frames: list[Frame] = []
    for frame in stack if isinstance(stack, list) else []:
        if not isinstance(frame, Mapping):
            continue
        line = frame.get("line")
        frames.append((str(frame.get("function") or "?"), str(frame.get("file") or "?"),
                       line if isinstance(line, int) and not isinstance(line, bool) else None))
    return frames


@dataclass(frozen=True)
class StallStack:
    """One stall's stack as the flame graph counts it: cleaned, outermost first."""

    stall: Mapping[str, Any]
    frames: tuple[Frame, ...]

    @property
    def ms(self) -> float:
        """The stall's blocked time."""
        return _ms(self.stall.get("duration_ms"))


def _ms(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number > 0 and number != float("inf") else 0.0


def stall_stacks(report: Mapping[str, Any]) -> list[StallStack]:
    """Every stall of *report*'s main loop in report order, its stack without looptools'
    frames and with faulthandler's ``co_name`` frames given their qualified names (module
    docstring).  A stall with no stack left has empty ``frames``."""
    return clean_stacks([s for s in report.get("stalls") or [] if isinstance(s, Mapping)])


def clean_stacks(stalls: Sequence[Mapping[str, Any]]) -> list[StallStack]:
    """*stalls* (records of one report, in their order) with their stacks cleaned as
    :func:`stall_stacks` cleans the main loop's: the one rule for every view that draws a
    stall's stack (the flame graph, speedscope, the trace's nested slices)."""
    raw = [[frame for frame in _frames_of(s.get("stack")) if not is_ours(frame[1])]
           for s in stalls]
    dumped = [s.get("stack_source") == "faulthandler" for s in stalls]
    # Qualified names seen in sampled stacks: by the frame's file, line and co_name, and by
    # its caller, file and co_name (a dumped stack may be at another line of the function).
    by_line: dict[tuple[str, int | None, str], set[str]] = {}
    by_caller: dict[tuple[FunctionKey | None, str, str], set[str]] = {}
    for frames, was_dumped in zip(raw, dumped, strict=True):
        if was_dumped:
            continue
        caller: FunctionKey | None = None
        for function, file, line in frames:
            short = function.rpartition(".")[2]
            by_line.setdefault((file, line, short), set()).add(function)
            by_caller.setdefault((caller, file, short), set()).add(function)
            caller = (function, file)

    def qualified(function: str, file: str, line: int | None,
                  caller: FunctionKey | None) -> str:
        for names in (by_line.get((file, line, function)),
                      by_caller.get((caller, file, function))):
            if names and len(names) == 1:
                return next(iter(names))
        return function

    out = []
    for stall, frames, was_dumped in zip(stalls, raw, dumped, strict=True):
        if was_dumped:
            named: list[Frame] = []
            caller = None
            for function, file, line in frames:
                named.append((qualified(function, file, line, caller), file, line))
                caller = (named[-1][0], file)
            frames = named
        out.append(StallStack(stall, tuple(frames)))
    return out


@dataclass(frozen=True)
class WorkerThread:
    """A worker thread whose asyncio loop stalled: its kept stalls (``worker_loops.stalls``,
    the longest ``max_stalls`` of all loops) with their cleaned stacks, in order of start."""

    name: str
    #: ``threading.get_ident()`` of the thread (None in a report that lacks it).
    ident: int | None
    #: The loop kinds its stalled loops were (``asyncio`` for every timed loop today).
    loop_kinds: tuple[str, ...]
    stacks: tuple[StallStack, ...]

    @property
    def ms(self) -> float:
        """Blocked time of its kept stalls."""
        return sum(stack.ms for stack in self.stacks)

    @property
    def label(self) -> str:
        """``job_0 (ident 140632446195392)``: a thread ident is reused once its thread
        ends, a name by every thread of a pool, the pair tells them apart."""
        return self.name if self.ident is None else f"{self.name} (ident {self.ident})"


def worker_threads(report: Mapping[str, Any]) -> list[WorkerThread]:
    """The worker threads with kept stalls in *report*'s ``worker_loops`` section, told
    apart by name and ident, most blocked time first."""
    section = report.get("worker_loops")
    if not isinstance(section, Mapping):
        return []
    stalls = [s for s in section.get("stalls") or [] if isinstance(s, Mapping)]
    groups: dict[tuple[str, int | None], list[StallStack]] = {}
    for stack in clean_stacks(stalls):
        ident = stack.stall.get("thread_ident")
        key = (str(stack.stall.get("thread") or "?"),
               ident if isinstance(ident, int) and not isinstance(ident, bool) else None)
        groups.setdefault(key, []).append(stack)
    threads = []
    for (name, ident), stacks in groups.items():
        stacks.sort(key=lambda stack: _start(stack.stall))
        kinds = tuple(sorted({str(s.stall.get("loop_kind") or "asyncio") for s in stacks}))
        threads.append(WorkerThread(name, ident, kinds, tuple(stacks)))
    threads.sort(key=lambda thread: (-thread.ms, thread.name, thread.ident or 0))
    return threads


def _start(stall: Mapping[str, Any]) -> float:
    try:
        return float(stall.get("started_at_s") or 0.0)
    except (TypeError, ValueError):
        return 0.0


@dataclass(eq=False)
class FlameNode:
    """One function on the merged stacks, with the blocked time of the stalls through it."""

    function: str
    file: str
    #: Blocked ms of the stalls whose stack passes through this node (this node's width).
    ms: float = 0.0
    #: Of which: stalls whose stack ends here (this node innermost).
    self_ms: float = 0.0
    #: How many stalls pass through it.
    stalls: int = 0
    #: Blocked ms by the line the stalls were at in this function (None: line unknown).
    lines: dict[int | None, float] = field(default_factory=dict)
    #: Callees, most blocked time first.
    children: list[FlameNode] = field(default_factory=list)
    _index: dict[FunctionKey, FlameNode] = field(default_factory=dict, repr=False)

    def child(self, function: str, file: str) -> FlameNode:
        """The callee node for ``(function, file)``, made if new."""
        node = self._index.get((function, file))
        if node is None:
            node = self._index[function, file] = FlameNode(function, file)
            self.children.append(node)
        return node

    @property
    def application(self) -> bool:
        """Whether this function is the application's (see :func:`is_application`)."""
        return is_application(self.file)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, FlameNode]]:
        """``(depth, node)`` for this node and every node below it, parents first."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)

    @property
    def depth(self) -> int:
        """Rows below this node, this one included."""
        return 1 + max((child.depth for child in self.children), default=0)


@dataclass(frozen=True)
class FlameGraph:
    """All stall stacks merged (see the module docstring); ``root`` stands for all of them."""

    root: FlameNode
    #: The stalls counted, with their cleaned stacks, in report order.
    stacks: tuple[StallStack, ...]
    #: Stalls left out because they have no stack, and their blocked time.
    unstacked: int
    unstacked_ms: float

    @property
    def total_ms(self) -> float:
        """Blocked time of the stalls with stacks: the root's weight."""
        return self.root.ms


def _sort(node: FlameNode) -> None:
    node.children.sort(key=lambda n: (-n.ms, n.function, n.file))
    for child in node.children:
        _sort(child)


def flame_graph(report: Mapping[str, Any]) -> FlameGraph:
    """The merged tree of *report*'s stall stacks, children most blocked time first."""
    root = FlameNode("all stalls", "")
    counted: list[StallStack] = []
    unstacked, unstacked_ms = 0, 0.0
    for stack in stall_stacks(report):
        if not stack.frames:
            unstacked += 1
            unstacked_ms += stack.ms
            continue
        counted.append(stack)
        ms = stack.ms
        node = root
        node.ms += ms
        node.stalls += 1
        for function, file, line in stack.frames:
            node = node.child(function, file)
            node.ms += ms
            node.stalls += 1
            node.lines[line] = node.lines.get(line, 0.0) + ms
        node.self_ms += ms
    _sort(root)
    return FlameGraph(root, tuple(counted), unstacked, unstacked_ms)


@dataclass(frozen=True)
class Box:
    """Where a node is drawn in an icicle: ``x`` and ``width`` are fractions of the root's
    width (0..1), ``depth`` the row (0 is the root)."""

    node: FlameNode
    depth: int
    x: float
    width: float


def icicle(graph: FlameGraph, min_width: float = 0.0) -> list[Box]:
    """The boxes of an icicle of *graph*, parents first; boxes narrower than *min_width*
    (a fraction of the whole) are left out with everything below them."""
    total = graph.root.ms
    if total <= 0:
        return []
    boxes: list[Box] = []

    def place(node: FlameNode, depth: int, x: float) -> None:
        width = node.ms / total
        if width < min_width:
            return
        boxes.append(Box(node, depth, x, width))
        for child in node.children:
            place(child, depth + 1, x)
            x += child.ms / total

    place(graph.root, 0, 0.0)
    return boxes


def lines_text(node: FlameNode) -> str:
    """``file:12`` for a node seen at one line; ``file:12, 15`` (most blocked first) else."""
    lines = sorted(node.lines.items(), key=lambda pair: (-pair[1], pair[0] or 0))
    known = [str(line) for line, _ in lines if line is not None]
    if not known:
        return node.file
    return f"{node.file}:{', '.join(known)}"


def frame_table(stacks: Sequence[StallStack]) -> tuple[list[dict[str, Any]],
                                                        list[list[int]]]:
    """A speedscope-style shared frame table and, per stack, its frame indexes (outermost
    first).  A frame is a function (name and file) like a node; it carries a line only when
    every stack passed through that function at the same line."""
    index: dict[FunctionKey, int] = {}
    lines: list[set[int | None]] = []
    samples: list[list[int]] = []
    for stack in stacks:
        sample = []
        for function, file, line in stack.frames:
            key = (function, file)
            if key not in index:
                index[key] = len(index)
                lines.append(set())
            lines[index[key]].add(line)
            sample.append(index[key])
        samples.append(sample)
    frames: list[dict[str, Any]] = []
    for (function, file), seen in zip(index, lines, strict=True):
        frame: dict[str, Any] = {"name": function, "file": file}
        if len(seen) == 1 and None not in seen:
            frame["line"] = next(iter(seen))
        frames.append(frame)
    return frames, samples
