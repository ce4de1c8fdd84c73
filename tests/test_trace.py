"""The Perfetto / chrome://tracing trace of real runs of the sample apps, on every loop kind.

What a reader opens the trace for: one track per task (two tasks may share a name),
slow callbacks on the loop thread at their real times, each stall's stack nested under
it (without looptools' own frames), lag and pending-task counters, blocking calls as
instants, a track per worker thread whose loop stalled (tests/apps/worker_loops_app.py),
hand-offs per posting site and on the stall they waited behind (tests/apps/handoff_app.py).
The reports come from real runs (tests/sample_runs.py and the apps named); the event
rules are those of the Trace Event Format (``ph``, ``ts`` in µs, ``pid``, ``tid``,
``name``; ``M`` events name the tracks).
"""

from __future__ import annotations

import copy
import json
import os
from collections import defaultdict
from typing import Any

import pytest
from helpers import ROOT, run_app, validate
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_runs import RUNS, sample_report

import looptools
from looptools.inapp._stats import Longest, Series
from looptools.report.render import TraceRenderer
from looptools.report.render.flame import clean_stacks

KINDS = list(RUNS)
#: loop kinds whose callbacks are timed and whose sample app leaks two "leaky-poller"s
TASK_KINDS = ["qasync", "qtasyncio", "asyncio"]

Event = dict[str, Any]


def _trace(report: dict[str, Any]) -> list[Event]:
    text = TraceRenderer().render(report)

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    doc = json.loads(text, parse_constant=refuse)
    assert doc["displayTimeUnit"] == "ms"
    events: list[Event] = doc["traceEvents"]
    return events


def _tracks(events: list[Event]) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in events
            if e["ph"] == "M" and e["name"] == "thread_name"}


def _track_of(events: list[Event], prefix: str) -> tuple[int, int]:
    found = [track for track, name in _tracks(events).items() if name.startswith(prefix)]
    assert len(found) == 1, (prefix, _tracks(events))
    return found[0]


def _run_us(report: dict[str, Any]) -> float:
    """The end of the run; ``duration_s`` is rounded to the millisecond."""
    return float(report["meta"]["duration_s"]) * 1e6 + 500


def _late_us(report: dict[str, Any]) -> float:
    """How late a run's recorded start may be: where no hook times every callback
    (plain asyncio), a long run is known from the watchdog's look that saw it."""
    poll_ms = float((report["stall_summary"].get("watchdog") or {}).get("poll_ms") or 10)
    return 2 * poll_ms * 1000 + 1000


@pytest.mark.parametrize("kind", KINDS)
def test_trace_of_a_real_run_is_well_formed(kind: str) -> None:
    report = sample_report(kind)
    _assert_well_formed(report, _trace(report))


