"""Adapters that attach a peer tool to the scenario app and write down what it reported.

Each adapter sets its tool up the way its documentation says, with the
accuracy suite's threshold, and turns whatever the tool reports — log lines,
callbacks, stack dumps — into events on the app's ``time.perf_counter()``
timebase::

    {"channel", "start", "end", "detected", "duration_ms", "live",
     "function", "file", "line", "text"}

* ``start``/``end``: the span the report covers, as the tool states it (its
  duration back from the moment it reported, when that is all it gives);
  accuracy.py matches a report to a ground-truth stall when the spans overlap.
* ``detected``: when the tool first said something while the stall could still
  be going on (a live alert or stack dump); None for tools that report only
  after the callback returned.  accuracy.py calls a detection live only when it
  came before the stall's measured end.
* ``duration_ms``: the tool's own number, None when it gives none.
* the culprit: the tool names a function and line in a stack or a handle's
  repr; we take the innermost frame of it in the scenario app (the frame a
  reader of the tool's output would look at), with the function name the tool
  printed.  None when the tool shows no code location.

Peers and the loop kinds they run on (see ``SUPPORT``): none of them works on a
Qt main thread without an asyncio loop.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
import time
from typing import Any

perf_counter = time.perf_counter

ASYNC_KINDS = ("asyncio", "qasync", "qtasyncio")
NO_QT_ONLY = "needs an asyncio loop (a Qt main thread without one has none)"

#: peer -> loop kind -> None (runs there) or why not
SUPPORT: dict[str, dict[str, str | None]] = {
    "debug": {"asyncio": None, "qasync": None,
              "qtasyncio": "QtAsyncio's set_debug() does nothing (no slow-callback log)",
              "qt": NO_QT_ONLY},
    "aiodebug": {"asyncio": None, "qasync": None,
                 "qtasyncio": None,  # the hang inspector only: QtAsyncio never calls Handle._run
                 "qt": NO_QT_ONLY},
    "pyleak": {"asyncio": None, "qasync": None, "qtasyncio": None, "qt": NO_QT_ONLY},
    "loopmon": {"asyncio": None, "qasync": None, "qtasyncio": None, "qt": NO_QT_ONLY},
    "asynclens": {"asyncio": None, "qasync": None, "qtasyncio": None, "qt": NO_QT_ONLY},
    "aiocop": {"asyncio": None, "qasync": None, "qtasyncio": None, "qt": NO_QT_ONLY},
}

def channels(name: str, kind: str) -> list[str]:
    """The report streams a peer writes on a loop kind (a tool silent there still shows)."""
    if name == "aiodebug":
        return ["hang"] if kind == "qtasyncio" else ["slow", "hang"]
    return [name]


#: PyPI distribution of each peer (the adapter reads its version for the report)
DISTRIBUTION = {"aiodebug": "aiodebug", "pyleak": "pyleak", "loopmon": "loopmon",
                "asynclens": "asynclens", "aiocop": "aiocop"}

POLL_S = 0.010  # where a peer has a polling period: 10 ms, looptools' heartbeat


def make(name: str, kind: str, threshold_s: float, app_file: str) -> Peer:
    cls = {"debug": DebugMode, "aiodebug": AioDebug, "pyleak": PyLeak, "loopmon": LoopMon,
           "asynclens": AsyncLens, "aiocop": AioCop}[name]
    return cls(kind, threshold_s, app_file)


class Peer:
    name = "?"

    def __init__(self, kind: str, threshold_s: float, app_file: str) -> None:
        self.kind = kind
        self.threshold = threshold_s
        self.app_file = os.path.realpath(app_file)
        self.events: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self._lock = threading.Lock()

    # hooks, in the order the app calls them
    def before_loop(self) -> None:
        pass

    async def start(self, loop: Any) -> None:
        pass

    async def stop(self) -> None:
        pass

    def after_loop(self) -> None:
        pass

    # helpers
    def add(self, channel: str, start: float, end: float, *, detected: float | None,
            duration_ms: float | None, frame: tuple[str, str, int | None] | None,
            text: str) -> dict[str, Any]:
        function, file, line = frame if frame is not None else (None, None, None)
        event = {"channel": channel, "start": start, "end": end, "detected": detected,
                 "duration_ms": duration_ms, "live": detected is not None,
                 "function": function, "file": file, "line": line, "text": text[:600]}
        with self._lock:
            self.events.append(event)
        return event

    def app_frame(self, frames: list[tuple[str, int | None, str]]
                  ) -> tuple[str, str, int | None] | None:
        """(function, file, line) of the innermost frame in the app; frames innermost first."""
        for file, line, function in frames:
            if file and os.path.realpath(file) == self.app_file:
                return function, file, line
        return None


class _Capture(logging.Handler):
    """A logging handler that passes each record, with the perf_counter of its emission."""

    def __init__(self, sink: Any, match: str | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink
        self.match = match

    def emit(self, record: logging.LogRecord) -> None:
        now = perf_counter()
        if self.match is not None and record.msg != self.match:
            return
        try:
            self.sink(record, now)
        except Exception as exc:  # never break the app; the note says what went wrong
            print(f"peer adapter: {type(exc).__name__}: {exc}", file=sys.stderr)


# "Executing <Handle cb(args) at FILE:LINE created at ...> took 0.061 seconds" and
# "<Task pending name=... coro=<f() running at FILE:LINE> ...>"
_CORO = re.compile(r"coro=<([\w.<>]+)\(\) (?:running at|done, defined at) (\S+?):(\d+)>")
_HANDLE = re.compile(r"<(?:Timer)?Handle ([\w.<>]+)\(")
_AT = re.compile(r"(?<!created) at (\S+?):(\d+)")
_CREATED = re.compile(r" created at \S+?:\d+")


def parse_handle(text: str) -> tuple[str, str, int | None] | None:
    """The function and location asyncio's ``_format_handle`` shows for a callback."""
    coro = _CORO.search(text)
    if coro:
        return coro.group(1), coro.group(2), int(coro.group(3))
    handle = _HANDLE.search(text)
    if handle:
        rest = _CREATED.sub("", text[handle.end():])
        where = _AT.search(rest)
        if where:
            return handle.group(1), where.group(1), int(where.group(2))
        return handle.group(1), "", None
    return None


