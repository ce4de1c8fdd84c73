"""Settings, resolved in one documented order.

Precedence, highest first: explicit arguments (``looptools.install(threshold_ms=20)``)
> environment (``LOOPTOOLS_THRESHOLD_MS=20``) > ``[tool.looptools]`` in the app's
``pyproject.toml`` (the nearest one above the current directory) > defaults.

A value that cannot be used is reported on one line naming the setting, the value
and where it came from.  Inside a user's app that line is a warning, the setting
falls back to its default (never silently off: ``LOOPTOOLS_THRESHOLD_MS=abc`` once
switched stall detection off while the summary said "threshold 50 ms: no stalls"),
and the report lists it in ``meta.settings_rejected``.  An unknown ``LOOPTOOLS_*``
variable or ``[tool.looptools]`` key is one such line each.  An explicit argument in
code raises :class:`SettingsError` instead, because that is a programming error.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DETECTORS: tuple[str, ...] = ("slow_callbacks", "stalls", "dispatcher", "lag", "tasks", "blocking",
                              "handoffs", "worker_loops", "affinity")


class SettingsError(ValueError):
    """A setting had a value that cannot be used; ``str()`` is one line."""

    def __init__(self, name: str, value: object, where: str, problem: str) -> None:
        self.name = name
        self.value = value
        self.where = where
        self.problem = problem
        super().__init__(f"looptools: {name}={value!r} ({where}): {problem}")


def _positive_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("expected a number") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("expected a number greater than 0")
    return number


def _positive_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError("expected a whole number") from None
    if number <= 0:
        raise ValueError("expected a whole number greater than 0")
    return number


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _detector_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = [str(part).strip() for part in value]
    else:
        raise ValueError("expected a comma-separated list of detector names")
    if items in (["all"], ["*"]):
        return DETECTORS
    if items in (["none"],):
        return ()
    unknown = [item for item in items if item not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown detector {unknown[0]!r}; known: {', '.join(DETECTORS)}")
    return tuple(dict.fromkeys(items))


def _optional_path(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() in ("", "none", "off", "0", "false"):
        return None
    return text


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    parse: Callable[[object], Any]
    default: Any
    # Detectors that cannot run without a valid value of this setting.
    needed_by: tuple[str, ...] = ()
    help: str = ""

    @property
    def env(self) -> str:
        return "LOOPTOOLS_" + self.name.upper()


FIELDS: tuple[_Field, ...] = (
    _Field("threshold_ms", _positive_float, 50.0, ("stalls", "slow_callbacks", "worker_loops"),
           "Stall and slow-callback threshold in ms (50: the long-task threshold UIs use)."),
    _Field("report", _optional_path, "looptools-report.json", (),
           "Where the JSON report is written at exit; 'none' (or empty, 'off', '0', "
           "'false') for no report."),
    _Field("detectors", _detector_list, DETECTORS, (),
           "Comma-separated detectors to run, or 'all'."),
    _Field("disable", _detector_list, (), (), "Comma-separated detectors to switch off."),
    _Field("heartbeat_ms", _positive_float, 10.0, ("stalls", "lag", "dispatcher"),
           "Heartbeat period on Qt loops and uvloop (plain asyncio: probes at most 10 Hz)."),
    _Field("task_audit_s", _positive_float, 1.0, ("tasks",), "Period of the pending-task audit."),
    _Field("long_pending_s", _positive_float, 10.0, ("tasks",),
           "A task pending longer than this is reported as long-pending."),
    _Field("max_stalls", _positive_int, 200, ("stalls", "worker_loops"),
           "How many stalls the report keeps (of the main loop, and of worker loops)."),
    _Field("max_callbacks", _positive_int, 200, ("slow_callbacks",),
           "How many slow-callback identities are kept (the rest are folded into '<other>')."),
    _Field("max_tasks", _positive_int, 100, ("tasks",), "How many tasks each task list keeps."),
    _Field("gil_capture", _boolean, True, (),
           "Use faulthandler to capture the stack during a stall that holds the GIL."),
    _Field("thread_dump", _boolean, True, (),
           "Have the loop thread dump its own stack from a signal while a C call holds the "
           "GIL (Linux; off: faulthandler's timer thread dumps every thread later)."),
    _Field("thread_times", _boolean, True, (),
           "Read how the loop and watchdog threads spent their time (Linux schedstat) to tell "
           "a C call holding the GIL from a busy machine (off: judge by lateness alone)."),
    _Field("signal_ticks", _boolean, True, (),
           "Let the stall watchdog date runs from a SIGALRM interval timer on the main thread "
           "(off: a thread looks every few ms, which costs a busy loop more)."),
    _Field("wake_timer", _boolean, False, (),
           "Experimental: while the ticks flow, let the stall watchdog thread sleep until the "
           "loop could be stalled, woken by a POSIX timer the ticks put back (Linux; saves a "
           "busy plain-asyncio loop 1-3 %; off: it wakes about once a threshold to look)."),
    _Field("private_fds", _boolean, True, (),
           "Give the stall watchdog thread a file-descriptor table of its own (Linux; a "
           "shared one costs every epoll_wait and read of a single-threaded app)."),
    _Field("blocking_strict", _boolean, False, ("blocking",),
           "Raise blockbuster.BlockingError instead of recording (for tests)."),
    _Field("summary", _boolean, True, (), "Print a summary to stderr at exit."),
    _Field("thread_checks", _boolean, False, (),
           "Dev mode of the affinity detector: also catch asyncio's non-thread-safe calls "
           "(call_soon, call_later, create_task, a future's set_result) made from another "
           "thread, and QWidget methods called from threads started by `threading` (costs "
           "every call_soon of the loop and every call on those threads)."),
    _Field("stream", _optional_path, None, (),
           "Unix socket path to stream events to (set by `looptools profile`)."),
)
_BY_NAME = {field.name: field for field in FIELDS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings; ``sources`` says where each value came from."""

    threshold_ms: float = 50.0
    report: str | None = "looptools-report.json"
    detectors: tuple[str, ...] = DETECTORS
    disable: tuple[str, ...] = ()
    heartbeat_ms: float = 10.0
    task_audit_s: float = 1.0
    long_pending_s: float = 10.0
    max_stalls: int = 200
    max_callbacks: int = 200
    max_tasks: int = 100
    gil_capture: bool = True
    thread_dump: bool = True
    thread_times: bool = True
    signal_ticks: bool = True
    wake_timer: bool = False
    private_fds: bool = True
    blocking_strict: bool = False
    summary: bool = True
    thread_checks: bool = False
    stream: str | None = None
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    problems: tuple[str, ...] = ()
    #: What was rejected, for the report: setting, value, where, problem, used.
    rejected: tuple[Mapping[str, Any], ...] = ()

    @property
    def enabled_detectors(self) -> tuple[str, ...]:
        return tuple(name for name in self.detectors if name not in self.disable)

    @property
    def threshold_s(self) -> float:
        return self.threshold_ms / 1000.0


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` (default: the cwd)."""
    try:
        here = (start or Path.cwd()).resolve()
    except OSError:
        return None
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_pyproject_table(path: Path) -> dict[str, Any]:
    """``[tool.looptools]`` of ``path`` (minus sub-tables such as ``budget``)."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    table = data.get("tool", {}).get("looptools", {})
    if not isinstance(table, dict):
        raise SettingsError("tool.looptools", table, str(path), "expected a table")
    return {key: value for key, value in table.items() if not isinstance(value, dict)}


def resolve(
    explicit: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    pyproject: Path | bool | None = True,
    strict: bool = False,
) -> Settings:
    """Resolve settings from explicit arguments, the environment and pyproject.

    ``pyproject=True`` looks for the nearest file; ``False``/``None`` skips it.
    With ``strict`` any bad value raises :class:`SettingsError`; otherwise bad
    environment and pyproject values are collected in ``Settings.problems`` (one
    line each) and the detectors that need them are disabled.  Bad explicit
    arguments always raise.
    """
    explicit = dict(explicit or {})
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, Mapping[str, Any]]] = []
    unknown_problems: list[SettingsError] = []

    path = find_pyproject() if pyproject is True else (pyproject or None)
    if isinstance(path, Path) and path.is_file():
        try:
            table = read_pyproject_table(path)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            problem = SettingsError("pyproject", str(path), str(path), f"cannot be read: {exc}")
            if strict:
                raise problem from None
            layers.append((f"{path} [tool.looptools]", {}))
            pyproject_problem: str | None = str(problem)
        else:
            pyproject_problem = None
            unknown = [key for key in table if key not in _BY_NAME]
            for key in unknown:
                error = SettingsError(f"tool.looptools.{key}", table[key], str(path),
                                      "unknown setting" + _did_you_mean(key, _BY_NAME))
                if strict:
                    raise error
                table.pop(key)
                unknown_problems.append(error)
            layers.append((f"{path} [tool.looptools]", table))
    else:
        pyproject_problem = None

    env_layer = {
        field.name: environ[field.env] for field in FIELDS if field.env in environ
    }
    by_env = {field.env: field for field in FIELDS}
    for variable in sorted(environ):
        if variable.startswith("LOOPTOOLS_") and variable not in by_env \
                and variable not in OTHER_VARIABLES \
                and not variable.startswith(OTHER_VARIABLE_PREFIXES):
            error = SettingsError(variable, environ[variable], "environment",
                                  "unknown setting" + _did_you_mean(variable, by_env))
            if strict:
                raise error
            unknown_problems.append(error)
    layers.append(("environment", {f"{_BY_NAME[k].env}": v for k, v in env_layer.items()}))

    for key in explicit:
        if key not in _BY_NAME:
            raise SettingsError(key, explicit[key], "argument", "unknown setting")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = [pyproject_problem] if pyproject_problem else []
    rejected: list[dict[str, Any]] = []
    for error in unknown_problems:
        problems.append(f"{error}; ignored")
        rejected.append(_rejected(error, None))

    for field in FIELDS:
        candidates: list[tuple[str, str, Any]] = []
        if field.name in explicit:
            candidates.append(("argument", field.name, explicit[field.name]))
        if field.name in env_layer:
            candidates.append(("environment", field.env, env_layer[field.name]))
        for where, layer in layers[:-1]:
            if field.name in layer:
                candidates.append((where, f"tool.looptools.{field.name}", layer[field.name]))
        chosen = None
        for where, label, raw in candidates:
            try:
                chosen = (field.parse(raw), where)
            except ValueError as exc:
                error = SettingsError(label, raw, where, str(exc))
                if strict or where == "argument":
                    raise error from None
                problems.append(f"{error}; using the default {_shown(field.default)}")
                rejected.append(_rejected(error, field.default))
                chosen = None
            break  # the highest layer decides, even when its value is bad
        if chosen is None:
            values[field.name] = field.default
            sources[field.name] = "default"
        else:
            values[field.name], sources[field.name] = chosen

    return Settings(**values, sources=sources, problems=tuple(problems),
                    rejected=tuple(rejected))


#: LOOPTOOLS_* variables that are not settings: the switch itself, what
#: ``looptools profile`` passes its app, budgets (``looptools check``) and the
#: test suite's and the benchmarks' own.
OTHER_VARIABLES = frozenset({"LOOPTOOLS_LISTEN", "LOOPTOOLS_YAPPI", "LOOPTOOLS_FUZZ_EXAMPLES"})
OTHER_VARIABLE_PREFIXES = ("LOOPTOOLS_BUDGET_", "LOOPTOOLS_TEST_", "LOOPTOOLS_BENCH_")


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "(none)"
    return repr(value)


def _did_you_mean(name: str, known: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _rejected(error: SettingsError, used: Any) -> dict[str, Any]:
    return {"setting": error.name, "value": str(error.value), "where": error.where,
            "problem": error.problem,
            "used": list(used) if isinstance(used, tuple) else used}


def describe() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for the docs and ``looptools doctor``."""
    rows = []
    for field in FIELDS:
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(default) or "(none)"
        rows.append((field.env, str(default), field.help))
    return rows
