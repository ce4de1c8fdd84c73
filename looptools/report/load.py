"""Reading looptools reports back in, checked against the report schema.

Everything that consumes a report written by another process (``looptools check``,
``baseline``, ``diff``, ``report``) goes through :func:`load_report`, so a missing,
truncated or foreign file is reported the same way everywhere: one line naming
the file and what is wrong with it, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from looptools import _jsonsafe

__all__ = ["SCHEMA_VERSION", "ReportError", "display_path", "load_report", "report_schema",
           "validate_report"]

#: The ``schema_version`` this looptools reads and writes.
SCHEMA_VERSION = 1

_REQUIRED_FALLBACK = ("schema_version", "tool", "loop", "meta", "stalls", "stall_summary",
                      "slow_callbacks", "lag", "dispatcher", "tasks", "blocking_calls",
                      "detector_errors")


class ReportError(Exception):
    """A report could not be used; ``str()`` is one line naming the file and the problem.

    ``path`` is where in the report the problem is (keys and indexes), when known.
    """

    def __init__(self, message: str, path: Sequence[str | int] | None = None) -> None:
        # One printable line whatever the file name or report held.
        self.message = _jsonsafe.safe_text(" ".join(message.splitlines()))
        self.path = tuple(path) if path is not None else None
        super().__init__(self.message)


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the current directory when it is inside it, else as given."""
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return str(p)
    return str(path)


@functools.lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    """The packaged JSON Schema of a report (``looptools/schema/report.schema.json``)."""
    text = resources.files("looptools.schema").joinpath("report.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_report(report: Any, name: str) -> None:
    """Raise :class:`ReportError` unless ``report`` matches the report schema.

    ``name`` is how the report is called in the message (usually its path).
    """
    if not isinstance(report, dict):
        raise ReportError(f"report {name} is not a looptools report "
                          f"(expected a JSON object, found {type(report).__name__})")
    tool = report.get("tool")
    if "schema_version" not in report and not (isinstance(tool, dict)
                                               and tool.get("name") == "looptools"):
        raise ReportError(f"report {name} is not a looptools report (no schema_version)")
    version = report.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(f"report {name} has schema_version {_short(version)}; "
                          f"this looptools reads version {SCHEMA_VERSION}")
    try:
        _jsonsafe.check(report, fix_strings=False)
    except _jsonsafe.UnsafeJSON as exc:
        raise _unsafe(name, exc) from None
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is installed with looptools[dev]
        # Without jsonschema only the shape of the top level is checked.
        missing = [key for key in _REQUIRED_FALLBACK if key not in report]
        if missing:
            raise ReportError(f"report {name} does not match the report schema: "
                              f"'{missing[0]}' is missing", (missing[0],)) from None
        return
    validator_cls = jsonschema.validators.validator_for(report_schema())
    validator = validator_cls(report_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(report))
    if error is None:
        return
    # best_match() prefers the most relevant leaf, but a oneOf of "object or null"
    # reports only that neither matched; its context says which field was wrong.
    while error.context:
        deeper = jsonschema.exceptions.best_match(error.context)
        if deeper is None:
            break
        error = deeper
    message = error.message.splitlines()[0]
    if len(message) > 160:
        message = message[:157] + "..."
    raise ReportError(f"report {name} does not match the report schema at "
                      f"{_jsonsafe.json_path(list(error.absolute_path))}: {message}",
                      list(error.absolute_path))


def _unsafe(name: str, exc: _jsonsafe.UnsafeJSON) -> ReportError:
    if not exc.path:
        return ReportError(f"report {name} is not a looptools report: {exc.problem}", ())
    return ReportError(f"report {name} does not match the report schema at "
                       f"{_jsonsafe.json_path(exc.path)}: {exc.problem}", exc.path)


#: No report looptools writes comes near this (stall, callback and task lists are capped);
#: a bigger input (a device, a huge unrelated file) is refused before it fills memory.
MAX_REPORT_BYTES = 256 << 20


class TooBig(Exception):
    """The input is larger than the cap."""


def read_capped(path: str | os.PathLike[str], cap: int = MAX_REPORT_BYTES) -> bytes:
    """The bytes of ``path``, refusing more than ``cap`` (a regular file by its size, a
    device or pipe by reading one byte past the cap)."""
    with open(path, "rb") as handle:
        try:
            if os.fstat(handle.fileno()).st_size > cap:
                raise TooBig
        except OSError:
            pass
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise TooBig
    return data


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the report at ``path`` and check it against the schema.

    Raises :class:`ReportError` with a one-line message when the file is missing,
    unreadable, empty, not JSON, cut short (a process killed while writing), or not
    a report of the version this looptools reads: one that does not match the schema,
    is nested deeper than a report, or holds numbers that are not finite or out of
    range (:mod:`looptools._jsonsafe`).  Lone surrogates in its strings come back
    escaped (the text ``\\udcff``), so that whatever the report holds can be printed.
    """
    name = display_path(path)
    try:
        raw = read_capped(path)
    except TooBig:
        raise ReportError(f"report {name} is larger than {MAX_REPORT_BYTES >> 20} MiB: not a "
                          "report looptools wrote") from None
    except FileNotFoundError:
        raise ReportError(f"report {name} does not exist") from None
    except IsADirectoryError:
        raise ReportError(f"report {name} is a directory, not a report file") from None
    except OSError as exc:
        raise ReportError(f"cannot read report {name}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError(f"report {name} is not UTF-8 text (is it a JSON report?)") from None
    if not text.strip():
        raise ReportError(f"report {name} is empty (did the profiled process finish writing it?)")
    try:
        # NaN, Infinity, huge numbers, deep nesting: rejected with where they are;
        # lone surrogates: escaped, so that the report prints (see looptools._jsonsafe).
        report = _jsonsafe.loads(text)
    except _jsonsafe.UnsafeJSON as exc:
        raise _unsafe(name, exc) from None
    except json.JSONDecodeError as exc:
        stripped = text.strip()
        cut_short = (not text[exc.pos:].strip() or exc.msg.startswith("Unterminated string")
                     or (stripped[:1] in "{[" and stripped[-1:] not in "}]"))
        if cut_short:
            raise ReportError(f"report {name} is truncated: the JSON ends early (line "
                              f"{text.count(chr(10)) + 1}); was the profiled process killed "
                              f"while writing it?") from None
        raise ReportError(f"report {name} is not valid JSON: {exc.msg} (line {exc.lineno}, "
                          f"column {exc.colno})") from None
    validate_report(report, name)
    assert isinstance(report, dict)
    return report
