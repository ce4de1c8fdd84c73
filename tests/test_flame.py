"""Where the blocked time went: the merged stall stacks (looptools.report.render.flame),
the speedscope export (``looptools report -f speedscope``, ``looptools profile
--speedscope``, with a profile per stalled worker thread after the main loop's) and py-spy's
speedscope file opening on the app's main thread -- on reports of real runs of the sample
apps and of tests/apps/worker_loops_app.py.

The speedscope files are validated against speedscope's own file-format schema, vendored in
tests/data/speedscope/ (see the README there).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from helpers import ROOT, env, run_app, validate

import looptools
from looptools._version import __version__
from looptools.cli.report import report as report_command
from looptools.report.render import SpeedscopeRenderer, get_renderer_class
from looptools.report.render.flame import (
    FlameNode,
    flame_graph,
    icicle,
    stall_stacks,
    worker_threads,
)

SPEEDSCOPE_SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "speedscope" / "file-format-schema.json").read_text())
OURS = os.path.join(os.path.dirname(os.path.abspath(looptools.__file__)), "")
# A task step twice (150 ms) and a GIL-holding call whose stack faulthandler dumps (co_names
# only); the same in plain asyncio with a sync write.  (Not the chat app's blocking slot: it is
# clicked at the same moments as the housekeeping steps run, and back-to-back stalls of a slot
# and a step are one stall, named by whichever held the loop longer.)
RUNS = {
    "qasync": ["sample_apps/chat_qasync.py", "--problem", "blocking-coro,gil-call",
               "--stall-ms", "150", "--repeat", "2", "--duration", "2"],
    "asyncio": ["sample_apps/pipeline_asyncio.py", "--problem", "blocking-coro,sync-io",
                "--stall-ms", "150", "--repeat", "2", "--duration", "2"],
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Reports of real monitored runs of the sample apps, by loop kind."""
    out = {}
    for kind, args in RUNS.items():
        folder = tmp_path_factory.mktemp(kind)
        run = run_app([str(ROOT / args[0]), *args[1:]], folder, environ={"QT_API": "pyside6"})
        assert run.returncode == 0 and run.report is not None, run.stderr
        validate(run.report)
        assert len(run.report["stalls"]) >= 4, run.report["stalls"]
        out[kind] = run.report
    return out


def _key(frame: Mapping[str, Any]) -> tuple[str, str]:
    return (str(frame["function"]), str(frame["file"]))


