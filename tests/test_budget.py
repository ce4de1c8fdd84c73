"""Budgets, allow-lists, baselines and diffs over report dicts (looptools.gate),
and reading reports back in (looptools.report.load)."""

from __future__ import annotations

import copy
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from looptools.gate.baseline import (
    Tolerance,
    baseline_to_dict,
    load_baseline,
    make_baseline,
    tighten_baseline,
)
from looptools.gate.diff import diff_reports
from looptools.gate.evaluate import evaluate
from looptools.gate.limits import BUDGET_KEYS, BudgetError, find_budget_file, load_budget
from looptools.gate.offenders import offenders
from looptools.report.load import ReportError, load_report, validate_report

REPORTS = Path(__file__).parent / "data" / "reports"
TODAY = date(2026, 6, 1)


def report(name: str) -> dict[str, Any]:
    return load_report(REPORTS / f"{name}.json")


def budget(tmp_path: Path, text: str, **flags: object) -> Any:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    return load_budget(path, flags)


def no_budget(**flags: object) -> Any:
    return load_budget(None, flags, search=False)


def longest_stall(rep: dict[str, Any]) -> dict[str, Any]:
    stall: dict[str, Any] = max(rep["stalls"], key=lambda s: s["duration_ms"])
    return stall


def culprits(name: str) -> set[str]:
    return {s["culprit"]["function"] for s in report(name)["stalls"]}


# The fixtures are regenerated from real runs of sample_apps/chat_qasync.py, so the
# tests name culprits by what the reports say rather than by hard-coded names:
# blocking_slot has one stall culprit (a Qt slot calling time.sleep), two_blocking has
# that one and one more.
(SLOT,) = culprits("blocking_slot")
(NEW,) = culprits("two_blocking") - culprits("blocking_slot")
SLOT_BARE = SLOT.rsplit(".", 1)[-1]


@pytest.fixture(autouse=True)
def _away_from_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The repository's own pyproject.toml must not leak into budget discovery.
    monkeypatch.chdir(tmp_path)


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("path", sorted(REPORTS.glob("*.json")), ids=lambda p: p.stem)
def test_fixture_reports_match_the_schema(path: Path) -> None:
    assert load_report(path)["schema_version"] == 1


# --------------------------------------------------------------------------- budget parsing


def test_unknown_key_names_key_file_and_suggestion(tmp_path: Path) -> None:
    with pytest.raises(BudgetError) as info:
        budget(tmp_path, "[tool.looptools.budget]\nmax_stal_ms = 100\n")
    assert str(info.value) == ("budget key 'max_stal_ms' in pyproject.toml "
                               "[tool.looptools.budget] is not known (did you mean max_stall_ms?)")


