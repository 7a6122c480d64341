from __future__ import annotations

import pytest
from continuous_learning.models.tool_calls import FORMATS, format_calls, parse

CALLS = [
    {"name": "get_weather", "arguments": {"city": "Zürich", "day": "today"}},
    {"name": "book_table", "arguments": {"restaurant": "Fiskeriet", "people": 2, "tags": ["a; b", "c\nd"]}},
]


def test_formats_are_the_contract_literals() -> None:
    assert FORMATS == ("hermes", "llama3_json", "mistral")


def test_format_calls_writes_what_each_family_writes() -> None:
    one = CALLS[:1]
    assert (
        format_calls(one, "hermes")
        == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich", "day": "today"}}\n</tool_call>'
    )
    assert (
        format_calls(one, "llama3_json")
        == '{"name": "get_weather", "parameters": {"city": "Zürich", "day": "today"}}'
    )
    assert (
        format_calls(one, "mistral")
        == '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Zürich", "day": "today"}}]'
    )
    assert format_calls([{**CALLS[0], "id": "abc123def"}], "mistral").endswith('"id": "abc123def"}]')
    two_hermes = format_calls(CALLS, "hermes")
    assert two_hermes.count("<tool_call>\n") == 2 and "</tool_call>\n<tool_call>" in two_hermes
    assert format_calls(CALLS, "llama3_json").count("}; {") == 1
    with pytest.raises(ValueError, match="unknown tool-call format"):
        format_calls(one, "pythonic")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_then_parse_round_trips(fmt: str) -> None:
    for calls in (CALLS[:1], CALLS):
        parsed = parse(format_calls(calls, fmt), fmt)  # type: ignore[arg-type]
        assert parsed.tool_calls == calls
        assert parsed.malformed_calls == 0 and parsed.text == ""


# ---------------------------------------------------------------- hermes


def test_hermes_keeps_text_and_counts_broken_and_unclosed_calls() -> None:
    parsed = parse('Let me check.<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call>', "hermes")
    assert parsed.tool_calls == [{"name": "a", "arguments": {"x": 1}}] and parsed.text == "Let me check."
    assert parse('<tool_call>{"name": "a", "arguments": {"x": </tool_call>', "hermes").malformed_calls == 1
    assert parse('<tool_call>{"name": "a"', "hermes").malformed_calls == 1
    assert parse('<tool_call>{"arguments": {}}</tool_call>', "hermes").malformed_calls == 1


# ---------------------------------------------------------------- llama3_json


def test_llama3_call_with_python_tag_arguments_key_and_end_token() -> None:
    for text in (
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '{"name": "get_weather", "arguments": {"city": "Paris"}}<|eot_id|>',
        '  {"name": "get_weather", "parameters": "{\\"city\\": \\"Paris\\"}"}\n',
    ):
        parsed = parse(text, "llama3_json")
        assert parsed.tool_calls == [{"name": "get_weather", "arguments": {"city": "Paris"}}], text
        assert parsed.malformed_calls == 0 and parsed.text == ""


def test_llama3_several_calls_separated_by_semicolons_or_newlines() -> None:
    a = '{"name": "a", "parameters": {"q": "x;y"}}'
    b = '{"name": "b", "parameters": {}}'
    for text in (f"{a}; {b}", f"{a};{b}", f"{a}\n{b}", f"<|python_tag|>{a}\n\n{b}"):
        parsed = parse(text, "llama3_json")
        assert [c["name"] for c in parsed.tool_calls] == ["a", "b"], text
        assert parsed.tool_calls[0]["arguments"] == {"q": "x;y"} and parsed.malformed_calls == 0


def test_llama3_text_is_text_unless_it_is_json_of_the_call_shape() -> None:
    for text in (
        "It is sunny in Paris.",
        'Sure: {"name": "get_weather", "parameters": {"city": "Paris"}}',  # a call only from the first character
        '{"name": "Bob", "age": 3}',  # JSON, but not a call
        '{"temperature": 21}',
        "{not json at all}",
    ):
        parsed = parse(text, "llama3_json")
        assert parsed.tool_calls == [] and parsed.malformed_calls == 0 and parsed.text == text, text


