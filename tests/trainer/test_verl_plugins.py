"""verl_plugins: the tool parsers, the agent loop and the SFT dataset the trainer registers with VeRL.

VeRL itself needs torch and a GPU stack, so its four base classes are stand-ins here with VeRL 0.9.1's
interfaces (``ToolParser.register/get_tool_parser`` and ``FunctionCall`` from
verl/experimental/agent_loop/tool_parser.py, ``ToolAgentLoop`` from tool_agent_loop.py, and the two
``MultiTurnSFTDataset`` methods the plugin overrides, with VeRL's own pandas read). Importing the module
without VeRL must work: the rest of the trainer imports it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from continuous_learning.models.tool_calls import format_calls
from continuous_learning_trainer import verl_plugins
from pydantic import BaseModel

from tests.trainer.helpers import write_tiny_model

CALLS = [
    {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}},
    {"name": "book", "arguments": {"what": "Zoë's table", "n": [1, 2]}},
]


def test_imports_without_verl() -> None:
    assert verl_plugins.HAVE_VERL is False
    assert not hasattr(verl_plugins, "ToolAgentLoop")
    assert verl_plugins.agent_loop_config() == [
        {"name": "cl_tool_agent", "_target_": "continuous_learning_trainer.verl_plugins.ToolAgentLoop"}
    ]


def fake_verl() -> dict[str, types.ModuleType]:
    class FunctionCall(BaseModel):
        arguments: str
        name: str
        tool_call_id: str | None = None

    class ToolParser:
        _registry: dict[str, type] = {}

        def __init__(self, tokenizer: Any) -> None:
            self.tokenizer = tokenizer

        @property
        def stop_token_ids(self) -> list[int]:
            return []

        @classmethod
        def get_tool_parser(cls, name: str, tokenizer: Any) -> Any:
            if name not in cls._registry:
                raise ValueError(f"Unknown tool parser: {name}")
            return cls._registry[name](tokenizer)

        @classmethod
        def register(cls, name: str) -> Any:
            def decorator(subclass: type) -> type:
                cls._registry[name] = subclass
                return subclass

            return decorator

    class ToolAgentLoop:
        def __init__(self, *args: Any, tools: Any = None, **kwargs: Any) -> None:
            self.kwargs = kwargs

    class MultiTurnSFTDataset:  # the two methods the plugin overrides, as VeRL 0.9.1 writes them
        messages_key, tools_key = "messages", "tools"

        def __init__(self, parquet_files: str) -> None:
            self.parquet_files = [parquet_files]
            self._read_files_and_process()

        def _read_files_and_process(self) -> None:
            self.dataframe = pd.concat(
                [pd.read_parquet(f, dtype_backend="pyarrow") for f in self.parquet_files]
            )
            self.messages = self.dataframe[self.messages_key].tolist()
            self.tools = self.dataframe[self.tools_key].tolist()

        def _build_messages(self, example: dict[str, Any]) -> list[dict[str, Any]]:
            return list(example[self.messages_key])

        def __getitem__(self, item: int) -> tuple[Any, Any]:
            row = self.dataframe.iloc[item].to_dict()
            return self._build_messages(row), self.tools[item]

    modules = {
        "verl.experimental.agent_loop.tool_parser": types.ModuleType("tool_parser"),
        "verl.experimental.agent_loop.tool_agent_loop": types.ModuleType("tool_agent_loop"),
        "verl.utils.dataset.multiturn_sft_dataset": types.ModuleType("multiturn_sft_dataset"),
    }
    modules["verl.experimental.agent_loop.tool_parser"].__dict__.update(
        FunctionCall=FunctionCall, ToolParser=ToolParser
    )
    modules["verl.experimental.agent_loop.tool_agent_loop"].__dict__.update(ToolAgentLoop=ToolAgentLoop)
    modules["verl.utils.dataset.multiturn_sft_dataset"].__dict__.update(
        MultiTurnSFTDataset=MultiTurnSFTDataset
    )
    for name in (
        "verl",
        "verl.experimental",
        "verl.experimental.agent_loop",
        "verl.utils",
        "verl.utils.dataset",
    ):
        modules[name] = types.ModuleType(name)
    return modules


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """verl_plugins imported where VeRL is installed (with the stand-ins)."""
    for name, module in fake_verl().items():
        monkeypatch.setitem(sys.modules, name, module)
    yield importlib.reload(verl_plugins)
    monkeypatch.undo()
    importlib.reload(verl_plugins)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tok")
    write_tiny_model(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_special_tokens({"additional_special_tokens": ["[TOOL_CALLS]", "<|python_tag|>", "<|eot_id|>"]})
    return tok


def test_agent_loop_and_parsers_register_with_verl(plugins: Any) -> None:
    tool_parser = sys.modules["verl.experimental.agent_loop.tool_parser"].ToolParser
    assert {"llama3_json", "mistral"} <= set(tool_parser._registry)
    # the class the agent-loop config names is VeRL's tool agent loop
    target = plugins.agent_loop_config()[0]["_target_"]
    module, name = target.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, sys.modules["verl.experimental.agent_loop.tool_agent_loop"].ToolAgentLoop)
    cls(name="cl_tool_agent")  # hydra passes the config's name as a keyword: AgentLoopBase takes **kwargs


@pytest.mark.parametrize("fmt", ["llama3_json", "mistral"])
def test_parsers_read_what_the_model_family_writes(plugins: Any, tokenizer: Any, fmt: str) -> None:
    tool_parser = sys.modules["verl.experimental.agent_loop.tool_parser"].ToolParser
    parser = tool_parser.get_tool_parser(fmt, tokenizer)
    written = format_calls(CALLS, fmt)  # type: ignore[arg-type]
    if fmt == "llama3_json":
        written = "<|python_tag|>" + written
    ids = tokenizer(written + "<|eot_id|>" + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    content, calls = asyncio.run(parser.extract_tool_calls(ids, tools=None))
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [(c["name"], c["arguments"]) for c in CALLS]
    assert content.strip() == ""
    # plain text is no call, and comes back as the content
    ids = tokenizer("hello there" + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    content, calls = asyncio.run(parser.extract_tool_calls(ids))
    assert calls == [] and content.strip() == "hello there"


def test_response_text_keeps_only_the_formats_markers(tokenizer: Any) -> None:
    ids = tokenizer("[TOOL_CALLS][]<|eot_id|>" + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    assert verl_plugins.response_text(tokenizer, ids, "mistral") == "[TOOL_CALLS][]"
    assert verl_plugins.response_text(tokenizer, ids, "llama3_json") == "[]"


def test_sft_dataset_reads_the_json_columns(plugins: Any, tmp_path: Path) -> None:
    conversation = [
        {"role": "user", "content": "weather?", "tool_calls": None, "tool_call_id": None},
        {
            "role": "assistant",
            "content": "<tool_call>...</tool_call>",
            "tool_calls": None,
            "tool_call_id": None,
        },
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "w",
                "description": "",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    table = pa.table(
        {
            "messages": [json.dumps(conversation), json.dumps(conversation[:1])],
            "tools": [json.dumps(tools), ""],
        }
    )
    pq.write_table(table, tmp_path / "sft.parquet")
    dataset = plugins.JsonMultiTurnSFTDataset(str(tmp_path / "sft.parquet"))
    assert dataset[0] == (conversation, tools)
    assert dataset[1] == (conversation[:1], None)
