"""Chat templates: the model's own, a user's override, or a shipped one; checked by rendering a sample.

One rendering for training rollouts and evaluation: :func:`render_prompt`, with the tools as VeRL passes
them (:func:`normalise_tools`) and the messages as VeRL passes them (:func:`verl_messages`).

Shipped templates (``models/templates/<name>.jinja``): ``hermes`` (Qwen2.5-style ChatML, ``<tool_call>``),
``llama3`` (Llama 3.1 JSON tool calling, ``ipython`` results), ``mistral`` (``[AVAILABLE_TOOLS]``,
``[TOOL_CALLS]``, ``[TOOL_RESULTS]``) and ``chatml-tools``, the fallback for plain ChatML templates without
tool support. Every shipped template accepts tool-call arguments as a dict or as a JSON string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from continuous_learning.contracts import ToolCallFormat

TEMPLATES_DIR = Path(__file__).parent / "templates"
SETTING = "model.chat_template"
FALLBACK = "chatml-tools"
CHATML_START = "<|im_start|>"


class TemplateError(ValueError):
    """A chat template cannot render what the product needs (tools, assistant tool calls)."""


class ToolSchemaError(ValueError):
    """A tool spec VeRL 0.9.1 would refuse to load (so training could not render it either)."""


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


# --------------------------------------------------------------------------- the check

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


# --------------------------------------------------------------------------- what VeRL passes


def _schema_error(tool: str, where: str, problem: str) -> ToolSchemaError:
    return ToolSchemaError(
        f"tool {tool!r}: {where} {problem}; VeRL 0.9.1's OpenAIFunctionToolSchema refuses it, "
        "so training could not load the tool"
    )


_BOOL_STRINGS = {
    **dict.fromkeys(("1", "on", "t", "true", "y", "yes"), True),
    **dict.fromkeys(("0", "off", "f", "false", "n", "no"), False),
}


def _as_bool(value: Any, tool: str) -> bool:
    # pydantic's lax bool: bools, 0/1 and the usual strings
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _BOOL_STRINGS:
        return _BOOL_STRINGS[value.lower()]
    raise _schema_error(tool, "function.strict", "is not a boolean")


def _str_field(value: Any, tool: str, where: str) -> str:
    if not isinstance(value, str):
        raise _schema_error(tool, where, "is missing or not a string")
    return value


def _property(spec: Any, tool: str, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise _schema_error(tool, where, "is not an object")
    kind = spec.get("type")
    if not (isinstance(kind, str) or (isinstance(kind, list) and all(isinstance(k, str) for k in kind))):
        raise _schema_error(tool, f"{where}.type", "is missing or not a string (or list of strings)")
    out: dict[str, Any] = {"type": kind}
    if spec.get("description") is not None:
        out["description"] = _str_field(spec["description"], tool, f"{where}.description")
    if spec.get("enum") is not None:
        if not isinstance(spec["enum"], list):
            raise _schema_error(tool, f"{where}.enum", "is not a list")
        out["enum"] = spec["enum"]
    return out


def _parameters(spec: Any, tool: str) -> dict[str, Any]:
    where = "function.parameters"
    if not isinstance(spec, dict):
        raise _schema_error(tool, where, "is not an object")
    out: dict[str, Any] = {"type": _str_field(spec.get("type"), tool, f"{where}.type")}
    properties = spec.get("properties")
    if not isinstance(properties, dict):
        raise _schema_error(tool, f"{where}.properties", "is missing or not an object")
    out["properties"] = {
        name: _property(prop, tool, f"{where}.properties.{name}") for name, prop in properties.items()
    }
    if "required" in spec:
        required = spec["required"]
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise _schema_error(tool, f"{where}.required", "is not a list of strings")
        out["required"] = required
    return out


def _verl_tool(function: dict[str, Any]) -> dict[str, Any]:
    tool = str(function.get("name"))
    out: dict[str, Any] = {
        "name": _str_field(function.get("name"), tool, "function.name"),
        "description": _str_field(function.get("description"), tool, "function.description"),
    }
    if "parameters" in function:
        out["parameters"] = _parameters(function["parameters"], tool)
    if "strict" in function:
        out["strict"] = _as_bool(function["strict"], tool)
    return {"type": "function", "function": out}


def normalise_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Tool specs exactly as VeRL's rollout passes them to the template (so both paths agree).

    The trainer's ``verl_engine.write_tool_config`` writes one native tool per spec (``{"type":
    "function", "function": spec.get("function", spec)}``; a spec without a name is skipped); VeRL 0.9.1
    validates each ``tool_schema`` into ``verl.tools.schemas.OpenAIFunctionToolSchema`` (pydantic; extra
    fields ignored) in ``tools/tool_registry.py::initialize_tools_from_config``, and
    ``experimental/agent_loop/tool_agent_loop.py`` passes ``tool_schema.model_dump(exclude_unset=True,
    exclude_none=True)`` of the row's ``extra_info.tool_selection`` (first spec per name) to
    ``apply_chat_template``. Reproduced here with plain dicts:

    - key order is the schema's, not the input's: ``type, function{name, description, parameters{type,
      properties, required}, strict}``, each property ``{type, description, enum}``;
    - dropped: every other field at every level -- of a property ``items``, nested ``properties``,
      ``default``, ``format``, ``minimum``/``maximum``, ``pattern``, ``anyOf``, ``examples``...; of
      ``parameters`` ``additionalProperties``, ``$defs``...; of the function anything but the four above;
      the spec's own ``type`` (always ``"function"``) and any top-level field but ``function``;
    - dropped when absent or None: ``parameters``, ``required``, ``strict`` (absent only; None is refused)
      and a property's ``description`` / ``enum``;
    - refused (:class:`ToolSchemaError`, as VeRL refuses to start): a missing or non-string name or
      description, ``parameters`` without ``type`` or ``properties``, a property without ``type``.

    Not reproducible per row: VeRL keeps one schema per tool name for the whole dataset (the first row's);
    OmegaConf also resolves ``${...}`` interpolations in the tool config. No tools (None, empty, or no
    named spec): None, as ``single_turn_agent`` passes no tools.
    """
    if not tools:
        return None
    selected: dict[str, dict[str, Any]] = {}
    for spec in tools:
        function = spec.get("function", spec) if isinstance(spec, dict) else None
        if not isinstance(function, dict) or "name" not in function:
            continue
        name = function["name"]
        if isinstance(name, str) and name in selected:
            continue
        selected[str(name)] = _verl_tool(function)
    return list(selected.values()) or None


