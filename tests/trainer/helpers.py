"""Small fixtures for the trainer tests: run specs, VeRL-format parquet files, tiny HF models (with and
without a chat template), reference rows of three kinds, and composition against VeRL's own configs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from continuous_learning.contracts import RunSpec
from continuous_learning.data.reward_dataset import VERL_SCHEMA
from continuous_learning.models.tool_calls import format_calls

REPO = Path(__file__).resolve().parents[2]
#: The trainer image's lock installed alone (trainer/checks/install-image-lock-env.sh, `make trainer-tools`).
IMAGE_LOCK_VENV = Path(os.environ.get("IMAGE_LOCK_VENV", REPO / ".tools" / "image-lock"))
IMAGE_LOCK_PYTHON = IMAGE_LOCK_VENV / "bin" / "python"
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


CHATML = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PARIS = {"name": "get_weather", "arguments": {"city": "Paris"}}
LONDON = {"name": "get_weather", "arguments": {"city": "London"}}


def reference_rows(n: int) -> list[dict[str, Any]]:
    """VeRL rows of three kinds, in turn: a corrected tool call (the agent said London), a positively
    rated tool call, and a text correction whose negative equals the reference (so none is kept)."""
    rows = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            truth = {
                "content": None,
                "tool_calls": [PARIS],
                "negatives": [{"content": None, "tool_calls": [LONDON]}],
            }
            source, tools = "correction", TOOLS
        elif kind == 1:
            truth = {"content": None, "tool_calls": [PARIS], "negatives": []}
            source, tools = "positive_feedback", TOOLS
        else:
            truth = {"content": "hello there", "tool_calls": [], "negatives": []}
            source, tools = "correction", None
        rows.append(
            {
                "data_source": "agent/travel",
                "prompt": [
                    {"role": "system", "content": "You help travellers."},
                    {
                        "role": "user",
                        "content": f"weather in paris please {i}" if tools else f"say hello {i}",
                    },
                ],
                "ability": "tool_use" if tools else "chat",
                "reward_model": {"style": "rule", "ground_truth": json.dumps(truth)},
                "extra_info": {
                    "interaction_id": f"i-{i}",
                    "agent": "travel",
                    "day": "2026-11-01",
                    "split": "train",
                    "index": i,
                    "feedback_score": 1.0,
                    "reference_source": source,
                    "tools_json": json.dumps(tools) if tools else "",
                },
            }
        )
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), path)
    return f"file://{path}"


def build_tiny(path: Path, chatml: bool) -> Path:
    """A 1-layer Qwen2 with a BPE tokenizer trained on the dataset's text; ``chatml``: ChatML special
    tokens, eos ``<|im_end|>``, no pad token, and a chat template (like a real instruct model)."""
    from continuous_learning_trainer.tiny_model import build_model, train_tokenizer

    answers = [format_calls([PARIS]), format_calls([LONDON]), "hello there"]
    corpus = [
        f"system You help travellers. user weather in paris please say hello {i} {a}"
        for i in range(12)
        for a in answers
    ]
    corpus += [json.dumps(TOOLS)] * 4
    tokenizer = train_tokenizer(corpus, vocab_size=400)
    if chatml:
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tokenizer.eos_token = "<|im_end|>"
        tokenizer.pad_token = None
        tokenizer.chat_template = CHATML
    model = build_model(tokenizer, seed=0, hidden_size=32, layers=1)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


VERL_PY = REPO / ".tools" / "verl-config" / "bin" / "python"
COMPOSE = REPO / "trainer" / "checks" / "compose_verl_config.py"
needs_verl_config = pytest.mark.skipif(
    not VERL_PY.exists(), reason="run `make trainer-tools` (VeRL config venv under .tools/)"
)


def compose(cases: list[Any]) -> list[dict[str, Any]]:
    """Each case an override list (``ppo_trainer``) or ``{"config": NAME, "overrides": [...]}``."""
    out = subprocess.run(
        [str(VERL_PY), str(COMPOSE)], input=json.dumps(cases), capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)
