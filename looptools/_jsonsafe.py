"""JSON written by another process, made safe to compute with and to print.

Every reader of such JSON (reports and baselines in :mod:`looptools.report.load` and
:mod:`looptools.gate.baseline`, stream lines in :mod:`looptools.live.stream`) parses it with
:func:`loads`, which raises only :class:`ValueError` (:class:`json.JSONDecodeError`
for text that is not JSON, :class:`UnsafeJSON` for JSON that is but cannot be used) and
returns data that holds:

* no nesting deeper than :data:`MAX_DEPTH` (deeper JSON raised :class:`RecursionError`
  in the parser, in ``jsonschema`` and in every renderer that walks it);
* only finite numbers of magnitude at most :data:`MAX_NUMBER`: ``NaN``, ``Infinity``,
  ``1e400`` and integers of thousands of digits are rejected (they made ``float()``,
  ``int()`` and ``:g`` formatting raise, and ``NaN`` compares false with everything, so
  a report of ``NaN`` stalls passed every budget);
* no lone surrogates: a string holding one (``"\\ud800"``, or a file name Python
  decoded with ``surrogateescape``) has it replaced by its escape, the text ``\\ud800``,
  so that printing it or writing it as UTF-8 cannot raise :class:`UnicodeEncodeError`.

Only the standard library: :mod:`looptools.live.stream` imports this inside the user's app.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_NUMBER", "UnsafeJSON", "check", "json_path", "loads",
           "safe_text"]

#: Containers nested deeper than this are rejected (a report is about 6 deep).
MAX_DEPTH = 64
#: Numbers larger than this in magnitude are rejected: 10^15 ms is 31,000 years.
MAX_NUMBER = 1e15

_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class UnsafeJSON(ValueError):
    """Valid JSON that cannot be used; ``problem`` says why, ``path`` where (keys, indexes)."""

    def __init__(self, problem: str, path: Sequence[str | int] = ()) -> None:
        self.problem = problem
        self.path = tuple(path)
        super().__init__(f"{problem} at {json_path(self.path)}" if self.path else problem)


class _Unusable:
    """What the parser made of a number Python cannot use (kept for the message)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)"


def safe_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by its escape (``\\udcff``)."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_path(path: Sequence[str | int]) -> str:
    """``stalls[0].culprit.line`` for ``("stalls", 0, "culprit", "line")``; one line always."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)[:40]}]"  # ASCII, no newline: one line
    return out or "the top level"


def _parse_int(text: str) -> int | _Unusable:
    # Longer than MAX_NUMBER's 16 digits: out of range anyway, and int() of over 4,300
    # digits raises ValueError inside the parser, where the path is not known.
    return int(text) if len(text) <= 20 else _Unusable(text)


def _parse_float(text: str) -> float | _Unusable:
    value = float(text)
    return value if math.isfinite(value) else _Unusable(text)


def _number_problem(value: Any) -> str | None:
    if isinstance(value, _Unusable):
        shown = value.text
    elif isinstance(value, float):
        if math.isfinite(value) and abs(value) <= MAX_NUMBER:
            return None
        shown = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(repr(value),
                                                                         repr(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) <= MAX_NUMBER:
            return None
        shown = f"an integer of {len(str(value)) if value.bit_length() < 10000 else 'many'} " \
                f"digits"
    else:
        return None
    return f"{shown} is out of range (numbers must be finite, at most 1e15 in size)"


def check(value: Any, *, fix_strings: bool = True) -> Any:
    """Check (and with ``fix_strings`` repair, in place) parsed JSON; see the module docstring.

    Returns ``value``.  Raises :class:`UnsafeJSON` naming the path of the first problem.
    Without ``fix_strings`` lone surrogates are left as they are.  Iterative, so that no
    nesting can exhaust the stack.
    """
    if not isinstance(value, dict | list):
        problem = _number_problem(value)
        if problem is not None:
            raise UnsafeJSON(problem)
        return safe_text(value) if fix_strings and isinstance(value, str) else value
    # Depth first in document order, so that the first problem in the text is named.
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, dict | list):
            problem = _number_problem(node)
            if problem is not None:
                raise UnsafeJSON(problem, path)
            continue
        if len(path) >= MAX_DEPTH:
            raise UnsafeJSON(f"nested deeper than {MAX_DEPTH} levels", path[:8])
        items: list[tuple[Any, Any]]
        if isinstance(node, dict):
            if fix_strings and any(_SURROGATE.search(k) for k in node):
                fixed = [(safe_text(k), v) for k, v in node.items()]
                node.clear()
                node.update(fixed)
            items = list(node.items())
        else:
            items = list(enumerate(node))
        for key, child in reversed(items):
            if isinstance(child, str):
                if fix_strings and _SURROGATE.search(child) is not None:
                    node[key] = safe_text(child)  # type: ignore[index]
            elif child is not None and not isinstance(child, bool):
                stack.append((child, (*path, key)))
    return value


def loads(text: str | bytes) -> Any:
    """Parse JSON text and :func:`check` it.

    Raises :class:`json.JSONDecodeError` for text that is not JSON and
    :class:`UnsafeJSON` for JSON nested too deeply, holding numbers Python cannot use or
    out of range; both are :class:`ValueError`.  Bytes that are not UTF-8 (nor UTF-16 or
    UTF-32, which :func:`json.loads` also takes) raise :class:`UnicodeDecodeError`, also
    a :class:`ValueError`.
    """
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float)
    except RecursionError:
        raise UnsafeJSON(f"nested deeper than {MAX_DEPTH} levels") from None
    return check(value)
