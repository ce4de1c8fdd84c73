"""A busy machine is not a stall: time the OS kept the loop thread off the CPU.

A stall is the app holding the loop for over the threshold.  When the OS takes
the CPU from the loop thread (other processes want it), or stops the whole
process (SIGSTOP, a debugger, a container pause), a run of a few ms lasts as
long as that takes by the clock, and the watchdog must not call it a stall
(it did: a healthy ``asyncio.Queue`` loop showed stalls of 50-300 ms beside CPU
burners).  These tests make both happen for real: the process is stopped by
another process, and a loop runs niced on one CPU beside a burner on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import looptools

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="schedstat and SIGSTOP: the Linux watchdog's mechanisms")

_STOPPER = """
import os, signal, sys, time
pid = int(sys.argv[1])
print("ready", flush=True)
while sys.stdin.read(1) == "s":
    os.kill(pid, signal.SIGSTOP)
    time.sleep(float(sys.argv[2]))
    os.kill(pid, signal.SIGCONT)
    print("went on", flush=True)
"""


@contextlib.contextmanager
def _stopper(seconds: float) -> Iterator[Callable[[], None]]:
    """Another process that, each time the function yielded is called, stops this
    one for ``seconds`` (SIGSTOP, then SIGCONT); on leaving, the stop has happened."""
    helper = subprocess.Popen([sys.executable, "-c", _STOPPER, str(os.getpid()), str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert helper.stdin is not None and helper.stdout is not None
    try:
        assert helper.stdout.readline() == "ready\n"

        def stop() -> None:
            assert helper.stdin is not None
            helper.stdin.write("s")
            helper.stdin.flush()

        yield stop
        assert helper.stdout.readline() == "went on\n"
    finally:
        helper.stdin.close()
        helper.wait(timeout=10)


def _cpu_work(seconds: float) -> None:
    """Python that needs ``seconds`` of CPU: on a busy machine it takes longer."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _short_runs(stop: Any, spans: list[float]) -> None:
    """Task steps of 10 ms; the process is stopped during the eleventh."""
    for i in range(40):
        began = time.perf_counter()
        if i == 10:
            stop()
        _spin(0.01)
        spans.append(time.perf_counter() - began)
        await asyncio.sleep(0)


def test_the_whole_process_stopped_is_not_a_stall() -> None:
    # Another process stops this one for 200 ms, in the middle of a 10 ms task
    # step, then lets it go on.  Neither the loop thread nor the watchdog ran
    # meanwhile: all the watchdog knows is that it woke up late, for no reason
    # of its own and without the GIL being held against it.
    spans: list[float] = []
    with _stopper(0.2) as stop, looptools.monitor(report=None) as monitor:
        watchdog = monitor.hub.get("stalls")
        asyncio.run(_short_runs(stop, spans))
    # The stop fell inside a step (each takes 10 ms of the loop's 0.4 s).
    assert max(spans) >= 0.15, sorted(spans)[-3:]
    report = monitor.final_report
    assert report is not None
    assert report["stalls"] == []
    assert watchdog is not None and watchdog.stops == 1  # it saw the process stopped


def test_a_real_stall_across_a_stop_is_still_one() -> None:
    # A 300 ms pure-Python stall, with the process stopped 150 ms as it begins:
    # still one stall, the spin's, as long as the spin.
    with _stopper(0.15) as stop:

        async def app() -> None:
            await asyncio.sleep(0.1)
            stop()
            _spin(0.3)
            await asyncio.sleep(0.1)

        with looptools.monitor(report=None) as monitor:
            asyncio.run(app())
    report = monitor.final_report
    assert report is not None
    stalls = report["stalls"]
    assert len(stalls) == 1, stalls
    assert stalls[0]["culprit"]["function"] == "_spin"
    assert stalls[0]["duration_ms"] >= 290


_NICED_CHILD = """
import asyncio, json, os, sys, time
sys.path[:0] = sys.argv[2:]
from test_deschedule import _cpu_work
import looptools

os.sched_setaffinity(0, {int(sys.argv[1])})
os.nice(10)  # the burner on this CPU gets ~10 times as much of it


async def app():
    began = time.perf_counter()
    for _ in range(5):
        _cpu_work(0.01)  # 10 ms of CPU: a short run, on this machine many times longer
        await asyncio.sleep(0)
    short = time.perf_counter() - began
    await asyncio.sleep(0.1)
    began = time.perf_counter()
    _cpu_work(0.1)  # 100 ms of CPU: a stall, however long it takes
    return short, time.perf_counter() - began


with looptools.monitor(report=None) as monitor:
    short, long = asyncio.run(app())
watchdog = monitor.hub.get("stalls")
print(json.dumps({"short": short, "long": long, "stalls": monitor.final_report["stalls"],
                  "thread_times": watchdog.thread_times}))
"""


def test_a_loop_kept_waiting_for_a_cpu_is_not_stalled_and_a_stall_still_is() -> None:
    # The loop's process, niced, shares one CPU with a process that burns it:
    # the OS gives the loop thread a slice now and then, and a run that needs
    # 10 ms of CPU lasts a hundred ms or more.  That waiting is the machine's.
    # A run that needs 100 ms of CPU is a stall all the same.
    cpu = min(os.sched_getaffinity(0))
    burner = subprocess.Popen([sys.executable, "-c",
                               f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    try:
        tests = os.path.dirname(os.path.abspath(__file__))
        paths = [tests, *(p for p in sys.path if p)]
        done = subprocess.run([sys.executable, "-c", _NICED_CHILD, str(cpu), *paths],
                              capture_output=True, text=True, timeout=120)
    finally:
        burner.kill()
        burner.wait()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    if not result["thread_times"]:
        pytest.skip("no schedstat here: a busy machine cannot be told from a stall")
    # Stretched: five runs of 10 ms of CPU took over a threshold each, on average.
    assert result["short"] >= 5 * 0.05, result["short"]
    stalls = result["stalls"]
    assert len(stalls) == 1, [(s["started_at_s"], s["duration_ms"], s["culprit"]) for s in stalls]
    assert stalls[0]["culprit"]["function"] == "_cpu_work"
    assert stalls[0]["duration_ms"] >= 0.9 * result["long"] * 1000
