"""pytest plugin: ``pytest --looptools`` gives every test that runs an event loop a budget.

Registered through the ``pytest11`` entry point and off unless asked for: without
``--looptools`` this module only adds its options and the ``loop_budget`` marker,
and registers no per-test hook at all.  With it, a second plugin object
(:class:`LoopBudgets`) is registered for the session and:

* starts a :class:`looptools.Monitor` just before each test function is called and
  stops it as soon as it returns (``pytest_runtest_call``).  pytest-asyncio 1.x
  creates its loop in a fixture but runs it per test with ``runner.run(coro)``
  *inside* the call phase, and a pytest-qt test runs its qasync / QtAsyncio loop
  in the test body, so the loop starts running inside that window and the
  monitor attaches to it; setup and teardown (async fixtures, the runner
  cancelling what is left) are not judged.  A test in which no loop ran gets no
  verdict.
* checks the test's report against its budget (:func:`looptools.gate.evaluate.evaluate`),
  resolved per key in one order: ``loop_budget`` marker > command line >
  environment > ini/pyproject option > looptools' default.
* fails a test that passed but broke its budget, naming the budget key and the
  culprit ``file:line``, with the culprit stack in a ``looptools`` report section;
  lists the worst tests at the end of the session; keeps per-test JSON reports
  with ``--looptools-report DIR``.

looptools' own failures never fail a test: they are warned about once and the
test's outcome stands.  Importing this module imports no Qt, rich or click.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import linecache
import os
import re
from collections.abc import Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from looptools.gate.evaluate import (
    _MEASURED_BY,  # which detector measures each budget key
    Violation,
)
from looptools.gate.limits import (
    BUDGET_KEYS,
    OFF,
    Budget,
    BudgetError,
    BudgetKey,
    fmt_ms,
    parse_limit,
)
from looptools.gate.offenders import Location, Offender, relative_file

if TYPE_CHECKING:
    from looptools.gate.limits import Limit
    from looptools.inapp.monitor import Monitor
    from looptools.settings import Settings

__all__ = ["MARKER", "LoopBudgets", "LooptoolsWarning"]

#: The per-test marker: ``@pytest.mark.loop_budget(max_stall_ms=200, max_leaked_tasks=0)``.
MARKER = "loop_budget"
_KEYS: dict[str, BudgetKey] = {key.name: key for key in BUDGET_KEYS}
_MARKER_SOURCE = "loop_budget marker"
_SESSION_PLUGIN = "looptools-session"
_STACK_DEPTH = 12
_WORST = 5


class LooptoolsWarning(pytest.PytestWarning):
    """looptools itself failed while monitoring a test; the test's outcome stands."""


def _flag(key: str) -> str:
    return "--looptools-" + key.replace("_", "-")


def _env(key: str) -> str:
    return "LOOPTOOLS_BUDGET_" + key.upper()


def _ini(key: str) -> str:
    return "looptools_" + key


# --------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("looptools", "event-loop budgets (looptools)")
    group.addoption("--looptools", action="store_true", default=False,
                    help="Monitor the event loop of every test that runs one and fail tests "
                         "over their loop budget.")
    group.addoption("--looptools-threshold-ms", metavar="MS", default=None,
                    help="Stall and slow-callback threshold in ms (default: looptools' "
                         "threshold_ms setting, 50).")
    group.addoption("--looptools-report", metavar="DIR", default=None,
                    help="Keep one JSON report per monitored test in DIR.")
    for key in BUDGET_KEYS:
        group.addoption(_flag(key.name), metavar="MS" if key.unit == "ms" else "N",
                        default=None,
                        help=f"Budget: {key.measures} (or 'off'). Default: "
                             f"{key.fmt(key.default) if key.default is not None else 'unchecked'}.")
    _addini(parser, "looptools_threshold_ms", "looptools: stall threshold in ms.", float)
    for key in BUDGET_KEYS:
        _addini(parser, _ini(key.name), f"looptools budget: {key.measures} (or \"off\").",
                float if key.unit == "ms" else int)


