"""The data of a VeRL run: each split prepared for the project's agent loops, VeRL's tool config and
agent-loop config, and the SFT conversations; rows VeRL would render differently or refuse are left out
here, counted by reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from continuous_learning import storage

from continuous_learning_trainer.verl_plugins import SINGLE_TURN_AGENT, TOOL_AGENT, agent_loop_config

log = logging.getLogger(__name__)

#: Reference sources an SFT candidate learns from.
SFT_SOURCES = ("correction", "positive_feedback")

#: Why a row of a split is left out of a VeRL run (counts go to the log and the result's metrics).
SCHEMA_CONFLICT = "a tool's schema differs from the one its name has in the run's tool config"
TOO_LONG_PROMPT = "prompt longer than verl.max_prompt_length tokens"
TOO_LONG_EXAMPLE = "conversation longer than verl.max_prompt_length + max_completion_tokens tokens"
NO_REFERENCE = "no correction or positively rated answer"
UNLOADABLE_TOOL = "a tool spec VeRL cannot load"
EMPTY_REFERENCE = "the reference has neither text nor tool calls"
NOT_TURN_BY_TURN = "the chat template renders the conversation differently message by message"


@dataclass
class PreparedSplit:
    """What :func:`prepare_dataset` / :func:`prepare_sft_dataset` wrote: rows kept, rows left out by reason."""

    rows: int
    skipped: dict[str, int]


def _read_table(uri: str) -> Any:
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))


def row_tools(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A reward-dataset row's tools (``extra_info.tools_json``) as VeRL's rollout hands them to the chat
    template (:func:`continuous_learning.models.chat_templates.normalise_tools`, which evaluation renders
    with too); raises ``ToolSchemaError`` for a spec VeRL would refuse to load."""
    from continuous_learning.models.chat_templates import normalise_tools

    tools_json = (row.get("extra_info") or {}).get("tools_json")
    return normalise_tools(json.loads(tools_json) if tools_json else None) or []


def chat_token_ids(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, *, generation_prompt: bool
) -> list[int]:
    """Token ids of ``messages`` in the tokenizer's chat template: the call VeRL makes to build a
    rollout prompt (verl/utils/tokenizer/chat_template.py: ``apply_chat_template(..., tokenize=True)``)."""
    ids = tokenizer.apply_chat_template(
        messages,
        tools=tools or None,
        add_generation_prompt=generation_prompt,
        tokenize=True,
        return_dict=False,
    )
    if isinstance(ids, Mapping):
        ids = ids["input_ids"]
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return list(ids)


def chat_tokens(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, *, generation_prompt: bool
) -> int:
    """Token count of ``messages`` in the tokenizer's chat template (see :func:`chat_token_ids`)."""
    return len(chat_token_ids(tokenizer, messages, tools, generation_prompt=generation_prompt))


def default_prefix_length(tokenizer: Any) -> int:
    """Tokens the chat template puts before any conversation (a default system turn, or none): what VeRL's
    multi-turn SFT dataset drops from each later message it renders alone."""
    one = chat_token_ids(tokenizer, [{"role": "user", "content": ""}], None, generation_prompt=False)
    two = chat_token_ids(tokenizer, [{"role": "user", "content": ""}] * 2, None, generation_prompt=False)
    return len(one) - (len(two) - len(one))


def renders_turn_by_turn(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, prefix: int | None = None
) -> bool:
    """Whether the conversation's tokens are its messages' tokens rendered one at a time, which VeRL's
    multi-turn SFT dataset builds its loss mask from (and asserts): each message alone, tools with the
    first, the template's default prefix (``prefix``: :func:`default_prefix_length`) dropped from the later
    ones. Templates that merge consecutive messages (Qwen-style ChatML puts parallel tool results in one
    user turn) break it."""
    if prefix is None:
        prefix = default_prefix_length(tokenizer)
    pieces: list[int] = []
    for i, message in enumerate(messages):
        ids = chat_token_ids(tokenizer, [message], tools if i == 0 else None, generation_prompt=False)
        pieces += ids[prefix:] if i and message["role"] != "system" else ids
    return pieces == chat_token_ids(tokenizer, messages, tools, generation_prompt=False)


