"""`looptools profile` end to end: real child processes on every loop kind, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from looptools.cli.profile import profile

SCHEMA = Path(__file__).resolve().parent.parent / "looptools" / "schema" / "report.schema.json"

_BODY = """
def render_preview():
    time.sleep(0.3)  # CULPRIT: blocking-slot


async def main():
    await asyncio.sleep(0.2)
    render_preview()
    await asyncio.sleep(0.1)
"""

APPS = {
    "asyncio": "import asyncio, sys, time\n" + _BODY + textwrap.dedent("""
        asyncio.run(main())
        sys.exit(int(sys.argv[1]))
    """),
    "qasync": "import asyncio, sys, time\nimport qasync\n"
              "from PySide6.QtWidgets import QApplication\n" + _BODY + textwrap.dedent("""
        app = QApplication(sys.argv)
        qasync.run(main())
        sys.exit(int(sys.argv[1]))
    """),
    "qtasyncio": "import asyncio, sys, time\nimport PySide6.QtAsyncio as QtAsyncio\n"
                 "from PySide6.QtWidgets import QApplication\n" + _BODY + textwrap.dedent("""
        app = QApplication(sys.argv)
        QtAsyncio.run(main(), keep_running=False, quit_qapp=True)
        sys.exit(int(sys.argv[1]))
    """),
}


def _culprit_line(source: str) -> int:
    return next(n for n, line in enumerate(source.splitlines(), 1) if "CULPRIT" in line)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def run_profile(args: list[str], cwd: Path,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "looptools", "profile", *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def _validate(report: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


def _looptools_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("looptools")]


@pytest.mark.parametrize("kind", sorted(APPS))
def test_profiles_each_loop_kind(kind: str, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APPS[kind])
    done = run_profile(["--report", "r.json", "--html", "r.html", "--markdown", "r.md",
                        "--trace", "r.trace.json", "app.py", "3"], tmp_path)
    assert done.returncode == 3, done.stderr  # the app's own status
    report = json.loads((tmp_path / "r.json").read_text())
    _validate(report)
    assert report["loop"]["kind"] == kind
    stall = report["stalls"][0]
    assert stall["culprit"]["function"] == "render_preview"
    assert stall["culprit"]["line"] == _culprit_line(APPS[kind])
    assert report["meta"]["exit"]["returncode"] == 3
    assert (tmp_path / "r.html").stat().st_size > 1000
    assert "render_preview" in (tmp_path / "r.md").read_text()
    assert json.loads((tmp_path / "r.trace.json").read_text())
    assert "the app exited with status 3" in done.stderr
    assert "wrote r.json, r.html, r.trace.json, r.md" in done.stderr
    assert "Traceback" not in done.stderr


def test_module_form_and_separator_form(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(APPS["asyncio"])
    done = run_profile(["-m", "pkg.app", "0"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "looptools-report.json").read_text())["stalls"]
    (tmp_path / "app.py").write_text(APPS["asyncio"])
    env = {**_env(), "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    done = subprocess.run([sys.executable, "-m", "looptools", "profile", "--report", "b.json",
                           "--", "python", "app.py", "0"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "b.json").read_text())["stalls"]


def test_a_python_without_looptools_is_named(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APPS["asyncio"])
    bare = tmp_path / "bin"
    bare.mkdir()
    # A Python that starts without site-packages cannot load the start-up hook.
    (bare / "python").write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    (bare / "python").chmod(0o755)
    done = run_profile(["--", str(bare / "python"), "app.py", "0"], tmp_path)
    assert done.returncode == 4
    assert f"{bare / 'python'} did not load looptools" in done.stderr


@pytest.mark.parametrize("args,code,message", [
    (["missing.py"], 2, "missing.py: no such file"),
    (["--", "python", "missing.py"], 2, "missing.py: no such file"),
    (["-m", "no_such_module_here"], 2, "no module named 'no_such_module_here'"),
    (["--", "no-such-program-xyz"], 127, "no-such-program-xyz: command not found"),
    (["--bogus", "app.py"], 2, "no such option: --bogus"),
    ([], 2, "give the app to run"),
    (["--sampler", "nope", "app.py"], 2, "Invalid value for '--sampler'"),
    (["--threshold-ms", "-5", "app.py"], 2, "--threshold-ms"),
])
def test_usage_errors_are_one_line(args: list[str], code: int, message: str,
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.py").write_text("print('never run')")
    result = CliRunner().invoke(profile, args)
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "looptools-report.json").exists()


def test_crashing_app_keeps_its_status_and_report(tmp_path: Path) -> None:
    (tmp_path / "crash.py").write_text(textwrap.dedent("""
        import asyncio
        async def main():
            await asyncio.sleep(0.1)
            raise RuntimeError("boom")
        asyncio.run(main())
    """))
    done = run_profile(["crash.py"], tmp_path)
    assert done.returncode == 1
    report = json.loads((tmp_path / "looptools-report.json").read_text())
    assert report["meta"]["exit"]["exception"] == "RuntimeError: boom"
    assert "it crashed: RuntimeError: boom" in done.stderr


def test_app_without_an_event_loop(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("print('hello')\n")
    done = run_profile(["plain.py"], tmp_path)
    assert done.returncode == 4
    assert 'never started an event loop (report loop.kind is "none")' in done.stderr
    assert json.loads((tmp_path / "looptools-report.json").read_text())["loop"]["kind"] == "none"


_STUBBORN = textwrap.dedent("""
    import asyncio, signal, sys, time
    for name in sys.argv[1:]:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    def render_preview():
        time.sleep(0.2)
    async def main():
        while True:
            await asyncio.sleep(0.1)
            render_preview()
    asyncio.run(main())
