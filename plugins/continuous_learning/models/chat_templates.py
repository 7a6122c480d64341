"""Chat templates: the model's own, a user's override, or a shipped one; checked by rendering a sample.

One rendering for training rollouts and evaluation: :func:`render_prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from continuous_learning.contracts import ToolCallFormat


class TemplateError(ValueError):
    """A chat template cannot render what the product needs (tools, assistant tool calls)."""


@dataclass(frozen=True)
class PreparedTemplate:
    text: str
    source: str  # "model" | "override" | "fallback"
    tool_call_format: ToolCallFormat
    fixes: list[str] = field(default_factory=list)


def shipped_names() -> list[str]:
    """Names of the templates shipped in ``models/templates/`` (``<name>.jinja``)."""
    raise NotImplementedError


def load_shipped(name: str) -> str:
    raise NotImplementedError


def detect_tool_call_format(template: str) -> ToolCallFormat:
    raise NotImplementedError


def prepare_template(
    model_template: str | None,
    override: str | None,
    *,
    tool_call_format: str = "auto",
    special_tokens: dict[str, str] | None = None,
) -> PreparedTemplate:
    """The template to save with an imported model; raises :class:`TemplateError` naming the problem."""
    raise NotImplementedError


def normalise_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Tool specs exactly as VeRL's rollout passes them to the template (so both paths agree)."""
    raise NotImplementedError


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The prompt text for ``messages`` (ending where the assistant's turn starts), with ``tools``."""
    raise NotImplementedError
