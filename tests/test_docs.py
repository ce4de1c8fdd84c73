"""The docs' shell examples are run, and what they print is what the docs show.

Collected: every fenced block in README.md, docs/*.md and sample_apps/README.md that runs
looptools -- `looptools ...`, `python -m looptools ...`, `LOOPTOOLS=1 python ...`,
`pytest --looptools ...` -- in a shell block (```sh, ```shell, ```bash: every line is a
command), a console block (```console, or any block with "$ " lines: those lines are the
commands) or a ```yaml block (its `run:` steps).

Conventions (also in docs/doc-examples.md):

* Such a block is run here, in order within its document, in a fresh directory holding a
  copy of sample_apps/, with the environment's own looptools (Qt offscreen) -- unless an
  HTML comment right before the fence says why it cannot be:
  ``<!-- not-run: REASON -->``.  The reason is required; a looptools block with neither
  fails.  Workflows (```yaml) are never run.
* Every command must exit 0, unless its trailing comment says ``# exit status N``.
* `python3 -m venv` and `pip install` steps are taken as done (the tests run in an
  installed checkout), and `.venv/bin/` means this environment.
* In a console block, the lines after a ``$ `` command up to the next one are what it
  prints (standard output and error together, as a terminal shows them), compared line by
  line, trailing spaces ignored.  Two marks stand for what changes from run to run:
  ``…`` any text within a line, and a line of just ``⋮`` any number of lines (or none).
  Nothing else may differ.  A command followed by no lines is run but its output is not
  compared.
* ``<!-- file: PATH -->`` before a fence: the block is the file PATH as the commands above
  it in the same document wrote it (same marks; a .json file compared ignoring
  whitespace).
* ``<!-- output: FORMAT REPORT -->`` blocks are tests/test_report_cli.py's (exact output
  of ``looptools report REPORT --format FORMAT``).
* Every looptools command in the docs, run or not, may only use options its command has.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "sample_apps" / "README.md"]
ANY_TEXT = "…"
ANY_LINES = "⋮"
SHELL = {"sh", "shell", "bash", "zsh"}
TIMEOUT_S = 120

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<key>not-run|file|output)\s*:?\s*(?P<value>.*?)\s*-->\s*$")
_SUBCOMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:\S*/)?looptools\s+"
                         r"(?:profile|report|check|baseline|diff|dashboard|ps|doctor)\b")
_EXIT = re.compile(r"#.*\bexit status (\d+)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SEPARATORS = {"&&", "||", ";", "|", "&", "\n"}
_REDIRECTIONS = {">", ">>", "<", ">&", "&>"}


@dataclasses.dataclass
class Command:
    line: int                   # 1-based line in the document
    text: str
    shown: list[str] | None     # console blocks: the output shown after it, if any
    status: int = 0


@dataclasses.dataclass
class Block:
    doc: Path
    line: int                   # of the opening fence
    info: str
    body: list[str]
    marker: tuple[str, str] | None
    commands: list[Command]

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def not_run(self) -> str | None:
        return self.marker[1] if self.marker and self.marker[0] == "not-run" else None


# -- reading the docs -------------------------------------------------------------------

def parse_doc(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip().lower()
        start, body = i, []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence)
                                      and set(lines[i].strip()) == {fence[0]}):
            line = lines[i]
            cut = len(line) - len(line.lstrip())
            body.append(line[min(indent, cut):])
            i += 1
        i += 1
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = None
        if before >= 0 and (mm := _MARKER.match(lines[before])):
            marker = (mm["key"], mm["value"])
        info_word = info.split()[0] if info else ""
        blocks.append(Block(doc, start + 1, info_word, body, marker,
                            _commands(info_word, body, start + 2)))
    return blocks


def _commands(info: str, body: list[str], first: int) -> list[Command]:
    found: list[Command] = []
    if info in SHELL:
        pending = ""
        for n, raw in enumerate(body):
            text = pending + raw
            if text.rstrip().endswith("\\"):
                pending = text.rstrip()[:-1] + " "
                continue
            pending = ""
            if text.strip() and not text.lstrip().startswith("#"):
                found.append(Command(first + n, text.strip(), None))
    elif info == "console" or any(line.startswith("$ ") for line in body):
        for n, raw in enumerate(body):
            if raw.startswith("$ "):
                found.append(Command(first + n, raw[2:].strip(), []))
            elif found and found[-1].shown is not None:
                found[-1].shown.append(raw)
        for command in found:
            while command.shown and not command.shown[-1].strip():
                command.shown.pop()
            if not command.shown:
                command.shown = None
    elif info in ("yaml", "yml"):
        n = 0
        while n < len(body):
            m = re.match(r"^(\s*)(?:-\s+)?run:\s*(.*)$", body[n])
            n += 1
            if not m:
                continue
            value = m[2].strip()
            if value and value[0] not in "|>":
                found.append(Command(first + n - 1, value, None))
                continue
            while n < len(body) and (not body[n].strip()
                                     or len(body[n]) - len(body[n].lstrip()) > len(m[1])):
                if body[n].strip():
                    found.append(Command(first + n, body[n].strip(), None))
                n += 1
    for command in found:
        if (m := _EXIT.search(command.text)) is not None:
            command.status = int(m[1])
    return found


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell line, each as words (redirections left out)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not a shell line
        return []
    out: list[list[str]] = [[]]
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in _SEPARATORS:
            out.append([])
        elif token in _REDIRECTIONS:
            skip = True
        else:
            out[-1].append(token)
    return [words for words in out if words]


def _program(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Environment assignments in front of a command, and the command itself."""
    env: dict[str, str] = {}
    words = list(words)
    if words and words[0] == "env":
        words.pop(0)
    while words and _ASSIGNMENT.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    return env, words


