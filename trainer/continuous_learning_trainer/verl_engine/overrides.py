"""The Hydra overrides of a VeRL run, a pure function of the RunSpec (and the run's layout): the
command line of ``verl.trainer.main_ppo`` (GRPO, PPO) or ``verl.trainer.sft_trainer_ray`` (SFT), and the
checks that reject a spec VeRL would fail on minutes into a GPU run. Tested on CPU against VeRL 0.9.1's
own configs (tests/trainer/test_verl_overrides.py).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from continuous_learning.contracts import RunSpec

from continuous_learning_trainer.verl_engine.layout import Layout
from continuous_learning_trainer.verl_engine.profiles import profile_for, profile_overrides
from continuous_learning_trainer.verl_engine.wall_clock import CONFIG_KEY, TRAINER_MODE
from continuous_learning_trainer.verl_plugins import MODULE as PLUGINS_MODULE
from continuous_learning_trainer.verl_plugins import SFT_DATASET, TOOL_AGENT

#: VeRL's reward entry point (``compute_score(data_source, solution_str, ground_truth, extra_info, **kw)``).
REWARD_MODULE = "pkg://continuous_learning_trainer.reward_function"
REWARD_FUNCTION = "compute_score"
PPO_ENTRY = "verl.trainer.main_ppo"
#: main_ppo with the wall-clock trainer registered (:mod:`.main_ppo`): runs with wall-time checkpoints or a
#: time limit use it.
WALL_CLOCK_PPO_ENTRY = "continuous_learning_trainer.verl_engine.main_ppo"
SFT_ENTRY = "verl.trainer.sft_trainer_ray"

#: VeRL ``trainer.checkpoint_callback_class``: uploads every checkpoint main_ppo saves.
CALLBACK_CLASS = "continuous_learning_trainer.verl_engine.checkpoints.UploadCheckpointCallback"

PROJECT = "continuous-learning"

#: Environment every Ray worker of the run gets (also set in the image): NVLink SHARP multicast off,
#: which shared GPU hosts need (TOOLBOX: NCCL_NVLS_ENABLE=0).
WORKER_ENV = {"NCCL_NVLS_ENABLE": "0"}


_BARE = re.compile(r"^[A-Za-z0-9_./:+\-~@]+$")
_RESERVED = {"true", "false", "null", "nan", "inf", "-inf"}
#: Dict keys Hydra's grammar takes unquoted (it has no quoted keys).
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
#: In a quoted string Hydra unescapes backslashes only before a quote, before ``${`` and at the end.
_QUOTED_ESCAPES = re.compile(r"(\\*)('|\$\{|$)")


def loggers(spec: RunSpec) -> list[str]:
    """VeRL's ``trainer.logger``: the spec's, and ``mlflow`` when the run has an MLflow run (its
    ``Tracking`` attaches to ``MLFLOW_RUN_ID`` at ``MLFLOW_TRACKING_URI``: :func:`tracking_env`)."""
    names = list(spec.verl.loggers)
    if spec.tracking is not None and "mlflow" not in names:
        names.append("mlflow")
    return names


def tracking_env(spec: RunSpec) -> dict[str, str]:
    """The MLflow environment of the run's trainer process and Ray workers (empty: tracking off)."""
    return spec.tracking.environment() if spec.tracking is not None else {}


