"""Tool-call formats of the major model families: what rollouts produce and what the reward parses.

- ``hermes``: Hermes / Qwen2.5 / Qwen3 style, ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``
  (several calls one after the other, separated by a newline);
- ``llama3_json``: Llama 3.1 / 3.2 JSON tool calls, ``{"name": ..., "parameters": {...}}`` (``"arguments"``
  accepted too), optionally after ``<|python_tag|>``, several separated by ``;`` or newlines. The response
  is a call only when it is JSON of that shape from its first character; otherwise it is text;
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``; parsing also accepts the newer
  ``[TOOL_CALLS]name[ARGS]{...}`` form (one ``[TOOL_CALLS]`` per call).

:func:`format_calls` writes what the family's model writes, i.e. what the shipped template of that family
(``models/templates/``) renders for an assistant tool-call turn, after the generation prompt.

Responses are usually decoded with ``skip_special_tokens=True`` (VeRL's reward managers do), which drops
control tokens such as Llama's ``<|python_tag|>`` and Mistral's ``[TOOL_CALLS]`` / ``[ARGS]``: the parsers
therefore also accept a Mistral response that *is* a bare JSON list of calls (or ``name{...}`` segments).
Hermes' ``<tool_call>`` tags are ordinary text in Qwen's and in the fallback's tokenizers and stay.

A *malformed* call is a call that was started but cannot be parsed (broken JSON, no name, arguments that
are not a JSON object); the reward takes format credit away for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, get_args

from continuous_learning.contracts import ToolCallFormat

FORMATS: tuple[str, ...] = get_args(ToolCallFormat)
HERMES_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
PYTHON_TAG = "<|python_tag|>"
MISTRAL_CALLS = "[TOOL_CALLS]"
MISTRAL_ARGS = "[ARGS]"
# End-of-turn markers a decoder may leave at the end of a response (when special tokens are kept).
_END_MARKERS = ("<|eot_id|>", "<|eom_id|>", "</s>", "<|im_end|>")
_BARE_NAME_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(?=\{)")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ParsedResponse:
    text: str
    tool_calls: list[dict[str, Any]]  # [{"name": str, "arguments": dict}]
    malformed_calls: int


def _dumps(value: Any) -> str:
    # transformers' ``tojson`` filter: json.dumps with ensure_ascii=False and the default separators.
    return json.dumps(value, ensure_ascii=False)


def format_calls(calls: list[dict[str, Any]], fmt: ToolCallFormat = "hermes") -> str:
    """The text a model of family ``fmt`` writes for ``calls`` ([{"name", "arguments": dict}]).

    Exactly what the shipped template of the family renders for an assistant turn with these calls
    (after the generation prompt, without the end-of-turn token). A Mistral call keeps its ``"id"``
    when the call has one (the model writes the id it was trained to write).
    """
    if fmt == "hermes":
        return "\n".join(
            '<tool_call>\n{"name": '
            + _dumps(c["name"])
            + ', "arguments": '
            + _dumps(c["arguments"])
            + "}\n</tool_call>"
            for c in calls
        )
    if fmt == "llama3_json":
        return "; ".join(
            '{"name": ' + _dumps(c["name"]) + ', "parameters": ' + _dumps(c["arguments"]) + "}" for c in calls
        )
    if fmt == "mistral":
        bodies = []
        for c in calls:
            body = '{"name": ' + _dumps(c["name"]) + ', "arguments": ' + _dumps(c["arguments"])
            if c.get("id"):
                body += ', "id": ' + _dumps(c["id"])
            bodies.append(body + "}")
        return MISTRAL_CALLS + "[" + ", ".join(bodies) + "]" if bodies else ""
    raise ValueError(f"unknown tool-call format {fmt!r}; known: {', '.join(FORMATS)}")


def parse(text: str, fmt: ToolCallFormat = "hermes") -> ParsedResponse:
    """Tool calls and remaining text of a response written in format ``fmt``."""
    if fmt == "hermes":
        return _parse_hermes(text)
    if fmt == "llama3_json":
        return _parse_llama3(text)
    if fmt == "mistral":
        return _parse_mistral(text)
    raise ValueError(f"unknown tool-call format {fmt!r}; known: {', '.join(FORMATS)}")


def _call(body: Any) -> dict[str, Any] | None:
    """A call object {"name", "arguments"} (arguments may be a JSON string), or None if malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return None
    arguments = body.get("arguments", body.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"name": body["name"], "arguments": arguments}


def _strip_end(text: str) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for marker in _END_MARKERS:
            if text.endswith(marker):
                text = text[: -len(marker)].rstrip()
                changed = True
    return text


def _skip(text: str, pos: int, separators: str) -> int:
    while pos < len(text) and (text[pos].isspace() or text[pos] in separators):
        pos += 1
    return pos


def _parse_hermes(text: str) -> ParsedResponse:
    calls: list[dict[str, Any]] = []
    malformed = 0
    for body in HERMES_RE.findall(text):
        try:
            call = _call(json.loads(body))
        except json.JSONDecodeError:
            call = None
        if call is None:
            malformed += 1
        else:
            calls.append(call)
    if text.count("<tool_call>") > len(calls) + malformed:  # an opening tag never closed
        malformed = text.count("<tool_call>") - len(calls)
    return ParsedResponse(HERMES_RE.sub("", text).strip(), calls, malformed)


