"""VeRL engine: a RunSpec becomes one VeRL run: ``verl.trainer.main_ppo`` with SGLang rollouts (GRPO,
PPO), or ``verl.trainer.sft_trainer_ray`` (``algorithm: sft``).

The run, on the Ray cluster this process is started in (``RAY_ADDRESS``, or the local head):

1. download the base model and the train/validation parquet files into a work folder (shared, e.g.
   FSx, when the job spans nodes: VeRL's workers write checkpoint shards there);
2. RL: prepare the rows for the project's agent loops (:mod:`continuous_learning_trainer.verl_plugins`:
   ``agent_name``, ``extra_info.tool_selection``), write VeRL's tool config with the tools' schemas in
   the form VeRL hands the chat template, and the agent-loop config that loads the plugins into VeRL's
   rollout workers; rows whose prompt would not fit are left out here, with the same rendering.
   SFT: write the references (corrections, positively rated answers) as conversations;
3. restore the last committed checkpoint from storage (``resume_mode=auto`` then continues from it);
4. run VeRL with Hydra overrides built by :func:`~.overrides.build_overrides`, a pure function of the spec (tested
   on CPU against VeRL's own configs); :class:`UploadCheckpointCallback` uploads every checkpoint
   ``main_ppo`` saves (the SFT trainer has no callback: its last checkpoint is uploaded when it stops);
5. merge the last checkpoint to Hugging Face format (``python -m verl.model_merger merge``; with LoRA,
   VeRL's merger writes the base weights and ``lora_adapter/``, merged here with peft), validate it,
   upload it to ``<output_uri>/model`` (and the adapter to ``<output_uri>/adapter``) and write
   ``<output_uri>/result.json`` (a TrainResult).

Storage layout under ``output_uri`` (the same as the CPU engine's): ``model/``, ``adapter/`` (LoRA),
``checkpoints/`` (``global_step_N/`` and ``latest_checkpointed_iteration.txt``, written last: the commit
marker), ``result.json``.

Modules, by concern: :mod:`~.overrides` (the Hydra overrides and spec checks), :mod:`~.profiles`
(performance profiles by GPU class), :mod:`~.data` (splits, tool and agent-loop configs, SFT data),
:mod:`~.checkpoints` (upload, commit, restore), :mod:`~.artifacts` (merge and validation), :mod:`~.layout`
(the work folder) and :mod:`~.run` (the run itself).
"""

from continuous_learning_trainer.verl_engine.checkpoints import UploadCheckpointCallback
from continuous_learning_trainer.verl_engine.run import train

__all__ = ["UploadCheckpointCallback", "train"]