def _addini(parser: pytest.Parser, name: str, help: str, number: type) -> None:
    # pytest >= 9.2 takes a union type, so that a native [tool.pytest] table may
    # hold `looptools_max_stall_ms = 100`; older pytest reads strings, which is
    # what [tool.pytest.ini_options] and pytest.ini hold anyway.
    if pytest.version_tuple >= (9, 2):
        parser.addini(name, help, type=number | str, default="")  # type: ignore[arg-type]
    else:
        parser.addini(name, help, default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**limits): this test's event-loop budget under --looptools, e.g. "
        f"{MARKER}(max_stall_ms=200, max_leaked_tasks=0); keys: "
        + ", ".join(_KEYS) + ".",
    )
    if not config.getoption("looptools"):
        return
    config.pluginmanager.register(LoopBudgets(config), _SESSION_PLUGIN)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(_SESSION_PLUGIN)
    if plugin is not None:
        config.pluginmanager.unregister(plugin, _SESSION_PLUGIN)


# --------------------------------------------------------------------------- values


@dataclasses.dataclass(frozen=True)
class _Layer:
    """Budget values from one place: limits by key, and what to call that place."""

    limits: Mapping[str, Limit | None]
    sources: Mapping[str, str]


def _from_text(text: str) -> object:
    """A command-line, environment or ini value as the type a budget file would hold."""
    text = text.strip()
    if text.lower() == OFF:
        return OFF
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            continue
    return text


