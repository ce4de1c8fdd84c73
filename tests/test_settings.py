"""Settings resolve explicit > environment > pyproject > defaults; bad values say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from looptools.settings import DETECTORS, FIELDS, SettingsError, _optional_path, resolve


def _pyproject(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(body)
    return path


def test_defaults() -> None:
    settings = resolve(environ={}, pyproject=False)
    assert settings.threshold_ms == 50.0
    assert settings.enabled_detectors == DETECTORS
    assert settings.sources["threshold_ms"] == "default"
    assert settings.problems == ()


def test_precedence_explicit_over_env_over_pyproject(tmp_path: Path) -> None:
    path = _pyproject(tmp_path, "[tool.looptools]\nthreshold_ms = 30\nmax_stalls = 7\n"
                                "heartbeat_ms = 4\n")
    env = {"LOOPTOOLS_THRESHOLD_MS": "20", "LOOPTOOLS_MAX_STALLS": "9"}
    settings = resolve({"threshold_ms": 10}, environ=env, pyproject=path)
    assert settings.threshold_ms == 10
    assert settings.sources["threshold_ms"] == "argument"
    assert settings.max_stalls == 9
    assert settings.sources["max_stalls"] == "environment"
    assert settings.heartbeat_ms == 4
    assert settings.sources["heartbeat_ms"].startswith(str(path))


def test_bad_env_value_is_one_line_naming_setting_and_source() -> None:
    settings = resolve(environ={"LOOPTOOLS_THRESHOLD_MS": "fast"}, pyproject=False)
    assert len(settings.problems) == 1
    line = settings.problems[0]
    assert "\n" not in line
    assert "LOOPTOOLS_THRESHOLD_MS='fast'" in line and "(environment)" in line
    assert line.endswith("; using the default 50.0")
    # The default is used; nothing is switched off.
    assert settings.threshold_ms == 50.0 and settings.sources["threshold_ms"] == "default"
    assert settings.enabled_detectors == DETECTORS
    assert settings.rejected == ({"setting": "LOOPTOOLS_THRESHOLD_MS", "value": "fast",
                                  "where": "environment", "problem": "expected a number",
                                  "used": 50.0},)


@pytest.mark.parametrize("name", [f.name for f in FIELDS if f.parse is not _optional_path])
def test_every_setting_falls_back_to_its_default_on_a_bad_value(name: str) -> None:
    field = next(f for f in FIELDS if f.name == name)
    settings = resolve(environ={field.env: "not-a-value"}, pyproject=False)
    assert getattr(settings, name) == field.default
    assert len(settings.problems) == 1 and field.env in settings.problems[0]
    assert settings.enabled_detectors == DETECTORS
    assert [r["setting"] for r in settings.rejected] == [field.env]


def test_unknown_variables_and_keys_are_one_line_each_with_a_suggestion(tmp_path: Path
                                                                        ) -> None:
    path = _pyproject(tmp_path, "[tool.looptools]\nthreshhold_ms = 5\nbogus = 1\n")
    env = {"LOOPTOOLS_TRESHOLD_MS": "20", "LOOPTOOLS_MAXSTALLS": "3", "LOOPTOOLS": "1",
           "LOOPTOOLS_LISTEN": "0", "LOOPTOOLS_BUDGET_MAX_STALL_MS": "100"}
    settings = resolve(environ=env, pyproject=path)
    assert len(settings.problems) == 4, settings.problems
    assert all("\n" not in line for line in settings.problems)
    text = "\n".join(settings.problems)
    assert "LOOPTOOLS_TRESHOLD_MS='20' (environment): unknown setting (did you mean " \
        "LOOPTOOLS_THRESHOLD_MS?); ignored" in text
    assert "LOOPTOOLS_MAXSTALLS" in text and "did you mean LOOPTOOLS_MAX_STALLS?" in text
    assert "tool.looptools.threshhold_ms=5" in text and "did you mean threshold_ms?" in text
    assert "tool.looptools.bogus=1" in text
    assert settings.threshold_ms == 50.0


def test_bad_pyproject_value_names_the_file(tmp_path: Path) -> None:
    path = _pyproject(tmp_path, "[tool.looptools]\nmax_stalls = -3\nbogus = 1\n")
    settings = resolve(environ={}, pyproject=path)
    text = " | ".join(settings.problems)
    assert str(path) in text
    assert "tool.looptools.max_stalls=-3" in text
    assert "tool.looptools.bogus" in text and "unknown setting" in text


def test_bad_explicit_argument_raises() -> None:
    with pytest.raises(SettingsError, match="threshold_ms=0 \\(argument\\)"):
        resolve({"threshold_ms": 0}, environ={}, pyproject=False)
    with pytest.raises(SettingsError, match="unknown setting"):
        resolve({"treshold_ms": 5}, environ={}, pyproject=False)


def test_detector_lists() -> None:
    settings = resolve(environ={"LOOPTOOLS_DISABLE": "blocking, tasks"}, pyproject=False)
    assert settings.enabled_detectors == ("slow_callbacks", "stalls", "dispatcher", "lag",
                                          "handoffs", "worker_loops", "affinity")
    bad = resolve(environ={"LOOPTOOLS_DETECTORS": "stalls,typo"}, pyproject=False)
    assert "unknown detector 'typo'" in bad.problems[0]
    assert bad.detectors == DETECTORS  # the bad value was not used


def test_report_none_means_no_report() -> None:
    assert resolve(environ={"LOOPTOOLS_REPORT": "none"}, pyproject=False).report is None


def test_a_bad_threshold_in_a_real_app_still_catches_the_stall(tmp_path: Path) -> None:
    """``LOOPTOOLS_THRESHOLD_MS=abc`` once switched stall detection off while the summary
    said "threshold 50 ms: no stalls" after a 200 ms stall."""
    import json
    import subprocess
    import sys

    from helpers import env as app_env
    from helpers import validate

    (tmp_path / "app.py").write_text(
        "import asyncio, time\n"
        "def blocking_call():\n"
        "    time.sleep(0.2)\n"
        "async def main():\n"
        "    await asyncio.sleep(0.05)\n"
        "    blocking_call()\n"
        "    await asyncio.sleep(0.05)\n"
        "asyncio.run(main())\n")
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env=app_env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report),
                                      LOOPTOOLS_THRESHOLD_MS="abc"))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "looptools: LOOPTOOLS_THRESHOLD_MS='abc' (environment): expected a number; " \
        "using the default 50.0" in lines, done.stderr
    assert any("1 stall" in line and "threshold 50 ms" in line for line in lines), done.stderr
    assert "  settings rejected (defaults used): LOOPTOOLS_THRESHOLD_MS='abc'" in lines
    data = json.loads(report.read_text())
    validate(data)
    assert data["stalls"][0]["culprit"]["function"] == "blocking_call"
    assert data["meta"]["settings_rejected"] == [
        {"setting": "LOOPTOOLS_THRESHOLD_MS", "value": "abc", "where": "environment",
         "problem": "expected a number", "used": 50.0}]
