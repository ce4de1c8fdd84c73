"""Qt's ways of handing work to the GUI thread: the ones whose wait can be measured exactly.

A hand-off is measured only where looptools runs the work itself: the posting
call is given a wrapper of the app's callable, which notes the time and site of
the post on the worker and, when Qt starts it, the wait on the GUI thread.  That
is possible for ``QTimer.singleShot`` with a Python callable, in the forms where
passing another callable leaves Qt's routing exactly as it was (checked per
binding, tests/test_handoffs.py):

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

What is not measured, and why (``docs/threads.md``):

* queued ``QMetaObject.invokeMethod(obj, "slot", ...)``: the binding calls the
  slot from C++ when the event is delivered.  PyQt calls the function it
  stored and no Python runs before it; PySide looks the method up by name on
  the receiver, so a wrapper could be put there, but a direct call of the same
  method on the GUI thread looks exactly the same from inside it (no sender,
  no signal index), and pairing posts with calls would then be a guess.  No
  installed binding accepts a callable instead of the name.
* queued signals: on top of that, the receivers of a signal are not knowable
  when it is emitted (Qt keeps connections in C++ and does not list them), and
  a probe posted next to the emission waits for whatever else was posted
  between, so it would bound the wait, not measure it.

The posting thread pays.  Until the app runs a thread of its own nothing is
wrapped (a Qt app without threads cannot hand off): the thread starts the GUI
thread makes are watched, and the heartbeat looks every ``POLL_S``.  Then the
class attribute becomes a descriptor that gives the GUI thread the binding's
own ``singleShot`` (one Python-level lookup per call there) and other threads
the wrapper; QtAsyncio, which makes a ``singleShot`` on the GUI thread per
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

VIA = "QTimer.singleShot"
#: PyQt wrappers kept alive until they run (PyQt5 does not hold them itself).
MAX_PENDING = 4096
#: Decorated PyQt slots whose first post told whether PyQt accepts them.
MAX_DECORATED = 256

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
    """The posting line, if the app's own code called ``singleShot``."""
    if caller is None or not is_app_file(caller.f_code.co_filename):
        return None
    return frame_tuple(caller)


class SingleShotHandOffs:
    """``QTimer.singleShot`` wrapped at class level for one binding; :meth:`undo` puts
    the class attribute back exactly as it was (unless the app replaced it since)."""

    def __init__(self, binding: Any, loop_thread: int, record: Record) -> None:
        self.binding = binding
        self.loop_thread = loop_thread
        self.record = record
        self.timer_class: Any = binding.QtCore.QTimer
        self.qobject_class: Any = binding.QtCore.QObject
        self.descriptor: Any = None
        self.replacement: Any = None
        self.on = False
        self.pending: dict[int, Callable[..., Any]] = {}
        self.ran: deque[Callable[..., Any]] = deque(maxlen=64)
        self.decorated: dict[Any, bool] = {}
        self._armed = False
        self._next_poll = 0.0
        self._watches: list[tuple[Any, str, Any, Any]] = []
        self._qtasyncio: tuple[Any, Any] | None = None

    @staticmethod
    def supports(binding: Any) -> bool:
        return getattr(binding, "name", None) in ("PySide6", "PyQt6", "PyQt5")

    def install(self) -> bool:
        """Get ready, and arm at once if the app already runs a thread of its own;
        else arm when it starts one.  Main thread only (Qt classes are touched)."""
        cls = self.timer_class
        original = getattr(cls, "singleShot", None)  # first: PyQt fills its dicts lazily
        descriptor = vars(cls).get("singleShot")
        if original is None or descriptor is None or not hasattr(descriptor, "__get__"):
            return False
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

        class SingleShot:
            """What ``QTimer.singleShot`` is while armed: on the GUI thread the
            binding's own, on any other thread the wrapper."""

            __slots__ = ()
            __wrapped__ = descriptor

            def __get__(self, obj: Any, owner: Any = None) -> Any:
                if get_ident() != loop_thread:
                    return wrapper  # a static method: the same however looked up
                return original if obj is None else descriptor.__get__(obj, owner)

        self.descriptor = descriptor
        self.replacement = SingleShot()
        self.on = True
        if app_threads(loop_thread):
            self.arm()
        else:
            self._watch_thread_starts()
        return True

    @property
    def armed(self) -> bool:
        return self._armed

    def arm(self) -> None:
        """Put the descriptor on the class (GUI thread only)."""
        if self._armed or not self.on or threading.get_ident() != self.loop_thread:
            return
        self._unwatch()
        cls = self.timer_class
        try:
            cls.singleShot = self.replacement
        except (AttributeError, TypeError):
            self.on = False
            return
        self._armed = True
        self._exempt_qtasyncio()

    def poll(self, now: float) -> None:
        """From the loop thread's heartbeat: arm once the app runs a thread (one that
        started in a way the start hooks do not see: a C library's, a pool's)."""
        if self._armed or not self.on or now < self._next_poll:
            return
        self._next_poll = now + POLL_S
        if app_threads(self.loop_thread):
            self.arm()

    def undo(self) -> None:
        self.on = False
        self._unwatch()
        self._unexempt_qtasyncio()
        cls, replacement = self.timer_class, self.replacement
        self.replacement = None
        if self._armed and replacement is not None \
                and vars(cls).get("singleShot") is replacement:
            try:
                cls.singleShot = self.descriptor
            except (AttributeError, TypeError):
                pass
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

    # -- QtAsyncio ----------------------------------------------------------------------
    def _exempt_qtasyncio(self) -> None:
        """QtAsyncio makes a ``singleShot`` on the GUI thread for every callback (never a
        hand-off): its module is given a ``QTimer`` whose ``singleShot`` is the binding's
        own, so that its callbacks do not pay the descriptor's lookup."""
        events: Any = sys.modules.get("PySide6.QtAsyncio.events")
        if events is None or getattr(events, "QTimer", None) is not self.timer_class:
            return
        cls: Any = self.timer_class
        stand_in = type(cls.__name__, (cls,), {"singleShot": self.descriptor,
                                              "__module__": cls.__module__,
                                              "__qualname__": cls.__qualname__})
        events.QTimer = stand_in
        self._qtasyncio = (events, stand_in)

    def _unexempt_qtasyncio(self) -> None:
        exempt, self._qtasyncio = self._qtasyncio, None
        if exempt is not None and getattr(exempt[0], "QTimer", None) is exempt[1]:
            exempt[0].QTimer = self.timer_class

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
        thread = threading.current_thread().name
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