def _assert_well_formed(report: dict[str, Any], events: list[Event],
                        until_end: bool = True) -> None:
    """The Trace Event Format's rules as Perfetto's JSON importer reads them, and ours: every
    track named once, nothing after the end of the run (*until_end*), slices that nest or
    follow."""
    tracks = _tracks(events)
    processes = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    for event in events:
        for key in ("ph", "ts", "pid", "tid", "name"):
            assert key in event, (key, event)
        assert event["ph"] in ("M", "X", "i", "C"), event
        assert isinstance(event["ts"], int | float) and event["ts"] >= 0, event
        assert event["pid"] in processes, event
        if event["ph"] == "M":
            continue
        # nothing after the end of the run
        assert not until_end or event["ts"] <= _run_us(report), event
        if event["ph"] == "C":
            values = list(event["args"].values())
            assert values and all(isinstance(v, int | float) and v >= 0 for v in values), event
            continue
        assert (event["pid"], event["tid"]) in tracks, event
        if event["ph"] == "i":
            assert event["s"] == "t", event
    # Slices on one track follow each other or nest; a half-overlap would be drawn wrong.
    _nest_or_follow(events)
    assert len(set(tracks.values())) == len(tracks), "two tracks with one name"


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_tasks_with_the_same_name_get_distinct_tracks(kind: str) -> None:
    report = sample_report(kind)
    leaked = [t for t in report["tasks"]["pending_at_exit"] if t["name"] == "leaky-poller"]
    assert len(leaked) == 2, report["tasks"]["pending_at_exit"]
    assert len({t["id"] for t in leaked}) == 2 and None not in {t["id"] for t in leaked}
    events = _trace(report)
    tracks = {track: name for track, name in _tracks(events).items()
              if name.startswith("task leaky-poller")}
    assert len(tracks) == 2, _tracks(events)
    bars = [e for e in events if e.get("cat") == "task" and (e["pid"], e["tid"]) in tracks]
    assert len(bars) == 2 and {(e["pid"], e["tid"]) for e in bars} == set(tracks)
    by_id = {e["args"]["id"]: e for e in bars}
    for task in leaked:
        bar = by_id[task["id"]]
        assert tracks[(bar["pid"], bar["tid"])] == f"task leaky-poller (#{task['id']})"
        # From its creation, to when it was still pending at the end of the loop.
        assert bar["ts"] == pytest.approx(task["started_at_s"] * 1e6, abs=1)
        assert bar["dur"] == pytest.approx(task["age_s"] * 1e6, abs=1)
        assert bar["ts"] + bar["dur"] <= _run_us(report)
        assert bar["args"]["pending_at_exit"] is True

    # A report without task ids (written before they were recorded) still keeps them apart.
    older = copy.deepcopy(report)
    for key in ("pending_at_exit", "long_pending"):
        for task in older["tasks"][key]:
            task.pop("id", None)
            task.pop("started_at_s", None)
    names = [name for name in _tracks(_trace(older)).values() if "leaky-poller" in name]
    assert len(names) == 2, names


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_slow_callbacks_on_the_loop_thread_at_their_times(kind: str) -> None:
    report = sample_report(kind)
    runs = [(run, row) for row in report["slow_callbacks"] for run in row["runs"]]
    assert len(runs) >= 4  # the maintenance task's step blocked four times
    assert sum(row["count"] for row in report["slow_callbacks"]) >= len(runs)
    events = _trace(report)
    loop = _track_of(events, "loop thread")
    slices = [e for e in events if e.get("cat") == "slow_callback"]
    assert len(slices) == len(runs)
    assert all((e["pid"], e["tid"]) == loop and e["ph"] == "X" for e in slices)
    drawn = sorted((e["ts"], e["dur"]) for e in slices)
    recorded = sorted((run[0] * 1e6, run[1] * 1e3) for run, _ in runs)
    for (ts, dur), (started_us, duration_us) in zip(drawn, recorded, strict=True):
        assert ts == pytest.approx(started_us, abs=1) and dur == pytest.approx(duration_us, abs=1)
    attached_us = float(report["loop"]["attached_at_s"]) * 1e6
    for event in slices:
        assert attached_us <= event["ts"] and event["ts"] + event["dur"] <= _run_us(report)
    # The stalls were those task steps: each lies within a slow callback's slice.
    stalls = [e for e in events if e.get("cat") == "stall"]
    assert len(stalls) == len(report["stalls"]) >= 4
    for stall in stalls:
        end = stall["ts"] + stall["dur"]
        overlap = max(min(end, e["ts"] + e["dur"]) - max(stall["ts"], e["ts"]) for e in slices)
        assert overlap >= 0.9 * stall["dur"], stall


@pytest.mark.parametrize("kind", KINDS)
def test_stall_stacks_nest_inside_the_stall(kind: str) -> None:
    report = sample_report(kind)
    _assert_stacks_nest(report, _trace(report), "stalls", report["stalls"])


