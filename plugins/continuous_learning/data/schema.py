"""The raw interaction contract (schema v1) and the curated row it becomes."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

SUPPORTED_SCHEMA_VERSIONS = (1,)
KNOWN_FIELDS = {
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


def _rfc3339_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be an RFC 3339 string with offset, got {type(value).__name__}")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_string)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(_Strict):
    name: StrictStr = Field(min_length=1)
    arguments: StrictStr

    @field_validator("arguments")
    @classmethod
    def _arguments_are_json(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments is not a JSON string: {exc.msg}") from None
        if not isinstance(parsed, dict):
            raise ValueError("arguments must encode a JSON object")
        return value


class ToolCall(_Strict):
    id: StrictStr
    type: Literal["function"]
    function: FunctionCall


class Message(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None
    name: StrictStr | None = None

    @model_validator(mode="after")
    def _role_shape(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages may carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool messages need tool_call_id")
        if self.content is None and not self.tool_calls:
            raise ValueError(f"{self.role} message has neither content nor tool_calls")
        return self


class Outcome(BaseModel):
    model_config = ConfigDict(extra="allow")
    task_success: StrictBool | None = None
    error: StrictStr | None = None


class AssistantReply(_Strict):
    role: Literal["assistant"] = "assistant"
    content: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    interaction_id: StrictStr | None = Field(default=None, min_length=1, max_length=128)
    timestamp: Timestamp
    type: Literal["thumbs", "rating", "correction"]
    value: StrictInt | None = None
    content: StrictStr | AssistantReply | None = None
    source: StrictStr | None = None

    @model_validator(mode="after")
    def _value_for_type(self) -> FeedbackEvent:
        if self.type == "thumbs" and self.value not in (1, -1):
            raise ValueError("thumbs feedback needs value 1 or -1")
        if self.type == "rating" and (self.value is None or not 1 <= self.value <= 5):
            raise ValueError("rating feedback needs value 1-5")
        if self.type == "correction" and self.content is None:
            raise ValueError("correction feedback needs content")
        return self


class LateFeedbackEvent(FeedbackEvent):
    interaction_id: StrictStr = Field(min_length=1, max_length=128)  # type: ignore[assignment]


class InteractionV1(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: Literal[1]
    interaction_id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    timestamp: Timestamp
    agent: StrictStr = Field(min_length=1)
    model_version: StrictStr | None = None
    session_id: StrictStr | None = None
    messages: list[Message] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    outcome: Outcome | None = None
    feedback: list[FeedbackEvent] | None = None

    @model_validator(mode="after")
    def _conversation_shape(self) -> InteractionV1:
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages: needs at least one user message")
        if self.messages[-1].role != "assistant":
            raise ValueError("messages: the last message must be from the assistant")
        return self

    def metadata(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        loc = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


def message_to_dict(message: Message | AssistantReply) -> dict[str, Any]:
    return message.model_dump(exclude_none=True)


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
