"""VeRL engine: a RunSpec becomes one ``verl.trainer.main_ppo`` run with SGLang rollouts.

The run, on the Ray cluster this process is started in (``RAY_ADDRESS``, or the local head):

1. download the base model and the train/validation parquet files into a work folder (shared, e.g.
   FSx, when the job spans nodes: VeRL's workers write checkpoint shards there);
2. when the dataset carries tools: write a VeRL tool config with their schemas and tag each row for
   the tool agent loop (``agent_name``, ``extra_info.tool_selection``);
3. restore the last committed checkpoint from storage (``resume_mode=auto`` then continues from it);
4. run ``python -m verl.trainer.main_ppo`` with Hydra overrides built by :func:`build_overrides`, a pure
   function of the spec (tested on CPU against VeRL's own config); :class:`UploadCheckpointCallback`
   uploads every checkpoint VeRL saves;
5. merge the last checkpoint to Hugging Face format (``python -m verl.model_merger merge``), validate it,
   upload it to ``<output_uri>/model`` and write ``<output_uri>/result.json`` (a TrainResult).

Storage layout under ``output_uri`` (the same as the CPU engine's): ``model/``, ``checkpoints/``
(``global_step_N/`` and ``latest_checkpointed_iteration.txt``, written last: the commit marker),
``result.json``.
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

log = logging.getLogger(__name__)

REWARD_MODULE = "pkg://continuous_learning_trainer.rewards"
REWARD_FUNCTION = "compute_score"
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
    def tool_config(self) -> Path:
        return self.root / "tools.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

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


def hydra_value(value: Any) -> str:
    """Render a value in Hydra's override grammar (strings quoted when they need it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _BARE.match(text) and text.lower() not in _RESERVED and not _looks_numeric(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
    tp = opts.rollout_tensor_parallel_size
    if res.n_gpus_per_node % tp:
        raise ValueError(
            f"verl.rollout_tensor_parallel_size={tp} must divide resources.n_gpus_per_node={res.n_gpus_per_node}"
        )
    world = res.nnodes * res.n_gpus_per_node
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
    """The Hydra overrides for ``verl.trainer.main_ppo`` (config ``ppo_trainer``), from the spec alone.

    A ``+`` prefix adds a key VeRL's config does not declare (Hydra refuses ``+`` on existing keys and
    plain overrides on missing ones); tests compose VeRL 0.9.1's config with these to prove each exists.
    """
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
        ("data.filter_overlong_prompts", True),
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
        # reward: the project's reward module, weighted by the spec
        ("reward.custom_reward_function.path", REWARD_MODULE),
        ("reward.custom_reward_function.name", REWARD_FUNCTION),
        ("+reward.custom_reward_function.reward_kwargs", spec.reward_weights.model_dump()),
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
            ("actor_rollout_ref.rollout.multi_turn.format", "hermes"),
            ("actor_rollout_ref.rollout.agent.default_agent_loop", "tool_agent"),
        ]
    items += profile_overrides(spec, model_config)
    return [f"{key}={hydra_value(value)}" for key, value in items] + list(opts.extra_overrides)


# --------------------------------------------------------------------------- dataset preparation


def prepare_dataset(source_uri: str, target: Path) -> tuple[int, list[dict[str, Any]]]:
    """Download one split; tag rows for the tool agent loop when they carry tools.

    Returns the row count and the union of tool schemas (OpenAI function specs, first one per name).
    Rows with tools get ``agent_name=tool_agent`` and ``extra_info.tool_selection`` (their own tools);
    rows without get ``agent_name=single_turn_agent``.
    """
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(storage.read_bytes(source_uri)))
    rows = table.to_pylist()
    tools: dict[str, dict[str, Any]] = {}
    tagged = False
    for row in rows:
        specs = json.loads(row["extra_info"].get("tools_json") or "null") or []
        names = []
        for tool in specs:
            function = tool.get("function", tool)
            if "name" in function:
                names.append(function["name"])
                tools.setdefault(function["name"], {"type": "function", "function": function})
        row["extra_info"]["tool_selection"] = names
        row["agent_name"] = "tool_agent" if names else "single_turn_agent"
        tagged = tagged or bool(names)
    target.parent.mkdir(parents=True, exist_ok=True)
    if tagged:
        pq.write_table(pa.Table.from_pylist(rows), target)
    else:
        pq.write_table(table, target)
    return len(rows), list(tools.values())


