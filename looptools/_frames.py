"""Frames as plain data, and the rule for which frame is the culprit.

A frame is kept as a ``(function, file, line)`` tuple until a report is
rendered.  The culprit of a stall is the innermost frame of *application* code:
not the standard library, not an installed package, not looptools itself.
"""

from __future__ import annotations

import os
import re
import site
import sys
import sysconfig
import types
from collections.abc import Iterable

Frame = tuple[str, str, "int | None"]


def _site_paths() -> set[str]:
    """Where installed libraries live: site-packages (under the standard library's
    folder outside a virtualenv, so told apart by these, not by that)."""
    paths: set[str] = set()
    for key in ("purelib", "platlib"):
        paths.add(sysconfig.get_paths().get(key, ""))
    for getter in (site.getsitepackages, lambda: [site.getusersitepackages()]):
        try:
            paths.update(getter())
        except Exception:
            pass
    paths.update(
        p for p in sys.path if p.rstrip(os.sep).endswith(("site-packages", "dist-packages"))
    )
    return paths


def _as_prefixes(paths: set[str]) -> tuple[str, ...]:
    """Each path as a folder prefix, real and absolute, longest first."""
    out = set()
    for path in paths:
        if path:
            out.add(os.path.join(os.path.realpath(path), ""))
            out.add(os.path.join(os.path.abspath(path), ""))
    return tuple(sorted(out, key=len, reverse=True))


def _prefixes() -> tuple[str, ...]:
    paths = _site_paths()
    for key in ("stdlib", "platstdlib"):
        paths.add(sysconfig.get_paths().get(key, ""))
    paths.add(os.path.dirname(os.path.abspath(__file__)))
    return _as_prefixes(paths)


_NOT_APP = _prefixes()
_LIBRARIES = _as_prefixes(_site_paths())  # (none: startswith(()) is False)
_cache: dict[str, bool] = {}


def is_app_file(filename: str) -> bool:
    """True for files of the application: not stdlib, site-packages or looptools."""
    known = _cache.get(filename)
    if known is not None:
        return known
    if not filename or filename.startswith("<") or "shibokensupport" in filename:
        result = False
    else:
        # No os.path.abspath here: it calls os.getcwd(), which blockbuster
        # reports as blocking.  Code objects from files carry absolute paths;
        # a relative one was run from the current directory: the app's.
        result = not os.path.isabs(filename) or not filename.startswith(_NOT_APP)
    if len(_cache) < 10_000:
        _cache[filename] = result
    return result


def _qualname(code: types.CodeType) -> str:
    return getattr(code, "co_qualname", code.co_name)


_LINES: dict[tuple[types.CodeType, int], int | None] = {}


def _nearest_line(code: types.CodeType, lasti: int) -> int | None:
    """The line of the instruction at ``lasti`` or, if it has none, of the nearest
    one before it (CPython 3.11 gives a loop's ``JUMP_BACKWARD`` no line)."""
    key = (code, lasti)
    if key in _LINES:
        return _LINES[key]
    best: int | None = None
    for start, _end, line in code.co_lines():
        if line is None:
            continue
        if start > lasti and best is not None:
            break
        best = line
    if len(_LINES) < 4096:
        _LINES[key] = best
    return best


def frame_tuple(frame: types.FrameType) -> Frame:
    line = frame.f_lineno
    if line is None:
        line = _nearest_line(frame.f_code, frame.f_lasti)
    return (_qualname(frame.f_code), frame.f_code.co_filename, line)


def stack_of(frame: types.FrameType | None, limit: int = 64) -> list[Frame]:
    """The stack ending at ``frame``, outermost first, at most ``limit`` deep."""
    out: list[Frame] = []
    while frame is not None and len(out) < limit:
        out.append(frame_tuple(frame))
        frame = frame.f_back
    out.reverse()
    return out


