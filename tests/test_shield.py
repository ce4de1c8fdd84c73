"""The slots looptools gives Qt (``looptools.inapp._shield``): what they do with a
Ctrl-C and with any other exception raised as they are entered or while they run.

Called here from Python, as a binding calls them from C.  End to end (an idle app on
every binding, SIGINT from outside) in ``test_exit_matrix.py``.
"""

from __future__ import annotations

import _thread
import collections
import operator
import signal
import sys
import traceback
from collections.abc import Iterator
from types import FrameType

import pytest

from looptools.inapp._shield import guarded_slot


@pytest.fixture
def sigint_seen() -> Iterator[list[str]]:
    """SIGINT's handler for the test: records where Python ran it."""
    seen: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.append(frame.f_code.co_name if frame is not None else "?")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_in_our_slot_is_pending_again_for_the_next_python(
        sigint_seen: list[str]) -> None:
    runs: list[int] = []

    def body() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise KeyboardInterrupt  # as if the handler ran (and raised) in our code

    slot = guarded_slot(body)
    try:
        slot.slot()  # caught: nothing reaches the binding
        # Pending again once the slot returned, so handled by the next Python to run:
        # here the caller's frame (from a binding, the app's next slot), not ours.
        this = sys._getframe().f_code.co_name
        assert sigint_seen == [this]
        slot.slot()  # and the slot goes on working, with nothing more to pass on
        assert len(runs) == 2 and sigint_seen == [this]
    finally:
        slot.close()


def test_a_sigint_pending_as_the_slot_is_called_is_handled_by_the_callers_next_python(
        sigint_seen: list[str]) -> None:
    """A SIGINT handler that is a Python function is run, not raised, at the first
    bytecode that checks: the slot takes the pending SIGINT from C before any of its
    own and passes it on, so the handler runs in the caller's frame (from a binding:
    the app's next Python), never in ours."""
    seen_in_body: list[int] = []
    slot = guarded_slot(lambda: seen_in_body.append(len(sigint_seen)))
    try:
        # SIGINT made pending, then the slot called, both from C with no bytecode in
        # between: as Qt calls a slot of ours in an idle app after a Ctrl-C.
        collections.deque(map(operator.methodcaller("__call__"),
                              (_thread.interrupt_main, slot.slot)), 0)
        this = sys._getframe().f_code.co_name
        assert seen_in_body == [0]  # not handled before or in the slot's body
        assert sigint_seen == [this]  # but right after it, by the caller's Python
        slot.slot()
        assert seen_in_body == [0, 1] and sigint_seen == [this]  # passed on once
    finally:
        slot.close()


def test_another_exception_reaches_the_binding_and_the_slot_lives_on() -> None:
    runs: list[int] = []

    def body() -> None:
        runs.append(1)
        if len(runs) == 2:
            raise RuntimeError("our own failure")

    slot = guarded_slot(body)
    try:
        slot.slot()
        with pytest.raises(RuntimeError, match="our own failure") as info:
            slot.slot()
        # raised as from any slot, with where it came from
        assert any(frame.name == "body" for frame in
                   traceback.extract_tb(info.value.__traceback__))
        for _ in range(3):  # a finished generator would raise StopIteration from now on
            slot.slot()
        assert len(runs) == 5
    finally:
        slot.close()


def test_an_exception_raised_on_entry_skips_the_body_and_is_not_swallowed() -> None:
    """Another signal's handler raising (``sys.exit`` in a SIGTERM handler, say) as the
    slot is entered: the binding gets it for this call, as it would from any slot."""
    runs: list[int] = []
    slot = guarded_slot(lambda: runs.append(1))
    generator = slot._first
    try:
        # What a handler's exception at the ``yield`` looks like to the generator.
        after = generator.throw(SystemExit(4))
        with pytest.raises(SystemExit) as info:
            after()
        assert info.value.code == 4 and runs == []
        slot.slot()
        assert runs == [1]
    finally:
        slot.close()


def test_called_again_from_inside_itself_it_runs_again() -> None:
    """A signal's handler run at our slot's entry may spin a nested event loop (a
    "really quit?" dialog) that emits the same signal: the slot is called while it
    runs.  Resuming the running generator raised ValueError into Qt, and PyQt aborted
    (a fresh-eyes review's reproduction, PyQt5 and PyQt6: status 134)."""
    depth: list[int] = []

    def body() -> None:
        depth.append(len(depth))
        if len(depth) == 1:
            slot.slot()  # as the nested loop's aboutToBlock would

    slot = guarded_slot(body)
    slot.slot()
    assert depth == [0, 1]
    slot.slot()
    assert depth == [0, 1, 2]  # and on as before


def test_closed_it_does_nothing_and_raises_nothing() -> None:
    runs: list[int] = []
    slot = guarded_slot(lambda: runs.append(1))
    slot.slot()
    slot.close()
    slot.close()
    slot.slot()  # still connected somewhere (a failed disconnect): no StopIteration
    assert runs == [1]
