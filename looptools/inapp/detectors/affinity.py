"""Thread-affinity violations: a Qt object or an asyncio loop touched from a thread that
does not own it.

The classic Qt bug — a ``QWidget`` changed, a ``QTimer`` started, a child given a
parent from a worker thread — crashes later, somewhere else, and does not reproduce.
Each violation is recorded **once per call site** (the offending application line),
with a count of repeats, the object (when known), and the owning and calling threads.
Three sources, each paid for differently (docs/threads.md#thread-affinity):

* **Qt's own warnings** (on whenever the detector is, on a Qt loop): Qt's message
  handler is replaced by ours, which chains to the one that was there — the app's, or
  Qt's default, whose output we reproduce byte for byte (``qFormatLogMessage`` and a
  line on file descriptor 2, as Qt's ``fprintf(stderr)`` writes it) — and is put back
  at detach.  Qt calls it synchronously on the thread that made the bad call, so the
  Python call site is the innermost application frame of that thread's stack.  Costs
  nothing until Qt logs something.
* **asyncio's non-thread-safe calls from another thread** (``thread_checks`` only):
  the attached loop's ``call_soon`` and ``call_at`` are shadowed on the instance
  (``looptools.inapp._patch``); ``call_later``, ``create_task`` and a future's
  ``set_result``/``set_exception``/``cancel`` (which schedule its callbacks with
  ``call_soon``) all pass through them.  ``call_soon_threadsafe`` does not (it calls
  the loop's private ``_call_soon``), nor does the hand-off detector's wrapper of it.
  Every ``call_soon`` of the loop, its own task steps included, pays a Python call:
  measured in benchmarks/affinity_cost.py, too much to be on by default.
* **QWidget methods called from a worker thread** (``thread_checks`` only): a profile
  function (``threading.setprofile``) on threads started by ``threading`` after
  attach — never the loop thread — that looks at each call of a C function whose
  ``__self__`` is a ``QWidget`` of the app's binding.  Widgets live on the GUI thread
  (Qt cannot move them), so any such call from another thread is a violation, apart
  from the few Qt documents as thread-safe (``SAFE``).  Costs those threads every call
  they make; nothing on the loop thread.

Recording happens on the offending thread; it takes no lock (a count may lose an
increment to a race, a record is never torn: dict insertions are atomic).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from looptools._frames import Frame, as_dict, frame_tuple, is_app_file, is_ours
from looptools.inapp._patch import shadow
from looptools.inapp._threadnames import current_thread_name
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: Sites kept; later ones are counted in ``dropped``.
MAX_SITES = 64
#: Sites in a live snapshot (the first ones).
SNAPSHOT_ROWS = 5

#: Qt's warnings about thread affinity (Qt 5 and 6 spell them alike), e.g.
#: ``QObject::startTimer: Timers cannot be started from another thread``,
#: ``QObject: Cannot create children for a parent that is in a different thread.``,
#: ``QObject::setParent: Cannot set parent, new parent is in a different thread``,
#: ``QSocketNotifier: Socket notifiers cannot be enabled or disabled from another thread``,
#: ``QPixmap: It is not safe to use pixmaps outside the GUI thread``,
#: ``QObject::startTimer: Timers can only be used with threads started with QThread``.
QT_AFFINITY = re.compile(
    r"another thread|different thread|outside the GUI thread|owned by a different thread"
    r"|threads started with QThread|is not the object's thread", re.IGNORECASE)
_QT_POINTER = re.compile(r"(\w+)\((0x[0-9a-fA-F]+)")
#: "(Parent is Gui(0x55d1...), parent's thread is QThread(0x...), ..."
_QT_PARENT = re.compile(r"Parent is ([\w:]+)\((0x[0-9a-fA-F]+)\)")

#: QObject/QWidget methods Qt documents as thread-safe (or that only read a constant):
#: calling them from a worker is not a violation.
SAFE = frozenset({"thread", "deleteLater", "metaObject", "isWidgetType", "isWindowType",
                  "inherits", "disconnect", "connect", "blockSignals", "signalsBlocked",
                  "objectName", "staticMetaObject"})

#: asyncio's own files: a call reached through them is named by their function.
_ASYNCIO = os.path.dirname(os.path.abspath(threading.__file__)) + os.sep + "asyncio"

#: ``os.write`` as it was when looptools loaded, before the blocking-call detector
#: wraps it: forwarding Qt's message is our write, not a blocking call of the app's
#: (it was reported as one, at the app's line that logged).
_write = os.write


def _thread(ident: int | None = None) -> dict[str, Any]:
    """``{name, ident}`` of the calling thread (or of ``ident``)."""
    if ident is None:  # a thread Python did not start: the OS's name, not "Dummy-3"
        return {"name": current_thread_name(), "ident": threading.get_ident()}
    for thread in threading.enumerate():
        if thread.ident == ident:
            return {"name": thread.name, "ident": ident}
    return {"name": None, "ident": ident}


def _site(frame: Any) -> Frame | None:
    """The innermost application frame at or above ``frame`` (None: none on this thread)."""
    depth = 32
    while frame is not None and depth > 0:
        code = frame.f_code
        if is_app_file(code.co_filename):
            return frame_tuple(frame)
        frame = frame.f_back
        depth -= 1
    return None


class _Record:
    __slots__ = ("call", "calling", "count", "first_s", "message", "obj", "owner", "site",
                 "source")

    def __init__(self, source: str, call: str, site: Frame | None, first_s: float,
                 obj: dict[str, Any] | None, owner: dict[str, Any] | None,
                 calling: dict[str, Any], message: str | None) -> None:
        self.source = source
        self.call = call
        self.site = site
        self.first_s = first_s
        self.obj = obj
        self.owner = owner
        self.calling = calling
        self.message = message
        self.count = 1


class QtMessages:
    """Our Qt message handler, chained to the one installed before it."""

    def __init__(self, binding: Any, record: Callable[..., None], gui_ident: int) -> None:
        self.core = binding.QtCore
        self.binding_name = binding.name
        self.record = record
        self.gui_ident = gui_ident
        self.on = False
        self.previous: Any = None
        self._installed = False
        self._format = getattr(self.core, "qFormatLogMessage", None)
        self.gui_thread_pointer: int | None = None

    def install(self) -> bool:
        self.gui_thread_pointer = self._pointer_of_gui_thread()
        handler = self.handle
        self.previous = self.core.qInstallMessageHandler(handler)
        self._installed = True
        self.on = True
        return True

    def undo(self) -> None:
        """Put back the handler that was there; if the app installed its own since,
        keep the app's (ours stays in its chain, passing everything through)."""
        self.on = False
        if not self._installed:
            return
        self._installed = False
        current = self.core.qInstallMessageHandler(self.previous)
        if current is not None and current != self.handle:
            self.core.qInstallMessageHandler(current)

    def _pointer_of_gui_thread(self) -> int | None:
        try:
            thread = self.core.QCoreApplication.instance().thread()
            if self.binding_name.startswith("PySide"):
                shiboken = sys.modules.get("shiboken6" if self.binding_name == "PySide6"
                                           else "shiboken2")
                return int(shiboken.getCppPointer(thread)[0]) if shiboken else None
            sip = sys.modules.get(f"{self.binding_name}.sip") or sys.modules.get("sip")
            return int(sip.unwrapinstance(thread)) if sip else None
        except Exception:
            return None

    def handle(self, mode: Any, context: Any, message: str) -> None:
        if self.on:
            try:
                if QT_AFFINITY.search(message or ""):
                    self._note(message, sys._getframe(1) if _has_caller() else None)
            except Exception:
                pass  # our failure never becomes the app's
        previous = self.previous
        if previous is not None:
            previous(mode, context, message)  # the app's: what it raises is its own
        else:
            self._default(mode, context, message)

    def _note(self, message: str, frame: Any) -> None:
        first = message.splitlines()[0] if message else ""
        call = first.split(": ", 1)[0].strip()
        obj: dict[str, Any] | None = None
        owner: dict[str, Any] | None = None
        parent = _QT_PARENT.search(message)
        if parent:
            obj = {"class": parent.group(1),
                   "object_name": self._object_name_at(int(parent.group(2), 16))}
            if "Cannot create children" in first:
                # Named after the child and the parent, not just Qt's "QObject"; the
                # site is the line that made the child, not its class's __init__.
                child, frame = self._constructed(frame)
                described = obj["class"] + (f" {obj['object_name']!r}"
                                            if obj["object_name"] else "")
                call = f"{child or 'QObject'} created as a child of {described}"
        owned = re.search(r"parent's thread is (\w+)\((0x[0-9a-fA-F]+)\)", message)
        if owned:
            pointer = int(owned.group(2), 16)
            owner = (_thread(self.gui_ident) if pointer == self.gui_thread_pointer
                     else {"name": f"{owned.group(1)}({owned.group(2)})", "ident": None})
        self.record("qt_warning", call, _site(frame), obj, owner, first)

    def _wrappers(self) -> Any:
        """The binding's wrapper tools: shiboken for PySide, sip for PyQt (or None)."""
        if self.binding_name.startswith("PySide"):
            return sys.modules.get("shiboken6" if self.binding_name == "PySide6"
                                   else "shiboken2")
        return sys.modules.get(f"{self.binding_name}.sip") or sys.modules.get("sip")

    def _object_name_at(self, pointer: int) -> str | None:
        """The ``objectName`` of the ``QObject`` at ``pointer`` (Qt's message prints
        its address; it is alive: Qt is using it right now), None when unset or
        unknown."""
        tools = self._wrappers()
        try:
            if self.binding_name.startswith("PySide"):
                obj = tools.wrapInstance(pointer, self.core.QObject)
            else:
                obj = tools.wrapinstance(pointer, self.core.QObject)
        except Exception:
            return None
        return _name_of(obj)

    def _being_made(self, obj: Any) -> bool:
        """Whether ``obj``'s C++ object is still being constructed (its Python
        ``__init__`` is inside ``super().__init__(...)``): it has no pointer yet."""
        tools = self._wrappers()
        if self.binding_name.startswith("PySide"):
            return not tools.getCppPointer(obj)[0]
        try:
            tools.unwrapinstance(obj)
        except RuntimeError:  # "super-class __init__() of type X was never called"
            return True
        return False

    def _constructed(self, frame: Any) -> tuple[str | None, Any]:
        """For Qt's warning from inside a ``QObject`` constructor: the class of the
        object being made, when the constructor was reached from its Python
        ``__init__`` (``super().__init__(parent)`` in a subclass; a ``QObject(parent)``
        called directly has none), and the frame that made it, above those
        ``__init__`` frames; else ``(None, frame)``."""
        child: str | None = None
        made = None
        qobject = self.core.QObject
        while frame is not None and frame.f_code.co_name == "__init__":
            code = frame.f_code
            this = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
            if not isinstance(this, qobject) or (made is not None and this is not made):
                break
            try:
                if made is None and not self._being_made(this):
                    break  # an __init__ that made some other object: not the child
            except Exception:
                break
            made = this
            child = type(this).__name__
            frame = frame.f_back
        return child, frame

    def _default(self, mode: Any, context: Any, message: str) -> None:
        """What Qt's default handler does with a message: its formatted text and a
        newline on the process's stderr (``fprintf(stderr, "%s\\n", ...)``)."""
        text: str | None = None
        if self._format is not None:
            try:
                text = self._format(mode, context, message)
            except Exception:
                text = None
        if text is None:  # PySide2 5.13 has no qFormatLogMessage: Qt's default pattern
            category = getattr(context, "category", None)
            text = f"{category}: {message}" if category and category != "default" \
                else message
        try:
            _write(2, (text + "\n").encode("utf-8", "surrogateescape"))
        except OSError:
            pass


