"""Asyncio loops on worker threads: their stalls, lag, tasks and blocking calls found,
named by thread, never the GUI's.

``tests/apps/worker_loops_app.py`` runs, under a Qt main thread without asyncio, an
asyncio main loop or a qasync one: eight device jobs, each ``asyncio.run`` on a worker
(``QThreadPool`` or an executor), a ``device-poller`` thread running its own loop and
three short-lived command threads.  ``--stall`` blocks one job's loop 200 ms and the
poller's 250 ms; the main thread never blocks.  ``--problems`` runs one job instead
whose loop is late behind a 100 ms blocking step, opens a file and leaves a task.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, culprit_line, env, run_app, validate

import looptools
from looptools._units import fmt_ms
from looptools.gate.evaluate import evaluate
from looptools.gate.limits import load_budget
from looptools.inapp.writer import summary_lines
from looptools.report.render import get_renderer

APP = ROOT / "tests" / "apps" / "worker_loops_app.py"
_ASYNCIO_RUN = asyncio.events.Handle.__dict__["_run"]
#: the thread the jobs run on, per main thread
JOB_THREAD = {"qt": "Thread (pooled)", "asyncio": "job_", "qasync": "Thread (pooled)"}


def _marker(name: str) -> int:
    for number, line in enumerate(APP.read_text().splitlines(), 1):
        if f"# CULPRIT: {name}" in line:
            return number
    raise AssertionError(name)


@pytest.mark.parametrize("main", ["qt", "asyncio", "qasync"])
def test_a_worker_loops_stall_is_found_with_its_line_and_thread(main: str, machine: str,
                                                               tmp_path: Path) -> None:
    extra = {"QT_API": "pyside6"}
    plain = run_app([str(APP), main, "--stall"], tmp_path, monitored=False, environ=extra)
    run = run_app([str(APP), main, "--stall"], tmp_path, environ=extra)
    assert plain.returncode == run.returncode == 0, run.stderr
    assert plain.stdout == run.stdout == (
        "worker_loops_app: 8 jobs, 32 progress reports, 3 commands, poller ticked\n")
    report = run.report
    assert report is not None
    validate(report)
    # Nothing of the workers' counts as the GUI loop's stall.  The GUI's own code
    # never blocks, but for starting threads: ``Thread.start()`` waits for the new
    # thread to run, which beside burners took up to 190 ms here (a script starting
    # 90 threads beside four burners: worst 16-32 ms plain, 44-98 ms under
    # LOOPTOOLS=1): a true stall, at the line that starts one.  The Qt kinds start
    # their jobs with ``QThreadPool.start(job)``, which starts a pooled thread the
    # same way (a fresh-clone CI run beside burners: 51 ms at ``pool.start``).
    gui = report["stalls"]
    assert len(gui) == report["stall_summary"]["count"]
    if machine == "quiet":
        assert gui == [], gui
    source = APP.read_text().splitlines()
    for stall in gui:
        assert stall["culprit"] and stall["culprit"]["file"] == str(APP), stall
        assert ".start(" in source[stall["culprit"]["line"] - 1], stall
    assert report["loop"]["kind"] == {"qt": "qt", "asyncio": "asyncio", "qasync": "qasync"}[main]
    workers = report["worker_loops"]
    assert workers["loops"] == workers["watched"] == 12  # 8 jobs, the poller, 3 commands
    assert workers["running"] == 0
    assert workers["stall_summary"]["count"] == 2, workers["stalls"]
    by_line = {s["culprit"]["line"]: s for s in workers["stalls"] if s["culprit"]}
    job, poller = by_line[_marker("job-stall")], by_line[_marker("poller-stall")]
    assert job["culprit"]["function"] == "job" and job["culprit"]["file"] == str(APP)
    assert job["thread"].startswith(JOB_THREAD[main]), job
    assert job["duration_ms"] == pytest.approx(200, rel=0.25)
    assert job["task"].endswith("(job)") and job["callback"] == "job step"
    assert poller["culprit"]["function"] == "Poller._poll"
    assert poller["thread"] == "device-poller"
    assert poller["duration_ms"] == pytest.approx(250, rel=0.25)
    for stall in (job, poller):
        assert stall["loop_kind"] == "asyncio" and isinstance(stall["thread_ident"], int)
        assert stall["detected_after_ms"] is not None  # seen while it lasted
        assert stall["stack_source"] == "sampled" and stall["samples"] >= 2
        assert not any("looptools" in frame["file"] for frame in stall["stack"])
    rows = {row["thread"]: row for row in workers["threads"]}
    assert rows["device-poller"]["loops"] == 1  # run twice (run_forever, then the cancel)
    assert rows["device-poller"]["stalls"]["count"] == 1
    assert rows["device-poller"]["worst"]["culprit"]["line"] == _marker("poller-stall")
    assert rows["Thread-* (<lambda>)"]["loops"] == 3  # one short-lived thread per command
    # The exit summary: one line, after the GUI's headline (which says no stalls).
    lines = run.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("looptools: "))
    assert lines[head].endswith("no stalls") or gui, lines[head]
    worker = [line for line in lines if "worker-thread loops:" in line]
    assert len(worker) == 1 and "2 stalls" in worker[0] and "in 12 loops" in worker[0]
    assert "thread device-poller" in worker[0] and "worker_loops_app.py:" in worker[0]


@pytest.mark.parametrize("main", ["qt", "asyncio", "qasync"])
def test_nothing_is_reported_when_the_workers_are_healthy(main: str, tmp_path: Path) -> None:
    run = run_app([str(APP), main], tmp_path, environ={"QT_API": "pyside6"})
    assert run.returncode == 0, run.stderr
    assert run.stdout == "worker_loops_app: 8 jobs, 32 progress reports, 3 commands, " \
                         "poller ticked\n"
    report = run.report
    assert report is not None
    validate(report)
    assert report["stalls"] == []
    workers = report["worker_loops"]
    assert workers["loops"] == 12 and workers["stalls"] == []
    assert workers["stall_summary"] == {"count": 0, "total_ms": 0.0, "max_ms": 0.0,
                                        "dropped": 0}
    assert "worker-thread loops" not in run.stderr
    # Nor a blocking call, a slow callback or a leaked task; the lag was measured.
    assert workers["blocking_summary"] == {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
    assert workers["tasks"]["leaked"] == 0 and workers["tasks"]["pending_at_close"] == []
    for row in workers["threads"]:
        assert row["blocking_calls"] == [] and row["slow_callbacks"] == [], row
        assert row["tasks"]["leaked"] == 0
    assert workers["lag"]["samples"] > 100


def _problems(stderr: str) -> dict[str, float]:
    """What tests/apps/worker_loops_app.py --problems measured itself."""
    line = next(x for x in stderr.splitlines() if x.startswith("PROBLEMS "))
    return dict(json.loads(line[len("PROBLEMS "):]))


def _gui_sites(report: dict[str, Any]) -> set[tuple[str, str, int | None]]:
    return {(row["call"], site["file"], site["line"])
            for row in report["blocking_calls"] for site in row["sites"]}


@pytest.mark.parametrize("main", ["qt", "asyncio", "qasync"])
def test_a_worker_loops_lag_blocking_calls_and_leaked_task(main: str, tmp_path: Path) -> None:
    """One job on a worker's own loop (a QRunnable, or an executor's thread): a ticker
    late behind a 100 ms blocking step, a real file opened in the coroutine, a task
    left pending at asyncio.run's end.  All of it in that thread's row, none of it in
    the GUI loop's figures (the same as with the worker_loops detector off)."""
    extra = {"QT_API": "pyside6"}
    args = [str(APP), main, "--problems"]
    plain = run_app(args, tmp_path, monitored=False, environ=extra)
    run = run_app(args, tmp_path, environ=extra)
    off = run_app(args, tmp_path, environ={**extra, "LOOPTOOLS_DISABLE": "worker_loops"})
    assert plain.returncode == run.returncode == off.returncode == 0, run.stderr
    assert plain.stdout == run.stdout == off.stdout == (
        "worker_loops_app: 1 jobs, 0 progress reports, 3 commands, poller ticked\n")
    report, without = run.report, off.report
    assert report is not None and without is not None
    validate(report)
    workers = report["worker_loops"]
    rows = {row["thread"]: row for row in workers["threads"]}
    (job,) = [row for name, row in rows.items() if name.startswith(JOB_THREAD[main])]

    # Lag: the ticker's own measure of its latest wake-up, against the row's longest wait.
    truth = _problems(run.stderr)["max_late_ms"]
    assert truth >= 75, truth
    assert job["lag"]["max_ms"] == pytest.approx(truth, rel=0.25), (job["lag"], truth)
    assert workers["lag"]["max_ms"] >= job["lag"]["max_ms"]
    assert job["lag"]["samples"] > 30 and job["lag"]["p50_ms"] < 5
    # (The poller's own lag is its own: on a loaded machine a thread kept off the CPU
    # for longer than the job's blocking step shows that, not the job's.)
    assert rows["device-poller"]["lag"]["samples"] > 10

    # Blocking calls: the open() and the time.sleep() of the job, at their lines.
    calls = {row["call"]: row for row in job["blocking_calls"]}
    (opened,) = calls["open"]["sites"]
    assert (opened["function"], opened["file"], opened["line"]) == \
        ("problem_job", str(APP), _marker("worker-open"))
    (slept,) = calls["time.sleep"]["sites"]
    assert (slept["file"], slept["line"]) == (str(APP), _marker("worker-block"))
    assert slept["max_ms"] == pytest.approx(100, rel=0.25)
    assert workers["blocking_summary"]["count"] == 2
    for name, row in rows.items():  # nobody else's
        assert name == job["thread"] or row["blocking_calls"] == [], row

    # The task left pending: cancelled by asyncio.run's shutdown, where it was made.
    (leaked,) = workers["tasks"]["pending_at_close"]
    assert (leaked["name"], leaked["coro"], leaked["state"]) == \
        ("device-watch", "watch_device", "cancelled")
    assert leaked["created_at"] == {"function": "problem_job", "file": str(APP),
                                    "line": _marker("leaked-task")}
    assert leaked["awaiting"]["function"] == "watch_device"
    assert leaked["thread"].startswith(JOB_THREAD[main]) and leaked["loop_kind"] == "asyncio"
    assert workers["tasks"]["leaked"] == job["tasks"]["leaked"] == 1
    assert job["tasks"]["created"] == 2 and job["tasks"]["peak_pending"] >= 1

    # The blocking step is the job's one stall, and its one slow callback.
    assert job["slow_callbacks"] == [{"kind": "task", "name": "problem_job step", "count": 1,
                                      "total_ms": job["stalls"]["total_ms"],
                                      "max_ms": job["stalls"]["max_ms"]}]

    # The GUI loop's figures: as with the worker_loops detector off.
    assert report["stalls"] == without["stalls"] == []
    assert _gui_sites(report) == _gui_sites(without)
    assert not [site for site in _gui_sites(report) if site[1] == str(APP)]
    gui_tasks = report["tasks"] or {}
    assert not [t for t in gui_tasks.get("pending_at_exit", []) if t["coro"] == "watch_device"]
    assert "worker_loops" not in without

    # A budget on the workers' lag names the thread; the GUI's lag budget is the GUI's.
    p99 = job["lag"]["p99_ms"]
    over = evaluate(report, load_budget(None, {"max_worker_lag_p99_ms": p99 / 2}, search=False))
    (violation,) = over.violations
    assert violation.key == "max_worker_lag_p99_ms"
    assert f"thread {job['thread']}" in violation.message
    assert evaluate(report, load_budget(None, {"max_worker_lag_p99_ms": p99 * 2 + 1},
                                        search=False)).ok
    unmeasured = evaluate(without, load_budget(None, {"max_worker_lag_p99_ms": 1000},
                                               search=False))
    assert "did not measure" in unmeasured.violations[0].message


