"""Patches that undo exactly.

:func:`shadow` shadows one object's method with an instance attribute (a loop's
``create_task`` and ``call_exception_handler``): the class is left alone, what
the app set is kept, and undoing puts back exactly what was there (an instance
attribute the app had set, or none).  :class:`ModuleHook` wraps a module's
function while anyone listens (``signal.signal``, ``signal.set_wakeup_fd``).  If
the app replaced ours in the meantime, the undo leaves the app's in place.

Never through ``vars(obj)`` or ``obj.__dict__``: on CPython 3.11 that makes an
object whose attributes live inline build a real dictionary, and every
attribute access of the loop's own methods (``self._ready``...) then takes the
slower path for the rest of its life — measured: 11 % of a plain asyncio
callback chain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_MISSING = object()


def _own_attribute(obj: Any, name: str) -> Any:
    """The instance attribute ``obj.name`` if there is one (else ``_MISSING``),
    told apart from the class's method without touching ``obj.__dict__``."""
    try:
        value = getattr(obj, name)
    except AttributeError:
        return _MISSING
    from_class = getattr(type(obj), name, _MISSING)
    if getattr(value, "__self__", None) is obj and \
            getattr(value, "__func__", _MISSING) is from_class:
        return _MISSING  # the class's method, bound
    if value is from_class:
        return _MISSING  # a class attribute that is not a method
    return value


def shadow(obj: Any, name: str,
           wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[[], None] | None:
    """Set ``obj.name = wrap(obj.name)`` on the instance; returns the undo.

    None when ``obj`` takes no instance attributes (a Cython or C object).
    """
    had = _own_attribute(obj, name)
    replacement = wrap(getattr(obj, name))
    try:
        setattr(obj, name, replacement)
    except (AttributeError, TypeError):
        return None

    def undo() -> None:
        if _own_attribute(obj, name) is not replacement:
            return  # the app put its own there since: keep it
        try:
            if had is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, had)
        except (AttributeError, TypeError):
            pass

    return undo


def dress_as(wrapper: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``wrapper`` the name, qualified name, module and docstring of ``original``
    (what reports and ``repr`` show), and ``__wrapped__``; returns ``wrapper``."""
    for attribute in ("__name__", "__qualname__", "__module__", "__doc__"):
        try:
            setattr(wrapper, attribute, getattr(original, attribute))
        except (AttributeError, TypeError):
            pass
    try:
        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass
    return wrapper


class ModuleHook:
    """``module.name`` wrapped while it has listeners: the first :meth:`watch`
    installs ``make(original)`` (which calls the original, and :meth:`tell` for
    the listeners), the last :meth:`unwatch` puts the original back, unless the
    app replaced the wrapper meanwhile (then its own stays).  A caller that kept
    a reference to the original (``from signal import signal``) is not seen."""

    def __init__(self, module: Any, name: str,
                 make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        self.module, self.name, self._make = module, name, make
        self._lock = threading.Lock()
        self._listeners: list[Callable[..., None]] = []
        self._original: Callable[..., Any] | None = None
        self._wrapper: Callable[..., Any] | None = None

    def watch(self, listener: Callable[..., None],
              ready: Callable[[Callable[..., Any]], bool] | None = None) -> bool:
        """Add ``listener``; False (nothing watched) where the module has no such
        function, or ``ready(original)`` says it cannot be watched (it is asked
        only when the wrapper goes on, under the lock)."""
        with self._lock:
            if self._wrapper is not None:
                if listener not in self._listeners:
                    self._listeners.append(listener)
                return True
            original = getattr(self.module, self.name, None)
            if original is None or (ready is not None and not ready(original)):
                return False
            wrapper = dress_as(self._make(original), original)
            setattr(self.module, self.name, wrapper)
            self._original, self._wrapper = original, wrapper
            self._listeners.append(listener)
            return True

    def unwatch(self, listener: Callable[..., None]) -> None:
        """Any thread: stop calling ``listener``; the last one out puts the original
        back (unless the app replaced ours meanwhile: then its own stays)."""
        with self._lock:
            try:
                self._listeners.remove(listener)
            except ValueError:
                return
            if not self._listeners:
                self._put_back()

    def forget(self) -> None:
        """In a child made by ``fork``: put the original back and watch nothing,
        taking no lock (one held by a thread of the parent's is never released
        here)."""
        self._lock = threading.Lock()
        self._listeners.clear()
        self._put_back()

    def tell(self, *args: Any) -> None:
        """Call every listener with ``args`` (a listener's failure is not the app's)."""
        for listener in list(self._listeners):
            try:
                listener(*args)
            except Exception:
                pass

    def _put_back(self) -> None:
        if self._wrapper is not None and getattr(self.module, self.name, None) is self._wrapper:
            setattr(self.module, self.name, self._original)
        self._original = self._wrapper = None