def _ms_by_path(report: Mapping[str, Any]) -> dict[tuple[tuple[str, str], ...], float]:
    """The oracle, computed apart from the tree: blocked ms of the stalls whose (cleaned)
    stack starts with each path of functions, outermost first."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for stack in stall_stacks(report):
        keys = tuple((function, file) for function, file, _ in stack.frames)
        for depth in range(1, len(keys) + 1):
            out[keys[:depth]] = out.get(keys[:depth], 0.0) + float(stack.stall["duration_ms"])
    return out


def _paths(node: FlameNode, prefix: tuple[tuple[str, str], ...] = ()
           ) -> dict[tuple[tuple[str, str], ...], FlameNode]:
    out = {}
    for child in node.children:
        path = (*prefix, (child.function, child.file))
        assert path not in out, f"two nodes for {path[-1]} under one parent"
        out[path] = child
        out.update(_paths(child, path))
    return out


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_tree_weights_are_the_blocked_time_of_the_stalls_through_each_node(
        reports: dict[str, dict[str, Any]], kind: str) -> None:
    report = reports[kind]
    graph = flame_graph(report)
    with_stacks = [s for s in report["stalls"] if s["stack"]]
    assert graph.unstacked == len(report["stalls"]) - len(with_stacks)
    assert len(graph.stacks) == len(with_stacks) >= 4
    assert graph.total_ms == pytest.approx(sum(s["duration_ms"] for s in with_stacks))
    expected = _ms_by_path(report)
    nodes = _paths(graph.root)
    assert set(nodes) == set(expected)
    for path, node in nodes.items():
        assert node.ms == pytest.approx(expected[path]), path
        assert sum(node.lines.values()) == pytest.approx(node.ms)
        assert node.ms == pytest.approx(node.self_ms + sum(c.ms for c in node.children))
        assert [c.ms for c in node.children] == sorted((c.ms for c in node.children),
                                                       reverse=True)
    assert sum(n.self_ms for n in nodes.values()) == pytest.approx(graph.total_ms)


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_stalls_through_the_same_function_merge(reports: dict[str, dict[str, Any]],
                                                kind: str) -> None:
    report = reports[kind]
    graph = flame_graph(report)
    # Each culprit blocked twice (--repeat 2): one node holds both stalls and their time.
    by_culprit: dict[tuple[str, str], list[float]] = {}
    for stall in report["stalls"]:
        if stall["culprit"] and stall["stack_source"] != "faulthandler":
            by_culprit.setdefault(_key(stall["culprit"]), []).append(stall["duration_ms"])
    twice = {key: times for key, times in by_culprit.items() if len(times) >= 2}
    assert twice, by_culprit
    nodes = {(n.function, n.file): n for _, n in graph.root.walk()}
    for key, times in twice.items():
        assert nodes[key].stalls == len(times)
        assert nodes[key].ms == pytest.approx(sum(times))
    # Every stall starts at the script's <module>: one root child for all of them.
    assert [c.function for c in graph.root.children] == ["<module>"]
    assert graph.root.children[0].ms == pytest.approx(graph.total_ms)


def test_faulthandler_stacks_merge_with_sampled_ones(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["qasync"]
    dumped = [s for s in report["stalls"] if s["stack_source"] == "faulthandler"]
    if not dumped:
        pytest.skip(f"no stack was dumped by faulthandler here: {report['stall_summary']}")
    # faulthandler names frames by co_name ("run_until_complete"): where a sampled stack of
    # the same report went through the same file and line, the node is that qualified one.
    assert any("." not in f["function"] for s in dumped for f in s["stack"])
    graph = flame_graph(report)
    for _, node in graph.root.walk():
        shorts: dict[tuple[str, str], set[str]] = {}
        for child in node.children:
            shorts.setdefault((child.file, child.function.rpartition(".")[2]), set()).add(
                child.function)
        split = {key: names for key, names in shorts.items() if len(names) > 1}
        assert not split, f"under {node.function}: {split}"
    spine = graph.root.children[0]
    while len(spine.children) == 1:
        spine = spine.children[0]
    assert spine.stalls == len(report["stalls"])  # the GIL stalls joined the shared frames


def test_our_frames_never_appear(reports: dict[str, dict[str, Any]]) -> None:
    report = copy.deepcopy(reports["asyncio"])
    for _, node in flame_graph(report).root.walk():
        assert not node.file.startswith(OURS), node
    # A report of an older looptools kept the wrappers it ran the app's code through: the
    # blocking-call recorder on top of the culprit and the timed Handle._run below it.
    import looptools.inapp.detectors.blocking as blocking
    import looptools.inapp.detectors.slow_callbacks as slow_callbacks

    recorder = {"function": "BlockingCalls._recorder.<locals>.record",
                "file": blocking.__file__, "line": 200}
    handle = {"function": "install_handle_timing.<locals>._run",
              "file": slow_callbacks.__file__, "line": 90}
    for stall in report["stalls"]:
        stall["stack"] = [*stall["stack"][:-1], handle, stall["stack"][-1], recorder]
    report["stalls"].append({**report["stalls"][0], "stack": [recorder], "duration_ms": 77.0})
    graph = flame_graph(report)
    assert all(not node.file.startswith(OURS) for _, node in graph.root.walk())
    assert graph.unstacked == 1 and graph.unstacked_ms == 77.0  # nothing but ours: no stack
    assert graph.total_ms == pytest.approx(flame_graph(reports["asyncio"]).total_ms)
    speedscope = json.loads(SpeedscopeRenderer().render(report))
    assert not any(frame["file"].startswith(OURS) for frame in speedscope["shared"]["frames"])


def test_icicle_boxes_nest_inside_their_parents(reports: dict[str, dict[str, Any]]) -> None:
    graph = flame_graph(reports["qasync"])
    boxes = icicle(graph)
    assert boxes[0].node is graph.root and (boxes[0].x, boxes[0].width) == (0.0, 1.0)
    assert len(boxes) == sum(1 for _ in graph.root.walk())
    placed = {id(box.node): box for box in boxes}
    for box in boxes:
        assert box.width == pytest.approx(box.node.ms / graph.total_ms)
        end = box.x
        for child in box.node.children:
            inner = placed[id(child)]
            assert inner.depth == box.depth + 1 and inner.x == pytest.approx(end)
            end += inner.width
        assert end <= box.x + box.width + 1e-9
    # Narrow boxes are left out with what is below them.
    narrow = min(box.width for box in boxes)
    assert all(box.width >= narrow * 1.5 for box in icicle(graph, min_width=narrow * 1.5))
    assert len(icicle(graph, min_width=narrow * 1.5)) < len(boxes)


# -- speedscope ----------------------------------------------------------------------------


def _validate_speedscope(doc: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(SPEEDSCOPE_SCHEMA)
    jsonschema.validate(doc, SPEEDSCOPE_SCHEMA, cls=jsonschema.Draft7Validator)


def _check_against_report(doc: dict[str, Any], report: Mapping[str, Any]) -> None:
    """The main loop's profile first and opened: one sample per stall with a stack, in report
    order, weighted by its duration; then the same per worker thread whose loop stalled."""
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert doc["exporter"] == f"looptools {__version__}"
    assert doc["activeProfileIndex"] == 0
    workers = [(thread, [s for s in thread.stacks if s.frames])
               for thread in worker_threads(report)]
    workers = [(thread, stacks) for thread, stacks in workers if stacks]
    assert len(doc["profiles"]) == 1 + len(workers)
    frames = doc["shared"]["frames"]
    assert len({(f["name"], f["file"]) for f in frames}) == len(frames)  # one per function
    main = [s for s in stall_stacks(report) if s.frames]
    assert doc["profiles"][0]["name"].startswith("event loop thread: ")
    for profile, (name, stacks) in zip(
            doc["profiles"], [("event loop thread", main), *(
                (f"worker thread {t.name} (ident {t.ident}), asyncio loop", stacks)
                for t, stacks in workers)], strict=True):
        assert profile["name"].startswith(f"{name}: ")
        assert profile["type"] == "sampled" and profile["unit"] == "milliseconds"
        assert profile["weights"] == pytest.approx([s.stall["duration_ms"] for s in stacks])
        assert profile["endValue"] - profile["startValue"] == \
            pytest.approx(sum(profile["weights"]))
        for sample, stack in zip(profile["samples"], stacks, strict=True):
            assert [(frames[i]["name"], frames[i]["file"]) for i in sample] == \
                [(function, file) for function, file, _ in stack.frames]


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_speedscope_file_is_valid_and_weighs_what_the_report_says(
        reports: dict[str, dict[str, Any]], kind: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    report = reports[kind]
    (tmp_path / "r.json").write_text(json.dumps(report))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    by_name = runner.invoke(report_command, ["r.json", "-f", "speedscope", "-o", "a.out"])
    by_ending = runner.invoke(report_command, ["r.json", "-o", "b.speedscope.json"])
    assert by_name.exit_code == 0 and by_ending.exit_code == 0, by_name.output + by_ending.output
    assert "(speedscope)" in by_ending.output
    first = json.loads((tmp_path / "a.out").read_text())
    assert first == json.loads((tmp_path / "b.speedscope.json").read_text())
    _validate_speedscope(first)
    _check_against_report(first, report)


@pytest.fixture(scope="module")
def worker_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tests/apps/worker_loops_app.py under an asyncio main loop: one job's loop blocked
    200 ms (culprit ``job``), the device-poller's 250 ms (``Poller._poll``)."""
    run = run_app([str(ROOT / "tests" / "apps" / "worker_loops_app.py"), "asyncio", "--stall"],
                  tmp_path_factory.mktemp("workers"), environ={"QT_API": "pyside6"})
    assert run.returncode == 0 and run.report is not None, run.stderr
    validate(run.report)
    return run.report