def write_tool_config(tools: list[dict[str, Any]], path: Path) -> None:
    """VeRL's tool config: one native tool per schema. The tools are not executed in training (the
    agent loop stops after ``max_assistant_turns`` and the reward scores the calls), so VeRL's
    ``BaseTool`` serves as the stand-in implementation."""
    import yaml

    document = {
        "tools": [
            {"class_name": "verl.tools.base_tool.BaseTool", "config": {"type": "native"}, "tool_schema": tool}
            for tool in tools
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


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


def merge_command(actor_dir: Path, target_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "verl.model_merger",
        "merge",
        "--backend",
        "fsdp",
        "--local_dir",
        str(actor_dir),
        "--target_dir",
        str(target_dir),
    ]


def validate_hf_model(model_dir: Path, base_model: Path | None = None) -> dict[str, float]:
    """A merged model is usable when transformers reads its config, tokenizer files are there (copied
    from the base model when the merge left them out) and every safetensors file opens."""
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
    rewards = [h["critic/score/mean"] for h in history if "critic/score/mean" in h]
    window = max(1, len(rewards) // 4)
    last = history[-1] if history else {}
    return {
        "reward_first": sum(rewards[:window]) / window if rewards else 0.0,
        "reward_last": sum(rewards[-window:]) / window if rewards else 0.0,
        "response_length_last": last.get("response_length/mean", 0.0),
        "step_seconds_last": last.get("timing_s/step", 0.0),
        "train_rows": float(train_rows),
    }


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


def _train(spec: RunSpec, layout: Layout, runner: CommandRunner, started: datetime) -> TrainResult:
    layout.root.mkdir(parents=True, exist_ok=True)
    if not (layout.base_model / "config.json").exists():
        storage.download_dir(spec.base_model_uri.rstrip("/") + "/", layout.base_model)
    train_rows, tools = prepare_dataset(spec.dataset.train_uri, layout.train_file)
    _, val_tools = prepare_dataset(spec.dataset.validation_uri, layout.val_file)
    known = {t["function"]["name"] for t in tools}
    tools += [t for t in val_tools if t["function"]["name"] not in known]
    if tools:
        write_tool_config(tools, layout.tool_config)
    checkpoints_uri = storage.join(spec.output_uri, "checkpoints")
    if spec.resume:
        restore_checkpoint(checkpoints_uri, layout.checkpoints)
    write_upload_manifest(layout.checkpoints, checkpoints_uri, spec.verl.max_checkpoints_to_keep)
    model_config = json.loads((layout.base_model / "config.json").read_text())
    parameters = model_parameters(model_config)
    log.info(
        "performance profile %s (gpu class %s, base model ~%s parameters)",
        profile_for(spec),
        spec.resources.gpu_class or "unknown",
        f"{parameters:,}" if parameters else "?",
    )
    overrides = build_overrides(
        spec, layout, has_tools=bool(tools), train_rows=train_rows, model_config=model_config
    )
    env = {**os.environ, **WORKER_ENV, "VERL_FILE_LOGGER_PATH": str(layout.metrics), "PYTHONUNBUFFERED": "1"}
    env.setdefault("RAY_ADDRESS", "auto")  # the cluster this job runs in; never start a new one
    keep_earlier_metrics(layout)
    runner([sys.executable, "-m", "verl.trainer.main_ppo", *overrides], env)

    step = latest_local_step(layout.checkpoints)
    if step is None:
        raise RuntimeError(f"VeRL finished without a checkpoint in {layout.checkpoints}")
    if layout.merged.exists():
        shutil.rmtree(layout.merged)
    runner(merge_command(layout.checkpoints / f"global_step_{step}" / "actor", layout.merged), env)
    model_metrics = validate_hf_model(layout.merged, layout.base_model)
    model_uri = storage.join(spec.output_uri, "model")
    storage.store_for(model_uri).delete_prefix(model_uri + "/")
    storage.upload_dir(layout.merged, model_uri)
    history = read_history(layout.metrics, layout.earlier_metrics)
    result = TrainResult.succeeded(
        spec,
        model_uri=model_uri,
        steps=step,
        metrics={**summarise(history, train_rows), **model_metrics},
        history=history,
        versions=versions(),
        started_at=started,
    )
    result.write(storage.join(spec.output_uri, "result.json"))
    return result
