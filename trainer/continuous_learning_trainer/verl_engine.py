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
4. run VeRL with Hydra overrides built by :func:`build_overrides`, a pure function of the spec (tested
   on CPU against VeRL's own configs); :class:`UploadCheckpointCallback` uploads every checkpoint
   ``main_ppo`` saves (the SFT trainer has no callback: its last checkpoint is uploaded when it stops);
5. merge the last checkpoint to Hugging Face format (``python -m verl.model_merger merge``; with LoRA,
   VeRL's merger writes the base weights and ``lora_adapter/``, merged here with peft), validate it,
   upload it to ``<output_uri>/model`` (and the adapter to ``<output_uri>/adapter``) and write
   ``<output_uri>/result.json`` (a TrainResult).

Storage layout under ``output_uri`` (the same as the CPU engine's): ``model/``, ``adapter/`` (LoRA),
``checkpoints/`` (``global_step_N/`` and ``latest_checkpointed_iteration.txt``, written last: the commit
marker), ``result.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from continuous_learning import storage
from continuous_learning.contracts import RunSpec, TrainResult

from continuous_learning_trainer.verl_plugins import MODULE as PLUGINS_MODULE
from continuous_learning_trainer.verl_plugins import (
    SFT_DATASET,
    SINGLE_TURN_AGENT,
    TOOL_AGENT,
    agent_loop_config,
)

log = logging.getLogger(__name__)

#: VeRL's reward entry point (``compute_score(data_source, solution_str, ground_truth, extra_info, **kw)``).
REWARD_MODULE = "pkg://continuous_learning_trainer.reward_function"
REWARD_FUNCTION = "compute_score"
PPO_ENTRY = "verl.trainer.main_ppo"
SFT_ENTRY = "verl.trainer.sft_trainer_ray"
#: Reference sources an SFT candidate learns from.
SFT_SOURCES = ("correction", "positive_feedback")
CALLBACK_CLASS = "continuous_learning_trainer.verl_engine.UploadCheckpointCallback"
UPLOAD_MANIFEST = "_cl_upload.json"
TRACKER = "latest_checkpointed_iteration.txt"
STEP_DIR = re.compile(r"^global_step_(\d+)$")
PROJECT = "continuous-learning"
IMAGE_DIGEST_ENV = "CL_IMAGE_DIGEST"
#: Environment every Ray worker of the run gets (also set in the image): NVLink SHARP multicast off,
#: which shared GPU hosts need (TOOLBOX: NCCL_NVLS_ENABLE=0).
WORKER_ENV = {"NCCL_NVLS_ENABLE": "0"}

CommandRunner = Callable[[Sequence[str], Mapping[str, str]], None]

#: Accelerator classes whose tuned profile is known (``resources.gpu_class``, lower case).
GPU_CLASS_PROFILES = {"h100": "hopper", "h200": "hopper", "h800": "hopper", "gh200": "hopper"}
#: The Hopper profile, measured on one H200 (benchmarks/gpu/RESULTS.md): with VeRL's defaults the step
#: is bound by per-micro-batch overhead (4 samples each, GPU busy 13% of a step); token-budgeted
#: micro-batches over unpadded sequences do the same work in a few large launches.
HOPPER_ACTOR_TOKENS_PER_GPU = 32768
#: Forward-only passes (old and reference log-probs) keep no activations: twice the actor's budget.
HOPPER_FORWARD_FACTOR = 2
#: Recomputation (gradient checkpointing) is turned off only when one micro-batch's activations fit
#: beside the sharded weights, gradients and Adam state in this share of the card's memory: measured on
#: the H200, 0.36B parameters at 32k tokens peaked at 51 GB = ~64 bytes per token x hidden x layer of
#: activations + 16 bytes per parameter of state.
GPU_MEMORY_GB = {"h100": 80, "h800": 80, "gh200": 96, "h200": 141}
ACTIVATION_BYTES = 64  # per token x hidden size x layer, without recomputation
STATE_BYTES_PER_PARAMETER = 16  # bf16 weights and gradients, fp32 Adam moments, fp32 master copy
TRAINING_MEMORY_SHARE = 0.6


@dataclass(frozen=True)
class Layout:
    """Where one run keeps its files on the node (or shared file system)."""

    root: Path

    @property
    def base_model(self) -> Path:
        return self.root / "base"

    @property
    def train_file(self) -> Path:
        return self.root / "data" / "train.parquet"

    @property
    def val_file(self) -> Path:
        return self.root / "data" / "validation.parquet"

    @property
    def sft_train_file(self) -> Path:
        return self.root / "data" / "sft-train.parquet"

    @property
    def tool_config(self) -> Path:
        return self.root / "tools.yaml"

    @property
    def agent_loops(self) -> Path:
        """``rollout.agent.agent_loop_config_path``: the project's agent loops (and so its plugins)."""
        return self.root / "agent_loops.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def merged(self) -> Path:
        """What VeRL's model merger writes (with LoRA: the base weights and ``lora_adapter/``)."""
        return self.root / "merged"

    @property
    def lora_merged(self) -> Path:
        """A LoRA run's servable model: the adapter merged into the base weights."""
        return self.root / "merged-lora"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def earlier_metrics(self) -> Path:
        """Metrics of earlier attempts in this work folder: VeRL's file logger truncates ``metrics``
        when it starts, so a resumed run would otherwise lose the steps before its checkpoint."""
        return self.root / "metrics.earlier.jsonl"


# --------------------------------------------------------------------------- Hydra overrides

_BARE = re.compile(r"^[A-Za-z0-9_./:+\-~@]+$")
_RESERVED = {"true", "false", "null", "nan", "inf", "-inf"}
#: Dict keys Hydra's grammar takes unquoted (it has no quoted keys).
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
#: In a quoted string Hydra unescapes backslashes only before a quote, before ``${`` and at the end.
_QUOTED_ESCAPES = re.compile(r"(\\*)('|\$\{|$)")


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
        longest = opts.max_prompt_length + hp.max_completion_tokens
        if opts.max_tokens_per_gpu is not None and opts.max_tokens_per_gpu < longest:
            raise ValueError(
                f"verl.max_tokens_per_gpu={opts.max_tokens_per_gpu} cannot hold one example of "
                f"verl.max_prompt_length + max_completion_tokens = {longest} tokens"
            )
        if train_rows is not None and train_rows < hp.prompts_per_step:
            raise ValueError(
                f"the train split has {train_rows} references (corrections, positively rated answers), "
                f"fewer than prompts_per_step={hp.prompts_per_step}"
            )
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
    longest = opts.max_prompt_length + hp.max_completion_tokens
    if dynamic and opts.max_tokens_per_gpu is not None and opts.max_tokens_per_gpu < longest:
        raise ValueError(
            f"verl.max_tokens_per_gpu={opts.max_tokens_per_gpu} cannot hold one sequence of "
            f"verl.max_prompt_length + max_completion_tokens = {longest} tokens"
        )
    if not dynamic and (samples // world) % opts.micro_batch_size_per_gpu:
        raise ValueError(
            f"samples per GPU per step ({samples // world}) must be a multiple of "
            f"verl.micro_batch_size_per_gpu={opts.micro_batch_size_per_gpu}"
        )
    if train_rows is not None and train_rows < hp.prompts_per_step:
        raise ValueError(
            f"the train split has {train_rows} rows, fewer than prompts_per_step={hp.prompts_per_step}"
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


def profile_for(spec: RunSpec) -> str:
    """The performance profile the run uses: explicit, or the one tuned for ``resources.gpu_class``."""
    if spec.verl.profile != "auto":
        return spec.verl.profile
    return GPU_CLASS_PROFILES.get((spec.resources.gpu_class or "").lower(), "verl-defaults")


def model_parameters(config: Mapping[str, Any]) -> int | None:
    """Parameter count of a decoder-only transformer from its Hugging Face ``config.json`` (an estimate:
    embeddings, attention with grouped KV heads, gated MLP; norms and biases ignored)."""
    try:
        hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
        vocab, mlp = int(config["vocab_size"]), int(config["intermediate_size"])
    except (KeyError, TypeError, ValueError):
        return None
    heads = int(config.get("num_attention_heads") or 1)
    kv_dim = hidden * int(config.get("num_key_value_heads") or heads) // heads
    attention = 2 * hidden * hidden + 2 * hidden * kv_dim
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return embeddings + layers * (attention + 3 * hidden * mlp)


def recomputation_needed(spec: RunSpec, model_config: Mapping[str, Any] | None, tokens_per_gpu: int) -> bool:
    """Whether the policy update needs gradient checkpointing to fit (True when unknown)."""
    memory_gb = GPU_MEMORY_GB.get((spec.resources.gpu_class or "").lower())
    parameters = model_parameters(model_config or {})
    if memory_gb is None or parameters is None or model_config is None:
        return True
    world = spec.resources.nnodes * spec.resources.n_gpus_per_node
    depth = int(model_config["hidden_size"]) * int(model_config["num_hidden_layers"])
    needed = ACTIVATION_BYTES * depth * tokens_per_gpu + STATE_BYTES_PER_PARAMETER * parameters / max(
        world, 1
    )
    return needed > TRAINING_MEMORY_SHARE * memory_gb * 1e9


def profile_overrides(spec: RunSpec, model_config: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """Hydra items of the run's performance profile (empty for VeRL's defaults)."""
    if profile_for(spec) != "hopper":
        return []
    actor = spec.verl.max_tokens_per_gpu or HOPPER_ACTOR_TOKENS_PER_GPU
    forward = actor * HOPPER_FORWARD_FACTOR
    items: list[tuple[str, Any]] = [
        ("actor_rollout_ref.actor.use_dynamic_bsz", True),
        ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu", actor),
        ("actor_rollout_ref.ref.log_prob_use_dynamic_bsz", True),
        ("actor_rollout_ref.ref.log_prob_max_token_len_per_gpu", forward),
        ("actor_rollout_ref.rollout.log_prob_use_dynamic_bsz", True),
        ("actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu", forward),
    ]
    if not recomputation_needed(spec, model_config, actor):
        items.append(("actor_rollout_ref.model.enable_gradient_checkpointing", False))
    if spec.algorithm == "ppo":
        items += [
            ("critic.use_dynamic_bsz", True),
            ("critic.ppo_max_token_len_per_gpu", forward),
        ]
    return items


def total_epochs(spec: RunSpec, train_rows: int | None) -> int:
    """Epochs enough for ``max_steps`` (VeRL stops at whichever of epochs and steps comes first)."""
    if not train_rows:
        return 1
    steps_per_epoch = max(train_rows // spec.hyperparameters.prompts_per_step, 1)
    return max(math.ceil(spec.hyperparameters.max_steps / steps_per_epoch), 1)


def build_overrides(
    spec: RunSpec,
    layout: Layout,
    *,
    has_tools: bool = False,
    train_rows: int | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """The Hydra overrides of the spec's VeRL run, from the spec alone: ``verl.trainer.main_ppo`` (config
    ``ppo_trainer``) for GRPO/PPO, ``verl.trainer.sft_trainer_ray`` (``sft_trainer_engine``) for SFT
    (:func:`build_sft_overrides`; ``train_rows`` then counts the references).

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
        ("trainer.nnodes", res.nnodes),
        ("trainer.n_gpus_per_node", res.n_gpus_per_node),
        ("trainer.total_training_steps", hp.max_steps),
        ("trainer.total_epochs", total_epochs(spec, train_rows)),
        ("trainer.save_freq", hp.checkpoint_every),
        ("trainer.test_freq", -1),
        ("trainer.val_before_train", False),
        ("trainer.resume_mode", "auto" if spec.resume else "disable"),
        ("trainer.default_local_dir", str(layout.checkpoints)),
        ("trainer.checkpoint_callback_class", CALLBACK_CLASS),
        ("trainer.max_actor_ckpt_to_keep", opts.max_checkpoints_to_keep),
        ("trainer.max_critic_ckpt_to_keep", opts.max_checkpoints_to_keep),
        ("trainer.project_name", PROJECT),
        ("trainer.experiment_name", spec.run_id),
        ("trainer.logger", list(opts.loggers)),
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
            {**WORKER_ENV, "VERL_FILE_LOGGER_PATH": str(layout.metrics)},
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
    return [f"{key}={hydra_value(value)}" for key, value in items] + list(opts.extra_overrides)


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
    hp, res, opts = spec.hyperparameters, spec.resources, spec.verl
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
        ("trainer.nnodes", res.nnodes),
        ("trainer.n_gpus_per_node", res.n_gpus_per_node),
        ("trainer.total_training_steps", hp.max_steps),
        ("trainer.total_epochs", total_epochs(spec, train_rows)),
        ("trainer.save_freq", hp.checkpoint_every),
        ("trainer.test_freq", -1),
        ("trainer.seed", hp.seed),
        ("trainer.resume_mode", "auto" if spec.resume else "disable"),
        ("trainer.default_local_dir", str(layout.checkpoints)),
        ("trainer.max_ckpt_to_keep", opts.max_checkpoints_to_keep),
        ("trainer.project_name", PROJECT),
        ("trainer.experiment_name", spec.run_id),
        ("trainer.logger", list(opts.loggers)),
        ("trainer.device", "cuda"),
    ]
    items += lora_overrides(spec, "model")
    return [f"{key}={hydra_value(value)}" for key, value in items] + list(opts.extra_overrides)


def trainer_command(spec: RunSpec, overrides: Sequence[str]) -> list[str]:
    """The command line of the spec's VeRL run."""
    entry = SFT_ENTRY if spec.algorithm == "sft" else PPO_ENTRY
    return [sys.executable, "-m", entry, *overrides]


# --------------------------------------------------------------------------- dataset preparation


#: Why a row of a split is left out of a VeRL run (counts go to the log and the result's metrics).
SCHEMA_CONFLICT = "a tool's schema differs from the one its name has in the run's tool config"
TOO_LONG_PROMPT = "prompt longer than verl.max_prompt_length tokens"
TOO_LONG_EXAMPLE = "conversation longer than verl.max_prompt_length + max_completion_tokens tokens"
NO_REFERENCE = "no correction or positively rated answer"
UNLOADABLE_TOOL = "a tool spec VeRL cannot load"
EMPTY_REFERENCE = "the reference has neither text nor tool calls"


@dataclass
class PreparedSplit:
    """What :func:`prepare_dataset` / :func:`prepare_sft_dataset` wrote: rows kept, rows left out by reason."""

    rows: int
    skipped: dict[str, int]


def _read_table(uri: str) -> Any:
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))


def row_tools(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A reward-dataset row's tools (``extra_info.tools_json``) as VeRL's rollout hands them to the chat
    template (:func:`continuous_learning.models.chat_templates.normalise_tools`, which evaluation renders
    with too); raises ``ToolSchemaError`` for a spec VeRL would refuse to load."""
    from continuous_learning.models.chat_templates import normalise_tools

    tools_json = (row.get("extra_info") or {}).get("tools_json")
    return normalise_tools(json.loads(tools_json) if tools_json else None) or []


def chat_tokens(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, *, generation_prompt: bool
) -> int:
    """Token count of ``messages`` in the tokenizer's chat template: the call VeRL makes to build a
    rollout prompt (verl/utils/tokenizer/chat_template.py: ``apply_chat_template(..., tokenize=True)``)."""
    ids = tokenizer.apply_chat_template(
        messages,
        tools=tools or None,
        add_generation_prompt=generation_prompt,
        tokenize=True,
        return_dict=False,
    )
    if isinstance(ids, Mapping):
        ids = ids["input_ids"]
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return len(ids)


def chat_tokenizer(model_dir: Path) -> Any:
    """The base model's tokenizer when it has a chat template (VeRL renders every prompt with it),
    else None: prompts are then not measured here."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not getattr(tokenizer, "chat_template", None):
        log.warning("%s has no chat template: prompt lengths are not checked before VeRL starts", model_dir)
        return None
    return tokenizer


def prepare_dataset(
    source_uri: str,
    target: Path,
    registry: dict[str, dict[str, Any]],
    *,
    tokenizer: Any = None,
    max_prompt_length: int | None = None,
) -> PreparedSplit:
    """Download one split and prepare its rows for the project's agent loops.

    ``registry`` (tool name -> schema, filled in split order, first schema per name) becomes the run's
    tool config: VeRL knows one schema per tool name, so a row whose tool has another schema under a
    known name is left out (its prompt would show the other schema), and so is a row with a tool spec
    VeRL would refuse to load (the whole run would stop). Rows with tools get ``agent_name=cl_tool_agent``
    and ``extra_info.tool_selection`` (their tools, in their order: the tool agent loop shows those);
    rows without get ``single_turn_agent``. With a ``tokenizer``, rows whose prompt (messages and tools
    as VeRL passes them) has more than ``max_prompt_length`` tokens are left out.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from continuous_learning.models.chat_templates import ToolSchemaError, verl_messages

    table = _read_table(source_uri)
    kept: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for row in table.to_pylist():
        try:
            own = {schema["function"]["name"]: schema for schema in row_tools(row)}
        except ToolSchemaError as exc:
            log.warning("row %s left out: %s", (row.get("extra_info") or {}).get("interaction_id"), exc)
            skipped[UNLOADABLE_TOOL] = skipped.get(UNLOADABLE_TOOL, 0) + 1
            continue
        if any(registry.get(name, schema) != schema for name, schema in own.items()):
            skipped[SCHEMA_CONFLICT] = skipped.get(SCHEMA_CONFLICT, 0) + 1
            continue
        if tokenizer is not None and max_prompt_length:
            length = chat_tokens(
                tokenizer, verl_messages(row["prompt"]), list(own.values()), generation_prompt=True
            )
            if length > max_prompt_length:
                skipped[TOO_LONG_PROMPT] = skipped.get(TOO_LONG_PROMPT, 0) + 1
                continue
        for name, schema in own.items():
            registry.setdefault(name, schema)
        row["extra_info"]["tool_selection"] = list(own)
        row["agent_name"] = TOOL_AGENT if own else SINGLE_TURN_AGENT
        kept.append(row)
    extra = [f for f in table.schema.field("extra_info").type if f.name != "tool_selection"]
    extra.append(pa.field("tool_selection", pa.list_(pa.string())))
    fields = [
        pa.field(f.name, pa.struct(extra)) if f.name == "extra_info" else f
        for f in table.schema
        if f.name != "agent_name"
    ]
    schema = pa.schema([*fields, pa.field("agent_name", pa.string())])
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(kept, schema=schema), target)
    if skipped:
        log.warning("%s: %d rows kept, left out: %s", source_uri, len(kept), skipped)
    return PreparedSplit(len(kept), skipped)


def _escape_interpolation(value: Any) -> Any:
    """OmegaConf reads the tool config and resolves ``${...}`` in its strings: escape them."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, list):
        return [_escape_interpolation(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape_interpolation(v) for k, v in value.items()}
    return value


def write_tool_config(tools: list[dict[str, Any]], path: Path) -> None:
    """VeRL's tool config: one native tool per schema. ``tools`` are :func:`row_tools`' (VeRL's form:
    VeRL validates them and hands the template the same dicts back), with ``${`` escaped for OmegaConf,
    which reads the file. The tools are not executed in training (the agent loop stops after
    ``max_assistant_turns`` and the reward scores the calls), so VeRL's ``BaseTool`` serves as the
    stand-in implementation."""
    import yaml

    document = {
        "tools": [
            {
                "class_name": "verl.tools.base_tool.BaseTool",
                "config": {"type": "native"},
                "tool_schema": _escape_interpolation(tool),
            }
            for tool in tools
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def write_agent_loop_config(path: Path) -> None:
    """``rollout.agent.agent_loop_config_path``: the project's agent loops (verl_plugins)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(agent_loop_config(), sort_keys=False))


def sft_answer(reference: Mapping[str, Any], tool_call_format: str) -> str:
    """The reference answer as the model writes it: its tool calls in the run's tool-call format (the
    format the reward parses), else its text; the CPU engine's SFT writes the same."""
    from continuous_learning.models.tool_calls import format_calls

    calls = reference.get("tool_calls") or []
    if calls:
        return format_calls(
            [{"name": c["name"], "arguments": c["arguments"]} for c in calls],
            tool_call_format,  # type: ignore[arg-type]
        )
    return str(reference.get("content") or "")


def prepare_sft_dataset(
    source_uri: str,
    target: Path,
    tool_call_format: str,
    *,
    tokenizer: Any = None,
    max_length: int | None = None,
) -> PreparedSplit:
    """The SFT data of one split: each reference (a correction, or a positively rated answer) as a
    conversation, the prompt's messages with the reference answer appended as the assistant turn.

    Columns ``messages`` and ``tools`` are JSON text (read by ``JsonMultiTurnSFTDataset``): a struct
    column would give each row every other row's keys. Tools are in the form the RL rollout shows them,
    so SFT trains on the prompts GRPO and evaluation render. With a ``tokenizer``, conversations longer
    than ``max_length`` tokens are left out (VeRL would otherwise cut the answer off).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from continuous_learning.models.chat_templates import ToolSchemaError, verl_messages

    records: list[dict[str, str]] = []
    skipped: dict[str, int] = {}
    for row in _read_table(source_uri).to_pylist():
        extra = row.get("extra_info") or {}
        if extra.get("reference_source") not in SFT_SOURCES:
            skipped[NO_REFERENCE] = skipped.get(NO_REFERENCE, 0) + 1
            continue
        answer = sft_answer(json.loads(row["reward_model"]["ground_truth"]), tool_call_format)
        if not answer:
            skipped[EMPTY_REFERENCE] = skipped.get(EMPTY_REFERENCE, 0) + 1
            continue
        # the prompt in the shape VeRL's rollout renders it (and evaluation), the answer appended
        messages = verl_messages([*row["prompt"], {"role": "assistant", "content": answer}])
        try:
            tools = row_tools(row)
        except ToolSchemaError:
            skipped[UNLOADABLE_TOOL] = skipped.get(UNLOADABLE_TOOL, 0) + 1
            continue
        if (
            tokenizer is not None
            and max_length
            and chat_tokens(tokenizer, messages, tools, generation_prompt=False) > max_length
        ):
            skipped[TOO_LONG_EXAMPLE] = skipped.get(TOO_LONG_EXAMPLE, 0) + 1
            continue
        records.append(
            {
                "messages": json.dumps(messages, ensure_ascii=False),
                "tools": json.dumps(tools, ensure_ascii=False) if tools else "",
                "interaction_id": str(extra.get("interaction_id") or ""),
                "reference_source": str(extra.get("reference_source")),
            }
        )
    schema = pa.schema(
        [(name, pa.string()) for name in ("messages", "tools", "interaction_id", "reference_source")]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), target)
    if skipped:
        log.warning("%s: %d SFT examples, left out: %s", source_uri, len(records), skipped)
    return PreparedSplit(len(records), skipped)


# --------------------------------------------------------------------------- checkpoints

try:  # the image has VeRL; the dev venv composes VeRL's config without importing it
    from verl.trainer.ppo.checkpoint_callback import CheckpointCallback as _CallbackBase
except ImportError:  # pragma: no cover - depends on the environment
    _CallbackBase = object


def _steps(names: Sequence[str]) -> list[int]:
    return sorted(int(m.group(1)) for n in names if (m := STEP_DIR.match(n)))


def write_upload_manifest(checkpoint_dir: Path, checkpoints_uri: str, keep: int) -> None:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"checkpoints_uri": checkpoints_uri, "keep": keep}
    (checkpoint_dir / UPLOAD_MANIFEST).write_text(json.dumps(manifest))


def upload_checkpoint(step_dir: Path, checkpoints_uri: str, global_step: int, keep: int) -> str:
    """Upload ``global_step_N/``, then commit it by writing the tracker; prune older uploads."""
    target = storage.join(checkpoints_uri, f"global_step_{global_step}")
    storage.store_for(target).delete_prefix(target + "/")  # a re-save of the same step replaces it
    storage.upload_dir(step_dir, target)
    storage.write_bytes(storage.join(checkpoints_uri, TRACKER), str(global_step).encode())
    uploaded = _steps(
        sorted(
            {
                o.uri.removeprefix(checkpoints_uri.rstrip("/") + "/").split("/", 1)[0]
                for o in storage.list_objects(checkpoints_uri.rstrip("/") + "/")
            }
        )
    )
    for old in [s for s in uploaded if s < global_step][: max(len(uploaded) - keep, 0)]:
        prefix = storage.join(checkpoints_uri, f"global_step_{old}") + "/"
        storage.store_for(prefix).delete_prefix(prefix)
    log.info("checkpoint global_step_%d uploaded to %s", global_step, target)
    return target


class UploadCheckpointCallback(_CallbackBase):  # type: ignore[misc,valid-type]
    """VeRL ``trainer.checkpoint_callback_class``: runs on the driver after every checkpoint save and
    uploads it to storage (where to: ``_cl_upload.json`` next to the checkpoints, written by :func:`train`).
    An exception here aborts training, on purpose: a checkpoint that did not reach storage is not durable."""

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def on_save(
        self,
        trainer: Any = None,
        global_step: int = 0,
        checkpoint_dir: str = "",
        async_save: bool = False,
        **kwargs: Any,
    ) -> None:
        step_dir = Path(checkpoint_dir)
        manifest = json.loads((step_dir.parent / UPLOAD_MANIFEST).read_text())
        if async_save:
            log.warning("async checkpoint save: step %d uploaded before its shards are final", global_step)
        upload_checkpoint(step_dir, manifest["checkpoints_uri"], global_step, int(manifest.get("keep", 2)))


def restore_checkpoint(checkpoints_uri: str, local_dir: Path) -> int | None:
    """Put the last committed checkpoint from storage into ``local_dir`` for ``resume_mode=auto``.

    Returns its step, or None when nothing was committed. A local copy at the same or a later step
    (a restarted job on the same shared file system) is kept as it is.
    """
    tracker_uri = storage.join(checkpoints_uri, TRACKER)
    if not storage.exists(tracker_uri):
        return None
    step = int(storage.read_bytes(tracker_uri).decode().strip())
    local_tracker = local_dir / TRACKER
    if local_tracker.exists() and (local_dir / f"global_step_{step}").is_dir():
        local_step = int(local_tracker.read_text().strip() or 0)
        if local_step >= step:
            return local_step
    step_dir = local_dir / f"global_step_{step}"
    if step_dir.exists():
        shutil.rmtree(step_dir)
    storage.download_dir(storage.join(checkpoints_uri, f"global_step_{step}") + "/", step_dir)
    local_tracker.write_text(str(step))
    log.info("restored checkpoint global_step_%d from %s", step, checkpoints_uri)
    return step


def latest_local_step(local_dir: Path) -> int | None:
    tracker = local_dir / TRACKER
    if tracker.exists():
        return int(tracker.read_text().strip())
    steps = _steps([p.name for p in local_dir.iterdir()]) if local_dir.is_dir() else []
    return steps[-1] if steps else None


# --------------------------------------------------------------------------- merge and validation

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)


def merge_command(local_dir: Path, target_dir: Path) -> list[str]:
    """VeRL's merger of one FSDP checkpoint (``global_step_N/actor`` of main_ppo, ``global_step_N`` of
    the SFT trainer) into a Hugging Face folder."""
    return [
        sys.executable,
        "-m",
        "verl.model_merger",
        "merge",
        "--backend",
        "fsdp",
        "--local_dir",
        str(local_dir),
        "--target_dir",
        str(target_dir),
    ]


#: Where VeRL's merger puts a LoRA checkpoint's adapter (verl/model_merger/base_model_merger.py,
#: ``save_lora_adapter``): ``adapter_config.json`` + ``adapter_model.safetensors``, peft's layout.
VERL_ADAPTER_DIR = "lora_adapter"


def merge_lora_adapter(verl_merged: Path, target: Path) -> Path:
    """The servable model of a LoRA run, in ``target``; returns the adapter's folder.

    VeRL's merger does not merge a LoRA checkpoint: it moves the ``lora_A``/``lora_B`` tensors to
    ``lora_adapter/`` (rank and alpha from ``lora_train_meta.json``, target modules from the tensor
    names) and saves the *base* weights (``base_layer`` renamed back) as the model. Serving that folder
    would serve the base model, so the adapter is merged into it here with peft (``merge_and_unload``).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    adapter = verl_merged / VERL_ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise RuntimeError(f"a LoRA run, but VeRL's merger wrote no adapter in {adapter}")
    saved = getattr(AutoConfig.from_pretrained(verl_merged), "dtype", None)
    saved = getattr(torch, saved) if isinstance(saved, str) else saved
    # merged in fp32 (B @ A added to the weights without bf16 rounding), saved in the merger's dtype
    base = AutoModelForCausalLM.from_pretrained(verl_merged, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    if isinstance(saved, torch.dtype) and saved != torch.float32:
        merged = merged.to(saved)
    if target.exists():
        shutil.rmtree(target)
    merged.save_pretrained(target)
    for name in TOKENIZER_FILES:
        if (verl_merged / name).exists():
            shutil.copy2(verl_merged / name, target / name)
    log.info("LoRA adapter %s merged into the base weights: %s", adapter, target)
    return adapter


def validate_hf_model(model_dir: Path, base_model: Path | None = None) -> dict[str, float]:
    """A merged model is usable when transformers reads its config, tokenizer files are there (copied
    from the base model when the merge left them out) and every safetensors file opens with plain
    weights (no peft ``lora_``/``base_layer`` tensors: an unmerged adapter does not serve)."""
    from safetensors import safe_open
    from transformers import AutoConfig

    if base_model is not None:
        for name in TOKENIZER_FILES:
            if not (model_dir / name).exists() and (base_model / name).exists():
                shutil.copy2(base_model / name, model_dir / name)
    AutoConfig.from_pretrained(model_dir)
    if not (model_dir / "tokenizer_config.json").exists() or not any(
        (model_dir / n).exists() for n in ("tokenizer.json", "vocab.json", "tokenizer.model")
    ):
        raise ValueError(f"{model_dir} has no tokenizer files")
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        raise ValueError(f"{model_dir} has no safetensors weights")
    tensors = parameters = 0
    for shard in shards:
        with safe_open(str(shard), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                if ".lora_" in key or ".base_layer." in key:
                    raise ValueError(f"{shard.name} holds the unmerged LoRA tensor {key}")
                tensors += 1
                parameters += math.prod(fh.get_slice(key).get_shape())
    return {"model_tensors": float(tensors), "model_parameters": float(parameters)}


# --------------------------------------------------------------------------- results


def read_history(metrics_file: Path, *earlier: Path) -> list[dict[str, float]]:
    """VeRL's ``file`` logger: one JSON line per step, ``{"step": N, "data": {metric: value}}``.

    ``earlier`` files (attempts before a resume) are read first; a step logged again by a later attempt
    (the steps between its checkpoint and the crash are re-run) replaces the earlier entry."""
    by_step: dict[float, dict[str, float]] = {}
    for path in (*earlier, metrics_file):
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            row = {k: float(v) for k, v in entry.get("data", {}).items() if isinstance(v, (int, float))}
            row["step"] = float(entry.get("step", len(by_step) + 1))
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


def keep_earlier_metrics(layout: Layout) -> None:
    """Move the last attempt's metrics aside before VeRL starts again (its logger truncates the file)."""
    if layout.metrics.exists() and layout.metrics.stat().st_size:
        with layout.earlier_metrics.open("a") as out:
            out.write(layout.metrics.read_text().rstrip("\n") + "\n")
        layout.metrics.unlink()


def summarise(history: list[dict[str, float]], train_rows: int) -> dict[str, float]:
    """Run metrics from VeRL's per-step log: reward (RL) and loss (SFT, ``train/loss``) at the start and
    the end (means over the first and last quarter of the steps)."""
    rewards = [h["critic/score/mean"] for h in history if "critic/score/mean" in h]
    window = max(1, len(rewards) // 4)
    last = history[-1] if history else {}
    summary = {
        "reward_first": sum(rewards[:window]) / window if rewards else 0.0,
        "reward_last": sum(rewards[-window:]) / window if rewards else 0.0,
        "response_length_last": last.get("response_length/mean", 0.0),
        "step_seconds_last": last.get("timing_s/step", 0.0),
        "train_rows": float(train_rows),
    }
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    if losses:
        loss_window = max(1, len(losses) // 4)
        summary["loss_first"] = sum(losses[:loss_window]) / loss_window
        summary["loss_last"] = sum(losses[-loss_window:]) / loss_window
    return summary


def versions() -> dict[str, str]:
    found = {}
    for dist in ("verl", "sglang", "sglang-kernel", "flashinfer-python", "torch", "transformers", "ray"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "absent"
    found["image"] = os.environ.get(IMAGE_DIGEST_ENV, "unknown")
    return found


def run_command(command: Sequence[str], env: Mapping[str, str]) -> None:
    log.info("running: %s", " ".join(command))
    subprocess.run(list(command), env=dict(env), check=True)


# --------------------------------------------------------------------------- the run


def train(spec: RunSpec, *, runner: CommandRunner = run_command) -> TrainResult:
    """Run the spec with VeRL; on failure write a ``failed`` TrainResult, then raise."""
    started = datetime.now(UTC)
    validate_for_verl(spec)
    work_root = spec.verl.work_dir or os.environ.get("CL_WORK_DIR")
    tmp = None
    if work_root:
        layout = Layout(Path(work_root) / spec.run_id)
    else:
        tmp = tempfile.mkdtemp(prefix="cl-verl-")
        layout = Layout(Path(tmp))
    result_uri = storage.join(spec.output_uri, "result.json")
    try:
        result = _train(spec, layout, runner, started)
    except Exception as exc:
        TrainResult(
            run_id=spec.run_id,
            status="failed",
            model_uri=None,
            base_model_version=spec.base_model_version,
            dataset_id=spec.dataset.dataset_id,
            steps=0,
            metrics={},
            history=read_history(layout.metrics, layout.earlier_metrics),
            versions=versions(),
            started_at=started,
            finished_at=datetime.now(UTC),
            error=f"{type(exc).__name__}: {exc}"[:2000],
        ).write(result_uri)
        raise
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def upload_latest_checkpoint(local_dir: Path, checkpoints_uri: str, keep: int) -> int | None:
    """Upload the last committed local checkpoint unless storage already has it (trainers without a
    checkpoint callback: VeRL's SFT trainer); returns its step."""
    step = latest_local_step(local_dir)
    if step is None or not (local_dir / f"global_step_{step}").is_dir():
        return None
    tracker_uri = storage.join(checkpoints_uri, TRACKER)
    if storage.exists(tracker_uri) and int(storage.read_bytes(tracker_uri).decode().strip() or 0) >= step:
        return step
    upload_checkpoint(local_dir / f"global_step_{step}", checkpoints_uri, step, keep)
    return step


def _prepare_data(spec: RunSpec, layout: Layout, tokenizer: Any) -> tuple[int, bool, dict[str, int]]:
    """Write the run's data files; (train rows, whether rollouts have tools, rows left out by reason)."""
    opts, hp = spec.verl, spec.hyperparameters
    if spec.algorithm == "sft":
        sft = prepare_sft_dataset(
            spec.dataset.train_uri,
            layout.sft_train_file,
            spec.tool_call_format,
            tokenizer=tokenizer,
            max_length=opts.max_prompt_length + hp.max_completion_tokens,
        )
        return sft.rows, False, sft.skipped
    registry: dict[str, dict[str, Any]] = {}
    train = prepare_dataset(
        spec.dataset.train_uri,
        layout.train_file,
        registry,
        tokenizer=tokenizer,
        max_prompt_length=opts.max_prompt_length,
    )
    prepare_dataset(
        spec.dataset.validation_uri,
        layout.val_file,
        registry,
        tokenizer=tokenizer,
        max_prompt_length=opts.max_prompt_length,
    )
    if registry:
        write_tool_config(list(registry.values()), layout.tool_config)
        write_agent_loop_config(layout.agent_loops)
    return train.rows, bool(registry), train.skipped


def _train(spec: RunSpec, layout: Layout, runner: CommandRunner, started: datetime) -> TrainResult:
    layout.root.mkdir(parents=True, exist_ok=True)
    if not (layout.base_model / "config.json").exists():
        storage.download_dir(spec.base_model_uri.rstrip("/") + "/", layout.base_model)
    train_rows, has_tools, skipped = _prepare_data(spec, layout, chat_tokenizer(layout.base_model))
    checkpoints_uri = storage.join(spec.output_uri, "checkpoints")
    keep = spec.verl.max_checkpoints_to_keep
    if spec.resume:
        restore_checkpoint(checkpoints_uri, layout.checkpoints)
    write_upload_manifest(layout.checkpoints, checkpoints_uri, keep)
    model_config = json.loads((layout.base_model / "config.json").read_text())
    parameters = model_parameters(model_config)
    log.info(
        "performance profile %s (gpu class %s, base model ~%s parameters)",
        profile_for(spec),
        spec.resources.gpu_class or "unknown",
        f"{parameters:,}" if parameters else "?",
    )
    overrides = build_overrides(
        spec, layout, has_tools=has_tools, train_rows=train_rows, model_config=model_config
    )
    env = {**os.environ, **WORKER_ENV, "VERL_FILE_LOGGER_PATH": str(layout.metrics), "PYTHONUNBUFFERED": "1"}
    env.setdefault("RAY_ADDRESS", "auto")  # the cluster this job runs in; never start a new one
    keep_earlier_metrics(layout)
    sft = spec.algorithm == "sft"
    try:
        runner(trainer_command(spec, overrides), env)
    finally:
        if sft:  # no checkpoint callback in the SFT trainer: make its last checkpoint durable now
            try:
                upload_latest_checkpoint(layout.checkpoints, checkpoints_uri, keep)
            except Exception:
                log.exception("could not upload the SFT trainer's last checkpoint")

    step = latest_local_step(layout.checkpoints)
    if step is None:
        raise RuntimeError(f"VeRL finished without a checkpoint in {layout.checkpoints}")
    if layout.merged.exists():
        shutil.rmtree(layout.merged)
    step_dir = layout.checkpoints / f"global_step_{step}"
    runner(merge_command(step_dir if sft else step_dir / "actor", layout.merged), env)
    model_dir, adapter_dir = layout.merged, None
    if spec.lora.enabled:
        adapter_dir = merge_lora_adapter(layout.merged, layout.lora_merged)
        model_dir = layout.lora_merged
    model_metrics = validate_hf_model(model_dir, layout.base_model)
    model_uri = storage.join(spec.output_uri, "model")
    storage.store_for(model_uri).delete_prefix(model_uri + "/")
    storage.upload_dir(model_dir, model_uri)
    adapter_uri = None
    if adapter_dir is not None:
        adapter_uri = storage.join(spec.output_uri, "adapter")
        storage.store_for(adapter_uri).delete_prefix(adapter_uri + "/")
        storage.upload_dir(adapter_dir, adapter_uri)
    history = read_history(layout.metrics, layout.earlier_metrics)
    result = TrainResult.succeeded(
        spec,
        model_uri=model_uri,
        adapter_uri=adapter_uri,
        steps=step,
        metrics={
            **summarise(history, train_rows),
            **model_metrics,
            "rows_left_out": float(sum(skipped.values())),
        },
        history=history,
        versions=versions(),
        started_at=started,
    )
    result.write(storage.join(spec.output_uri, "result.json"))
    return result
