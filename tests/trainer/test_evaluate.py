"""Evaluation on the CPU: each model gets its prompts in its own template, greedy completions are cut
at its eos, the ``reward`` column is the run's reward and the guardrail columns are the project's."""

from __future__ import annotations

import io
import json
import types
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from continuous_learning import storage
from continuous_learning.contracts import EvalSpec
from continuous_learning.models.tool_calls import format_calls
from continuous_learning_trainer import evaluate, reward_function, rewards

from tests.trainer.helpers import PARIS, TOOLS, reference_rows, write_rows


def eval_spec(tmp_path: Path, labels: dict[str, str], prompts_uri: str, **overrides: Any) -> EvalSpec:
    return EvalSpec(
        run_id="e1",
        prompts_uri=prompts_uri,
        models=labels,
        max_prompts=4,
        max_completion_tokens=6,
        output_uri=f"file://{tmp_path}/eval",
        **overrides,
    )


def scores(uri: str) -> list[dict[str, Any]]:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pylist()


def ours(row: dict[str, Any], dataset: list[dict[str, Any]]) -> rewards.RewardBreakdown:
    """The project's reward of a score row's response, against its prompt's reference and tools."""
    source = next(r for r in dataset if r["extra_info"]["interaction_id"] == row["interaction_id"])
    tools = TOOLS if source["extra_info"]["tools_json"] else None
    return rewards.score_response(row["response"], json.loads(source["reward_model"]["ground_truth"]), tools)


def test_each_model_is_prompted_in_its_own_template(
    models: dict[str, Path],
    tmp_path: Path,
    rendered: list[tuple[Any, Any]],
) -> None:
    uri = write_rows(tmp_path / "test.parquet", reference_rows(5))
    labels = {"candidate": f"file://{models['chatml']}", "production": f"file://{models['plain']}"}
    result = evaluate.run_evaluation(eval_spec(tmp_path, labels, uri))
    assert result.prompts == 4
    assert len(rendered) == 4  # the ChatML model's prompts, through chat_templates.render_prompt
    assert [tools is not None for _, tools in rendered] == [True, True, False, True]
    table = scores(result.scores_uri)
    assert sorted({r["model"] for r in table}) == ["candidate", "production"] and len(table) == 8
    for row in table:  # cut at the eos of each model (the tiny model's <|end|>, ChatML's <|im_end|>)
        assert "<|im_end|>" not in row["response"] and "<|end|>" not in row["response"]
        assert "<|pad|>" not in row["response"]
        assert row["reward"] == ours(row, reference_rows(5)).total


def test_a_user_reward_fills_the_reward_column_and_guardrails_stay(
    models: dict[str, Path],
    tmp_path: Path,
    rendered: list[tuple[Any, Any]],
) -> None:
    (tmp_path / "r.py").write_text(
        "def length(response, reference, tools, bonus=0.0):\n    return len(response) + bonus\n"
    )
    uri = write_rows(tmp_path / "test.parquet", reference_rows(4))
    spec = eval_spec(
        tmp_path,
        {"candidate": f"file://{models['chatml']}"},
        uri,
        reward={"function": f"file://{tmp_path}/r.py:length", "kwargs": {"bonus": 100.0}},
    )
    result = evaluate.run_evaluation(spec)
    table = scores(result.scores_uri)
    assert [r["reward"] for r in table] == [len(r["response"]) + 100.0 for r in table]
    assert result.mean_reward["candidate"] >= 100.0
    for row in table:  # guardrails: the project's reward parts, whatever the reward
        parts = ours(row, reference_rows(4))
        assert (row["format_valid"], row["tool_name"], row["arguments"], row["negative_hit"]) == (
            parts.format_valid,
            parts.tool_name,
            parts.arguments,
            parts.negative_hit,
        )


def test_a_bad_reward_fails_before_any_model_generates(
    models: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = write_rows(tmp_path / "test.parquet", reference_rows(2))
    monkeypatch.setattr(
        evaluate, "generate", lambda *a: pytest.fail("generated before the reward was checked")
    )
    spec = eval_spec(
        tmp_path, {"c": f"file://{models['plain']}"}, uri, reward={"function": "cl_absent_module_q:fn"}
    )
    with pytest.raises(reward_function.RewardFunctionError, match="module 'cl_absent_module_q' not found"):
        evaluate.run_evaluation(spec)


def test_greedy_generation_stops_and_cuts_at_the_models_eos(models: dict[str, Path]) -> None:
    """Every eos of the model stops generation (tokenizer's and generation config's) and ends the text."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models["chatml"])
    answer = tokenizer(format_calls([PARIS]), add_special_tokens=False)["input_ids"]
    end_of_text = tokenizer.convert_tokens_to_ids("<|im_start|>")  # a second eos, as Qwen's <|endoftext|>

    class Model:
        training = True
        generation_config = types.SimpleNamespace(eos_token_id=[tokenizer.eos_token_id, end_of_text])
        seen: dict[str, Any] = {}

        def eval(self) -> None:
            self.training = False

        def train(self, mode: bool) -> None:
            self.training = mode

        def generate(self, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
            self.seen.update(kwargs, padding_side=tokenizer.padding_side)
            tails = [[*answer, tokenizer.eos_token_id, 5, 6], [7, end_of_text] + [8] * (len(answer) + 1)]
            return torch.cat([input_ids, torch.tensor(tails[: len(input_ids)])], dim=1)

    model = Model()
    tokenizer.padding_side = "right"
    out = evaluate.generate_greedy(
        model, tokenizer, ["<|im_start|>user\nhi<|im_end|>\n", "a longer prompt here"], 8
    )
    assert out == [format_calls([PARIS]), tokenizer.decode([7])]
    assert model.seen["eos_token_id"] == [tokenizer.eos_token_id, end_of_text]
    assert model.seen["pad_token_id"] == tokenizer.eos_token_id and model.seen["padding_side"] == "left"
    assert model.training and tokenizer.padding_side == "right"  # restored
