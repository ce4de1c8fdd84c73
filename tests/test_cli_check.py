"""``looptools check``, ``baseline`` and ``diff`` through click's CliRunner and, end to
end, through a real ``python -m looptools`` subprocess."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from looptools.cli import cli
from looptools.cli.check import _annotation, baseline, check, diff
from looptools.gate.limits import BUDGET_KEYS

REPO = Path(__file__).resolve().parents[1]
REPORTS = Path(__file__).parent / "data" / "reports"
HEALTHY = str(REPORTS / "healthy.json")
BLOCKING = str(REPORTS / "blocking_slot.json")
TWO = str(REPORTS / "two_blocking.json")
LEAKY = str(REPORTS / "leaky_tasks.json")


def data(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(Path(path).read_text())
    return loaded


def culprit_site(path: str, function: str | None = None) -> str:
    """``sample_apps/chat_qasync.py:480``: where the report says a stall came from."""
    rep = data(path)
    stall = max((s for s in rep["stalls"]
                 if function is None or s["culprit"]["function"] == function),
                key=lambda s: s["duration_ms"])
    file = Path(stall["culprit"]["file"]).relative_to(rep["meta"]["cwd"]).as_posix()
    return f"{file}:{stall['culprit']['line']}"


def culprits(path: str) -> set[str]:
    return {s["culprit"]["function"] for s in data(path)["stalls"]}


# Named from the fixtures, which are regenerated from real runs of the sample app.
(SLOT,) = culprits(BLOCKING)
(NEW,) = culprits(TWO) - culprits(BLOCKING)


def run(command: click.Command, *args: str) -> Result:
    return CliRunner().invoke(command, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    # "looptools check: ...", "looptools diff: ...": the command names itself
    assert re.match(r"looptools (check|baseline|diff): ", result.stderr), result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Away from the repository's pyproject.toml, which may grow a budget of its own.
    monkeypatch.chdir(tmp_path)


# --------------------------------------------------------------------------- check


def test_check_healthy_exits_0() -> None:
    result = run(check, HEALTHY)
    assert result.exit_code == 0, result.output
    assert "within budget" in result.stdout


def test_check_blocking_exits_1_naming_culprit() -> None:
    result = run(check, BLOCKING)
    assert result.exit_code == 1, result.output
    assert culprit_site(BLOCKING) in result.stdout
    assert "max_stall_ms" in result.stdout


def test_check_through_the_group() -> None:
    result = CliRunner().invoke(cli, ["check", BLOCKING, "--max-stall-ms", "off"])
    assert result.exit_code == 0, result.output


def test_flags_override_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.looptools.budget]\nmax_stall_ms = 5000\n")
    assert run(check, BLOCKING).exit_code == 0
    assert run(check, BLOCKING, "--max-stall-ms", "100").exit_code == 1
    assert run(check, HEALTHY, "--max-stall-ms", "100").exit_code == 0


def test_budget_file_flag(tmp_path: Path) -> None:
    (tmp_path / "budget.toml").write_text("max_blocking_calls = 0\nmax_stall_ms = 'off'\n")
    result = run(check, BLOCKING, "--budget", "budget.toml")
    assert result.exit_code == 1
    assert "max_blocking_calls" in result.stdout and "time.sleep" in result.stdout


def test_allow_list_in_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.looptools.budget]\nmax_blocking_calls = 0\n'
        f'[[tool.looptools.budget.allow]]\nfunction = "*.{SLOT.rsplit(".", 1)[-1]}"\n'
        'reason = "sync write, fixed in #123"\nexpires = 2099-01-01\n')
    result = run(check, BLOCKING)
    assert result.exit_code == 0, result.output
    assert "allowed:" in result.stdout and "fixed in #123" in result.stdout
    assert run(check, TWO).exit_code == 1


def test_expired_allow_entry_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.looptools.budget]\n[[tool.looptools.budget.allow]]\n'
        f'function = "{SLOT}"\nreason = "r"\nexpires = 2020-01-01\n')
    result = run(check, BLOCKING, "--format", "github")
    assert result.exit_code == 1
    assert "expired on 2020-01-01" in result.stdout
    assert any(line.startswith("::warning ") for line in result.stdout.splitlines())


@pytest.mark.parametrize(("args", "words"), [
    (["missing.json"], "report missing.json does not exist"),
    ([HEALTHY, "--max-stall-ms", "soon"], "--max-stall-ms"),
    ([HEALTHY, "--max-leaked-tasks", "-1"], "max_leaked_tasks"),
    ([HEALTHY, "--format", "xml"], "--format"),
    ([HEALTHY, "--budget", "nope.toml"], "budget file nope.toml does not exist"),
    ([HEALTHY, "--baseline", "nope.json"], "baseline nope.json does not exist"),
    ([], "Missing argument"),
])
def test_usage_and_input_errors_exit_2_on_one_line(args: list[str], words: str) -> None:
    assert_one_line_error(run(check, *args), words)


def test_truncated_report_exits_2(tmp_path: Path) -> None:
    text = Path(BLOCKING).read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    assert_one_line_error(run(check, "cut.json"), "cut.json is truncated")


def test_report_failing_schema_exits_2(tmp_path: Path) -> None:
    rep = data(BLOCKING)
    rep["loop"]["kind"] = "twisted"
    (tmp_path / "bad.json").write_text(json.dumps(rep))
    assert_one_line_error(run(check, "bad.json"), "loop.kind")


def test_bad_budget_key_exits_2(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.looptools.budget]\nmax_stal_ms = 100\n")
    assert_one_line_error(run(check, HEALTHY),
                          "budget key 'max_stal_ms' in pyproject.toml [tool.looptools.budget] "
                          "is not known (did you mean max_stall_ms?)")


def test_stack_flag_prints_the_stall_stack() -> None:
    plain = run(check, BLOCKING)
    stacked = run(check, BLOCKING, "--stack")
    assert "stack, outermost first" not in plain.stdout
    assert "stack, outermost first" in stacked.stdout
    outermost = data(BLOCKING)["stalls"][0]["stack"][0]["function"]
    assert outermost in stacked.stdout


def test_json_format() -> None:
    result = run(check, TWO, "--format", "json", "--max-blocking-calls", "0")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert [c["key"] for c in doc["checks"]] == [k.name for k in BUDGET_KEYS]
    paths = {o["path"] for v in doc["violations"] for o in v["offenders"]}
    assert paths == {culprit_site(TWO).rsplit(":", 1)[0]}


# --------------------------------------------------------------------------- GitHub


def test_github_annotations_at_culprit_lines() -> None:
    result = run(check, TWO, "--format", "github")
    assert result.exit_code == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    for function in (SLOT, NEW):
        file, line = culprit_site(TWO, function).rsplit(":", 1)
        prefix = f"::error file={file},line={line},title=looptools::"
        assert any(e.startswith(prefix) and function in e for e in errors), errors


def test_github_escaping() -> None:
    line = _annotation("error", "50% of\r\nit", "dir,a/b:c.py", 3)
    assert line == "::error file=dir%2Ca/b%3Ac.py,line=3,title=looptools::50%25 of%0D%0Ait"
    assert _annotation("notice", "x") == "::notice title=looptools::x"


def test_github_notice_for_stale_baseline(tmp_path: Path) -> None:
    assert run(baseline, TWO, "-o", "base.json").exit_code == 0
    result = run(check, BLOCKING, "--baseline", "base.json", "--format", "github")
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stdout.splitlines() if line.startswith("::notice ")]
    assert notices and all("stale baseline entry" in n for n in notices)
    assert any(NEW in n for n in notices)


# --------------------------------------------------------------------------- JUnit


def test_junit_xml_parses_back(tmp_path: Path) -> None:
    result = run(check, TWO, "--max-blocking-calls", "0", "--junit", "out/junit.xml")
    assert result.exit_code == 2  # the directory does not exist: an input error
    (tmp_path / "out").mkdir()
    result = run(check, TWO, "--max-blocking-calls", "0", "--junit", "out/junit.xml")
    assert result.exit_code == 1
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [k.name for k in BUDGET_KEYS]
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"max_stall_ms", "max_blocking_calls"}
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "2"
    text = "".join(f.text or "" for f in root.iter("failure"))
    assert culprit_site(TWO, NEW) in text


def test_an_output_named_as_a_folder_is_refused(tmp_path: Path) -> None:
    """``--junit out/`` and ``baseline -o out/`` name a folder: one line, exit 2, and
    no file ``out`` (click's ``Path`` would have dropped the slash)."""
    assert_one_line_error(run(check, TWO, "--junit", "out/"),
                          "cannot write JUnit XML to out/: names a folder (it ends with /)")
    assert_one_line_error(run(baseline, TWO, "-o", "out/"),
                          "cannot write baseline out/: names a folder (it ends with /)")
    assert not (tmp_path / "out").exists()


def test_junit_all_passing(tmp_path: Path) -> None:
    assert run(check, HEALTHY, "--junit", "j.xml").exit_code == 0
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert not list(root.iter("failure"))


# --------------------------------------------------------------------------- baseline


def test_baseline_workflow(tmp_path: Path) -> None:
    strict = ["--max-blocking-calls", "0", "--max-slow-callbacks", "0"]
    assert run(check, BLOCKING, *strict).exit_code == 1
    made = run(baseline, BLOCKING, "-o", "looptools-baseline.json")
    assert made.exit_code == 0, made.output
    assert "wrote baseline looptools-baseline.json" in made.stdout
    doc = json.loads((tmp_path / "looptools-baseline.json").read_text())
    assert doc["looptools_baseline"] == 1 and doc["stalls"] and doc["blocking_calls"]

    same = run(check, BLOCKING, *strict, "--baseline", "looptools-baseline.json")
    assert same.exit_code == 0, same.output
    worse = run(check, TWO, *strict, "--baseline", "looptools-baseline.json")
    assert worse.exit_code == 1
    assert culprit_site(TWO, NEW) in worse.stdout
    assert "new since the baseline" in worse.stdout
    assert culprit_site(TWO, SLOT) not in worse.stdout


def test_baseline_tighten_never_adds(tmp_path: Path) -> None:
    assert run(baseline, BLOCKING, "-o", "b.json").exit_code == 0
    assert run(baseline, TWO, "-o", "b.json", "--tighten").exit_code == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    functions = {row["function"] for row in doc["stalls"]}
    assert functions == {SLOT}
    assert run(baseline, HEALTHY, "-o", "b.json", "--tighten").exit_code == 0
    assert json.loads((tmp_path / "b.json").read_text())["stalls"] == []


def test_baseline_to_stdout_and_errors() -> None:
    result = run(baseline, BLOCKING, "-o", "-")
    assert json.loads(result.stdout)["looptools_baseline"] == 1
    assert_one_line_error(run(baseline, "missing.json", "-o", "b.json"), "does not exist")
    assert_one_line_error(run(baseline, BLOCKING), "Missing option")


# --------------------------------------------------------------------------- diff


def test_diff_healthy_to_blocking_fails_naming_new_culprit() -> None:
    result = run(diff, HEALTHY, TWO)
    assert result.exit_code == 1, result.output
    for function in (SLOT, NEW):
        assert culprit_site(TWO, function) in result.stdout
    assert "new stall culprit" in result.stdout
    assert "loop lag p99" in result.stdout and "dispatcher busy" in result.stdout


def test_diff_better_or_same_exits_0() -> None:
    assert run(diff, TWO, HEALTHY).exit_code == 0
    same = run(diff, BLOCKING, BLOCKING)
    assert same.exit_code == 0 and "nothing got worse" in same.stdout


def test_diff_tolerance(tmp_path: Path) -> None:
    rep = data(BLOCKING)
    slower = copy.deepcopy(rep)
    for stall in slower["stalls"]:
        stall["duration_ms"] *= 1.2
    slower["stall_summary"]["max_ms"] *= 1.2
    slower["stall_summary"]["total_ms"] *= 1.2
    (tmp_path / "slower.json").write_text(json.dumps(slower))
    assert run(diff, BLOCKING, "slower.json").exit_code == 0
    assert run(diff, BLOCKING, "slower.json", "--tolerance", "1.1").exit_code == 1


def test_diff_github_and_json() -> None:
    gh = run(diff, BLOCKING, TWO, "--format", "github")
    file, line = culprit_site(TWO, NEW).rsplit(":", 1)
    assert f"::error file={file},line={line},title=looptools::" in gh.stdout
    doc = json.loads(run(diff, BLOCKING, TWO, "--format", "json").stdout)
    assert doc["worse"] is True
    new = [c for c in doc["changes"] if c["what"] == "new stall culprit"]
    assert [c["offender"]["function"] for c in new] == [NEW]


def test_diff_input_error_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("")
    assert_one_line_error(run(diff, HEALTHY, "empty.json"), "empty.json is empty")


# --------------------------------------------------------------------------- end to end


def _python_m_looptools(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("LOOPTOOLS", None)  # never auto-start the monitor in the checker itself
    return subprocess.run([sys.executable, "-m", "looptools", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_end_to_end_subprocess(tmp_path: Path) -> None:
    ok = _python_m_looptools("check", HEALTHY, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    over = _python_m_looptools("check", TWO, "--format", "github", "--junit", "j.xml",
                               cwd=tmp_path)
    assert over.returncode == 1, over.stderr
    assert f"line={culprit_site(TWO).rsplit(':', 1)[1]},title=looptools::" in over.stdout
    ET.parse(tmp_path / "j.xml")
    text = Path(TWO).read_text()
    (tmp_path / "cut.json").write_text(text[:100])
    cut = _python_m_looptools("check", "cut.json", cwd=tmp_path)
    assert cut.returncode == 2
    assert cut.stderr.strip().splitlines() == [cut.stderr.strip()]
    assert "truncated" in cut.stderr and "Traceback" not in cut.stderr
    worse = _python_m_looptools("diff", HEALTHY, TWO, cwd=tmp_path)
    assert worse.returncode == 1 and culprit_site(TWO, NEW) in worse.stdout


def test_rich_table_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("looptools.cli.check._stdout_is_terminal", lambda: True)
    result = run(check, TWO, "--stack")
    assert result.exit_code == 1
    assert NEW in result.stdout and "stack, outermost first" in result.stdout
    assert "budget" in result.stdout.splitlines()[1]


def test_paths_of_a_report_made_elsewhere_are_relative_to_its_cwd(tmp_path: Path) -> None:
    rep = data(BLOCKING)
    root = rep["meta"]["cwd"]
    moved = json.loads(json.dumps(rep).replace(json.dumps(root)[1:-1],
                                               "/home/runner/work/chat/chat"))
    assert moved["meta"]["cwd"] == "/home/runner/work/chat/chat"
    (tmp_path / "ci.json").write_text(json.dumps(moved))
    result = run(check, "ci.json", "--format", "github")
    file, line = culprit_site(BLOCKING).rsplit(":", 1)
    assert f"::error file={file},line={line},title=looptools::" in result.stdout
