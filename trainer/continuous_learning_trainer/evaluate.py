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
from continuous_learning.contracts import EvalResult, EvalSpec

from continuous_learning_trainer.chat import END, render_prompt
from continuous_learning_trainer.cpu_engine import load_prompts
from continuous_learning_trainer.rewards import score_response

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


def generate_cpu(model_dir: Path, prompts: list[str], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy generation with transformers on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        outputs.extend(
            t.split(END, 1)[0] for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=False)
        )
    return [o.replace("<|pad|>", "") for o in outputs]


#: SGLang offline-engine settings for evaluation (the ones that ran on an H200, see docs/trainer-image.md).
SGLANG_ENGINE_ARGS: dict[str, Any] = {
    "tp_size": 1,
    "mem_fraction_static": 0.8,
    "attention_backend": "triton",
    "sampling_backend": "pytorch",
    "grammar_backend": "none",  # no constrained decoding here; xgrammar is not in the rollout bundle
    "log_level": "error",
}


def load_messages(uri: str) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]]:
    """(chat messages, tools) per row, in the order :func:`load_prompts` returns them."""
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
    out = []
    for row in table.to_pylist():
        messages = [{k: v for k, v in m.items() if v is not None} for m in row["prompt"]]
        tools_json = row["extra_info"].get("tools_json")
        out.append((messages, json.loads(tools_json) if tools_json else None))
    return out


def chat_prompts(model_dir: Path, conversations: list[tuple[list[dict[str, Any]], Any]]) -> list[str]:
    """Prompts in the model's own chat template (tools included), as VeRL renders them in training;
    models without a template (the CPU engine's tiny ones) get the project's text format."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not getattr(tokenizer, "chat_template", None):
        return [render_prompt(messages) for messages, _ in conversations]
    return [
        str(tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False))
        for messages, tools in conversations
    ]


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
    if spec.engine == "sglang":
        conversations = load_messages(spec.prompts_uri)[: len(rows)]
        return generate_sglang(model_dir, chat_prompts(model_dir, conversations), spec.max_completion_tokens)
    return generate_cpu(model_dir, [r["prompt"] for r in rows], spec.max_completion_tokens)


def run_evaluation(spec: EvalSpec) -> EvalResult:
    if spec.engine == "cpu":
        import torch

        torch.set_num_threads(spec.cpu_threads)
    rows = load_prompts(spec.prompts_uri)[: spec.max_prompts]
    if not rows:
        raise ValueError(f"no evaluation prompts in {spec.prompts_uri}")
    records: list[dict[str, Any]] = []
    for label, model_uri in sorted(spec.models.items()):
        with tempfile.TemporaryDirectory(prefix=f"cl-eval-{label}-") as tmp:
            model_dir = storage.download_dir(model_uri, Path(tmp))
            responses = generate(spec, model_dir, rows)
        for row, response in zip(rows, responses, strict=True):
            tools = json.loads(row["tools_json"]) if row["tools_json"] else None
            score = score_response(response, json.loads(row["ground_truth"]), tools, spec.reward_weights)
            records.append(
                {
                    "interaction_id": row["interaction_id"],
                    "agent": row["agent"],
                    "ability": row["ability"],
                    "model": label,
                    "reward": score.total,
                    "format_valid": score.format_valid,
                    "tool_name": score.tool_name,
                    "arguments": score.arguments,
                    "negative_hit": score.negative_hit,
                    "response_chars": len(response),
                    "response": response,
                }
            )
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
    result.write(storage.join(spec.output_uri, "result.json"))
    return result