def test_llama3_malformed_calls() -> None:
    truncated = parse('{"name": "get_weather", "parameters": {"city": "Par', "llama3_json")
    assert truncated.tool_calls == [] and truncated.malformed_calls == 1
    bad_arguments = parse('{"name": "get_weather", "parameters": "city=Paris"}', "llama3_json")
    assert bad_arguments.tool_calls == [] and bad_arguments.malformed_calls == 1
    builtin = parse('<|python_tag|>brave_search.call(query="weather")', "llama3_json")
    assert builtin.malformed_calls == 1
    second_broken = parse('{"name": "a", "parameters": {}}; {"name": "b", "parameters": {', "llama3_json")
    assert [c["name"] for c in second_broken.tool_calls] == ["a"] and second_broken.malformed_calls == 1
    not_a_call_among_calls = parse('{"name": "a", "parameters": {}}; {"x": 1}', "llama3_json")
    assert not_a_call_among_calls.malformed_calls == 1


def test_llama3_text_after_the_calls_is_kept_as_text() -> None:
    parsed = parse('{"name": "a", "parameters": {}}\nI have asked the service.', "llama3_json")
    assert parsed.tool_calls == [{"name": "a", "arguments": {}}]
    assert parsed.text == "I have asked the service." and parsed.malformed_calls == 0


# ---------------------------------------------------------------- mistral


def test_mistral_list_form_with_text_ids_and_end_token() -> None:
    text = 'Checking.[TOOL_CALLS] [{"name": "a", "arguments": {"x": 1}, "id": "abc123def"}, {"name": "b", "arguments": "{}"}]</s>'
    parsed = parse(text, "mistral")
    assert parsed.tool_calls == [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]
    assert parsed.text == "Checking." and parsed.malformed_calls == 0


def test_mistral_newer_name_args_form() -> None:
    text = '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]book_table[ARGS]{"people": 2}'
    parsed = parse(text, "mistral")
    assert parsed.tool_calls == [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "book_table", "arguments": {"people": 2}},
    ]
    assert parsed.malformed_calls == 0


def test_mistral_response_decoded_without_its_control_tokens() -> None:
    # VeRL decodes responses with skip_special_tokens=True: [TOOL_CALLS] and [ARGS] are gone.
    bare_list = parse('[{"name": "a", "arguments": {"x": 1}}]', "mistral")
    assert bare_list.tool_calls == [{"name": "a", "arguments": {"x": 1}}] and bare_list.malformed_calls == 0
    bare_v11 = parse('get_weather{"city": "Paris"}', "mistral")
    assert bare_v11.tool_calls == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    for text in ("[1, 2, 3]", "Paris is sunny.", "[see below] it is sunny", 'Answer {"a": 1} done'):
        parsed = parse(text, "mistral")
        assert parsed.tool_calls == [] and parsed.malformed_calls == 0 and parsed.text == text, text


def test_mistral_malformed_calls() -> None:
    assert parse('[TOOL_CALLS][{"name": "a", "arguments": {"x": ', "mistral").malformed_calls == 1
    assert parse("[TOOL_CALLS]", "mistral").malformed_calls == 1
    assert parse('[TOOL_CALLS]get_weather[ARGS]{"city": ', "mistral").malformed_calls == 1
    assert parse('[TOOL_CALLS]get_weather{"city": "Paris"}', "mistral").malformed_calls == 1  # no [ARGS]
    mixed = parse('[TOOL_CALLS][{"name": "a", "arguments": {}}, {"arguments": {}}]', "mistral")
    assert mixed.tool_calls == [{"name": "a", "arguments": {}}] and mixed.malformed_calls == 1


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="known: hermes, llama3_json, mistral"):
        parse("x", "pythonic")  # type: ignore[arg-type]
