"""LOOPTOOLS=1 with no code change, in real subprocesses: exit paths, bad settings, cost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from helpers import ROOT, env, run_app, validate

EXIT_APP = str(ROOT / "tests" / "apps" / "exit_app.py")


def test_startup_hook_is_installed() -> None:
    pth = Path(sysconfig.get_paths()["purelib"]) / "looptools.pth"
    assert pth.is_file()
    assert "LOOPTOOLS" in pth.read_text()


def test_unset_hook_imports_nothing() -> None:
    code = "import sys; print(sorted(m for m in ('looptools', 'asyncio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env(), check=True)
    assert out.stdout.strip() == "[]"
    for off in ("0", "", "false"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env(LOOPTOOLS=off), check=True)
        assert out.stdout.strip() == "[]", off


def test_the_app_never_imports_the_readers(tmp_path: Path) -> None:
    # The in-app side (looptools.plugins, looptools.inapp) and the readers
    # (report, gate, dashboard, cli) are kept apart: a monitored app, through
    # its run and the report written at exit, loads none of the readers.
    code = ("import asyncio, sys, looptools\n"
            "asyncio.run(asyncio.sleep(0.2))\n"
            "looptools.uninstall()\n"  # stops the monitor and writes the report, as at exit
            "print(sorted(m for m in sys.modules if m.startswith(('looptools.', 'rich', "
            "'jsonschema', 'click'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(tmp_path / "r.json")),
                         check=True)
    loaded = out.stdout.strip()
    assert "looptools.inapp.monitor" in loaded and (tmp_path / "r.json").is_file()
    for reader in ("looptools.report", "looptools.gate", "looptools.live.dashboard",
                   "looptools.cli", "looptools.pytest_plugin", "'rich", "'jsonschema", "'click"):
        assert reader not in loaded, (reader, loaded)


def test_normal_exit(tmp_path: Path) -> None:
    run = run_app([EXIT_APP, "normal"], tmp_path)
    assert run.returncode == 0
    assert run.stdout == "finished\n"
    assert run.report is not None
    validate(run.report)
    assert run.report["meta"]["exit"]["reason"] == "normal"
    assert run.report["stall_summary"]["count"] == 1
    assert "looptools: asyncio loop" in run.stderr


def test_sys_exit_code_is_kept(tmp_path: Path) -> None:
    run = run_app([EXIT_APP, "exit3"], tmp_path)
    assert run.returncode == 3
    assert run.report is not None
    assert run.report["stall_summary"]["count"] == 1


def test_unhandled_exception_still_writes_report(tmp_path: Path) -> None:
    run = run_app([EXIT_APP, "raise"], tmp_path)
    assert run.returncode == 1
    assert "RuntimeError: app crashed" in run.stderr  # the app's own traceback, unchanged
    assert run.report is not None
    assert run.report["meta"]["exit"] == {
        "reason": "exception", "signal": None, "exception": "RuntimeError: app crashed"}


def test_sigterm_writes_report_and_dies_of_sigterm(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, EXIT_APP, "sigterm-wait"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report)),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode == -signal.SIGTERM
    data = json.loads(report.read_text())
    assert data["meta"]["exit"]["signal"] == "SIGTERM"
    assert data["stall_summary"]["count"] == 1


def test_bad_setting_is_one_clear_line_and_app_runs(tmp_path: Path) -> None:
    run = run_app([EXIT_APP, "normal"], tmp_path, threshold_ms="soon")
    assert run.returncode == 0
    assert run.stdout == "finished\n"
    lines = [line for line in run.stderr.splitlines() if "LOOPTOOLS_THRESHOLD_MS" in line]
    assert lines == ["looptools: LOOPTOOLS_THRESHOLD_MS='soon' (environment): expected a number;"
                     " using the default 50.0",
                     "  settings rejected (defaults used): LOOPTOOLS_THRESHOLD_MS='soon'"]
    assert "Traceback" not in run.stderr
    assert run.report is not None
    assert "stalls" in run.report["meta"]["detectors"]  # on, with the default threshold
    assert run.report["meta"]["threshold_ms"] == 50.0


@pytest.mark.parametrize("value,on", [("abc", False), ("2", False), ("yes", True),
                                      (" On ", True), ("off", False)])
def test_the_switch_itself_takes_on_and_off_words_and_refuses_others_visibly(
        value: str, on: bool, tmp_path: Path) -> None:
    """LOOPTOOLS=abc used to turn monitoring on without a word: anything the start-up
    hook did not know as "off" was "on".  Now a value that is neither is refused in one
    line, and monitoring stays off (the default)."""
    run = run_app([EXIT_APP, "normal"], tmp_path, environ={"LOOPTOOLS": value})
    assert run.returncode == 0 and run.stdout == "finished\n"
    assert (run.report is not None) is on, run.stderr
    refused = [f"looptools: LOOPTOOLS={value!r} is not 1, true, yes or on "
               "(nor 0, false, no or off); not monitoring this process"]
    if on or value == "off":
        assert "LOOPTOOLS=" not in run.stderr, run.stderr
    else:
        assert run.stderr.splitlines() == refused, run.stderr


def test_unwritable_report_path_falls_back_and_says_where(tmp_path: Path) -> None:
    run = run_app([EXIT_APP, "normal"], tmp_path, report="/proc/nope/r.json")
    assert run.returncode == 0
    line = next(line for line in run.stderr.splitlines() if "cannot write the report" in line)
    fallback = line.rsplit("wrote it to ", 1)[1].split(" instead")[0]
    assert json.loads(Path(fallback).read_text())["schema_version"] == 1
    assert Path(fallback).stat().st_mode & 0o777 == 0o600  # a new private file
    Path(fallback).unlink()


def test_a_report_path_naming_a_folder_falls_back_and_makes_no_file(tmp_path: Path) -> None:
    """``LOOPTOOLS_REPORT=out/``: not a file ``out`` (the slash was dropped once)."""
    run = run_app([EXIT_APP, "normal"], tmp_path, report="out/",
                  environ={"TMPDIR": str(tmp_path)})
    assert run.returncode == 0 and run.stdout == "finished\n"
    line = next(line for line in run.stderr.splitlines() if "cannot write the report" in line)
    assert f"to {tmp_path}/out/ (names a folder (it ends with /); not written)" in line, line
    fallback = Path(line.rsplit("wrote it to ", 1)[1].split(" instead")[0])
    assert fallback.parent == tmp_path and json.loads(fallback.read_text())["schema_version"] == 1
    assert not (tmp_path / "out").exists()


def test_pyproject_settings_apply(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.looptools]\nthreshold_ms = 400\n")
    run = run_app([EXIT_APP, "normal"], tmp_path)
    assert run.report is not None
    assert run.report["meta"]["threshold_ms"] == 400
    assert run.report["stall_summary"]["count"] == 0  # the 150 ms block is under 400 ms


@pytest.mark.parametrize("module", ["qasync", "PySide6.QtAsyncio"])
def test_qt_loop_apps_need_no_code_change(module: str, tmp_path: Path) -> None:
    run = run_app([str(ROOT / "tests" / "apps" / "probe_app.py"),
                   "qasync" if module == "qasync" else "qtasyncio", "none"], tmp_path)
    assert run.returncode == 0
    assert run.report is not None
    assert run.report["loop"]["callback_timing"] is True
    assert run.report["loop"]["qt_dispatcher"]


def test_process_without_event_loop_leaves_nothing_behind(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", "print('plain')"], capture_output=True,
                         text=True, env=env(LOOPTOOLS="1"), cwd=tmp_path, timeout=30)
    assert out.returncode == 0
    assert out.stdout == "plain\n"
    assert out.stderr == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["asyncio", "qasync", "qt"])
def test_os_exit_still_writes_the_report_with_its_status(kind: str, tmp_path: Path) -> None:
    """``os._exit`` runs no exit hook: the report (with the stall before it) was lost."""
    run = run_app([str(ROOT / "tests" / "apps" / "ending_app.py"), kind, "osexit3"], tmp_path,
                  summary="0")
    assert run.returncode == 3, run.stderr
    assert run.report is not None, run.stderr
    assert run.report["meta"]["exit"] == {"reason": "exit", "signal": None, "exception": None,
                                          "code": 3}
    assert run.report["stall_summary"]["count"] >= 1  # the 60 ms of work before it
    validate(run.report)


def test_the_exit_summary_groups_stalls_by_culprit(tmp_path: Path) -> None:
    """Twenty stalls of one culprit were twenty identical lines (five shown)."""
    app = tmp_path / "many.py"
    app.write_text("import asyncio, time\n"
                   "def export_csv():\n"
                   "    time.sleep(0.08)\n"
                   "async def main():\n"
                   "    for i in range(8):\n"
                   "        await asyncio.sleep(0.03)\n"
                   "        export_csv()\n"
                   "asyncio.run(main())\n")
    run = run_app([str(app)], tmp_path)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "export_csv (" in line
             and line.startswith("  stall")]
    assert len(lines) == 1, run.stderr
    count = int(lines[0].split("stalls x")[1].split(",")[0])
    assert count == run.report["stall_summary"]["count"] >= 6, run.stderr  # type: ignore[index]
    assert "worst" in lines[0] and "[task]" in lines[0]