def _problem(key: str) -> str:
    spec = _KEYS.get(key)
    if spec is None:
        close = difflib.get_close_matches(key, list(_KEYS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(_KEYS)}"
        return f"unknown budget key{hint}"
    if spec.unit == "ms":
        return 'expected a number of milliseconds >= 0, or "off"'
    return 'expected a whole number >= 0, or "off"'


def _limit(key: str, value: object, where: str) -> Limit | None:
    """``value`` checked as budget ``key``; the error is one line that starts with ``where``."""
    try:
        return parse_limit(key, value, where)
    except BudgetError:
        raise _BadValue(f"looptools: {where}: {_problem(key)}") from None


class _BadValue(Exception):
    """A budget or setting value that cannot be used; ``str()`` is the whole message."""


def _config_layers(config: pytest.Config) -> tuple[list[_Layer], list[str]]:
    """The command-line, environment and ini layers (highest first), and every error."""
    errors: list[str] = []
    cli: dict[str, Limit | None] = {}
    env: dict[str, Limit | None] = {}
    ini: dict[str, Limit | None] = {}
    cli_src: dict[str, str] = {}
    env_src: dict[str, str] = {}
    ini_src: dict[str, str] = {}
    ini_where = _ini_where(config)
    for key in _KEYS:
        given: list[tuple[dict[str, Limit | None], dict[str, str], object, str, str]] = []
        raw = config.getoption(_flag(key))
        if raw is not None:
            given.append((cli, cli_src, _from_text(str(raw)), f"{_flag(key)}={raw!r}",
                          _flag(key)))
        if _env(key) in os.environ:
            text = os.environ[_env(key)]
            given.append((env, env_src, _from_text(text), f"{_env(key)}={text!r} (environment)",
                          _env(key)))
        value = config.getini(_ini(key))
        if value not in ("", None):
            where = ini_where(_ini(key))
            parsed = _from_text(value) if isinstance(value, str) else value
            given.append((ini, ini_src, parsed, f"{_ini(key)}={value!r} ({where})",
                          f"{_ini(key)} in {where}"))
        # Every value given is checked, not only the one that wins: a typo in
        # pytest.ini should not wait for the day the command line stops hiding it.
        for limits, sources, parsed, label, source in given:
            try:
                limits[key] = _limit(key, parsed, label)
                sources[key] = source
            except _BadValue as exc:
                errors.append(str(exc))
    return [_Layer(cli, cli_src), _Layer(env, env_src), _Layer(ini, ini_src)], errors


def _ini_where(config: pytest.Config) -> Any:
    overridden = {entry.split("=", 1)[0].strip()
                  for entry in (config.getoption("override_ini", None) or ())}
    inifile = config.inipath.name if config.inipath is not None else "configuration"

    def where(name: str) -> str:
        return "-o" if name in overridden else inifile

    return where


def _marker_layer(item: pytest.Item) -> _Layer:
    """The ``loop_budget`` markers of ``item``, the closest winning per key."""
    limits: dict[str, Limit | None] = {}
    sources: dict[str, str] = {}
    for mark in item.iter_markers(name=MARKER):
        if mark.args:
            raise _BadValue(f"looptools: {MARKER}{tuple(mark.args)!r} on {item.nodeid}: takes "
                            f"keyword arguments only, e.g. {MARKER}(max_stall_ms=200)")
        for key, value in mark.kwargs.items():
            limit = _limit(key, value, f"{MARKER}({key}={value!r}) on {item.nodeid}")
            if key not in limits:
                limits[key] = limit
                sources[key] = _MARKER_SOURCE
    return _Layer(limits, sources)


def _resolve_budget(layers: Iterable[_Layer]) -> Budget:
    """Highest layer first; a key no layer sets keeps looptools' default."""
    limits: dict[str, Limit | None] = {key.name: key.default for key in BUDGET_KEYS}
    sources: dict[str, str] = dict.fromkeys(_KEYS, "default")
    for layer in reversed(list(layers)):
        limits.update(layer.limits)
        sources.update(layer.sources)
    return Budget(limits, sources)


def _faulthandler_timeout(config: pytest.Config) -> float:
    try:
        return float(config.getini("faulthandler_timeout") or 0.0)
    except (ValueError, TypeError):  # -p no:faulthandler, or a value pytest rejects itself
        return 0.0


def _monitor_settings(config: pytest.Config) -> Settings:
    """Monitor settings for the session: looptools' usual order, with the flag and
    ini option slotted in (command line > environment > ini > [tool.looptools])."""
    from looptools.settings import SettingsError, resolve

    explicit: dict[str, Any] = {"report": None, "summary": False, "stream": None}
    if _faulthandler_timeout(config) > 0:
        # pytest's faulthandler_timeout and our GIL capture would both own
        # faulthandler.dump_traceback_later: each would cancel the other's.
        explicit["gil_capture"] = False
    flag = config.getoption("looptools_threshold_ms")
    ini = config.getini("looptools_threshold_ms")
    source = None
    if flag is not None:
        source, label, value = ("--looptools-threshold-ms",
                                f"--looptools-threshold-ms={flag!r}", flag)
    elif "LOOPTOOLS_THRESHOLD_MS" not in os.environ and ini not in ("", None):
        where = _ini_where(config)("looptools_threshold_ms")
        source, label, value = (f"looptools_threshold_ms in {where}",
                                f"looptools_threshold_ms={ini!r} ({where})", ini)
    if source is not None:
        try:
            resolve({"threshold_ms": value}, environ={}, pyproject=False, strict=True)
        except SettingsError as exc:
            raise _BadValue(f"looptools: {label}: {exc.problem}") from None
        explicit["threshold_ms"] = value
    try:
        settings = resolve(explicit, strict=True)
    except SettingsError as exc:
        raise _BadValue(str(exc)) from None
    if source is not None:
        settings = dataclasses.replace(settings,
                                       sources={**settings.sources, "threshold_ms": source})
    return settings


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class _Result:
    """What the session summary keeps of one monitored test."""

    nodeid: str
    longest_ms: float
    culprit: str | None
    over: tuple[str, ...]


_BUDGET: pytest.StashKey[Budget] = pytest.StashKey()
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def report_name(nodeid: str) -> str:
    """A file name for ``nodeid``'s report: ``tests_test_a.py__test_b_1.json``."""
    stem = _UNSAFE.sub("_", nodeid.replace("::", "__")).strip("_.") or "test"
    if len(stem) > 120:
        stem = f"{stem[:120]}-{_digest(nodeid)}"
    return stem + ".json"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


class LoopBudgets:
    """The session part of the plugin, registered only under ``--looptools``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        layers, errors = _config_layers(config)
        try:
            self.settings = _monitor_settings(config)
        except _BadValue as exc:
            errors.append(str(exc))
        if errors:
            raise pytest.UsageError(*errors)
        self.layers = layers
        self.base = _resolve_budget(layers)
        self.roots = [str(config.rootpath), str(config.invocation_params.dir)]
        self.report_dir: Path | None = None
        option = config.getoption("looptools_report")
        if option:
            self.report_dir = Path(config.invocation_params.dir, option)
            try:
                self.report_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise pytest.UsageError(f"looptools: --looptools-report={option!r}: cannot "
                                        f"create the directory ({exc.strerror or exc})") from None
        self.results: list[_Result] = []
        self.troubles: dict[str, list[str]] = {}
        self.written: set[str] = set()
        self._warned = False

    # -- hooks --------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        checked = ", ".join(
            f"{key} = {_KEYS[key].fmt(limit)} ({self.base.sources[key]})"
            for key, limit in self.base.limits.items() if limit is not None) or "nothing"
        gil = "" if self.settings.gil_capture else "; GIL capture off" + (
            " (faulthandler_timeout)" if _faulthandler_timeout(config) > 0 else "")
        return [f"looptools: budget {checked}; threshold {self.settings.threshold_ms:g} ms "
                f"({self.settings.sources.get('threshold_ms', 'default')}){gil}"]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # The marker is checked here so that a bad one errors this test at setup,
        # with one line, and the rest of the session still runs.
        try:
            marker = _marker_layer(item)
        except _BadValue as exc:
            problem = str(exc)
        else:
            problem = ""
        if problem:  # raised outside the except: no "during handling" chain
            pytest.fail(problem, pytrace=False)
        item.stash[_BUDGET] = _resolve_budget([marker, *self.layers]) \
            if marker.limits else self.base

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        # trylast: innermost of the wrappers, inside output capture, as close to
        # the test function as a hook can be.
        budget = item.stash.get(_BUDGET, None)
        monitor = self._start(item, budget) if budget is not None else None
        if monitor is None or budget is None:
            return (yield)
        try:
            result = yield
        except BaseException:
            self._finish(item, monitor, budget, passed=False)
            raise
        failure = self._finish(item, monitor, budget, passed=True)
        if failure:
            pytest.fail(failure, pytrace=False)
        return result

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        if not self.results and not self.troubles:
            return
        terminalreporter.section("looptools")
        over = [r for r in self.results if r.over]
        write(f"{len(self.results)} test{'s' if len(self.results) != 1 else ''} ran an event "
              f"loop, {len(over)} over budget")
        stalled = sorted((r for r in self.results if r.longest_ms > 0),
                         key=lambda r: -r.longest_ms)[:_WORST]
        if stalled:
            write("longest stalls:")
            width = max(len(r.nodeid) for r in stalled)
            for r in stalled:
                culprit = f"  {r.culprit}" if r.culprit else ""
                verdict = f"  over {', '.join(r.over)}" if r.over else ""
                write(f"  {fmt_ms(r.longest_ms):>8}  {r.nodeid:<{width}}{culprit}{verdict}")
        for r in over:
            if r not in stalled:
                write(f"  over {', '.join(r.over)}: {r.nodeid}")
        if self.report_dir is not None:
            write(f"reports: {_show(self.report_dir, self.roots)}{os.sep} "
                  f"({len(self.written)} file{'s' if len(self.written) != 1 else ''})")
        for what, nodeids in self.troubles.items():
            tests = f"{nodeids[0]}" + (f" and {len(nodeids) - 1} more" if len(nodeids) > 1
                                       else "")
            write(f"looptools failed ({tests}): {what}")

    # -- monitoring -----------------------------------------------------------------
    def _start(self, item: pytest.Item, budget: Budget) -> Monitor | None:
        from looptools.inapp.monitor import Monitor, active

        if active() is not None:
            self._trouble(item, "another looptools monitor is running in this process "
                          "(LOOPTOOLS=1 or looptools.install()?); tests are not monitored "
                          "while it runs")
            return None
        monitor = None
        try:
            monitor = Monitor(self._settings_for(budget))
            return monitor.start()
        except Exception as exc:
            if monitor is not None:
                try:
                    monitor.stop(write=False)
                except Exception:
                    pass
            self._trouble(item, f"could not start monitoring ({type(exc).__name__}: {exc})")
            return None

    def _settings_for(self, budget: Budget) -> Settings:
        """A stall budget under the threshold could never fail: lower the threshold."""
        limit = budget.limits.get("max_stall_ms")
        if limit is None or not 0 < limit < self.settings.threshold_ms:
            return self.settings
        return dataclasses.replace(
            self.settings, threshold_ms=float(limit),
            sources={**self.settings.sources,
                     "threshold_ms": f"max_stall_ms ({budget.sources['max_stall_ms']})"})

    def _finish(self, item: pytest.Item, monitor: Monitor, budget: Budget,
                passed: bool) -> str:
        """Stop, judge and record; the failure message, or "" (always "" when not
        ``passed``: a test's own failure is the one to show)."""
        try:
            report = monitor.stop(write=False)
        except Exception as exc:
            self._trouble(item, f"could not stop monitoring ({type(exc).__name__}: {exc})")
            return ""
        if monitor.loop_info is None:
            return ""  # no loop ran in this test: no verdict
        try:
            return self._judge(item, report, budget, passed)
        except Exception as exc:
            self._trouble(item, f"could not check the report ({type(exc).__name__}: {exc})")
            return ""

    def _judge(self, item: pytest.Item, report: dict[str, Any], budget: Budget,
               passed: bool) -> str:
        from looptools.gate.evaluate import evaluate

        _keep_own_leaks(report)
        report["meta"]["test"] = item.nodeid
        crashed = set()
        for error in report.get("detector_errors") or ():
            crashed.add(error.get("detector"))
            self._trouble(item, f"detector {error.get('detector')} failed and was switched "
                                f"off ({error.get('error')})")
        # A limit on what a crashed detector no longer measures is looptools'
        # failure, not the test's.
        judged, collected_ms = _net_of_collections(report)
        violations = [v for v in evaluate(judged, budget).violations
                      if not (v.actual is None and _MEASURED_BY.get(v.key) in crashed)]
        over = tuple(dict.fromkeys(v.key for v in violations))
        stall = _longest_stall(report)
        self.results.append(_Result(
            item.nodeid, float(report["stall_summary"].get("max_ms") or 0.0),
            stall if isinstance(stall, str) or stall is None else self._where(stall), over))
        item.add_report_section("call", "looptools",
                                self._section(report, budget, violations, collected_ms))
        if self.report_dir is not None:
            self._write(item, report)
        if not violations or not passed:
            return ""
        lines = []
        for violation in violations:
            source = budget.sources.get(violation.key, "default")
            net = f" (judged without {fmt_ms(collected_ms)} of garbage collection)" \
                if collected_ms > 0.0 and violation.key in _NET_OF_COLLECTIONS else ""
            lines.append(f"looptools: {violation.message}{net} (set by {source})")
            culprit = violation.culprit
            if culprit is not None and culprit.file:
                lines.append(f"  culprit: {self._where(culprit)}")
        lines.append("  (details in 'Captured looptools call' below)")
        return "\n".join(lines)

    def _write(self, item: pytest.Item, report: dict[str, Any]) -> None:
        from looptools.inapp.writer import write_report

        assert self.report_dir is not None
        name = report_name(item.nodeid)
        if name in self.written:
            # Two node ids that sanitize alike (a/b and a_b) must not overwrite.
            name = f"{name[:-5]}-{_digest(item.nodeid)}.json"
        try:
            write_report(report, self.report_dir / name)
            self.written.add(name)
        except OSError as exc:
            self._trouble(item, f"could not write {self.report_dir / name} "
                                f"({exc.strerror or exc})")

    # -- words ------------------------------------------------------------------------
    def _where(self, thing: Offender | Location) -> str:
        file = _show(thing.file, self.roots) if thing.file else "?"
        line = f":{thing.line}" if thing.line is not None else ""
        function = f" in {thing.function}" if thing.function else ""
        return f"{file}{line}{function}"

    def _section(self, report: dict[str, Any], budget: Budget,
                 violations: Sequence[Violation], collected_ms: float = 0.0) -> str:
        from looptools.inapp.writer import summary_lines

        lines: list[str] = []
        if collected_ms > 0.0:
            lines.append(f"not counted against the budget: {fmt_ms(collected_ms)} of garbage "
                         f"collection in its stalls (when a collection runs depends on "
                         f"the whole session's heap)")
        for violation in violations:
            lines.append(f"OVER BUDGET: {violation.message} "
                         f"(set by {budget.sources.get(violation.key, 'default')})")
            culprit = violation.culprit
            if culprit is not None and culprit.kind == "stall" and culprit.stack:
                lines += self._stack(culprit.stack, culprit)
        lines += summary_lines(report)
        checked = [f"{key} = {_KEYS[key].fmt(limit)} ({budget.sources[key]})"
                   for key, limit in budget.limits.items() if limit is not None]
        lines.append("budget: " + (", ".join(checked) or "nothing checked"))
        return "\n".join(lines)

    def _stack(self, stack: Sequence[Location], culprit: Offender) -> list[str]:
        from looptools._frames import is_app_file

        # looptools' own wrappers (timed Handle._run, the blocking-call recorder)
        # are on every stack and are never the user's business; neither are the
        # pytest and pluggy frames above the first frame of the user's code.
        stack = [frame for frame in stack if not _is_ours(frame.file)]
        first = next((i for i, f in enumerate(stack) if f.file and is_app_file(f.file)), 0)
        shown = stack[max(first, len(stack) - _STACK_DEPTH):]
        lines = [f"  stack of the {fmt_ms(culprit.max_ms or 0.0)} stall, most recent "
                 f"call last:"]
        if len(stack) > len(shown):
            lines.append(f"    ... {len(stack) - len(shown)} outer frames")
        for frame in shown:
            mark = "  <- culprit" if (frame.file, frame.line, frame.function) == \
                (culprit.file, culprit.line, culprit.function) else ""
            lines.append(f'    File "{_show(frame.file, self.roots) if frame.file else "?"}", '
                         f"line {frame.line if frame.line is not None else '?'}, "
                         f"in {frame.function or '?'}{mark}")
            if frame.file and frame.line:
                source = linecache.getline(frame.file, frame.line).strip()
                if source:
                    lines.append(f"      {source}")
        return lines

    def _trouble(self, item: pytest.Item, what: str) -> None:
        """looptools failed: say so once, in pytest's warnings summary, and carry on."""
        self.troubles.setdefault(what, []).append(item.nodeid)
        if self._warned:
            return
        self._warned = True
        try:
            item.warn(LooptoolsWarning(f"looptools: {what}; the test's own outcome stands "
                                       f"(later failures are listed in the looptools summary)"))
        except Exception:
            # -W error turns the warning into an exception: that must not fail the
            # test either; the terminal summary still lists it.
            pass


def _show(file: str | os.PathLike[str], roots: Sequence[str]) -> str:
    return relative_file(os.fspath(file), roots) or os.fspath(file)


_PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")


def _is_ours(file: str | None) -> bool:
    return bool(file) and os.path.abspath(str(file)).startswith(_PACKAGE)


def _longest_stall(report: Mapping[str, Any]) -> Location | str | None:
    """Where the longest stall was, or what it is called when it has no culprit line
    (``(garbage collection)``, ``(Qt dispatch)``...)."""
    from looptools._culprits import stall_label

    stalls = report.get("stalls") or ()
    if not stalls:
        return None
    worst = max(stalls, key=lambda s: float(s.get("duration_ms") or 0.0))
    return Location.from_frame(worst.get("culprit")) or stall_label(worst)


_NET_OF_COLLECTIONS = ("max_stall_ms", "max_total_stall_ms")


def _net_of_collections(report: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The report a test is judged on: each stall less the time the cyclic garbage
    collector ran in it (``gc_ms``), and the time taken off.

    In a pytest process every test shares one heap: when a full collection runs,
    and for how long, depends on what all the tests before this one left (pytest-asyncio's
    own suite, in-process ``pytester`` sessions, saw 185-349 ms collections with a
    loop running).  Counted against the test it fell in, it fails a test that
    passes alone.  The report kept (``--looptools-report``) and shown is the whole one.
    """
    stalls = report.get("stalls") or []
    if not any(_float(s.get("gc_ms")) > 0.0 for s in stalls):
        return report, 0.0
    threshold = _float((report.get("meta") or {}).get("threshold_ms"))
    kept: list[dict[str, Any]] = []
    taken = 0.0
    for stall in stalls:
        duration = _float(stall.get("duration_ms"))
        net = max(0.0, duration - _float(stall.get("gc_ms")))
        taken += duration - net
        if net > threshold:
            kept.append({**stall, "duration_ms": round(net, 3)})
        else:
            taken += net  # no longer a stall: none of it counts
    summary = dict(report.get("stall_summary") or {})
    dropped = int(summary.get("dropped") or 0)
    summary["count"] = len(kept) + dropped
    summary["total_ms"] = round(max(0.0, _float(summary.get("total_ms")) - taken), 3)
    longest = [_float(s["duration_ms"]) for s in kept]
    if dropped:
        # The stalls dropped past max_stalls were no longer than the shortest kept.
        longest.append(min(_float(s.get("duration_ms")) for s in stalls))
    summary["max_ms"] = max(longest, default=0.0)
    return {**report, "stalls": kept, "stall_summary": summary}, \
        sum(min(_float(s.get("gc_ms")), _float(s.get("duration_ms"))) for s in stalls)


def _float(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _keep_own_leaks(report: dict[str, Any]) -> None:
    """Tasks pending at the end of the test are leaks only if the test created them.

    A task started by a fixture during setup (and cancelled by its teardown) is
    still pending when the test function returns; the task audit never saw it
    created (it was not attached yet), so it has no age.
    """
    tasks = report.get("tasks")
    if tasks and tasks.get("pending_at_exit"):
        tasks["pending_at_exit"] = [entry for entry in tasks["pending_at_exit"]
                                    if entry.get("age_s") is not None]