def test_tasks_left_pending_are_judged_by_how_the_loop_ended() -> None:
    """Worker threads' loops ending four ways: asyncio.run cancelling a forgotten task
    (leaked, cancelled); a loop closed with one pending (leaked, pending); the app
    cancelling and awaiting its own task after a run_forever (not leaked); a task
    that finishes normally when asyncio.run cancels it (not leaked)."""

    async def forgotten() -> None:
        await asyncio.sleep(3600)

    async def tidy() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # finishes normally

    async def leave(coro: Any) -> None:
        asyncio.get_running_loop().create_task(coro)
        await asyncio.sleep(0)

    def by_asyncio_run() -> None:
        asyncio.run(leave(forgotten()))

    def closed_pending() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(leave(forgotten()))
        loop.close()  # the task is still pending: never finished

    def cancelled_by_the_app() -> None:
        loop = asyncio.new_event_loop()
        kept: list[asyncio.Task[None]] = []

        async def start() -> None:
            kept.append(asyncio.create_task(forgotten()))
            loop.call_later(0.01, loop.stop)

        starting = loop.create_task(start())
        loop.run_forever()
        assert starting.done()
        kept[0].cancel()
        loop.run_until_complete(asyncio.gather(*kept, return_exceptions=True))
        loop.close()

    def finishing_normally() -> None:
        asyncio.run(leave(tidy()))

    with looptools.monitor(report=None) as monitor:
        for target in (by_asyncio_run, closed_pending, cancelled_by_the_app, finishing_normally):
            thread = threading.Thread(target=target, name=target.__name__)
            thread.start()
            thread.join(10)
    report = monitor.final_report
    assert report is not None
    validate(report)
    tasks = report["worker_loops"]["tasks"]
    found = {(t["thread"], t["coro"], t["state"]) for t in tasks["pending_at_close"]}
    forgotten_name = forgotten.__qualname__
    assert found == {("by_asyncio_run", forgotten_name, "cancelled"),
                     ("closed_pending", forgotten_name, "pending")}, tasks
    assert tasks["leaked"] == 2 and tasks["created"] == 4
    rows = {row["thread"]: row["tasks"] for row in report["worker_loops"]["threads"]}
    assert rows["cancelled_by_the_app"] == {"created": 1, "peak_pending": 1, "leaked": 0}
    assert rows["finishing_normally"]["leaked"] == 0
    assert report["tasks"] is None or report["tasks"]["pending_at_exit"] == []