""")


def test_app_ignoring_sigint_gets_sigterm_and_report_is_written(tmp_path: Path) -> None:
    (tmp_path / "stubborn.py").write_text(_STUBBORN)
    done = run_profile(["--duration", "1", "--grace", "0.5", "stubborn.py", "SIGINT"], tmp_path)
    assert "sending SIGTERM" in done.stderr
    assert done.returncode == 0, done.stderr  # stopped as --duration asked
    report = json.loads((tmp_path / "looptools-report.json").read_text())
    assert report["meta"]["exit"]["signal"] == "SIGTERM"
    assert report["stalls"] and "partial" not in report["meta"]


def test_app_ignoring_sigterm_too_is_killed_and_stream_is_saved(tmp_path: Path) -> None:
    (tmp_path / "stubborn.py").write_text(_STUBBORN)
    done = run_profile(["--duration", "1", "--grace", "0.5", "stubborn.py", "SIGINT", "SIGTERM"],
                       tmp_path)
    assert done.returncode == 137
    assert "sending SIGKILL" in done.stderr
    report = json.loads((tmp_path / "looptools-report.json").read_text())
    _validate(report)
    assert "rebuilt" in report["meta"]["partial"]
    assert report["stalls"][0]["culprit"]["function"] == "render_preview"
    # With its stack, from the stall's event: the snapshots that came after it carry
    # the stall without one (a fresh-eyes trial found them replacing it).
    assert report["stalls"][0]["stack"][-1]["function"] == "render_preview", report["stalls"]
    assert report["meta"]["exit"]["signal"] == "SIGKILL"


def test_an_output_that_cannot_be_written_is_refused_before_the_app_runs(
        tmp_path: Path) -> None:
    """Not after a run that may have taken an hour (a fresh-eyes trial found the
    check after it): one line, exit 2, the app not started."""
    (tmp_path / "app.py").write_text("open('ran', 'w').close()\n" + APPS["asyncio"])
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-folder").mkdir()
    for flags, line in [
            (["--html", "no/such/dir/r.html"],
             "cannot write --html no/such/dir/r.html: directory no/such/dir does not exist"),
            (["--markdown", "a-file/r.md"], "cannot write --markdown a-file/r.md: a-file is "
                                            "not a directory"),
            (["--report", "a-folder"], "cannot write --report a-folder: is a directory"),
            (["--html", "out/"], "cannot write --html out/: names a folder (it ends with /); "
                                 "give a file name")]:
        done = run_profile([*flags, "app.py", "0"], tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [f"looptools profile: {line}"], done.stderr
        assert not (tmp_path / "ran").exists() and not (tmp_path / "r.md").exists()
        assert not (tmp_path / "out").exists()


def test_an_output_that_fails_after_the_run_is_one_line_and_the_rest_is_written(
        tmp_path: Path) -> None:
    """The folder goes while the app runs: exit 3, one line, the other outputs written."""
    (tmp_path / "out").mkdir()
    (tmp_path / "app.py").write_text("import shutil\nshutil.rmtree('out')\n" + APPS["asyncio"])
    done = run_profile(["--html", "out/r.html", "--markdown", "r.md", "app.py", "0"],
                       tmp_path)
    assert done.returncode == 3
    problems = [line for line in _looptools_lines(done.stderr) if "cannot write" in line]
    assert problems == ["looptools: cannot write --html out/r.html: "
                        "directory out does not exist"]
    assert (tmp_path / "looptools-report.json").exists() and (tmp_path / "r.md").exists()


def _py_spy_usable() -> str | None:
    from looptools.cli.doctor import check_py_spy

    problems = [c for c in check_py_spy() if c.level == "problem"]
    if problems:
        return problems[0].message
    from looptools.profilers import find_py_spy

    return None if find_py_spy() else "py-spy is not installed"


def test_py_spy_sampler(tmp_path: Path) -> None:
    reason = _py_spy_usable()
    if reason:
        pytest.skip(reason)
    (tmp_path / "app.py").write_text(APPS["asyncio"])
    done = run_profile(["--sampler", "py-spy", "--report", "r.json", "app.py", "5"], tmp_path)
    assert done.returncode == 5, done.stderr  # the app's status, through py-spy
    speedscope = json.loads((tmp_path / "r.speedscope.json").read_text())
    assert "speedscope" in speedscope["$schema"]
    prof = json.loads((tmp_path / "r.json").read_text())["profile"]
    assert prof["sampler"] == "py-spy" and prof["samples"] > 20
    assert prof["files"]["speedscope"].endswith("r.speedscope.json")
    assert "render_preview" in [row["function"] for row in prof["top_self"][:5]]
    assert not any(row["function"].startswith("process ") for row in prof["top_total"])


def test_yappi_sampler(tmp_path: Path) -> None:
    pytest.importorskip("yappi")
    (tmp_path / "app.py").write_text(APPS["asyncio"])
    done = run_profile(["--sampler", "yappi", "--report", "r.json", "app.py", "0"], tmp_path)
    assert done.returncode == 0, done.stderr
    prof = json.loads((tmp_path / "r.json").read_text())["profile"]
    assert prof["sampler"] == "yappi" and prof["clock"] == "wall"
    assert (tmp_path / "r.yappi.pstat").stat().st_size > 0
    assert (tmp_path / "r.yappi.callgrind").read_text().startswith("version:")
    import pstats

    pstats.Stats(str(tmp_path / "r.yappi.pstat"))  # a valid pstat file
    row = next(r for r in prof["top_self"] if r["function"] == "render_preview")
    assert row["self_ms"] >= 250  # time.sleep's wall time, not lost in looptools' wrapper
    # None of looptools' own code (the package itself, wherever the checkout is:
    # a clone named "looptools" holds the virtualenv too).
    import looptools

    package = os.path.join(os.path.dirname(os.path.abspath(looptools.__file__)), "")
    assert not any(r["file"].startswith(package) for r in prof["top_self"])


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs: an exited app whose parent was killed waits, a
    zombie, until PID 1 reaps it (1.6 s in one sandbox, >10 s once), and is done."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.mark.parametrize("sampler", ["none", "py-spy"])
def test_a_killed_profile_command_takes_its_app_with_it(tmp_path: Path, sampler: str) -> None:
    """SIGKILL of ``looptools profile`` once left the app running on (205 s); now the
    kernel sends it SIGTERM (PR_SET_PDEATHSIG), through py-spy and its shim too."""
    import signal
    import time

    if sampler == "py-spy":
        from looptools.profilers import find_py_spy

        if find_py_spy() is None:
            pytest.skip("py-spy is not installed")
    app = tmp_path / "forever.py"
    app.write_text("import asyncio, os\nprint(os.getpid(), flush=True)\n"
                   "asyncio.run(asyncio.sleep(600))\n")
    proc = subprocess.Popen([sys.executable, "-m", "looptools", "profile", "--no-dashboard",
                             "--sampler", sampler, "--report", str(tmp_path / "r.json"),
                             str(app)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # py-spy prints a line of its own on stdout first
            seen.append(line)
            if line.strip().isdigit():
                break
        assert seen and seen[-1].strip().isdigit(), seen
        app_pid = int(seen[-1])
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not _running(app_pid):
                break
            time.sleep(0.05)
        else:
            os.kill(app_pid, signal.SIGKILL)
            pytest.fail("the app ran on after its looptools profile was killed")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.killpg(proc.pid, signal.SIGKILL) if proc.returncode is None else None


def test_without_a_dashboard_each_stall_is_told_as_it_ends(tmp_path: Path) -> None:
    """A CI log reader sees a stall while the app still runs, not only at its exit."""
    app = tmp_path / "slow_then_idle.py"
    app.write_text(textwrap.dedent("""
        import asyncio, time
        def export_csv():
            time.sleep(0.2)
        async def main():
            await asyncio.sleep(0.1)
            export_csv()
            await asyncio.sleep(3)
        asyncio.run(main())
    """))
    proc = subprocess.Popen([sys.executable, "-m", "looptools", "profile", "--no-dashboard",
                             "--report", "none", str(app)], env=_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        still_running = proc.poll() is None
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert first.startswith("looptools: stall ") and "export_csv (slow_then_idle.py:4)" in first, \
        first + rest
    assert still_running  # told 3 s before the app ended
    assert proc.returncode == 0, rest
    assert "export_csv (slow_then_idle.py:4)" in rest  # and again in the final summary