def hydra_value(value: Any) -> str:
    """Render a value in Hydra's override grammar: strings are quoted when they need it, with quotes,
    trailing backslashes and ``${`` escaped so that OmegaConf gives back the string (no interpolation)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str) or not _KEY.match(k)]
        if bad:
            raise ValueError(f"keys {bad} cannot be written as Hydra overrides (letters, digits, '_', '-')")
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _BARE.match(text) and text.lower() not in _RESERVED and not _looks_numeric(text):
        return text
    escaped = _QUOTED_ESCAPES.sub(lambda m: m.group(1) * 2 + ("\\" + m.group(2) if m.group(2) else ""), text)
    return "'" + escaped + "'"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def validate_for_verl(spec: RunSpec, train_rows: int | None = None) -> None:
    """Reject specs VeRL would fail on minutes into a GPU run; messages name the field to change."""
    if spec.engine != "verl":
        raise ValueError(f"engine is {spec.engine!r}, not 'verl'")
    res, hp, opts = spec.resources, spec.hyperparameters, spec.verl
    if res.n_gpus_per_node < 1:
        raise ValueError("engine 'verl' needs resources.n_gpus_per_node >= 1 (VeRL has no CPU path)")
    world = res.nnodes * res.n_gpus_per_node
    if spec.lora.enabled:
        # HFModelConfig.lora_alpha is an int (verl/workers/config/model.py): OmegaConf refuses 32.5
        if not float(spec.lora.alpha).is_integer():
            raise ValueError(
                f"lora.alpha={spec.lora.alpha} must be a whole number for VeRL (lora_alpha: int)"
            )
        # the FSDP engine builds peft's LoraConfig without lora_dropout (workers/engine/fsdp/transformer_impl.py)
        if spec.lora.dropout:
            raise ValueError(
                "lora.dropout must be 0 with engine 'verl': VeRL 0.9.1's FSDP LoRA has no dropout"
            )
    reward_kwargs(spec)  # user kwargs must be writable as Hydra overrides
    if spec.algorithm == "sft":
        if hp.prompts_per_step % world:
            raise ValueError(
                f"prompts_per_step={hp.prompts_per_step} must be a multiple of the GPU count {world} "
                "(VeRL's SFT trainer splits each batch evenly across data-parallel ranks)"
            )
        _check_sizes(spec, train_rows, "example", "references (corrections, positively rated answers)")
        return
    tp = opts.rollout_tensor_parallel_size
    if res.n_gpus_per_node % tp:
        raise ValueError(
            f"verl.rollout_tensor_parallel_size={tp} must divide resources.n_gpus_per_node={res.n_gpus_per_node}"
        )
    samples = hp.prompts_per_step * hp.samples_per_prompt
    if samples % world:
        raise ValueError(
            f"prompts_per_step x samples_per_prompt = {samples} must be a multiple of the GPU count {world} "
            "(VeRL splits each mini-batch evenly across data-parallel ranks)"
        )
    dynamic = profile_for(spec) != "verl-defaults"
    if not dynamic and (samples // world) % opts.micro_batch_size_per_gpu:
        raise ValueError(
            f"samples per GPU per step ({samples // world}) must be a multiple of "
            f"verl.micro_batch_size_per_gpu={opts.micro_batch_size_per_gpu}"
        )
    _check_sizes(spec, train_rows, "sequence" if dynamic else None, "rows")


def _check_sizes(spec: RunSpec, train_rows: int | None, example: str | None, rows: str) -> None:
    """The token budget holds one ``example`` (None: no budget applies), the split has a step's rows."""
    hp, opts = spec.hyperparameters, spec.verl
    longest = opts.max_prompt_length + hp.max_completion_tokens
    if example and opts.max_tokens_per_gpu is not None and opts.max_tokens_per_gpu < longest:
        raise ValueError(
            f"verl.max_tokens_per_gpu={opts.max_tokens_per_gpu} cannot hold one {example} of "
            f"verl.max_prompt_length + max_completion_tokens = {longest} tokens"
        )
    if train_rows is not None and train_rows < hp.prompts_per_step:
        raise ValueError(
            f"the train split has {train_rows} {rows}, fewer than prompts_per_step={hp.prompts_per_step}"
        )


def reward_kwargs(spec: RunSpec) -> dict[str, Any]:
    """``reward.custom_reward_function.reward_kwargs``: what ``reward_function.compute_score`` takes on
    top of VeRL's arguments (the weights, the tool-call format, the user's reward and its kwargs)."""
    kwargs = {
        **spec.reward_weights.model_dump(),
        "tool_call_format": spec.tool_call_format,
        "reward_function": spec.reward.function,
        "reward_function_kwargs": dict(spec.reward.kwargs),
    }
    try:
        hydra_value(kwargs)
    except ValueError as exc:
        raise ValueError(f"reward.kwargs: {exc}") from None
    return kwargs


