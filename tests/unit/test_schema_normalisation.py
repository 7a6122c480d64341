"""Schema v1 decoding of real-world shapes: OpenAI variants one by one, and the Anthropic Messages adapter."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.data.ingest import ingest_day, read_curated
from continuous_learning.data.schema import (
    KNOWN_FIELDS,
    RecordError,
    decode_interaction,
    to_builtins,
    unlisted_fields,
)
from continuous_learning.data.synthetic import make_interaction

DAY = date(2026, 11, 4)
BASE = {"schema_version": 1, "interaction_id": "r-1", "timestamp": "2026-11-04T10:00:00Z", "agent": "support"}


def _decode(record: dict[str, Any]) -> tuple[list[dict[str, Any]], Any, dict[str, Any]]:
    typed, generic = decode_interaction(json.dumps(record).encode())
    return to_builtins(typed.messages), to_builtins(typed.tools), unlisted_fields(typed, generic)


def _reason(record: dict[str, Any]) -> str:
    with pytest.raises(RecordError) as caught:
        decode_interaction(json.dumps(record).encode())
    return str(caught.value)


def test_records_in_the_plain_form_decode_as_they_are() -> None:
    record, _ = make_interaction(random.Random(3), DAY, 3)
    messages, tools, metadata = _decode(record)
    assert messages == [{k: v for k, v in m.items() if v is not None} for m in record["messages"]]
    assert tools == record["tools"] and metadata == {k: v for k, v in record.items() if k not in KNOWN_FIELDS}


def test_openai_variants_one_by_one() -> None:
    conversation = [
            {"role": "user", "content": "hi", "metadata": {"lang": "en"}, "x_trace": None},
            {"role": "assistant", "content": "thinking aloud", "reasoning": "a", "reasoning_content": "b"},
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "function": {"name": "lookup", "arguments": {"q": "é"}}}]},
    ]  # fmt: skip
    messages, _, _ = _decode(dict(BASE, messages=conversation))
    # a raw ``metadata`` key is an unknown key like any other: kept under the message's metadata
    assert messages[0] == {
        "role": "user",
        "content": "hi",
        "metadata": {"metadata": {"lang": "en"}, "x_trace": None},
    }
    # ``reasoning_content`` wins; a different ``reasoning`` is kept, not lost
    assert messages[1]["reasoning_content"] == "b" and messages[1]["metadata"] == {"reasoning": "a"}
    assert messages[2]["content"] == "one\ntwo"
    assert messages[3] == {
        "role": "assistant",
        "refusal": "No.",
        "metadata": {"content_part_types": {"refusal": 1}},
    }
    call = messages[5]["tool_calls"][0]
    assert call == {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"é"}'}}


def test_reasons_of_records_normalisation_cannot_save() -> None:
    sdk_user: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    sdk_answer: dict[str, Any] = {"role": "assistant", "content": "yo", "refusal": None, "annotations": []}
    assert _reason(dict(BASE, timestamp=12345, messages=[sdk_user, sdk_answer])) == (
        "schema v1 violation: Expected `datetime`, got `int` - at `timestamp`"
    )
    assert _reason(
        dict(BASE, messages=[sdk_user, {"role": "assistant", "refusal": None, "audio": None}])
    ) == ("schema v1 violation: messages[1]: assistant message has neither content nor tool_calls")
    assert _reason(dict(BASE, messages=[sdk_user, {"role": "critic", "content": "x"}])).startswith(
        "schema v1 violation: Invalid enum value 'critic'"
    )
    assert _reason(dict(BASE, messages=[sdk_user, sdk_answer], messages_format="gemini")) == (
        "schema v1 violation: unsupported messages_format 'gemini' (this code reads: openai, anthropic)"
    )
    assert _reason(dict(BASE, schema_version=3, messages=[sdk_user, sdk_answer])) == (
        "unsupported schema_version 3 (this code reads: 1)"
    )


ANTHROPIC_RECORD: dict[str, Any] = dict(
    BASE,
    messages_format="anthropic",
    system=[{"type": "text", "text": "You are a support agent.", "cache_control": {"type": "ephemeral"}}],
    tools=[
        {"name": "get_order", "description": "Look an order up",
         "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ],
    messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "Where is order 8812?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Look the order up.", "signature": "EqQBCgIYAh"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_order", "input": {"order_id": "8812"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "no such order", "is_error": True},
            {"type": "text", "text": "It was placed yesterday."},
        ]},
        {"role": "assistant", "content": [
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
            {"type": "text", "text": "It ships tomorrow."},
        ]},
    ],
    stop_reason="end_turn",
)  # fmt: skip


def test_the_anthropic_adapter() -> None:
    messages, tools, metadata = _decode(ANTHROPIC_RECORD)
    assert metadata == {
        "messages_format": "anthropic",
        "stop_reason": "end_turn",
    }  # ``system`` is a message now
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user", "assistant"]
    system, user, calling, result, user_again, answer = messages
    assert system["content"] == "You are a support agent."
    assert system["metadata"]["content_parts"][0]["cache_control"] == {"type": "ephemeral"}
    assert user["content"] == "Where is order 8812?"
    assert user["metadata"]["content_part_types"] == {"text": 1, "image": 1}
    assert user["metadata"]["content_parts"][0]["type"] == "image"
    assert calling["content"] == "Let me check." and calling["reasoning_content"] == "Look the order up."
    assert calling["tool_calls"] == [
        {
            "id": "toolu_01",
            "type": "function",
            "function": {"name": "get_order", "arguments": '{"order_id":"8812"}'},
        }
    ]
    assert calling["metadata"]["reasoning_signatures"] == ["EqQBCgIYAh"]
    assert result == {
        "role": "tool", "tool_call_id": "toolu_01", "content": "no such order",
        "metadata": {"original_block": "tool_result", "is_error": True, "anthropic_message": 2},
    }  # fmt: skip
    assert (
        user_again["content"] == "It was placed yesterday."
        and user_again["metadata"]["anthropic_message"] == 2
    )
    assert answer["content"] == "It ships tomorrow."
    assert answer["metadata"]["content_parts"] == [{"type": "redacted_thinking", "data": "EmwKAhgB"}]
    assert tools == [
        {"type": "function", "function": {"name": "get_order", "description": "Look an order up",
                                          "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ]  # fmt: skip


def test_an_anthropic_record_is_recognised_by_its_blocks_or_its_field() -> None:
    detected = {k: v for k, v in ANTHROPIC_RECORD.items() if k != "messages_format"}
    assert _decode(detected) == _decode(ANTHROPIC_RECORD)
    # plain text turns look like OpenAI's: the field says where ``system`` is
    text_only = dict(BASE, messages_format="anthropic", system="Be brief.",
                     messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])  # fmt: skip
    messages, _, metadata = _decode(text_only)
    assert [m["content"] for m in messages] == ["Be brief.", "hi", "hello"]
    assert metadata == {"messages_format": "anthropic"}
    # without it, ``system`` is an unlisted field like any other
    messages, _, metadata = _decode({k: v for k, v in text_only.items() if k != "messages_format"})
    assert len(messages) == 2 and metadata == {"system": "Be brief."}


def test_anthropic_records_the_adapter_cannot_read_are_quarantined_with_where() -> None:
    bad_role = dict(ANTHROPIC_RECORD, messages=[{"role": "tool", "content": "x"}])
    assert _reason(bad_role) == (
        "schema v1 violation: messages[0].role must be user or assistant in the Anthropic shape, got 'tool'"
    )
    no_answer = dict(ANTHROPIC_RECORD, messages=ANTHROPIC_RECORD["messages"][:3])
    assert _reason(no_answer) == (
        "schema v1 violation: messages: the last message must be from the assistant "
        "(messages as converted from the Anthropic shape)"
    )


def test_an_anthropic_day_is_ingested(tmp_path: Path) -> None:
    folder = tmp_path / "raw" / f"dt={DAY}"
    folder.mkdir(parents=True)
    records = [dict(ANTHROPIC_RECORD, interaction_id=f"a-{i}") for i in range(5)]
    (folder / "claude.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = ingest_day(DAY, f"file://{tmp_path}/raw", f"file://{tmp_path}/data")
    assert (report.accepted, report.quarantined) == (5, 0)
    table = read_curated(f"file://{tmp_path}/data", DAY)
    assert table is not None
    row = table.to_pylist()[0]
    assert json.loads(row["metadata_json"]) == {"messages_format": "anthropic", "stop_reason": "end_turn"}
    assert json.loads(row["messages_json"])[0]["role"] == "system"
    assert json.loads(row["tools_json"])[0]["function"]["name"] == "get_order"
