"""A day logged the way the OpenAI SDK and OpenAI-compatible servers return messages is accepted whole.

Assistant turns are what ``ChatCompletionMessage.model_dump()`` gives (openai 2.x: ``content``, ``refusal``,
``role``, ``annotations``, ``audio``, ``function_call``, ``tool_calls``, unused ones null); request turns are
the SDK's message params (content parts, the ``developer`` role, ``name``); vLLM, SGLang and DeepSeek add
``reasoning_content``, OpenRouter and newer vLLM ``reasoning``. See docs/input-contract.md.
"""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.ingest import ingest_day, read_curated
from continuous_learning.data.reward_dataset import build_day_partition, prompts_from_curated

DAY = date(2026, 11, 3)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}


def _dump(content: str | None = None, **fields: Any) -> dict[str, Any]:
    """An assistant message as ``ChatCompletionMessage.model_dump()`` writes it."""
    message = {
        "content": content,
        "refusal": None,
        "role": "assistant",
        "annotations": None,
        "audio": None,
        "function_call": None,
        "tool_calls": None,
    }
    message.update(fields)
    return message


def _call(call_id: str, city: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "function": {"arguments": json.dumps({"city": city}), "name": "get_weather"},
        "type": "function",
    }


def _conversation(kind: int, n: int) -> list[dict[str, Any]]:
    developer = {"role": "developer", "content": "You are a concise travel assistant."}
    city = ["Paris", "Lima", "Osaka", "Accra", "Oslo", "Quito"][n % 6]
    if kind == 0:  # plain chat, an empty annotations list as servers return it
        return [
            developer,
            {"role": "user", "content": f"Best month to visit {city}?"},
            _dump("May.", annotations=[]),
        ]
    if kind == 1:  # content parts: text and an image
        return [
            developer,
            {"role": "user", "content": [
                {"type": "text", "text": f"Where in {city} is this?"},
                {"type": "image_url", "image_url": {"url": f"https://img.example/{n}.png", "detail": "low"}},
            ]},
            _dump("Near the old town."),
        ]  # fmt: skip
    if kind == 2:  # a tool call and its result
        return [
            developer,
            {"role": "user", "content": f"Weather in {city}?", "name": "traveller_42"},
            _dump(None, tool_calls=[_call(f"call_{n}", city)]),
            {"role": "tool", "tool_call_id": f"call_{n}", "content": '{"temp_c": 21}'},
            _dump(f"It is 21 °C in {city}."),
        ]
    if kind == 3:  # a refusal: null content, the refusal text
        return [developer, {"role": "user", "content": "Help me forge a passport."},
                _dump(None, refusal="I can't help with that.")]  # fmt: skip
    if kind == 4:  # reasoning kept apart from the answer (vLLM, SGLang, DeepSeek)
        return [
            {"role": "system", "content": "Think first."},
            {"role": "user", "content": f"Is {city} in the southern hemisphere?"},
            _dump("No.", reasoning_content=f"{city} lies north of the equator; mail me at ana@example.com"),
        ]
    if kind == 5:  # ``reasoning`` (OpenRouter, newer vLLM) and web-search annotations
        citation = {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 4,
                                                             "title": "Visit", "url": "https://visit.example"}}  # fmt: skip
        return [
            developer,
            {"role": "user", "content": [{"type": "text", "text": f"Museums in {city}?"}]},
            _dump("Many.", reasoning="Look it up.", annotations=[citation]),
        ]
    if kind == 6:  # the legacy function_call and its ``function`` result
        return [
            developer,
            {"role": "user", "content": f"Weather in {city}, old client?"},
            _dump(None, function_call={"arguments": json.dumps({"city": city}), "name": "get_weather"}),
            {"role": "function", "name": "get_weather", "content": '{"temp_c": 9}'},
            _dump("9 °C."),
        ]
    if kind == 7:  # audio in, a spoken answer out (content null, the transcript in audio)
        audio = {
            "id": f"audio_{n}",
            "data": "UklGRg==",
            "expires_at": 1790000000,
            "transcript": "Take a coat.",
        }
        return [
            developer,
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}],
            },
            _dump(None, audio=audio),
        ]
    if kind == 8:  # parallel calls as a streamed response assembles them (with ``index``), tool content parts
        return [
            developer,
            {"role": "user", "content": f"Weather in {city} and Oslo?"},
            _dump(
                "Checking both.",
                tool_calls=[dict(_call(f"a{n}", city), index=0), dict(_call(f"b{n}", "Oslo"), index=1)],
            ),
            {"role": "tool", "tool_call_id": f"a{n}", "content": [{"type": "text", "text": '{"temp_c": 3}'}]},
            {
                "role": "tool",
                "tool_call_id": f"b{n}",
                "content": [{"type": "text", "text": '{"temp_c": -2}'}],
            },
            _dump("3 °C and -2 °C."),
        ]
    # kind 9: a file part and an earlier assistant turn given back as content parts
    return [
        developer,
        {"role": "user", "content": [
            {"type": "text", "text": "Summarise my itinerary."},
            {"type": "file", "file": {"file_id": f"file-{n}", "filename": "trip.pdf"}},
        ]},
        {"role": "assistant", "content": [{"type": "text", "text": "Which part?"}]},
        {"role": "user", "content": "Day one."},
        _dump("A museum, then dinner."),
    ]  # fmt: skip


