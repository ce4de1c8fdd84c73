"""Detectors: each one switchable, each meeting the loop through :mod:`looptools.inapp.hub`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from looptools.inapp.hub import Detector
    from looptools.settings import Settings


def build(settings: Settings, names: tuple[str, ...]) -> list[Detector]:
    """Instantiate the detectors named in ``names`` (in a fixed order)."""
    from looptools.inapp.detectors.affinity import AffinityViolations
    from looptools.inapp.detectors.blocking import BlockingCalls
    from looptools.inapp.detectors.dispatcher import DispatcherBusy
    from looptools.inapp.detectors.handoffs import HandOffs
    from looptools.inapp.detectors.lag import LoopLag
    from looptools.inapp.detectors.slow_callbacks import SlowCallbacks
    from looptools.inapp.detectors.stalls import StallWatchdog
    from looptools.inapp.detectors.tasks import TaskAudit
    from looptools.inapp.detectors.worker_loops import WorkerLoops

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
