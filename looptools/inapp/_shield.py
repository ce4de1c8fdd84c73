"""Our Qt slots, and a Ctrl-C that arrives as one of them starts.

Python runs a signal's handler on the main thread at the next bytecode that
checks for it, and a function checks on entry, before its first line.  In an app
whose main thread idles in Qt's C++ (a Qt-only app, qasync or QtAsyncio waiting
for events), no Python runs until a timer or a slot does: without looptools the
``KeyboardInterrupt`` of a Ctrl-C waits for the app's own next Python and is
raised there.  With looptools the next Python is often ours (the heartbeat
timer, the dispatcher's ``aboutToBlock``), and a function cannot catch what is
raised on its own entry: PySide printed the traceback and ran on, PyQt could
abort.

So a slot of ours is not a Python function.  :func:`guarded_slot` gives Qt a C
callable (``functools.partial(next, map(call, generator))``) that resumes a
generator; a generator resumed after a ``yield`` checks for signals *inside* the
``try`` around that ``yield``, where the interrupt is caught.  The slot's body
still runs (the heartbeat keeps beating), and then the generator yields
:func:`_thread.interrupt_main` instead of a no-op, which ``map`` calls from C
after the generator has stopped: the signal is pending again, with no bytecode of
ours left to run, and the next Python on the main thread — the app's, or ours
again, which passes it on the same way — gets it, as it would have without us.
``interrupt_main`` calls the handler in force when it is handled, writes the
wakeup descriptor if the app set one (``signal.set_wakeup_fd``), and does
nothing if the app has set ``SIG_DFL`` or ``SIG_IGN`` meanwhile.

Any other exception (another signal's handler raised it as the slot was entered,
or our own code failed) reaches the binding as from any slot — raised from C after
the generator yielded — and the generator lives on: a finished one would raise
``StopIteration`` into Qt at every later call.

A handler that is a Python function (asyncio's runner's, which cancels the main
task; the app's own) is not raised but *run* at the first Python on the main
thread, and a generator cannot keep it from running.  So before the generator is
resumed the slot takes a pending SIGINT, from C: ``PyOS_InterruptOccurred`` (called
through ``ctypes.pythonapi``, no bytecode) tells whether SIGINT is pending and clears
it; the generator then runs no handler, and it yields ``interrupt_main`` after its
body as above.  The handler runs at the app's next Python, as without us.  Left as
it was: another signal's Python handler (SIGTERM's, SIGUSR1's) still runs at our
slot's entry, and a SIGINT that arrives while Python of ours runs on the main thread
(a slot's body, or a tick's handler run as the slot is entered) is handled there —
in a fresh-eyes trial, 2 of 37 Ctrl-Cs sent to an idle PySide6 app
with a handler of its own.  Where ``ctypes`` cannot reach the C API (not CPython), only the
``KeyboardInterrupt`` of the default handler is passed on.
"""

from __future__ import annotations

import _thread
import collections
import functools
import itertools
import operator
import types
from collections.abc import Callable, Generator, Iterator
from typing import Any

#: Calls its argument with no arguments, in C (``operator.call`` is 3.11+).
_CALL = operator.methodcaller("__call__")
#: What the generator yields when there is nothing to pass on: a C no-op.
_NOTHING: Callable[[], object] = tuple
_PASS_ON: Callable[[], object] = _thread.interrupt_main
#: Resumes a generator: ``send(generator, None)``, in C.
_RESUME: Callable[[Any, None], Callable[[], object]] = types.GeneratorType.send


def _interrupt_taker() -> Callable[[], object] | None:
    """``PyOS_InterruptOccurred`` as a C callable that holds the GIL: 1 (and SIGINT no
    longer pending) if a SIGINT was pending for Python's handler, else 0; None where
    the C API is out of reach."""
    try:
        import ctypes

        take: Callable[[], object] = ctypes.PYFUNCTYPE(ctypes.c_int)(
            ("PyOS_InterruptOccurred", ctypes.pythonapi))
    except (ImportError, AttributeError, OSError, TypeError):
        return None
    return take


_TAKE = _interrupt_taker()


def _finished() -> Generator[None, None, None]:
    yield  # never runs


#: Thrown into, a finished generator raises what it is given as it is: no bytecode
#: runs (so no signal is checked for) and no frame is added to the traceback.
_THROWER = _finished()
_THROWER.close()


