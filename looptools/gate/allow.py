"""The allow-list: ``[[tool.looptools.budget.allow]]`` entries and the globs they match
offenders with (parsed from the budget file by :mod:`looptools.gate.limits`)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath

__all__ = [
    "AllowEntry",
]


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
