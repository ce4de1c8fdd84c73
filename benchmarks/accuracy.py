"""How right is what the stall watchdog reports?  Stalls with ground truth, and peers.

    python benchmarks/accuracy.py [--quick] [--kinds K,..] [--stalls S,..] [--durations M,..]
        [--loads quiet,busy] [--repeat N] [--tools looptools,debug,aiodebug,pyleak,loopmon,
        asynclens,aiocop|all] [--threshold-ms 50] [--json FILE] [--verbose]

For each load, tool and loop kind a fresh process (benchmarks/_accuracy_app.py)
runs a healthy phase (0.5 s idle, then 1 s of 1 ms callbacks beside a worker
thread running Python: nothing to report), then causes every stall of the plan,
one after another with a gap of 3 thresholds: each stall kind at each duration
(a multiple of the threshold, measured).  looptools is attached the way users
attach it (LOOPTOOLS=1, the threshold in LOOPTOOLS_THRESHOLD_MS, its JSON
report read afterwards); a peer through its adapter in benchmarks/_peers.py.

Ground truth: each blocking statement is marked ``# CULPRIT: <kind>`` in the
app; its line and enclosing function are read from the source.  The app times
each stall with perf_counter() around that statement; looptools' stalls are put
on the same clock with its monitor's origin (``looptools.active().started``),
the peers' by their adapters.  C calls are sized on this machine at start
(quiet, before any load), so under load they stretch: the truth is always the
measured duration.

Matching: a reported stall belongs to the ground-truth stall its span overlaps
most (spans widened by 10 ms); more reports on one stall = a split.  Metrics
(per loop kind and load, and per stall kind):
  recall    found / stalls of target >= 1.2x whose measured length >= 1.1x the
            threshold ("clear" stalls; the burst is left out: see below)
  false     reports matching no stall (by phase: start-up, healthy run, gaps)
            plus reports of stalls measured under 0.9x the threshold (0.9-1.1x:
            borderline, neither false nor required)
  func/line culprit function (qualname, or the bare name for tools that print
            only that) and line right, of the clear stalls found
  falseGIL  gil_held true on a stall that was not a GIL-holding C call
  dur err   reported - measured duration (ms): median |err|, worst |err|, and how
            many exceed max(15 ms, 10 %)
  detect    first live report - stall start (ms), median and worst; "not live":
            found but first reported at or after the stall's measured end
The burst (many callbacks of threshold/5 each) has no agreed answer yet: what
each tool reported for it is printed on its own.

Targets (PASS/FAIL per tool and load): recall 100 %; 0 false stalls; 0 false
GIL held; culprit function 100 % and line >= 95 %; duration error median
<= 10 ms and every stall within max(15 ms, 10 %); live detection within
threshold + 15 ms (quiet) or + 50 ms (busy).  Busy load = one process per core
spinning in Python beside the app (killed at the end, even on Ctrl-C).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = HERE / "_accuracy_app.py"
sys.path.insert(0, str(HERE))
import _peers  # noqa: E402

KINDS = ("asyncio", "qasync", "qtasyncio", "qt")
STALLS = ("slot", "paint", "invoke", "coro", "cpu", "gil_sorted", "gil_json", "gil_regex",
          "gil_sum", "nogil_zlib", "nogil_sha256", "io_write", "io_read", "threadsafe", "burst")
GROUPS = {"qtslots": ("slot", "paint", "invoke"), "gil": STALLS[5:9], "nogil": STALLS[9:11],
          "io": STALLS[11:13]}
GIL_HOLDING = set(GROUPS["gil"])
CALIBRATED = ("cpu", "gil_sorted", "gil_json", "gil_regex", "gil_sum", "nogil_zlib",
              "nogil_sha256", "io_read")
NEEDS_QT = {"slot", "paint", "invoke"}
NEEDS_ASYNCIO = {"coro", "threadsafe"}
TOOLS = ("looptools", "debug", "aiodebug", "pyleak", "loopmon", "asynclens", "aiocop")
DURATIONS = (0.6, 1.2, 1.6, 4.0, 40.0)
ORDER = (1.2, 40.0, 0.6, 4.0, 1.6)  # a short stall right after the longest one
QUICK = {"kinds": "asyncio,qasync,qt",
         "stalls": "slot,coro,cpu,gil_sum,gil_regex,nogil_zlib,io_write,threadsafe,burst",
         "durations": "0.6,1.2,4"}
CLEAR_TARGET, CLEAR_MEASURED, SUB_MEASURED = 1.2, 1.1, 0.9
GAP_THRESHOLDS = 3.0
TOLERANCE_S = 0.010
BURST_EACH = 0.2  # of the threshold


def skip_reason(kind: str, stall: str) -> str | None:
    if stall in NEEDS_QT and kind == "asyncio":
        return "no Qt in a plain asyncio app"
    if stall in NEEDS_ASYNCIO and kind == "qt":
        return "no asyncio loop on a Qt-only main thread"
    return None


# -- ground-truth culprits, read from the app's source ---------------------------------------
def culprits(path: Path = APP) -> dict[str, dict[str, Any]]:
    source = path.read_text()
    marks: dict[int, str] = {}
    for number, line in enumerate(source.splitlines(), 1):
        found = re.search(r"#\s*CULPRIT:\s*(\w+)", line)
        if found:
            marks[number] = found.group(1)
    out: dict[str, dict[str, Any]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    for line, stall in marks.items():
                        inner = [n for n in ast.walk(child)
                                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                                 and n is not child and n.lineno <= line <= (n.end_lineno or 0)]
                        if child.lineno <= line <= (child.end_lineno or 0) and not inner:
                            out[stall] = {"function": name, "file": str(path), "line": line}
                    visit(child, name + ".<locals>.")
                else:
                    visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    missing = set(STALLS) - set(out)
    if missing:
        raise SystemExit(f"no CULPRIT marker for {sorted(missing)} in {path}")
    return out


# -- calibration (a child process, quiet machine) -----------------------------------------
def _calibration_bench() -> dict[str, Any]:
    import hashlib
    import random
    import zlib

    rng = random.Random(1)
    regex = re.compile(r"a*a*b")
    item = '{"id": 12345, "name": "item-000", "value": 1.5, "ok": true}'
    tmp = tempfile.NamedTemporaryFile(prefix="looptools-cal-")
    tmp.write(os.urandom(1 << 20))
    tmp.flush()
    fd = tmp.fileno()

    def prepare(stall: str, n: int) -> Any:
        if stall == "gil_sorted":
            return [rng.random() for _ in range(n)]
        if stall == "gil_json":
            return "[" + ",".join([item] * n) + "]"
        if stall == "nogil_zlib":
            return memoryview(rng.randbytes(n))
        if stall == "nogil_sha256":
            return memoryview(bytes(n))
        return None

    def run(stall: str, n: int, data: Any) -> None:
        if stall == "cpu":
            total = 0
            for i in range(n):
                total += i * i % 7
        elif stall == "gil_sorted":
            sorted(data[:n])
        elif stall == "gil_json":
            json.loads(data)
        elif stall == "gil_regex":
            regex.search("a" * n)
        elif stall == "gil_sum":
            sum(range(n))
        elif stall == "nogil_zlib":
            zlib.compress(data[:n])
        elif stall == "nogil_sha256":
            hashlib.sha256(data[:n]).digest()
        elif stall == "io_read":
            for _ in range(n):
                os.pread(fd, 1 << 20, 0)

    return {"prepare": prepare, "run": run, "file": tmp}


def calibrate_child() -> dict[str, Any]:
    bench = _calibration_bench()
    start = {"cpu": 20_000, "gil_sorted": 20_000, "gil_json": 5_000, "gil_regex": 100,
             "gil_sum": 200_000, "nogil_zlib": 200_000, "nogil_sha256": 4_000_000, "io_read": 4}
    fits: dict[str, Any] = {}
    for stall in CALIBRATED:

        def timed(n: int, stall: str = stall) -> float:
            n = max(1, int(n))
            data = bench["prepare"](stall, n)
            best = math.inf
            for _ in range(3):
                began = time.perf_counter()
                bench["run"](stall, n, data)
                best = min(best, time.perf_counter() - began)
            return best

        n = start[stall]
        t = timed(n)
        points = []
        while t < 0.02:
            if t >= 0.005:
                points.append((n, t))
            n *= 2
            t = timed(n)
        points.append((n, t))
        for goal in (0.08, 0.3):
            n_last, t_last = points[-1]
            if t_last >= 0.7 * goal:
                continue
            b = _fit(points[-2:])[1] if len(points) > 1 else 1.0
            n_next = max(n_last + 1, int(n_last * (goal / t_last) ** (1.0 / max(0.5, b))))
            points.append((n_next, timed(n_next)))
        a, b = _fit([p for p in points if p[1] >= 0.015] or points)
        fits[stall] = {"a": a, "b": b, "points": points}
    return fits


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """t = a * n**b, least squares in log-log."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        max(1e-12, sum((x - mx) ** 2 for x in xs))
    return math.exp(my - b * mx), b


