"""VeRL 0.9.1's own prompt rendering for rollouts, run with .tools/verl-config's interpreter.

Input on stdin (JSON): ``{"tokenizer": DIR, "model_type": str|null, "tool_config": PATH|null, "rows":
[{"id", "prompt", "tool_selection", "agent_name"}]}`` with the rows as VeRL's RLHFDataset reads them.
Output on stdout: ``{id: {"text": str, "ids": [int]}}``, the prompt VeRL's agent loop builds for each row.

VeRL's package ``__init__`` imports torch, which this venv lacks, so the modules used are loaded from
VeRL's files directly; they are VeRL's code, unchanged:

- tools: verl/tools/tool_registry.py ``initialize_tools_from_config`` (OmegaConf.load, then
  ``OpenAIFunctionToolSchema.model_validate`` of each ``tool_schema``, from verl/tools/schemas.py);
  ``ToolAgentLoop.__init__``/``run`` (verl/experimental/agent_loop/tool_agent_loop.py) key them by
  name and pass ``model_dump(exclude_unset=True, exclude_none=True)`` of the row's ``tool_selection``;
- tokens: ``AgentLoopBase.__init__`` builds ``create_continuous_token_builder(tokenizer,
  hf_model_type=..., chat_template_kwargs={}, processor=None)`` and ``ct_build_initial_tokens`` calls
  its ``build_initial_tokens(messages, tools=...)`` (verl/utils/tokenizer/continuous_token*.py); the
  single-turn loop passes no tools. The text is VeRL's ``apply_chat_template(..., tokenize=False)``
  (verl/utils/tokenizer/chat_template.py), the function that builder calls with ``tokenize=True``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from transformers import AutoTokenizer

_SPEC = importlib.util.find_spec("verl")
assert _SPEC is not None and _SPEC.submodule_search_locations
VERL = Path(next(iter(_SPEC.submodule_search_locations)))


def _load_file(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_tokenizer_package() -> tuple[Any, Any]:
    package = types.ModuleType("verl_tokenizer_files")
    package.__path__ = [str(VERL / "utils" / "tokenizer")]
    sys.modules[package.__name__] = package
    chat_template = importlib.import_module("verl_tokenizer_files.chat_template")
    wiring = importlib.import_module("verl_tokenizer_files.continuous_token_wiring")
    return chat_template, wiring


def load_tools(tool_config: str | None, schemas: Any) -> dict[str, Any]:
    tools: dict[str, Any] = {}
    if not tool_config:
        return tools
    for tool_config_entry in OmegaConf.load(tool_config).tools:
        assert tool_config_entry.config.type == "native", tool_config_entry
        schema_dict = OmegaConf.to_container(tool_config_entry.tool_schema, resolve=True)
        schema = schemas.OpenAIFunctionToolSchema.model_validate(schema_dict)
        tools[schema.function.name] = schema  # BaseTool.name; ToolAgentLoop: {tool.name: tool}
    return tools


def main() -> None:
    request = json.load(sys.stdin)
    schemas = _load_file("verl_tool_schemas", VERL / "tools" / "schemas.py")
    chat_template, wiring = _load_tokenizer_package()
    tokenizer = AutoTokenizer.from_pretrained(request["tokenizer"])
    builder = wiring.create_continuous_token_builder(
        tokenizer,
        hf_model_type=request["model_type"],
        chat_template_kwargs={},
        mm_processor_kwargs={},
        processor=None,
    )
    tools = load_tools(request["tool_config"], schemas)
    dump = {name: t.model_dump(exclude_unset=True, exclude_none=True) for name, t in tools.items()}
    out = {}
    for row in request["rows"]:
        messages = list(row["prompt"])
        if row["agent_name"] == "single_turn_agent":
            row_tools = None
        elif row["tool_selection"] and tools:
            row_tools = [dump[name] for name in row["tool_selection"] if name in tools]
        else:
            row_tools = list(dump.values())
        ids = builder.build_initial_tokens(messages, tools=row_tools)
        text = chat_template.apply_chat_template(
            tokenizer, messages, tokenize=False, add_generation_prompt=True, tools=row_tools
        )
        out[row["id"]] = {"text": text, "ids": list(ids), "tools": row_tools}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