def openai_day(count: int = 60) -> list[dict[str, Any]]:
    records = []
    for n in range(count):
        kind = n % 10
        record: dict[str, Any] = {
            "schema_version": 1,
            "interaction_id": f"oai-{n:03d}",
            "timestamp": f"2026-11-03T{n % 24:02d}:{n % 60:02d}:00+00:00",
            "agent": "travel_assistant",
            "model_version": "gpt-4o-2024-08-06",
            "messages": _conversation(kind, n),
            # what a logging middleware keeps of the response
            "id": f"chatcmpl-{n}",
            "system_fingerprint": "fp_50cad350e4",
            "usage": {"prompt_tokens": 50 + n, "completion_tokens": 7, "total_tokens": 57 + n},
            "finish_reason": "tool_calls" if kind in (2, 8) else "stop",
        }
        if kind in (2, 6, 8):
            record["tools"] = [WEATHER_TOOL]
        if kind in (0, 3, 4):
            record["feedback"] = [{"timestamp": "2026-11-03T23:00:00Z", "type": "thumbs", "value": 1}]
        if kind == 1:  # a correction given as an SDK dump too
            record["feedback"] = [{"timestamp": "2026-11-03T23:00:00Z", "type": "correction",
                                   "content": _dump("In the Marais, near Place des Vosges.")}]  # fmt: skip
        records.append(record)
    return records


