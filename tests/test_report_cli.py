"""``looptools report`` through click's CliRunner and, end to end, a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from looptools.cli.report import report
from looptools.report.load import load_report
from looptools.report.render import get_renderer_class

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "render"
CHAT = DATA / "qasync_chat.json"


def run(*args: str) -> Result:
    return CliRunner().invoke(report, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, *mentions: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("looptools report: ")
    assert "Traceback" not in result.stderr
    for text in mentions:
        assert text in lines[0], (text, lines[0])


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# -- good runs --------------------------------------------------------------------------------


def test_default_is_text_on_stdout() -> None:
    result = run(str(CHAT))
    assert result.exit_code == 0
    assert result.stdout.startswith("looptools report  python -m looptools profile")
    assert "sample_apps/chat_qasync.py:97" in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes
    assert result.stderr == ""


@pytest.mark.parametrize("fmt", ["text", "md", "html", "trace", "json", "markdown", "perfetto"])
def test_format_to_stdout(fmt: str) -> None:
    result = run(str(CHAT), "--format", fmt)
    assert result.exit_code == 0
    expected = get_renderer_class(fmt)().render(load_report(CHAT))
    assert result.stdout == expected


@pytest.mark.parametrize(("filename", "fmt"), [
    ("out.txt", "text"), ("out.md", "md"), ("out.html", "html"), ("out.json", "json"),
    ("out.trace.json", "trace"), ("out.perfetto.json", "trace"),
])
def test_format_from_output_extension(tmp_path: Path, filename: str, fmt: str) -> None:
    out = tmp_path / filename
    result = run(str(CHAT), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"wrote {out} ({fmt})\n"
    assert out.read_text(encoding="utf-8") == \
        get_renderer_class(fmt)().render(load_report(CHAT))
    assert no_temp_files(tmp_path)


def test_format_option_wins_over_extension(tmp_path: Path) -> None:
    out = tmp_path / "summary.txt"
    assert run(str(CHAT), "-f", "md", "-o", str(out)).exit_code == 0
    assert out.read_text().startswith("### ❌ looptools: STALLED")


def test_output_dash_is_stdout() -> None:
    result = run(str(CHAT), "-o", "-", "-f", "json")
    assert json.loads(result.stdout) == load_report(CHAT)


def test_output_replaces_existing_file_with_normal_permissions(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("old")
    out.chmod(0o640)
    assert run(str(CHAT), "-o", str(out)).exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert out.stat().st_mode & 0o777 == 0o640  # kept, not mkstemp's 0600
    fresh = tmp_path / "fresh.html"
    assert run(str(CHAT), "-o", str(fresh)).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


def test_dotted_path_renderer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "count_renderer.py").write_text(
        "from looptools.report.render import Renderer\n"
        "class Count(Renderer):\n"
        "    def render(self, report):\n"
        "        return f\"{len(report['stalls'])} stalls\\n\"\n"
        "class Broken(Renderer):\n"
        "    def render(self, report):\n"
        "        raise KeyError('oops')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run(str(CHAT), "-f", "count_renderer:Count").stdout == "9 stalls\n"
    # A failing renderer is one line too, and leaves an existing output untouched.
    out = tmp_path / "keep.txt"
    out.write_text("previous")
    result = run(str(CHAT), "-f", "count_renderer:Broken", "-o", str(out))
    assert_one_line_error(result, "rendering", "KeyError")
    assert out.read_text() == "previous"
    assert no_temp_files(tmp_path)


def test_help_lists_formats() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for text in ("text", "md", "html", "trace", "json", ".trace.json", "--format", "--output"):
        assert text in result.stdout


# -- bad input: one line on stderr, exit 2 ------------------------------------------------------


def _write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def _broken_report(tmp_path: Path) -> str:
    data = json.loads(CHAT.read_text())
    data["stalls"][0]["duration_ms"] = "slow"
    return _write(tmp_path, "bad_schema.json", json.dumps(data))


@pytest.mark.parametrize(("make", "mentions"), [
    (lambda d: str(d / "nope.json"), ["nope.json", "does not exist"]),
    (lambda d: str(d), ["is a directory"]),
    (lambda d: _write(d, "empty.json", ""), ["empty.json", "empty"]),
    (lambda d: _write(d, "cut.json", CHAT.read_text()[:700]), ["cut.json", "truncated"]),
    (lambda d: _write(d, "junk.json", "{not json]"), ["junk.json", "not valid JSON"]),
    (lambda d: _write(d, "list.json", "[1, 2]"), ["list.json", "not a looptools report"]),
    (lambda d: _write(d, "other.json", '{"hello": 1}'), ["other.json", "not a looptools report"]),
    (lambda d: _write(d, "v9.json", CHAT.read_text().replace('"schema_version": 1',
                                                             '"schema_version": 9')),
     ["v9.json", "schema_version 9"]),
    (_broken_report, ["bad_schema.json", "stalls[0].duration_ms", "'slow'"]),
], ids=["missing", "directory", "empty", "truncated", "malformed", "not-object", "foreign",
        "version", "schema"])
def test_bad_report_file(tmp_path: Path, make: object, mentions: list[str]) -> None:
    assert callable(make)
    assert_one_line_error(run(make(tmp_path)), *mentions)


@pytest.mark.parametrize(("args", "mentions"), [
    (["--format", "pdf"], ["--format pdf", "unknown format 'pdf'", "text, md, html, trace, json"]),
    (["--format", "nowhere_pkg.mod:Cls"], ["--format nowhere_pkg.mod:Cls", "cannot import"]),
    (["-o", "report.pdf"], ["-o report.pdf", "cannot tell the format", "--format"]),
])
def test_bad_format(args: list[str], mentions: list[str]) -> None:
    assert_one_line_error(run(str(CHAT), *args), *mentions)


def test_bad_format_is_reported_before_reading_the_report(tmp_path: Path) -> None:
    assert_one_line_error(run(str(tmp_path / "missing.json"), "-f", "pdf"), "--format pdf")


@pytest.mark.parametrize(("target", "mentions"), [
    ("missing_dir/out.html", ["missing_dir/out.html", "does not exist"]),
    ("a_file.txt/out.html", ["a_file.txt/out.html", "cannot write"]),
    ("a_dir", ["-o ", "a_dir", "is a directory"]),
    ("new_dir/", ["-o ", "new_dir/", "names a folder (it ends with /)"]),
])
def test_unwritable_output(tmp_path: Path, target: str, mentions: list[str]) -> None:
    (tmp_path / "a_file.txt").write_text("x")
    (tmp_path / "a_dir").mkdir()
    result = run(str(CHAT), "-f", "html", "-o", f"{tmp_path}/{target}")
    assert_one_line_error(result, *mentions)
    assert no_temp_files(tmp_path) and no_temp_files(tmp_path / "a_dir")
    assert not (tmp_path / "new_dir").exists()


# -- end to end -------------------------------------------------------------------------------


def _subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "looptools", "report", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_real_subprocess(tmp_path: Path) -> None:
    shutil_copy = tmp_path / "chat.json"
    shutil_copy.write_text(CHAT.read_text())
    done = _subprocess("chat.json", "-o", "chat.md", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "wrote chat.md (md)\n"
    assert "`sample_apps/chat_qasync.py:97`" in (tmp_path / "chat.md").read_text()
    text = _subprocess("chat.json", cwd=tmp_path)
    assert text.returncode == 0 and "STALLED: 11 stalls over 100 ms" in text.stdout


def test_real_subprocess_bad_input(tmp_path: Path) -> None:
    (tmp_path / "cut.json").write_text(CHAT.read_text()[:-40])
    done = _subprocess("cut.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "cut.json" in done.stderr and "truncated" in done.stderr


def test_docs_examples_are_current_output() -> None:
    """The text and md examples in docs/report.md are what the command prints today."""
    doc = (ROOT / "docs" / "report.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- output: (\w+) (\S+) -->\n(`{3,})[a-z]*\n(.*?)^\3$", doc,
                        re.S | re.M)
    assert {fmt for fmt, *_ in blocks} == {"text", "md"}
    for fmt, path, _, shown in blocks:
        result = run(str(ROOT / path), "--format", fmt)
        assert result.exit_code == 0
        assert shown == result.stdout, (
            f"docs/report.md is out of date for {fmt} {path}: regenerate it with "
            f"`looptools report {path} --format {fmt}`")


@pytest.mark.parametrize(("environ", "coloured"), [
    ({}, False),                                  # a pipe: plain
    ({"FORCE_COLOR": "1"}, True),                 # a CI log that renders colour
    ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
    ({"FORCE_COLOR": "", "TERM": "dumb"}, False),
])
def test_colour_follows_force_color_no_color_and_term(tmp_path: Path, environ: dict[str, str],
                                                      coloured: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env.update(PYTHONPATH=str(ROOT), **environ)
    for args in (["report", str(CHAT)], ["check", str(CHAT), "--max-stall-ms", "10"]):
        done = subprocess.run([sys.executable, "-m", "looptools", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert ("\x1b[" in done.stdout) is coloured, (args, environ, done.stdout[:300])


def test_an_input_too_big_to_be_a_report_is_refused_before_it_fills_memory(tmp_path: Path
                                                                          ) -> None:
    from looptools.report.load import MAX_REPORT_BYTES

    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(MAX_REPORT_BYTES + 1)  # sparse: no disk used
    assert_one_line_error(run(str(big)), "larger than 256 MiB")


@pytest.mark.parametrize("args", [["report"], ["report", "x.json", "--bogus"],
                                  ["doctor", "--bogus"], ["nosuch"], ["--bogus"]])
def test_every_usage_error_is_one_line(args: list[str], tmp_path: Path) -> None:
    """click's own usage errors are four lines (Usage, Try, blank, Error) with no
    'looptools' on the error; every command (and the group) gives one, naming itself
    (a fresh-eyes trial found report, doctor and the group still giving four)."""
    done = _subprocess(*args[1:], cwd=tmp_path) if args[0] == "report" else subprocess.run(
        [sys.executable, "-m", "looptools", *args], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stdout == "", done.stderr
    who = "looptools" if args[0].startswith("-") or args[0] == "nosuch" else f"looptools {args[0]}"
    assert re.fullmatch(rf"{who}: .+ \(see '{who} --help'\)\n", done.stderr), done.stderr
