"""Reward functions: one module for both engines and for evaluation.

A response is scored against the reference of its prompt (``reward_model.ground_truth``, a JSON
object ``{"content", "tool_calls", "negatives"}``):

- tool-call references: format validity (parses, and arguments validate against the tool's JSON
  schema) + tool name match + share of reference arguments matched, weighted by ``RewardWeights``;
- text references: token-level F1 against the reference text;
- minus ``negative_penalty`` when the response repeats a reference the user rejected.

To add a component: compute it in :func:`score_response`, add its weight to ``RewardWeights`` in
``continuous_learning.contracts`` and report it in ``RewardBreakdown``.
"""

from __future__ import annotations

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


def _valid_against(call: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> bool:
    if not schemas:
        return True
    schema = schemas.get(call["name"])
    if schema is None:
        return False
    try:
        jsonschema.validate(call["arguments"], schema)
    except jsonschema.ValidationError:
        return False
    return True


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
    def key(calls: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(c, sort_keys=True) for c in calls)

    return key(a) == key(b)


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
    if ref_calls:
        ref_names = Counter(c["name"] for c in ref_calls)
        got_names = Counter(c["name"] for c in parsed.tool_calls)
        name_score = sum((ref_names & got_names).values()) / max(
            sum(ref_names.values()), sum(got_names.values())
        )
        matched = total = 0
        for ref in ref_calls:
            candidates = [c for c in parsed.tool_calls if c["name"] == ref["name"]]
            total += len(ref["arguments"]) or 1
            if not candidates:
                continue
            best = max(
                sum(1 for k, v in ref["arguments"].items() if str(c["arguments"].get(k)) == str(v))
                for c in candidates
            )
            extra = max(len(set(c["arguments"]) - set(ref["arguments"])) for c in candidates)
            matched += max(best - extra, 0) if ref["arguments"] else 1
        args_score = matched / total if total else 0.0
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
    return RewardBreakdown(total_score, format_valid, name_score, args_score, text_score, negative_hit)


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
