"""The check every chat template passes: rendering a sample conversation (two tools, an assistant tool
call with JSON-string arguments, a tool result) as :func:`render_prompt` renders it, and naming what the
prompt lacks; and the one fix applied by itself (``X.arguments | tojson`` made ``is string``-aware)."""

from __future__ import annotations

import json
import re
from typing import Any

from continuous_learning.models.verl_prompts import normalise_tools, verl_messages

#: The sample conversation every template must render: two tools, an assistant tool call whose arguments
#: are a JSON string (as in the logs and the reward datasets), a tool result and a last user turn. The
#: call's values ("Oslo", "2024-07-26") and the result's keys appear nowhere else in the conversation.
SAMPLE_ARGUMENTS = '{"city": "Oslo", "date": "2024-07-26"}'
SAMPLE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather forecast for a city on a given day",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "city name"},
                    "date": {"type": "string", "description": "ISO date"},
                },
                "required": ["city", "date"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book_table",
            "description": "Reserve a table at a restaurant",
            "parameters": {
                "type": "object",
                "properties": {
                    "restaurant": {"type": "string"},
                    "people": {"type": "integer"},
                    "time": {"type": "string"},
                },
                "required": ["restaurant", "people"],
            },
        },
    },
]
SAMPLE_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a travel assistant."},
    {"role": "user", "content": "Will it rain in the Norwegian capital on the 26th?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": "get_weather", "arguments": SAMPLE_ARGUMENTS},
            }
        ],
    },
    {"role": "tool", "content": '{"rain_mm": 0, "sky": "clear"}', "tool_call_id": "call00001"},
    {"role": "user", "content": "Then book a table for two at Fiskeriet."},
]

RENDER_ERROR = "render error"
NO_TOOLS = "tools not rendered"
NO_TOOL_CALLS = "assistant tool calls not rendered"
DOUBLE_ENCODED = "arguments double-encoded"
NO_TOOL_RESULTS = "tool results not rendered"


def _template_kwargs(special_tokens: dict[str, Any] | None) -> dict[str, str]:
    """The special tokens a tokenizer passes to its template (``bos_token``, ``eos_token``, ...)."""
    return {k: v for k, v in (special_tokens or {}).items() if k.endswith("_token") and isinstance(v, str)}


def render_template(
    template: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    special_tokens: dict[str, Any] | None = None,
) -> str:
    """``template`` rendered as ``render_prompt`` renders it (VeRL's messages and tools), with transformers'
    own jinja environment; raises what the template raises."""
    from transformers.utils import chat_template_utils

    render: Any = chat_template_utils.render_jinja_template  # annotated -> str, returns (texts, indices)
    rendered, _ = render(
        conversations=[verl_messages(messages)],
        tools=normalise_tools(tools),
        chat_template=template,
        add_generation_prompt=True,
        **_template_kwargs(special_tokens),
    )
    return str(rendered[0])


def template_problems(template: str, special_tokens: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with ``template`` for the product, from rendering :data:`SAMPLE_MESSAGES` with
    :data:`SAMPLE_TOOLS`; empty when nothing is. Each problem starts with one of ``render error``,
    ``tools not rendered``, ``assistant tool calls not rendered``, ``arguments double-encoded`` and
    ``tool results not rendered``."""
    try:
        text = render_template(template, SAMPLE_MESSAGES, SAMPLE_TOOLS, special_tokens)
    except Exception as exc:  # whatever jinja or the template raises (raise_exception, TypeError, ...)
        return [f'{RENDER_ERROR}: "{type(exc).__name__}: {exc}"']
    problems = []
    missing = [
        repr(value)
        for tool in SAMPLE_TOOLS
        for value in (tool["function"]["name"], tool["function"]["description"])
        if value not in text
    ]
    if missing:
        problems.append(f"{NO_TOOLS} ({', '.join(missing)} absent from the prompt)")
    escaped = json.dumps(SAMPLE_ARGUMENTS)[1:-1]  # {\"city\": \"Oslo\", ...}
    if escaped in text or '\\"Oslo\\"' in text:
        problems.append(f"{DOUBLE_ENCODED} (JSON-string arguments written as a JSON string: {escaped})")
    elif '"Oslo"' not in text or '"2024-07-26"' not in text:
        problems.append(f"{NO_TOOL_CALLS} (the sample call's arguments {SAMPLE_ARGUMENTS} are absent)")
    if "rain_mm" not in text:
        problems.append(f"{NO_TOOL_RESULTS} (the sample tool result is absent)")
    return problems


# tojson of an expression ending in ``.arguments`` / ``['arguments']``, with optional filter arguments.
_ARGUMENTS_TOJSON = re.compile(
    r"(?P<expr>[A-Za-z_]\w*(?:\.\w+|\[(?:'\w+'|\"\w+\")\])*?(?:\.arguments|\[(?:'arguments'|\"arguments\")\]))"
    r"\s*\|\s*tojson(?P<args>\s*\([^()]*\))?"
)


def fix_double_encoding(template: str) -> tuple[str, list[str]]:
    """``X.arguments | tojson`` made ``is string``-aware: a JSON string is written as is, anything else
    through ``tojson``. Returns the new text and the expressions changed."""
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        expr, args = match.group("expr"), match.group("args") or ""
        changed.append(expr)
        return f"({expr} if {expr} is string else {expr} | tojson{args})"

    return _ARGUMENTS_TOJSON.sub(replace, template), changed