def test_check_budgets_worker_stalls_apart_from_the_guis(tmp_path: Path) -> None:
    run = run_app([str(APP), "qt", "--stall"], tmp_path, environ={"QT_API": "pyside6"})
    assert run.returncode == 0, run.stderr
    path = tmp_path / "r.json"
    path.write_text(json.dumps(run.report))

    def check(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "looptools", "check", str(path), *flags],
                              capture_output=True, text=True, timeout=60, env=env())

    within = check("--max-stall-ms", "100")  # the GUI's budget: the workers' are not in it
    assert within.returncode == 0, within.stdout + within.stderr
    over = check("--max-worker-stall-ms", "100")
    assert over.returncode == 1, over.stdout + over.stderr
    assert "max_worker_stall_ms" in over.stdout and "thread device-poller" in over.stdout
    assert "Poller._poll" in over.stdout
    # The culprit column (and a GitHub annotation) points at the worst stall's line.
    worst = max(run.report["worker_loops"]["stalls"], key=lambda s: s["duration_ms"])
    line = worst["culprit"]["line"]
    assert f"worker_loops_app.py:{line}" in over.stdout, over.stdout
    github = check("--max-worker-stall-ms", "100", "--format", "github")
    assert f"worker_loops_app.py,line={line},title=" in github.stdout, github.stdout
    assert check("--max-worker-stall-ms", "1000").returncode == 0
    # A report that did not measure them (an older looptools, or the detector off).
    older = dict(run.report or {})
    del older["worker_loops"]
    result = evaluate(older, load_budget(None, {"max_worker_stall_ms": 100}, search=False))
    (violation,) = result.violations
    assert "did not measure" in violation.message