def looptools_cli_args(words: list[str]) -> list[str] | None:
    """The arguments of a `looptools` / `python -m looptools` command, else None."""
    _, argv = _program(words)
    if argv and os.path.basename(argv[0]) == "looptools":
        return argv[1:]
    if (len(argv) >= 3 and re.fullmatch(r"python3?(\.\d+)?", os.path.basename(argv[0]))
            and argv[1] == "-m" and argv[2] == "looptools"):
        return argv[3:]
    return None


def runs_looptools(command: Command) -> bool:
    for words in simple_commands(command.text):
        env, argv = _program(words)
        if looptools_cli_args(words) is not None:
            return True
        if env.get("LOOPTOOLS", "").lower() not in ("", "0", "false", "no", "off") and argv:
            return True
        if argv and "pytest" in " ".join(argv[:3]) and any(
                w.startswith("--looptools") for w in argv):
            return True
        if len(argv) >= 3 and argv[1] == "-m" and argv[2].startswith("looptools"):
            return True
    return False


def _all_blocks() -> list[Block]:
    return [block for doc in DOCS for block in parse_doc(doc)]


def looptools_blocks() -> list[Block]:
    return [b for b in _all_blocks() if any(runs_looptools(c) for c in b.commands)]


# -- what a command may be given --------------------------------------------------------

def _click_options(command: click.Command) -> dict[str, bool]:
    """Option name -> takes a value."""
    names: dict[str, bool] = {"-h": False, "--help": False}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                names[name] = not (param.is_flag or param.count)
    return names


def unknown_cli_options(args: list[str]) -> list[str]:
    from looptools.cli import cli

    if not args:
        return []
    if args[0].startswith("-"):
        return [a for a in args if a not in ("-V", "--version", "-h", "--help")]
    ctx = click.Context(cli, info_name="looptools")
    command = cli.get_command(ctx, args[0])
    if command is None:
        return [f"no command {args[0]!r}"]
    options = _click_options(command)
    bad, i = [], 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        if arg.startswith("-") and arg != "-":
            name = arg.split("=", 1)[0]
            if name not in options:
                bad.append(arg)
            elif options[name] and "=" not in arg:
                i += 1
                if command.name == "profile" and name == "-m":
                    break       # the rest is the module's
        elif command.name == "profile":
            break               # the app; the rest is its own
        i += 1
    return bad


