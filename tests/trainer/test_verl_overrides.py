"""Every Hydra override the VeRL engine builds exists in VeRL 0.9.1's own config (composed with Hydra).

Composition runs in .tools/verl-config (VeRL's config files + Hydra 1.3; `make trainer-tools`), because
installing verl into the dev venv would downgrade locked packages (see trainer/checks/install-verl-config.sh).
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.contracts import ContractError, RunSpec
from continuous_learning_trainer.verl_engine import (
    CALLBACK_CLASS,
    REWARD_MODULE,
    Layout,
    build_overrides,
    hydra_value,
    validate_for_verl,
)

from tests.trainer.helpers import REPO, run_spec

VERL_PY = REPO / ".tools" / "verl-config" / "bin" / "python"
COMPOSE = REPO / "trainer" / "checks" / "compose_verl_config.py"
LAYOUT = Layout(Path("/fsx/runs/run-1"))
needs_verl_config = pytest.mark.skipif(
    not VERL_PY.exists(), reason="run `make trainer-tools` (VeRL config venv under .tools/)"
)


def compose(cases: list[list[str]]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(VERL_PY), str(COMPOSE)], input=json.dumps(cases), capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def grid() -> list[tuple[str, int, bool]]:
    return list(itertools.product(["grpo", "ppo"], [1, 2, 4, 8, 16], [False, True]))


def spec_for(algorithm: str, nnodes: int) -> RunSpec:
    return run_spec(
        algorithm=algorithm,
        resources={"nnodes": nnodes, "n_gpus_per_node": 8},
        hyperparameters={"prompts_per_step": 16 * nnodes, "samples_per_prompt": 4, "max_steps": 10},
        verl={"rollout_tensor_parallel_size": 2, "rollout_gpu_memory_utilization": 0.6},
    )


@needs_verl_config
def test_every_override_composes_against_verl_config() -> None:
    cases = [build_overrides(spec_for(a, n), LAYOUT, has_tools=t, train_rows=1000) for a, n, t in grid()]
    results = compose(cases)
    for (algorithm, nnodes, tools), result in zip(grid(), results, strict=True):
        assert result["ok"], (algorithm, nnodes, tools, result.get("error"))
        values = result["values"]
        assert values["actor_rollout_ref.rollout.name"] == "sglang"
        assert values["actor_rollout_ref.rollout.tensor_model_parallel_size"] == 2
        assert values["actor_rollout_ref.rollout.gpu_memory_utilization"] == 0.6
        assert values["actor_rollout_ref.rollout.n"] == 4
        assert values["algorithm.adv_estimator"] == ("gae" if algorithm == "ppo" else "grpo")
        assert ("critic.model.path" in values) == (algorithm == "ppo")
        assert values["trainer.nnodes"] == nnodes
        assert values["trainer.n_gpus_per_node"] == 8
        assert values["trainer.resume_mode"] == "auto"
        assert values["trainer.checkpoint_callback_class"] == CALLBACK_CLASS
        assert values["reward.custom_reward_function.path"] == REWARD_MODULE
        assert values["reward.custom_reward_function.name"] == "compute_score"
        assert values["reward.custom_reward_function.reward_kwargs"]["format"] == 0.2
        assert values["transfer_queue.backend.SimpleStorage.num_data_storage_units"] == 8 * nnodes
        assert values["ray_kwargs.ray_init.runtime_env.env_vars"]["NCCL_NVLS_ENABLE"] == "0"
        assert values["ray_kwargs.ray_init.include_dashboard"] is False
        assert values["trainer.logger"] == ["console", "file"]
        assert values["actor_rollout_ref.model.override_config.attn_implementation"] == "sdpa"
        sglang = "actor_rollout_ref.rollout.engine_kwargs.sglang."
        assert values[sglang + "attention_backend"] == "triton"
        assert values[sglang + "sampling_backend"] == "pytorch"
        assert values[sglang + "grammar_backend"] == "none"  # the H200 run: no xgrammar in rollouts
        if tools:
            assert values["actor_rollout_ref.rollout.multi_turn.enable"] is True
            assert values["actor_rollout_ref.rollout.agent.default_agent_loop"] == "tool_agent"
        else:
            assert "actor_rollout_ref.rollout.multi_turn.enable" not in values


@needs_verl_config
def test_composition_rejects_unknown_keys() -> None:
    """The check has teeth: a key VeRL does not declare, or `+` on one it does, fails to compose."""
    good = build_overrides(spec_for("grpo", 1), LAYOUT)
    results = compose([[*good, "trainer.no_such_key=1"], [*good, "+trainer.nnodes=2"]])
    assert [r["ok"] for r in results] == [False, False]


@needs_verl_config
def test_extra_overrides_are_appended_and_composed() -> None:
    spec = run_spec(verl={"extra_overrides": ["actor_rollout_ref.actor.use_torch_compile=false"]})
    [result] = compose([build_overrides(spec, LAYOUT)])
    assert result["ok"], result
    assert result["values"]["actor_rollout_ref.actor.use_torch_compile"] is False


def test_overrides_are_a_pure_function_of_the_spec() -> None:
    spec = spec_for("grpo", 2)
    assert build_overrides(spec, LAYOUT, train_rows=100) == build_overrides(spec, LAYOUT, train_rows=100)
    overrides = dict(o.split("=", 1) for o in build_overrides(spec, LAYOUT, train_rows=100))
    assert overrides["trainer.total_training_steps"] == "10"
    assert overrides["trainer.total_epochs"] == "4"  # 100 rows / 32 prompts = 3 steps per epoch
    assert overrides["trainer.default_local_dir"] == "/fsx/runs/run-1/checkpoints"
    assert run_spec(resume=False) and "trainer.resume_mode=disable" in build_overrides(
        run_spec(resume=False), LAYOUT
    )


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (True, "true"),
        (None, "null"),
        (3, "3"),
        ("sglang", "sglang"),
        ("0", "'0'"),
        ("null", "'null'"),
        ("a b", "'a b'"),
        ("it's", "'it\\'s'"),
        (["console", "file"], "[console,file]"),
        ({"k": "v", "n": 1}, "{k:v,n:1}"),
    ],
)
def test_hydra_value(value: Any, rendered: str) -> None:
    assert hydra_value(value) == rendered


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resources": {"nnodes": 1, "n_gpus_per_node": 0}}, "n_gpus_per_node >= 1"),
        ({"verl": {"rollout_tensor_parallel_size": 3}}, "must divide"),
        ({"hyperparameters": {"prompts_per_step": 3, "samples_per_prompt": 2}}, "multiple of the GPU count"),
        (
            {
                "hyperparameters": {"prompts_per_step": 2, "samples_per_prompt": 4},
                "verl": {"micro_batch_size_per_gpu": 2},
            },
            "micro_batch_size_per_gpu",
        ),
        ({"engine": "cpu"}, "not 'verl'"),
    ],
)
def test_validation_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_for_verl(run_spec(**changes))


def test_train_rows_below_batch_is_rejected() -> None:
    with pytest.raises(ValueError, match="fewer than prompts_per_step"):
        validate_for_verl(run_spec(), train_rows=1)


def test_spec_round_trip(tmp_path: Path) -> None:
    spec = run_spec(verl={"work_dir": "/fsx/cl", "loggers": ["console"]})
    uri = spec.write(f"file://{tmp_path}/spec.json")
    assert RunSpec.read(uri) == spec
    older = json.loads((tmp_path / "spec.json").read_text())
    del older["verl"]  # documents written before the field existed still read, with defaults
    (tmp_path / "old.json").write_text(json.dumps(older))
    assert RunSpec.read(f"file://{tmp_path}/old.json").verl.rollout_tensor_parallel_size == 1


def test_spec_rejects_unknown_verl_option(tmp_path: Path) -> None:
    doc = json.loads(run_spec().model_dump_json())
    doc["verl"]["tensor_parallel"] = 2
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ContractError, match="tensor_parallel"):
        RunSpec.read(f"file://{tmp_path}/bad.json")
