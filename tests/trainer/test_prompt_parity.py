"""Training rollouts and evaluation show the model the same prompt.

The same reward-dataset rows go through

(a) VeRL's path: this engine's data preparation (``prepare_dataset``: the rows VeRL reads, tagged for
    the tool agent loop) and tool config (``write_tool_config``), then VeRL 0.9.1's own code run in
    .tools/verl-config (tests/trainer/verl_render.py): the tool config read and validated as VeRL's tool
    registry does, the row's tools selected and dumped as the tool agent loop does, the prompt tokens
    built by VeRL's Continuous Token builder; the rows are read with HF ``datasets`` as VeRL's
    RLHFDataset reads them;
(b) evaluation's path: the evaluator's row reader (``prompts.load_rows``) and
    ``continuous_learning.models.chat_templates.render_prompt``;

for each shipped chat-template family, and the rendered strings (and token ids) must be equal. The
rows have tools with parameter fields VeRL drops (``items``, ``default``, ``minimum``, nested objects),
keys out of VeRL's order, a ``${...}`` that OmegaConf would interpolate, an earlier assistant tool call
with JSON-string arguments and its tool result, a row without tools, and a row whose tool has another
schema under a known name (which VeRL cannot show: prepare_dataset leaves it out).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from continuous_learning.data.reward_dataset import VERL_SCHEMA
from continuous_learning.models import chat_templates
from continuous_learning_trainer import prompts
from continuous_learning_trainer.verl_engine.data import SCHEMA_CONFLICT, prepare_dataset, write_tool_config
from continuous_learning_trainer.verl_engine.layout import Layout

from tests.trainer.helpers import REPO, write_tiny_model

VERL_PY = REPO / ".tools" / "verl-config" / "bin" / "python"
RENDER = Path(__file__).with_name("verl_render.py")


def _verl_venv_renders() -> bool:
    if not VERL_PY.exists():
        return False
    probe = subprocess.run([str(VERL_PY), "-c", "import pydantic, transformers"], capture_output=True)
    return probe.returncode == 0


needs_verl_render = pytest.mark.skipif(
    not _verl_venv_renders(), reason="run `make trainer-tools` (VeRL + pydantic + transformers under .tools/)"
)

WEATHER: dict[str, Any] = {
    # keys out of VeRL's order; fields VeRL's schema does not keep
    "function": {
        "parameters": {
            "required": ["city"],
            "properties": {
                "city": {
                    "description": "City name, e.g. ${city} or Zürich",
                    "type": "string",
                    "minLength": 1,
                },
                "days": {"type": "integer", "default": 1, "minimum": 1, "maximum": 14, "description": "Days"},
                "units": {"enum": ["metric", "imperial"], "type": "string"},
                "stops": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"at": {"type": "string"}}},
                },
            },
            "type": "object",
            "additionalProperties": False,
        },
        "description": "Weather forecast for a city",
        "name": "get_weather",
    },
    "type": "function",
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
}
OTHER_WEATHER = {
    "type": "function",
    "function": {**WEATHER["function"], "description": "Another weather tool"},
}


def message(
    role: str,
    content: str | None = None,
    calls: list[dict[str, Any]] | None = None,
    call_id: str | None = None,
) -> dict[str, Any]:
    return {"role": role, "content": content, "tool_calls": calls, "tool_call_id": call_id}


HISTORY = [
    message("system", "You are a travel agent."),
    message("user", "Weather in Paris for 2 days?"),
    message(
        "assistant",
        None,
        [
            {
                "id": "c0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'},
            }
        ],
    ),
    message("tool", '{"forecast": "sunny"}', call_id="c0"),
    message("user", "And in Zürich? Use metric units."),
]
ROWS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]] | None]] = [
    ("history", HISTORY, [WEATHER, SEARCH]),
    ("search-only", [message("user", "Find cheap flights")], [SEARCH]),
    ("no-tools", [message("system", "Be brief."), message("user", "hello")], None),
    ("other-schema", [message("user", "Weather?")], [OTHER_WEATHER]),
    ("reversed", [message("user", "Search then weather")], [SEARCH, WEATHER]),
]


def write_rows(path: Path) -> None:
    records = []
    for index, (key, prompt, tools) in enumerate(ROWS):
        records.append(
            {
                "data_source": "agent/travel",
                "prompt": prompt,
                "ability": "tool_use" if tools else "chat",
                "reward_model": {
                    "style": "rule",
                    "ground_truth": json.dumps({"content": "ok", "tool_calls": []}),
                },
                "extra_info": {
                    "interaction_id": key,
                    "agent": "travel",
                    "day": "2026-01-01",
                    "split": "train",
                    "index": index,
                    "feedback_score": 1.0,
                    "reference_source": "positive_feedback",
                    "tools_json": json.dumps(tools) if tools else "",
                },
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=VERL_SCHEMA), path)


def tokenizer_with(template: str, folder: Path) -> Any:
    from transformers import AutoTokenizer

    write_tiny_model(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = chat_templates.load_shipped(template)
    tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def verl_rows(train_file: Path) -> list[dict[str, Any]]:
    """The prepared rows as VeRL's RLHFDataset reads them (HF datasets, verl/utils/dataset/rl_dataset.py)."""
    import datasets

    table = datasets.load_dataset(
        "parquet", data_files=str(train_file), cache_dir=str(train_file.parent / "hf")
    )["train"]
    return [
        {
            "id": row["extra_info"]["interaction_id"],
            "prompt": row["prompt"],
            "tool_selection": row["extra_info"]["tool_selection"],
            "agent_name": row["agent_name"],
        }
        for row in table
    ]