def culprit_of(stack: Iterable[Frame]) -> Frame | None:
    """Innermost application frame of ``stack`` (outermost first), else the innermost."""
    frames = list(stack)
    for frame in reversed(frames):
        if is_app_file(frame[1]):
            return frame
    return frames[-1] if frames else None


def caller_site(frame: types.FrameType | None, depth: int = 8,
                library: bool = False) -> Frame | None:
    """The first application frame at or above ``frame`` (a cheap, bounded walk).

    With none there: ``frame`` itself, or with ``library`` the first frame of an
    installed library, not the standard library's (qasync's ``asyncSlot`` wrapper,
    not the ``asyncio.ensure_future`` it calls: a fresh-eyes trial read "created
    at _ensure_future (asyncio/tasks.py)" for every task a Qt click made).
    """
    first = frame
    fallback = None
    while frame is not None and depth > 0:
        filename = frame.f_code.co_filename
        if is_app_file(filename):
            return frame_tuple(frame)
        if library and fallback is None and filename.startswith(_LIBRARIES) \
                and not is_ours(filename):
            fallback = frame
        frame = frame.f_back
        depth -= 1
    chosen = fallback or first
    return frame_tuple(chosen) if chosen is not None else None


_OWN = tuple({os.path.join(os.path.dirname(os.path.abspath(__file__)), ""),
              os.path.join(os.path.dirname(os.path.realpath(__file__)), "")})


def is_ours(filename: str) -> bool:
    """True for a file of this looptools installation."""
    return filename.startswith(_OWN)


def without_ours(stack: list[Frame]) -> list[Frame]:
    """``stack`` without looptools' own frames: the wrappers it runs callbacks, slots and
    blocking calls through (``time.sleep`` shows as our recorder on top of the app's
    line) would make a reader think looptools caused the stall.  The culprit is chosen
    among application frames either way; a stack of nothing but ours stays as it is."""
    kept = [frame for frame in stack if not frame[1].startswith(_OWN)]
    return kept or stack


def as_dict(frame: Frame | None) -> dict[str, object] | None:
    if frame is None:
        return None
    return {"function": frame[0], "file": frame[1], "line": frame[2]}


_THREAD = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+)")
_OWN_STACK = "Stack (most recent call first):"
_FILE = re.compile(r'^\s+File "(?P<file>.*)", line (?P<line>\d+|\?\?\?) in (?P<func>.*)$')


def parse_faulthandler(text: str, thread_id: int) -> list[Frame]:
    """Stack of ``thread_id`` from the *last* faulthandler dump in ``text``."""
    stacks = parse_faulthandler_all(text, thread_id)
    return stacks[-1] if stacks else []


def parse_faulthandler_all(text: str, thread_id: int) -> list[list[Frame]]:
    """Stacks of ``thread_id`` from every faulthandler dump in ``text``, oldest first.

    Two kinds of dump: faulthandler's timer thread writes every thread under a
    "Timeout (...)!" line, each headed by its id; a thread dumping itself from
    a signal (``faulthandler.register(all_threads=False)``) writes one stack
    headed "Stack (most recent call first):", which is that thread's.
    faulthandler prints innermost first and only ``co_name``; we return
    outermost first like :func:`stack_of`.
    """
    dumps: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith(("Timeout (", _OWN_STACK)):
            dumps.append([])
        dumps[-1].append(line)
    stacks: list[list[Frame]] = []
    for dump in dumps:
        frames: list[Frame] = []
        in_thread = False
        for line in dump:
            header = _THREAD.match(line)
            if header:
                if in_thread:
                    break
                in_thread = int(header.group(1), 16) == thread_id
                continue
            if line.startswith(_OWN_STACK):
                in_thread = True
                continue
            if in_thread:
                match = _FILE.match(line)
                if match:
                    lineno = match.group("line")
                    frames.append(
                        (match.group("func"), match.group("file"),
                         int(lineno) if lineno.isdigit() else None)
                    )
        if frames:
            frames.reverse()
            stacks.append(frames)
    return stacks
