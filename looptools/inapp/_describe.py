"""Readable identities for asyncio handles and tasks, computed off the hot path.

Works for asyncio's handles and for QtAsyncio's ``QAsyncioHandle`` (whose repr
raises), so nothing here ever calls ``repr()`` on a handle.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from looptools._frames import Frame, is_app_file


def _code_of(func: Any) -> types.CodeType | None:
    for _ in range(5):
        if isinstance(func, functools.partial):
            func = func.func
            continue
        code = getattr(func, "__code__", None)
        if isinstance(code, types.CodeType):
            return code
        inner = getattr(func, "__func__", None) or getattr(func, "__wrapped__", None)
        if inner is None:
            return None
        func = inner
    return None


def _task_methods(obj: Any) -> bool:
    return hasattr(obj, "get_coro") and hasattr(obj, "get_name")


def task_of_callback(callback: Any) -> Any:
    """The task whose step/wakeup ``callback`` is, or None."""
    owner = getattr(callback, "__self__", None)
    if owner is not None and _task_methods(owner):
        return owner
    return None


def coro_of(task: Any) -> Any:
    try:
        return task.get_coro()
    except Exception:
        return getattr(task, "_coro", None)


def coro_name(coro: Any) -> str:
    if coro is None:
        return "<unknown>"
    return str(getattr(coro, "__qualname__", None) or type(coro).__qualname__)


def coro_location(coro: Any) -> str | None:
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is None:
        return None
    return f"{code.co_filename}:{code.co_firstlineno}"


def task_name(task: Any) -> str:
    try:
        return str(task.get_name())
    except Exception:
        return "<task>"


def describe_task(task: Any) -> str:
    return f"{task_name(task)} ({coro_name(coro_of(task))})"


def describe_handle(handle: Any) -> tuple[str, str, str | None, Any]:
    """``(kind, name, location, task)`` of a handle: kind is 'task' or 'callback'."""
    callback = getattr(handle, "_callback", None)
    task = task_of_callback(callback)
    if task is not None:
        coro = coro_of(task)
        return "task", coro_name(coro), coro_location(coro), task
    code = _code_of(callback)
    name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
    if name is None:
        target = callback.func if isinstance(callback, functools.partial) else callback
        name = getattr(target, "__qualname__", None) or type(target).__qualname__
    location = f"{code.co_filename}:{code.co_firstlineno}" if code is not None else None
    return "callback", str(name), location, None


def stall_names(handle: Any) -> tuple[str, str, str | None]:
    """``(source, callback, task)`` as a stall names the handle it is in: a task step is
    ``coro step`` with its task ``name (coro)``, a callback ``name (file:line)``."""
    try:
        kind, name, location, task = describe_handle(handle)
        if task is not None:
            return kind, f"{name} step", describe_task(task)
        return kind, f"{name} ({location})" if location else name, None
    except Exception:
        return "callback", "<unknown>", None


def awaiting_frame(coro: Any, depth: int = 32) -> Frame | None:
    """``(function, file, line)`` where a suspended coroutine chain is waiting.

    Follows ``cr_await``/``gi_yieldfrom``/``ag_await`` to the innermost frame and
    returns the innermost *application* frame of the chain (else the innermost).
    Needs no ``Task.get_stack()`` (which QtAsyncio does not implement).
    """
    innermost_app: Frame | None = None
    innermost: Frame | None = None
    while coro is not None and depth > 0:
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is not None:
            code = frame.f_code
            entry = (getattr(code, "co_qualname", code.co_name), code.co_filename, frame.f_lineno)
            innermost = entry
            if is_app_file(code.co_filename):
                innermost_app = entry
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
        depth -= 1
    return innermost_app or innermost
