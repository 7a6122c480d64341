"""Prompts as VeRL renders them, one rendering for training rollouts and evaluation: :func:`render_prompt`,
with the tools as VeRL passes them (:func:`normalise_tools`) and the messages as VeRL passes them
(:func:`verl_messages`)."""

from __future__ import annotations

from typing import Any


class ToolSchemaError(ValueError):
    """A tool spec VeRL 0.9.1 would refuse to load (so training could not render it either)."""


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
