"""Real-world chat logs into schema v1 messages: OpenAI Chat Completions as APIs return them, and Anthropic Messages.

Schema v1 messages are OpenAI chat messages in their plain form (``role``, ``content`` a string or null,
``tool_calls``, ``tool_call_id``, ``name``) plus three optional keys: ``refusal`` and ``reasoning_content``
(strings, kept apart from ``content``) and ``metadata`` (an object: what the message carried that the plain form
has no place for). Logs written by the OpenAI SDK (``ChatCompletionMessage.model_dump()``) and by
OpenAI-compatible servers differ from the plain form; :func:`normalise_messages` maps them onto it, never
dropping a value that means something. :func:`from_anthropic` reads the Anthropic Messages shape.

The functions here are pure, over parsed JSON, and run only for records that the strict decoder of
:mod:`continuous_learning.data.schema` does not take as they are. The mapping is documented, case by case,
in ``docs/input-contract.md``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

OPENAI = "openai"
ANTHROPIC = "anthropic"
MESSAGES_FORMATS = (OPENAI, ANTHROPIC)

# Keys of the plain message form; anything else a message carries goes to its ``metadata``.
_PLAIN_KEYS = frozenset(
    {"role", "content", "tool_calls", "tool_call_id", "name", "refusal", "reasoning_content"}
)
# Keys the OpenAI SDK dumps on every message, null (or empty) when unused: null there means absent.
_ABSENT_WHEN_EMPTY = frozenset({"refusal", "annotations", "audio", "function_call", "reasoning"})
# Content part types that hold the text of the message (Chat Completions; Responses API names).
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
# Block types only the Anthropic Messages shape has: a record holding one is read as Anthropic-shaped.
_ANTHROPIC_BLOCKS = frozenset({"tool_use", "tool_result", "thinking", "redacted_thinking"})
PART_SEPARATOR = "\n"  # between the text parts of one message (as vLLM joins them)
LEGACY_CALL_ID = "function_call_{index}"  # the id given to a legacy ``function_call`` of message ``index``


class ShapeError(ValueError):
    """A record's messages cannot be read in the shape they claim; the message says where."""


def _encode_arguments(arguments: Any) -> Any:
    """Tool-call arguments as the JSON string schema v1 wants; an object or array given as such is encoded."""
    if isinstance(arguments, dict | list):
        return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    return arguments


def _split_parts(parts: list[Any]) -> tuple[list[str], list[str], list[Any], Counter[str]]:
    """(texts, refusals, kept, types) of a list of content parts: the text of text parts, the text of refusal
    parts, every other part (and a text part with keys beyond ``type`` and ``text``) verbatim, and the count
    of parts by type."""
    texts: list[str] = []
    refusals: list[str] = []
    kept: list[Any] = []
    types: Counter[str] = Counter()
    for part in parts:
        if isinstance(part, str):  # some loggers write bare strings
            types["text"] += 1
            texts.append(part)
            continue
        kind = part.get("type") if isinstance(part, dict) else None
        types[kind if isinstance(kind, str) else "unknown"] += 1
        if isinstance(part, dict) and kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
            if part.keys() - {"type", "text"}:
                kept.append(part)
        elif isinstance(part, dict) and kind == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])
        else:
            kept.append(part)
    return texts, refusals, kept, types