class DebugMode(Peer):
    """asyncio debug mode: ``slow_callback_duration`` = threshold; its log is parsed."""

    name = "debug"

    async def start(self, loop: Any) -> None:
        self.handler = _Capture(self._record, match="Executing %s took %.3f seconds")
        logging.getLogger().addHandler(self.handler)
        for name in ("asyncio", "qasync"):
            logging.getLogger(name).setLevel(logging.WARNING)
        loop.set_debug(True)
        loop.slow_callback_duration = self.threshold

    def _record(self, record: logging.LogRecord, now: float) -> None:
        handle, seconds = record.args  # type: ignore[misc]
        frame = parse_handle(str(handle))
        self.add("debug", now - seconds, now, detected=None, duration_ms=seconds * 1000.0,
                 frame=frame if frame and frame[1] else None, text=record.getMessage())


class AioDebug(Peer):
    """aiodebug: ``log_slow_callbacks`` (after the fact) and ``hang_inspection`` (live dumps).

    The hang inspector's monitor task stamps the loop every interval/2; its thread
    checks every interval and, when the stamp is older than interval, writes three
    stack dumps one second apart.  Only the first dump of each hang is a detection.
    """

    name = "aiodebug"

    def before_loop(self) -> None:
        if self.kind != "qtasyncio":  # QtAsyncio never calls Handle._run
            from aiodebug import log_slow_callbacks

            log_slow_callbacks.enable(self.threshold, on_slow_callback=self._slow)
        else:
            self.notes.append("slow-callback logging cannot see QtAsyncio callbacks; "
                              "hang inspector only")

    def _slow(self, name: str, seconds: float) -> None:
        now = perf_counter()
        frame = parse_handle(name)
        self.add("slow", now - seconds, now, detected=None, duration_ms=seconds * 1000.0,
                 frame=frame if frame and frame[1] else None, text=name)

    async def start(self, loop: Any) -> None:
        from aiodebug import hang_inspection

        self.dumps = tempfile.mkdtemp(prefix="aiodebug-")
        self.hang = hang_inspection.start(self.dumps, interval=self.threshold, loop=loop)
        tracer = self.hang[0]
        save, get = tracer._save_stack_trace, tracer._get_stack_trace
        index = [0]
        main = threading.main_thread().ident

        def save_stack_trace(filename: str) -> None:
            index[0] = int(filename.rsplit("-", 1)[1].split(".")[0])
            save(filename)

        def get_stack_trace() -> str:
            now = perf_counter()
            text = get()
            if index[0] == 0:  # the first dump of a hang; -1 and -2 follow it by 1 s and 2 s
                frames = _parse_aiodebug_dump(text, main)
                self.add("hang", now, now, detected=now, duration_ms=None,
                         frame=self.app_frame(frames), text=text)
            return text

        tracer._save_stack_trace = save_stack_trace
        tracer._get_stack_trace = get_stack_trace

    async def stop(self) -> None:
        from aiodebug import hang_inspection

        await hang_inspection.stop_wait(self.hang)