def _assert_stacks_nest(report: dict[str, Any], events: list[Event], track: str,
                        records: list[dict[str, Any]]) -> None:
    """Each of *records* (stalls) on the track named *track* at its time, its cleaned
    stack (the flame graph's) nested under it, outermost first, its culprit marked once."""
    stall_track = _track_of(events, track)
    stalls = sorted((e for e in events if e.get("cat") == "stall"
                     and (e["pid"], e["tid"]) == stall_track), key=lambda e: e["ts"])
    frames = sorted((e for e in events if e.get("cat") == "stack"
                     and (e["pid"], e["tid"]) == stall_track), key=lambda e: e["ts"])
    assert len(stalls) == len(records) >= 1
    recorded = sorted(records, key=lambda s: s["started_at_s"])
    cleaned = {id(stack.stall): stack.frames for stack in clean_stacks(records)}
    for stall, record in zip(stalls, recorded, strict=True):
        assert (stall["pid"], stall["tid"]) == stall_track
        end = stall["ts"] + stall["dur"]
        mine = [e for e in frames if stall["ts"] < e["ts"] and e["ts"] + e["dur"] < end]
        assert [e["name"] for e in mine] == [fn for fn, _, _ in cleaned[id(record)]]
        assert [e["args"]["location"] for e in mine] == \
            [file if line is None else f"{file}:{line}" for _, file, line in cleaned[id(record)]]
        assert len(mine) >= 3, record["stack"]  # a real stack, outermost first
        parent = stall
        for frame in mine:  # each inside the one before: a stack, drawn downwards
            assert (frame["pid"], frame["tid"]) == stall_track
            assert parent["ts"] < frame["ts"]
            assert frame["ts"] + frame["dur"] < parent["ts"] + parent["dur"]
            parent = frame
        culprits = [e for e in mine if e["args"]["culprit"]]
        assert [e["name"] for e in culprits] == [record["culprit"]["function"]]
        # Nearly the whole stall long: a frame starts a microsecond inside its parent.
        assert mine[-1]["dur"] >= stall["dur"] - 2 * len(mine) - 1


@pytest.mark.parametrize("kind", KINDS)
def test_counters_and_instants(kind: str) -> None:
    report = sample_report(kind)
    events = _trace(report)
    # Lag: one counter value per point of the report's lag over time, the peak kept.
    lag = [e for e in events if e["ph"] == "C" and e["name"] == "loop lag"]
    over_time = report["lag"]["over_time"]
    assert len(lag) == len(over_time) >= 3
    values = [e["args"]["ms"] for e in lag]
    assert max(values) == pytest.approx(report["lag"]["max_ms"], abs=0.01)
    assert max(values) >= 100  # the 150 ms stalls
    assert [e["ts"] for e in lag] == sorted(e["ts"] for e in lag)
    # Pending tasks, where a loop has tasks.
    pending = [e["args"]["pending"] for e in events
               if e["ph"] == "C" and e["name"] == "pending tasks"]
    if kind in TASK_KINDS:
        assert pending and min(pending) >= 0
        assert max(pending) <= report["tasks"]["peak_pending"]
        assert max(pending) >= 2  # the two leaked pollers at least
    # Blocking calls: instants on the loop thread at their start.
    instants = [e for e in events if e.get("cat") == "blocking"]
    timed = [run for call in report["blocking_calls"] for site in call["sites"]
             for run in site["runs"]]
    assert len(instants) == len(timed)
    if kind == "qt":
        assert not instants  # no asyncio loop on the main thread: nothing is patched
        return
    loop = _track_of(events, "loop thread")
    assert all(e["ph"] == "i" and (e["pid"], e["tid"]) == loop for e in instants)
    sleeps = [e for e in instants if e["name"] == "time.sleep"]
    assert len(sleeps) == (1 if kind == "uvloop" else 2)
    culprits = {f"{s['culprit']['function']} (" for s in report["stalls"] if s["culprit"]}
    late = _late_us(report)
    for sleep in sleeps:
        assert sleep["args"]["duration_ms"] == pytest.approx(150, rel=0.2)
        # at the line that stalled, during its stall
        assert any(sleep["args"]["site"].startswith(name) for name in culprits), sleep
        assert any(s["started_at_s"] * 1e6 - late <= sleep["ts"]
                   <= (s["started_at_s"] + s["duration_ms"] / 1000) * 1e6
                   for s in report["stalls"]), sleep
    slices = [e for e in events if e.get("cat") == "slow_callback"]
    if slices:  # the sleep ran inside the task step it blocked
        for sleep in sleeps:
            assert any(e["ts"] - late <= sleep["ts"] <= e["ts"] + e["dur"] for e in slices), \
                sleep


def _nest_or_follow(events: list[Event]) -> None:
    """Complete events on each track follow each other or nest, never half-overlap."""
    spans: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for event in events:
        if event["ph"] == "X":
            assert event["dur"] >= 0 and event["ts"] >= 0, event
            spans[(event["pid"], event["tid"])].append((event["ts"], event["ts"] + event["dur"]))
    for track, intervals in spans.items():
        open_ends: list[float] = []
        for start, end in sorted(intervals, key=lambda span: (span[0], -span[1])):
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], (track, start, end)
            open_ends.append(end)