@pytest.mark.parametrize(("line", "key"), [
    ('max_stall_ms = "fast"', "max_stall_ms"),
    ("max_stall_ms = -1", "max_stall_ms"),
    ("max_stall_ms = true", "max_stall_ms"),
    ("max_leaked_tasks = 1.5", "max_leaked_tasks"),
    ('max_blocking_calls = "3"', "max_blocking_calls"),
])
def test_wrong_type_names_key_and_file(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(BudgetError) as info:
        budget(tmp_path, f"[tool.looptools.budget]\n{line}\n")
    message = str(info.value)
    assert f"'{key}'" in message and "pyproject.toml [tool.looptools.budget]" in message
    assert "\n" not in message


@pytest.mark.parametrize(("entry", "words"), [
    ('function = "f"', "needs a reason"),
    ('reason = "why"', "needs function"),
    ('fucntion = "f"\nreason = "r"', "did you mean function?"),
    ('function = "f"\nreason = "r"\nexpires = "someday"', "'expires'"),
    ('function = 3\nreason = "r"', "'function'"),
])
def test_bad_allow_entries(tmp_path: Path, entry: str, words: str) -> None:
    text = f"[tool.looptools.budget]\n[[tool.looptools.budget.allow]]\n{entry}\n"
    with pytest.raises(BudgetError) as info:
        budget(tmp_path, text)
    assert words in str(info.value)
    assert "allow entry 1" in str(info.value)


def test_defaults_without_a_file() -> None:
    resolved = no_budget()
    for key in BUDGET_KEYS:
        assert resolved.limits[key.name] == key.default
        assert resolved.sources[key.name] == "default"
    assert resolved.limits["max_stall_ms"] == 250


def test_precedence_flags_over_file_over_defaults(tmp_path: Path) -> None:
    resolved = budget(tmp_path, "[tool.looptools.budget]\nmax_stall_ms = 400\n"
                                "max_blocking_calls = 2\nmax_leaked_tasks = 1\n",
                      max_blocking_calls=0, max_lag_p99_ms="off")
    assert resolved.limits["max_stall_ms"] == 400
    assert resolved.sources["max_stall_ms"] == "pyproject.toml [tool.looptools.budget]"
    assert resolved.limits["max_blocking_calls"] == 0
    assert resolved.sources["max_blocking_calls"] == "--max-blocking-calls"
    assert resolved.limits["max_leaked_tasks"] == 1
    assert resolved.limits["max_lag_p99_ms"] is None
    assert resolved.limits["max_total_stall_ms"] is None
    assert resolved.sources["max_total_stall_ms"] == "default"


def test_off_unchecks_a_default(tmp_path: Path) -> None:
    resolved = budget(tmp_path, '[tool.looptools.budget]\nmax_stall_ms = "off"\n')
    assert resolved.limits["max_stall_ms"] is None
    result = evaluate(report("blocking_slot"), resolved, today=TODAY)
    assert result.ok
    assert {c.key: c.status for c in result.checks}["max_stall_ms"] == "unchecked"


def test_budget_file_keys_at_top_level_or_in_section(tmp_path: Path) -> None:
    top = tmp_path / "budget.toml"
    top.write_text('max_stall_ms = 100\n[[allow]]\nfunction = "x"\nreason = "r"\n')
    loaded = load_budget(top)
    assert loaded.limits["max_stall_ms"] == 100 and loaded.sources["max_stall_ms"] == "budget.toml"
    assert loaded.allow[0].where == "budget.toml allow entry 1"
    section = tmp_path / "ci.toml"
    section.write_text("[tool.looptools.budget]\nmax_stall_ms = 120\n")
    assert load_budget(section).limits["max_stall_ms"] == 120
    other = tmp_path / "other.toml"
    other.write_text("[tool.black]\nline-length = 100\n")
    with pytest.raises(BudgetError, match=re.escape("has no [tool.looptools.budget]")):
        load_budget(other)


def test_bad_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "b.toml"
    bad.write_text("max_stall_ms = \n")
    with pytest.raises(BudgetError, match=re.escape("budget file b.toml is not valid TOML")):
        load_budget(bad)
    with pytest.raises(BudgetError, match=re.escape("budget file nope.toml does not exist")):
        load_budget(tmp_path / "nope.toml")


def test_pyproject_found_walking_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.looptools.budget]\nmax_stall_ms = 90\n")
    inner = tmp_path / "pkg" / "sub"
    inner.mkdir(parents=True)
    # A nearer pyproject.toml without a budget (a sub-package) is skipped.
    (tmp_path / "pkg" / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    monkeypatch.chdir(inner)
    assert find_budget_file() == tmp_path / "pyproject.toml"
    assert load_budget().limits["max_stall_ms"] == 90


# --------------------------------------------------------------------------- evaluation


def test_healthy_report_is_within_default_budget() -> None:
    result = evaluate(report("healthy"), no_budget(), today=TODAY)
    assert result.ok
    assert {c.key: c.status for c in result.checks}["max_stall_ms"] == "pass"


def test_stall_over_budget_names_the_culprit() -> None:
    rep = report("blocking_slot")
    worst = longest_stall(rep)
    result = evaluate(rep, no_budget(max_stall_ms=worst["duration_ms"] - 1), today=TODAY)
    assert not result.ok
    (violation,) = result.violations
    assert violation.key == "max_stall_ms"
    assert violation.actual == worst["duration_ms"]
    culprit = violation.culprit
    assert culprit is not None
    assert culprit.file == worst["culprit"]["file"] and culprit.line == worst["culprit"]["line"]
    assert culprit.function == worst["culprit"]["function"]
    assert [loc.function for loc in culprit.stack] == [f["function"] for f in worst["stack"]]
    assert evaluate(rep, no_budget(max_stall_ms=worst["duration_ms"]), today=TODAY).ok


def test_one_violation_per_stall_culprit_over_budget() -> None:
    rep = report("two_blocking")
    culprits = {(s["culprit"]["function"], s["culprit"]["file"]) for s in rep["stalls"]}
    shortest = min(s["duration_ms"] for s in rep["stalls"])
    result = evaluate(rep, no_budget(max_stall_ms=shortest - 1), today=TODAY)
    found = {(v.culprit.function, v.culprit.file) for v in result.violations if v.culprit}
    assert found == culprits


def test_sum_keys_count_everything() -> None:
    rep = report("two_blocking")
    calls = sum(c["count"] for c in rep["blocking_calls"])
    slow = sum(c["count"] for c in rep["slow_callbacks"])
    result = evaluate(rep, no_budget(max_stall_ms="off", max_blocking_calls=calls - 1,
                                     max_slow_callbacks=slow,
                                     max_total_stall_ms=rep["stall_summary"]["total_ms"] - 1),
                      today=TODAY)
    by_key = {c.key: c for c in result.checks}
    assert by_key["max_blocking_calls"].status == "fail"
    assert by_key["max_blocking_calls"].actual == calls
    sites = {(s["function"], s["line"]) for c in rep["blocking_calls"] for s in c["sites"]}
    (violation,) = by_key["max_blocking_calls"].violations
    assert {(o.function, o.line) for o in violation.offenders} == sites
    assert by_key["max_slow_callbacks"].status == "pass"
    assert by_key["max_total_stall_ms"].status == "fail"


def test_leaked_and_pending_tasks() -> None:
    rep = report("leaky_tasks")
    leaked = len(rep["tasks"]["pending_at_exit"])
    result = evaluate(rep, no_budget(max_leaked_tasks=leaked - 1,
                                     max_pending_tasks=rep["tasks"]["peak_pending"]),
                      today=TODAY)
    by_key = {c.key: c for c in result.checks}
    assert by_key["max_leaked_tasks"].status == "fail"
    assert by_key["max_pending_tasks"].status == "pass"
    (violation,) = by_key["max_leaked_tasks"].violations
    coros = {t["coro"] for t in rep["tasks"]["pending_at_exit"]}
    assert {o.label for o in violation.offenders} == coros


def test_explicit_limit_on_unmeasured_metric_fails_but_default_does_not() -> None:
    rep = copy.deepcopy(report("healthy"))
    rep["lag"] = None
    rep["meta"]["detectors"] = ["slow_callbacks", "dispatcher", "tasks", "blocking"]
    validate_report(rep, "edited")
    quiet = evaluate(rep, no_budget(), today=TODAY)
    assert quiet.ok
    assert {c.key: c.status for c in quiet.checks}["max_stall_ms"] == "unmeasured"
    loud = evaluate(rep, no_budget(max_lag_p99_ms=50), today=TODAY)
    (violation,) = loud.violations
    assert violation.key == "max_lag_p99_ms" and "did not measure" in violation.message


# --------------------------------------------------------------------------- allow-list


ALLOW = """
[tool.looptools.budget]
max_blocking_calls = 0
max_leaked_tasks = 0
[[tool.looptools.budget.allow]]
{entry}
reason = "legacy"
"""


@pytest.mark.parametrize("entry", [
    f'function = "{SLOT_BARE[:6]}*"',
    f'function = "{SLOT}"',
    f'file = "sample_apps/*.py"\nfunction = "*{SLOT_BARE[2:]}"',
])
def test_allow_list_excuses_stall_and_blocking_site(tmp_path: Path, entry: str) -> None:
    rep = report("blocking_slot")
    result = evaluate(rep, budget(tmp_path, ALLOW.format(entry=entry)), today=TODAY)
    assert result.ok, result.violations
    kinds = {o.kind for o, _ in result.allowed}
    assert {"stall", "blocking_call"} <= kinds
    assert all(e.reason == "legacy" for _, e in result.allowed)


def test_allow_list_does_not_excuse_others(tmp_path: Path) -> None:
    rep = report("two_blocking")
    result = evaluate(rep, budget(tmp_path, ALLOW.format(entry=f'function = "{SLOT_BARE}"')),
                      today=TODAY)
    assert not result.ok
    found = {o.function for v in result.violations for o in v.offenders}
    assert SLOT not in found
    assert NEW in found
    blocking = next(c for c in result.checks if c.key == "max_blocking_calls")
    assert blocking.excused == 1
    assert blocking.actual == sum(
        s["count"] for c in rep["blocking_calls"] for s in c["sites"]
        if s["function"] != SLOT)


def test_allow_list_excuses_leaked_tasks_by_created_at_file(tmp_path: Path) -> None:
    rep = report("leaky_tasks")
    files = {Path(t["created_at"]["file"]).name for t in rep["tasks"]["pending_at_exit"]}
    entries = "\n".join(f'[[tool.looptools.budget.allow]]\nfile = "*/{f}"\nreason = "r"'
                        for f in files)
    resolved = budget(tmp_path, f"[tool.looptools.budget]\nmax_leaked_tasks = 0\n{entries}\n")
    result = evaluate(rep, resolved, today=TODAY)
    assert result.ok
    assert {o.kind for o, _ in result.allowed} == {"leaked_task"}


def test_expired_allow_entry_no_longer_allows(tmp_path: Path) -> None:
    text = ALLOW.format(entry=f'function = "*{SLOT_BARE}"\nexpires = 2026-01-31')
    resolved = budget(tmp_path, text)
    assert evaluate(report("blocking_slot"), resolved, today=date(2026, 1, 31)).ok
    result = evaluate(report("blocking_slot"), resolved, today=date(2026, 2, 1))
    assert not result.ok
    assert [e.expires for e in result.expired] == [date(2026, 1, 31)]
    notes = {o.note for v in result.violations for o in v.offenders}
    assert all("expired on 2026-01-31" in note for note in notes)


def test_expires_as_string(tmp_path: Path) -> None:
    text = ALLOW.format(entry='function = "x"\nexpires = "2026-12-31"')
    assert budget(tmp_path, text).allow[0].expires == date(2026, 12, 31)


# --------------------------------------------------------------------------- baselines


def strict() -> Any:
    return no_budget(max_blocking_calls=0, max_leaked_tasks=0, max_slow_callbacks=0)


def round_trip(baseline: Any, tmp_path: Path) -> Any:
    path = tmp_path / "looptools-baseline.json"
    path.write_text(json.dumps(baseline_to_dict(baseline)))
    return load_baseline(path)


def test_baseline_of_a_report_passes_it(tmp_path: Path) -> None:
    rep = report("blocking_slot")
    assert not evaluate(rep, strict(), today=TODAY).ok
    base = round_trip(make_baseline(rep), tmp_path)
    result = evaluate(rep, strict(), baseline=base, today=TODAY)
    assert result.ok, result.violations
    assert len(result.baselined) == len(offenders(rep))
    assert result.stale == ()


def test_second_blocking_culprit_fails_the_baseline(tmp_path: Path) -> None:
    base = round_trip(make_baseline(report("blocking_slot")), tmp_path)
    result = evaluate(report("two_blocking"), strict(), baseline=base, today=TODAY)
    assert not result.ok
    found = {o.function for v in result.violations for o in v.offenders}
    assert NEW in found and SLOT not in found
    assert all("new since the baseline" in o.note for v in result.violations
               for o in v.offenders)


def test_stale_baseline_entries_are_reported_not_failed(tmp_path: Path) -> None:
    base = round_trip(make_baseline(report("two_blocking")), tmp_path)
    result = evaluate(report("blocking_slot"), strict(), baseline=base, today=TODAY)
    assert result.ok
    stale = {(e.kind, e.function) for e in result.stale}
    assert {("stall", NEW), ("blocking_call", NEW)} <= stale
    assert not any(function == SLOT for _, function in stale)


def test_worse_than_baseline_beyond_tolerance_fails(tmp_path: Path) -> None:
    rep = report("blocking_slot")
    base = round_trip(make_baseline(rep), tmp_path)
    worst = longest_stall(rep)["duration_ms"]
    slightly, much = copy.deepcopy(rep), copy.deepcopy(rep)
    longest_stall(slightly)["duration_ms"] = Tolerance().ms_limit(worst) - 1
    longest_stall(much)["duration_ms"] = Tolerance().ms_limit(worst) + 1
    assert evaluate(slightly, strict(), baseline=base, today=TODAY).ok
    result = evaluate(much, strict(), baseline=base, today=TODAY)
    (violation,) = result.violations
    assert violation.key == "max_stall_ms" and "worse than baseline" in violation.offenders[0].note


def test_baseline_matches_by_function_and_file_not_line(tmp_path: Path) -> None:
    rep = report("blocking_slot")
    base = round_trip(make_baseline(rep), tmp_path)
    moved = copy.deepcopy(rep)
    for stall in moved["stalls"]:
        stall["culprit"]["line"] += 7
        # ...and made on another machine, in another checkout.
        relative = Path(stall["culprit"]["file"]).relative_to(rep["meta"]["cwd"])
        stall["culprit"]["file"] = f"/Users/dev/src/chat/{relative.as_posix()}"
    moved["meta"]["cwd"] = "/Users/dev/src/chat"
    result = evaluate(moved, no_budget(), baseline=base, today=TODAY)
    assert result.ok


def test_baseline_files_are_relative_and_stable(tmp_path: Path) -> None:
    rep = report("two_blocking")
    doc = baseline_to_dict(make_baseline(rep))
    assert doc["looptools_baseline"] == 1
    files = {row["file"] for key in ("stalls", "blocking_calls") for row in doc[key]}
    assert files == {Path(s["culprit"]["file"]).relative_to(rep["meta"]["cwd"]).as_posix()
                     for s in rep["stalls"]}
    assert not any(Path(f).is_absolute() for f in files)
    assert doc == baseline_to_dict(make_baseline(report("two_blocking")))


def test_tighten_only_removes_and_lowers() -> None:
    old = make_baseline(report("two_blocking"))
    today = copy.deepcopy(report("blocking_slot"))
    for stall in today["stalls"]:
        stall["duration_ms"] = 300.0
    tight = tighten_baseline(old, make_baseline(today))
    kept = {(o.kind, o.function) for o in offenders(today)}
    assert {(e.kind, e.function) for e in tight.entries} == kept & {
        (e.kind, e.function) for e in old.entries}
    assert NEW not in {e.function for e in tight.entries}
    stall = next(e for e in tight.entries if e.kind == "stall")
    assert stall.max_ms == 300.0
    # Nothing new gets in.
    assert tighten_baseline(make_baseline(report("healthy")), old).entries == ()


@pytest.mark.parametrize("content", ["{", "[]", '{"looptools_baseline": 9}',
                                     '{"looptools_baseline": 1, "tolerance": {"ratio": "x"}}',
                                     '{"looptools_baseline": 1, "stalls": [{"max_ms": "x"}]}'])
def test_bad_baseline_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(BudgetError, match=re.escape("baseline b.json")):
        load_baseline(path)


# --------------------------------------------------------------------------- diff


def test_diff_healthy_to_blocking_names_new_culprits() -> None:
    after = report("two_blocking")
    result = diff_reports(report("healthy"), after)
    assert result.worse
    new = [c for c in result.worse if c.what == "new stall culprit"]
    assert {(c.offender.function, c.offender.file, c.offender.line) for c in new if c.offender} == {
        (s["culprit"]["function"], s["culprit"]["file"], s["culprit"]["line"])
        for s in after["stalls"]}
    whats = {c.what for c in result.worse}
    assert {"longest stall", "loop lag p99", "busy fraction", "new blocking call"} <= whats


def test_diff_one_new_culprit() -> None:
    result = diff_reports(report("blocking_slot"), report("two_blocking"))
    new = [c for c in result.worse if c.what == "new stall culprit"]
    assert [c.offender.function for c in new if c.offender] == [NEW]


def test_diff_better_and_same() -> None:
    assert not diff_reports(report("two_blocking"), report("healthy")).worse
    same = diff_reports(report("blocking_slot"), report("blocking_slot"))
    assert same.changes == ()


def test_diff_within_tolerance_is_not_worse() -> None:
    before = report("blocking_slot")
    after = copy.deepcopy(before)
    longest_stall(after)["duration_ms"] *= 1.1
    after["stall_summary"]["max_ms"] = longest_stall(after)["duration_ms"]
    assert not diff_reports(before, after).worse
    assert diff_reports(before, after, Tolerance(ratio=1.0, ms=0.0)).worse


def test_diff_leaks() -> None:
    result = diff_reports(report("healthy"), report("leaky_tasks"))
    assert {c.what for c in result.worse} >= {"new leaked task"}


# --------------------------------------------------------------------------- report_io


@pytest.mark.parametrize(("content", "words"), [
    ("", "is empty"),
    ('{"schema_version": 1, "tool": {"na', "is truncated"),
    ("{nope}", "is not valid JSON"),
    ("[1, 2]", "is not a looptools report"),
    ('{"schema_version": 2, "tool": {"name": "looptools", "version": "9"}}', "schema_version 2"),
])
def test_unusable_reports(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ReportError) as info:
        load_report(path)
    assert words in info.value.message and "r.json" in info.value.message
    assert "\n" not in info.value.message


def test_report_failing_schema_names_the_field(tmp_path: Path) -> None:
    rep = copy.deepcopy(report("blocking_slot"))
    rep["stalls"][0]["duration_ms"] = "slow"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rep))
    with pytest.raises(ReportError) as info:
        load_report(path)
    assert "stalls[0].duration_ms" in info.value.message
    assert "r.json" in info.value.message


