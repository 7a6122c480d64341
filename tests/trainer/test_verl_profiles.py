"""Performance profiles: the settings tuned on an H200 (benchmarks/gpu/RESULTS.md) become the trainer's
defaults for that GPU class, compose against VeRL 0.9.1's config, and stay out of the way elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from continuous_learning_trainer.verl_engine.layout import Layout
from continuous_learning_trainer.verl_engine.overrides import build_overrides, validate_for_verl
from continuous_learning_trainer.verl_engine.profiles import (
    HOPPER_ACTOR_TOKENS_PER_GPU,
    model_parameters,
    profile_for,
)

from tests.trainer.helpers import compose, needs_verl_config, run_spec

LAYOUT = Layout(Path("/fsx/runs/run-1"))
#: Qwen2-0.5B's body with the benchmark's 693-token vocabulary: 358,519,040 parameters counted by
#: PyTorch on the H200 (benchmarks/gpu/logs/model.json).
BENCH_MODEL = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 693,
    "tie_word_embeddings": True,
}
#: Qwen2-7B's shape.
LARGE_MODEL = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}
PROFILE_KEYS = (
    "actor_rollout_ref.actor.use_dynamic_bsz",
    "actor_rollout_ref.ref.log_prob_use_dynamic_bsz",
    "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz",
)


def overrides(spec: Any, model_config: dict[str, Any] | None = None) -> dict[str, str]:
    built = build_overrides(spec, LAYOUT, train_rows=1000, model_config=model_config)
    return dict(o.split("=", 1) for o in built)


@pytest.mark.parametrize(
    ("gpu_class", "profile", "expected"),
    [
        ("h200", "auto", "hopper"),
        ("H100", "auto", "hopper"),
        ("a100", "auto", "verl-defaults"),
        (None, "auto", "verl-defaults"),
        ("h200", "verl-defaults", "verl-defaults"),
        (None, "hopper", "hopper"),
    ],
)
def test_profile_follows_gpu_class_unless_set(gpu_class: str | None, profile: str, expected: str) -> None:
    spec = run_spec(resources={"gpu_class": gpu_class}, verl={"profile": profile})
    assert profile_for(spec) == expected


def test_parameter_estimate_matches_the_count_measured_on_the_gpu() -> None:
    estimate = model_parameters(BENCH_MODEL)
    assert estimate is not None
    assert abs(estimate - 358_519_040) / 358_519_040 < 0.001  # norms and biases are left out
    large = model_parameters(LARGE_MODEL)
    assert large is not None and 7.0e9 < large < 7.7e9
    assert model_parameters({"hidden_size": 8}) is None


def test_hopper_profile_packs_tokens_and_drops_recomputation_where_it_fits() -> None:
    spec = run_spec(resources={"gpu_class": "h200", "n_gpus_per_node": 1})
    small = overrides(spec, BENCH_MODEL)
    for key in PROFILE_KEYS:
        assert small[key] == "true"
    assert small["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"] == str(HOPPER_ACTOR_TOKENS_PER_GPU)
    assert small["actor_rollout_ref.ref.log_prob_max_token_len_per_gpu"] == str(
        2 * HOPPER_ACTOR_TOKENS_PER_GPU
    )
    # the measured case: 0.36B at 32k tokens on one H200 (51 GB peak)
    assert small["actor_rollout_ref.model.enable_gradient_checkpointing"] == "false"
    # not measured, and estimated not to fit: the same on an 80 GB H100, or a 7B model on an H200
    h100 = overrides(run_spec(resources={"gpu_class": "h100", "n_gpus_per_node": 1}), BENCH_MODEL)
    assert "actor_rollout_ref.model.enable_gradient_checkpointing" not in h100
    assert "actor_rollout_ref.model.enable_gradient_checkpointing" not in overrides(spec, LARGE_MODEL)
    assert "actor_rollout_ref.model.enable_gradient_checkpointing" not in overrides(spec, None)
    # a smaller token budget makes room again
    small_budget = run_spec(
        resources={"gpu_class": "h100", "n_gpus_per_node": 1}, verl={"max_tokens_per_gpu": 8192}
    )
    budget = overrides(small_budget, BENCH_MODEL)
    assert budget["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"] == "8192"
    assert budget["actor_rollout_ref.model.enable_gradient_checkpointing"] == "false"


def test_without_a_known_gpu_class_the_overrides_are_verl_defaults() -> None:
    plain = overrides(run_spec(), BENCH_MODEL)
    assert not any(key in plain for key in PROFILE_KEYS)
    assert "actor_rollout_ref.model.enable_gradient_checkpointing" not in plain


def test_profile_validation() -> None:
    # micro-batch divisibility only matters without token budgets
    odd = {
        "hyperparameters": {"prompts_per_step": 2, "samples_per_prompt": 4},
        "verl": {"micro_batch_size_per_gpu": 2},
    }
    validate_for_verl(run_spec(resources={"gpu_class": "h200"}, **odd))
    with pytest.raises(ValueError, match="micro_batch_size_per_gpu"):
        validate_for_verl(run_spec(**odd))
    too_small = run_spec(resources={"gpu_class": "h200"}, verl={"max_tokens_per_gpu": 512})
    with pytest.raises(ValueError, match="max_tokens_per_gpu=512 cannot hold one sequence"):
        validate_for_verl(too_small)


@needs_verl_config
@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_hopper_profile_composes_against_verl_config(algorithm: str) -> None:
    spec = run_spec(algorithm=algorithm, resources={"gpu_class": "h200", "n_gpus_per_node": 1})
    [result] = compose([build_overrides(spec, LAYOUT, train_rows=1000, model_config=BENCH_MODEL)])
    assert result["ok"], result.get("error")
    values = result["values"]
    assert values["actor_rollout_ref.actor.use_dynamic_bsz"] is True
    assert (
        values["actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu"] == 2 * HOPPER_ACTOR_TOKENS_PER_GPU
    )
    assert values["actor_rollout_ref.model.enable_gradient_checkpointing"] is False
    assert ("critic.use_dynamic_bsz" in values) == (algorithm == "ppo")
