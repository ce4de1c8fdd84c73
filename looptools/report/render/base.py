"""The base class every report renderer derives from."""

from __future__ import annotations

from typing import Any, ClassVar

#: A looptools report as loaded from JSON (see ``looptools/schema/report.schema.json``).
Report = dict[str, Any]


class Renderer:
    """Turns one report into the text of one output format.

    A new format is one small subclass: set :attr:`name` (and optionally
    :attr:`aliases` and :attr:`extensions`) and implement :meth:`render`.
    Renderers read only the report (the dict, or the figures of its model,
    ``looptools.report.model.model_of(report)``); they never touch the monitor or
    the loop, so they can run anywhere, long after the app has exited.
    """

    #: The name used with ``--format``.
    name: ClassVar[str] = ""
    #: Other names accepted for ``--format``.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: Output file name endings (lower case, with the leading dot) that select this renderer.
    extensions: ClassVar[tuple[str, ...]] = ()
    #: One line shown in ``looptools report --help`` and the docs.
    description: ClassVar[str] = ""

    def __init__(self, *, color: bool = False) -> None:
        """Create a renderer; *color* asks for terminal colours where the format has any."""
        self.color = color

    def render(self, report: Report) -> str:
        """Return the whole output for *report* (already validated against the schema)."""
        raise NotImplementedError


class RendererNotFound(LookupError):
    """No renderer matches a name, output file extension or dotted path."""