def size_for(fit: dict[str, Any], seconds: float) -> int:
    return max(1, round((seconds / fit["a"]) ** (1.0 / fit["b"])))


# -- the busy load -----------------------------------------------------------------------------
_BURN = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the harness
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(0)
while True:
    pass
"""


def _die_with_parent() -> None:
    """In a child before exec: be killed when the harness dies, however it dies."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Burners:
    """One CPU-burning process per core beside the app; always killed."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0.0

    def start(self) -> None:
        for _ in range(self.count):
            self.procs.append(subprocess.Popen([sys.executable, "-c", _BURN, str(os.getpid())],
                                               stdin=subprocess.DEVNULL,
                                               preexec_fn=_die_with_parent))
        self.started = time.monotonic()
        time.sleep(0.3)

    def cpu(self) -> list[float]:
        """Each burner's CPU use since it started, as a fraction of one core."""
        out = []
        ticks = os.sysconf("SC_CLK_TCK")
        elapsed = max(1e-6, time.monotonic() - self.started)
        for proc in self.procs:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out.append((int(fields[11]) + int(fields[12])) / ticks / elapsed)
            except (OSError, IndexError, ValueError):
                out.append(float("nan"))
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


# -- one scenario process --------------------------------------------------------------------
def plan_steps(kind: str, stalls: list[str], durations: list[float], repeat: int,
               threshold_s: float, fits: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    order = [m for m in ORDER if m in durations] + [m for m in durations if m not in ORDER]
    for rep in range(repeat):
        for stall in stalls:
            if skip_reason(kind, stall):
                continue
            for mult in order:
                seconds = mult * threshold_s
                step: dict[str, Any] = {"id": len(steps), "stall": stall, "mult": mult,
                                        "target_ms": round(seconds * 1000.0, 3), "rep": rep,
                                        "n": 0}
                if stall in CALIBRATED:
                    step["n"] = size_for(fits[stall], seconds)
                elif stall == "burst":
                    step["each_s"] = BURST_EACH * threshold_s
                    step["n"] = max(1, round(mult / BURST_EACH))
                steps.append(step)
    return steps


def run_scenario(tool: str, kind: str, steps: list[dict[str, Any]], threshold_ms: float,
                 workdir: Path, label: str, state: dict[str, Any]) -> dict[str, Any]:
    out = workdir / label
    out.mkdir(parents=True, exist_ok=True)
    plan = {"kind": kind, "tool": tool, "threshold_ms": threshold_ms,
            "gap_s": GAP_THRESHOLDS * threshold_ms / 1000.0, "steps": steps, "out": str(out)}
    (out / "plan.json").write_text(json.dumps(plan))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONUNBUFFERED"] = "1"
    report = out / "report.json"
    if tool == "looptools":
        env.update(LOOPTOOLS="1", LOOPTOOLS_THRESHOLD_MS=f"{threshold_ms:g}",
                   LOOPTOOLS_REPORT=str(report))
    expected = 3.0 + sum(s["target_ms"] / 1000.0 + plan["gap_s"] for s in steps)
    began = time.monotonic()
    with open(out / "stdout.txt", "wb") as stdout, open(out / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, str(APP), str(out / "plan.json")], cwd=out,
                                env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
        state["child"] = proc
        try:
            returncode: int | str = proc.wait(timeout=60 + 4 * expected)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            returncode = "timeout"
        except BaseException:  # Ctrl-C, SIGTERM: the app goes too
            proc.kill()
            proc.wait()
            raise
        finally:
            state["child"] = None
    wall = time.monotonic() - began
    gt_lines = [json.loads(line) for line in (out / "gt.jsonl").read_text().splitlines()
                if line.strip()] if (out / "gt.jsonl").exists() else []
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() \
        else {"errors": ["no result.json"], "events": [], "origin": None}
    lt_report = json.loads(report.read_text()) if report.exists() else None
    stderr_text = (out / "stderr.txt").read_text(errors="replace")
    return {"tool": tool, "kind": kind, "returncode": returncode, "wall_s": round(wall, 2),
            "steps": steps, "gt": gt_lines, "result": result, "report": lt_report,
            "stderr_tail": stderr_text[-2000:], "dir": str(out)}


def _measured(run: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
    steps = {s["id"]: s for s in run["steps"]}
    return [(steps[g["id"]], (g["end"] - g["start"]) * 1000.0) for g in run["gt"] if "id" in g]


# -- analysis -----------------------------------------------------------------------------------
def tool_events(run: dict[str, Any], threshold_s: float) -> list[dict[str, Any]]:
    """What the tool reported, as events on the app's perf_counter clock."""
    if run["tool"] != "looptools":
        return [dict(e) for e in run["result"].get("events", [])]
    report, origin = run["report"], run["result"].get("origin")
    if report is None or origin is None:
        return []
    events = []
    for stall in report.get("stalls", []):
        start = origin + stall["started_at_s"]
        after = stall.get("detected_after_ms")
        culprit = stall.get("culprit") or {}
        events.append({
            "channel": "looptools", "start": start, "end": start + stall["duration_ms"] / 1000.0,
            "detected": start + after / 1000.0 if after is not None else None,
            "duration_ms": stall["duration_ms"], "live": after is not None,
            "function": culprit.get("function"), "file": culprit.get("file"),
            "line": culprit.get("line"), "gil_held": stall.get("gil_held"),
            "source": stall.get("source"), "stack_source": stall.get("stack_source"),
            "samples": stall.get("samples"), "culprit_samples": stall.get("culprit_samples"),
            "text": ""})
    return events


def function_ok(reported: str | None, file: str | None, truth: dict[str, Any]) -> bool:
    if not reported:
        return False
    if file and os.path.realpath(file) != os.path.realpath(truth["file"]):
        return False
    return reported == truth["function"] or reported == truth["function"].rsplit(".", 1)[-1]


def analyse(run: dict[str, Any], threshold_s: float, truth: dict[str, dict[str, Any]]
            ) -> dict[str, Any]:
    """Match one process's reports to its ground truth; one row per stall, per report."""
    steps = {s["id"]: s for s in run["steps"]}
    stalls, phases = [], []
    for line in run["gt"]:
        if line.get("phase") == "incidental":
            stalls.append({"id": -1 - len(stalls), "stall": "incidental", "mult": 0.0,
                           "target_ms": 0.0, "rep": 0, "start": line["start"],
                           "end": line["end"], "clear": False, "sub": False, "events": [],
                           "measured_ms": (line["end"] - line["start"]) * 1000.0})
            continue
        if "phase" in line:
            phases.append(line)
            continue
        step = dict(steps[line["id"]])
        step.update(start=line["start"], end=line["end"],
                    measured_ms=(line["end"] - line["start"]) * 1000.0)
        measured = step["measured_ms"] / 1000.0 / threshold_s
        step["clear"] = (step["stall"] != "burst" and step["mult"] >= CLEAR_TARGET
                         and measured >= CLEAR_MEASURED)
        step["sub"] = step["stall"] != "burst" and measured < SUB_MEASURED
        step["events"] = []
        stalls.append(step)
    healthy_start = min((p["start"] for p in phases), default=math.inf)
    healthy_end = max((p["end"] for p in phases), default=-math.inf)
    channels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name in (["looptools"] if run["tool"] == "looptools"
                 else _peers.channels(run["tool"], run["kind"])):
        channels[name] = []
    for event in tool_events(run, threshold_s):
        channels[event["channel"]].append(event)
    by_channel: dict[str, Any] = {}
    for channel, events in channels.items():
        per_stall: dict[int, list[dict[str, Any]]] = defaultdict(list)
        false: list[dict[str, Any]] = []
        for event in events:
            best, best_overlap = None, -math.inf
            for stall in stalls:
                overlap = min(event["end"], stall["end"] + TOLERANCE_S) - \
                    max(event["start"], stall["start"] - TOLERANCE_S)
                if overlap >= 0 and overlap > best_overlap:
                    best, best_overlap = stall, overlap
            if best is None:
                where = ("start-up" if event["start"] < healthy_start else
                         "healthy" if event["start"] <= healthy_end + TOLERANCE_S else "gap")
                false.append(dict(event, why=where))
            else:
                per_stall[best["id"]].append(event)
        rows = []
        for stall in stalls:
            # The main report: the one covering most of the stall (duplicates within
            # 1 ms: the one that names a culprit).
            matched = sorted(per_stall.get(stall["id"], []),
                             key=lambda e: (-round(min(e["end"], stall["end"]) -
                                                   max(e["start"], stall["start"]), 3),
                                            e.get("function") is None))
            row = {k: stall[k] for k in ("id", "stall", "mult", "target_ms", "measured_ms",
                                         "clear", "sub", "start", "end", "rep")}
            row["reports"] = len(matched)
            truth_row = truth.get(stall["stall"])
            if matched and truth_row is not None:
                main = matched[0]
                row["function"], row["file"], row["line"] = (main.get("function"),
                                                             main.get("file"), main.get("line"))
                row["func_ok"] = function_ok(main.get("function"), main.get("file"), truth_row)
                row["line_ok"] = row["func_ok"] and main.get("line") == truth_row["line"]
                row["gil_held"] = any(bool(e.get("gil_held")) for e in matched)
                row["false_gil"] = row["gil_held"] and stall["stall"] not in GIL_HOLDING
                duration = main.get("duration_ms")
                row["reported_ms"] = duration
                row["dur_err_ms"] = duration - stall["measured_ms"] if duration is not None \
                    else None
                detections = [e["detected"] for e in matched if e.get("detected") is not None]
                first = min(detections) if detections else None
                # Live: before the stall's measured end (a report at the end is no alert).
                row["live"] = first is not None and first < stall["end"]
                row["detect_ms"] = (first - stall["start"]) * 1000.0 if row["live"] else None
                row["start_err_ms"] = (main["start"] - stall["start"]) * 1000.0
                row["stack_source"] = main.get("stack_source")
                row["reported_total_ms"] = sum(e.get("duration_ms") or 0.0 for e in matched)
                row["texts"] = [e.get("text", "")[:300] for e in matched[:2]]
            rows.append(row)
        by_channel[channel] = {"rows": rows, "false": false}
    return {"channels": by_channel, "phases": phases, "stalls": len(stalls)}


def summarize(rows: list[dict[str, Any]], false: list[dict[str, Any]], threshold_ms: float,
              load: str) -> dict[str, Any]:
    clear = [r for r in rows if r["clear"]]
    found = [r for r in clear if r["reports"]]
    sub_reported = [r for r in rows if r["sub"] and r["reports"]]
    errs = [r["dur_err_ms"] for r in found if r.get("dur_err_ms") is not None]
    bound_bad = [r for r in found if r.get("dur_err_ms") is not None
                 and abs(r["dur_err_ms"]) > max(15.0, 0.1 * r["measured_ms"])]
    live = [r["detect_ms"] for r in found if r.get("live")]
    out = {
        "clear": len(clear), "found": len(found),
        "recall": len(found) / len(clear) if clear else None,
        "false_unmatched": len(false), "false_sub": len(sub_reported),
        "false": len(false) + len(sub_reported),
        "false_where": dict(sorted(_count(f["why"] for f in false).items())),
        "split": sum(1 for r in rows if r["reports"] > 1),
        "func": _frac(sum(1 for r in found if r.get("func_ok")), len(found)),
        "line": _frac(sum(1 for r in found if r.get("line_ok")), len(found)),
        "false_gil": sum(1 for r in rows if r.get("false_gil")),
        "gil_reported": any("gil_held" in r for r in rows),
        "durations": len(errs),
        "dur_med": statistics.median(abs(e) for e in errs) if errs else None,
        "dur_worst": max(abs(e) for e in errs) if errs else None,
        "dur_bias": statistics.median(errs) if errs else None,
        "dur_over": len(bound_bad),
        "live": len(live), "not_live": len(found) - len(live),
        "detect_med": statistics.median(live) if live else None,
        "detect_worst": max(live) if live else None,
    }
    budget = threshold_ms + (50.0 if load == "busy" else 15.0)
    out["targets"] = {
        "recall 100%": (out["recall"] == 1.0, _pct(out["recall"])),
        "0 false stalls": (out["false"] == 0, str(out["false"])),
        "0 false GIL held": ((out["false_gil"] == 0) if out["gil_reported"] else None,
                             str(out["false_gil"]) if out["gil_reported"] else "n/a"),
        "culprit function 100%": (out["func"] == 1.0, _pct(out["func"])),
        "culprit line >=95%": (out["line"] is not None and out["line"] >= 0.95, _pct(out["line"])),
        "duration median <=10ms": (out["dur_med"] is not None and out["dur_med"] <= 10.0,
                                   _ms(out["dur_med"])),
        "duration worst <=max(15ms,10%)": (out["durations"] > 0 and out["dur_over"] == 0
                                           and out["durations"] == len(found),
                                           f"{out['dur_over']} over, worst {_ms(out['dur_worst'])}"
                                           + ("" if out["durations"] == len(found)
                                              else f", {len(found) - out['durations']} w/o"
                                                   " duration")),
        f"live detection <=thr+{budget - threshold_ms:g}ms": (
            out["detect_worst"] is not None and out["detect_worst"] <= budget,
            f"worst {_ms(out['detect_worst'])}, {out['not_live']} not live"),
    }
    return out


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for item in items:
        out[item] += 1
    return dict(out)


def _frac(a: int, b: int) -> float | None:
    return a / b if b else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{math.floor(100.0 * x + 1e-9):.0f}%"  # 99.6% is no 100%


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


# -- printing -------------------------------------------------------------------------------------
HEAD = (f"{'':22} {'clear':>5} {'recall':>6} {'false':>5} {'(sub)':>5} {'split':>5} "
        f"{'func':>5} {'line':>5} {'fGIL':>4} {'dur|med|':>8} {'worst':>6} {'>bnd':>4} "
        f"{'bias':>6} {'det med':>7} {'worst':>6} {'!live':>5}")


def row_text(name: str, s: dict[str, Any]) -> str:
    gil = str(s["false_gil"]) if s["gil_reported"] else "-"
    return (f"{name:22} {s['clear']:5d} {_pct(s['recall']):>6} {s['false']:5d} "
            f"{s['false_sub']:5d} {s['split']:5d} {_pct(s['func']):>5} {_pct(s['line']):>5} "
            f"{gil:>4} {_ms(s['dur_med']):>8} {_ms(s['dur_worst']):>6} {s['dur_over']:4d} "
            f"{_ms(s['dur_bias']):>6} {_ms(s['detect_med']):>7} {_ms(s['detect_worst']):>6} "
            f"{s['not_live']:5d}")


def print_results(results: list[dict[str, Any]], args: argparse.Namespace,
                  truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    threshold_ms = args.threshold_ms
    summaries: dict[str, Any] = {}
    loads = list(dict.fromkeys(r["load"] for r in results))
    names = list(dict.fromkeys(f"{r['tool']}" if ch == r["tool"] else f"{r['tool']}.{ch}"
                               for r in results for ch in r["analysis"]["channels"]))
    for load in loads:
        print(f"\n=== load: {load} " + "=" * 60)
        for name in names:
            tool, _, channel = name.partition(".")
            channel = channel or tool
            runs = [r for r in results if r["load"] == load and r["tool"] == tool
                    and channel in r["analysis"]["channels"]]
            if not runs:
                continue
            print(f"\n--- {name} ({load}) ---")
            print(HEAD)
            all_rows: list[dict[str, Any]] = []
            all_false: list[dict[str, Any]] = []
            for run in runs:
                data = run["analysis"]["channels"][channel]
                rows = [dict(r, kind=run["kind"]) for r in data["rows"]]
                false = [dict(f, kind=run["kind"]) for f in data["false"]]
                all_rows += rows
                all_false += false
                print(row_text(run["kind"], summarize(rows, false, threshold_ms, load)))
            total = summarize(all_rows, all_false, threshold_ms, load)
            summaries[f"{load}/{name}"] = total
            print(row_text("all loop kinds", total))
            print("  by stall kind (recall per target multiple; sub = reports of stalls "
                  "measured under the threshold):")
            mults = sorted({r["mult"] for r in all_rows if r["stall"] in STALLS})
            print(f"  {'':14}" + "".join(f"{f'{m:g}x':>7}" for m in mults) +
                  f" {'func':>5} {'line':>5} {'fGIL':>4} {'dur|med|':>8} {'worst':>6} "
                  f"{'det med':>7} {'worst':>6} {'!live':>5} {'split':>5}")
            for stall in STALLS:
                rows = [r for r in all_rows if r["stall"] == stall]
                if not rows:
                    continue
                cells = []
                for m in mults:
                    these = [r for r in rows if r["mult"] == m]
                    if stall == "burst":
                        cells.append(f"{sum(1 for r in these if r['reports'])}/{len(these)}r")
                    elif m < CLEAR_TARGET:
                        cells.append(f"{sum(1 for r in these if r['sub'] and r['reports'])}sub")
                    else:
                        clear = [r for r in these if r["clear"]]
                        cells.append(f"{sum(1 for r in clear if r['reports'])}/{len(clear)}")
                s = summarize(rows, [], threshold_ms, load)
                gil = str(s["false_gil"]) if s["gil_reported"] else "-"
                print(f"  {stall:14}" + "".join(f"{c:>7}" for c in cells) +
                      f" {_pct(s['func']):>5} {_pct(s['line']):>5} {gil:>4} "
                      f"{_ms(s['dur_med']):>8} {_ms(s['dur_worst']):>6} "
                      f"{_ms(s['detect_med']):>7} {_ms(s['detect_worst']):>6} "
                      f"{s['not_live']:5d} {s['split']:5d}")
            print("  targets: " + "; ".join(
                f"{label} {'PASS' if ok else 'n/a' if ok is None else 'FAIL'} ({value})"
                for label, (ok, value) in total["targets"].items()))
            if total["false_where"]:
                print(f"  false stalls by where: {total['false_where']}, "
                      f"sub-threshold reported: {total['false_sub']}")
            bursts = [r for r in all_rows if r["stall"] == "burst"]
            if bursts:
                print("  burst (callbacks of threshold/5 back to back; no agreed answer yet): " +
                      "; ".join(f"{r['kind']} {r['mult']:g}x {r['measured_ms']:.0f} ms: "
                                + (f"{r['reports']} report(s), {r['reported_total_ms']:.0f} ms,"
                                   f" culprit {r.get('function')}:{r.get('line')}"
                                   if r["reports"] else "nothing")
                                for r in bursts))
            incidental = [r for r in all_rows if r["stall"] == "incidental"]
            if incidental:
                print(f"  incidental stalls in the healthy phase (the loop really stopped, e.g. "
                      f"the busy worker kept the GIL): {len(incidental)}, longest "
                      f"{max(r['measured_ms'] for r in incidental):.0f} ms, reported "
                      f"{sum(1 for r in incidental if r['reports'])} (neither false nor "
                      "required)")
            if tool == "looptools" or args.verbose:
                print_problems(all_rows, all_false, truth, threshold_ms, load, args.problems)
    print(f"\n=== comparison (all loop kinds each tool ran on; threshold {threshold_ms:g} ms) ===")
    print(f"{'tool/load':28} {'clear':>5} {'recall':>6} {'false':>5} {'func':>5} {'line':>5} "
          f"{'fGIL':>4} {'dur|med|':>8} {'worst':>7} {'det med':>7} {'worst':>7} {'!live':>5}  "
          "targets passed")
    for key, s in summaries.items():
        load, name = key.split("/")
        passed = sum(1 for ok, _ in s["targets"].values() if ok)
        counted = sum(1 for ok, _ in s["targets"].values() if ok is not None)
        gil = str(s["false_gil"]) if s["gil_reported"] else "-"
        print(f"{name + ' (' + load + ')':28} {s['clear']:5d} {_pct(s['recall']):>6} "
              f"{s['false']:5d} {_pct(s['func']):>5} {_pct(s['line']):>5} {gil:>4} "
              f"{_ms(s['dur_med']):>8} {_ms(s['dur_worst']):>7} {_ms(s['detect_med']):>7} "
              f"{_ms(s['detect_worst']):>7} {s['not_live']:5d}  {passed}/{counted}")
    return summaries


def print_problems(rows: list[dict[str, Any]], false: list[dict[str, Any]],
                   truth: dict[str, dict[str, Any]], threshold_ms: float, load: str,
                   limit: int) -> None:
    budget = threshold_ms + (50.0 if load == "busy" else 15.0)
    lines = []
    for r in rows:
        if r["stall"] in ("burst", "incidental"):
            continue
        what = []
        if r["clear"] and not r["reports"]:
            what.append("MISSED")
        if r["sub"] and r["reports"]:
            what.append("sub-threshold reported")
        if r["reports"]:
            t = truth[r["stall"]]
            if r["clear"] and not r.get("func_ok"):
                what.append(f"culprit {r.get('function')}:{r.get('line')} (want "
                            f"{t['function']}:{t['line']})")
            elif r["clear"] and not r.get("line_ok"):
                what.append(f"line {r.get('line')} (want {t['line']})")
            if r.get("false_gil"):
                what.append("gil_held")
            if r["reports"] > 1:
                what.append(f"split in {r['reports']}")
            err = r.get("dur_err_ms")
            if r["clear"] and err is not None and abs(err) > max(15.0, 0.1 * r["measured_ms"]):
                what.append(f"duration {r['reported_ms']:.0f} ms")
            if r["clear"] and not r.get("live"):
                what.append("not live")
            elif r["clear"] and r.get("detect_ms") is not None and r["detect_ms"] > budget:
                what.append(f"detected after {r['detect_ms']:.0f} ms")
        if what:
            source = f" [{r.get('stack_source')}]" if r.get("stack_source") else ""
            lines.append(f"    {r['kind']:9} {r['stall']:12} {r['mult']:4g}x "
                         f"{r['measured_ms']:7.1f} ms: " + ", ".join(what) + source)
    for f in false:
        lines.append(f"    {f['kind']:9} FALSE ({f['why']}) {f.get('duration_ms') or 0:.0f} ms "
                     f"culprit {f.get('function')}:{f.get('line')}"
                     + (" gil_held" if f.get("gil_held") else ""))
    if lines:
        print(f"  problems ({len(lines)}{', first ' + str(limit) if len(lines) > limit else ''}):")
        for line in lines[:limit]:
            print(line)


# -- main ------------------------------------------------------------------------------
def _source_state() -> str:
    """The commit, and a digest of the stall watchdog as it is now (it may be edited)."""
    import hashlib

    root = HERE.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "looptools"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        head, dirty = "?", ""
    stalls = root / "looptools" / "detectors" / "stalls.py"
    digest = hashlib.sha1(stalls.read_bytes()).hexdigest()[:10] if stalls.exists() else "?"
    return (f"commit {head}{' + uncommitted changes in looptools/' if dirty else ''}, "
            f"detectors/stalls.py sha1 {digest}")


def parse_list(value: str, allowed: tuple[str, ...], what: str,
               groups: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    out: list[str] = []
    for item in (v.strip() for v in value.split(",") if v.strip()):
        if item == "all":
            out += list(allowed)
        elif groups and item in groups:
            out += list(groups[item])
        elif item in allowed:
            out.append(item)
        else:
            raise SystemExit(f"unknown {what} {item!r}; choose from {', '.join(allowed)}"
                             + (f" or {', '.join(groups)}" if groups else ""))
    return list(dict.fromkeys(out))


def reanalyse(args: argparse.Namespace) -> int:
    saved = json.loads(Path(args.reanalyse).read_text())
    args.threshold_ms = saved["args"]["threshold_ms"]
    truth = saved["truth"]
    results = saved["runs"]
    for run in results:
        if "report" not in run:  # files written before the report was kept
            run["report"] = {"stalls": run.get("report_stalls") or []} \
                if run.get("report_stalls") is not None else None
        run["analysis"] = analyse(run, args.threshold_ms / 1000.0, truth)
    print(f"re-analysed {args.reanalyse} ({len(results)} runs, loads "
          f"{', '.join(f'{k}: {v}' for k, v in saved.get('loads', {}).items())})")
    print_results(results, args, truth)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--stalls", default="all",
                        help="stall kinds, or groups: " + ", ".join(GROUPS))
    parser.add_argument("--durations", default=",".join(f"{d:g}" for d in DURATIONS),
                        help="multiples of the threshold")
    parser.add_argument("--loads", default="quiet")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tools", default="looptools", help=",".join(TOOLS) + " or all")
    parser.add_argument("--threshold-ms", type=float, default=50.0)
    parser.add_argument("--quick", action="store_true",
                        help=f"kinds {QUICK['kinds']}; stalls {QUICK['stalls']}; "
                             f"durations {QUICK['durations']}")
    parser.add_argument("--json", help="save raw results here")
    parser.add_argument("--workdir", help="keep the scenario processes' files here")
    parser.add_argument("--problems", type=int, default=40, help="problem lines per tool/load")
    parser.add_argument("--verbose", action="store_true", help="problem lines for peers too")
    parser.add_argument("--reanalyse", metavar="FILE",
                        help="print the tables again from a --json file (no runs)")
    parser.add_argument("--calibrate-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.calibrate_child:
        print(json.dumps(calibrate_child()))
        return 0
    if args.reanalyse:
        return reanalyse(args)
    if args.quick:
        for key, value in QUICK.items():
            if parser.get_default(key) == getattr(args, key):
                setattr(args, key, value)
    kinds = parse_list(args.kinds, KINDS, "loop kind")
    stalls = parse_list(args.stalls, STALLS, "stall kind", GROUPS)
    loads = parse_list(args.loads, ("quiet", "busy"), "load")
    tools = parse_list(args.tools, TOOLS, "tool")
    durations = [float(d) for d in args.durations.split(",")]
    if args.repeat < 1 or args.threshold_ms <= 0:
        parser.error("--repeat and --threshold-ms must be positive")
    truth = culprits()
    threshold_s = args.threshold_ms / 1000.0
    began = time.monotonic()

    print(f"accuracy: threshold {args.threshold_ms:g} ms, loads {','.join(loads)}, tools "
          f"{','.join(tools)}, kinds {','.join(kinds)}, durations "
          f"{','.join(f'{d:g}x' for d in durations)}, repeat {args.repeat}")
    loadavg = Path("/proc/loadavg")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{' '.join(loadavg.read_text().split()[:3]) if loadavg.exists() else '?'}"
          "; peers: " + ", ".join(f"{k} {v}" for k, v in _peers.versions().items()
                                   if k in tools))
    if "looptools" in tools:
        print(f"looptools at {_source_state()}")
    skipped = sorted({(k, s, skip_reason(k, s)) for k in kinds for s in stalls
                      if skip_reason(k, s)})
    for reason in sorted({r for _, _, r in skipped}):
        print(f"skipped ({reason}): " + ", ".join(f"{k}/{s}" for k, s, r in skipped
                                                  if r == reason))
    for tool in tools:
        if tool != "looptools":
            for kind in kinds:
                why = _peers.SUPPORT[tool][kind]
                if why:
                    print(f"skipped {tool} on {kind}: {why}")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with it ignored
    # calibration, quiet, in a child so that this process stays small
    try:
        cal = subprocess.run([sys.executable, __file__, "--calibrate-child"],
                             capture_output=True, text=True, env={**os.environ, "LOOPTOOLS": "0"})
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if cal.returncode != 0:
        print(cal.stderr, file=sys.stderr)
        return 1
    fits = json.loads(cal.stdout.strip().splitlines()[-1])
    print("calibrated (quiet), size for " + ", ".join(f"{d:g}x" for d in durations) + ":")
    for stall in CALIBRATED:
        if stall in stalls:
            sizes = [size_for(fits[stall], d * threshold_s) for d in durations]
            print(f"  {stall:13} t = {fits[stall]['a']:.3g} * n^{fits[stall]['b']:.2f}: "
                  + ", ".join(f"{n:,}" for n in sizes))

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="accuracy-"))
    state: dict[str, Any] = {"child": None}
    burners: Burners | None = None
    results: list[dict[str, Any]] = []
    load_info: dict[str, Any] = {}
    sources: list[str] = []

    try:
        for load in loads:
            busy0 = cpu_busy()
            phase_began = time.monotonic()
            if load == "busy":
                burners = Burners(os.cpu_count() or 2)
                burners.start()
            for tool in tools:
                for kind in kinds:
                    if tool != "looptools" and _peers.SUPPORT[tool][kind]:
                        continue
                    steps = plan_steps(kind, stalls, durations, args.repeat, threshold_s, fits)
                    if not steps:
                        continue
                    label = f"{load}-{tool}-{kind}"
                    print(f"  running {label}: {len(steps)} stalls ...", end="", flush=True)
                    source = _source_state() if tool == "looptools" else None
                    run = run_scenario(tool, kind, steps, args.threshold_ms, workdir, label,
                                       state)
                    run["load"] = load
                    run["looptools_source"] = source
                    run["analysis"] = analyse(run, threshold_s, truth)
                    missing = len(steps) - sum(1 for g in run["gt"] if "id" in g)
                    status = "" if run["returncode"] == 0 and not missing else \
                        f" exit {run['returncode']}, {missing} stalls not run"
                    errors = run["result"].get("errors") or []
                    print(f" {run['wall_s']:.0f} s{status}" + (f"; app error: "
                          f"{errors[0].strip().splitlines()[-1]}" if errors else ""))
                    if tool == "looptools" and (run["report"] is None
                                                or run["result"].get("origin") is None):
                        said = [ln for ln in run["stderr_tail"].splitlines()
                                if ln.startswith("looptools:")]
                        print(f"    WARNING: looptools did not monitor this run "
                              f"({said[0] if said else 'no report'}): every stall counts missed")
                    if source is not None and sources and source != sources[-1]:
                        print(f"    WARNING: looptools changed during this invocation: {source}")
                    if source is not None:
                        sources.append(source)
                    if status:
                        print("    stderr: " + run["stderr_tail"][-600:].replace("\n", "\n    "))
                    results.append(run)
            busy1 = cpu_busy()
            info: dict[str, Any] = {"wall_s": round(time.monotonic() - phase_began, 1)}
            if busy1[1] > busy0[1]:
                info["machine_busy"] = round((busy1[0] - busy0[0]) / (busy1[1] - busy0[1]), 3)
            if burners is not None:
                info["burners_cpu"] = [round(c, 2) for c in burners.cpu()]
                burners.stop()
                burners = None
            stretch = [g_ms / s["target_ms"] for r in results if r["load"] == load
                       for s, g_ms in _measured(r) if s["stall"] in CALIBRATED]
            if stretch:
                info["c_call_stretch"] = round(statistics.median(stretch), 2)
            load_info[load] = info
            print(f"load {load}: {info['wall_s']:.0f} s, all cores "
                  f"{100 * info.get('machine_busy', float('nan')):.0f}% busy"
                  + (f", burners at {', '.join(f'{100 * c:.0f}%' for c in info['burners_cpu'])}"
                     " of a core each" if "burners_cpu" in info else "")
                  + (f"; calibrated calls took {info['c_call_stretch']:.2f}x their target "
                     "(median)" if "c_call_stretch" in info else ""))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        child = state.get("child")
        if child is not None and child.poll() is None:
            child.kill()
        if burners is not None:
            burners.stop()

    summaries = print_results(results, args, truth)
    print("\nculprits (ground truth): " + ", ".join(
        f"{s} {truth[s]['function']}:{truth[s]['line']}" for s in stalls))
    print(f"total {time.monotonic() - began:.0f} s" + (f"; scenario files in {workdir}"
                                                       if args.workdir else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "truth": truth, "calibration": fits, "loads": load_info,
            "summaries": summaries,
            "runs": [{k: v for k, v in r.items() if k != "report"} |
                     {"report": None if r["report"] is None else
                      {"stalls": r["report"].get("stalls"),
                       "stall_summary": r["report"].get("stall_summary")}}
                     for r in results]}, indent=1, default=str))
        print(f"raw results: {args.json}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