def _raising(exc: BaseException, pass_on: bool = False) -> Callable[[], object]:
    """A C callable that raises ``exc`` (after passing a Ctrl-C on, if ``pass_on``)."""
    throw = functools.partial(_THROWER.throw, exc)
    if not pass_on:
        return throw
    return functools.partial(collections.deque, map(_CALL, (_PASS_ON, throw)), 0)


def _body(box: list[Callable[[], object]], taken: list[object],
          after: Callable[[], object]) -> Generator[Callable[[], object], None, None]:
    # The generator must never end: Qt would call a finished one on every tick and
    # print StopIteration each time.  An exception that is not a Ctrl-C (another
    # signal's handler raised it as the slot was entered, or our own code failed)
    # still reaches the binding as from any slot: raised from C after the yield.
    # ``box[0]`` is the body, a no-op once the slot is closed; ``taken`` gets what
    # ``_TAKE`` said before this call resumed us (1: a SIGINT we must pass on).
    try:
        while True:
            try:
                yield after  # a Ctrl-C pending as Qt calls the slot is raised here
                after = _PASS_ON if any(taken) else _NOTHING
                taken.clear()
            except KeyboardInterrupt:
                taken.clear()
                after = _PASS_ON
            except GeneratorExit:
                raise
            except BaseException as exc:  # handed on, not swallowed
                after = _raising(exc, any(taken))
                taken.clear()
                continue  # not the body: the binding reports this call as failed
            try:
                box[0]()
            except KeyboardInterrupt:  # raised in our own code (it calls none of the app's)
                after = _PASS_ON
            except BaseException as exc:  # handed on, not swallowed
                after = _raising(exc, after is _PASS_ON)
    except KeyboardInterrupt:
        # A second Ctrl-C checked for at the loop's jump back, outside every
        # ``try``: start over, passing it on.
        taken.clear()
        yield from _body(box, taken, _PASS_ON)


#: The code Qt runs for every slot of ours (the heartbeat, the dispatcher's, the
#: quit watch): Python found running in it is ours, not an app's slot.
SLOT_CODE = _body.__code__


def _primed(box: list[Callable[[], object]],
            taken: list[object]) -> Generator[Callable[[], object], None, None]:
    generator = _body(box, taken, _NOTHING)
    next(generator)  # to the first ``yield``: entering a generator checks too
    return generator


class GuardedSlot:
    """``slot`` is what to connect; :meth:`close` once disconnected.

    Two generators: the slot resumes the first unless it is running — the slot
    called again from inside itself, when Python code run there (a signal's
    handler) spun a nested event loop that emitted the signal again — and then
    the second.  Resuming a running generator raises ``ValueError`` into Qt (PyQt
    aborts on it).  The choice is made in C too: ``(first, second)[first.gi_running]``
    by ``map`` over ``itertools.repeat``.  A third level of nesting is not served.
    Then, still in C, ``_TAKE`` takes a pending SIGINT into ``taken`` (``map``
    pulls its iterators in order, the generator chosen first), and the generator
    is resumed: a Python handler of SIGINT's does not run in it.
    """

    def __init__(self, fn: Callable[[], object]) -> None:
        self._box: list[Callable[[], object]] = [fn]
        taken: list[object] = []
        first, second = self._first, self._second = \
            _primed(self._box, taken), _primed(self._box, taken)
        running: Iterator[bool] = map(operator.attrgetter("gi_running"),
                                      itertools.repeat(first))
        chosen: Iterator[Generator[Callable[[], object], None, None]] = map(
            (first, second).__getitem__, running)
        takes: Iterator[None] = map(taken.append, map(_CALL, itertools.repeat(_TAKE))) \
            if _TAKE is not None else itertools.repeat(None)
        calls: Iterator[object] = map(_CALL, map(_RESUME, chosen, takes))
        self.slot: Callable[[], Any] = functools.partial(next, calls)

    def close(self) -> None:
        """Make the slot a no-op.  The generators are left to end with the slot: one
        still connected (a disconnect that failed, an emission under way on the loop
        thread as another thread closes it) must not raise ``StopIteration``."""
        self._box[0] = _NOTHING


def guarded_slot(fn: Callable[[], object]) -> GuardedSlot:
    """A slot for Qt that runs ``fn`` and passes a Ctrl-C on to the app's next Python."""
    return GuardedSlot(fn)