def _join_parts(parts: list[Any], metadata: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(content, refusal texts) of a list of content parts: text parts joined, the count of parts by type in
    ``metadata["content_part_types"]``, the parts that are not plain text verbatim in
    ``metadata["content_parts"]``. Content is ``""`` when there are parts but none is text, None for no parts."""
    texts, refusals, kept, types = _split_parts(parts)
    if types:
        metadata["content_part_types"] = dict(types)
    if kept:
        metadata["content_parts"] = kept
    if texts:
        return PART_SEPARATOR.join(texts), refusals
    return ("" if kept else None), refusals


def _normalise_calls(calls: Any, metadata: dict[str, Any]) -> Any:
    """Tool calls in the plain form: ``type`` defaults to ``function``, arguments given as JSON values are
    encoded, keys beyond ``id``/``type``/``function`` (``index``, say) go to ``metadata["tool_call_extras"]``."""
    if not isinstance(calls, list):
        return calls
    extras: list[dict[str, Any]] = []
    result = []
    for call in calls:
        if not isinstance(call, dict):
            result.append(call)
            extras.append({})
            continue
        plain = {k: v for k, v in call.items() if k in ("id", "type", "function")}
        extra = {k: v for k, v in call.items() if k not in plain}
        if plain.get("type") is None:
            plain["type"] = "function"
        function = plain.get("function")
        if isinstance(function, dict):
            plain["function"] = {k: v for k, v in function.items() if k in ("name", "arguments")}
            if "arguments" in function:
                plain["function"]["arguments"] = _encode_arguments(function["arguments"])
            if function.keys() - {"name", "arguments"}:
                extra["function"] = {k: v for k, v in function.items() if k not in ("name", "arguments")}
        result.append(plain)
        extras.append(extra)
    if any(extras):
        metadata["tool_call_extras"] = extras
    return result


def normalise_message(message: Any, index: int, pending: dict[str, str] | None = None) -> Any:
    """One OpenAI-shaped message in the plain form (see the module's docstring). ``pending`` maps the names of
    legacy function calls made so far to their ids, so that a later ``role: "function"`` result finds its call.
    What the plain form already takes is kept as given; a value that is not a message is left for validation."""
    if not isinstance(message, dict):
        return message
    pending = {} if pending is None else pending
    metadata: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    refusals: list[str] = []
    for key, value in message.items():
        if key == "role" and value == "developer":
            plain["role"], metadata["original_role"] = "system", "developer"
        elif key == "role" and value == "function":  # the result of a legacy function call
            plain["role"], metadata["original_role"] = "tool", "function"
            name = message.get("name")
            if message.get("tool_call_id") is None and isinstance(name, str) and name in pending:
                plain["tool_call_id"] = pending.pop(name)
        elif key == "content" and isinstance(value, list):
            plain["content"], refusals = _join_parts(value, metadata)
        elif key in _PLAIN_KEYS:
            if value is not None:
                plain[key] = _normalise_calls(value, metadata) if key == "tool_calls" else value
            else:  # null is absent: it never replaces a value another key gave
                plain.setdefault(key, None)
        elif key in _ABSENT_WHEN_EMPTY and (value is None or value == []):
            continue
        elif (
            key == "reasoning"
            and isinstance(value, str)
            and message.get("reasoning_content") in (None, value)
        ):
            plain["reasoning_content"] = value
        elif key == "function_call" and isinstance(value, dict) and not message.get("tool_calls"):
            call_id = LEGACY_CALL_ID.format(index=index)
            arguments = _encode_arguments(value.get("arguments", "{}"))
            function = {"name": value.get("name"), "arguments": arguments}
            plain["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
            metadata["tool_calls_from"] = "function_call"
            if value.keys() - {"name", "arguments"}:
                metadata["function_call"] = value
            if isinstance(value.get("name"), str):
                pending[value["name"]] = call_id
        else:  # unknown keys, kept verbatim (a message's own ``metadata`` key among them)
            metadata[key] = value
    if refusals and plain.get("refusal") is None:
        plain["refusal"] = PART_SEPARATOR.join(refusals)
    audio = metadata.get("audio")
    if plain.get("content") is None and isinstance(audio, dict) and isinstance(audio.get("transcript"), str):
        plain["content"] = audio["transcript"]  # a spoken answer: its transcript is the text
        metadata["content_from"] = "audio.transcript"
    if metadata:
        plain["metadata"] = metadata
    return plain


def normalise_messages(messages: list[Any]) -> list[Any]:
    """The messages of one OpenAI-shaped conversation in the plain form."""
    pending: dict[str, str] = {}
    return [normalise_message(message, index, pending) for index, message in enumerate(messages)]


def normalise_reply(reply: Any) -> Any:
    """A correction's assistant message (feedback ``content``) in the plain form; text is left as it is."""
    if not isinstance(reply, dict):
        return reply
    return normalise_message(reply, 0)


def is_anthropic(record: dict[str, Any]) -> bool:
    """Whether a record is Anthropic-shaped: it says so (``messages_format: "anthropic"``), or it says nothing
    and a message holds a block only that shape has (``tool_use``, ``tool_result``, ``thinking``)."""
    fmt = record.get("messages_format")
    if fmt is not None:
        return bool(fmt == ANTHROPIC)
    for message in record.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") in _ANTHROPIC_BLOCKS:
                    return True
    return False


def _text_of(blocks: list[Any], metadata: dict[str, Any]) -> str | None:
    content, refusals = _join_parts(blocks, metadata)
    if refusals:  # not an Anthropic block type: kept, not lost
        metadata.setdefault("content_parts", []).extend({"type": "refusal", "refusal": r} for r in refusals)
    return content


def _anthropic_system(system: Any) -> dict[str, Any]:
    if isinstance(system, str):
        return {"role": "system", "content": system}
    if isinstance(system, list):
        metadata: dict[str, Any] = {}
        message: dict[str, Any] = {"role": "system", "content": _text_of(system, metadata)}
        return message | ({"metadata": metadata} if metadata else {})
    raise ShapeError(f"system must be a string or a list of text blocks, got {type(system).__name__}")


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"original_block": "tool_result"}
    content = block.get("content")
    if isinstance(content, list):
        content = _text_of(content, metadata)
    elif content is None:
        content = ""
    elif not isinstance(content, str):
        raise ShapeError(f"{where}.content must be a string or a list of blocks")
    for key, value in block.items():
        if key not in ("type", "tool_use_id", "content"):
            metadata[key] = value  # is_error, cache_control, ...
    return {
        "role": "tool",
        "tool_call_id": block.get("tool_use_id"),
        "content": content,
        "metadata": metadata,
    }


def _anthropic_assistant(blocks: list[Any], where: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """An assistant turn of content blocks: text joined, ``tool_use`` as tool calls, ``thinking`` as
    ``reasoning_content`` (signatures in metadata), every other block kept verbatim and counted."""
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    signatures: list[Any] = []
    others: list[Any] = []
    types: Counter[str] = Counter()
    for position, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if isinstance(block, dict) and kind == "tool_use":
            types[kind] += 1
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise ShapeError(f"{where}.content[{position}].input must be an object")
            function = {"name": block.get("name"), "arguments": _encode_arguments(arguments)}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
            if block.keys() - {"type", "id", "name", "input"}:
                metadata.setdefault("content_parts", []).append(block)
        elif isinstance(block, dict) and kind == "thinking" and isinstance(block.get("thinking"), str):
            types[kind] += 1
            reasoning.append(block["thinking"])
            if "signature" in block:
                signatures.append(block["signature"])
        else:
            others.append(block)
    texts, refusals, kept, other_types = _split_parts(others)
    types.update(other_types)
    metadata["content_part_types"] = dict(types)
    if kept:
        metadata.setdefault("content_parts", []).extend(kept)
    message: dict[str, Any] = {"role": "assistant", "content": PART_SEPARATOR.join(texts) if texts else None}
    if message["content"] is None and not calls and kept:
        message["content"] = ""  # only blocks that are not text (a server tool's result, say)
    if refusals:
        message["refusal"] = PART_SEPARATOR.join(refusals)
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = PART_SEPARATOR.join(reasoning)
    if signatures:
        metadata["reasoning_signatures"] = signatures
    return message


def from_anthropic(record: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages record (``system``, ``messages`` of content blocks, ``tools`` with
    ``input_schema``) as a schema v1 record: ``system`` becomes the first message, each ``tool_result`` block a
    ``tool`` message (before the rest of its user message), ``tool_use`` blocks ``tool_calls`` (``input``
    encoded as the arguments' JSON string), ``thinking`` blocks ``reasoning_content``; other blocks are
    counted and kept in the message's ``metadata``. The record's other fields are left as they are."""
    raw_messages = record.get("messages")
    if not isinstance(raw_messages, list):
        return record  # validation names what is missing or wrong
    messages: list[Any] = []
    if record.get("system") is not None:
        messages.append(_anthropic_system(record["system"]))
    for index, message in enumerate(raw_messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ShapeError(f"{where} must be an object")
        role, content = message.get("role"), message.get("content")
        # the API takes user and assistant turns; a system turn is read too
        if role not in ("user", "assistant", "system"):
            raise ShapeError(f"{where}.role must be user or assistant in the Anthropic shape, got {role!r}")
        metadata = {k: v for k, v in message.items() if k not in ("role", "content")}
        metadata["anthropic_message"] = index
        if isinstance(content, str):
            messages.append({"role": role, "content": content, "metadata": metadata})
            continue
        if not isinstance(content, list):
            raise ShapeError(f"{where}.content must be a string or a list of blocks")
        if role == "system":
            system = _anthropic_system(content)
            system["metadata"] = system.get("metadata", {}) | metadata
            messages.append(system)
            continue
        if role == "assistant":
            converted = _anthropic_assistant(content, where, metadata)
            messages.append(converted | {"metadata": metadata})
            continue
        rest = []
        for position, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                result = _tool_result(block, f"{where}.content[{position}]")
                result["metadata"]["anthropic_message"] = index
                messages.append(result)
            else:
                rest.append(block)
        if rest or not content:
            messages.append({"role": "user", "content": _text_of(rest, metadata), "metadata": metadata})
    converted_record = dict(record, messages=messages, messages_format=ANTHROPIC)
    converted_record.pop("system", None)
    if isinstance(record.get("tools"), list):
        converted_record["tools"] = [_anthropic_tool(tool) for tool in record["tools"]]
    return converted_record


def _anthropic_tool(tool: Any) -> Any:
    """A client tool (``name``, ``description``, ``input_schema``) as an OpenAI function-tool spec; its other
    keys (``cache_control``, ...) go to the spec's ``metadata``. Server tools (no ``input_schema``) stay as given."""
    if not isinstance(tool, dict) or "input_schema" not in tool:
        return tool
    function = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if "description" in tool:
        function["description"] = tool["description"]
    spec: dict[str, Any] = {"type": "function", "function": function}
    extra = {k: v for k, v in tool.items() if k not in ("name", "description", "input_schema", "type")}
    if tool.get("type") not in (None, "custom"):
        extra["type"] = tool["type"]
    if extra:
        spec["metadata"] = extra
    return spec


def normalise_record(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record with its messages (and corrections) in the plain form, or None when there was nothing to
    change. Raises :class:`ShapeError` for an unknown ``messages_format`` or an unreadable Anthropic shape."""
    fmt = record.get("messages_format")
    if fmt is not None and fmt not in MESSAGES_FORMATS:
        known = ", ".join(MESSAGES_FORMATS)
        raise ShapeError(f"unsupported messages_format {fmt!r} (this code reads: {known})")
    if is_anthropic(record):
        converted = from_anthropic(record)
    else:
        messages = record.get("messages")
        converted = dict(record)
        if isinstance(messages, list):
            converted["messages"] = normalise_messages(messages)
    feedback = converted.get("feedback")
    if isinstance(feedback, list):
        converted["feedback"] = [normalise_event(event) for event in feedback]
    return None if converted == record else converted


def normalise_event(event: Any) -> Any:
    """A feedback event with its correction's assistant message in the plain form."""
    if (
        isinstance(event, dict)
        and event.get("type") == "correction"
        and isinstance(event.get("content"), dict)
    ):
        return dict(event, content=normalise_reply(event["content"]))
    return event
