"""`looptools profile --check`: the budget verdict at the end of a profile run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import ROOT, culprit_line, env

CHAT = ROOT / "sample_apps" / "chat_qasync.py"


def _profile(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "looptools", "profile", "--no-dashboard", *args],
        capture_output=True, text=True, timeout=120, env=env(), cwd=tmp_path,
    )


def test_blocking_slot_fails_the_budget_and_healthy_run_passes(tmp_path: Path) -> None:
    budget = tmp_path / "budget.toml"
    budget.write_text("[tool.looptools.budget]\nmax_stall_ms = 150\n")
    bad = _profile(tmp_path, "--check", "--budget", str(budget), "--report", "bad.json",
                   str(CHAT), "--problem", "blocking-slot", "--stall-ms", "300",
                   "--duration", "1.0")
    assert bad.returncode == 1, bad.stderr
    assert f"sample_apps/chat_qasync.py:{culprit_line(CHAT, 'blocking-slot')}" in bad.stdout
    assert "max_stall_ms" in bad.stdout
    assert (tmp_path / "bad.json").exists()  # the report is written either way
    good = _profile(tmp_path, "--check", "--budget", str(budget), "--report", "good.json",
                    str(CHAT), "--duration", "1.0")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "within budget" in good.stdout


def test_bad_budget_is_a_usage_error_before_the_app_runs(tmp_path: Path) -> None:
    budget = tmp_path / "budget.toml"
    budget.write_text("[tool.looptools.budget]\nmax_stal_ms = 1\n")
    marker = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    result = _profile(tmp_path, "--check", "--budget", str(budget), str(script))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "max_stal_ms" in result.stderr and "did you mean max_stall_ms" in result.stderr
    assert not marker.exists()