def chat_tokenizer(model_dir: Path) -> Any:
    """The base model's tokenizer when it has a chat template (VeRL renders every prompt with it),
    else None: prompts are then not measured here."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not getattr(tokenizer, "chat_template", None):
        log.warning("%s has no chat template: prompt lengths are not checked before VeRL starts", model_dir)
        return None
    return tokenizer


def prepare_dataset(
    source_uri: str,
    target: Path,
    registry: dict[str, dict[str, Any]],
    *,
    tokenizer: Any = None,
    max_prompt_length: int | None = None,
) -> PreparedSplit:
    """Download one split and prepare its rows for the project's agent loops.

    ``registry`` (tool name -> schema, filled in split order, first schema per name) becomes the run's
    tool config: VeRL knows one schema per tool name, so a row whose tool has another schema under a
    known name is left out (its prompt would show the other schema), and so is a row with a tool spec
    VeRL would refuse to load (the whole run would stop). Rows with tools get ``agent_name=cl_tool_agent``
    and ``extra_info.tool_selection`` (their tools, in their order: the tool agent loop shows those);
    rows without get ``single_turn_agent``. With a ``tokenizer``, rows whose prompt (messages and tools
    as VeRL passes them) has more than ``max_prompt_length`` tokens are left out.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from continuous_learning.models.chat_templates import ToolSchemaError, verl_messages

    table = _read_table(source_uri)
    kept: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for row in table.to_pylist():
        try:
            own = {schema["function"]["name"]: schema for schema in row_tools(row)}
        except ToolSchemaError as exc:
            log.warning("row %s left out: %s", (row.get("extra_info") or {}).get("interaction_id"), exc)
            skipped[UNLOADABLE_TOOL] = skipped.get(UNLOADABLE_TOOL, 0) + 1
            continue
        if any(registry.get(name, schema) != schema for name, schema in own.items()):
            skipped[SCHEMA_CONFLICT] = skipped.get(SCHEMA_CONFLICT, 0) + 1
            continue
        if tokenizer is not None and max_prompt_length:
            length = chat_tokens(
                tokenizer, verl_messages(row["prompt"]), list(own.values()), generation_prompt=True
            )
            if length > max_prompt_length:
                skipped[TOO_LONG_PROMPT] = skipped.get(TOO_LONG_PROMPT, 0) + 1
                continue
        for name, schema in own.items():
            registry.setdefault(name, schema)
        row["extra_info"]["tool_selection"] = list(own)
        row["agent_name"] = TOOL_AGENT if own else SINGLE_TURN_AGENT
        kept.append(row)
    extra = [f for f in table.schema.field("extra_info").type if f.name != "tool_selection"]
    extra.append(pa.field("tool_selection", pa.list_(pa.string())))
    fields = [
        pa.field(f.name, pa.struct(extra)) if f.name == "extra_info" else f
        for f in table.schema
        if f.name != "agent_name"
    ]
    schema = pa.schema([*fields, pa.field("agent_name", pa.string())])
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(kept, schema=schema), target)
    if skipped:
        log.warning("%s: %d rows kept, left out: %s", source_uri, len(kept), skipped)
    return PreparedSplit(len(kept), skipped)


