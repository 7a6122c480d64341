"""Running VeRL's processes (the trainer, the model merger) from the engine, stoppably.

:func:`run_command` waits on the process and stops it when the run's
:class:`~continuous_learning_trainer.stopping.StopRequest` says so: at once on a signal, and
``HARD_STOP_AFTER_S`` past the time limit (the wall-clock trainer stops itself before the deadline, with
a checkpoint; this is the backstop for trainers that cannot, such as VeRL's SFT trainer). The process gets
SIGTERM, then SIGKILL after ``STOP_GRACE_S``; :class:`TrainingStopped` tells the run to merge what was
checkpointed.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence

from continuous_learning_trainer.stopping import StopRequest

log = logging.getLogger(__name__)

#: ``runner(command, env, stop)``: a stop request for the trainer, None for the merger (it must finish).
CommandRunner = Callable[[Sequence[str], Mapping[str, str], StopRequest | None], None]
#: How often the stop request is read while the process runs (a signal is acted on within this).
POLL_S = 1.0
STOP_GRACE_S = 30.0
HARD_STOP_AFTER_S = 120.0


class TrainingStopped(Exception):
    """The trainer process was stopped on request; ``reason`` says why (a signal, the time limit)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def terminate(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM, then SIGKILL if it has not ended within ``grace_s``; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop within %.0f s of SIGTERM: SIGKILL", process.pid, grace_s)
            process.kill()
    return process.wait()


def run_command(command: Sequence[str], env: Mapping[str, str], stop: StopRequest | None = None) -> None:
    """Run ``command``; raise CalledProcessError when it fails, TrainingStopped when ``stop`` ended it."""
    log.info("running: %s", " ".join(command))
    process = subprocess.Popen(list(command), env=dict(env))
    stopped = False
    try:
        while process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=POLL_S)
            if stop is not None and process.poll() is None and stop.should_stop(-HARD_STOP_AFTER_S):
                log.warning("stopping pid %d: %s", process.pid, stop.reason)
                terminate(process)
                stopped = True
    finally:
        if process.poll() is None:  # an exception here (KeyboardInterrupt): never leave VeRL running
            terminate(process)
    # a signal to the whole process group ends VeRL too, maybe before this loop sees it
    if stop is not None and (stopped or (process.returncode != 0 and stop.reason)):
        raise TrainingStopped(stop.reason or "stopped")
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, list(command))