def _is_llama_call(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and ("parameters" in value or "arguments" in value)
    )


def _parse_llama3(text: str) -> ParsedResponse:
    """``{"name", "parameters"}`` objects from the first character (after ``<|python_tag|>``), separated
    by ``;`` or newlines. A response that is not JSON of that shape is text; text after the calls is kept
    as text. Malformed: a tagged response that is not JSON, a JSON object that names a call but cannot be
    read (broken JSON, arguments not an object), or a non-call object among calls."""
    body = _strip_end(text)
    tagged = body.startswith(PYTHON_TAG)
    if tagged:
        body = body[len(PYTHON_TAG) :].lstrip()
    if not body.startswith("{"):
        # <|python_tag|> followed by anything but JSON: a built-in (Python) call, not a JSON call.
        return ParsedResponse("", [], 1) if tagged else ParsedResponse(text.strip(), [], 0)
    calls: list[dict[str, Any]] = []
    malformed = 0
    pos = 0
    rest = ""
    while pos < len(body):
        if body[pos] != "{":
            rest = body[pos:].strip()
            break
        try:
            value, end = _DECODER.raw_decode(body, pos)
        except json.JSONDecodeError:
            if not calls and not malformed and not tagged and '"name"' not in body:
                return ParsedResponse(text.strip(), [], 0)  # text that happens to start with "{"
            malformed += 1  # a started call that does not parse: the rest of the response is lost
            break
        if _is_llama_call(value):
            call = _call(value)
            if call is None:
                malformed += 1
            else:
                calls.append(call)
        elif not calls and not malformed and not tagged:
            return ParsedResponse(text.strip(), [], 0)  # a JSON answer, not a call
        else:
            malformed += 1
        pos = _skip(body, end, ";")
    if not calls and not malformed:
        return ParsedResponse(text.strip(), [], 0)
    return ParsedResponse(rest, calls, malformed)


def _mistral_list(body: str, pos: int) -> tuple[list[dict[str, Any]], int, int] | None:
    """Calls of a JSON list (or one object) at ``pos``: (calls, malformed, end), or None if it is not JSON."""
    try:
        value, end = _DECODER.raw_decode(body, pos)
    except json.JSONDecodeError:
        return None
    items = value if isinstance(value, list) else [value]
    calls: list[dict[str, Any]] = []
    malformed = 0
    for item in items:
        call = _call(item)
        if call is None:
            malformed += 1
        else:
            calls.append(call)
    return calls, malformed, end


def _mistral_segment(segment: str) -> tuple[list[dict[str, Any]], int, str]:
    """What follows one ``[TOOL_CALLS]``: a JSON list of calls, or ``name[ARGS]{...}``.
    Returns (calls, malformed, text left after the calls)."""
    pos = _skip(segment, 0, "")
    if pos < len(segment) and segment[pos] in "[{":
        parsed = _mistral_list(segment, pos)
        if parsed is None:
            return [], 1, ""
        calls, malformed, end = parsed
        return calls, malformed, segment[end:].strip()
    name, marker, rest = segment.partition(MISTRAL_ARGS)
    name = name.strip()
    if not marker or not name:
        return [], 1, ""
    pos = _skip(rest, 0, "")
    try:
        arguments, end = _DECODER.raw_decode(rest, pos)
    except json.JSONDecodeError:
        return [], 1, ""
    call = _call({"name": name, "arguments": arguments})
    if call is None:
        return [], 1, rest[end:].strip()
    return [call], 0, rest[end:].strip()


def _mistral_bare(body: str) -> ParsedResponse | None:
    """A response whose control tokens were dropped by decoding: the whole response is a JSON list of
    calls, or ``name{...}`` segments (``[TOOL_CALLS]name[ARGS]{...}`` without its tokens); else None."""
    if body.startswith("["):
        parsed = _mistral_list(body, 0)
        if parsed is None:
            return None
        calls, malformed, end = parsed
        if not calls or body[end:].strip():
            return None
        return ParsedResponse("", calls, malformed)
    calls = []
    pos = 0
    while pos < len(body):
        match = _BARE_NAME_RE.match(body, pos)
        if match is None:
            return None
        try:
            arguments, end = _DECODER.raw_decode(body, match.end())
        except json.JSONDecodeError:
            return None
        if not isinstance(arguments, dict):
            return None
        calls.append({"name": match.group(1), "arguments": arguments})
        pos = _skip(body, end, "")
    return ParsedResponse("", calls, 0) if calls else None


def _parse_mistral(text: str) -> ParsedResponse:
    body = _strip_end(text)
    if MISTRAL_CALLS not in body:
        bare = _mistral_bare(body)
        return bare if bare is not None else ParsedResponse(text.strip(), [], 0)
    first, *segments = body.split(MISTRAL_CALLS)
    texts = [first.strip()]
    calls: list[dict[str, Any]] = []
    malformed = 0
    for segment in segments:
        got, bad, rest = _mistral_segment(segment)
        calls += got
        malformed += bad
        texts.append(rest)
    return ParsedResponse("\n".join(t for t in texts if t), calls, malformed)
