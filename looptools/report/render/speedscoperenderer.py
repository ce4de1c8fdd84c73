"""The stall stacks as a speedscope file (https://www.speedscope.app), weighted by blocked time.

Format: speedscope's file-format schema (https://www.speedscope.app/file-format-schema.json,
generated from its ``src/lib/file-format-spec.ts``); tests/test_flame.py validates against a
copy of it.  One "sampled" profile in milliseconds: one sample per stall with a stack (its
stack outermost first, weighted by the stall's duration), in the report's order (by start),
over a shared frame table.  The stacks and frames are those of the HTML report's flame graph
(:mod:`looptools.report.render.flame`): looptools' own frames left out, a frame per function.
"""

from __future__ import annotations

import json

from looptools.report.render import _format as f
from looptools.report.render.base import Renderer, Report
from looptools.report.render.flame import flame_graph, frame_table

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


class SpeedscopeRenderer(Renderer):
    """Stall stacks merged by speedscope, weighted by the milliseconds each stall blocked."""

    name = "speedscope"
    extensions = (".speedscope.json",)
    description = "the stall stacks weighted by blocked time, for speedscope.app"

    def render(self, report: Report) -> str:
        """The speedscope JSON document as compact text ending in a newline."""
        from looptools._version import __version__

        graph = flame_graph(report)
        frames, samples = frame_table(graph.stacks)
        weights = [round(stack.ms, 3) for stack in graph.stacks]
        total = round(sum(weights), 3)
        count = len(weights)
        doc = {
            "$schema": SCHEMA_URL,
            "exporter": f"looptools {__version__}",
            "name": f"looptools: blocked time in stalls of {f.argv_text(report)}",
            "activeProfileIndex": 0,
            "shared": {"frames": frames},
            "profiles": [{
                "type": "sampled",
                "name": f"event loop thread: {count} stall{'s' if count != 1 else ''} "
                        f"with stacks, {f.fmt_ms(total)} blocked",
                "unit": "milliseconds",
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            }],
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"