_RUN = st.tuples(st.integers(0, 3_000_000).map(lambda us: us / 1e6),
                 st.integers(0, 900_000).map(lambda us: us / 1e3))


@settings(max_examples=150, deadline=None)
@given(runs=st.lists(_RUN, max_size=30), stalls=st.lists(_RUN, max_size=10),
       windows=st.lists(_RUN, max_size=10))
def test_any_times_give_slices_that_nest(runs: list[tuple[float, float]],
                                         stalls: list[tuple[float, float]],
                                         windows: list[tuple[float, float]]) -> None:
    """Times as a report may hold them — rounded, a run starting before the last one
    ended — still give slices that nest or follow each other on every track."""
    report = copy.deepcopy(sample_report("qasync"))
    report["slow_callbacks"] = [{**report["slow_callbacks"][0], "runs": sorted(
        [[t, ms] for t, ms in runs])}]
    template = report["stalls"][0]
    report["stalls"] = [{**template, "started_at_s": t, "duration_ms": ms} for t, ms in stalls]
    report["dispatcher"]["busy_windows"] = [[t, ms] for t, ms in windows]
    events = _trace(report)
    _nest_or_follow(events)
    assert len([e for e in events if e.get("cat") == "slow_callback"]) == len(runs)
    assert len([e for e in events if e.get("cat") == "stall"]) == len(stalls)


# -- looptools' own frames, worker-thread loops, hand-offs ------------------------------------

OURS = os.path.join(os.path.dirname(os.path.abspath(looptools.__file__)), "")
APPS = ROOT / "tests" / "apps"


def _relocated(report: dict[str, Any]) -> dict[str, Any]:
    """*report*, recorded by an older looptools in another checkout, with the files of
    looptools' frames moved under this checkout's package: looptools' own frames here too."""
    for stall in report["stalls"]:
        for frame in stall["stack"]:
            _, sep, tail = str(frame["file"]).partition("/looptools/")
            if sep:
                frame["file"] = OURS + tail
    return report


def test_stall_stacks_leave_out_looptools_frames() -> None:
    # A real report of an older looptools (tests/data/reports/README.md): its stacks end in
    # the blocking-call recorder and pass through the timed Handle._run.
    report = _relocated(json.loads((ROOT / "tests" / "data" / "reports" /
                                    "two_blocking.json").read_text()))
    ours = {frame["function"] for stall in report["stalls"] for frame in stall["stack"]
            if frame["file"].startswith(OURS)}
    assert {"BlockingCalls._recorder.<locals>.record",
            "install_handle_timing.<locals>._run"} <= ours, ours
    events = _trace(report)
    # (Its last pending-task count is dated 11 ms after its rounded duration_s.)
    _assert_well_formed(report, events, until_end=False)
    frames = [e for e in events if e.get("cat") == "stack"]
    assert len(frames) >= 4 * 5
    for event in frames:
        assert event["name"] not in ours and not event["args"]["location"].startswith(OURS)
    stalls = [e for e in events if e.get("cat") == "stall"]
    assert len(stalls) == len(report["stalls"])
    for event in stalls:
        assert not any(line.startswith(OURS) for line in event["args"]["stack"]), event
    # The slices are the flame graph's stacks, and the culprit is now the innermost one.
    _assert_stacks_nest(report, events, "stalls", report["stalls"])
    for stall in stalls:
        under = [e for e in frames if stall["ts"] < e["ts"] < stall["ts"] + stall["dur"]]
        assert max(under, key=lambda e: e["args"]["depth"])["args"]["culprit"] is True


