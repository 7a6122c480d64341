"""Reward functions: one module for both engines and for evaluation.

A response is scored against the reference of its prompt (``reward_model.ground_truth``, a JSON
object ``{"content", "tool_calls", "negatives"}``):

- tool-call references: format validity (parses, and arguments validate against the tool's JSON
  schema) + tool name match + share of reference arguments matched, weighted by ``RewardWeights``.
  An answer of several calls is paired one to one with the reference's calls by name (the pairing that
  matches the most arguments, then keeps the most calls in order); a paired call earns its name credit in
  full in the reference's order and half out of order, a missing or extra call none (the name share is
  over the longer list), and the arguments score is the share of all the reference's arguments its
  paired calls match (numbers by value). The same in every tool-call format: parsing comes first;
- text references: token-level F1 against the reference text;
- minus ``negative_penalty`` when the response repeats a reference the user rejected (the same calls
  in the same order).

To add a component: compute it in :func:`score_response`, add its weight to ``RewardWeights`` in
``continuous_learning.contracts`` and report it in ``RewardBreakdown``.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import jsonschema
from continuous_learning.contracts import RewardWeights, ToolCallFormat
from continuous_learning.models.tool_calls import ParsedResponse, format_calls, parse

__all__ = [
    "ParsedResponse",
    "RewardBreakdown",
    "compute_score",
    "format_reference",
    "format_tool_call",
    "parse_response",
    "score_response",
]


@dataclass(frozen=True)
class RewardBreakdown:
    total: float
    format_valid: bool
    tool_name: float
    arguments: float
    text: float
    negative_hit: bool
    #: Share of the paired calls that come in the reference's order (1.0 for text references).
    order: float = 1.0


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The Hermes text of one tool call (what the CPU engine's models and Qwen-style models write)."""
    return format_calls([{"name": name, "arguments": arguments}], "hermes")


def format_reference(reference: dict[str, Any], tool_call_format: ToolCallFormat = "hermes") -> str:
    """What a model of ``tool_call_format`` writes for the reference: its calls, else its text."""
    calls = reference.get("tool_calls") or []
    if calls:
        return format_calls(calls, tool_call_format)
    return reference.get("content") or ""


def parse_response(text: str, tool_call_format: ToolCallFormat = "hermes") -> ParsedResponse:
    return parse(text, tool_call_format)