def test_speedscope_has_a_profile_per_stalled_worker_thread(
        worker_report: dict[str, Any]) -> None:
    report = worker_report
    stalls = report["worker_loops"]["stalls"]
    assert len(stalls) == 2 and all(s["stack"] for s in stalls), stalls
    doc = json.loads(SpeedscopeRenderer().render(report))
    _validate_speedscope(doc)
    _check_against_report(doc, report)
    # The GUI loop's profile is the one opened, even with nothing in it and the workers
    # blocked for 450 ms: a GUI freeze is what users feel.
    names = [profile["name"] for profile in doc["profiles"]]
    assert len(names) == 3 and doc["activeProfileIndex"] == 0
    assert names[0].startswith("event loop thread: ")
    assert len(doc["profiles"][0]["samples"]) == len(report["stalls"])
    by_thread = {(s["thread"], s["thread_ident"]): s for s in stalls}
    # Most blocked first: the poller (250 ms), then the job (200 ms).
    poller = next(key for key in by_thread if key[0] == "device-poller")
    assert names[1].startswith(f"worker thread device-poller (ident {poller[1]}), asyncio loop")
    for profile in doc["profiles"][1:]:
        (stall,) = [s for key, s in by_thread.items()
                    if profile["name"].startswith(f"worker thread {key[0]} (ident {key[1]})")]
        assert profile["weights"] == [pytest.approx(stall["duration_ms"])]
        innermost = doc["shared"]["frames"][profile["samples"][0][-1]]
        assert (innermost["name"], innermost["file"]) == \
            (stall["culprit"]["function"], stall["culprit"]["file"])
    # A worker stall without a stack (seen only by its own timing) gives no empty profile.
    bare = copy.deepcopy(report)
    bare["worker_loops"]["stalls"][0]["stack"] = []
    thinned = json.loads(SpeedscopeRenderer().render(bare))
    _validate_speedscope(thinned)
    assert len(thinned["profiles"]) == 2