def _parse_aiodebug_dump(text: str, thread_id: int | None) -> list[tuple[str, int | None, str]]:
    frames: list[tuple[str, int | None, str]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("# ThreadID: "):
            inside = int(line.split(": ", 1)[1]) == thread_id
            continue
        match = re.match(r'File: "(.*)", line (\d+), in (.*)$', line)
        if inside and match:
            frames.append((match.group(1), int(match.group(2)), match.group(3)))
    frames.reverse()  # traceback.extract_stack: outermost first
    return frames


class PyLeak(Peer):
    """pyleak's ``no_event_loop_blocking`` around the app's stalls.

    Its thread posts a probe with ``call_soon_threadsafe`` and waits up to the
    threshold; on a timeout it samples the loop thread's stack (live) and
    records a block; consecutive identical stacks are merged into one block
    whose duration is the sum of the waits.  A probe answered late but within
    the wait is recorded with a stack sampled after the loop came back.
    """

    name = "pyleak"

    async def start(self, loop: Any) -> None:
        from pyleak import no_event_loop_blocking

        quiet = logging.getLogger("benchmarks.pyleak")
        quiet.setLevel(logging.CRITICAL)
        quiet.propagate = False
        self.cm = no_event_loop_blocking(action="log", logger=quiet, threshold=self.threshold,
                                         check_interval=POLL_S)
        await self.cm.__aenter__()
        detector = self.cm.detector
        add_block = detector._add_block
        current: dict[str, Any] = {}

        def recorded_add_block(duration: float, blocking_stack: Any = None) -> None:
            now = perf_counter()
            before = len(detector.detected_blocks)
            add_block(duration, blocking_stack)
            if len(detector.detected_blocks) > before or not current:
                frames = [(f.filename, f.lineno, f.name) for f in reversed(blocking_stack or [])]
                current["event"] = self.add(
                    "pyleak", now - duration, now, detected=now, duration_ms=duration * 1000.0,
                    frame=self.app_frame(frames),
                    text=str(detector.detected_blocks[-1]) if detector.detected_blocks else "")
            else:  # merged into the last block (same stack): its duration grows
                event = current["event"]
                event["duration_ms"] += duration * 1000.0
                if now - event["end"] <= 2.0 * self.threshold + POLL_S:
                    event["end"] = now  # the same stall going on
                else:
                    # A later stall with the same stack: pyleak folds it into that old
                    # block silently (no new warning), so it is no report of its own.
                    event["merged_later"] = event.get("merged_later", 0) + 1

        detector._add_block = recorded_add_block

    async def stop(self) -> None:
        await self.cm.__aexit__(None, None, None)


class LoopMon(Peer):
    """loopmon's ``SleepEventLoopMonitor`` (10 ms interval): a lag sample over the
    threshold is a stall of that length, ending when the sample was taken."""

    name = "loopmon"

    async def start(self, loop: Any) -> None:
        from loopmon import SleepEventLoopMonitor

        async def collect(lag: float, tasks: int, data_at: Any) -> None:
            offset = time.time() - perf_counter()
            at = data_at.timestamp() - offset
            if lag >= self.threshold:
                self.add("loopmon", at - lag, at, detected=None, duration_ms=lag * 1000.0,
                         frame=None, text=f"lag {lag * 1000.0:.1f} ms, {tasks} tasks")

        self.monitor = SleepEventLoopMonitor(interval=POLL_S, callbacks=[collect])
        self.monitor.install_to_loop(loop)

    async def stop(self) -> None:
        await self.monitor.stop()


class AsyncLens(Peer):
    """asynclens' ``AsyncWatchdog``: a Rust thread checks a flag a pinger task sets
    every 10 ms; it logs "Loop blocked!" with the loop thread's stack (it needs the
    GIL for that) and "Loop released! (Blocked for N ms)"."""

    name = "asynclens"
    _FRAME = re.compile(r"\U0001f4c1 (.*?) l\. (\d+) in `(.*?)`")
    _FOR = re.compile(r"Blocked for (\d+(?:\.\d+)?)\s*ms")

    async def start(self, loop: Any) -> None:
        from asynclens import AsyncWatchdog

        self.logger = logging.getLogger("benchmarks.asynclens")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(_Capture(self._record))
        self.open: dict[str, Any] | None = None
        self.watchdog = AsyncWatchdog(threshold_ms=round(self.threshold * 1000.0), loop=loop,
                                      logger=self.logger)
        self.watchdog.start()

    def _record(self, record: logging.LogRecord, now: float) -> None:
        text = record.getMessage()
        frames = [(m.group(1), int(m.group(2)), m.group(3)) for m in self._FRAME.finditer(text)]
        frames.reverse()  # printed outermost first
        if "Loop blocked" in text:
            self.open = self.add("asynclens", now, now, detected=now, duration_ms=None,
                                 frame=self.app_frame(frames), text=text)
        elif "released" in text:
            found = self._FOR.search(text)
            duration = float(found.group(1)) if found else None
            event = self.open
            self.open = None
            if event is None:
                event = self.add("asynclens", now, now, detected=None, duration_ms=None,
                                 frame=self.app_frame(frames), text=text)
            event["end"] = now
            event["duration_ms"] = duration
            if duration is not None:
                event["start"] = min(event["start"], now - duration / 1000.0)

    async def stop(self) -> None:
        await self.watchdog.stop()


class AioCop(Peer):
    """aiocop: audit hooks for blocking I/O, ``detect_slow_tasks`` (wraps every
    callback scheduled on the loop) and its CPU stack sampler; one event per
    callback over the threshold, when it returns."""

    name = "aiocop"

    def before_loop(self) -> None:
        import aiocop

        aiocop.patch_audit_functions()
        aiocop.start_blocking_io_detection(trace_depth=20)

    async def start(self, loop: Any) -> None:
        import aiocop

        aiocop.detect_slow_tasks(threshold_ms=round(self.threshold * 1000.0),
                                 on_slow_task=self._slow)
        aiocop.activate()

    def _slow(self, event: Any) -> None:
        now = perf_counter()
        if not event.exceeded_threshold:
            return  # blocking I/O in a callback under the threshold: no stall
        frame = None
        for sample in event.cpu_stack_samples:  # most frequent first
            frame = self.app_frame(_parse_aiocop_trace(sample["trace"]))
            if frame:
                break
        if frame is None:
            for blocking in event.blocking_events:
                frame = self.app_frame(_parse_aiocop_trace(blocking["trace"]))
                if frame:
                    break
        seconds = event.elapsed_ms / 1000.0
        self.add("aiocop", now - seconds, now, detected=None, duration_ms=event.elapsed_ms,
                 frame=frame, text=f"{event.reason} {event.severity_level} "
                 f"{[b['event'] for b in event.blocking_events][:3]} "
                 f"{[s['entry_point'] for s in event.cpu_stack_samples][:3]}")

    async def stop(self) -> None:
        import aiocop

        aiocop.deactivate()


def _parse_aiocop_trace(trace: str) -> list[tuple[str, int | None, str]]:
    """'file:line:function <- ...', innermost first."""
    frames: list[tuple[str, int | None, str]] = []
    for part in trace.split(" <- "):
        pieces = part.rsplit(":", 2)
        if len(pieces) == 3 and pieces[1].isdigit():
            frames.append((pieces[0], int(pieces[1]), pieces[2]))
    return frames


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"debug": f"asyncio (Python {sys.version.split()[0]})"}
    for peer, dist in DISTRIBUTION.items():
        try:
            out[peer] = version(dist)
        except PackageNotFoundError:
            out[peer] = "not installed"
    return out


__all__ = ["SUPPORT", "Peer", "make", "parse_handle", "versions"]
