from __future__ import annotations

import json

import pytest
from continuous_learning.contracts import RewardWeights
from continuous_learning.models.tool_calls import format_calls
from continuous_learning_trainer.rewards import (
    compute_score,
    format_reference,
    format_tool_call,
    parse_response,
    score_response,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "enum": ["Paris", "Oslo"]},
                    "day": {"type": "string"},
                },
                "required": ["city", "day"],
            },
        },
    }
]
REFERENCE = {
    "content": None,
    "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "day": "today"}}],
    "negatives": [
        {
            "content": None,
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo", "day": "today"}}],
        }
    ],
}


def test_exact_tool_call_scores_one() -> None:
    response = format_tool_call("get_weather", {"city": "Paris", "day": "today"})
    score = score_response(response, REFERENCE, TOOLS)
    assert score.total == pytest.approx(1.0)
    assert score.format_valid and not score.negative_hit


def test_one_wrong_argument_that_repeats_the_rejected_answer_is_penalised() -> None:
    response = format_tool_call("get_weather", {"city": "Oslo", "day": "today"})
    score = score_response(response, REFERENCE, TOOLS)
    assert score.arguments == pytest.approx(0.5)
    assert score.negative_hit
    assert score.total == pytest.approx((0.2 + 0.4 + 0.4 * 0.5) - 0.5)


def test_schema_violation_and_malformed_json_lose_the_format_credit() -> None:
    bad_enum = format_tool_call("get_weather", {"city": "Lima", "day": "today"})
    assert not score_response(bad_enum, REFERENCE, TOOLS).format_valid
    broken = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>'
    parsed = parse_response(broken)
    assert parsed.malformed_calls == 1 and not parsed.tool_calls
    assert score_response(broken, REFERENCE, TOOLS).total == 0.0


def test_unclosed_tool_call_counts_as_malformed() -> None:
    assert parse_response('<tool_call>{"name": "x"').malformed_calls == 1


def test_wrong_tool_scores_only_partial_format_credit() -> None:
    response = format_tool_call("find_hotel", {"city": "Paris", "day": "today"})
    score = score_response(response, REFERENCE, TOOLS)
    assert score.tool_name == 0 and score.arguments == 0 and not score.format_valid
    assert score.total == 0.0


def test_text_reference_uses_token_f1_and_weights_are_configurable() -> None:
    reference = {"content": "It is sunny in Paris", "tool_calls": [], "negatives": []}
    assert score_response("It is sunny in Paris", reference).total == pytest.approx(1.0)
    assert 0 < score_response("sunny in Oslo", reference).total < 1
    weights = RewardWeights(format=0.0, tool_name=0.0, arguments=1.0)
    response = format_tool_call("get_weather", {"city": "Oslo", "day": "today"})
    assert score_response(response, REFERENCE, TOOLS, weights).total == pytest.approx(0.5 - 0.5)


def test_verl_entry_point_reads_json_ground_truth() -> None:
    response = format_tool_call("get_weather", {"city": "Paris", "day": "today"})
    score = compute_score("agent/travel", response, json.dumps(REFERENCE), {"tools_json": json.dumps(TOOLS)})
    assert score == pytest.approx(1.0)


def test_a_tool_call_reference_answered_without_a_call_is_not_format_valid() -> None:
    for response in ("It is sunny in Paris today.", ""):
        score = score_response(response, REFERENCE, TOOLS)
        assert not score.format_valid, response
        assert score.total == 0.0
    text_reference = {"content": "It is sunny in Paris", "tool_calls": [], "negatives": []}
    assert score_response("It is sunny in Paris", text_reference).format_valid


LLAMA_CALL = '{"name": "get_weather", "parameters": {"city": "Paris", "day": "today"}}'
MISTRAL_CALL = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "day": "today"}}]'
HERMES_CALL = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "day": "today"}}\n</tool_call>'
)


@pytest.mark.parametrize(
    ("response", "fmt"),
    [
        (LLAMA_CALL, "llama3_json"),
        ("<|python_tag|>" + LLAMA_CALL + "<|eom_id|>", "llama3_json"),
        (MISTRAL_CALL, "mistral"),
        (MISTRAL_CALL.removeprefix("[TOOL_CALLS]"), "mistral"),  # decoded with skip_special_tokens
        ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "day": "today"}', "mistral"),
        (HERMES_CALL, "hermes"),
    ],
)
def test_each_familys_correct_call_gets_full_reward_in_its_format_only(response: str, fmt: str) -> None:
    score = score_response(response, REFERENCE, TOOLS, tool_call_format=fmt)  # type: ignore[arg-type]
    assert score.total == pytest.approx(1.0) and score.format_valid
    for other in ("hermes", "llama3_json", "mistral"):
        if other != fmt:
            assert score_response(response, REFERENCE, TOOLS, tool_call_format=other).total == 0.0, other  # type: ignore[arg-type]


def test_format_reference_per_format_and_parse_response_wrapper() -> None:
    assert format_reference(REFERENCE) == HERMES_CALL
    assert format_reference(REFERENCE, "llama3_json") == LLAMA_CALL
    assert format_reference(REFERENCE, "mistral") == MISTRAL_CALL
    assert format_reference({"content": "Hello", "tool_calls": []}, "mistral") == "Hello"
    assert format_tool_call("get_weather", {"city": "Paris", "day": "today"}) == HERMES_CALL
    assert parse_response(LLAMA_CALL, "llama3_json").tool_calls == REFERENCE["tool_calls"]
    assert parse_response(LLAMA_CALL).tool_calls == []