def test_worker_threads_of_one_name_stay_apart(worker_report: dict[str, Any]) -> None:
    # Pool threads share names and the OS reuses an ended thread's ident: the pair tells them
    # apart, and both stalls of one thread are one thread's.
    report = copy.deepcopy(worker_report)
    first, second = report["worker_loops"]["stalls"]
    second["thread"] = first["thread"]
    assert len(worker_threads(report)) == 2
    second["thread_ident"] = first["thread_ident"]
    (thread,) = worker_threads(report)
    assert thread.ms == pytest.approx(first["duration_ms"] + second["duration_ms"])
    assert [s.stall["started_at_s"] for s in thread.stacks] == \
        sorted(s["started_at_s"] for s in (first, second))


def test_speedscope_of_a_report_without_stalls_is_valid() -> None:
    report = json.loads((ROOT / "tests" / "data" / "reports" / "healthy.json").read_text())
    assert not report["stalls"]
    doc = json.loads(get_renderer_class("speedscope")().render(report))
    _validate_speedscope(doc)
    assert doc["profiles"][0]["samples"] == [] and doc["profiles"][0]["endValue"] == 0


def test_stalls_of_no_length_draw_no_flame(reports: dict[str, dict[str, Any]]) -> None:
    """A report whose stalls with stacks all last 0 ms (a report's own figures, which
    readers take unchecked: the fuzz test found it in a fresh-clone CI run) has
    nothing to draw, and says so; other renderers take it too."""
    report = copy.deepcopy(reports["qasync"])
    for stall in report["stalls"]:
        stall["duration_ms"] = -0.0
    assert icicle(flame_graph(report)) == []
    page = get_renderer_class("html")().render(report)
    assert "blocked: nothing to draw." in page and 'id="flame-graph"' not in page
    for name in ("speedscope", "markdown", "perfetto"):
        assert get_renderer_class(name)().render(report)


