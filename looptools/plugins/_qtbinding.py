"""Which Qt binding the app uses: PySide6, PyQt6, PyQt5 or PySide2.

qasync picks its binding from ``QT_API`` (``pyside6``, ``pyqt6``, ``pyqt5``,
``pyside2``), else the first of PyQt5, PyQt6, PySide2 and PySide6 that is
already imported, else the first that imports.  looptools follows the app
instead of guessing: a qasync loop uses the binding qasync chose, a QtAsyncio
loop is PySide6, and a Qt main thread without asyncio uses the binding whose
``QCoreApplication`` exists.  A binding the app did not import is never
imported: only modules already in ``sys.modules`` are looked at.

The four bindings differ in a few spellings that matter here: ``Signal`` vs
``pyqtSignal``, scoped enums (``Qt.TimerType.PreciseTimer``) vs PyQt5's
unscoped ones, and ``QTimer.singleShot`` with a context object (PySide only).
Everything that touches Qt goes through :class:`QtBinding`.
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
        self._poster: Any = None
        self._posters: list[Any] = []
        self._lock = threading.Lock()
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

    def on_app_thread(self, function: Callable[[], None]) -> bool:
        """Run ``function`` once on the application's thread, from any thread.

        A queued signal to an object living on that thread works in all four
        bindings (``QTimer.singleShot`` with a context object is PySide only).
        False when there is no application yet.
        """
        core = self.QtCore
        app = core.QCoreApplication.instance()
        if app is None:
            return False
        with self._lock:
            if self._poster is None:
                signal_type = getattr(core, "Signal", None) or core.pyqtSignal

                class _Poster(core.QObject):  # type: ignore[name-defined,misc]
                    fire = signal_type()

                    def __init__(self, run: Callable[[], None]) -> None:
                        super().__init__()
                        self.run_once: Callable[[], None] | None = run

                    def deliver(self) -> None:
                        run, self.run_once = self.run_once, None
                        if run is not None:
                            run()

                self._poster = _Poster
            poster = self._poster(function)
            poster.moveToThread(app.thread())
            poster.fire.connect(poster.deliver,
                                self.enum("ConnectionType", "QueuedConnection"))
            self._posters.append(poster)  # kept alive until the event is delivered
            del self._posters[:-4]
        poster.fire.emit()
        return True


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
