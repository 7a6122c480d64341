"""The raw interaction contract (schema v1), validated at C speed with msgspec, and the curated row schema.

Typed decoding checks types and required fields; :func:`check_semantics` adds the rules types cannot
say (conversation shape, feedback values, tool-call arguments that are JSON objects). A record whose
messages are in the plain form decodes in one pass; one that is not (an OpenAI SDK dump with ``refusal``,
``annotations`` and content parts, the ``developer`` role, an Anthropic Messages conversation) is brought
to the plain form by :mod:`continuous_learning.data.adapters` and decoded again. The contract and that
normalisation are documented in ``docs/input-contract.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import pyarrow as pa
from continuous_learning.data.adapters import (
    ANTHROPIC,
    ShapeError,
    normalise_event,
    normalise_record,
)

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
        "messages_format",
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
    """A chat message in the plain form. ``metadata`` is set by normalisation only (what the raw message
    carried besides the plain keys); a raw message with a ``metadata`` key is normalised like any other."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    metadata: dict[str, Any] | None = None


class AssistantReply(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    metadata: dict[str, Any] | None = None


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
    messages_format: Literal["openai", "anthropic"] | None = None


_INTERACTION_DECODER = msgspec.json.Decoder(InteractionV1)
_FEEDBACK_DECODER = msgspec.json.Decoder(FeedbackEvent)
_ANY_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


class RecordError(ValueError):
    """A record breaks the contract; the message says where and how."""


class _NotPlain(Exception):
    """A strictly decoded record holds a raw ``metadata`` key: it is read again through normalisation."""


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


def check_feedback(event: FeedbackEvent, where: str, normalised: bool = True) -> None:
    if event.type == "thumbs" and event.value not in (1, -1):
        raise RecordError(f"{where}: thumbs feedback needs value 1 or -1")
    if event.type == "rating" and (event.value is None or not 1 <= event.value <= 5):
        raise RecordError(f"{where}: rating feedback needs value 1-5")
    if event.type == "correction":
        if event.content is None:
            raise RecordError(f"{where}: correction feedback needs content")
        if isinstance(event.content, AssistantReply):
            if not normalised and event.content.metadata is not None:
                raise _NotPlain
            _check_tool_calls(event.content.tool_calls, f"{where}.content")


def check_semantics(record: InteractionV1, normalised: bool = True) -> None:
    """The rules types cannot say. ``normalised=False`` (a record decoded as written) refuses raw
    ``metadata`` keys in messages by raising ``_NotPlain``."""
    has_user = False
    for index, message in enumerate(record.messages):
        has_user = has_user or message.role == "user"
        if not normalised and message.metadata is not None:
            raise _NotPlain
        if message.tool_calls and message.role != "assistant":
            raise RecordError(f"messages[{index}]: only assistant messages may carry tool_calls")
        if message.role == "tool" and not message.tool_call_id:
            raise RecordError(f"messages[{index}]: tool messages need tool_call_id")
        if message.content is None and not message.tool_calls and message.refusal is None:
            raise RecordError(f"messages[{index}]: {message.role} message has neither content nor tool_calls")
        if message.tool_calls:
            _check_tool_calls(message.tool_calls, f"messages[{index}]")
    if not has_user:
        raise RecordError("messages: needs at least one user message")
    if record.messages[-1].role != "assistant":
        raise RecordError("messages: the last message must be from the assistant")
    for index, event in enumerate(record.feedback or []):
        check_feedback(event, f"feedback[{index}]", normalised)


def _describe(error: msgspec.ValidationError) -> str:
    return str(error).replace("`$.", "`").replace("`$`", "record")


def decode_interaction(line: bytes) -> tuple[InteractionV1, dict[str, Any]]:
    """Validate one raw line. Returns the typed record, its messages in the plain form, and the generic dict
    of the line as written (for unlisted fields and the content hash).

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
    except msgspec.ValidationError as exc:  # maybe only not in the plain form: normalise, then decide
        return _decode_normalised(generic, f"schema v1 violation: {_describe(exc)}"), generic
    if record.messages_format == ANTHROPIC:  # plain-looking, but ``system`` and ``tools`` need the adapter
        return _decode_normalised(generic, None), generic
    try:
        check_semantics(record, normalised=False)
    except _NotPlain:
        return _decode_normalised(generic, None), generic
    except RecordError as exc:
        raise RecordError(f"schema v1 violation: {exc}") from None
    return record, generic


def _decode_normalised(generic: dict[str, Any], reason: str | None) -> InteractionV1:
    """The record of ``generic`` brought to the plain form. ``reason``: why the record as written was refused;
    it is the reason given when normalisation changes nothing."""
    try:
        converted = normalise_record(generic)
    except ShapeError as exc:
        raise RecordError(f"schema v1 violation: {exc}") from None
    if converted is None:
        raise RecordError(reason or "schema v1 violation: the record cannot be normalised")
    after = (
        " (messages as converted from the Anthropic shape)"
        if converted.get("messages_format") == ANTHROPIC
        else ""
    )
    try:
        record = _INTERACTION_DECODER.decode(_ENCODER.encode(converted))
        check_semantics(record)
    except msgspec.ValidationError as exc:
        raise RecordError(f"schema v1 violation: {_describe(exc)}{after}") from None
    except RecordError as exc:
        raise RecordError(f"schema v1 violation: {exc}{after}") from None
    return record


def unlisted_fields(record: InteractionV1, generic: dict[str, Any]) -> dict[str, Any]:
    """The record's top-level fields that schema v1 does not list: its curated ``metadata``. An
    Anthropic-shaped record's ``system`` is its first message, and ``messages_format`` says which adapter read it."""
    metadata = {k: v for k, v in generic.items() if k not in KNOWN_FIELDS}
    if record.messages_format == ANTHROPIC:
        metadata.pop("system", None)
        metadata["messages_format"] = ANTHROPIC
    return metadata


def decode_late_feedback(line: bytes) -> FeedbackEvent:
    return read_late_feedback(line)[0]


def read_late_feedback(line: bytes) -> tuple[FeedbackEvent, bytes | None]:
    """A late feedback event, and its normalised JSON when its correction was not in the plain form (None:
    the line is kept as written)."""
    normalised = None
    try:
        event = _FEEDBACK_DECODER.decode(line)
        check_feedback(event, "feedback", normalised=False)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        if not isinstance(exc, msgspec.ValidationError):
            raise RecordError(f"invalid feedback: malformed JSON: {exc}") from None
        event, normalised = _normalised_feedback(line, f"invalid feedback: {_describe(exc)}")
    except _NotPlain:
        event, normalised = _normalised_feedback(line, None)
    except RecordError:
        pass  # reported below, with the checks of a normalised event
    if not event.interaction_id:
        raise RecordError("invalid feedback: interaction_id is required in late feedback")
    try:
        check_feedback(event, "feedback")
    except RecordError as exc:
        raise RecordError(f"invalid feedback: {exc}") from None
    return event, normalised


def _normalised_feedback(line: bytes, reason: str | None) -> tuple[FeedbackEvent, bytes]:
    generic = _ANY_DECODER.decode(line)
    converted = normalise_event(generic)
    if converted == generic:
        raise RecordError(reason or "invalid feedback: the event cannot be normalised")
    try:
        event = _FEEDBACK_DECODER.decode(_ENCODER.encode(converted))
    except msgspec.ValidationError as exc:
        raise RecordError(f"invalid feedback: {_describe(exc)}") from None
    if isinstance(event.content, AssistantReply):  # as inline corrections are kept: nulls left out
        converted["content"] = to_builtins(event.content)
    return event, _ENCODER.encode(converted)


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
