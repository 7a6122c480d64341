"""VeRL performance profiles by GPU class: the Hydra items that tune a run for its accelerator.

``verl.profile: auto`` picks the profile tuned for ``resources.gpu_class`` (h100/h200: ``hopper``), else
VeRL's defaults; measured on one H200 (benchmarks/gpu/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from continuous_learning.contracts import RunSpec

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