@pytest.fixture(scope="module", params=["asyncio", "qt"])
def worker_report(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tests/apps/worker_loops_app.py under an asyncio or a Qt (no asyncio) main thread:
    one job's loop blocked 200 ms, the device-poller's 250 ms, the GUI loop never."""
    folder = tmp_path_factory.mktemp(f"workers-{request.param}")
    run = run_app([str(APPS / "worker_loops_app.py"), request.param, "--stall"], folder,
                  environ={"QT_API": "pyside6"})
    assert run.returncode == 0 and run.report is not None, run.stderr
    validate(run.report)
    return run.report


def test_each_worker_thread_gets_a_track_with_its_stalls_at_their_times(
        worker_report: dict[str, Any]) -> None:
    report = worker_report
    section = report["worker_loops"]
    stalls = section["stalls"]
    assert section["stall_summary"]["count"] == len(stalls) == 2, stalls
    threads = {(s["thread"], s["thread_ident"]) for s in stalls}
    assert len(threads) == 2 and "device-poller" in {name for name, _ in threads}
    events = _trace(report)
    _assert_well_formed(report, events)
    for name, ident in threads:
        prefix = f"worker thread {name} (ident {ident}): stalls of its asyncio loop"
        track = _track_of(events, prefix)
        mine = [s for s in stalls if (s["thread"], s["thread_ident"]) == (name, ident)]
        _assert_stacks_nest(report, events, prefix, mine)
        drawn = sorted((e for e in events if e.get("cat") == "stall"
                        and (e["pid"], e["tid"]) == track), key=lambda e: e["ts"])
        for event, stall in zip(drawn, sorted(mine, key=lambda s: s["started_at_s"]),
                                strict=True):
            assert event["ts"] == pytest.approx(stall["started_at_s"] * 1e6, abs=1)
            assert event["dur"] == pytest.approx(stall["duration_ms"] * 1e3, abs=1)
            assert event["args"]["culprit"] == \
                f"{stall['culprit']['file']}:{stall['culprit']['line']}"
            assert (event["args"]["thread"], event["args"]["thread_ident"]) == (name, ident)
            row = event["args"]["thread_row"]
            assert row["thread"] == name and row["stalls"]["count"] == len(mine)
    # Nothing of the workers' is drawn as the GUI loop's stall (the app never blocks it).
    main = _track_of(events, "stalls")
    on_main = [e for e in events if (e["pid"], e["tid"]) == main and e.get("cat") == "stall"]
    assert len(on_main) == len(report["stalls"]), report["stalls"]
    worker_culprits = {f"{s['culprit']['file']}:{s['culprit']['line']}" for s in stalls}
    assert not [e for e in on_main if e["args"]["culprit"] in worker_culprits]
    # Hand-offs of job progress that waited behind no stall: per site, none on a stall.
    sites = [e for e in events if e.get("cat") == "handoff"]
    assert len(sites) == len(report["handoffs"] or [])
    assert not [e for e in events if e.get("cat") == "handoff_wait"]


def test_worker_threads_are_told_apart_by_name_and_ident(worker_report: dict[str, Any]) -> None:
    # A pool names its threads alike; the OS gives an ended thread's ident to a new one.
    report = copy.deepcopy(worker_report)
    first, second = report["worker_loops"]["stalls"]
    second["thread"] = first["thread"]
    names = [n for n in _tracks(_trace(report)).values() if n.startswith("worker thread")]
    assert len(names) == 2 and len(set(names)) == 2, names
    second["thread_ident"] = first["thread_ident"]
    # Two threads share an ident only one after the other: the second stall after the
    # first (the app's two stalls, in two threads, may overlap in time; one track
    # cannot nest overlapping stalls, and one CI run failed on that).
    first_end = first["started_at_s"] + first["duration_ms"] / 1000
    if second["started_at_s"] < first_end + 0.01:
        second["started_at_s"] = round(first_end + 0.05, 6)
    events = _trace(report)
    names = [n for n in _tracks(events).values() if n.startswith("worker thread")]
    assert names == [f"worker thread {first['thread']} (ident {first['thread_ident']}): "
                     "stalls of its asyncio loop"]
    _assert_stacks_nest(report, events, names[0], [first, second])


@pytest.fixture(scope="module")
def handoff_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tests/apps/handoff_app.py on asyncio: a thread "audio" posts 120 times each way
    while build_index blocks the loop 300 ms once."""
    folder = tmp_path_factory.mktemp("handoffs")
    run = run_app([str(APPS / "handoff_app.py"), "asyncio"], folder)
    assert run.returncode == 0 and run.report is not None, run.stderr
    validate(run.report)
    return run.report


def test_handoffs_per_site_and_on_the_stall_they_waited_behind(
        handoff_report: dict[str, Any]) -> None:
    report = handoff_report
    rows = {row["via"]: row for row in report["handoffs"]}
    assert set(rows) == {"call_soon_threadsafe", "run_coroutine_threadsafe"}
    events = _trace(report)
    _assert_well_formed(report, events)
    # Per posting site (no hand-off's own time is recorded): an instant at the end of the
    # run with the site's figures.
    track = _track_of(events, "hand-offs")
    sites = [e for e in events if e.get("cat") == "handoff"]
    assert len(sites) == len(rows)
    end_us = float(report["meta"]["duration_s"]) * 1e6
    for event in sites:
        row = rows[event["args"]["via"]]
        assert (event["pid"], event["tid"]) == track and event["ph"] == "i"
        assert event["ts"] == pytest.approx(end_us, abs=1)
        assert {k: event["args"][k] for k in ("thread", "count", "p50_ms", "p99_ms", "max_ms")} \
            == {k: row[k] for k in ("thread", "count", "p50_ms", "p99_ms", "max_ms")}
        assert event["args"]["site"] == f"{row['site']['file']}:{row['site']['line']}"
    # The stall their longest wait fell in: an instant on it, at its end, per site.
    held = [s for s in report["stalls"] if s["culprit"]["function"] == "build_index"]
    assert len(held) == 1 and all(
        row["worst_during_stall_in"]["function"] == "build_index" for row in rows.values())
    stall = held[0]
    stall_end = stall["started_at_s"] * 1e6 + stall["duration_ms"] * 1e3
    main = _track_of(events, "stalls")
    waits = [e for e in events if e.get("cat") == "handoff_wait"]
    assert sorted(e["args"]["via"] for e in waits) == sorted(rows)
    for event in waits:
        row = rows[event["args"]["via"]]
        assert (event["pid"], event["tid"]) == main and event["ph"] == "i"
        assert event["ts"] == pytest.approx(stall_end, abs=1)
        assert event["name"].startswith(f"hand-offs from audio (worker, line "
                                        f"{row['site']['line']}) waited up to ")
        assert event["name"].endswith(" while build_index held the loop")
        assert event["args"]["max_ms"] == row["max_ms"] and event["args"]["candidate_stalls"] == 1
    # Two stalls of that culprit, either of which may be the one: both marked, as one of two.
    twice = copy.deepcopy(report)
    twice["stalls"].append({**stall, "started_at_s": stall_end / 1e6 + 0.01})
    twice["stalls"].sort(key=lambda s: s["started_at_s"])
    waits = [e for e in _trace(twice) if e.get("cat") == "handoff_wait"]
    assert len(waits) == 2 * len(rows)
    assert all(e["name"].endswith("held the loop (one of 2 stalls of it)") for e in waits)
    # A stall shorter than half the wait cannot have held it (the detector's own rule).
    short = copy.deepcopy(report)
    short["stalls"][short["stalls"].index(stall)]["duration_ms"] = \
        0.4 * max(row["max_ms"] for row in rows.values())
    assert not [e for e in _trace(short) if e.get("cat") == "handoff_wait"]


# -- the bounded records behind them -----------------------------------------------------------


def test_series_keeps_every_peak_in_bounded_space() -> None:
    series = Series(size=100, step=0.01)
    # 60 s of a heartbeat every 10 ms: 0.5 ms of lag, and a spike every 7.3 s
    spikes = {round(7.3 * n, 2) for n in range(1, 9)}
    for n in range(6000):
        t = round(n * 0.01, 2)
        series.add(t, 300.0 if t in spikes else 0.5)
    points = series.snapshot()
    assert len(points) <= 100
    assert series.step > 0.01  # it had to merge windows
    assert [t for t, v in points if v == 300.0] == sorted(spikes)
    assert all(v == 0.5 for t, v in points if t not in spikes)
    times = [t for t, _ in points]
    assert times == sorted(times) and times[-1] >= 59.99 - series.step


def test_longest_keeps_the_longest_in_order() -> None:
    longest: Longest[str] = Longest(3)
    for n, duration in enumerate([5.0, 1.0, 9.0, 2.0, 7.0, 0.5]):
        longest.add(duration, f"run{n}")
    assert longest.items() == ["run0", "run2", "run4"]
    assert longest.seen == 6
