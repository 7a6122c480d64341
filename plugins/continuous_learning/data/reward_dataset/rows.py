"""Reward rows of curated rows: the prompt (the conversation before the agent's last answer) and the
reference its reward is scored against (the user's correction, or the answer that got positive feedback),
built as Arrow columns in ``VERL_SCHEMA``."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from continuous_learning.data.reward_dataset.schema import (
    FUNCTION_TYPE,
    MESSAGE_TYPE,
    TOOL_CALL_TYPE,
    VERL_SCHEMA,
    split_of,
)

# The curated columns a reward row is made from.
CURATED_INPUTS = [
    "interaction_id",
    "agent",
    "messages_json",
    "feedback_score",
    "correction_json",
    "tools_json",
]
_NO_SIGNAL = "no correction and no positive feedback"
_NEGATIVE = "negative feedback without correction"
# PII redaction works on the text of tool-call arguments; where a match takes part of a JSON escape
# (an email right after \u00e9, say) the stored arguments are no longer JSON and give no reference.
_UNUSABLE = "tool-call arguments that are not JSON"


def _reference_of(message: dict[str, Any]) -> dict[str, Any]:
    calls = [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for c in message.get("tool_calls") or []
    ]
    return {"content": message.get("content"), "tool_calls": calls}


def _skipped(score: pa.Array, kept: pa.Array) -> Counter[str]:
    """Counts of the rows without a reference, by reason, in order of each reason's first row."""
    skipped = pc.invert(kept)
    no_signal = pc.and_(skipped, pc.or_(pc.is_null(score), pc.fill_null(pc.equal(score, 0), False)))
    negative = pc.and_(skipped, pc.invert(no_signal))
    found = []
    for reason, mask in ((_NO_SIGNAL, no_signal), (_NEGATIVE, negative)):
        rows = pc.indices_nonzero(mask)
        if len(rows):
            found.append((rows[0].as_py(), reason, len(rows)))
    return Counter({reason: count for _, reason, count in sorted(found)})


def _reference_row(messages_json: str, correction_json: str | None) -> tuple[Any, ...]:
    """(prompt messages, reference, source, negatives) of one interaction with a reference."""
    messages = msgspec.json.decode(messages_json)  # strings only: the same objects json.loads gives
    final = messages[-1]
    negatives: list[dict[str, Any]] = []
    if correction_json is not None:
        correction = msgspec.json.decode(correction_json)
        if isinstance(correction, str):  # a correction given as text: the reply the agent should have sent
            correction = {"content": correction}
        reference = _reference_of(correction | {"role": "assistant"})
        source = "correction"
        negatives.append(_reference_of(final))  # the user corrected what the agent said
    else:
        reference, source = _reference_of(final), "positive_feedback"
    if negatives and negatives[0] == reference:
        negatives = []
    return messages[:-1], reference, source, negatives


def _prompt_array(prompts: list[list[dict[str, Any]]]) -> pa.Array:
    """``list<MESSAGE_TYPE>`` of the prompts' messages, built from flat columns (no per-value inference)."""
    message_offsets, roles, contents, call_ids_of_tool = [0], [], [], []
    call_offsets, calls_missing, ids, kinds, names, arguments = [0], [], [], [], [], []
    for prompt in prompts:
        for message in prompt:
            roles.append(message["role"])
            contents.append(message.get("content"))
            call_ids_of_tool.append(message.get("tool_call_id"))
            calls = message.get("tool_calls")
            calls_missing.append(calls is None)
            for call in calls or []:
                ids.append(call["id"])
                kinds.append(call["type"])
                names.append(call["function"]["name"])
                arguments.append(call["function"]["arguments"])
            call_offsets.append(len(ids))
        message_offsets.append(len(roles))
    function = pa.StructArray.from_arrays(
        [pa.array(names, pa.string()), pa.array(arguments, pa.string())], fields=list(FUNCTION_TYPE)
    )
    call = pa.StructArray.from_arrays(
        [pa.array(ids, pa.string()), pa.array(kinds, pa.string()), function], fields=list(TOOL_CALL_TYPE)
    )
    tool_calls = pa.ListArray.from_arrays(
        pa.array(call_offsets, pa.int32()), call, mask=pa.array(calls_missing, pa.bool_())
    )
    message = pa.StructArray.from_arrays(
        [
            pa.array(roles, pa.string()),
            pa.array(contents, pa.string()),
            tool_calls,
            pa.array(call_ids_of_tool, pa.string()),
        ],
        fields=list(MESSAGE_TYPE),
    )
    return pa.ListArray.from_arrays(pa.array(message_offsets, pa.int32()), message)


def prompts_from_curated(
    table: pa.Table, day: date, validation_share: float, test_share: float
) -> tuple[pa.Table, Counter[str]]:
    """The reward rows (``VERL_SCHEMA``) of curated rows, in their order, and the skipped rows by reason.

    A row needs a reference: the user's correction (the agent's answer becomes a negative reference),
    or the agent's answer when the feedback was positive.
    """
    score = table.column("feedback_score").combine_chunks()
    kept = pc.or_(pc.is_valid(table.column("correction_json")), pc.fill_null(pc.greater(score, 0), False))
    skipped = _skipped(score, kept)
    rows = table.select(CURATED_INPUTS).filter(kept)
    ids, agents, messages_json, scores, corrections, tools = (
        rows.column(c).to_pylist() for c in CURATED_INPUTS
    )
    prompts, splits, sources, ground_truths, abilities = [], [], [], [], []
    unusable: list[int] = []
    for index, (key, messages, correction) in enumerate(zip(ids, messages_json, corrections, strict=True)):
        try:
            prompt, reference, source, negatives = _reference_row(messages, correction)
        except json.JSONDecodeError:  # text redaction can break arguments: see docs of _UNUSABLE
            unusable.append(index)
            continue
        prompts.append(prompt)
        sources.append(source)
        abilities.append("tool_use" if reference["tool_calls"] else "chat")
        ground_truths.append(json.dumps({**reference, "negatives": negatives}, sort_keys=True))
        splits.append(split_of(key, validation_share, test_share))
    if unusable:
        skipped[_UNUSABLE] += len(unusable)
        drop = set(unusable)
        ids, agents, scores, tools = (
            [v for i, v in enumerate(c) if i not in drop] for c in (ids, agents, scores, tools)
        )
    count = len(ids)
    extra_info = pa.StructArray.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(agents, pa.string()),
            pa.array([day.isoformat()] * count, pa.string()),
            pa.array(splits, pa.string()),
            pa.array([0] * count, pa.int64()),
            pa.array(scores, pa.float64()),
            pa.array(sources, pa.string()),
            pa.array(tools, pa.string()),
        ],
        fields=list(VERL_SCHEMA.field("extra_info").type),
    )
    reward_model = pa.StructArray.from_arrays(
        [pa.array(["rule"] * count, pa.string()), pa.array(ground_truths, pa.string())],
        fields=list(VERL_SCHEMA.field("reward_model").type),
    )
    prompts_table = pa.Table.from_arrays(
        [
            pa.array([f"agent/{agent}" for agent in agents], pa.string()),
            _prompt_array(prompts),
            pa.array(abilities, pa.string()),
            reward_model,
            extra_info,
        ],
        schema=VERL_SCHEMA,
    )
    return prompts_table, skipped


def rows_from_curated(
    table: pa.Table, day: date, validation_share: float, test_share: float
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The reward rows of curated rows, as dictionaries (``VERL_SCHEMA``); see :func:`prompts_from_curated`."""
    prompts, skipped = prompts_from_curated(table, day, validation_share, test_share)
    return prompts.to_pylist(), skipped
