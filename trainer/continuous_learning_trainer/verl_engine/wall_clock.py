"""Checkpoints by wall time, and a clean stop before the time limit, inside VeRL 0.9.1's V1 PPO trainer.

VeRL saves by step only (``trainer.save_freq``; its ESI deadline check is in the legacy trainer, not in
V1). :class:`WallClockSteps` adds, after each step of the sync V1 trainer (``PPOTrainerSync``): a
checkpoint once ``checkpoint_every_seconds`` have passed since the last one, and, when one more step
would end past the deadline (``stop_at``, wall-clock seconds), a checkpoint and the end of training, with
``_cl_stopped.json`` beside the checkpoints saying why (the engine reports the run as ``stopped``).

The settings are the run's Hydra items ``+continuous_learning.checkpoint_every_seconds`` and
``+continuous_learning.stop_at``; the trainer is registered as ``trainer.v1.trainer_mode=cl_sync`` in
VeRL's trainer registry by :func:`register`, which the project's PPO entry point
(:mod:`continuous_learning_trainer.verl_engine.main_ppo`) calls in VeRL's task runner. The decisions are
the pure :func:`after_step`, tested on CPU.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRAINER_MODE = "cl_sync"
CONFIG_KEY = "continuous_learning"
STOPPED_FILE = "_cl_stopped.json"


@dataclass(frozen=True)
class StepDecision:
    """``save``: save a checkpoint now (VeRL does not at this step); ``checkpointed``: the step has one
    (VeRL's or this one); ``stop``: why training ends after this step."""

    save: bool
    checkpointed: bool
    stop: str | None = None


def after_step(
    *,
    global_step: int,
    total_steps: int,
    save_freq: int,
    now: float,
    last_save: float,
    longest_step: float,
    every_seconds: float | None,
    stop_at: float | None,
) -> StepDecision:
    """After step ``global_step``: save a checkpoint VeRL would not save (it saves at every ``save_freq``-th
    step and the last), and stop once another step of ``longest_step`` seconds would end past ``stop_at``."""
    verl_saves = save_freq > 0 and (global_step >= total_steps or global_step % save_freq == 0)
    if global_step >= total_steps:
        return StepDecision(save=False, checkpointed=verl_saves)
    stop = None
    if stop_at is not None and now + longest_step >= stop_at:
        stop = f"time limit: step {global_step} ended {stop_at - now:.0f} s before the deadline"
    due = bool(every_seconds) and now - last_save >= (every_seconds or 0.0)
    save = (due or stop is not None) and not verl_saves
    return StepDecision(save=save, checkpointed=save or verl_saves, stop=stop)


class WallClockSteps:
    """Mixin for a V1 ``PPOTrainer``: wall-time checkpoints and the stop before the deadline."""

    config: Any
    global_steps: int
    total_training_steps: int

    def step(self, metrics: dict[str, Any], timing_raw: dict[str, Any]) -> Any:
        started = time.time()
        batch = super().step(metrics, timing_raw)  # type: ignore[misc]
        settings = self.config.get(CONFIG_KEY) or {}
        state = self.__dict__.setdefault("_cl_clock", {"last_save": started, "longest": 0.0})
        state["longest"] = max(state["longest"], time.time() - started)
        decision = after_step(
            global_step=self.global_steps,
            total_steps=self.total_training_steps,
            save_freq=int(self.config.trainer.save_freq),
            now=time.time(),
            last_save=state["last_save"],
            longest_step=state["longest"],
            every_seconds=settings.get("checkpoint_every_seconds"),
            stop_at=settings.get("stop_at"),
        )
        if decision.save:
            log.info("wall-clock checkpoint at step %d", self.global_steps)
            self._save_checkpoint()  # type: ignore[attr-defined]
        if decision.checkpointed:
            state["last_save"] = time.time()
        if decision.stop:
            write_stopped(Path(self.config.trainer.default_local_dir), decision.stop, self.global_steps)
            self.total_training_steps = self.global_steps  # the loop ends after this step
        return batch


def write_stopped(checkpoint_dir: Path, reason: str, step: int) -> None:
    """Say beside the checkpoints that VeRL ended training early, and why."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (checkpoint_dir / STOPPED_FILE).write_text(json.dumps({"reason": reason, "step": step}))
    log.warning("stopping VeRL training at step %d: %s", step, reason)


def read_stopped(checkpoint_dir: Path) -> dict[str, Any] | None:
    """What :func:`write_stopped` wrote, if anything (removed when read: one note per attempt)."""
    path = checkpoint_dir / STOPPED_FILE
    if not path.is_file():
        return None
    note: dict[str, Any] = json.loads(path.read_text())
    os.unlink(path)
    return note


def register() -> type:
    """Register ``cl_sync`` (the sync V1 trainer with :class:`WallClockSteps`) in VeRL's trainer registry;
    needs VeRL (the image), idempotent."""
    from verl.trainer.ppo.v1 import PPOTrainerSync, register_trainer
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY

    if TRAINER_MODE in TRAINER_REGISTRY:
        return TRAINER_REGISTRY[TRAINER_MODE]

    class WallClockTrainer(WallClockSteps, PPOTrainerSync):  # type: ignore[misc,valid-type]
        """VeRL's sync V1 trainer with wall-clock checkpoints and a stop before the deadline."""

    return register_trainer(TRAINER_MODE)(WallClockTrainer)  # type: ignore[no-any-return]
