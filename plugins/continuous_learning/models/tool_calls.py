"""Tool-call formats of the major model families: what rollouts produce and what the reward parses.

- ``hermes``: Hermes / Qwen2.5 / Qwen3 style, ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
- ``llama3_json``: Llama 3.1 / 3.2 JSON tool calls, ``{"name": ..., "parameters": {...}}``
  (optionally after ``<|python_tag|>``, several separated by ``;``);
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, get_args

from continuous_learning.contracts import ToolCallFormat

FORMATS: tuple[str, ...] = get_args(ToolCallFormat)
HERMES_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ParsedResponse:
    text: str
    tool_calls: list[dict[str, Any]]  # [{"name": str, "arguments": dict}]
    malformed_calls: int


def format_calls(calls: list[dict[str, Any]], fmt: ToolCallFormat = "hermes") -> str:
    """The text a model of family ``fmt`` writes for ``calls`` ([{"name", "arguments": dict}])."""
    if fmt == "hermes":
        return "".join(
            "<tool_call>"
            + json.dumps({"name": c["name"], "arguments": c["arguments"]}, separators=(",", ":"))
            + "</tool_call>"
            for c in calls
        )
    raise NotImplementedError(fmt)


def parse(text: str, fmt: ToolCallFormat = "hermes") -> ParsedResponse:
    """Tool calls and remaining text of a response written in format ``fmt``."""
    if fmt == "hermes":
        return _parse_hermes(text)
    raise NotImplementedError(fmt)


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