def _message_fields() -> tuple[list[str], list[str], list[str]]:
    """Field names of a prompt message, of a tool call and of its function in the reward dataset."""
    from continuous_learning.data.reward_dataset import MESSAGE_TYPE

    call_type = MESSAGE_TYPE.field("tool_calls").type.value_type
    function_type = call_type.field("function").type
    return (
        [f.name for f in MESSAGE_TYPE],
        [f.name for f in call_type],
        [f.name for f in function_type],
    )


def verl_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` in the shape VeRL passes them to ``apply_chat_template``.

    VeRL reads the ``prompt`` column with HF ``datasets`` (``verl/utils/dataset/rl_dataset.py``:
    ``datasets.load_dataset("parquet")``, then ``_build_messages`` returns ``example["prompt"]`` unchanged
    for text-only rows, and ``data.return_raw_chat=True`` hands them to the agent loop as ``raw_prompt``).
    A parquet struct always has every field, so each message carries every field of the reward dataset's
    ``MESSAGE_TYPE`` (``role, content, tool_calls, tool_call_id``; each tool call ``id, type,
    function{name, arguments}``), absent ones as **None** -- VeRL neither drops nor fills them. Here
    missing fields become None and fields the parquet cannot hold are dropped, so a caller that stripped
    the Nones (or built messages by hand) renders the same prompt as training. Values are kept as they
    are (arguments stay JSON strings).
    """
    message_fields, call_fields, function_fields = _message_fields()
    out = []
    for message in messages:
        row: dict[str, Any] = {name: message.get(name) for name in message_fields}
        if row.get("tool_calls") is not None:
            calls = []
            for call in row["tool_calls"]:
                shaped = {name: call.get(name) for name in call_fields}
                if isinstance(shaped.get("function"), dict):
                    shaped["function"] = {name: shaped["function"].get(name) for name in function_fields}
                calls.append(shaped)
            row["tool_calls"] = calls
        out.append(row)
    return out


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The prompt text for ``messages`` (ending where the assistant's turn starts), with ``tools``.

    ``tokenizer.apply_chat_template(verl_messages(messages), tools=normalise_tools(tools),
    add_generation_prompt=True, tokenize=False)``: what VeRL's agent loop renders (it tokenizes the same
    call; ``data.apply_chat_template_kwargs`` is left empty by the trainer).
    """
    rendered = tokenizer.apply_chat_template(
        verl_messages(messages), tools=normalise_tools(tools), add_generation_prompt=True, tokenize=False
    )
    return str(rendered)
