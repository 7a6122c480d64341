"""A record's curated fields: its free text redacted, its parts JSON-encoded (sorted keys), its feedback
deduplicated, ordered and scored. Used when a record is staged (inline feedback) and again when a shard's
late feedback is joined."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import msgspec
from continuous_learning.data.pii import Redactor
from continuous_learning.data.schema import InteractionV1, to_builtins, unlisted_fields

ENCODER = msgspec.json.Encoder(order="sorted")
_PLAIN_ENCODER = msgspec.json.Encoder()

# Keys whose values are identifiers or machine values, never free text.
_STRUCTURAL_KEYS = frozenset(
    {"id", "tool_call_id", "role", "type", "name", "timestamp", "interaction_id", "value"}
)


def dumps(value: Any) -> str:
    """JSON with sorted keys, as the curated columns hold it."""
    return ENCODER.encode(value).decode()


def encode_counts(counts: Counter[str]) -> str:
    """Redaction counts as ``"KIND=n;KIND=n"``."""
    return ";".join(f"{kind}={n}" for kind, n in counts.items())


def add_counts(total: Counter[str], encoded: str | None) -> None:
    """Add counts written by :func:`encode_counts` to ``total``."""
    if encoded:
        for item in encoded.split(";"):
            kind, _, n = item.partition("=")
            total[kind] += int(n)


def curated_fields(record: InteractionV1, generic: dict[str, Any], redactor: Redactor) -> tuple[Any, ...]:
    """The curated columns of one valid record, from ``timestamp`` to ``pii_feedback`` in the stage's
    ``STAGED_SCHEMA``."""
    counts = redactor.counts
    messages_json = dumps(redact_messages(to_builtins(record.messages), redactor))
    metadata = unlisted_fields(record, generic)
    metadata_json = dumps(redact_tree(metadata, redactor))
    pii = encode_counts(counts) if counts else None
    counts.clear()
    inline = to_builtins(record.feedback) if record.feedback else []
    feedback_json, score, correction_json = feedback_fields(inline, [], redactor) if inline else _NO_FEEDBACK
    pii_feedback = encode_counts(counts) if counts else None
    counts.clear()
    return (
        record.timestamp,
        record.agent,
        record.model_version,
        record.session_id,
        messages_json,
        dumps(record.tools) if record.tools is not None else None,
        dumps(generic["outcome"]) if record.outcome is not None else None,
        feedback_json,
        score,
        correction_json,
        metadata_json,
        _PLAIN_ENCODER.encode(inline) if inline else None,
        pii,
        pii_feedback,
    )


def _feedback_score(events: list[dict[str, Any]]) -> float | None:
    signals = []
    for event in events:
        if event["type"] == "thumbs":
            signals.append(float(event["value"]))
        elif event["type"] == "rating":
            signals.append((event["value"] - 3) / 2)
    return sum(signals) / len(signals) if signals else None


def redact_messages(messages: list[dict[str, Any]], redactor: Redactor) -> list[dict[str, Any]]:
    """Redact the free-text fields of chat messages in place: content, refusal, reasoning, tool-call
    arguments and the message's metadata (as top-level metadata is)."""
    for message in messages:
        if message.get("content"):
            message["content"] = redactor.redact(message["content"])
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = redactor.redact(call["function"]["arguments"])
        if "refusal" in message:
            message["refusal"] = redactor.redact(message["refusal"])
        if "reasoning_content" in message:
            message["reasoning_content"] = redactor.redact(message["reasoning_content"])
        if "metadata" in message:
            message["metadata"] = redact_tree(message["metadata"], redactor)
    return messages


def redact_tree(value: Any, redactor: Redactor) -> Any:
    """Redact every string of a JSON value, except under keys that hold identifiers or machine values."""
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, list):
        return [redact_tree(v, redactor) for v in value]
    if isinstance(value, dict):
        return {k: v if k in _STRUCTURAL_KEYS else redact_tree(v, redactor) for k, v in value.items()}
    return value


def _dedupe_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(events) <= 1:  # nothing to deduplicate or order
        return [{k: v for k, v in event.items() if k != "interaction_id"} for event in events]
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        event = {k: v for k, v in event.items() if k != "interaction_id"}
        unique.setdefault(json.dumps(event, sort_keys=True), event)
    return sorted(unique.values(), key=lambda e: (e["timestamp"], e["type"], json.dumps(e, sort_keys=True)))


def feedback_fields(
    inline: list[dict[str, Any]], late: list[dict[str, Any]], redactor: Redactor
) -> tuple[str, float | None, str | None]:
    """``feedback_json``, ``feedback_score`` and ``correction_json`` of one interaction."""
    events = _dedupe_events(inline + late)
    corrections = [e for e in events if e["type"] == "correction"]
    events = redact_tree(events, redactor)
    correction = corrections[-1]["content"] if corrections else None
    return (
        dumps(events),
        _feedback_score(events),
        dumps(redact_tree(correction, redactor)) if correction is not None else None,
    )


_NO_FEEDBACK = ("[]", None, None)  # feedback_fields([], [], redactor)