def _write_day(root: Path, records: list[dict[str, Any]]) -> None:
    folder = root / "raw" / f"dt={DAY}"
    folder.mkdir(parents=True)
    (folder / "openai.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    table = read_curated(f"file://{tmp_path}/data", DAY)
    assert table is not None
    rows = {}
    for row in table.to_pylist():
        row["messages"] = json.loads(row.pop("messages_json"))
        row["metadata"] = json.loads(row.pop("metadata_json"))
        rows[row["interaction_id"]] = row
    return rows


def test_a_day_as_the_openai_sdk_dumps_it_is_accepted_whole(tmp_path: Path) -> None:
    _write_day(tmp_path, openai_day())
    report = ingest_day(DAY, f"file://{tmp_path}/raw", f"file://{tmp_path}/data", max_quarantine_share=0.0)
    assert (report.read, report.accepted, report.duplicates, report.quarantined) == (60, 60, 0, 0)
    assert report.quarantine_reasons == {}
    rows = _rows(tmp_path)
    assert len(rows) == 60

    # SDK nulls mean absent: no null refusal/audio/function_call/annotations anywhere.
    for row in rows.values():
        for message in row["messages"]:
            assert None not in (
                message.get(k, 0) for k in ("refusal", "audio", "function_call", "annotations")
            )
            assert message["role"] in ("system", "user", "assistant", "tool")
        # top-level fields the contract does not list are the row's metadata
        assert row["metadata"]["system_fingerprint"] == "fp_50cad350e4" and "usage" in row["metadata"]

    chat = rows["oai-000"]["messages"]
    assert chat[0] == {"role": "system", "content": "You are a concise travel assistant.",
                       "metadata": {"original_role": "developer"}}  # fmt: skip
    assert chat[2] == {"role": "assistant", "content": "May."}

    parts = rows["oai-001"]["messages"][1]
    assert parts["content"] == "Where in Lima is this?"
    assert parts["metadata"]["content_part_types"] == {"text": 1, "image_url": 1}
    assert parts["metadata"]["content_parts"] == [
        {"type": "image_url", "image_url": {"url": "https://img.example/1.png", "detail": "low"}}
    ]

    calls = rows["oai-002"]["messages"]
    assert calls[1]["name"] == "traveller_42"
    assert "content" not in calls[2] and calls[2]["tool_calls"] == [_call("call_2", "Osaka")]  # null: absent
    assert calls[3] == {"role": "tool", "tool_call_id": "call_2", "content": '{"temp_c": 21}'}
    assert json.loads(rows["oai-002"]["tools_json"]) == [WEATHER_TOOL]

    refusal = rows["oai-003"]["messages"][-1]
    assert refusal == {"role": "assistant", "refusal": "I can't help with that."}  # content null: absent

    reasoning = rows["oai-004"]["messages"][-1]
    assert reasoning["content"] == "No."
    assert reasoning["reasoning_content"] == "Oslo lies north of the equator; mail me at <EMAIL>"  # redacted

    annotated = rows["oai-005"]["messages"][-1]
    assert annotated["content"] == "Many." and annotated["reasoning_content"] == "Look it up."
    assert annotated["metadata"]["annotations"][0]["type"] == "url_citation"

    legacy = rows["oai-006"]["messages"]
    assert legacy[2]["tool_calls"] == [{"id": "function_call_2", "type": "function",
                                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]  # fmt: skip
    assert legacy[2]["metadata"] == {"tool_calls_from": "function_call"}
    assert legacy[3] == {"role": "tool", "name": "get_weather", "tool_call_id": "function_call_2",
                         "content": '{"temp_c": 9}', "metadata": {"original_role": "function"}}  # fmt: skip

    spoken = rows["oai-007"]["messages"]
    assert spoken[1]["content"] == "" and spoken[1]["metadata"]["content_part_types"] == {"input_audio": 1}
    assert (
        spoken[2]["content"] == "Take a coat." and spoken[2]["metadata"]["content_from"] == "audio.transcript"
    )
    assert spoken[2]["metadata"]["audio"]["id"] == "audio_7"

    parallel = rows["oai-008"]["messages"]
    assert [c["id"] for c in parallel[2]["tool_calls"]] == ["a8", "b8"]
    assert all("index" not in c for c in parallel[2]["tool_calls"])
    assert parallel[2]["metadata"]["tool_call_extras"] == [{"index": 0}, {"index": 1}]
    assert parallel[3]["content"] == '{"temp_c": 3}'

    filed = rows["oai-009"]["messages"]
    assert filed[1]["content"] == "Summarise my itinerary."
    assert filed[1]["metadata"]["content_parts"][0]["type"] == "file"
    assert filed[2] == {
        "role": "assistant",
        "content": "Which part?",
        "metadata": {"content_part_types": {"text": 1}},
    }

    correction = json.loads(rows["oai-001"]["correction_json"])  # as every correction: the role left out
    assert correction == {"content": "In the Marais, near Place des Vosges."}


def test_the_reward_build_takes_refusals_and_normalised_messages(tmp_path: Path) -> None:
    _write_day(tmp_path, openai_day())
    ingest_day(DAY, f"file://{tmp_path}/raw", f"file://{tmp_path}/data")
    report = build_day_partition(f"file://{tmp_path}/data", DAY, 0.1, 0.2)
    table = read_curated(f"file://{tmp_path}/data", DAY)
    assert table is not None
    prompts, _ = prompts_from_curated(table, DAY, 0.1, 0.2)
    by_id = {row["extra_info"]["interaction_id"]: row for row in prompts.to_pylist()}
    # thumbs up on kinds 0, 3 (the refusal) and 4; a correction on kind 1: 4 x 6 rows
    assert report.prompts == len(by_id) == 24
    refused = json.loads(by_id["oai-003"]["reward_model"]["ground_truth"])
    assert refused["content"] is None and refused["tool_calls"] == []
    assert [m["role"] for m in by_id["oai-001"]["prompt"]] == ["system", "user"]
    assert by_id["oai-001"]["prompt"][1]["content"] == "Where in Lima is this?"


def test_every_record_of_the_day_needs_normalisation() -> None:
    """The day holds the shapes a strict decode refuses (``unknown field 'refusal'``, content parts,
    ``developer``): each of its records goes through normalisation."""
    import msgspec
    from continuous_learning.data.schema import InteractionV1

    strict = msgspec.json.Decoder(InteractionV1)
    refused = 0
    for record in openai_day():
        try:
            strict.decode(json.dumps(record))
        except msgspec.ValidationError:
            refused += 1
    assert refused == 60


def test_a_newer_schema_version_stays_quarantined_with_that_reason(tmp_path: Path) -> None:
    records = openai_day(10)
    records[4]["schema_version"] = 2
    _write_day(tmp_path, records)
    report = ingest_day(DAY, f"file://{tmp_path}/raw", f"file://{tmp_path}/data")
    assert (report.accepted, report.quarantined) == (9, 1)
    files = storage.partition_files(storage.join(f"file://{tmp_path}/data", "quarantine", f"dt={DAY}"))
    rows = pq.read_table(io.BytesIO(storage.read_bytes(files["records.parquet"]))).to_pylist()
    assert rows[0]["reason"] == "unsupported schema_version 2 (this code reads: 1)"


def test_late_feedback_corrections_as_sdk_dumps_are_normalised(tmp_path: Path) -> None:
    records = openai_day(10)
    _write_day(tmp_path, records)
    folder = tmp_path / "feedback" / f"dt={DAY}"
    folder.mkdir(parents=True)
    late = {"interaction_id": "oai-002", "timestamp": "2026-11-03T23:30:00Z", "type": "correction",
            "content": _dump(None, tool_calls=[_call("c9", "Paris")]), "source": "support"}  # fmt: skip
    (folder / "late.jsonl").write_text(json.dumps(late) + "\n")
    report = ingest_day(
        DAY, f"file://{tmp_path}/raw", f"file://{tmp_path}/data", f"file://{tmp_path}/feedback"
    )
    assert report.feedback_joined == 1 and report.feedback_quarantined == 0
    row = _rows(tmp_path)["oai-002"]
    assert json.loads(row["correction_json"]) == {"tool_calls": [_call("c9", "Paris")]}
