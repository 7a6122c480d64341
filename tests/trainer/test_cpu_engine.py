"""The CPU engine on tiny local models: prompts in the model's own template, eos handling, LoRA GRPO with
resume, the SFT candidate, the imitation warm start and a user's reward in training."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.contracts import ImitationOptions, RunSpec, TrainResult
from continuous_learning.models.tool_calls import format_calls
from continuous_learning_trainer import cpu_engine, prompts, reward_function, sft
from continuous_learning_trainer.chat import END

from tests.trainer.helpers import CHATML, LONDON, PARIS, TOOLS, reference_rows, run_spec, write_rows


def cpu_spec(tmp_path: Path, base: Path, train_uri: str, **overrides: Any) -> RunSpec:
    spec = run_spec(
        tmp_path,
        engine="cpu",
        base_model_uri=f"file://{base}",
        resources={"nnodes": 1, "n_gpus_per_node": 0, "cpu_threads": 2},
        hyperparameters={
            "learning_rate": 1e-3,
            "max_steps": 2,
            "samples_per_prompt": 2,
            "prompts_per_step": 2,
            "max_completion_tokens": 8,
            "kl_coef": 0.0,
            "checkpoint_every": 1,
        },
        **overrides,
    )
    return spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"train_uri": train_uri})})


def test_prompts_use_the_models_template_or_the_tiny_format(
    models: dict[str, Path], tmp_path: Path, rendered: list[tuple[Any, Any]]
) -> None:
    from transformers import AutoTokenizer

    uri = write_rows(tmp_path / "train.parquet", reference_rows(3))
    plain = prompts.load_prompts(uri, AutoTokenizer.from_pretrained(models["plain"]))
    assert plain[0]["prompt"].startswith("<|system|>You help travellers.") and not rendered
    chatml = prompts.load_prompts(uri, AutoTokenizer.from_pretrained(models["chatml"]))
    assert [tools for _, tools in rendered] == [TOOLS, TOOLS, None]
    assert chatml[0]["prompt"].startswith("<|im_start|>system\nTools: ")
    assert chatml[2]["prompt"].endswith("<|im_start|>user\nsay hello 2<|im_end|>\n<|im_start|>assistant\n")
    assert (
        chatml[0]["reference_source"] == "correction" and json.loads(chatml[0]["ground_truth"])["tool_calls"]
    )


def test_completions_are_cut_at_eos_and_padding_dropped(models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = prompts.prepare_tokenizer(AutoTokenizer.from_pretrained(models["chatml"]))
    assert tokenizer.pad_token == "<|im_end|>"  # a real model's tokenizer may have none
    text = format_calls([PARIS]) + "<|im_end|>" + "trailing words"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stops = prompts.stop_token_ids(tokenizer)
    assert prompts.decode_completion(tokenizer, ids, stops) == format_calls([PARIS])
    plain = AutoTokenizer.from_pretrained(models["plain"])
    ids = plain("hello there", add_special_tokens=False)["input_ids"] + [
        plain.eos_token_id,
        plain.pad_token_id,
    ]
    assert prompts.decode_completion(plain, ids, prompts.stop_token_ids(plain)) == "hello there"


def test_lora_grpo_writes_merged_model_and_adapter_and_resumes(
    models: dict[str, Path], tmp_path: Path, rendered: list[tuple[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "cl_test_grpo_reward.py").write_text(
        "SEEN = []\n\ndef length(response, reference, tools, **kwargs):\n"
        "    SEEN.append(response)\n    return float(len(response))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    uri = write_rows(tmp_path / "ds" / "train.parquet", reference_rows(6))
    lora = {"enabled": True, "rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj"]}
    spec = cpu_spec(
        tmp_path, models["chatml"], uri, lora=lora, reward={"function": "cl_test_grpo_reward:length"}
    )
    result = cpu_engine.train(spec)
    out = tmp_path / "runs" / "run-1"
    assert result.steps == 2 and result.adapter_uri == f"file://{out}/adapter"
    assert rendered, "prompts rendered by the model's chat template"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4
    with safe_open(str(out / "model" / "model.safetensors"), "pt") as weights:
        assert not [k for k in weights.keys() if "lora" in k or "base_model" in k]  # noqa: SIM118
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    assert type(merged).__name__ == "Qwen2ForCausalLM"
    seen = sys.modules["cl_test_grpo_reward"].SEEN
    assert len(seen) == 2 * 2 * 2  # steps x prompts x samples: the user's reward scored every completion
    assert not any("<|im_end|>" in s for s in seen)
    rewards = [h["reward"] for h in result.history]
    assert rewards and all(r == pytest.approx(sum(map(len, seen[:4])) / 4) for r in rewards[:1])
    assert TrainResult.read(f"file://{out}/result.json").adapter_uri == result.adapter_uri
    # a later attempt with more steps resumes from the uploaded checkpoint-2 (adapter + optimizer)
    longer = spec.model_copy(
        update={"hyperparameters": spec.hyperparameters.model_copy(update={"max_steps": 3})}
    )
    resumed = cpu_engine.train(longer)
    assert resumed.steps == 3 and len(seen) == 8 + 4
    assert [int(h["step"]) for h in resumed.history if "step" in h][-1] == 3


def test_sft_candidate_lowers_its_loss(
    models: dict[str, Path], tmp_path: Path, rendered: list[tuple[Any, Any]]
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    uri = write_rows(tmp_path / "ds" / "train.parquet", reference_rows(9))
    spec = cpu_spec(tmp_path, models["chatml"], uri, algorithm="sft")
    spec = spec.model_copy(
        update={
            "hyperparameters": spec.hyperparameters.model_copy(
                update={
                    "max_steps": 12,
                    "learning_rate": 5e-3,
                    "prompts_per_step": 3,
                    "checkpoint_every": 100,
                }
            )
        }
    )
    result = cpu_engine.train(spec)
    m = result.metrics
    assert result.steps == 12 and m["train_rows"] == 9.0 and result.adapter_uri is None
    assert m["loss_last"] < m["loss_first"] * 0.8
    assert m["reward_samples"] == 4.0
    assert all(value == value for value in m.values())  # NaN-free
    out = tmp_path / "runs" / "run-1"
    AutoModelForCausalLM.from_pretrained(out / "model")
    assert AutoTokenizer.from_pretrained(out / "model").pad_token == "<|im_end|>"
    assert len(result.history) == 12


def test_sft_completions_are_the_reference_in_the_models_turn(
    models: dict[str, Path], tmp_path: Path, rendered: list[tuple[Any, Any]]
) -> None:
    from transformers import AutoTokenizer

    rows = prompts.load_rows(write_rows(tmp_path / "train.parquet", reference_rows(3)))
    references = [json.loads(r["ground_truth"]) for r in rows]
    chatml = AutoTokenizer.from_pretrained(models["chatml"])
    assert sft.assistant_turn(chatml) == ("", "<|im_end|>")
    examples = sft.sft_examples(chatml, rows, references, "hermes")
    assert [e["completion"] for e in examples] == [
        format_calls([PARIS]) + "<|im_end|>",
        format_calls([PARIS]) + "<|im_end|>",
        "hello there<|im_end|>",
    ]
    assert examples[0]["prompt"].endswith("<|im_start|>assistant\n")
    plain = AutoTokenizer.from_pretrained(models["plain"])
    assert (
        sft.sft_examples(plain, rows[2:], references[2:], "hermes")[0]["completion"] == "hello there"
    )  # TRL adds END
    assert plain.eos_token == END


def test_imitation_learns_the_agents_own_answers_in_place(
    models: dict[str, Path], tmp_path: Path, rendered: list[tuple[Any, Any]]
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    uri = write_rows(tmp_path / "ds" / "train.parquet", reference_rows(6))
    model_dir = tmp_path / "imported"
    shutil.copytree(models["chatml"], model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = sft.imitation_examples(tokenizer, prompts.load_rows(uri), "hermes")
    # corrections: the answer the user corrected (London); positive feedback: the reference (Paris);
    # a correction without a kept negative: the reference
    assert [e["completion"] for e in examples[:3]] == [
        format_calls([LONDON]) + "<|im_end|>",
        format_calls([PARIS]) + "<|im_end|>",
        "hello there<|im_end|>",
    ]
    before = (model_dir / "model.safetensors").read_bytes()
    dataset = json.loads(
        json.dumps(
            {"dataset_id": "d", "train_uri": uri, "validation_uri": uri, "test_uri": uri, "manifest_uri": uri}
        )
    )
    options = ImitationOptions(dataset=dataset, steps=8, learning_rate=5e-3, seed=0)
    metrics = sft.imitate_agent(model_dir, options, "hermes", threads=2)
    assert metrics["rows"] == 6.0 and metrics["corrected_rows"] == 2.0 and metrics["steps"] == 8.0
    assert metrics["loss_last"] < metrics["loss_first"] and metrics["seconds"] > 0
    assert (model_dir / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in model_dir.glob("*.safetensors")) == ["model.safetensors"]
    AutoModelForCausalLM.from_pretrained(model_dir)
    assert AutoTokenizer.from_pretrained(model_dir).chat_template == CHATML


def test_a_bad_reward_name_fails_before_training(models: dict[str, Path], tmp_path: Path) -> None:
    uri = write_rows(tmp_path / "ds" / "train.parquet", reference_rows(3))
    spec = cpu_spec(tmp_path, models["plain"], uri, reward={"function": f"file://{tmp_path}/absent.py:fn"})
    with pytest.raises(reward_function.RewardFunctionError, match="cannot read"):
        cpu_engine.train(spec)


def test_sft_with_lora_writes_adapter_and_merged_model(
    models: dict[str, Path], tmp_path: Path, rendered: list[tuple[Any, Any]]
) -> None:
    from transformers import AutoModelForCausalLM

    uri = write_rows(tmp_path / "ds" / "train.parquet", reference_rows(4))
    spec = cpu_spec(tmp_path, models["plain"], uri, algorithm="sft", lora={"enabled": True, "rank": 2})
    result = cpu_engine.train(spec)
    out = tmp_path / "runs" / "run-1"
    assert result.steps == 2 and result.adapter_uri == f"file://{out}/adapter"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["target_modules"]
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    assert not [k for k in merged.state_dict() if "lora" in k]
    assert not rendered  # the tiny model has no chat template: the project's text format


def test_sigterm_after_the_first_checkpoint_keeps_what_was_learned(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """The real entry point in its own process, checkpointing by wall time only: SIGTERM once the first
    checkpoint is in storage; it exits 0 with a ``stopped`` result whose model is its last checkpoint."""
    import os
    import signal
    import subprocess
    import time

    from safetensors.torch import load_file

    from tests.servers import stop_process_group

    uri = write_rows(tmp_path / "ds" / "train.parquet", reference_rows(6))
    spec = cpu_spec(tmp_path, models["plain"], uri)
    hp = {"max_steps": 100_000, "checkpoint_every": 100_000, "checkpoint_every_seconds": 0.5}
    spec = spec.model_copy(update={"hyperparameters": spec.hyperparameters.model_copy(update=hp)})
    spec_uri = spec.write(f"file://{tmp_path}/spec.json")
    out = tmp_path / "runs" / "run-1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "continuous_learning_trainer", "train", "--spec", spec_uri],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("checkpoints/checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, f"the trainer exited early ({proc.returncode})"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        stop_process_group(proc)
    result = TrainResult.read(f"file://{out}/result.json")
    assert result.status == "stopped" and 1 <= result.steps < 100_000
    assert result.stop_reason == f"SIGTERM: stopped at step {result.steps}, the latest checkpoint merged"
    assert result.model_uri == f"file://{out}/model"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "model")
    checkpoint = load_file(out / "checkpoints" / f"checkpoint-{result.steps}" / "model.safetensors")
    merged = load_file(out / "model" / "model.safetensors")
    assert checkpoint.keys() == merged.keys()
    assert all(bool((checkpoint[k] == merged[k]).all()) for k in checkpoint)  # the step's own weights


def test_time_limit_stops_with_a_checkpoint(models: dict[str, Path], tmp_path: Path) -> None:
    from continuous_learning_trainer.stopping import StopRequest

    uri = write_rows(tmp_path / "ds" / "train.parquet", reference_rows(6))
    spec = cpu_spec(tmp_path, models["plain"], uri, algorithm="sft")
    hp = {"max_steps": 100_000, "checkpoint_every": 100_000, "max_seconds": 2.0}
    spec = spec.model_copy(update={"hyperparameters": spec.hyperparameters.model_copy(update=hp)})
    result = cpu_engine.train(spec, stop=StopRequest(spec.hyperparameters.max_seconds))
    out = tmp_path / "runs" / "run-1"
    assert result.status == "stopped" and 1 <= result.steps < 100_000
    assert (result.stop_reason or "").startswith("time limit of 2 s: stopped at step")
    assert (out / "checkpoints" / f"checkpoint-{result.steps}" / "trainer_state.json").exists()
    assert (out / "model" / "model.safetensors").exists()