def _escape_interpolation(value: Any) -> Any:
    """OmegaConf reads the tool config and resolves ``${...}`` in its strings: escape them."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, list):
        return [_escape_interpolation(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape_interpolation(v) for k, v in value.items()}
    return value


def write_tool_config(tools: list[dict[str, Any]], path: Path) -> None:
    """VeRL's tool config: one native tool per schema. ``tools`` are :func:`row_tools`' (VeRL's form:
    VeRL validates them and hands the template the same dicts back), with ``${`` escaped for OmegaConf,
    which reads the file. The tools are not executed in training (the agent loop stops after
    ``max_assistant_turns`` and the reward scores the calls), so VeRL's ``BaseTool`` serves as the
    stand-in implementation."""
    import yaml

    document = {
        "tools": [
            {
                "class_name": "verl.tools.base_tool.BaseTool",
                "config": {"type": "native"},
                "tool_schema": _escape_interpolation(tool),
            }
            for tool in tools
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def write_agent_loop_config(path: Path) -> None:
    """``rollout.agent.agent_loop_config_path``: the project's agent loops (verl_plugins)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(agent_loop_config(), sort_keys=False))


def sft_answer(reference: Mapping[str, Any], tool_call_format: str) -> str:
    """The reference answer as the model writes it: its tool calls in the run's tool-call format (the
    format the reward parses), else its text; the CPU engine's SFT writes the same."""
    from continuous_learning.models.tool_calls import format_calls

    calls = reference.get("tool_calls") or []
    if calls:
        return format_calls(
            [{"name": c["name"], "arguments": c["arguments"]} for c in calls],
            tool_call_format,  # type: ignore[arg-type]
        )
    return str(reference.get("content") or "")


def prepare_sft_dataset(
    source_uri: str,
    target: Path,
    tool_call_format: str,
    *,
    tokenizer: Any = None,
    max_length: int | None = None,
) -> PreparedSplit:
    """The SFT data of one split: each reference (a correction, or a positively rated answer) as a
    conversation, the prompt's messages with the reference answer appended as the assistant turn.

    Columns ``messages`` and ``tools`` are JSON text (read by ``JsonMultiTurnSFTDataset``): a struct
    column would give each row every other row's keys. Tools are in the form the RL rollout shows them,
    so SFT trains on the prompts GRPO and evaluation render. With a ``tokenizer``, conversations longer
    than ``max_length`` tokens are left out (VeRL would otherwise cut the answer off), and so are those
    the template does not render message by message (:func:`renders_turn_by_turn`; VeRL's SFT dataset
    stops the run on the first one).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from continuous_learning.models.chat_templates import ToolSchemaError, verl_messages

    records: list[dict[str, str]] = []
    prefix = default_prefix_length(tokenizer) if tokenizer is not None else 0  # once, not per row
    skipped: dict[str, int] = {}
    for row in _read_table(source_uri).to_pylist():
        extra = row.get("extra_info") or {}
        if extra.get("reference_source") not in SFT_SOURCES:
            skipped[NO_REFERENCE] = skipped.get(NO_REFERENCE, 0) + 1
            continue
        answer = sft_answer(json.loads(row["reward_model"]["ground_truth"]), tool_call_format)
        if not answer:
            skipped[EMPTY_REFERENCE] = skipped.get(EMPTY_REFERENCE, 0) + 1
            continue
        # the prompt in the shape VeRL's rollout renders it (and evaluation), the answer appended
        messages = verl_messages([*row["prompt"], {"role": "assistant", "content": answer}])
        try:
            tools = row_tools(row)
        except ToolSchemaError:
            skipped[UNLOADABLE_TOOL] = skipped.get(UNLOADABLE_TOOL, 0) + 1
            continue
        if (
            tokenizer is not None
            and max_length
            and chat_tokens(tokenizer, messages, tools, generation_prompt=False) > max_length
        ):
            skipped[TOO_LONG_EXAMPLE] = skipped.get(TOO_LONG_EXAMPLE, 0) + 1
            continue
        if tokenizer is not None and not renders_turn_by_turn(tokenizer, messages, tools, prefix):
            skipped[NOT_TURN_BY_TURN] = skipped.get(NOT_TURN_BY_TURN, 0) + 1
            continue
        records.append(
            {
                "messages": json.dumps(messages, ensure_ascii=False),
                "tools": json.dumps(tools, ensure_ascii=False) if tools else "",
                "interaction_id": str(extra.get("interaction_id") or ""),
                "reference_source": str(extra.get("reference_source")),
            }
        )
    schema = pa.schema(
        [(name, pa.string()) for name in ("messages", "tools", "interaction_id", "reference_source")]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), target)
    if skipped:
        log.warning("%s: %d SFT examples, left out: %s", source_uri, len(records), skipped)
    return PreparedSplit(len(records), skipped)
