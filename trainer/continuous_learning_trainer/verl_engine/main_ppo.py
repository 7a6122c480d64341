"""``python -m continuous_learning_trainer.verl_engine.main_ppo``: VeRL's ``verl.trainer.main_ppo`` (the same
Hydra config and overrides) whose task runner registers the project's V1 trainer first
(:func:`~continuous_learning_trainer.verl_engine.wall_clock.register`), so ``trainer.v1.trainer_mode=cl_sync``
resolves in the Ray actor that runs the training loop. The engine runs this entry point only when the spec
asks for wall-clock checkpoints or a time limit; otherwise VeRL's own.
"""

from __future__ import annotations

from typing import Any

import ray
from verl.trainer import main_ppo as verl_main_ppo

from continuous_learning_trainer.verl_engine.wall_clock import register


class WallClockTaskRunner(verl_main_ppo.TaskRunnerV1.__ray_actor_class__):  # type: ignore[misc,name-defined]
    """VeRL's V1 task runner, with ``cl_sync`` registered in its process before the trainer is looked up."""

    def run(self, config: Any) -> Any:
        register()
        return super().run(config)


def main() -> None:
    register()
    # VeRL's main() starts the task runner named by this module global of verl.trainer.main_ppo
    verl_main_ppo.TaskRunnerV1 = ray.remote(WallClockTaskRunner)
    verl_main_ppo.main()


if __name__ == "__main__":
    # run from the module under its own name, not __main__: Ray ships the task runner class by reference,
    # so the actor process imports this module (and registers cl_sync) when it loads the class
    from continuous_learning_trainer.verl_engine import main_ppo

    main_ppo.main()
