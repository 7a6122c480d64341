"""Every Hydra override the VeRL engine builds exists in VeRL 0.9.1's own config (composed with Hydra).

Composition runs in .tools/verl-config (VeRL's config files + Hydra 1.3; `make trainer-tools`), because
installing verl into the dev venv would downgrade locked packages (see trainer/checks/install-verl-config.sh).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.contracts import ContractError, RunSpec
from continuous_learning_trainer.verl_engine.layout import Layout
from continuous_learning_trainer.verl_engine.overrides import (
    CALLBACK_CLASS,
    PPO_ENTRY,
    REWARD_MODULE,
    SFT_ENTRY,
    WALL_CLOCK_PPO_ENTRY,
    build_overrides,
    hydra_value,
    trainer_command,
    validate_for_verl,
)
from continuous_learning_trainer.verl_plugins import MODULE as PLUGINS
from continuous_learning_trainer.verl_plugins import SFT_DATASET, TOOL_AGENT

from tests.trainer.helpers import compose, needs_verl_config, run_spec

LAYOUT = Layout(Path("/fsx/runs/run-1"))


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
        kwargs = values["reward.custom_reward_function.reward_kwargs"]
        assert kwargs == {
            "format": 0.2,
            "tool_name": 0.4,
            "arguments": 0.4,
            "text": 1.0,
            "negative_penalty": 0.5,
            "tool_call_format": "hermes",
            "reward_function": None,
            "reward_function_kwargs": {},
        }
        assert values["data.filter_overlong_prompts"] is False  # prepare_dataset measures prompts
        assert values["transfer_queue.backend.SimpleStorage.num_data_storage_units"] == 8 * nnodes
        assert values["ray_kwargs.ray_init.runtime_env.env_vars"]["NCCL_NVLS_ENABLE"] == "0"
        assert values["ray_kwargs.ray_init.include_dashboard"] is False
        assert values["trainer.logger"] == ["console", "file"]
        assert values["actor_rollout_ref.model.override_config.attn_implementation"] == "sdpa"
        sglang = "actor_rollout_ref.rollout.engine_kwargs.sglang."
        assert values[sglang + "attention_backend"] == "triton"
        assert values[sglang + "sampling_backend"] == "pytorch"
        assert values[sglang + "grammar_backend"] == "none"  # the H200 run: no xgrammar in rollouts
        assert "actor_rollout_ref.model.lora_rank" not in values
        if tools:
            assert values["actor_rollout_ref.rollout.multi_turn.enable"] is True
            assert values["actor_rollout_ref.rollout.multi_turn.format"] == "hermes"
            assert values["actor_rollout_ref.rollout.agent.default_agent_loop"] == TOOL_AGENT
            assert values["actor_rollout_ref.rollout.agent.agent_loop_config_path"] == str(LAYOUT.agent_loops)
        else:
            assert "actor_rollout_ref.rollout.multi_turn.enable" not in values
            assert "actor_rollout_ref.rollout.agent.agent_loop_config_path" not in values


@needs_verl_config
@pytest.mark.parametrize("fmt", ["hermes", "llama3_json", "mistral"])
def test_tool_call_format_reaches_the_tool_agent_loop_and_the_reward(fmt: str) -> None:
    spec = run_spec(tool_call_format=fmt)
    [result] = compose([build_overrides(spec, LAYOUT, has_tools=True, train_rows=100)])
    assert result["ok"], result.get("error")
    values = result["values"]
    assert values["actor_rollout_ref.rollout.multi_turn.format"] == fmt
    assert values["reward.custom_reward_function.reward_kwargs"]["tool_call_format"] == fmt


@needs_verl_config
def test_user_reward_function_and_kwargs_survive_hydra() -> None:
    """Whatever the user writes in reward.kwargs comes back from VeRL's config as written (quotes,
    backslashes, ``${...}`` that OmegaConf would otherwise interpolate, nested values)."""
    user_kwargs = {
        "scale": 2,
        "label": "it's ${not.a.key} C:\\path\\",
        "words": ["a b", "null", "0", True, None],
        "nested": {"x-y": 1.5, "z": {}},
    }
    for function in ("my_pkg.rewards:score", "file:///opt/r/my_reward.py:score", "s3://b/r.py:fn"):
        spec = run_spec(reward={"function": function, "kwargs": user_kwargs})
        [result] = compose([build_overrides(spec, LAYOUT, train_rows=100)])
        assert result["ok"], result.get("error")
        kwargs = result["values"]["reward.custom_reward_function.reward_kwargs"]
        assert kwargs["reward_function"] == function
        assert kwargs["reward_function_kwargs"] == user_kwargs


def test_reward_kwargs_hydra_cannot_write_are_rejected_early() -> None:
    with pytest.raises(ValueError, match=r"reward\.kwargs"):
        validate_for_verl(run_spec(reward={"kwargs": {"max len": 3}}))


@needs_verl_config
@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_lora_overrides_compose(algorithm: str) -> None:
    specs = [
        run_spec(algorithm=algorithm, lora={"enabled": True, "rank": 32, "alpha": 64.0}),
        run_spec(algorithm=algorithm, lora={"enabled": True, "target_modules": ["q_proj", "v_proj"]}),
    ]
    results = compose([build_overrides(s, LAYOUT, has_tools=True, train_rows=100) for s in specs])
    for spec, result in zip(specs, results, strict=True):
        assert result["ok"], result.get("error")
        values = result["values"]
        assert values["actor_rollout_ref.model.lora_rank"] == spec.lora.rank
        # an int: HFModelConfig.lora_alpha is typed int and OmegaConf refuses 64.0 there
        assert values["actor_rollout_ref.model.lora_alpha"] == int(spec.lora.alpha)
        assert isinstance(values["actor_rollout_ref.model.lora_alpha"], int)
        assert values["actor_rollout_ref.model.target_modules"] == spec.lora.target_modules
        assert values["actor_rollout_ref.rollout.load_format"] == "safetensors"
        assert values["actor_rollout_ref.rollout.layered_summon"] is True
        assert values["actor_rollout_ref.actor.optim.lr"] == spec.hyperparameters.learning_rate


@pytest.mark.parametrize(
    ("lora", "message"),
    [({"alpha": 12.5}, "whole number"), ({"dropout": 0.1}, "no dropout")],
)
def test_lora_settings_verl_cannot_take_are_rejected(lora: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_for_verl(run_spec(lora={"enabled": True, **lora}))


def sft_spec(**changes: Any) -> RunSpec:
    return run_spec(algorithm="sft", **changes)


@needs_verl_config
def test_sft_overrides_compose_against_verl_sft_config() -> None:
    """The SFT run's overrides exist in VeRL 0.9.1's sft_trainer_engine config (VeRL's SFT trainer)."""
    specs = [
        sft_spec(),
        sft_spec(
            lora={"enabled": True, "rank": 8, "alpha": 16},
            resources={"nnodes": 2, "n_gpus_per_node": 8},
            hyperparameters={"prompts_per_step": 16},
            verl={"max_tokens_per_gpu": 16384},
        ),
    ]
    cases = [
        {"config": "sft_trainer_engine", "overrides": build_overrides(s, LAYOUT, train_rows=64)}
        for s in specs
    ]
    results = compose(cases)
    for spec, result in zip(specs, results, strict=True):
        assert result["ok"], result.get("error")
        values = result["values"]
        hp = spec.hyperparameters
        assert values["data.train_files"] == str(LAYOUT.sft_train_file)
        assert values["data.custom_cls.path"] == f"pkg://{PLUGINS}"
        assert values["data.custom_cls.name"] == SFT_DATASET
        assert values["data.messages_key"] == "messages" and values["data.tools_key"] == "tools"
        assert values["data.train_batch_size"] == hp.prompts_per_step
        assert values["data.max_length"] == spec.verl.max_prompt_length + hp.max_completion_tokens
        assert values["data.max_token_len_per_gpu"] >= values["data.max_length"]
        assert values["model.path"] == str(LAYOUT.base_model)
        assert values["model.override_config.attn_implementation"] == "sdpa"
        assert values["optim.lr"] == hp.learning_rate
        assert values["trainer.total_training_steps"] == hp.max_steps
        assert values["trainer.default_local_dir"] == str(LAYOUT.checkpoints)
        assert values["trainer.resume_mode"] == "auto"
        assert values["trainer.nnodes"] == spec.resources.nnodes
        assert values["trainer.logger"] == ["console", "file"]
        assert ("model.lora_rank" in values) == spec.lora.enabled
    assert results[1]["values"]["model.lora_alpha"] == 16
    assert results[1]["values"]["data.max_token_len_per_gpu"] == 16384
    # the SFT overrides are not main_ppo's: they do not compose against ppo_trainer
    [wrong] = compose([build_overrides(specs[0], LAYOUT, train_rows=64)])
    assert not wrong["ok"]


def test_trainer_command_follows_the_algorithm() -> None:
    assert trainer_command(sft_spec(), ["a=1"])[1:] == ["-m", SFT_ENTRY, "a=1"]
    assert trainer_command(run_spec(), ["a=1"])[1:] == ["-m", PPO_ENTRY, "a=1"]


@pytest.mark.parametrize(
    ("changes", "rows", "message"),
    [
        (
            {"resources": {"nnodes": 1, "n_gpus_per_node": 8}, "hyperparameters": {"prompts_per_step": 12}},
            None,
            "multiple of the GPU count",
        ),
        ({}, 3, "fewer than prompts_per_step"),
        ({"verl": {"max_tokens_per_gpu": 512}}, None, "cannot hold one example"),
    ],
)
def test_sft_validation(changes: dict[str, Any], rows: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_for_verl(sft_spec(**changes), train_rows=rows)


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
        ("${x}", "'\\${x}'"),
        ("a\\", "'a\\\\'"),
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


@needs_verl_config
def test_wall_clock_checkpoints_and_deadline_compose_and_pick_the_wall_clock_entry() -> None:
    spec = run_spec(hyperparameters={"checkpoint_every_seconds": 600.0})
    overrides = build_overrides(spec, LAYOUT, train_rows=1000, stop_at=1_800_000_000.5)
    deadline_only = build_overrides(run_spec(), LAYOUT, train_rows=1000, stop_at=1_800_000_000.5)
    plain = build_overrides(run_spec(), LAYOUT, train_rows=1000)
    results = compose([overrides, deadline_only])
    assert all(r["ok"] for r in results), results
    values = results[0]["values"]
    assert values["trainer.v1.trainer_mode"] == "cl_sync"
    assert values["continuous_learning.checkpoint_every_seconds"] == 600.0
    assert values["continuous_learning.stop_at"] == 1_800_000_000.5
    assert values["trainer.save_freq"] == 2  # checkpoints by step as well
    assert results[1]["values"]["continuous_learning.checkpoint_every_seconds"] is None
    assert trainer_command(spec, overrides)[2] == WALL_CLOCK_PPO_ENTRY
    assert trainer_command(run_spec(), deadline_only)[2] == WALL_CLOCK_PPO_ENTRY
    # neither asked for: VeRL's own trainer and entry point, as before
    assert not any("continuous_learning." in o or "trainer_mode" in o for o in plain)
    assert trainer_command(run_spec(), plain)[2] == PPO_ENTRY