def _has_caller() -> bool:
    try:
        sys._getframe(2)
    except ValueError:
        return False
    return True


class AffinityViolations(Detector):
    name = "affinity"

    def __init__(self, settings: Settings) -> None:
        self.thread_checks = settings.thread_checks
        self.records: dict[tuple[str, str, Frame | None], _Record] = {}
        self.dropped = 0
        #: which sources ran: {"qt_messages", "asyncio_calls", "widget_calls"} -> bool,
        #: and why one did not
        self.sources: dict[str, Any] = {"qt_messages": False, "asyncio_calls": False,
                                        "widget_calls": False, "not_watched": []}
        self._qt: QtMessages | None = None
        self._undo: list[Callable[[], None]] = []
        self._profiling = False
        self._profile_previous: Any = None
        self._profile_hook: Any = None

    # -- recording (on the offending thread) ---------------------------------------------
    def _record(self, source: str, call: str, site: Frame | None,
                obj: dict[str, Any] | None, owner: dict[str, Any] | None,
                message: str | None = None) -> None:
        key = (source, call, site)
        known = self.records.get(key)
        if known is not None:
            known.count += 1
            return
        if len(self.records) >= MAX_SITES:
            self.dropped += 1
            return
        started = self.hub.started if self.hub is not None else 0.0
        self.records.setdefault(key, _Record(source, call, site,
                                             time.perf_counter() - started, obj, owner,
                                             _thread(), message))

    # -- attach / detach -------------------------------------------------------------------
    def attach(self, state: Any, plugin: Any) -> None:
        binding = getattr(plugin, "binding", None) if getattr(plugin, "is_qt", False) else None
        if binding is not None:
            qt = QtMessages(binding, self._record, state.thread_id)
            if hasattr(binding.QtCore, "qInstallMessageHandler") and qt.install():
                self._qt = qt
                self.sources["qt_messages"] = True
        if not self.thread_checks:
            return
        loop = state.loop
        if loop is not None:
            self._watch_loop(loop, state.thread_id)
        if binding is not None:
            self._watch_widgets(binding, state.thread_id)

    def _watch_loop(self, loop: Any, loop_ident: int) -> None:
        record = self._record
        get_ident = threading.get_ident
        detector = self
        loop_thread = _thread(loop_ident)

        def note(name: str, callback: Any, args: tuple[Any, ...]) -> None:
            frame = sys._getframe(2)
            code = frame.f_code
            if code.co_filename.startswith(_ASYNCIO):
                name = f"loop.{code.co_name}"  # call_later -> call_at
            elif name == "loop.call_soon":
                kind = type(callback).__name__
                if kind == "TaskStepMethWrapper" or getattr(callback, "__name__", "") in (
                        "__step", "_Task__step"):
                    name = "loop.create_task"
                elif args and hasattr(args[0], "add_done_callback"):
                    name = "Future.set_result"  # or set_exception/cancel: its callbacks
            record("asyncio", name, _site(frame), None, loop_thread)

        def wrap_call_soon(original: Callable[..., Any]) -> Callable[..., Any]:
            def call_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
                if get_ident() != loop_ident and detector._undo:
                    try:
                        note("loop.call_soon", callback, args)
                    except Exception:
                        pass
                return original(callback, *args, **kwargs)

            return call_soon

        def wrap_call_at(original: Callable[..., Any]) -> Callable[..., Any]:
            def call_at(when: Any, callback: Any, *args: Any, **kwargs: Any) -> Any:
                if get_ident() != loop_ident and detector._undo:
                    try:
                        note("loop.call_at", callback, args)
                    except Exception:
                        pass
                return original(when, callback, *args, **kwargs)

            return call_at

        undone = [shadow(loop, "call_soon", wrap_call_soon), shadow(loop, "call_at", wrap_call_at)]
        self._undo.extend(undo for undo in undone if undo is not None)
        if self._undo:
            self.sources["asyncio_calls"] = True
        else:
            self.sources["not_watched"].append(
                f"asyncio calls: {type(loop).__name__} takes no instance attributes")

    def _watch_widgets(self, binding: Any, gui_ident: int) -> None:
        widgets = sys.modules.get(f"{binding.name}.QtWidgets")
        widget = getattr(widgets, "QWidget", None)
        if not isinstance(widget, type):
            self.sources["not_watched"].append("widget calls: the app has no QtWidgets")
            return
        if threading.getprofile() is not None:  # type: ignore[attr-defined]
            self.sources["not_watched"].append(
                "widget calls: threads are already profiled (threading.setprofile)")
            return
        record = self._record
        gui = _thread(gui_ident)
        detector = self

        def watch(frame: Any, event: str, arg: Any) -> None:
            if event == "c_call":
                owner = getattr(arg, "__self__", None)
                if isinstance(owner, widget) and detector._profiling:
                    name = getattr(arg, "__name__", "?")
                    if name not in SAFE and not is_ours(frame.f_code.co_filename):
                        try:
                            record("widget_call", f"{type(owner).__name__}.{name}",
                                   _site(frame), {"class": type(owner).__name__,
                                                  "object_name": _name_of(owner)}, gui)
                        except Exception:
                            pass
            if not detector._profiling:
                sys.setprofile(None)  # detached: this thread goes back to no profile

        def start(frame: Any, event: str, arg: Any) -> None:
            # The first event of a new thread: watch it unless it is ours.
            if not detector._profiling or threading.current_thread().name.startswith(
                    "looptools") or threading.get_ident() == gui_ident:
                sys.setprofile(None)
                return
            sys.setprofile(watch)
            watch(frame, event, arg)

        self._profile_hook = start
        self._profiling = True
        threading.setprofile(start)
        self.sources["widget_calls"] = True

    def detach(self) -> None:
        qt, self._qt = self._qt, None
        if qt is not None:
            qt.undo()
        undo, self._undo = self._undo, []
        for step in undo:
            step()
        if self._profiling:
            self._profiling = False  # each profiled thread drops it at its next call
            if threading.getprofile() is self._profile_hook:  # type: ignore[attr-defined]
                threading.setprofile(None)  # type: ignore[arg-type]
            self._profile_hook = None

    def forget(self) -> None:
        # A forked child: Qt is not to be touched.  Our handler passes everything on.
        qt, self._qt = self._qt, None
        if qt is not None:
            qt.on = False
        undo, self._undo = self._undo, []
        for step in undo:
            step()
        self._profiling = False
        if threading.getprofile() is self._profile_hook:  # type: ignore[attr-defined]
            threading.setprofile(None)  # type: ignore[arg-type]

    # -- output ----------------------------------------------------------------------------
    def rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        """One row per call site, in order of first occurrence (the first ``limit``)."""
        records = sorted(list(self.records.values()), key=lambda r: r.first_s)[:limit]
        rows = [{
            "source": r.source,
            "call": r.call,
            "site": as_dict(r.site),
            "count": r.count,
            "first_at_s": round(r.first_s, 6),
            "object": r.obj,
            "owner_thread": r.owner,
            "calling_thread": r.calling,
            "message": r.message,
        } for r in records]
        return rows

    def contribute(self, report: dict[str, Any]) -> None:
        report["affinity"] = {
            "violations": self.rows(),
            "dropped": self.dropped,
            "watched": {key: value for key, value in self.sources.items()
                        if key != "not_watched"},
            "not_watched": list(self.sources["not_watched"]),
        }

    def snapshot(self) -> dict[str, Any]:
        # The live dashboard's: the first SNAPSHOT_ROWS sites, and how many there are.
        if not self.records:
            return {}
        return {"affinity": self.rows(SNAPSHOT_ROWS), "affinity_sites": len(self.records)}


def _name_of(obj: Any) -> str | None:
    try:
        name = obj.objectName()
    except Exception:
        return None
    return str(name) or None