def total_epochs(spec: RunSpec, train_rows: int | None) -> int:
    """Epochs enough for ``max_steps`` (VeRL stops at whichever of epochs and steps comes first)."""
    if not train_rows:
        return 1
    steps_per_epoch = max(train_rows // spec.hyperparameters.prompts_per_step, 1)
    return max(math.ceil(spec.hyperparameters.max_steps / steps_per_epoch), 1)


def trainer_steps(spec: RunSpec, train_rows: int | None) -> list[tuple[str, Any]]:
    """The ``trainer.*`` items both trainers share: resources, steps, checkpoints by step, no validation."""
    res, hp = spec.resources, spec.hyperparameters
    return [
        ("trainer.nnodes", res.nnodes),
        ("trainer.n_gpus_per_node", res.n_gpus_per_node),
        ("trainer.total_training_steps", hp.max_steps),
        ("trainer.total_epochs", total_epochs(spec, train_rows)),
        ("trainer.save_freq", hp.checkpoint_every),
        ("trainer.test_freq", -1),
    ]


def build_overrides(
    spec: RunSpec,
    layout: Layout,
    *,
    has_tools: bool = False,
    train_rows: int | None = None,
    model_config: Mapping[str, Any] | None = None,
    stop_at: float | None = None,
) -> list[str]:
    """The Hydra overrides of the spec's VeRL run, from the spec alone: ``verl.trainer.main_ppo`` (config
    ``ppo_trainer``) for GRPO/PPO, ``verl.trainer.sft_trainer_ray`` (``sft_trainer_engine``) for SFT
    (:func:`build_sft_overrides`; ``train_rows`` then counts the references). ``stop_at``: the run's
    wall-clock deadline (:func:`wall_clock_overrides`).

    A ``+`` prefix adds a key VeRL's config does not declare (Hydra refuses ``+`` on existing keys and
    plain overrides on missing ones); tests compose VeRL 0.9.1's configs with these to prove each exists.
    """
    if spec.algorithm == "sft":
        return build_sft_overrides(spec, layout, train_rows=train_rows)
    validate_for_verl(spec, train_rows)
    hp, res, opts = spec.hyperparameters, spec.resources, spec.verl
    ppo = spec.algorithm == "ppo"
    world = res.nnodes * res.n_gpus_per_node
    model = str(layout.base_model)
    items: list[tuple[str, Any]] = [
        # algorithm
        ("algorithm.adv_estimator", "gae" if ppo else "grpo"),
        ("algorithm.use_kl_in_reward", ppo and hp.kl_coef > 0),
        ("algorithm.kl_ctrl.kl_coef", hp.kl_coef),
        # data: VeRL parquet as the reward dataset writes it
        ("data.train_files", str(layout.train_file)),
        ("data.val_files", str(layout.val_file)),
        ("data.train_batch_size", hp.prompts_per_step),
        ("data.max_prompt_length", opts.max_prompt_length),
        ("data.max_response_length", hp.max_completion_tokens),
        # prepare_dataset leaves out prompts that do not fit, rendered as the rollout renders them;
        # VeRL's filter would render every row with every tool and the rows as stored (nulls included)
        ("data.filter_overlong_prompts", False),
        ("data.truncation", "left"),
        ("data.seed", hp.seed),
        ("data.return_raw_chat", True),
        # policy model and its optimisation
        ("actor_rollout_ref.model.path", model),
        ("+actor_rollout_ref.model.override_config.attn_implementation", opts.attn_implementation),
        ("actor_rollout_ref.actor.optim.lr", hp.learning_rate),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", hp.prompts_per_step),
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", opts.micro_batch_size_per_gpu),
        ("actor_rollout_ref.actor.use_kl_loss", not ppo and hp.kl_coef > 0),
        ("actor_rollout_ref.actor.kl_loss_coef", hp.kl_coef),
        ("actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", opts.micro_batch_size_per_gpu),
        # rollout: SGLang
        ("actor_rollout_ref.rollout.name", "sglang"),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", opts.rollout_tensor_parallel_size),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", opts.rollout_gpu_memory_utilization),
        ("actor_rollout_ref.rollout.n", hp.samples_per_prompt),
        ("actor_rollout_ref.rollout.temperature", hp.temperature),
        ("actor_rollout_ref.rollout.seed", hp.seed),
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", opts.micro_batch_size_per_gpu),
        ("+actor_rollout_ref.rollout.engine_kwargs.sglang.attention_backend", opts.sglang_attention_backend),
        ("+actor_rollout_ref.rollout.engine_kwargs.sglang.sampling_backend", opts.sglang_sampling_backend),
        # no constrained decoding in rollouts: SGLang would import xgrammar otherwise (H200 run)
        ("+actor_rollout_ref.rollout.engine_kwargs.sglang.grammar_backend", "none"),
        # reward: the project's entry point, with the spec's weights, tool-call format and reward
        ("reward.custom_reward_function.path", REWARD_MODULE),
        ("reward.custom_reward_function.name", REWARD_FUNCTION),
        ("+reward.custom_reward_function.reward_kwargs", reward_kwargs(spec)),
        # trainer: resources, steps, checkpoints, logging
        *trainer_steps(spec, train_rows),
        ("trainer.val_before_train", False),
        ("trainer.resume_mode", "auto" if spec.resume else "disable"),
        ("trainer.default_local_dir", str(layout.checkpoints)),
        ("trainer.checkpoint_callback_class", CALLBACK_CLASS),
        ("trainer.max_actor_ckpt_to_keep", opts.max_checkpoints_to_keep),
        ("trainer.max_critic_ckpt_to_keep", opts.max_checkpoints_to_keep),
        ("trainer.project_name", PROJECT),
        ("trainer.experiment_name", spec.run_id),
        ("trainer.logger", loggers(spec)),
        ("trainer.device", "cuda"),
        # TransferQueue (VeRL's V1 trainer): storage units sized to the job
        (
            "transfer_queue.backend.SimpleStorage.num_data_storage_units",
            opts.transfer_queue_storage_units or world,
        ),
        # Ray: the cluster this job runs in; workers get the run's environment
        ("+ray_kwargs.ray_init.include_dashboard", False),
        (
            "+ray_kwargs.ray_init.runtime_env.env_vars",
            {**WORKER_ENV, "VERL_FILE_LOGGER_PATH": str(layout.metrics), **tracking_env(spec)},
        ),
    ]
    if ppo:
        items += [
            ("critic.model.path", model),
            ("+critic.model.override_config.attn_implementation", opts.attn_implementation),
            ("critic.optim.lr", hp.learning_rate * 10),
            ("critic.ppo_micro_batch_size_per_gpu", opts.micro_batch_size_per_gpu),
        ]
    if has_tools:
        items += [
            ("actor_rollout_ref.rollout.multi_turn.enable", True),
            ("actor_rollout_ref.rollout.multi_turn.tool_config_path", str(layout.tool_config)),
            ("actor_rollout_ref.rollout.multi_turn.max_assistant_turns", opts.max_assistant_turns),
            # the tool agent loop's parser (hermes is VeRL's; llama3_json and mistral are verl_plugins')
            ("actor_rollout_ref.rollout.multi_turn.format", spec.tool_call_format),
            # the tool agent loop as verl_plugins' class: loading it loads those parsers in the worker
            ("actor_rollout_ref.rollout.agent.agent_loop_config_path", str(layout.agent_loops)),
            ("actor_rollout_ref.rollout.agent.default_agent_loop", TOOL_AGENT),
        ]
    items += lora_overrides(spec, "actor_rollout_ref.model")
    if spec.lora.enabled:
        items += [
            # SGLang serves the adapter on base weights it loads from disk: only the adapter is synced
            # each step (engine_workers.py: base_sync_done = "dummy" not in load_format; VeRL's LoRA doc
            # calls load_format=safetensors required)
            ("actor_rollout_ref.rollout.load_format", "safetensors"),
            # gather the FSDP shards one layer at a time when collecting the adapter (lower peak memory;
            # needs the base preloaded, which load_format=safetensors gives: fsdp_utils.collect_lora_params)
            ("actor_rollout_ref.rollout.layered_summon", True),
        ]
    items += profile_overrides(spec, model_config)
    items += wall_clock_overrides(spec, stop_at)
    return [f"{key}={hydra_value(value)}" for key, value in items] + list(opts.extra_overrides)


