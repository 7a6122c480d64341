"""The VeRL engine's LoRA and SFT runs and its data preparation, around a fake VeRL (see test_verl_run).

The LoRA merge is real: the fake merger writes what VeRL's merger writes for a LoRA checkpoint (the
base weights and ``lora_adapter/``, peft's layout), and the engine's peft merge must give a model that
computes what the adapter-wrapped model computes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from continuous_learning import storage
from continuous_learning.contracts import TrainResult
from continuous_learning.data.reward_dataset import VERL_SCHEMA
from continuous_learning.models.chat_templates import load_shipped, verl_messages
from continuous_learning_trainer import verl_engine
from continuous_learning_trainer.verl_engine.artifacts import validate_hf_model
from continuous_learning_trainer.verl_engine.checkpoints import TRACKER
from continuous_learning_trainer.verl_engine.data import (
    NOT_TURN_BY_TURN,
    SCHEMA_CONFLICT,
    TOO_LONG_PROMPT,
    UNLOADABLE_TOOL,
    chat_tokens,
    prepare_dataset,
    prepare_sft_dataset,
    renders_turn_by_turn,
    write_tool_config,
)
from continuous_learning_trainer.verl_engine.layout import Layout

from tests.trainer.fake_verl import FakeVerl
from tests.trainer.helpers import TOOLS, run_spec, write_dataset, write_tiny_model


def prepare(tmp_path: Path, reference_source: str | None = None) -> None:
    write_dataset(tmp_path / "ds" / "train.parquet", 16, True, reference_source)
    write_dataset(tmp_path / "ds" / "validation.parquet", 4, True, reference_source)
    write_tiny_model(tmp_path / "models" / "base")


def logits(model_dir: Path, model: Any = None) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = model or AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(torch.tensor([[1, 2, 3, 4, 5]])).logits


@pytest.mark.parametrize("algorithm", ["grpo", "sft"])
def test_lora_run_uploads_the_merged_model_and_the_adapter(tmp_path: Path, algorithm: str) -> None:
    prepare(tmp_path, "correction")
    spec = run_spec(
        tmp_path,
        algorithm=algorithm,
        lora={"enabled": True, "rank": 4, "alpha": 8},
        verl={"work_dir": str(tmp_path / "work")},
    )
    runner = FakeVerl(lora=True)
    result = verl_engine.train(spec, runner=runner)
    assert result.status == "succeeded"
    run = tmp_path / "runs" / "run-1"
    assert result.model_uri == f"{spec.output_uri}/model"
    assert result.adapter_uri == f"{spec.output_uri}/adapter"
    assert TrainResult.read(f"{spec.output_uri}/result.json").adapter_uri == result.adapter_uri
    # the adapter as VeRL saved it, beside the model
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in (run / "adapter").iterdir()
    }
    # the model is the merged one: it computes what base + adapter compute, and it is not the base
    merged = logits(run / "model")
    assert torch.allclose(merged, logits(Path(), runner.adapter_model.eval()), atol=1e-4)
    assert not torch.allclose(merged, logits(tmp_path / "models" / "base"), atol=1e-3)
    assert not (run / "model" / "lora_adapter").exists()
    assert (run / "model" / "tokenizer.json").exists()
    validate_hf_model(run / "model")
    command = " ".join(runner.calls[0])
    key = "actor_rollout_ref.model" if algorithm == "grpo" else "model"
    assert f"{key}.lora_rank=4" in command and f"{key}.lora_alpha=8 " in command + " "


def test_validation_rejects_an_unmerged_adapter(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    write_tiny_model(tmp_path / "m")
    save_file(
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(2, 2)},
        str(tmp_path / "m" / "adapter.safetensors"),
    )
    with pytest.raises(ValueError, match="unmerged LoRA"):
        validate_hf_model(tmp_path / "m")


def test_lora_merge_needs_the_adapter_verl_writes(tmp_path: Path) -> None:
    prepare(tmp_path)
    spec = run_spec(tmp_path, lora={"enabled": True}, verl={"work_dir": str(tmp_path / "w")})
    with pytest.raises(RuntimeError, match="no adapter"):
        verl_engine.train(spec, runner=FakeVerl(lora=False))


def test_sft_run_end_to_end_with_restart(tmp_path: Path) -> None:
    prepare(tmp_path, "positive_feedback")
    spec = run_spec(tmp_path, algorithm="sft", verl={"work_dir": str(tmp_path / "work-a")})
    with pytest.raises(RuntimeError, match="node lost"):
        verl_engine.train(spec, runner=FakeVerl(fail_at=3))
    # the SFT trainer has no checkpoint callback: its last checkpoint (step 2) was uploaded when it stopped
    remote = tmp_path / "runs" / "run-1" / "checkpoints"
    assert (remote / TRACKER).read_text() == "2"
    spec = run_spec(tmp_path, algorithm="sft", verl={"work_dir": str(tmp_path / "work-b")})
    runner = FakeVerl()
    result = verl_engine.train(spec, runner=runner)
    assert result.status == "succeeded" and result.steps == 4
    assert (remote / TRACKER).read_text() == "4"
    assert [h["step"] for h in result.history] == [3.0, 4.0]
    assert result.metrics["loss_last"] == pytest.approx(0.5) and result.metrics["train_rows"] == 16
    assert result.adapter_uri is None
    train, merge = runner.calls
    assert train[1:3] == ["-m", "verl.trainer.sft_trainer_ray"]
    assert "data.custom_cls.name=JsonMultiTurnSFTDataset" in train
    # VeRL's SFT trainer saves global_step_N/ itself (no actor/): that is what is merged
    assert merge[merge.index("--local_dir") + 1].endswith("checkpoints/global_step_4")
    assert (tmp_path / "runs" / "run-1" / "model" / "model.safetensors").exists()


def test_sft_data_is_the_prompt_plus_the_reference_answer(tmp_path: Path) -> None:
    write_dataset(tmp_path / "train.parquet", 4, True, "correction")
    out = prepare_sft_dataset(f"file://{tmp_path}/train.parquet", tmp_path / "sft.parquet", "hermes")
    assert out.rows == 4 and out.skipped == {}
    rows = pq.read_table(tmp_path / "sft.parquet").to_pylist()
    assert set(rows[0]) == {"messages", "tools", "interaction_id", "reference_source"}
    tool_row, text_row = (json.loads(rows[0]["messages"]), json.loads(rows[1]["messages"]))
    assert tool_row[0]["content"] == "question 0"
    assert tool_row[-1] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        "tool_calls": None,
        "tool_call_id": None,
    }
    assert text_row[-1]["content"] == "hello there"
    # tools in the form the RL rollout shows them (the row's own, unchanged); none for a row without tools
    assert json.loads(rows[0]["tools"]) == TOOLS
    assert rows[1]["tools"] == ""
    # rows without a reference source (no correction, no positive feedback) are not SFT data
    write_dataset(tmp_path / "plain.parquet", 2, False)
    none = prepare_sft_dataset(f"file://{tmp_path}/plain.parquet", tmp_path / "none.parquet", "hermes")
    assert none.rows == 0 and sum(none.skipped.values()) == 2


def write_rows(path: Path, tools_per_row: list[list[dict[str, Any]] | None]) -> None:
    rows = []
    for i, tools in enumerate(tools_per_row):
        rows.append(
            {
                "data_source": "agent/travel",
                "prompt": [{"role": "user", "content": f"question {i} " * (40 if i == 99 else 1)}],
                "ability": "tool_use",
                "reward_model": {
                    "style": "rule",
                    "ground_truth": json.dumps({"content": "x", "tool_calls": []}),
                },
                "extra_info": {
                    "interaction_id": f"i-{i}",
                    "agent": "travel",
                    "day": "2026-01-01",
                    "split": "train",
                    "index": i,
                    "feedback_score": 1.0,
                    "reference_source": "positive_feedback",
                    "tools_json": json.dumps(tools) if tools is not None else None,
                },
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), path)


def test_rows_verl_would_render_differently_or_refuse_are_left_out(tmp_path: Path) -> None:
    other_weather = [{**TOOLS[0], "function": {**TOOLS[0]["function"], "description": "Another one"}}]
    no_description = [
        {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}
    ]
    write_rows(tmp_path / "train.parquet", [TOOLS, other_weather, no_description, None, TOOLS])
    write_rows(tmp_path / "val.parquet", [other_weather, None])
    registry: dict[str, Any] = {}
    train = prepare_dataset(f"file://{tmp_path}/train.parquet", tmp_path / "t.parquet", registry)
    assert train.rows == 3
    assert train.skipped == {SCHEMA_CONFLICT: 1, UNLOADABLE_TOOL: 1}
    val = prepare_dataset(f"file://{tmp_path}/val.parquet", tmp_path / "v.parquet", registry)
    assert val.rows == 1 and val.skipped == {SCHEMA_CONFLICT: 1}  # one schema per name for the whole run
    assert list(registry) == ["get_weather"]
    assert registry["get_weather"]["function"]["description"] == "Weather for a city"
    rows = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert [r["extra_info"]["interaction_id"] for r in rows] == ["i-0", "i-3", "i-4"]
    assert [r["agent_name"] for r in rows] == ["cl_tool_agent", "single_turn_agent", "cl_tool_agent"]
    assert rows[1]["extra_info"]["tool_selection"] == []


def test_prompts_that_would_not_fit_are_left_out(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    write_tiny_model(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    tokenizer.chat_template = load_shipped("hermes")
    tools: list[list[dict[str, Any]] | None] = [TOOLS] * 100
    write_rows(tmp_path / "train.parquet", tools)  # row 99 repeats its question 40 times
    lengths = sorted(
        chat_tokens(tokenizer, [{"role": "user", "content": q}], TOOLS, generation_prompt=True)
        for q in ("question 1 ", "question 99 " * 40)
    )
    out = prepare_dataset(
        f"file://{tmp_path}/train.parquet",
        tmp_path / "t.parquet",
        {},
        tokenizer=tokenizer,
        max_prompt_length=(lengths[0] + lengths[1]) // 2,
    )
    assert out.rows == 99 and out.skipped == {TOO_LONG_PROMPT: 1}


@pytest.mark.parametrize("template", ["chatml-tools", "hermes"])
def test_sft_leaves_out_conversations_the_template_merges(tmp_path: Path, template: str) -> None:
    """VeRL's multi-turn SFT dataset renders each message alone and stops the run when the pieces differ
    from the whole conversation (seen on the H200: ChatML templates put parallel tool results in one user
    turn). Such conversations are left out and counted; the others are kept."""
    from transformers import AutoTokenizer

    write_tiny_model(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    tokenizer.chat_template = load_shipped(template)
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    parallel = [
        {"role": "user", "content": "question 0"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", **call}, {"id": "c2", **call}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        {"role": "tool", "content": "rainy", "tool_call_id": "c2"},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "question 1"},
    ]
    write_dataset(tmp_path / "train.parquet", 2, True, "correction")
    table = pq.read_table(tmp_path / "train.parquet").to_pylist()
    table[0]["prompt"] = [{"tool_calls": None, "tool_call_id": None, **m} for m in parallel]
    for row in table[1:]:
        row["prompt"] = [{"tool_calls": None, "tool_call_id": None, **m} for m in row["prompt"]]
    pq.write_table(pa.Table.from_pylist(table), tmp_path / "train.parquet")
    out = prepare_sft_dataset(
        f"file://{tmp_path}/train.parquet",
        tmp_path / "sft.parquet",
        "hermes",
        tokenizer=tokenizer,
        max_length=4096,
    )
    assert out.rows == 1 and out.skipped == {NOT_TURN_BY_TURN: 1}
    kept = pq.read_table(tmp_path / "sft.parquet").to_pylist()
    assert [r["interaction_id"] for r in kept] == ["i-1"]
    messages = json.loads(kept[0]["messages"])
    assert renders_turn_by_turn(tokenizer, messages, None)
    assert not renders_turn_by_turn(tokenizer, verl_messages(parallel), TOOLS)


def test_tool_config_escapes_omegaconf_interpolation(tmp_path: Path) -> None:
    import yaml

    tool = {
        "type": "function",
        "function": {
            "name": "t",
            "description": "costs ${price}",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    write_tool_config([tool], tmp_path / "tools.yaml")
    document = yaml.safe_load((tmp_path / "tools.yaml").read_text())
    assert document["tools"][0]["tool_schema"]["function"]["description"] == "costs \\${price}"
    assert document["tools"][0]["class_name"] == "verl.tools.base_tool.BaseTool"


def test_sft_spec_needs_enough_references(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds" / "train.parquet", 4, False, "correction")
    write_tiny_model(tmp_path / "models" / "base")
    spec = run_spec(tmp_path, algorithm="sft", verl={"work_dir": str(tmp_path / "w")})
    with pytest.raises(ValueError, match="fewer than prompts_per_step"):
        verl_engine.train(spec, runner=FakeVerl())
    assert TrainResult.read(f"{spec.output_uri}/result.json").status == "failed"
    assert not storage.exists(f"{spec.output_uri}/model/config.json")
    assert Layout(tmp_path / "w" / "run-1").sft_train_file.exists()