def test_the_text_and_markdown_views_have_a_worker_section(tmp_path: Path) -> None:
    run = run_app([str(APP), "asyncio", "--stall"], tmp_path)
    assert run.report is not None
    text = get_renderer("text").render(run.report)
    assert "Asyncio loops on worker threads: 12 loops, 2 stalls (longest 2" in text
    assert f"Poller._poll ({APP}:{_marker('poller-stall')})" in text
    assert "thread device-poller (ident" in text
    markdown = get_renderer("md").render(run.report)
    assert "#### Asyncio loops on worker threads: 12 loops, 2 stalls" in markdown
    assert "| `device-poller` | 1 | asyncio 1 |" in markdown


def _strip_html(page: str) -> str:
    return re.sub(r"<[^>]+>", "", page).replace("&lt;", "<").replace("&gt;", ">")


def test_the_views_show_a_worker_threads_lag_leaked_task_and_blocking_call(
        tmp_path: Path) -> None:
    """A real --problems run rendered as text, Markdown and HTML: the job thread's lag
    p99, its leaked task with where it was created and its blocking call's site and time.
    A report from before these fields (or with them empty) shows none of it."""
    run = run_app([str(APP), "asyncio", "--problems"], tmp_path, environ={"QT_API": "pyside6"})
    assert run.returncode == 0, run.stderr
    report = run.report
    assert report is not None
    workers = report["worker_loops"]
    (job,) = [row for row in workers["threads"] if row["thread"].startswith("job_")]
    health = f"{job['thread']}: lag p99 {fmt_ms(job['lag']['p99_ms'])} " \
             f"(max {fmt_ms(job['lag']['max_ms'])}); 2 tasks created, peak " \
             f"{job['tasks']['peak_pending']} pending, 1 leaked"
    slept = next(c for c in job["blocking_calls"] if c["call"] == "time.sleep")
    blocking = f"time.sleep ×1, {fmt_ms(slept['total_ms'])} (max {fmt_ms(slept['max_ms'])}) " \
               f"at {APP}:{_marker('worker-block')} in problem_job"
    leaked = f"device-watch (watch_device) on {job['thread']}, cancelled; created at " \
             f"{APP}:{_marker('leaked-task')} in problem_job"
    views = {
        "text": get_renderer("text").render(report),
        "md": get_renderer("md").render(report),
        "html": _strip_html(get_renderer("html").render(report)),
    }
    for name, view in views.items():
        section = view[view.index("Asyncio loops on worker threads"):]
        assert health.replace(job["thread"], f"`{job['thread']}`" if name == "md"
                              else job["thread"]) in section, (name, section)
        assert blocking in section, (name, section)
        assert leaked in section, (name, section)
        assert "2 blocking calls (" in section, name
    assert "    blocking " + blocking in views["text"]
    assert "device-poller: lag p99 " in views["text"]

    # An older report (none of these fields) and an empty one: nothing extra.
    older = json.loads(json.dumps(report))
    for key in ("lag", "tasks", "blocking_summary"):
        del older["worker_loops"][key]
    for row in older["worker_loops"]["threads"]:
        for key in ("lag", "tasks", "slow_callbacks", "blocking_calls"):
            del row[key]
    empty = json.loads(json.dumps(report))
    empty["worker_loops"]["lag"] = None
    empty["worker_loops"]["tasks"] = {"created": 0, "peak_pending": 0, "leaked": 0,
                                      "pending_at_close": []}
    empty["worker_loops"]["blocking_summary"] = {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
    for row in empty["worker_loops"]["threads"]:
        row.update(lag=None, tasks={"created": 0, "peak_pending": 0, "leaked": 0},
                   slow_callbacks=[], blocking_calls=[])
    for bare in (older, empty):
        for kind in ("text", "md", "html"):
            view = get_renderer(kind).render(bare)
            section = view[view.index("Asyncio loops on worker threads"):]
            for absent in ("lag p99", "tasks created", "blocking time.sleep", "Leaked tasks",
                           "All together", "all together", "device-watch"):
                assert absent not in section, (kind, absent)
            assert "worker-stall-0" in section or kind != "html"


def test_the_gallery_sample_apps_worker_stall(tmp_path: Path) -> None:
    """sample_apps/gallery_threadpool.py's blocking-coro problem blocks a pool worker's
    own loop (a Qt main thread without asyncio): a worker stall at the culprit line."""
    path = ROOT / "sample_apps" / "gallery_threadpool.py"
    run = run_app([str(path), "--problem", "blocking-coro", "--duration", "1.2",
                   "--stall-ms", "250"], tmp_path)
    assert run.returncode == 0, run.stderr
    report = run.report
    assert report is not None
    validate(report)
    assert not [s for s in report["stalls"] if (s["culprit"] or {}).get("file") == str(path)]
    ours = [s for s in report["worker_loops"]["stalls"]
            if (s["culprit"] or {}).get("file") == str(path)]
    assert len(ours) == 1, report["worker_loops"]
    assert ours[0]["culprit"]["line"] == culprit_line(path, "blocking-coro")
    assert ours[0]["thread"] == "Thread (pooled)"
    assert ours[0]["duration_ms"] == pytest.approx(250, rel=0.25)


@pytest.mark.parametrize("main", ["qt", "asyncio"])
def test_500_one_job_loops_under_looptools_1(main: str, tmp_path: Path) -> None:
    """The app's 500 short jobs, each its own asyncio.run on a one-thread pool: the same
    output, one row, a small report; the time each way printed (not asserted)."""
    args = [str(APP), main, "--many", "500"]
    plain = run_app(args, tmp_path, monitored=False, environ={"QT_API": "pyside6"})
    run = run_app(args, tmp_path, environ={"QT_API": "pyside6"})
    assert plain.returncode == run.returncode == 0, run.stderr
    assert plain.stdout == run.stdout == "worker_loops_app: 500 short jobs\n"
    assert run.report is not None
    validate(run.report)
    workers = run.report["worker_loops"]
    assert workers["loops"] == 500 and len(workers["threads"]) == 1
    assert len(json.dumps(workers)) < 1000

    def seconds(stderr: str) -> float:
        line = next(x for x in stderr.splitlines() if x.startswith("MANY "))
        return float(json.loads(line[5:])["seconds"])

    print(f"\n{main}: 500 one-job loops took {seconds(plain.stderr) * 1000:.0f} ms, "
          f"{seconds(run.stderr) * 1000:.0f} ms under LOOPTOOLS=1")


# -- in the process: the hooks, memory and time ---------------------------------------------
async def _short_job(wait: float = 0.0) -> int:
    """A device exchange in miniature: two waits for the device (``wait`` each)."""
    await asyncio.sleep(wait)
    await asyncio.sleep(wait)
    return 1


def _jobs(count: int, wait: float = 0.0) -> float:
    """``count`` one-job loops, one after another on a worker thread: seconds they took."""
    took: list[float] = []

    def worker() -> None:
        started = time.perf_counter()
        for _ in range(count):
            asyncio.run(_short_job(wait))
        took.append(time.perf_counter() - started)

    thread = threading.Thread(target=worker, name="jobs")
    thread.start()
    thread.join(60)
    return took[0]


def _ours(snapshot: tracemalloc.Snapshot) -> int:
    """What the worker-loop code holds (not the rest of looptools: the lag series, for
    one, rightly grows with the run's length)."""
    return sum(stat.size for stat in snapshot.statistics("filename")
               if stat.traceback[0].filename.endswith(("_worker_loop.py", "worker_loops.py")))


def test_500_short_lived_worker_loops_leave_memory_bounded_and_jobs_as_fast() -> None:
    # A threshold no job reaches, even on a busy machine: the stalls a slow job would
    # leave (bounded by max_stalls, with their stacks) are not what is measured here.
    with looptools.monitor(report=None, threshold_ms=2000) as monitor:
        _jobs(50)  # warm up: the thread's name, the watchdog, the caches
        tracemalloc.start()
        try:
            _jobs(100)
            gc.collect()  # what is held, not garbage a collection has not reached yet
            first = _ours(tracemalloc.take_snapshot())
            size_first = len(json.dumps(monitor.report()["worker_loops"]))
            _jobs(400)
            gc.collect()
            second = _ours(tracemalloc.take_snapshot())
            size_second = len(json.dumps(monitor.report()["worker_loops"]))
        finally:
            tracemalloc.stop()
        workers = monitor.report()["worker_loops"]
    assert workers["loops"] == 550 and workers["running"] == 0
    assert workers["stall_summary"]["count"] == 0
    assert [row["loops"] for row in workers["threads"]] == [550]  # one row for the thread
    print(f"\nlooptools' own allocations after 150 loops {first} B, after 550 {second} B; "
          f"report section {size_first} -> {size_second} chars")
    # No per-loop object kept: one (a WorkerLoop and its Hooks: several hundred bytes)
    # would be 400 x that.  (Before the gc.collect()s, cycles not yet collected read as
    # +24 kB on the CI machine and 0-4 kB here.)
    assert second - first < 4096
    assert size_second - size_first < 16  # only the figures change
    # Time, alternating in this process (a shared machine: printed, loosely checked):
    # jobs that wait 1 ms for their device twice, and jobs that do nothing at all.
    ratios, extra = [], []
    for _ in range(3):
        bare, bare_empty = _jobs(500, 0.001), _jobs(500)
        with looptools.monitor(report=None):
            watched, watched_empty = _jobs(500, 0.001), _jobs(500)
        ratios.append(watched / bare)
        extra.append((watched_empty - bare_empty) / 500 * 1e6)
    median = statistics.median(ratios)
    print(f"500 one-job loops (2 x 1 ms waits), watched / unwatched: median {median:.3f}x "
          f"({', '.join(f'{r:.3f}' for r in ratios)}); an empty job: "
          f"{statistics.median(extra):+.0f} us per asyncio.run")
    assert median < 1.25


def _held(snapshot: tracemalloc.Snapshot) -> int:
    """What the worker-loop code holds.  Not its lag histograms' buckets (``_stats.py``:
    a dictionary of at most a few hundred log-spaced buckets, which grows by doubling
    as new ones fill, whatever the number of loops), nor the blocking-call detector's
    wrappers (what ``open()`` allocates in C under them is the app's file; the figures
    they hand over are kept in ``worker_loops.py``)."""
    return _ours(snapshot)


async def _busy_job(path: str) -> int:
    """A job with what the worker loop's lag, task audit and blocking calls look at:
    a timer, two tasks (one left pending for asyncio.run to cancel), a file opened."""
    await asyncio.sleep(0.0005)
    await asyncio.create_task(asyncio.sleep(0))
    with open(path, encoding="utf-8") as file:
        file.read()
    asyncio.get_running_loop().create_task(asyncio.sleep(3600))
    return 1


def test_500_busier_short_loops_leave_memory_bounded(tmp_path: Path) -> None:
    """Each of 550 one-job loops has a timer, tasks, a blocking call and a leaked task:
    what the worker loops keep of them stays bounded (the leaked tasks listed stop at
    max_tasks; the rest are counted)."""
    path = tmp_path / "device.cfg"
    path.write_text("rate=100\n", encoding="utf-8")

    def jobs(count: int) -> None:
        def worker() -> None:
            for _ in range(count):
                asyncio.run(_busy_job(str(path)))

        thread = threading.Thread(target=worker, name="busy-jobs")
        thread.start()
        thread.join(120)

    with looptools.monitor(report=None, threshold_ms=2000) as monitor:
        jobs(50)
        tracemalloc.start()
        try:
            jobs(100)
            gc.collect()
            first = _held(tracemalloc.take_snapshot())
            size_first = len(json.dumps(monitor.report()["worker_loops"]))
            jobs(400)
            gc.collect()
            second = _held(tracemalloc.take_snapshot())
            size_second = len(json.dumps(monitor.report()["worker_loops"]))
        finally:
            tracemalloc.stop()
        workers = monitor.report()["worker_loops"]
    (row,) = workers["threads"]
    assert row["loops"] == 550 and row["tasks"] == {"created": 1100, "peak_pending": 1,
                                                    "leaked": 550}
    assert workers["tasks"]["leaked"] == 550 and len(workers["tasks"]["pending_at_close"]) == 100
    (opened,) = row["blocking_calls"]
    assert opened["call"] == "open" and opened["count"] == 550 and len(opened["sites"]) == 1
    assert row["lag"]["samples"] > 550 * 4
    print(f"\nheld by the worker-loop code after 150 busier loops {first} B, after 550 "
          f"{second} B; report section {size_first} -> {size_second} chars")
    assert second - first < 4096
    assert size_second - size_first < 64  # only the figures change


def test_callbacks_handed_over_while_the_hooks_come_and_go_all_run() -> None:
    """Another thread's call_soon_threadsafe races the swaps of the ready queue
    (each loop start and stop): every callback still runs, exactly once."""
    ran: collections.Counter[int] = collections.Counter()
    stop = threading.Event()
    posted: list[int] = []

    async def serve(loop_ready: threading.Event) -> None:
        loop_ready.set()
        await asyncio.sleep(0.002)

    def hammer(loop: asyncio.AbstractEventLoop) -> None:
        n = 0
        while not stop.is_set():
            try:
                loop.call_soon_threadsafe(ran.update, [n])
            except RuntimeError:  # closed
                return
            posted.append(n)
            n += 1

    with looptools.monitor(report=None) as monitor:
        loop = asyncio.new_event_loop()

        def worker() -> None:
            for _ in range(300):  # 300 starts and stops of the same loop
                loop.run_until_complete(serve(threading.Event()))
            loop.run_until_complete(asyncio.sleep(0.05))

        poster = threading.Thread(target=hammer, args=(loop,))
        thread = threading.Thread(target=worker, name="racing")
        poster.start()
        thread.start()
        thread.join(60)
        stop.set()
        poster.join(10)
        workers = monitor.report()["worker_loops"]
        assert type(vars(loop)["_ready"]) is collections.deque  # given back
        assert "select" not in vars(vars(loop)["_selector"])
        loop.run_until_complete(asyncio.sleep(0))  # what came after the last run
        loop.close()
    assert len(posted) > 1000
    assert sorted(ran) == posted and set(ran.values()) == {1}
    assert workers["loops"] == 1  # one loop, run 301 times on the worker


def test_a_loop_running_when_monitoring_stops_is_given_back_untouched() -> None:
    loop = asyncio.new_event_loop()
    original_ready = vars(loop)["_ready"]
    started = threading.Event()
    thread = threading.Thread(target=loop.run_forever, name="still-running")
    monitor = looptools.monitor(report=None).start()
    try:
        loop.call_soon_threadsafe(started.set)
        thread.start()
        assert started.wait(10)
        assert type(vars(loop)["_ready"]) is not collections.deque  # hooked
        # ... that loop object alone: nothing class-wide, the main loop's path untouched
        assert asyncio.events.Handle.__dict__["_run"] is _ASYNCIO_RUN
        assert "_ready" not in vars(type(loop)) and "select" in vars(vars(loop)["_selector"])
        future = asyncio.run_coroutine_threadsafe(asyncio.sleep(0.01, "done"), loop)
        assert future.result(10) == "done"
    finally:
        monitor.stop()
    deadline = time.monotonic() + 5
    while "select" in vars(vars(loop)["_selector"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert vars(loop)["_ready"] is original_ready  # the same deque, back
    assert "select" not in vars(vars(loop)["_selector"])
    assert asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "after"), loop).result(10) == "after"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_uvloop_on_a_worker_is_counted_not_timed(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    # In a fresh process under LOOPTOOLS=1: uvloop binds asyncio's _set_running_loop
    # when it is imported, after the monitor wrapped it (as in any monitored app).
    script = tmp_path / "uv.py"
    script.write_text(
        "import asyncio, threading, time, uvloop\n"
        "def worker():\n"
        "    loop = uvloop.new_event_loop()\n"
        "    loop.run_until_complete(asyncio.sleep(0.01))\n"
        "    loop.close()\n"
        "thread = threading.Thread(target=worker, name='uv')\n"
        "thread.start()\n"
        "thread.join()\n"
        "print('done')\n")
    run = run_app([str(script)], tmp_path)
    assert run.returncode == 0 and run.stdout == "done\n", run.stderr
    assert run.report is not None
    workers: dict[str, Any] = run.report["worker_loops"]
    assert workers["loops"] == 1 and workers["watched"] == 0
    assert workers["threads"] == [{"thread": "uv", "loops": 1, "kinds": {"uvloop": 1},
                                   "run_s": workers["run_s"], "worst": None,
                                   "stalls": {"count": 0, "total_ms": 0.0, "max_ms": 0.0},
                                   # not timed: no lag, no tasks, no blocking calls
                                   "lag": None,
                                   "tasks": {"created": 0, "peak_pending": 0, "leaked": 0},
                                   "slow_callbacks": [], "blocking_calls": []}]


def test_a_worker_stall_in_process_never_reaches_the_main_loops_stalls() -> None:
    """A plain asyncio main loop, a worker loop blocked 150 ms: the worker's stall, live."""

    async def blocked() -> None:
        await asyncio.sleep(0)
        time.sleep(0.15)

    async def main() -> None:
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, asyncio.run, blocked())
        await asyncio.sleep(0.05)

    with looptools.monitor(report=None) as monitor:
        asyncio.run(main())
    report = monitor.final_report
    assert report is not None
    validate(report)
    assert report["stalls"] == []
    (stall,) = report["worker_loops"]["stalls"]
    assert stall["culprit"]["function"] == "test_a_worker_stall_in_process_never_reaches_" \
        "the_main_loops_stalls.<locals>.blocked"
    assert stall["thread"].startswith("asyncio_")
    assert stall["duration_ms"] == pytest.approx(150, rel=0.25)


def test_the_watchdog_thread_serves_workers_before_and_with_the_main_loop() -> None:
    """A worker loop starts before any main loop: the watchdog's thread runs for it alone;
    the main loop attaching takes that thread over (one thread, never two), and a
    worker stall during the main loop is still seen while it lasts."""
    worker_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=worker_loop.run_forever, name="early-worker")

    def watchdogs() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "looptools-watchdog"]

    async def block() -> None:
        time.sleep(0.15)

    async def main() -> list[int]:
        await asyncio.sleep(0.05)
        seen = [len(watchdogs())]
        future = asyncio.run_coroutine_threadsafe(block(), worker_loop)
        while not future.done():
            await asyncio.sleep(0.01)
            seen.append(len(watchdogs()))
        return seen

    with looptools.monitor(report=None) as monitor:
        thread.start()
        deadline = time.monotonic() + 5
        while not watchdogs() and time.monotonic() < deadline:
            time.sleep(0.01)
        before = len(watchdogs())
        during = asyncio.run(main())
        worker_loop.call_soon_threadsafe(worker_loop.stop)
        thread.join(10)
    worker_loop.close()
    report = monitor.final_report
    assert report is not None
    assert before == 1 and set(during) == {1}, (before, during)
    assert report["stalls"] == []
    (stall,) = report["worker_loops"]["stalls"]
    assert stall["thread"] == "early-worker" and stall["detected_after_ms"] is not None
    assert stall["culprit"]["function"].endswith("block")
    assert stall["duration_ms"] == pytest.approx(150, rel=0.25)


