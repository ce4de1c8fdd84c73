"""The stall stacks as a speedscope file (https://www.speedscope.app), weighted by blocked time.

Format: speedscope's file-format schema (https://www.speedscope.app/file-format-schema.json,
generated from its ``src/lib/file-format-spec.ts``); tests/test_flame.py validates against a
copy of it.  "sampled" profiles in milliseconds over one shared frame table:

* first, the one speedscope opens on (``activeProfileIndex``): the main loop's, one sample per
  stall with a stack (its stack outermost first, weighted by the stall's duration), in the
  report's order (by start);
* then one per worker thread whose asyncio loop stalled (``worker_loops.stalls``, told apart
  by thread name and ident), the same way, the most blocked thread first.

The stacks and frames are those of the HTML report's flame graph
(:mod:`looptools.report.render.flame`): looptools' own frames left out, a frame per function.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from looptools.report.render import _format as f
from looptools.report.render.base import Renderer, Report
from looptools.report.render.flame import StallStack, flame_graph, frame_table, worker_threads

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def _profile(name: str, stacks: Sequence[StallStack], samples: list[list[int]]) -> dict[str, Any]:
    weights = [round(stack.ms, 3) for stack in stacks]
    total = round(sum(weights), 3)
    count = len(weights)
    return {
        "type": "sampled",
        "name": f"{name}: {count} stall{'s' if count != 1 else ''} with "
                f"{'a stack' if count == 1 else 'stacks'}, "
                f"{f.fmt_ms(total)} blocked",
        "unit": "milliseconds",
        "startValue": 0,
        "endValue": total,
        "samples": samples,
        "weights": weights,
    }


class SpeedscopeRenderer(Renderer):
    """Stall stacks merged by speedscope, weighted by the milliseconds each stall blocked:
    the main loop's profile first (the one opened), then one per stalled worker thread."""

    name = "speedscope"
    extensions = (".speedscope.json",)
    description = "the stall stacks weighted by blocked time, for speedscope.app"

    def render(self, report: Report) -> str:
        """The speedscope JSON document as compact text ending in a newline."""
        from looptools._version import __version__

        main = list(flame_graph(report).stacks)
        # A worker thread none of whose kept stalls has a stack would be an empty profile.
        workers = [(thread, [s for s in thread.stacks if s.frames])
                   for thread in worker_threads(report)]
        workers = [(thread, stacks) for thread, stacks in workers if stacks]
        frames, samples = frame_table([*main, *(s for _, stacks in workers for s in stacks)])
        profiles = [_profile("event loop thread", main, samples[:len(main)])]
        at = len(main)
        for thread, stacks in workers:
            kinds = ", ".join(thread.loop_kinds)
            profiles.append(_profile(f"worker thread {thread.label}, {kinds} loop", stacks,
                                     samples[at:at + len(stacks)]))
            at += len(stacks)
        doc = {
            "$schema": SCHEMA_URL,
            "exporter": f"looptools {__version__}",
            "name": f"looptools: blocked time in stalls of {f.argv_text(report)}",
            "activeProfileIndex": 0,
            "shared": {"frames": frames},
            "profiles": profiles,
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"
