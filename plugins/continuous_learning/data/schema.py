"""The raw interaction contract (schema v1), validated at C speed with msgspec, and the curated row schema.

Typed decoding checks types and required fields; :func:`check_semantics` adds the rules types cannot
say (conversation shape, feedback values, tool-call arguments that are JSON objects).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import pyarrow as pa

SUPPORTED_SCHEMA_VERSIONS = (1,)
KNOWN_FIELDS = frozenset(
    {
        "schema_version",
        "interaction_id",
        "timestamp",
        "agent",
        "model_version",
        "session_id",
        "messages",
        "tools",
        "outcome",
        "feedback",
    }
)

Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
InteractionId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class FunctionCall(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    arguments: str


class ToolCall(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    type: Literal["function"]
    function: FunctionCall


class Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class AssistantReply(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class Outcome(msgspec.Struct):
    task_success: bool | None = None
    error: str | None = None


class FeedbackEvent(msgspec.Struct, omit_defaults=True):
    timestamp: Timestamp
    type: Literal["thumbs", "rating", "correction"]
    interaction_id: InteractionId | None = None
    value: int | None = None
    content: str | AssistantReply | None = None
    source: str | None = None


class InteractionV1(msgspec.Struct, omit_defaults=True):
    schema_version: Literal[1]
    interaction_id: InteractionId
    timestamp: Timestamp
    agent: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    model_version: str | None = None
    session_id: str | None = None
    tools: list[dict[str, Any]] | None = None
    outcome: Outcome | None = None
    feedback: list[FeedbackEvent] | None = None


_INTERACTION_DECODER = msgspec.json.Decoder(InteractionV1)
_FEEDBACK_DECODER = msgspec.json.Decoder(FeedbackEvent)
_ANY_DECODER = msgspec.json.Decoder()


class RecordError(ValueError):
    """A record breaks the contract; the message says where and how."""


def _check_tool_calls(calls: list[ToolCall] | None, where: str) -> None:
    for index, call in enumerate(calls or []):
        try:
            arguments = _ANY_DECODER.decode(call.function.arguments)
        except msgspec.DecodeError:
            raise RecordError(
                f"{where}.tool_calls[{index}].function.arguments is not a JSON string"
            ) from None
        if not isinstance(arguments, dict):
            raise RecordError(f"{where}.tool_calls[{index}].function.arguments must encode a JSON object")


def check_feedback(event: FeedbackEvent, where: str) -> None:
    if event.type == "thumbs" and event.value not in (1, -1):
        raise RecordError(f"{where}: thumbs feedback needs value 1 or -1")
    if event.type == "rating" and (event.value is None or not 1 <= event.value <= 5):
        raise RecordError(f"{where}: rating feedback needs value 1-5")
    if event.type == "correction":
        if event.content is None:
            raise RecordError(f"{where}: correction feedback needs content")
        if isinstance(event.content, AssistantReply):
            _check_tool_calls(event.content.tool_calls, f"{where}.content")


def check_semantics(record: InteractionV1) -> None:
    has_user = False
    for index, message in enumerate(record.messages):
        has_user = has_user or message.role == "user"
        if message.tool_calls and message.role != "assistant":
            raise RecordError(f"messages[{index}]: only assistant messages may carry tool_calls")
        if message.role == "tool" and not message.tool_call_id:
            raise RecordError(f"messages[{index}]: tool messages need tool_call_id")
        if message.content is None and not message.tool_calls:
            raise RecordError(f"messages[{index}]: {message.role} message has neither content nor tool_calls")
        if message.tool_calls:
            _check_tool_calls(message.tool_calls, f"messages[{index}]")
    if not has_user:
        raise RecordError("messages: needs at least one user message")
    if record.messages[-1].role != "assistant":
        raise RecordError("messages: the last message must be from the assistant")
    for index, event in enumerate(record.feedback or []):
        check_feedback(event, f"feedback[{index}]")


def _describe(error: msgspec.ValidationError) -> str:
    return str(error).replace("`$.", "`").replace("`$`", "record")


def decode_interaction(line: bytes) -> tuple[InteractionV1, dict[str, Any]]:
    """Validate one raw line. Returns the typed record and the generic dict (for unlisted fields).

    Raises RecordError with the reason: malformed JSON, wrong shape, unknown schema_version, ...
    """
    try:
        generic = _ANY_DECODER.decode(line)
    except msgspec.DecodeError as exc:
        raise RecordError(f"malformed JSON: {exc}") from None
    if not isinstance(generic, dict):
        raise RecordError(f"a record must be a JSON object, got {type(generic).__name__}")
    version = generic.get("schema_version")
    if (
        isinstance(version, int)
        and not isinstance(version, bool)
        and version not in SUPPORTED_SCHEMA_VERSIONS
    ):
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        raise RecordError(f"unsupported schema_version {version} (this code reads: {supported})")
    try:
        record = _INTERACTION_DECODER.decode(line)
    except msgspec.ValidationError as exc:
        raise RecordError(f"schema v1 violation: {_describe(exc)}") from None
    try:
        check_semantics(record)
    except RecordError as exc:
        raise RecordError(f"schema v1 violation: {exc}") from None
    return record, generic


def decode_late_feedback(line: bytes) -> FeedbackEvent:
    try:
        event = _FEEDBACK_DECODER.decode(line)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        reason = _describe(exc) if isinstance(exc, msgspec.ValidationError) else f"malformed JSON: {exc}"
        raise RecordError(f"invalid feedback: {reason}") from None
    if not event.interaction_id:
        raise RecordError("invalid feedback: interaction_id is required in late feedback")
    try:
        check_feedback(event, "feedback")
    except RecordError as exc:
        raise RecordError(f"invalid feedback: {exc}") from None
    return event


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


# Curated partition schema: one row per accepted interaction. Nested chat data is kept as JSON
# strings so the schema stays stable when agents add message fields.
CURATED_SCHEMA = pa.schema(
    [
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("agent", pa.string(), nullable=False),
        pa.field("model_version", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("messages_json", pa.string(), nullable=False),
        pa.field("tools_json", pa.string()),
        pa.field("outcome_json", pa.string()),
        pa.field("feedback_json", pa.string(), nullable=False),
        pa.field("feedback_score", pa.float64()),
        pa.field("correction_json", pa.string()),
        pa.field("metadata_json", pa.string()),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_line", pa.int64(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_line", pa.int64()),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)