def test_verl_entry_point_takes_the_tool_call_format() -> None:
    truth, extra = json.dumps(REFERENCE), {"tools_json": json.dumps(TOOLS)}
    assert compute_score(
        "agent/travel", LLAMA_CALL, truth, extra, tool_call_format="llama3_json"
    ) == pytest.approx(1.0)
    assert compute_score("agent/travel", LLAMA_CALL, truth, extra) == 0.0


TWO_TOOLS = [
    TOOLS[0],
    {
        "type": "function",
        "function": {
            "name": "find_hotel",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "nights": {"type": "integer"}},
                "required": ["city", "nights"],
            },
        },
    },
]
WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "day": "today"}}
HOTEL = {"name": "find_hotel", "arguments": {"city": "Paris", "nights": 3}}
TWO_CALLS = {
    "content": None,
    "tool_calls": [WEATHER, HOTEL],
    "negatives": [{"content": None, "tool_calls": [WEATHER]}],
}


@pytest.mark.parametrize("fmt", ["hermes", "llama3_json", "mistral"])
def test_multi_call_answers_score_order_and_partial_credit_in_every_format(fmt: str) -> None:
    def total(calls: list[dict[str, object]]) -> float:
        text = format_calls(calls, fmt)  # type: ignore[arg-type]
        return score_response(text, TWO_CALLS, TWO_TOOLS, tool_call_format=fmt).total  # type: ignore[arg-type]

    assert total([WEATHER, HOTEL]) == pytest.approx(1.0)
    swapped = score_response(format_calls([HOTEL, WEATHER], fmt), TWO_CALLS, TWO_TOOLS, tool_call_format=fmt)  # type: ignore[arg-type]
    assert swapped.order == 0.5 and swapped.tool_name == pytest.approx(0.75) and swapped.arguments == 1.0
    assert swapped.total == pytest.approx(0.2 + 0.4 * 0.75 + 0.4)
    # The missing second call: the rejected answer (a negative), half the names, half the arguments.
    assert total([WEATHER]) == pytest.approx(0.2 + 0.4 * 0.5 + 0.4 * 0.5 - 0.5)
    hotel_wrong = {"name": "find_hotel", "arguments": {"city": "Paris", "nights": 4}}
    assert total([WEATHER, hotel_wrong]) == pytest.approx(0.2 + 0.4 + 0.4 * 0.75)
    assert total([WEATHER, HOTEL, HOTEL]) == pytest.approx(0.2 + 0.4 * 2 / 3 + 0.4)  # an extra call costs
    assert total([WEATHER, WEATHER]) == pytest.approx(0.2 + 0.4 * 0.5 + 0.4 * 0.5)  # paired once, not twice
    assert total([{"name": "find_hotel", "arguments": {"city": "Paris", "nights": 3.0}}, WEATHER]) == total(
        [HOTEL, WEATHER]
    )  # numbers compare by value


def test_a_negative_in_another_order_is_not_the_rejected_answer() -> None:
    reference = {"content": None, "tool_calls": [HOTEL, WEATHER], "negatives": [TWO_CALLS]}
    assert not score_response(format_calls([HOTEL, WEATHER]), reference, TWO_TOOLS).negative_hit
    assert score_response(format_calls([WEATHER, HOTEL]), reference, TWO_TOOLS).negative_hit


def test_calls_of_one_name_pair_with_the_reference_call_they_match() -> None:
    paris, oslo = WEATHER, {"name": "get_weather", "arguments": {"city": "Oslo", "day": "today"}}
    reference = {"content": None, "tool_calls": [paris, oslo], "negatives": []}
    only_oslo = score_response(format_calls([oslo]), reference, TOOLS)  # pairs with the second, in order
    assert only_oslo.arguments == pytest.approx(0.5) and only_oslo.order == 1.0
    # Dozens of same-name calls: a greedy pairing (each reference call takes its best free match), and the
    # extra calls cost their share of the name credit.
    many = score_response(
        format_calls([paris, oslo] * 30), {**reference, "tool_calls": [paris, oslo] * 4}, TOOLS
    )
    assert many.arguments == pytest.approx(1.0) and many.order == 1.0
    assert many.tool_name == pytest.approx(8 / 60)


@pytest.mark.parametrize(
    ("response", "fmt"),
    [
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "day": "today"}}\n</tool_call>'
            '<tool_call>\n{"name": "find_hotel", "arguments": {"city": "Paris", "nights": 3}}\n</tool_call>',
            "hermes",
        ),
        (
            '{"name": "get_weather", "parameters": {"city": "Paris", "day": "today"}}\n'
            '{"name": "find_hotel", "parameters": {"city": "Paris", "nights": 3}}',
            "llama3_json",
        ),
        (
            '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "day": "today"}'
            '[TOOL_CALLS]find_hotel[ARGS]{"city": "Paris", "nights": 3}',
            "mistral",
        ),
        (
            'get_weather{"city": "Paris", "day": "today"}find_hotel{"city": "Paris", "nights": 3}',
            "mistral",
        ),  # the same, decoded with skip_special_tokens
    ],
)
def test_two_calls_in_each_familys_other_spellings_score_one(response: str, fmt: str) -> None:
    score = score_response(response, TWO_CALLS, TWO_TOOLS, tool_call_format=fmt)  # type: ignore[arg-type]
    assert score.total == pytest.approx(1.0) and score.order == 1.0