@needs_verl_render
@pytest.mark.parametrize(
    ("template", "model_type"), [("hermes", "qwen2"), ("llama3", "llama"), ("mistral", "mistral")]
)
def test_rollout_and_evaluation_render_the_same_prompt(
    tmp_path: Path, template: str, model_type: str
) -> None:
    source = tmp_path / "ds" / "train.parquet"
    write_rows(source)
    layout = Layout(tmp_path / "work")
    tokenizer = tokenizer_with(template, tmp_path / "model")

    # (a) VeRL's path: our preparation, then VeRL's code
    registry: dict[str, dict[str, Any]] = {}
    prepared = prepare_dataset(
        f"file://{source}", layout.train_file, registry, tokenizer=tokenizer, max_prompt_length=4096
    )
    assert prepared.skipped == {SCHEMA_CONFLICT: 1}  # "other-schema": VeRL would show it get_weather's schema
    write_tool_config(list(registry.values()), layout.tool_config)
    rows = verl_rows(layout.train_file)
    request = {
        "tokenizer": str(tmp_path / "model"),
        "model_type": model_type,
        "tool_config": str(layout.tool_config),
        "rows": rows,
    }
    done = subprocess.run(
        [str(VERL_PY), str(RENDER)], input=json.dumps(request), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    verl = json.loads(done.stdout)
    assert sorted(verl) == ["history", "no-tools", "reversed", "search-only"]

    # (b) evaluation's path
    evaluation = {r["interaction_id"]: r for r in prompts.load_rows(f"file://{source}")}
    for key, rendered in verl.items():
        row = evaluation[key]
        text = chat_templates.render_prompt(tokenizer, row["messages"], row["tools"])
        assert rendered["text"] == text, key
        assert rendered["ids"] == tokenizer(text, add_special_tokens=False)["input_ids"], key
        # the template saw the tools VeRL passes: what evaluation normalises them to
        assert rendered["tools"] == chat_templates.normalise_tools(row["tools"]), key

    # what that means, on the rendered text: VeRL's schema dropped the extra fields, kept the tools'
    # order per row, and OmegaConf did not interpolate the description's ${city}
    history = verl["history"]["text"]
    assert "${city}" in history and "Zürich" in history
    assert "minLength" not in history and "additionalProperties" not in history
    assert '{"city": "Paris", "days": 2}' in history
    reversed_text = verl["reversed"]["text"]
    assert reversed_text.index('"search"') < reversed_text.index('"get_weather"')
    assert "get_weather" not in verl["no-tools"]["text"]
