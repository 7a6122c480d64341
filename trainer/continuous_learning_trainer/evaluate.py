"""Evaluation runner: every model generates on the same held-out prompts; the reward module scores.

Writes one parquet row per (prompt, model) for the gate, and an EvalResult summary.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.contracts import EvalResult, EvalSpec, result_uri

from continuous_learning_trainer import reward_function
from continuous_learning_trainer.chat import END
from continuous_learning_trainer.prompts import (
    decode_completion,
    load_rows,
    prepare_tokenizer,
    render,
    stop_token_ids,
)

log = logging.getLogger(__name__)
SCORES_SCHEMA = pa.schema(
    [
        ("interaction_id", pa.string()),
        ("agent", pa.string()),
        ("ability", pa.string()),
        ("model", pa.string()),
        ("reward", pa.float64()),
        ("format_valid", pa.bool_()),
        ("tool_name", pa.float64()),
        ("arguments", pa.float64()),
        ("negative_hit", pa.bool_()),
        ("response_chars", pa.int64()),
        ("response", pa.string()),
    ]
)


def generate_greedy(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int = 32
) -> list[str]:
    """Greedy completions of ``prompts`` with a loaded model, each stopped and cut at the model's eos
    (the tokenizer's and the generation config's); prompts are padded on the left."""
    import torch

    prepare_tokenizer(tokenizer)
    stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
            with torch.no_grad():
                generated = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stops,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            outputs.extend(decode_completion(tokenizer, ids, stops) for ids in new_tokens.tolist())
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outputs


def generate_cpu(model_dir: Path, prompts: list[str], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy generation with transformers on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return generate_greedy(model, tokenizer, prompts, max_new_tokens, batch_size)


#: SGLang offline-engine settings for evaluation (the ones that ran on an H200, see docs/trainer-image.md).
SGLANG_ENGINE_ARGS: dict[str, Any] = {
    "tp_size": 1,
    "mem_fraction_static": 0.8,
    "attention_backend": "triton",
    "sampling_backend": "pytorch",
    "grammar_backend": "none",  # no constrained decoding here; xgrammar is not in the rollout bundle
    "log_level": "error",
}


def chat_prompts(model_dir: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Prompts of ``rows`` (:func:`~continuous_learning_trainer.prompts.load_rows`) for the model in
    ``model_dir``: its own chat template with the tools, as VeRL renders them in training; models
    without a template (the CPU engine's tiny ones) get the project's text format."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [render(tokenizer, r["messages"], r["tools"]) for r in rows]


def generate_sglang(
    model_dir: Path, prompts: list[str], max_new_tokens: int, engine_args: dict[str, Any] | None = None
) -> list[str]:
    """Greedy generation with SGLang's offline engine (GPU); sglang is imported only here."""
    import sglang

    engine = sglang.Engine(model_path=str(model_dir), **{**SGLANG_ENGINE_ARGS, **(engine_args or {})})
    try:
        outputs = engine.generate(
            prompt=prompts,
            sampling_params={"temperature": 0.0, "max_new_tokens": max_new_tokens, "stop": [END]},
        )
    finally:
        engine.shutdown()
    return [o["text"].split(END, 1)[0] for o in outputs]


def generate(spec: EvalSpec, model_dir: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Greedy responses of the model in ``model_dir`` to ``rows`` (rendered for that model)."""
    prompts = chat_prompts(model_dir, rows)
    if spec.engine == "sglang":
        return generate_sglang(model_dir, prompts, spec.max_completion_tokens)
    return generate_cpu(model_dir, prompts, spec.max_completion_tokens)


def score_rows(
    spec: EvalSpec, label: str, rows: list[dict[str, Any]], responses: list[str]
) -> list[dict[str, Any]]:
    """Score records of one model: ``reward`` is the run's reward (the user's function when the spec
    names one); the guardrail columns (format validity, tool name, arguments, negative hit) are the
    project's reward parts."""
    records = []
    for row, response in zip(rows, responses, strict=True):
        reference = json.loads(row["ground_truth"])
        parts = reward_function.breakdown(
            response, reference, row["tools"], spec.reward_weights, spec.tool_call_format
        )
        reward = (
            reward_function.score(
                response,
                reference,
                row["tools"],
                reward=spec.reward,
                weights=spec.reward_weights,
                tool_call_format=spec.tool_call_format,
            )
            if spec.reward.function
            else parts.total
        )
        records.append(
            {
                "interaction_id": row["interaction_id"],
                "agent": row["agent"],
                "ability": row["ability"],
                "model": label,
                "reward": reward,
                "format_valid": parts.format_valid,
                "tool_name": parts.tool_name,
                "arguments": parts.arguments,
                "negative_hit": parts.negative_hit,
                "response_chars": len(response),
                "response": response,
            }
        )
    return records


def run_evaluation(spec: EvalSpec) -> EvalResult:
    if spec.engine == "cpu":
        import torch

        torch.set_num_threads(spec.cpu_threads)
    rows = load_rows(spec.prompts_uri)[: spec.max_prompts]
    if not rows:
        raise ValueError(f"no evaluation prompts in {spec.prompts_uri}")
    if spec.reward.function:
        reward_function.load_reward(spec.reward)  # a bad name fails before any model generates
    records: list[dict[str, Any]] = []
    for label, model_uri in sorted(spec.models.items()):
        with tempfile.TemporaryDirectory(prefix=f"cl-eval-{label}-") as tmp:
            model_dir = storage.download_dir(model_uri, Path(tmp))
            responses = generate(spec, model_dir, rows)
        records.extend(score_rows(spec, label, rows, responses))
        log.info("evaluated %s on %d prompts", label, len(rows))
    table = pa.Table.from_pylist(records, schema=SCORES_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    scores_uri = storage.join(spec.output_uri, "scores.parquet")
    storage.write_bytes(scores_uri, sink.getvalue())

    def mean(label: str, key: str) -> float:
        values = [float(r[key]) for r in records if r["model"] == label]
        return sum(values) / len(values)

    result = EvalResult(
        run_id=spec.run_id,
        scores_uri=scores_uri,
        prompts=len(rows),
        mean_reward={m: mean(m, "reward") for m in spec.models},
        tool_call_validity={m: mean(m, "format_valid") for m in spec.models},
        mean_response_chars={m: mean(m, "response_chars") for m in spec.models},
    )
    result.write(result_uri(spec.output_uri))
    return result
