"""`looptools doctor`: real checks on this machine, and each rule on a crafted environment."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from looptools.cli.doctor import (
    check_platform,
    check_py_spy,
    check_qt,
    check_settings,
    check_startup_hook,
    check_terminal,
    doctor,
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.update(extra)
    return env


def test_doctor_runs_and_exit_status_follows_problems() -> None:
    done = subprocess.run([sys.executable, "-m", "looptools", "doctor"], env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    assert "startup hook" in done.stdout and "py-spy" in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    if done.returncode == 0:
        assert last == "no problems found" and "PROBLEM" not in done.stdout
    else:
        assert last.endswith("found") and "PROBLEM" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_bad_setting_is_a_problem() -> None:
    done = subprocess.run([sys.executable, "-m", "looptools", "doctor", "--no-probe", "--json"],
                          env=_env(LOOPTOOLS_THRESHOLD_MS="fast"), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    checks = [json.loads(line) for line in done.stdout.splitlines()]
    bad = [c for c in checks if c["level"] == "problem"]
    assert [c["name"] for c in bad] == ["settings"]
    assert "LOOPTOOLS_THRESHOLD_MS='fast'" in bad[0]["message"]


def test_cli_runner_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPTOOLS_THRESHOLD_MS", raising=False)
    result = CliRunner().invoke(doctor, ["--no-probe", "--json"])
    levels = {json.loads(line)["level"] for line in result.output.splitlines()}
    assert result.exit_code == (1 if "problem" in levels else 0)
    assert CliRunner().invoke(doctor, ["--bogus"]).exit_code == 2


def _versions(table: dict[str, str]) -> Callable[[str], str | None]:
    return lambda name: table.get(name)


def test_pyside_6_12_on_python_3_11_is_a_problem() -> None:
    table = {"PySide6-Essentials": "6.12.0", "PySide6-Addons": "6.12.0", "qasync": "0.28.0"}
    checks = check_qt(python=(3, 11), versions=_versions(table))
    crash = next(c for c in checks if c.name == "pyside6")
    assert crash.level == "problem" and "none_dealloc" in crash.message
    assert crash.fix is not None and "<6.12" in crash.fix
    fine = check_qt(python=(3, 12), versions=_versions(table))
    assert all(c.level == "ok" for c in fine)
    ok_311 = check_qt(python=(3, 11), versions=_versions({**table, "PySide6-Essentials": "6.11.3"}))
    assert all(c.level == "ok" for c in ok_311)


def test_old_qasync_and_missing_addons() -> None:
    checks = check_qt(python=(3, 12), versions=_versions({"PySide6-Essentials": "6.8.0",
                                                          "qasync": "0.24.0"}))
    by_name = {c.name: c for c in checks}
    assert by_name["qasync"].level == "problem"
    assert by_name["qtasyncio"].level == "note"
    nothing = check_qt(python=(3, 12), versions=_versions({}))
    assert {c.level for c in nothing} == {"note"}


def test_startup_hook(tmp_path: Path) -> None:
    assert check_startup_hook([str(tmp_path)])[0].level == "problem"
    (tmp_path / "looptools.pth").write_text("import os\n")
    assert "does not start looptools" in check_startup_hook([str(tmp_path)])[0].message
    hook = Path(__file__).resolve().parent.parent / "looptools" / "_startup_hook" / "looptools.pth"
    (tmp_path / "looptools.pth").write_text(hook.read_text())
    assert check_startup_hook([str(tmp_path)])[0].level == "ok"
    # the real one, for this interpreter
    assert check_startup_hook()[0].level == "ok"


@pytest.mark.parametrize("scope,level", [("0", "ok"), ("1", "note"), ("3", "problem")])
def test_ptrace_scope(scope: str, level: str, tmp_path: Path) -> None:
    from looptools.profilers import find_py_spy

    if find_py_spy() is None:
        pytest.skip("py-spy is not installed")
    (tmp_path / "scope").write_text(scope + "\n")
    checks = check_py_spy(str(tmp_path / "scope"), probe=False)
    assert checks[0].name == "ptrace" and checks[0].level == level


def test_terminal_checks() -> None:
    assert check_terminal(io.StringIO(), {})[0].level == "note"

    class FakeTty(io.StringIO):
        def isatty(self) -> bool:
            return True

    checks = check_terminal(FakeTty(), {"TERM": "dumb"})
    assert "TERM=dumb" in checks[0].message


def test_settings_check_reads_the_environment() -> None:
    assert check_settings({"LOOPTOOLS_HEARTBEAT_MS": "-1"})[0].level == "problem"
    assert check_settings({})[0].level == "ok"


def test_the_qt_binding_a_qasync_app_gets_is_reported() -> None:
    from looptools.cli.doctor import check_binding

    installed = {"PyQt6": "6.11.0", "PySide6-Essentials": "6.11.3"}
    check = check_binding(installed.get, qt_api="")
    assert check.level == "ok"
    assert "PyQt6 6.11.0, PySide6 6.11.3" in check.message
    assert "a qasync app gets PyQt6" in check.message
    check = check_binding(installed.get, qt_api="pyside6")
    assert "gets PySide6 (QT_API)" in check.message
    assert check_binding(installed.get, qt_api="pyqt5").level == "problem"
    assert check_binding(installed.get, qt_api="tk").level == "problem"
    assert check_binding({}.get, qt_api="").level == "note"


_MECHANISMS = ["ticks", "wake timer", "thread dumps", "faulthandler timer", "schedstat",
               "cpu clock", "private fds", "signal masks", "qt probe", "pdeathsig"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux mechanisms")
def test_platform_mechanisms_in_use_and_their_fallbacks() -> None:
    checks = check_platform({})
    assert [c.name for c in checks] == _MECHANISMS
    for check in checks:  # all in use here, each line naming what would replace it
        if check.name == "wake timer":  # (experimental: off unless asked for)
            assert check.level == "note" and check.message.startswith(
                "switched off (wake_timer = false (default)): "), check
            continue
        assert check.level == "ok" and "; without it: " in check.message, check
    wake = {c.name: c for c in check_platform({"LOOPTOOLS_WAKE_TIMER": "1"})}["wake timer"]
    assert wake.level == "ok" and "; without it: " in wake.message, wake
    by_name = {c.name: c.message for c in checks}
    assert by_name["ticks"].endswith("without it: SIGALRM interval timer "
                                     "(not if the app uses SIGALRM)")
    assert "Py_AddPendingCall" in by_name["qt probe"]


def test_a_mechanism_switched_off_by_a_setting_is_a_note() -> None:
    by_name = {c.name: c for c in check_platform({"LOOPTOOLS_PRIVATE_FDS": "0",
                                                  "LOOPTOOLS_SIGNAL_TICKS": "0"})}
    assert by_name["private fds"].level == "note"
    assert by_name["private fds"].message.startswith(
        "switched off (LOOPTOOLS_PRIVATE_FDS=0): it shares the app's")
    assert by_name["ticks"].message == ("switched off (LOOPTOOLS_SIGNAL_TICKS=0): the watchdog "
                                        "thread looks every few ms (dearer on a busy loop)")
    by_name = {c.name: c for c in check_platform({"LOOPTOOLS_WAKE_TIMER": "0"})}
    assert by_name["wake timer"].level == "note"
    assert by_name["wake timer"].message.startswith(
        "switched off (LOOPTOOLS_WAKE_TIMER=0): the watchdog thread wakes about once")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="emulates macOS on Linux")
def test_platform_section_names_the_fallback_of_what_is_missing() -> None:
    """As on macOS: no real-time signals, no unshare, no per-thread CPU clocks
    (tests/apps/without.py takes them away before looptools is imported)."""
    without = Path(__file__).resolve().parent / "apps" / "without.py"
    done = subprocess.run([sys.executable, str(without), "rt-signals,unshare,cpu-clock", "-m",
                           "looptools", "doctor", "--no-probe", "--json"],
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    checks = {c["name"]: c for c in map(json.loads, done.stdout.splitlines())}
    assert [name for name in checks if name in _MECHANISMS] == _MECHANISMS
    assert checks["ticks"]["level"] == "note"
    assert checks["ticks"]["message"] == (
        "no real-time signals: SIGALRM interval timer (not if the app uses SIGALRM)")
    assert checks["thread dumps"]["message"] == (
        "no per-thread CPU clocks (time.pthread_getcpuclockid): faulthandler's timer thread "
        "dumps it later")
    assert checks["private fds"]["message"].startswith(
        "the C library has no unshare: it shares the app's")
    assert checks["qt probe"]["message"] == (
        "no real-time signals: CPython's pending calls (Py_AddPendingCall)")
    assert checks["cpu clock"]["level"] == "note"
    assert checks["schedstat"]["level"] == "ok"  # still there: only the CPU clock is gone
    assert checks["schedstat"]["message"].endswith("without it: lateness alone (on a busy "
                                                   "machine a Python stall may be marked "
                                                   "gil_held)")
    for name in ("faulthandler timer", "signal masks", "pdeathsig"):
        assert checks[name]["level"] == "ok", checks[name]
