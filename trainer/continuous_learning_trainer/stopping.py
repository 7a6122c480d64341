"""A run that is stopped keeps what it learned: why a run should stop, and when to checkpoint by wall time.

The trainer's entry point makes one :class:`StopRequest` per ``train`` command: SIGTERM (what Ray's job
stop, Kubernetes and ``timeout`` send) and SIGINT mark it, and so does the spec's time limit
(``hyperparameters.max_seconds``). The engines poll it between steps (the CPU engine's TRL callback, the
VeRL trainer's step hook, the VeRL engine's wait on its subprocess), stop, merge the latest checkpoint
and write a ``stopped`` TrainResult that says why and at which step. A second SIGINT interrupts at once;
SIGKILL cannot be caught: what was uploaded by then stays resumable.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

TIME_LIMIT = "time limit"


class StopRequest:
    """Whether the run should stop now, and why: a signal received or the time limit reached.

    ``stop_at`` is a wall-clock deadline (``time.time()``), so that a VeRL trainer in another process
    can be given the same one. ``should_stop(step_seconds)`` is true once a step of that length would
    end past the deadline: stopping then, after a checkpoint, keeps the last step's work.
    """

    def __init__(self, max_seconds: float | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started = clock()
        self.stop_at = self.started + max_seconds if max_seconds else None
        self.max_seconds = max_seconds
        self._reason: str | None = None
        self._event = threading.Event()

    @classmethod
    def deadline(cls, stop_at: float | None, *, clock: Callable[[], float] = time.time) -> StopRequest:
        """A request whose time limit is the wall-clock ``stop_at`` (None: no limit)."""
        request = cls(clock=clock)
        request.stop_at = stop_at
        request.max_seconds = stop_at - request.started if stop_at else None
        return request

    def request(self, reason: str) -> None:
        """Ask the run to stop (the first reason is kept)."""
        if self._reason is None:
            self._reason = reason
            log.warning("stop requested: %s; the latest checkpoint will be merged", reason)
        self._event.set()

    def remaining(self) -> float | None:
        return None if self.stop_at is None else self.stop_at - self._clock()

    def should_stop(self, step_seconds: float = 0.0) -> str | None:
        """The reason to stop now, or None: a requested stop, or the time limit (reached, or one more step
        of ``step_seconds`` would pass it)."""
        if self._reason is None:
            remaining = self.remaining()
            if remaining is not None and remaining <= step_seconds:
                self.request(f"{TIME_LIMIT} of {self.max_seconds:g} s")
        return self._reason

    @property
    def reason(self) -> str | None:
        return self.should_stop()

    def wait(self, timeout: float, step_seconds: float = 0.0) -> str | None:
        """Sleep up to ``timeout`` seconds, waking early on a signal or when the time limit is reached
        (``step_seconds`` as in :meth:`should_stop`; negative: that long after the deadline)."""
        remaining = self.remaining()
        until = timeout if remaining is None else max(0.0, min(timeout, remaining - step_seconds))
        self._event.wait(until)
        return self.should_stop(step_seconds)

    def install(self) -> StopRequest:
        """Handle SIGTERM and SIGINT (main thread only): each marks the request; a second SIGINT raises
        KeyboardInterrupt, a second SIGTERM is logged (SIGKILL ends a run that must not wait)."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._reason is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            if self._reason is not None:
                log.warning("%s again: still stopping (%s)", name, self._reason)
                return
            self.request(name)

        self._previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def uninstall(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for signum, handler in getattr(self, "_previous", {}).items():
            signal.signal(signum, handler)
        self._previous = {}


class CheckpointClock:
    """When a checkpoint is due by wall time: ``every_seconds`` after the last one (or the start)."""

    def __init__(self, every_seconds: float | None, *, clock: Callable[[], float] = time.time) -> None:
        self.every_seconds = every_seconds
        self._clock = clock
        self.last = clock()

    def due(self) -> bool:
        return bool(self.every_seconds) and self._clock() - self.last >= (self.every_seconds or 0.0)

    def saved(self) -> None:
        self.last = self._clock()


def stop_reason(reason: str, step: int) -> str:
    """``stop_reason`` of a stopped run's TrainResult."""
    return f"{reason}: stopped at step {step}, the latest checkpoint merged"