def wall_clock_overrides(spec: RunSpec, stop_at: float | None) -> list[tuple[str, Any]]:
    """Checkpoints by wall time (``checkpoint_every_seconds``) and a clean stop before ``stop_at``: the
    sync V1 trainer with :class:`~continuous_learning_trainer.verl_engine.wall_clock.WallClockSteps`
    (empty when the spec asks for neither: VeRL's own trainer then)."""
    every = spec.hyperparameters.checkpoint_every_seconds
    if not every and stop_at is None:
        return []
    return [
        ("trainer.v1.trainer_mode", TRAINER_MODE),
        (f"+{CONFIG_KEY}.checkpoint_every_seconds", every),
        (f"+{CONFIG_KEY}.stop_at", stop_at),
    ]


def lora_overrides(spec: RunSpec, model_key: str) -> list[tuple[str, Any]]:
    """VeRL's FSDP LoRA settings (``HFModelConfig.lora_rank/lora_alpha/target_modules``; peft underneath).
    The learning rate stays the spec's: LoRA usually wants a larger one, which is the spec's to choose."""
    if not spec.lora.enabled:
        return []
    return [
        (f"{model_key}.lora_rank", spec.lora.rank),
        (f"{model_key}.lora_alpha", int(spec.lora.alpha)),
        (f"{model_key}.target_modules", spec.lora.target_modules),
    ]


