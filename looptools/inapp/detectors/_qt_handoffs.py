"""Qt's ways of handing work to the GUI thread: the ones whose wait can be measured exactly.

Two ways are measured, each put on its class once the app runs a thread of its
own (:class:`QtHandOffs`) and taken back exactly at detach.

**``QTimer.singleShot`` with a Python callable.**  Measured where looptools runs
the work itself: the posting call is given a wrapper of the app's callable,
which notes the time and site of the post on the worker and, when Qt starts it,
the wait on the GUI thread.  That is possible in the forms where passing another
callable leaves Qt's routing exactly as it was (checked per binding,
tests/test_handoffs.py):

* **PySide6** ``QTimer.singleShot(msec, context, callable)``: runs in the
  context object's thread, whatever the callable is, so a plain wrapper runs
  where the app's callable would have.  The two-argument form
  ``singleShot(msec, callable)`` runs in the *calling* thread (or never, in a
  thread without a Qt event loop): not a hand-off to the GUI thread.
* **PyQt6, PyQt5** ``QTimer.singleShot(msec[, timerType], obj.method)``: PyQt
  runs a bound method of a ``QObject`` in that object's thread, and only a
  bound method: the wrapper is bound to the same object (a plain function would
  run in the calling thread).  The receiver is not kept alive by the wrapper,
  as by PyQt.  PyQt5 keeps only a borrowed reference to the function of such a
  method, so the wrapper is kept here until it runs (a freed one crashed
  PyQt5); at most ``MAX_PENDING`` wait at once, beyond that posts go unwrapped.
  A ``@pyqtSlot``-decorated method is posted once as it is, unmeasured: PyQt
  refuses one with no signature compatible with ``timeout()``, and the
  wrapper, undecorated, would not be refused; its later posts are measured if
  that first one was accepted.
* **PySide2** decides where a bound method runs from the method itself: an
  undecorated method of a GUI-thread ``QObject`` ran on the GUI thread, the same
  method wrapped (or decorated with ``@Slot``) in the calling thread.  A wrapper
  would move the call: not measured.

**Queued ``QMetaObject.invokeMethod(obj, "slot", ...)``** from another thread to
an object living on the GUI thread.  The binding calls the slot from C++, so the
app's work cannot be wrapped; instead a marker event of ours is posted to a
``QObject`` of ours on the GUI thread *immediately before* the app's call posts
its ``QMetaCallEvent``.  Qt delivers the events posted to one thread in the order
they were posted (same priority), so the marker runs right before the app's
slot: its start minus the post is the slot's wait.  A lock held across the two
posts keeps another measured ``invokeMethod`` from coming between them (without
it, 10-44 % of pairs had another event between them in a burst from four
threads; with it, none: benchmarks/invoke_marker_accuracy.py).  What can still
come between makes a wait read short, never long: a post this module does not
wrap, made in the microseconds between the two; and, if the GUI thread begins a
pass of posted events in those microseconds (a pass takes only the events posted
before it began), what the loop does before the next pass.  The marker is told
whether the app's call succeeded (the binding returns False or raises for a
missing slot; Qt refuses a return value in a queued call, which is not posted
at all); if it runs before the call returned, its start is kept until the
outcome is known (:meth:`_InvokeMethod.settle`).  Left alone: direct calls,
calls made on the GUI thread, calls to objects of other threads, and
``BlockingQueuedConnection`` (the caller waits until the slot has run: holding
the lock through that would make other threads' hand-offs wait too, and without
it a post from another thread can come between).  PySide2 is left alone: its
static method, put back on its class, crashed the interpreter.

What is not measured (``docs/threads.md``): queued signals.  Only emissions from
Python could be hooked (``SignalInstance.emit``, ``pyqtBoundSignal.emit``), and
which of an emission's connections post to the GUI thread is not knowable (Qt
keeps connections in C++ and lists no receivers): a marker would be posted for
emissions that post nothing there.

The posting thread pays.  Until the app runs a thread of its own nothing is
wrapped (a Qt app without threads cannot hand off): the thread starts the GUI
thread makes are watched, and the heartbeat looks every ``POLL_S``.  Then each
class attribute becomes a descriptor that gives the GUI thread the binding's
own function (one Python-level lookup per call there) and other threads the
wrapper; QtAsyncio, which makes a ``singleShot`` on the GUI thread per
callback, gets a ``QTimer`` of its own with the binding's ``singleShot``
(benchmarks/handoff_cost.py).  Only calls written in the application's own code
are hand-offs (QtAsyncio's ``call_soon_threadsafe`` uses ``singleShot`` with a
context and is measured as ``call_soon_threadsafe``).
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable
from typing import Any

from looptools._frames import Frame, frame_tuple, is_app_file
from looptools.inapp._patch import dress_as
from looptools.inapp._threadnames import current_thread_name

VIA = "QTimer.singleShot"
INVOKE_VIA = "QMetaObject.invokeMethod"
#: PyQt wrappers kept alive until they run (PyQt5 does not hold them itself).
MAX_PENDING = 4096
#: Decorated PyQt slots whose first post told whether PyQt accepts them.
MAX_DECORATED = 256
#: Markers that ran before their ``invokeMethod`` call returned, kept until it has.
MAX_HELD = 256

#: Until armed, how often the heartbeat looks for a thread of the app's.
POLL_S = 0.1

Record = Callable[[str, "Frame | None", str, float, float], None]


def app_threads(gui: int) -> bool:
    """Does the process run Python on a thread other than the GUI thread and ours?
    (Any thread with a Python frame: ``threading``'s, a ``QThread``'s, a C library's.)"""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident in sys._current_frames():
        if ident != gui and not str(names.get(ident, "")).startswith("looptools-"):
            return True
    return False


def _ours(args: tuple[Any, ...]) -> bool:
    """A ``threading.Thread.start`` of one of looptools' own threads."""
    return bool(args) and isinstance(args[0], threading.Thread) \
        and str(args[0].name).startswith("looptools-")


def _app_site(caller: Any) -> Frame | None:
    """The posting line, if the app's own code made the call."""
    if caller is None or not is_app_file(caller.f_code.co_filename):
        return None
    return frame_tuple(caller)


class QtHandOffs:
    """Qt's hand-offs to the GUI thread for one binding: ``QTimer.singleShot`` and
    ``QMetaObject.invokeMethod`` wrapped at class level once the app runs a thread
    of its own; :meth:`undo` puts each class attribute back exactly as it was
    (unless the app replaced it since)."""

    def __init__(self, binding: Any, loop_thread: int, record: Record) -> None:
        self.binding = binding
        self.loop_thread = loop_thread
        self.patches: list[_SingleShot | _InvokeMethod] = [
            _SingleShot(binding, loop_thread, record),
            _InvokeMethod(binding, loop_thread, record)]
        self.on = False
        self._armed = False
        self._next_poll = 0.0
        self._watches: list[tuple[Any, str, Any, Any]] = []

    @staticmethod
    def supports(binding: Any) -> bool:
        return getattr(binding, "name", None) in ("PySide6", "PyQt6", "PyQt5")

    def install(self) -> bool:
        """Get ready, and arm at once if the app already runs a thread of its own;
        else arm when it starts one.  Main thread only (Qt classes are touched)."""
        ready = []
        for patch in self.patches:
            try:
                if patch.prepare():
                    ready.append(patch)
            except Exception:  # a binding unlike the ones checked: that way unmeasured
                pass
        self.patches = ready
        if not ready:
            return False
        self.on = True
        if app_threads(self.loop_thread):
            self.arm()
        else:
            self._watch_thread_starts()
        return True

    @property
    def armed(self) -> bool:
        return self._armed

    def arm(self) -> None:
        """Put the descriptors on the classes (GUI thread only)."""
        if self._armed or not self.on or threading.get_ident() != self.loop_thread:
            return
        self._unwatch()
        self.patches = [patch for patch in self.patches if patch.put()]
        self._armed = True

    def poll(self, now: float) -> None:
        """From the loop thread's heartbeat: settle the markers that ran before their
        call returned; until armed, arm once the app runs a thread (one that started in
        a way the start hooks do not see: a C library's, a pool's)."""
        for patch in self.patches:
            patch.settle()
        if self._armed or not self.on or now < self._next_poll:
            return
        self._next_poll = now + POLL_S
        if app_threads(self.loop_thread):
            self.arm()

    def undo(self) -> None:
        self.on = False
        self._unwatch()
        for patch in reversed(self.patches):
            patch.take_back()
        self._armed = False

    # -- until the app has a thread of its own ------------------------------------------
    def _watch_thread_starts(self) -> None:
        """Arm as the GUI thread starts the app's first thread (so a stall right after
        it, when no heartbeat runs, is covered): ``threading.Thread.start``,
        ``QThread.start``, ``QThreadPool.start``/``tryStart``, each wrapped at class
        level only until then."""
        core = self.binding.QtCore
        targets = [(threading.Thread, "start"), (core.QThread, "start"),
                   (core.QThreadPool, "start"), (core.QThreadPool, "tryStart")]
        loop_thread, get_ident = self.loop_thread, threading.get_ident
        handoffs = self
        for cls, name in targets:
            getattr(cls, name, None)  # PyQt fills its class dicts lazily
            original = vars(cls).get(name)
            if original is None:
                continue

            def started(*args: Any, _original: Any = original, _cls: Any = cls,
                        **kwargs: Any) -> Any:
                if get_ident() == loop_thread and not _ours(args):
                    try:
                        handoffs.arm()
                    except Exception:
                        pass
                if args and isinstance(args[0], _cls):
                    return _original.__get__(args[0], type(args[0]))(*args[1:], **kwargs)
                return _original.__get__(None, _cls)(*args, **kwargs)

            dress_as(started, original)
            try:
                setattr(cls, name, started)
            except (AttributeError, TypeError):
                continue
            self._watches.append((cls, name, original, started))

    def _unwatch(self) -> None:
        watches, self._watches = self._watches, []
        for cls, name, original, started in reversed(watches):
            if vars(cls).get(name) is started:
                try:
                    setattr(cls, name, original)
                except (AttributeError, TypeError):
                    pass


def _per_thread(descriptor: Any, original: Any, wrapper: Callable[..., Any],
                loop_thread: int) -> Any:
    """What a static method of a Qt class is while armed: on the GUI thread the
    binding's own (or the app's, if it had put one there), on any other thread the
    wrapper."""
    get_ident = threading.get_ident

    class PerThread:
        __slots__ = ()
        __wrapped__ = descriptor

        def __get__(self, obj: Any, owner: Any = None) -> Any:
            if get_ident() != loop_thread:
                return wrapper  # a static method: the same however looked up
            return original if obj is None else descriptor.__get__(obj, owner)

    return PerThread()


class _ClassPatch:
    """One static method of a Qt class, replaced by a :func:`_per_thread` descriptor
    while armed; :meth:`take_back` restores the very object that was there."""

    cls: Any
    name: str

    def __init__(self) -> None:
        self.descriptor: Any = None
        self.replacement: Any = None
        self.on = False
        self.armed = False

    def put(self) -> bool:
        try:
            setattr(self.cls, self.name, self.replacement)
        except (AttributeError, TypeError):
            self.on = False
            return False
        self.armed = True
        return True

    def take_back(self) -> None:
        self.on = False
        replacement, self.replacement = self.replacement, None
        if self.armed and replacement is not None \
                and vars(self.cls).get(self.name) is replacement:
            try:
                setattr(self.cls, self.name, self.descriptor)
            except (AttributeError, TypeError):
                pass
        self.armed = False

    def settle(self) -> None:
        pass

    def _original(self) -> tuple[Any, Any] | None:
        """The class's attribute as the app sees it and as the class holds it."""
        original = getattr(self.cls, self.name, None)  # first: PyQt fills its dicts lazily
        descriptor = vars(self.cls).get(self.name)
        if original is None or descriptor is None or not hasattr(descriptor, "__get__"):
            return None
        return original, descriptor


class _SingleShot(_ClassPatch):
    """``QTimer.singleShot`` with a Python callable from another thread."""

    name = "singleShot"

    def __init__(self, binding: Any, loop_thread: int, record: Record) -> None:
        super().__init__()
        self.binding = binding
        self.loop_thread = loop_thread
        self.record = record
        self.cls = binding.QtCore.QTimer
        self.qobject_class: Any = binding.QtCore.QObject
        self.pending: dict[int, Callable[..., Any]] = {}
        self.ran: deque[Callable[..., Any]] = deque(maxlen=64)
        self.decorated: dict[Any, bool] = {}
        self._qtasyncio: tuple[Any, Any] | None = None

    def prepare(self) -> bool:
        found = self._original()
        if found is None:
            return False
        original, descriptor = found
        post = self._post_pyside6 if self.binding.name == "PySide6" else self._post_pyqt
        loop_thread = self.loop_thread
        get_ident = threading.get_ident
        getframe = sys._getframe
        handoffs = self

        def singleShot(*args: Any, **kwargs: Any) -> Any:
            if kwargs or not handoffs.on or get_ident() == loop_thread:
                return original(*args, **kwargs)
            try:
                return post(original, args, getframe(1))
            except _Passed as passed:  # the original ran (and raised, or not)
                if passed.error is not None:
                    raise passed.error from None
                return passed.result

        wrapper = dress_as(singleShot, original)
        self.descriptor = descriptor
        self.replacement = _per_thread(descriptor, original, wrapper, loop_thread)
        self.on = True
        return True

    def put(self) -> bool:
        if not super().put():
            return False
        self._exempt_qtasyncio()
        return True

    def take_back(self) -> None:
        self._unexempt_qtasyncio()
        super().take_back()

    # -- QtAsyncio ----------------------------------------------------------------------
    def _exempt_qtasyncio(self) -> None:
        """QtAsyncio makes a ``singleShot`` on the GUI thread for every callback (never a
        hand-off): its module is given a ``QTimer`` whose ``singleShot`` is the binding's
        own, so that its callbacks do not pay the descriptor's lookup."""
        events: Any = sys.modules.get("PySide6.QtAsyncio.events")
        if events is None or getattr(events, "QTimer", None) is not self.cls:
            return
        cls: Any = self.cls
        stand_in = type(cls.__name__, (cls,), {"singleShot": self.descriptor,
                                              "__module__": cls.__module__,
                                              "__qualname__": cls.__qualname__})
        events.QTimer = stand_in
        self._qtasyncio = (events, stand_in)

    def _unexempt_qtasyncio(self) -> None:
        exempt, self._qtasyncio = self._qtasyncio, None
        if exempt is not None and getattr(exempt[0], "QTimer", None) is exempt[1]:
            exempt[0].QTimer = self.cls

    # -- on the worker thread ----------------------------------------------------------
    def _post_pyside6(self, original: Callable[..., Any], args: tuple[Any, ...],
                      caller: Any) -> Any:
        wrapped = None
        try:
            if len(args) == 3:
                msec, context, functor = args
                if isinstance(msec, int) and isinstance(context, self.qobject_class) \
                        and _plain_callable(functor):
                    wrapped = self._wrap_function(functor, msec, caller)
        except Exception:  # our failure never becomes the worker's
            wrapped = None
        if wrapped is None:
            return original(*args)
        return original(args[0], args[1], wrapped)

    def _arrival(self, msec: int, caller: Any) -> Callable[[], None] | None:
        """Posting thread: what the posted work calls as it starts, to record its wait
        (on the GUI thread only); None when no application frame posted it."""
        posted = time.perf_counter()
        site = _app_site(caller)
        if site is None:
            return None
        thread = current_thread_name()
        due = posted + msec / 1000.0
        record, loop_thread, clock, get_ident = (self.record, self.loop_thread,
                                                 time.perf_counter, threading.get_ident)

        def arrived() -> None:
            if get_ident() == loop_thread:
                try:
                    record(VIA, site, thread, due, clock())
                except Exception:
                    pass

        return arrived

    def _wrap_function(self, functor: Callable[..., Any], msec: int,
                       caller: Any) -> Callable[..., Any] | None:
        arrived = self._arrival(msec, caller)
        if arrived is None:
            return None

        def handed_off(*inner: Any) -> Any:
            arrived()
            return functor(*inner)

        return handed_off

    def _post_pyqt(self, original: Callable[..., Any], args: tuple[Any, ...],
                   caller: Any) -> Any:
        slot = args[-1] if len(args) in (2, 3) else None
        wrapped = None
        func = None
        try:
            if isinstance(slot, types.MethodType) and isinstance(args[0], int) \
                    and isinstance(slot.__self__, self.qobject_class) \
                    and isinstance(slot.__func__, types.FunctionType):
                func = slot.__func__
                if hasattr(func, "__pyqtSignature__"):
                    accepted = self.decorated.get(func)
                    if accepted is None:
                        self._first_decorated(original, args, func)  # raises _Passed
                    if not accepted:
                        func = None
                if func is not None and len(self.pending) < MAX_PENDING:
                    wrapped = self._wrap_method(slot.__self__, func, args[0], caller)
        except _Passed:
            raise
        except Exception:
            wrapped = None
        if wrapped is None:
            return original(*args)
        key = id(wrapped.__func__)
        self.pending[key] = wrapped.__func__
        try:
            return original(*args[:-1], wrapped)
        except BaseException:
            self.pending.pop(key, None)
            raise

    def _first_decorated(self, original: Callable[..., Any], args: tuple[Any, ...],
                         func: Any) -> None:
        """Post it as it is and remember whether PyQt accepted it."""
        try:
            result = original(*args)
        except Exception as error:
            if len(self.decorated) < MAX_DECORATED:
                self.decorated[func] = False
            raise _Passed(None, error) from None
        if len(self.decorated) < MAX_DECORATED:
            self.decorated[func] = True
        raise _Passed(result, None)

    def _wrap_method(self, receiver: Any, func: Callable[..., Any], msec: int,
                     caller: Any) -> types.MethodType | None:
        arrived = self._arrival(msec, caller)
        if arrived is None:
            return None
        pending, ran = self.pending, self.ran

        def handed_off(self_: Any, *inner: Any) -> Any:
            # Released a while after it ran, not at once: PyQt5 holds no reference.
            ran.append(pending.pop(id(handed_off), handed_off))
            arrived()
            return func(self_, *inner)

        return types.MethodType(handed_off, receiver)


#: The state of a measured ``invokeMethod`` call, in its cell (the last item).
_CALLING, _POSTED, _FAILED = 0, 1, 2

#: Per binding, the registered event type and the marker classes (made once: Qt has
#: a few thousand event types for a whole process).
_MARKER_KINDS: dict[str, tuple[Any, type, type]] = {}
#: Every marker object made, kept until the process ends: a worker still inside the
#: wrapper after detach may post to it, and a QObject must not be deleted there.
_MARKERS: list[Any] = []


def _marker_kind(core: Any, name: str) -> tuple[Any, type, type]:
    kind = _MARKER_KINDS.get(name)
    if kind is not None:
        return kind
    number = core.QEvent.registerEventType()
    if number < 0:
        raise RuntimeError("Qt has no event type left")
    event_type = number if name == "PyQt5" else core.QEvent.Type(number)

    class HandOffMarker(core.QEvent):  # type: ignore[misc, name-defined]
        """Posted right before the app's queued call; carries that call's cell (set
        after construction: a Python ``__init__`` would cost ~1 µs more per post)."""

        __slots__ = ("cell",)

    class MarkerReceiver(core.QObject):  # type: ignore[misc, name-defined]
        """Lives on the GUI thread; its ``event`` runs as each marker is delivered."""

        def __init__(self) -> None:
            super().__init__()
            self.arrived: Callable[[list[Any]], None] | None = None

        def event(self, event: Any) -> bool:
            cell = getattr(event, "cell", None)
            if cell is None:
                return bool(super().event(event))
            arrived = self.arrived
            if arrived is not None:
                try:
                    arrived(cell)
                except Exception:
                    pass
            return True

    kind = _MARKER_KINDS[name] = (event_type, HandOffMarker, MarkerReceiver)
    return kind


class _InvokeMethod(_ClassPatch):
    """Queued ``QMetaObject.invokeMethod`` from another thread to a GUI-thread object:
    a marker event posted right before it (module docstring)."""

    name = "invokeMethod"

    def __init__(self, binding: Any, loop_thread: int, record: Record) -> None:
        super().__init__()
        self.binding = binding
        self.loop_thread = loop_thread
        self.record = record
        self.cls = binding.QtCore.QMetaObject
        self.held: deque[tuple[list[Any], float]] = deque()
        self.marker: Any = None

    def prepare(self) -> bool:
        found = self._original()
        if found is None or threading.get_ident() != self.loop_thread:
            return False  # (the marker's receiver must be made on the GUI thread)
        original, descriptor = found
        core = self.binding.QtCore
        kinds = getattr(core.Qt, "ConnectionType", core.Qt)
        connection_type = type(kinds.QueuedConnection)
        # AutoConnection from another thread to a GUI-thread object is queued.
        queued = (kinds.QueuedConnection, kinds.AutoConnection)
        returns = tuple(cls for cls in (getattr(core, "QGenericReturnArgument", None),
                                        getattr(core, "QGenericReturnArgumentHolder", None))
                        if isinstance(cls, type))
        qobject = core.QObject
        gui = core.QThread.currentThread()
        event_type, marker_event, marker_class = _marker_kind(core, self.binding.name)
        marker = self.marker = marker_class()
        _MARKERS.append(marker)
        marker.arrived = self._arrived
        post_event = core.QCoreApplication.postEvent
        lock = threading.RLock()  # re-entrant: an app's wrapper may call the class's
        loop_thread, get_ident, getframe = self.loop_thread, threading.get_ident, \
            sys._getframe
        clock = time.perf_counter
        handoffs = self

        def queued_to_gui(args: tuple[Any, ...], caller: Any) -> list[Any] | None:
            """The cell of a call to measure: queued to an object of the GUI thread,
            from the app's own code; else None."""
            if len(args) < 2:
                return None
            rest = args[2:]
            if rest and isinstance(rest[0], (connection_type, int)) \
                    and not isinstance(rest[0], bool):
                if rest[0] not in queued:
                    return None  # direct or blocking: left alone
                rest = rest[1:]
            if rest and isinstance(rest[0], returns):
                return None  # a return value in a queued call: Qt refuses, posts nothing
            receiver = args[0]
            if not isinstance(receiver, qobject) or receiver.thread() is not gui:
                return None
            site = _app_site(caller)
            if site is None:
                return None
            return [clock(), site, current_thread_name(), _CALLING]

        def invokeMethod(*args: Any, **kwargs: Any) -> Any:
            if kwargs or not handoffs.on or get_ident() == loop_thread:
                return original(*args, **kwargs)
            try:
                cell = queued_to_gui(args, getframe(1))
            except Exception:  # our failure never becomes the worker's
                cell = None
            if cell is None:
                return original(*args)
            with lock:  # nothing of ours between the marker and the app's event
                try:
                    event = marker_event(event_type)
                    event.cell = cell
                    post_event(marker, event)
                except Exception:
                    cell = None
                try:
                    result = original(*args)
                except BaseException:
                    if cell is not None:
                        cell[3] = _FAILED
                    raise
            if cell is not None:
                cell[3] = _FAILED if result is False else _POSTED
            return result

        wrapper = dress_as(invokeMethod, original)
        self.descriptor = descriptor
        self.replacement = _per_thread(descriptor, original, wrapper, loop_thread)
        self.on = True
        return True

    # -- on the GUI thread -------------------------------------------------------------
    def _arrived(self, cell: list[Any]) -> None:
        """A marker is delivered: the app's event comes next (module docstring)."""
        started = time.perf_counter()
        if not self.on:
            return
        if self.held:
            self.settle()
        state = cell[3]
        if state == _POSTED:
            self.record(INVOKE_VIA, cell[1], cell[2], cell[0], started)
        elif state == _CALLING and len(self.held) < MAX_HELD:
            # The GUI thread took the marker before the worker's call returned (the
            # worker lost the GIL between the posts): the start is kept until the
            # call's outcome is known.
            self.held.append((cell, started))

    def settle(self) -> None:
        """Record the held starts whose call has since posted its event."""
        held = self.held
        for _ in range(len(held)):
            cell, started = held.popleft()
            state = cell[3]
            if state == _POSTED and self.on:
                self.record(INVOKE_VIA, cell[1], cell[2], cell[0], started)
            elif state == _CALLING:
                held.append((cell, started))

    def take_back(self) -> None:
        self.settle()
        super().take_back()
        if self.marker is not None:
            self.marker.arrived = None  # it stays (_MARKERS); this detector need not


class _Passed(Exception):
    """The original was called as it was: its result or its exception."""

    def __init__(self, result: Any, error: BaseException | None) -> None:
        super().__init__()
        self.result = result
        self.error = error


def _plain_callable(functor: Any) -> bool:
    if not callable(functor) or isinstance(functor, (str, bytes, bytearray, memoryview)):
        return False
    # A signal is not called, it is emitted: leave it to the binding.
    return type(functor).__name__ not in ("SignalInstance", "pyqtBoundSignal")