def _profile(args: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "looptools", "profile", "--no-dashboard", *args],
                          cwd=cwd, env=env(QT_API="pyside6"), capture_output=True, text=True,
                          timeout=timeout)


_APP = """
import asyncio, threading, time

done = threading.Event()

def render_preview():
    time.sleep(0.2)

def worker():
    done.wait(5)  # alive as long as the app: py-spy may attach late on a busy machine

async def main():
    threading.Thread(target=worker, name="worker").start()
    for _ in range(2):
        await asyncio.sleep(0.1)
        render_preview()
    await asyncio.sleep(0.6)

asyncio.run(main())
time.sleep(0.5)  # the worker still alive: py-spy attached after the loop's end
done.set()       # missed it (CI at 460c423), and so did one that attached late
"""


def test_profile_writes_the_speedscope_file(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(_APP)
    done = _profile(["--report", "r.json", "--speedscope", "stalls.speedscope.json", "app.py"],
                    tmp_path)
    assert done.returncode == 0, done.stderr
    assert "stalls.speedscope.json" in done.stderr.splitlines()[-1]  # "wrote ..."
    report = json.loads((tmp_path / "r.json").read_text())
    doc = json.loads((tmp_path / "stalls.speedscope.json").read_text())
    _validate_speedscope(doc)
    _check_against_report(doc, report)
    assert len(doc["profiles"][0]["weights"]) == 2
    names = {frame["name"] for frame in doc["shared"]["frames"]}
    assert {"main", "render_preview"} <= names
    # "none" means no such file, as for --report, --html, --trace and --markdown.
    (tmp_path / "none").mkdir()
    done = _profile(["--report", "none", "--speedscope", "none", "../app.py"], tmp_path / "none")
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "none").iterdir()) == []


def _py_spy_usable() -> str | None:
    from looptools.cli.doctor import check_py_spy
    from looptools.profilers import find_py_spy

    if find_py_spy() is None:
        return "py-spy is not installed"
    problems = [c for c in check_py_spy() if c.level == "problem"]
    return problems[0].message if problems else None


def test_py_spy_profile_opens_on_the_app_s_main_thread(tmp_path: Path) -> None:
    reason = _py_spy_usable()
    if reason:
        pytest.skip(reason)
    (tmp_path / "app.py").write_text(_APP)
    done = _profile(["--sampler", "py-spy", "--report", "r.json", "--speedscope",
                     "stalls.speedscope.json", "app.py"], tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    doc = json.loads((tmp_path / "r.speedscope.json").read_text())
    names = [profile["name"] for profile in doc["profiles"]]
    # py-spy: one profile per thread, its launcher (our exit-status shim) first.
    app_pid = report["meta"]["pid"]
    assert not names[0].startswith(f"Process {app_pid} "), names
    # (py-spy names the thread "MainThread" only once it has read the thread's name.)
    active = doc["profiles"][doc["activeProfileIndex"]]["name"]
    assert active.startswith(f"Process {app_pid} Thread {app_pid} "), (active, names)
    # Other threads stay.  (Not by the worker's name: py-spy reads names from the
    # app's ``threading._active`` as it samples, and a profile of 7bffb60's
    # fresh-clone CI run had none named "worker".)
    others = [name for name in names if name.startswith(f"Process {app_pid} Thread ")
              and not name.startswith(f"Process {app_pid} Thread {app_pid} ")]
    assert others, names
    _validate_speedscope(doc)  # py-spy's null col and index are dropped
    # Our own stall file beside it is another file.
    _check_against_report(json.loads((tmp_path / "stalls.speedscope.json").read_text()), report)
    # The same name for both would lose one of them: refused before the app runs.
    done = _profile(["--sampler", "py-spy", "--report", "r.json", "--speedscope",
                     "r.speedscope.json", "app.py"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("looptools profile: --speedscope r.speedscope.json: "
                                   "--sampler py-spy saves its profile there; choose another "
                                   "name")
