"""Settings resolve explicit > environment > pyproject > defaults; bad values say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from looptools.settings import DETECTORS, SettingsError, resolve


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
    # What could not be configured is off; the rest runs.
    assert "stalls" not in settings.enabled_detectors
    assert "slow_callbacks" not in settings.enabled_detectors
    assert "lag" in settings.enabled_detectors


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
    assert settings.enabled_detectors == ("slow_callbacks", "stalls", "dispatcher", "lag")
    bad = resolve(environ={"LOOPTOOLS_DETECTORS": "stalls,typo"}, pyproject=False)
    assert "unknown detector 'typo'" in bad.problems[0]
    assert bad.detectors == DETECTORS  # the bad value was not used


def test_report_none_means_no_report() -> None:
    assert resolve(environ={"LOOPTOOLS_REPORT": "none"}, pyproject=False).report is None