def build_sft_overrides(spec: RunSpec, layout: Layout, *, train_rows: int | None = None) -> list[str]:
    """The Hydra overrides for ``verl.trainer.sft_trainer_ray`` (config ``sft_trainer_engine``).

    The data is :func:`prepare_sft_dataset`'s (JSON conversation and tools per row, read by
    :class:`~continuous_learning_trainer.verl_plugins.JsonMultiTurnSFTDataset`); token-budgeted
    micro-batches over unpadded sequences, checkpoints to the work folder (``trainer.default_local_dir``),
    LoRA as for GRPO.
    """
    validate_for_verl(spec, train_rows)
    hp, opts = spec.hyperparameters, spec.verl
    max_length = opts.max_prompt_length + hp.max_completion_tokens
    items: list[tuple[str, Any]] = [
        # data: the references as conversations
        ("data.train_files", str(layout.sft_train_file)),
        ("data.val_files", None),
        ("data.train_batch_size", hp.prompts_per_step),
        ("data.micro_batch_size_per_gpu", opts.micro_batch_size_per_gpu),
        ("data.use_dynamic_bsz", True),
        ("data.max_token_len_per_gpu", opts.max_tokens_per_gpu or max(max_length, 8192)),
        ("data.max_length", max_length),
        # prepare_sft_dataset leaves out conversations longer than max_length; this only guards
        ("data.truncation", "right"),
        ("data.pad_mode", "no_padding"),
        ("data.messages_key", "messages"),
        ("data.tools_key", "tools"),
        ("data.custom_cls.path", f"pkg://{PLUGINS_MODULE}"),
        ("data.custom_cls.name", SFT_DATASET),
        # model and optimisation
        ("model.path", str(layout.base_model)),
        ("+model.override_config.attn_implementation", opts.attn_implementation),
        ("optim.lr", hp.learning_rate),
        # trainer: resources, steps, checkpoints, logging
        *trainer_steps(spec, train_rows),
        ("trainer.seed", hp.seed),
        ("trainer.resume_mode", "auto" if spec.resume else "disable"),
        ("trainer.default_local_dir", str(layout.checkpoints)),
        ("trainer.max_ckpt_to_keep", opts.max_checkpoints_to_keep),
        ("trainer.project_name", PROJECT),
        ("trainer.experiment_name", spec.run_id),
        ("trainer.logger", loggers(spec)),
        ("trainer.device", "cuda"),
    ]
    items += lora_overrides(spec, "model")
    return [f"{key}={hydra_value(value)}" for key, value in items] + list(opts.extra_overrides)


def trainer_command(spec: RunSpec, overrides: Sequence[str]) -> list[str]:
    """The command line of the spec's VeRL run."""
    wall_clock = f"trainer.v1.trainer_mode={TRAINER_MODE}" in overrides
    entry = SFT_ENTRY if spec.algorithm == "sft" else WALL_CLOCK_PPO_ENTRY if wall_clock else PPO_ENTRY
    return [sys.executable, "-m", entry, *overrides]