def test_without_the_watchdog_a_worker_stall_is_still_counted_by_its_callback() -> None:
    """With the stall detector off no thread looks: the callback's own timing still
    counts the stall, named by its callback (and task), with no stack."""

    async def slow_part() -> None:
        time.sleep(0.12)

    async def job() -> None:
        await asyncio.sleep(0)
        await slow_part()

    def later() -> None:
        time.sleep(0.08)

    async def with_callback() -> None:
        asyncio.get_running_loop().call_soon(later)
        await asyncio.sleep(0.1)

    def worker() -> None:
        asyncio.run(job())
        asyncio.run(with_callback())

    with looptools.monitor(report=None, detectors="worker_loops") as monitor:
        thread = threading.Thread(target=worker, name="unwatched")
        thread.start()
        thread.join(10)
    report = monitor.final_report
    assert report is not None
    validate(report)
    first, second = report["worker_loops"]["stalls"]
    assert first["callback"] == "test_without_the_watchdog_a_worker_stall_is_still_counted_" \
        "by_its_callback.<locals>.job step"
    assert first["task"].endswith("(test_without_the_watchdog_a_worker_stall_is_still_"
                                  "counted_by_its_callback.<locals>.job)")
    assert first["duration_ms"] == pytest.approx(120, rel=0.25)
    assert second["callback"].startswith("test_without_the_watchdog_a_worker_stall_is_still_"
                                         "counted_by_its_callback.<locals>.later (")
    assert second["source"] == "callback" and second["task"] is None
    assert second["duration_ms"] == pytest.approx(80, rel=0.25)
    for stall in (first, second):
        assert stall["detected_after_ms"] is None and stall["stack"] == []
        assert stall["culprit"] is None and stall["stack_source"] == "none"
        assert stall["thread"] == "unwatched"
    (line,) = [x for x in summary_lines(report) if "worker-thread loops" in x]
    assert "2 stalls" in line and "longest in test_without_the_watchdog" in line
    assert line.endswith("job step, thread unwatched, asyncio loop"), line


