"""Small fixtures for the trainer tests: run specs, VeRL-format parquet files, a tiny HF model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from continuous_learning.contracts import RunSpec

REPO = Path(__file__).resolve().parents[2]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def run_spec(tmp: Path | None = None, **overrides: Any) -> RunSpec:
    base = f"file://{tmp}" if tmp else "file:///data"
    doc: dict[str, Any] = {
        "run_id": "run-1",
        "engine": "verl",
        "algorithm": "grpo",
        "dataset": {
            "dataset_id": "ds-1",
            "train_uri": f"{base}/ds/train.parquet",
            "validation_uri": f"{base}/ds/validation.parquet",
            "test_uri": f"{base}/ds/test.parquet",
            "manifest_uri": f"{base}/ds/manifest.json",
        },
        "base_model_uri": f"{base}/models/base",
        "base_model_version": "v1",
        "output_uri": f"{base}/runs/run-1",
        "hyperparameters": {
            "learning_rate": 1e-6,
            "max_steps": 4,
            "samples_per_prompt": 4,
            "prompts_per_step": 8,
            "max_completion_tokens": 64,
            "kl_coef": 0.001,
            "checkpoint_every": 2,
        },
        "resources": {"nnodes": 1, "n_gpus_per_node": 8},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return RunSpec.model_validate(doc)


def write_dataset(path: Path, rows: int, with_tools: bool, reference_source: str | None = None) -> None:
    """Reward-dataset rows; every other row has the weather tool when ``with_tools``; with
    ``reference_source`` (``correction``, ``positive_feedback``) rows say where their reference is from."""
    records = []
    for i in range(rows):
        tools = with_tools and i % 2 == 0
        reference = (
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}
            if tools
            else {"content": "hello there"}
        )
        records.append(
            {
                "data_source": "agent/travel",
                "prompt": [{"role": "user", "content": f"question {i}"}],
                "ability": "tool_use" if tools else "chat",
                "reward_model": {"style": "rule", "ground_truth": json.dumps(reference)},
                "extra_info": {
                    "interaction_id": f"i-{i}",
                    "agent": "travel",
                    "split": "train",
                    "index": i,
                    "tools_json": json.dumps(TOOLS) if tools else "",
                    **({"reference_source": reference_source} if reference_source else {}),
                },
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)


def write_tiny_model(path: Path) -> None:
    """A 2-layer Qwen2 with a word-level tokenizer: enough for config/tokenizer/safetensors checks."""
    from continuous_learning_trainer.tiny_model import build_model, train_tokenizer

    tokenizer = train_tokenizer(["hello there question paris weather"] * 4, vocab_size=64)
    model = build_model(tokenizer, seed=0, hidden_size=32, layers=1)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
