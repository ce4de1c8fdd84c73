"""Report renderers, looked up by name, by output file extension or by dotted path.

>>> get_renderer("html")                       # a name (or alias)
>>> get_renderer("out/report.trace.json")      # an output file name: its extension decides
>>> get_renderer("mypkg.renderers:CsvRenderer")  # any Renderer subclass, by dotted path

Adding a format is one small :class:`Renderer` subclass; a built-in one is
also listed in :data:`BUILTIN_RENDERERS`.  Renderers take the report dict (the JSON
contract in ``looptools/schema/report.schema.json``) and never import the monitor,
click or rich; the built-in ones read their figures from the report's model
(``looptools.report.model.model_of``), so that they say the same thing.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

from looptools.report.render.base import Renderer, RendererNotFound, Report
from looptools.report.render.htmlrenderer import HtmlRenderer
from looptools.report.render.jsonrenderer import JsonRenderer
from looptools.report.render.markdownrenderer import MarkdownRenderer
from looptools.report.render.speedscoperenderer import SpeedscopeRenderer
from looptools.report.render.textrenderer import TextRenderer
from looptools.report.render.tracerenderer import TraceRenderer

__all__ = [
    "BUILTIN_RENDERERS",
    "HtmlRenderer",
    "JsonRenderer",
    "MarkdownRenderer",
    "Renderer",
    "RendererNotFound",
    "Report",
    "SpeedscopeRenderer",
    "TextRenderer",
    "TraceRenderer",
    "format_names",
    "get_renderer",
    "get_renderer_class",
    "renderer_for_path",
]

BUILTIN_RENDERERS: tuple[type[Renderer], ...] = (
    TextRenderer,
    MarkdownRenderer,
    HtmlRenderer,
    TraceRenderer,
    JsonRenderer,
    SpeedscopeRenderer,
)

_DOTTED = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def format_names() -> list[str]:
    """The primary names of the built-in formats, in the order they are documented."""
    return [r.name for r in BUILTIN_RENDERERS]


def _by_name(name: str) -> type[Renderer] | None:
    for renderer in BUILTIN_RENDERERS:
        if name == renderer.name or name in renderer.aliases:
            return renderer
    return None


def renderer_for_path(path: str | os.PathLike[str]) -> type[Renderer] | None:
    """The built-in renderer for an output file name, by its (longest) extension, or None.

    ``report.trace.json`` and ``report.perfetto.json`` give the trace renderer,
    ``report.speedscope.json`` the speedscope one, other ``.json`` files the JSON one.
    """
    base = os.path.basename(os.fspath(path)).lower()
    endings = sorted(((ext, r) for r in BUILTIN_RENDERERS for ext in r.extensions),
                     key=lambda pair: -len(pair[0]))
    for ext, renderer in endings:
        if base.endswith(ext) and (len(base) > len(ext) or base == ext):
            return renderer
    return None


def _import(spec: str) -> type[Renderer]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is the user's plugin: report it in one line
        raise RendererNotFound(f"cannot import {module_name!r}: {exc}") from exc
    found: Any = getattr(module, attr, None)
    if found is None:
        raise RendererNotFound(f"module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(found, type) and issubclass(found, Renderer)):
        raise RendererNotFound(f"{spec!r} is not a looptools.report.render.Renderer subclass")
    return found


def get_renderer_class(spec: str) -> type[Renderer]:
    """The renderer class for a format name, an output file name/extension, or ``module:Class``.

    Names are tried first (``text``, ``md``, ``html``, ``trace``, ``json``,
    ``speedscope`` and their aliases, case-insensitively), then
    ``package.module:Class``, then the file extension (``.html``, ``.md``, ``.txt``,
    ``.json``, ``.trace.json``, ``.perfetto.json``, ``.speedscope.json``).  Raises
    :class:`RendererNotFound` with a message that lists the valid choices.
    """
    key = spec.strip()
    if not key:
        raise RendererNotFound("empty format name")
    by_name = _by_name(key.lower())
    if by_name is not None:
        return by_name
    if _DOTTED.fullmatch(key):
        return _import(key)
    by_ext = renderer_for_path(key if "." in key else "." + key)
    if by_ext is not None:
        return by_ext
    extensions = sorted({ext for r in BUILTIN_RENDERERS for ext in r.extensions})
    raise RendererNotFound(
        f"unknown format {spec!r}: use one of {', '.join(format_names())}, an output file "
        f"ending in {', '.join(extensions)}, or a dotted path package.module:RendererClass"
    )


def get_renderer(spec: str, **options: Any) -> Renderer:
    """A ready-to-use renderer instance for *spec* (see :func:`get_renderer_class`).

    *options* are passed to the renderer's constructor (e.g. ``color=True``).
    """
    return get_renderer_class(spec)(**options)
