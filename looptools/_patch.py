"""Patches that undo exactly: shadowing one object's method with an instance attribute.

Used for a loop's ``create_task`` and ``call_exception_handler``: the class is
left alone, what the app set is kept, and undoing puts back exactly what was
there (an instance attribute the app had set, or none).  If the app replaced
ours in the meantime, the undo leaves the app's in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MISSING = object()


def shadow(obj: Any, name: str,
           wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[[], None] | None:
    """Set ``obj.name = wrap(obj.name)`` on the instance; returns the undo.

    None when ``obj`` takes no instance attributes (a Cython or C object).
    """
    try:
        had = vars(obj).get(name, _MISSING)
    except TypeError:
        return None
    replacement = wrap(getattr(obj, name))
    try:
        setattr(obj, name, replacement)
    except (AttributeError, TypeError):
        return None

    def undo() -> None:
        try:
            attrs = vars(obj)
        except TypeError:
            return
        if attrs.get(name, _MISSING) is not replacement:
            return  # the app put its own there since: keep it
        if had is _MISSING:
            del attrs[name]
        else:
            attrs[name] = had

    return undo