def test_a_worker_loop_starting_as_the_main_loop_attaches_or_after_stop_starts_no_second_watchdog(
) -> None:
    """The race ae633bc closed, made to happen: a worker loop starts while the main
    loop's watchdog is being attached (after the attach has begun, before its thread is
    started).  One watchdog thread serves both, and none is left after the monitor
    stops; a worker loop started after the stop starts none either.  (Before the fix
    the worker's thread was orphaned by the attach and ran on forever.)"""

    def watchdogs() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "looptools-watchdog"]

    loops: list[asyncio.AbstractEventLoop] = []
    threads: list[threading.Thread] = []

    def start_worker(name: str) -> None:
        """A worker loop on its own thread, returned once it runs a callback (its
        start, and so the watchdog's serve_workers, is behind it by then)."""
        loop = asyncio.new_event_loop()
        running = threading.Event()
        loop.call_soon(running.set)
        thread = threading.Thread(target=loop.run_forever, name=name)
        thread.start()
        assert running.wait(10)
        loops.append(loop)
        threads.append(thread)

    def stop_workers() -> None:
        for loop, thread in zip(loops, threads, strict=True):
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    monitor = looptools.monitor(report=None).start()
    watchdog: Any = monitor.hub.get("stalls")
    assert watchdog is not None and not watchdogs()
    set_up_dumps = watchdog._set_up_dumps
    windows: list[int] = []

    def in_the_window(state: Any, on_main: bool) -> None:
        # In attach, after it began and before its thread starts.
        start_worker("worker-in-the-window")
        windows.append(len(watchdogs()))
        set_up_dumps(state, on_main)

    watchdog._set_up_dumps = in_the_window

    async def main() -> int:
        await asyncio.sleep(0.05)
        return len(watchdogs())

    try:
        during = asyncio.run(main())
        after_main = len(watchdogs())
    finally:
        del watchdog._set_up_dumps
        monitor.stop()
    stopped = len(watchdogs())
    try:
        start_worker("worker-after-stop")
        after_stop = len(watchdogs())
    finally:
        stop_workers()
    assert windows == [0], windows  # the worker started no thread of its own in the window
    assert during == 1  # the main loop's serves it
    assert after_main == 1  # the worker still runs: the thread goes on for it alone
    assert stopped == 0 and after_stop == 0, (stopped, after_stop)