def _pytest_options() -> dict[str, bool]:
    from looptools import pytest_plugin

    names: dict[str, bool] = {}

    class Group:
        def addoption(self, *opts: str, **kwargs: object) -> None:
            for opt in opts:
                names[opt] = kwargs.get("action") not in ("store_true", "store_false")

    class Parser:
        def getgroup(self, *args: object, **kwargs: object) -> Group:
            return Group()

        def addini(self, *args: object, **kwargs: object) -> None:
            pass

    pytest_plugin.pytest_addoption(Parser())  # type: ignore[arg-type]
    return names


def unknown_pytest_options(argv: list[str]) -> list[str]:
    options = _pytest_options()
    return [a for a in argv if a.startswith("--looptools") and a.split("=")[0] not in options]


# -- comparing ------------------------------------------------------------------------

def _line_pattern(line: str) -> str:
    return ".*?".join(re.escape(part) for part in line.rstrip().split(ANY_TEXT))


def shown_pattern(shown: list[str]) -> re.Pattern[str]:
    parts = []
    for line in shown:
        if line.strip() == ANY_LINES:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(_line_pattern(line) + r"\n")
    return re.compile("".join(parts))


def matches(shown: list[str], printed: str) -> bool:
    text = "".join(line.rstrip() + "\n" for line in printed.splitlines())
    return shown_pattern(shown).fullmatch(text) is not None


def json_matches(shown: list[str], written: str) -> bool:
    squeeze = re.compile(r"\s+")
    pattern = ".*?".join(re.escape(squeeze.sub("", part))
                         for part in "\n".join(shown).split(ANY_TEXT))
    return re.fullmatch(pattern, squeeze.sub("", written), re.S) is not None


def _difference(shown: list[str], printed: str) -> str:
    # A printed line that a marked line of the doc matches is shown as that line, so
    # that the diff holds only what really differs.
    marked = [(line, re.compile(_line_pattern(line))) for line in shown if ANY_TEXT in line]
    lines = []
    for line in printed.splitlines():
        same = next((doc for doc, pattern in marked if pattern.fullmatch(line.rstrip())), None)
        lines.append(same if same is not None else line)
    return "\n".join(difflib.unified_diff(shown, lines, "the doc shows",
                                          "the command printed", lineterm=""))


def _json_difference(shown: list[str], written: str) -> str:
    """The JSON items that differ, whitespace squeezed out (-: the doc, +: the file)."""
    doc = re.sub(r"\s+", "", "\n".join(shown)).split(",")
    file = re.sub(r"\s+", "", written).split(",")
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, doc, file).get_opcodes():
        if tag == "equal":
            continue
        if i2 - i1 == j2 - j1:
            for a, b in zip(doc[i1:i2], file[j1:j2], strict=True):
                if not re.fullmatch(_line_pattern(a), b):
                    out += [f"- {a}", f"+ {b}"]
        else:
            out += [f"- {a}" for a in doc[i1:i2]] + [f"+ {b}" for b in file[j1:j2]]
    return "\n".join(out)


# -- running --------------------------------------------------------------------------

def _environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOOPTOOLS", "PYTEST_", "COV_")) and k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["QT_QPA_PLATFORM"] = "offscreen"
    # The reader's Qt app has one binding (the qt extra's PySide6); this environment has
    # four, and qasync would take PyQt5.
    env["QT_API"] = "pyside6"
    # A desktop session has one; without it Qt prints a warning the docs do not show.
    runtime = folder.parent / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env["PYTHONUNBUFFERED"] = "1"   # output in the order a terminal shows it
    return env


