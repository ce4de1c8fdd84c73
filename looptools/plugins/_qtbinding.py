"""Which Qt binding the app uses: PySide6, PyQt6, PyQt5 or PySide2.

qasync picks its binding from ``QT_API`` (``pyside6``, ``pyqt6``, ``pyqt5``,
``pyside2``), else the first of PyQt5, PyQt6, PySide2 and PySide6 that is
already imported, else the first that imports.  looptools follows the app
instead of guessing: a qasync loop uses the binding qasync chose, a QtAsyncio
loop is PySide6, and a Qt main thread without asyncio uses the binding whose
``QCoreApplication`` exists.  A binding the app did not import is never
imported: only modules already in ``sys.modules`` are looked at.

The four bindings differ in a few spellings that matter here (scoped enums
such as ``Qt.TimerType.PreciseTimer`` vs PyQt5's unscoped ones, ``exec`` vs
``exec_``).  Everything that touches Qt goes through :class:`QtBinding`, and
only ever on the thread of the app's event loop: PySide builds its enums
lazily, and not thread-safely.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: qasync's order when ``QT_API`` is not set.
NAMES = ("PyQt5", "PyQt6", "PySide2", "PySide6")
QT_API = {"pyqt5": "PyQt5", "pyqt6": "PyQt6", "pyside2": "PySide2", "pyside6": "PySide6"}


class QtBinding:
    """One Qt binding's ``QtCore``, and the few calls looptools needs from it."""

    def __init__(self, name: str, qtcore: ModuleType) -> None:
        self.name = name
        self.QtCore = qtcore
        self._enums: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return f"QtBinding({self.name})"

    @property
    def qt_version(self) -> str | None:
        try:
            return str(self.QtCore.qVersion())
        except Exception:
            return None

    @property
    def version(self) -> str | None:
        """The binding's own version (not Qt's)."""
        core = self.QtCore
        for attr in ("PYQT_VERSION_STR", "__version__"):
            value = getattr(core, attr, None)
            if isinstance(value, str):
                return value
        top = sys.modules.get(self.name)
        value = getattr(top, "__version__", None)
        return value if isinstance(value, str) else None

    def enum(self, scope: str, member: str) -> Any:
        """``Qt.<scope>.<member>``, or PyQt5's unscoped ``Qt.<member>``.

        Looked up once, under a lock: PySide6 creates its enums lazily, and two
        threads doing that at once were seen to get an enum without its members.
        """
        key = (scope, member)
        with _ENUM_LOCK:
            known = self._enums.get(key)
            if known is None:
                qt = self.QtCore.Qt
                scoped = getattr(getattr(qt, scope, None), member, None)
                known = self._enums[key] = scoped if scoped is not None else getattr(qt, member)
        return known

    def app(self) -> Any:
        return self.QtCore.QCoreApplication.instance()

    def dispatcher(self) -> Any:
        if self.app() is None:
            return None
        return self.QtCore.QAbstractEventDispatcher.instance()


class _ExecHook:
    """An application class's ``exec`` (or ``exec_``): calls ``before()`` as it is
    looked up, then gives what the original descriptor gives.

    So no frame of ours is on the stack while ``exec`` runs, and what is raised as it
    returns (a Ctrl-C left pending, say) shows the app's frames only, as without us.
    (A wrapper function that called ``exec`` itself showed its own frame there.)
    Only a lookup on the main thread calls ``before()``; ``before()`` must be
    harmless when no call follows (the monitor's posts the attach, run when the
    app's loop runs).
    """

    __looptools_exec__ = True

    def __init__(self, descriptor: Any, before: Callable[[], None]) -> None:
        self.__wrapped__ = descriptor
        self._before = before

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        # A lookup is not always the call (hasattr, introspection), and one on
        # another thread is not the app entering its loop: the hook posts the
        # attach to the thread it runs on, which would then never run it.
        if threading.get_ident() == threading.main_thread().ident:
            try:
                self._before()
            except Exception:
                pass
        return self.__wrapped__.__get__(obj, objtype)


def hook_exec(binding: QtBinding, before: Callable[[], None]) -> Callable[[], None]:
    """Call ``before()`` on the app's thread as it enters ``exec``; returns the undo.

    The binding's application classes (``QCoreApplication``, and
    ``QGuiApplication``/``QApplication`` if imported) get their ``exec`` (and
    ``exec_``) replaced at class level by an :class:`_ExecHook`, which calls
    ``before()`` when the app looks ``exec`` up and hands it the original
    (static and bound calls behave as before).  Undo puts the original
    descriptors back, unless the app replaced them since.  Main thread only
    (PySide's types are not thread-safe to touch).
    """
    classes = [binding.QtCore.QCoreApplication]
    for module, name in (("QtGui", "QGuiApplication"), ("QtWidgets", "QApplication")):
        cls = getattr(sys.modules.get(f"{binding.name}.{module}"), name, None)
        if isinstance(cls, type):
            classes.append(cls)
    undo: list[tuple[type, str, Any, Any]] = []
    for cls in classes:
        for attr in ("exec", "exec_"):
            descriptor = vars(cls).get(attr)
            if descriptor is None or getattr(descriptor, "__looptools_exec__", False):
                continue
            hook = _ExecHook(descriptor, before)
            try:
                setattr(cls, attr, hook)
            except (AttributeError, TypeError):
                continue
            undo.append((cls, attr, descriptor, hook))

    def unhook() -> None:
        for cls, attr, descriptor, hook in reversed(undo):
            if vars(cls).get(attr) is hook:
                try:
                    setattr(cls, attr, descriptor)
                except (AttributeError, TypeError):
                    pass
        undo.clear()

    return unhook


_cache: dict[str, QtBinding] = {}
_ENUM_LOCK = threading.Lock()


def binding(name: str) -> QtBinding | None:
    """The binding ``name`` if the app has imported its ``QtCore``, else None."""
    qtcore = sys.modules.get(f"{name}.QtCore")
    if qtcore is None:
        return None
    known = _cache.get(name)
    if known is None or known.QtCore is not qtcore:
        known = _cache[name] = QtBinding(name, qtcore)
    return known


def loaded() -> list[QtBinding]:
    """Every binding whose ``QtCore`` is imported, ``QT_API``'s first."""
    wanted = QT_API.get(os.environ.get("QT_API", "").strip().lower())
    order = ([wanted] if wanted else []) + [n for n in NAMES if n != wanted]
    found = [binding(name) for name in order]
    return [b for b in found if b is not None]


def with_app() -> QtBinding | None:
    """The binding whose ``QCoreApplication`` exists (the app's), if any."""
    for candidate in loaded():
        try:
            if candidate.app() is not None:
                return candidate
        except Exception:
            continue
    return None


def for_qasync() -> QtBinding | None:
    """The binding qasync chose (its ``QtModuleName``)."""
    qasync = sys.modules.get("qasync")
    name = getattr(qasync, "QtModuleName", None)
    if isinstance(name, str):
        return binding(name)
    core = getattr(qasync, "QtCore", None)
    if core is not None:
        top = core.__name__.split(".")[0]
        return binding(top)
    return None