def test_report_missing_a_section(tmp_path: Path) -> None:
    rep = copy.deepcopy(report("healthy"))
    del rep["stall_summary"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rep))
    with pytest.raises(ReportError, match="stall_summary"):
        load_report(path)


def test_missing_report() -> None:
    with pytest.raises(ReportError, match=re.escape("report nowhere.json does not exist")):
        load_report("nowhere.json")


def test_allowed_offender_in_baseline_is_not_stale(tmp_path: Path) -> None:
    rep = report("blocking_slot")
    base = round_trip(make_baseline(rep), tmp_path)
    resolved = budget(tmp_path, ALLOW.format(entry='function = "*"'))
    result = evaluate(rep, resolved, baseline=base, today=TODAY)
    assert result.ok and result.stale == () and result.allowed


def test_baseline_matches_bare_function_names(tmp_path: Path) -> None:
    # A stall read with faulthandler (GIL held) names its culprit by co_name only.
    rep = report("blocking_slot")
    base = round_trip(make_baseline(rep), tmp_path)
    bare = copy.deepcopy(rep)
    for stall in bare["stalls"]:
        stall["culprit"]["function"] = SLOT_BARE
    assert evaluate(bare, no_budget(), baseline=base, today=TODAY).ok
    other = copy.deepcopy(rep)
    for stall in other["stalls"]:
        stall["culprit"]["function"] = "OtherWindow." + SLOT_BARE
    assert not evaluate(other, no_budget(), baseline=base, today=TODAY).ok


@pytest.mark.parametrize("value,shown", [("true", "true"), ("false", "false")])
def test_a_boolean_budget_value_is_named_as_the_file_spells_it(value: str, shown: str,
                                                                tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.looptools.budget]\nmax_stall_ms = {value}\n")
    with pytest.raises(BudgetError) as caught:
        load_budget(tmp_path / "pyproject.toml")
    assert str(caught.value).endswith(f", not {shown} (a boolean)"), str(caught.value)