def _tool_schemas(tools: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    schemas = {}
    for tool in tools or []:
        function = tool.get("function", tool)
        if "name" in function:
            schemas[function["name"]] = function.get("parameters") or {"type": "object"}
    return schemas


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Any:
    """A validator of one tool's parameter schema, the schema checked once (``jsonschema.validate``
    checks the schema on every call: most of the reward's time before)."""
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _valid_against(call: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> bool:
    if not schemas:
        return True
    schema = schemas.get(call["name"])
    if schema is None:
        return False
    validator = _validator(json.dumps(schema, sort_keys=True))
    return bool(validator.is_valid(call["arguments"]))


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = prediction.lower().split(), reference.lower().split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _same_calls(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """The same calls in the same order (the order of calls is part of an answer)."""

    def key(calls: list[dict[str, Any]]) -> list[str]:
        return [json.dumps({"name": c["name"], "arguments": c["arguments"]}, sort_keys=True) for c in calls]

    return key(a) == key(b)


def _same_value(got: Any, want: Any) -> bool:
    """Numbers by value (1250.5 == 1250.50, 60 == 60.0); anything else by its text, as before."""

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if number(got) and number(want):
        return float(got) == float(want)
    return str(got) == str(want)


def _argument_credit(ref: dict[str, Any], got: dict[str, Any]) -> int:
    """Reference arguments matched, less arguments the reference does not have (at least 0); 1 for a
    reference call without arguments."""
    if not ref:
        return 1
    matched = sum(1 for k, v in ref.items() if k in got and _same_value(got[k], v))
    return max(matched - len(set(got) - set(ref)), 0)


def _longest_increasing(values: list[int]) -> int:
    tails: list[int] = []
    for value in values:
        position = bisect.bisect_left(tails, value)
        tails[position : position + 1] = [value]
    return len(tails)


# Above this many same-name pairings the alignment is greedy (a response of dozens of identical calls).
_EXHAUSTIVE_LIMIT = 5_000


@dataclass(frozen=True)
class _Alignment:
    pairs: tuple[tuple[int, int], ...]  # (reference call, response call), one to one, same name
    argument_credit: int
    in_order: int  # the most pairs whose response calls come in the reference's order

    def key(self) -> tuple[int, int]:
        return (self.argument_credit, self.in_order)


def _alignment(pairs: list[tuple[int, int]], credit: dict[tuple[int, int], int]) -> _Alignment:
    ordered = sorted(pairs)
    return _Alignment(
        tuple(ordered),
        sum(credit[p] for p in ordered),
        _longest_increasing([g for _, g in ordered]),
    )


def _align(ref_calls: list[dict[str, Any]], got_calls: list[dict[str, Any]]) -> _Alignment:
    """Pair each reference call with at most one response call of the same name: the pairing that
    matches the most arguments, then keeps the most calls in order. Every call that can be paired is
    (a pair never lowers the score), so the number of pairs is the name overlap of the two lists."""
    options = [[g for g, got in enumerate(got_calls) if got["name"] == ref["name"]] for ref in ref_calls]
    credit = {
        (r, g): _argument_credit(ref_calls[r]["arguments"], got_calls[g]["arguments"])
        for r, gs in enumerate(options)
        for g in gs
    }
    size = 1
    for gs in options:
        size *= len(gs) + 1
    if size <= _EXHAUSTIVE_LIMIT:
        best: _Alignment | None = None

        def search(r: int, used: frozenset[int], pairs: list[tuple[int, int]]) -> None:
            nonlocal best
            if r == len(ref_calls):
                found = _alignment(pairs, credit)
                if best is None or (len(found.pairs), found.key()) > (len(best.pairs), best.key()):
                    best = found
                return
            for g in options[r]:
                if g not in used:
                    search(r + 1, used | {g}, [*pairs, (r, g)])
            search(r + 1, used, pairs)  # left unpaired: its response call may fit a later one better

        search(0, frozenset(), [])
        assert best is not None
        return best
    # Greedy: each reference call in turn takes the free response call that matches most of its
    # arguments, the earliest one after the previous pair on a tie.
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    last = -1
    for r, gs in enumerate(options):
        free = [g for g in gs if g not in used]
        if free:
            chosen = max(free, key=lambda g: (credit[(r, g)], g > last, -g))
            pairs.append((r, chosen))
            used.add(chosen)
            last = chosen
    return _alignment(pairs, credit)


def score_response(
    response: str,
    reference: dict[str, Any],
    tools: list[dict[str, Any]] | None = None,
    weights: RewardWeights | None = None,
    tool_call_format: ToolCallFormat = "hermes",
) -> RewardBreakdown:
    """Score ``response`` (written in the model family's ``tool_call_format``) against ``reference``.

    ``format_valid``: every call parses and validates against its tool's schema, and -- for a tool-call
    reference -- the response makes at least one call (a response without any call is not a valid answer
    to a reference that calls a tool)."""
    weights = weights or RewardWeights()
    parsed = parse(response, tool_call_format)
    ref_calls = reference.get("tool_calls") or []
    negatives = reference.get("negatives") or []
    schemas = _tool_schemas(tools)
    format_valid = (
        parsed.malformed_calls == 0
        and all(_valid_against(c, schemas) for c in parsed.tool_calls)
        and (bool(parsed.tool_calls) or not ref_calls)
    )
    name_score = args_score = text_score = 0.0
    order_score = 1.0
    if ref_calls:
        # Calls are paired one to one by name (see _align). A paired call earns its name credit in full
        # when it comes in the reference's order, half when out of order; a missing or extra call earns
        # none (the share is over the longer list). Arguments: the share of the reference's arguments
        # its paired calls match. A one-call answer scores as it always has.
        alignment = _align(ref_calls, parsed.tool_calls)
        paired, in_order = len(alignment.pairs), alignment.in_order
        name_score = (in_order + 0.5 * (paired - in_order)) / max(len(ref_calls), len(parsed.tool_calls))
        order_score = in_order / paired if paired else 0.0
        total = sum(len(ref["arguments"]) or 1 for ref in ref_calls)
        args_score = alignment.argument_credit / total
        total_score = (
            weights.format * float(format_valid)
            + weights.tool_name * name_score
            + weights.arguments * args_score
        ) / max(weights.format + weights.tool_name + weights.arguments, 1e-9)
    else:
        text_score = _token_f1(parsed.text, reference.get("content") or "")
        penalty_calls = 0.5 if parsed.tool_calls else 0.0
        total_score = max(text_score - penalty_calls, 0.0)
    negative_hit = False
    for negative in negatives:
        if (
            negative.get("tool_calls")
            and parsed.tool_calls
            and _same_calls(parsed.tool_calls, negative["tool_calls"])
        ):
            negative_hit = True
        elif not negative.get("tool_calls") and negative.get("content") and not parsed.tool_calls:
            negative_hit = negative_hit or _token_f1(parsed.text, negative["content"]) > 0.9
    if negative_hit:
        total_score -= weights.negative_penalty
    return RewardBreakdown(
        total_score, format_valid, name_score, args_score, text_score, negative_hit, order_score
    )


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **reward_kwargs: Any,
) -> float:
    """VeRL's ``reward.custom_reward_function`` entry point.

    ``reward_kwargs`` are VeRL's ``reward.custom_reward_function.reward_kwargs`` (the run spec's
    ``RewardWeights`` fields, e.g. ``format=0.2``, and ``tool_call_format``, default ``hermes``); other
    keyword arguments VeRL passes are ignored.
    """
    tools_json = (extra_info or {}).get("tools_json")
    tools = json.loads(tools_json) if tools_json else None
    fields = RewardWeights.model_fields
    weights = RewardWeights(**{k: float(v) for k, v in reward_kwargs.items() if k in fields})
    fmt = reward_kwargs.get("tool_call_format", "hermes")
    return score_response(solution_str, json.loads(ground_truth), tools, weights, fmt).total