def _as_run_here(text: str) -> str:
    steps = [step.strip() for step in re.split(r"\s&&\s", text)]
    kept = [step for step in steps
            if not re.search(r"(^|\s)(\S*/)?python3?\s+-m\s+venv\b|(^|\s|/)pip3?\s+install\b",
                             step)]
    return re.sub(r"(?<![\w./-])\.venv/bin/", "", " && ".join(kept))


def run_command(command: Command, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", _as_run_here(command.text)], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)


def _runnable_docs() -> list[Path]:
    return sorted({b.doc for b in looptools_blocks() if b.not_run is None},
                  key=DOCS.index)


# -- the tests ------------------------------------------------------------------------

def test_every_looptools_example_is_run_or_says_why_not() -> None:
    problems = []
    for block in _all_blocks():
        uses = any(runs_looptools(c) for c in block.commands)
        if block.marker and block.marker[0] == "not-run" and not block.marker[1]:
            problems.append(f"{block.where}: <!-- not-run: --> without a reason")
        if uses and block.info in ("yaml", "yml") and block.not_run is None:
            problems.append(f"{block.where}: a workflow cannot run here: mark it "
                            f"<!-- not-run: REASON -->")
        if block.info == "" and not block.commands and not block.marker and any(
                _SUBCOMMAND.match(line) for line in block.body):
            problems.append(f"{block.where}: a looptools command in an unlabelled block: "
                            f"label it sh or console (or text for a synopsis)")
        if block.marker and block.marker[0] == "file" and not block.marker[1]:
            problems.append(f"{block.where}: <!-- file: --> without a path")
    assert not problems, "\n".join(problems)


def test_doc_commands_use_options_that_exist() -> None:
    problems = []
    for block in looptools_blocks():
        for command in block.commands:
            for words in simple_commands(command.text):
                args = looptools_cli_args(words)
                bad = unknown_cli_options(args) if args is not None else []
                _, argv = _program(words)
                if args is None and argv and "pytest" in " ".join(argv[:3]):
                    bad = unknown_pytest_options(argv)
                if bad:
                    problems.append(f"{block.where} (line {command.line}): {command.text!r}: "
                                    f"no such option or command: {', '.join(bad)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("where, reason", [
    pytest.param(b.where, b.not_run, id=b.where) for b in looptools_blocks()
    if b.not_run is not None])
def test_not_run(where: str, reason: str) -> None:
    pytest.skip(f"{where}: not-run: {reason}")


@pytest.mark.parametrize("doc", [pytest.param(d, id=str(d.relative_to(ROOT)))
                                 for d in _runnable_docs()])
