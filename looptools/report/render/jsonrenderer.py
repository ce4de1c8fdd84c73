"""The report itself, pretty-printed.

Named ``jsonrenderer`` rather than ``json`` so that it can never shadow the
standard library module.
"""

from __future__ import annotations

import json

from looptools.report.render.base import Renderer, Report


class JsonRenderer(Renderer):
    """The report as indented JSON (keys in their original order, non-ASCII kept)."""

    name = "json"
    extensions = (".json",)
    description = "the report, pretty-printed"

    def render(self, report: Report) -> str:
        """Indented JSON text ending in a newline."""
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
