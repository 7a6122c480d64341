"""Text rendering of chat conversations for the CPU engine's small models.

Real models bring their own chat template (the GPU engine uses the tokenizer's); the tiny model
built by :mod:`continuous_learning_trainer.tiny_model` reads and writes this plain format.
"""

from __future__ import annotations

import json
from typing import Any

from continuous_learning_trainer.rewards import format_tool_call

END = "<|end|>"
PAD = "<|pad|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>", "tool": "<|tool|>"}
SPECIAL_TOKENS = [PAD, END, *ROLE_TOKENS.values()]
# Kept in decoded completions (not special), but never split by BPE.
STRUCTURE_TOKENS = ["<tool_call>", "</tool_call>"]


def render_message_body(message: dict[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for call in message.get("tool_calls") or []:
        function = call["function"]
        arguments = function["arguments"]
        parts.append(
            format_tool_call(
                function["name"], json.loads(arguments) if isinstance(arguments, str) else arguments
            )
        )
    return "".join(parts)


def render_prompt(messages: list[dict[str, Any]]) -> str:
    """The conversation so far, ending where the assistant's next turn starts."""
    lines = [f"{ROLE_TOKENS[m['role']]}{render_message_body(m)}" for m in messages]
    return "\n".join(lines) + "\n" + ROLE_TOKENS["assistant"]
