"""Chat templates: the model's own, a user's override, or a shipped one; checked by rendering a sample.

One rendering for training rollouts and evaluation: :func:`render_prompt`, with the tools as VeRL passes
them (:func:`normalise_tools`) and the messages as VeRL passes them (:func:`verl_messages`).

Shipped templates (``models/templates/<name>.jinja``): ``hermes`` (Qwen2.5-style ChatML, ``<tool_call>``),
``llama3`` (Llama 3.1 JSON tool calling, ``ipython`` results), ``mistral`` (``[AVAILABLE_TOOLS]``,
``[TOOL_CALLS]``, ``[TOOL_RESULTS]``) and ``chatml-tools``, the fallback for plain ChatML templates without
tool support. Every shipped template accepts tool-call arguments as a dict or as a JSON string.

Modules: this one (the shipped catalogue, the tool-call format of a template, :func:`prepare_template`),
``template_check`` (the sample render and its problems, the double-encoding fix) and ``verl_prompts``
(what VeRL passes to a template: :func:`render_prompt`, :func:`normalise_tools`, :func:`verl_messages`);
the names of both are re-exported here, where callers find them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from continuous_learning.contracts import ToolCallFormat
from continuous_learning.models.template_check import (
    DOUBLE_ENCODED,
    NO_TOOL_CALLS,
    NO_TOOL_RESULTS,
    NO_TOOLS,
    RENDER_ERROR,
    SAMPLE_ARGUMENTS,
    SAMPLE_MESSAGES,
    SAMPLE_TOOLS,
    fix_double_encoding,
    render_template,
    template_problems,
)
from continuous_learning.models.verl_prompts import (
    ToolSchemaError,
    normalise_tools,
    render_prompt,
    verl_messages,
)

__all__ = [
    "CHATML_START",
    "DOUBLE_ENCODED",
    "FALLBACK",
    "NO_TOOLS",
    "NO_TOOL_CALLS",
    "NO_TOOL_RESULTS",
    "RENDER_ERROR",
    "SAMPLE_ARGUMENTS",
    "SAMPLE_MESSAGES",
    "SAMPLE_TOOLS",
    "SETTING",
    "TEMPLATES_DIR",
    "PreparedTemplate",
    "TemplateError",
    "ToolSchemaError",
    "detect_tool_call_format",
    "fix_double_encoding",
    "load_shipped",
    "normalise_tools",
    "prepare_template",
    "render_prompt",
    "render_template",
    "shipped_names",
    "template_problems",
    "verl_messages",
]

TEMPLATES_DIR = Path(__file__).parent / "templates"
SETTING = "model.chat_template"
FALLBACK = "chatml-tools"
CHATML_START = "<|im_start|>"


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
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja"))


def load_shipped(name: str) -> str:
    if name not in shipped_names():
        raise TemplateError(f"no shipped chat template {name!r}; shipped: {', '.join(shipped_names())}")
    return (TEMPLATES_DIR / f"{name}.jinja").read_text()


def detect_tool_call_format(template: str) -> ToolCallFormat:
    """The tool-call format a template renders: ``<tool_call>`` -> hermes, ``[TOOL_CALLS]`` -> mistral,
    ``<|python_tag|>`` / ``ipython`` / ``"parameters"`` -> llama3_json; none of them: hermes."""
    if "<tool_call>" in template:
        return "hermes"
    if "[TOOL_CALLS]" in template:
        return "mistral"
    if "<|python_tag|>" in template or "ipython" in template or '"parameters"' in template:
        return "llama3_json"
    return "hermes"


def _is_chatml(template: str) -> bool:
    return CHATML_START in template


def _has_tool_support(template: str) -> bool:
    return re.search(r"\btools\b", template) is not None


def _family_hint(template: str | None, special_tokens: dict[str, Any] | None) -> str:
    markers = (
        (template or "") + " " + " ".join(str(k) + " " + str(v) for k, v in (special_tokens or {}).items())
    )
    if "<|start_header_id|>" in markers:
        return "llama3"
    if "[INST]" in markers or "[TOOL_CALLS]" in markers:
        return "mistral"
    if CHATML_START in markers:
        return "hermes or chatml-tools"
    return ""


def _advice(template: str | None, special_tokens: dict[str, Any] | None) -> str:
    hint = _family_hint(template, special_tokens)
    return (
        f"Set {SETTING} to a shipped template ({', '.join(shipped_names())})"
        + (f" (for this model's family: {hint})" if hint else "")
        + ", or to a .jinja file (a path, file:// or s3:// URI)."
    )


def _load_override(override: str) -> str:
    from continuous_learning import storage

    if override in shipped_names():
        return load_shipped(override)
    if "://" in override:
        uri = override
    elif override.endswith(".jinja") or "/" in override:
        uri = Path(override).expanduser().resolve().as_uri()
    else:
        raise TemplateError(
            f"{SETTING} = {override!r} is neither a shipped template ({', '.join(shipped_names())}) "
            "nor a path or URI of a .jinja file"
        )
    try:
        return storage.read_bytes(uri).decode()
    except (storage.StorageError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{SETTING} = {override!r}: cannot read the template: {exc}") from None


def _fallback(reason: str) -> tuple[str, str, list[str]]:
    return load_shipped(FALLBACK), "fallback", [f"{reason}: using the shipped {FALLBACK} template"]


def prepare_template(
    model_template: str | None,
    override: str | None,
    *,
    tool_call_format: str = "auto",
    special_tokens: dict[str, str] | None = None,
) -> PreparedTemplate:
    """The template to save with an imported model; raises :class:`TemplateError` naming the problem.

    ``override`` (the setting ``model.chat_template``): a shipped name, or a path / ``file://`` /
    ``s3://`` URI of a .jinja file; it wins over the model's template. The chosen template is checked by
    rendering :data:`SAMPLE_MESSAGES` with :data:`SAMPLE_TOOLS` exactly as :func:`render_prompt` renders
    (VeRL's message and tool shapes). Where the only problem is ``X.arguments | tojson`` encoding JSON-string
    arguments a second time, the template is fixed (``is string``-aware) and the fix listed in ``fixes``.
    A ChatML template (``<|im_start|>``) without tool support is replaced by the ``chatml-tools`` fallback;
    so is a missing template when ``special_tokens`` (the tokenizer's tokens) include ``<|im_start|>``.
    ``tool_call_format``: ``auto`` (detected from the template) or one of the formats.
    """
    formats = get_args(ToolCallFormat)
    if tool_call_format != "auto" and tool_call_format not in formats:
        raise TemplateError(
            f"unknown tool-call format {tool_call_format!r}; known: auto, {', '.join(formats)}"
        )
    fixes: list[str] = []
    if override:
        text, source, label = _load_override(override), "override", f"the chat template {override!r}"
    elif model_template:
        text, source, label = model_template, "model", "the model's chat template"
        if _is_chatml(text) and not _has_tool_support(text):
            text, source, fixes = _fallback("the model's chat template is ChatML without tool support")
    elif any(CHATML_START in (str(k), str(v)) for k, v in (special_tokens or {}).items()):
        text, source, fixes = _fallback("the model has no chat template and its tokenizer is ChatML's")
    else:
        raise TemplateError(
            "the model has no chat template, and which one fits its tokens is not knowable. "
            + _advice(None, special_tokens)
        )
    problems = template_problems(text, special_tokens)
    if problems and all(p.startswith(DOUBLE_ENCODED) for p in problems):
        fixed, changed = fix_double_encoding(text)
        if changed and not template_problems(fixed, special_tokens):
            text = fixed
            problems = []
            fixes.append(
                "chat template: "
                + ", ".join(f"`{e} | tojson`" for e in dict.fromkeys(changed))
                + " encoded JSON-string tool-call arguments a second time; made it `is string`-aware"
            )
    if problems and source == "model" and _is_chatml(text) and any(p.startswith(NO_TOOLS) for p in problems):
        text, source, more = _fallback("the model's chat template is ChatML and does not render tools")
        fixes += more
        problems = template_problems(text, special_tokens)
    if problems:
        raise TemplateError(f"{label} cannot be used: {'; '.join(problems)}. {_advice(text, special_tokens)}")
    fmt: ToolCallFormat = (
        detect_tool_call_format(text) if tool_call_format == "auto" else tool_call_format  # type: ignore[assignment]
    )
    return PreparedTemplate(text, source, fmt, fixes)