def test_doc_examples(doc: Path, tmp_path: Path) -> None:
    here = tmp_path / "run"
    here.mkdir()
    shutil.copytree(ROOT / "sample_apps", here / "sample_apps",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = _environment(here)
    failures: list[str] = []
    for block in parse_doc(doc):
        if block.marker and block.marker[0] == "file":
            path = here / block.marker[1]
            if not path.is_file():
                failures.append(f"{block.where}: the commands above wrote no {block.marker[1]}")
                continue
            written = path.read_text(encoding="utf-8")
            if path.suffix == ".json" and not json_matches(block.body, written):
                failures.append(f"{block.where}: {block.marker[1]} is not what the doc shows "
                                f"(whitespace ignored):\n" + _json_difference(block.body, written))
            elif path.suffix != ".json" and not matches(block.body, written):
                failures.append(f"{block.where}: {block.marker[1]} is not what the doc shows:\n"
                                + _difference(block.body, written))
            continue
        if block.not_run is not None or not any(runs_looptools(c) for c in block.commands):
            continue
        for command in block.commands:
            done = run_command(command, here, env)
            at = f"{block.doc.relative_to(ROOT)}:{command.line}: `{command.text}`"
            if done.returncode != command.status:
                failures.append(f"{at} exited {done.returncode}, not {command.status}:\n"
                                f"{done.stdout[-3000:]}")
            elif command.shown is not None and not matches(command.shown, done.stdout):
                failures.append(f"{at} printed what the doc does not show "
                                f"(marks: {ANY_TEXT} any text, {ANY_LINES} any lines):\n"
                                + _difference(command.shown, done.stdout))
    assert not failures, "\n\n".join(failures)


# -- the comparison can fail ------------------------------------------------------------

def test_marks_allow_only_what_they_mark() -> None:
    shown = ["looptools: 1 stall (longest … ms)", "⋮", "  report: r.json"]
    assert matches(shown, "looptools: 1 stall (longest 202 ms)\n  report: r.json\n")
    assert matches(shown, "looptools: 1 stall (longest 9 ms)\nmore\nlines\n  report: r.json")
    assert not matches(shown, "looptools: 2 stalls (longest 202 ms)\n  report: r.json\n")
    assert not matches(shown, "looptools: 1 stall (longest 202 ms)\n  report: x.json\n")
    assert not matches(shown, "looptools: 1 stall (longest 202 ms)\n")
    # `…` stays within its line; a line without marks is the whole line.
    assert not matches(["a … b"], "a x\ny b\n")
    assert not matches(["a"], "a\nb\n")
    assert matches(["x = 1   "], "x = 1\n")
    assert _difference(["a … c", "b"], "a x c\nB\n").splitlines()[-3:] == [" a … c", "-b", "+B"]
    assert json_matches(['{"line": 468,', '  "max_ms": …}'], '{\n  "line": 468, "max_ms": 4.5\n}')
    assert not json_matches(['{"line": 480, "max_ms": …}'], '{"line": 468, "max_ms": 4.5}')
    assert _json_difference(['{"line": 480, "max_ms": …}'], '{"line": 468, "max_ms": 4.5}') \
        == '- {"line":480\n+ {"line":468'


def test_commands_are_found_and_taken_apart() -> None:
    assert looptools_cli_args(shlex.split("QT_QPA_PLATFORM=offscreen .venv/bin/looptools "
                                          "profile --duration 6 app.py")) == [
        "profile", "--duration", "6", "app.py"]
    assert looptools_cli_args(["python", "-m", "looptools", "doctor"]) == ["doctor"]
    assert looptools_cli_args(["python", "-m", "pytest"]) is None
    assert runs_looptools(Command(1, "LOOPTOOLS=1 python app.py &", None))
    assert runs_looptools(Command(1, "pytest --looptools", None))
    assert not runs_looptools(Command(1, ".venv/bin/python -m pytest", None))
    assert unknown_cli_options(["profile", "-o", "r.json", "--", "python", "app.py"]) == ["-o"]
    assert unknown_cli_options(["profile", "--report", "r.json", "app.py", "-o", "x"]) == []
    assert unknown_cli_options(["report", "run.json", "-f", "md", "-o", "x.md"]) == []
    assert unknown_cli_options(["report", "run.json", "--outptu", "x"]) == ["--outptu"]
    assert unknown_cli_options(["profil", "app.py"]) == ["no command 'profil'"]
    assert unknown_pytest_options(["pytest", "--looptools", "--looptools-max-stall-ms",
                                   "100", "--looptools-max-stal-ms", "1"]) == [
        "--looptools-max-stal-ms"]
    assert _as_run_here('python3 -m venv .venv && .venv/bin/pip install -e ".[qt]" && '
                        "X=1 .venv/bin/looptools doctor") == "X=1 looptools doctor"
    assert simple_commands('looptools report r.json -f md >> "$OUT"') == [
        ["looptools", "report", "r.json", "-f", "md"]]
    console = _commands("console", ["$ looptools diff a b   # exit status 1", "worse", "",
                                    "$ ls"], 10)
    assert [(c.line, c.shown, c.status) for c in console] == [(10, ["worse"], 1),
                                                              (13, None, 0)]
