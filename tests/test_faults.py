"""Faults around a monitored app: its output and exit status stay its own, and nothing
recorded before the fault is lost.

(Elsewhere: SIGINT/SIGTERM, exceptions, ``sys.exit``, ``os._exit`` on every loop kind in
``test_exit_matrix``; ``os._exit``'s report in ``test_startup``; a detector that raises in
``test_monitor``; unwritable and full report locations in ``test_safe_writes``; an app
ignoring SIGINT under ``profile --duration`` in ``test_profile_cli``; forks in
``test_any_app``; the socket in ``test_stream`` and ``test_socket_security``.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import env as app_env
from helpers import validate

#: Three 300 ms stalls at known ticks; prints only what does not depend on timing.
_APP = textwrap.dedent("""
    import asyncio, sys, time

    def render_preview():
        time.sleep(0.3)

    async def main():
        print("ready", flush=True)
        for tick in range(int(sys.argv[1])):
            await asyncio.sleep(0.02)
            if tick in (20, 140, 230):
                render_preview()
        print("done", flush=True)

    asyncio.run(main())
""")
CULPRIT_LINE = 5


def _runtime(tag: str) -> Path:
    # AF_UNIX paths must stay short: pytest's tmp_path can be too long.
    folder = Path(f"/tmp/lt-faults-{os.getpid()}-{tag}")
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True,
                          timeout=10).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_dashboard_paused_then_killed_then_another_attached(tmp_path: Path) -> None:
    runtime = _runtime("dash")
    app = tmp_path / "app.py"
    app.write_text(_APP)
    report = tmp_path / "r.json"
    env = app_env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report), LOOPTOOLS_SUMMARY="0",
                  XDG_RUNTIME_DIR=str(runtime))
    plain = subprocess.run([sys.executable, str(app), "300"], capture_output=True, text=True,
                           env=app_env(), timeout=60)
    session = f"lt-faults-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, str(app), "300"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        dash_env = " ".join(f"{k}={v}" for k, v in (("XDG_RUNTIME_DIR", str(runtime)),
                                                    ("TERM", "xterm-256color")))
        _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24",
              f"exec env {dash_env} {sys.executable} -m looptools dashboard {proc.pid}")
        dashboard = int(_tmux("list-panes", "-t", session, "-F", "#{pane_pid}").split()[0])
        deadline = time.monotonic() + 10
        while "render_preview" not in _tmux("capture-pane", "-p", "-t", session) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "render_preview" in _tmux("capture-pane", "-p", "-t", session)
        os.kill(dashboard, signal.SIGSTOP)  # paused: it reads nothing while the app runs on
        time.sleep(2.5)                     # ... through the second stall
        os.kill(dashboard, signal.SIGKILL)
        time.sleep(0.5)
        again = subprocess.run([sys.executable, "-m", "looptools", "dashboard", str(proc.pid),
                                "--once"], capture_output=True, text=True, timeout=30,
                               env={**app_env(), "XDG_RUNTIME_DIR": str(runtime)})
        assert again.returncode == 0, again.stderr
        assert f"pid {proc.pid}" in again.stdout
        out, err = proc.communicate(timeout=60)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(runtime, ignore_errors=True)
    assert proc.returncode == plain.returncode == 0
    assert "ready\n" + out == plain.stdout
    assert "Traceback" not in err and err == plain.stderr, err
    data = json.loads(report.read_text())
    validate(data)
    stalls = [s for s in data["stalls"] if s["culprit"]["function"] == "render_preview"]
    assert len(stalls) == 3, data["stalls"]  # before, during and after the pause
    assert {s["culprit"]["line"] for s in stalls} == {CULPRIT_LINE}


def test_two_monitored_apps_at_once_keep_their_own_reports(tmp_path: Path) -> None:
    runtime = _runtime("two")
    app = tmp_path / "app.py"
    app.write_text(_APP)
    procs = []
    try:
        for name in ("a", "b"):
            env = app_env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(tmp_path / f"{name}.json"),
                          LOOPTOOLS_SUMMARY="0", XDG_RUNTIME_DIR=str(runtime))
            procs.append(subprocess.Popen([sys.executable, str(app), "60"], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(runtime, ignore_errors=True)
    for proc, (out, err), name in zip(procs, results, ("a", "b"), strict=True):
        assert proc.returncode == 0 and out == "ready\ndone\n" and err == "", err
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["meta"]["pid"] == proc.pid
        assert [s["culprit"]["function"] for s in data["stalls"]] == ["render_preview"]


def test_a_loop_closed_and_a_new_one_created_are_both_watched(tmp_path: Path) -> None:
    app = tmp_path / "two_loops.py"
    app.write_text(textwrap.dedent("""
        import asyncio, time
        def first_block():
            time.sleep(0.15)
        def second_block():
            time.sleep(0.15)
        async def run(block):
            await asyncio.sleep(0.05)
            block()
            await asyncio.sleep(0.05)
        asyncio.run(run(first_block))
        print("first loop closed")
        asyncio.run(run(second_block))
        print("second loop closed")
    """))
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(app)], capture_output=True, text=True,
                          timeout=60, env=app_env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report),
                                                  LOOPTOOLS_SUMMARY="0"))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == "first loop closed\nsecond loop closed\n"
    data = json.loads(report.read_text())
    assert [s["culprit"]["function"] for s in data["stalls"]] == ["first_block", "second_block"]


def test_a_child_process_is_not_monitored_and_leaves_the_parents_report(tmp_path: Path
                                                                        ) -> None:
    (tmp_path / "child.py").write_text(textwrap.dedent("""
        import asyncio, os, time
        def child_block():
            time.sleep(0.15)
        async def main():
            await asyncio.sleep(0.02)
            child_block()
        asyncio.run(main())
        print("child done;", "LOOPTOOLS" in os.environ)
    """))
    (tmp_path / "parent.py").write_text(textwrap.dedent("""
        import asyncio, subprocess, sys, time
        def parent_block():
            time.sleep(0.15)
        async def main():
            await asyncio.sleep(0.05)
            parent_block()
            await asyncio.sleep(0.05)
            child = await asyncio.create_subprocess_exec(
                sys.executable, "child.py", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await child.communicate()
            print("child said:", out.decode().strip(), "| stderr:", repr(err.decode()))
        asyncio.run(main())
    """))
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "parent.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env=app_env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report),
                                      LOOPTOOLS_SUMMARY="0"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "child said: child done; False | stderr: ''\n"
    data = json.loads(report.read_text())
    assert data["meta"]["argv"][0].endswith("parent.py")
    assert [s["culprit"]["function"] for s in data["stalls"]] == ["parent_block"]
