"""Detectors: each one switchable, each meeting the loop through :mod:`looptools._hub`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from looptools._hub import Detector
    from looptools.settings import Settings


def build(settings: Settings, names: tuple[str, ...]) -> list[Detector]:
    """Instantiate the detectors named in ``names`` (in a fixed order)."""
    from looptools.detectors.affinity import AffinityViolations
    from looptools.detectors.blocking import BlockingCalls
    from looptools.detectors.dispatcher import DispatcherBusy
    from looptools.detectors.handoffs import HandOffs
    from looptools.detectors.lag import LoopLag
    from looptools.detectors.slow_callbacks import SlowCallbacks
    from looptools.detectors.stalls import StallWatchdog
    from looptools.detectors.tasks import TaskAudit
    from looptools.detectors.worker_loops import WorkerLoops

    classes: dict[str, type[Detector]] = {
        "slow_callbacks": SlowCallbacks,
        "stalls": StallWatchdog,
        "dispatcher": DispatcherBusy,
        "lag": LoopLag,
        "tasks": TaskAudit,
        "blocking": BlockingCalls,
        "handoffs": HandOffs,
        "worker_loops": WorkerLoops,
        "affinity": AffinityViolations,
    }
    return [classes[name](settings) for name in classes if name in names]  # type: ignore[call-arg]
