"""The promotion gate: paired comparison of candidate and production on the same prompts.

Promote only when the lower bound of the bootstrap confidence interval of the mean reward
difference exceeds the margin, no slice regresses beyond its limit, and guardrails hold.
A missing or unreadable score file fails closed (no promotion) with the reason.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from continuous_learning import storage


@dataclass(frozen=True)
class GateConfig:
    margin: float = 0.0
    confidence: float = 0.9
    resamples: int = 2000
    seed: int = 11
    slice_regression_limit: float = 0.1
    min_tool_call_validity_delta: float = -0.05
    max_response_length_ratio: float = 1.5
    max_refusal_rate_delta: float = 0.05
    min_prompts: int = 10


@dataclass
class Interval:
    mean: float
    low: float
    high: float
    n: int


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    overall: Interval | None = None
    slices: dict[str, Interval] = field(default_factory=dict)
    candidate_mean: float | None = None
    production_mean: float | None = None
    guardrails: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_interval(diffs: np.ndarray, confidence: float, resamples: int, seed: int) -> Interval:
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[index].mean(axis=1)
    alpha = (1 - confidence) / 2
    return Interval(
        float(diffs.mean()),
        float(np.quantile(means, alpha)),
        float(np.quantile(means, 1 - alpha)),
        len(diffs),
    )


def decide(
    scores_uri: str, config: GateConfig, candidate: str = "candidate", production: str = "production"
) -> GateDecision:
    try:
        table = pq.read_table(io.BytesIO(storage.read_bytes(scores_uri)))
        columns = ["interaction_id", "agent", "model", "reward", "format_valid"]
        optional = [c for c in ("ability", "response_chars", "response") if c in table.column_names]
        rows = table.select(columns + optional).to_pylist()
    except Exception as exc:  # fail closed on anything unreadable
        return GateDecision(False, [f"evaluation scores unreadable at {scores_uri}: {exc}"])
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["interaction_id"]] = row
    if candidate not in by_model or production not in by_model:
        return GateDecision(
            False, [f"scores lack model {candidate!r} or {production!r}: found {sorted(by_model)}"]
        )
    shared = sorted(set(by_model[candidate]) & set(by_model[production]))
    if len(shared) < config.min_prompts:
        return GateDecision(
            False, [f"only {len(shared)} paired prompts; the gate needs {config.min_prompts}"]
        )
    cand = np.array([by_model[candidate][i]["reward"] for i in shared], dtype=float)
    prod = np.array([by_model[production][i]["reward"] for i in shared], dtype=float)
    if not (np.isfinite(cand).all() and np.isfinite(prod).all()):
        return GateDecision(False, ["scores contain NaN or infinite rewards"])
    diffs = cand - prod
    overall = bootstrap_interval(diffs, config.confidence, config.resamples, config.seed)
    decision = GateDecision(
        True, [], overall, candidate_mean=float(cand.mean()), production_mean=float(prod.mean())
    )
    level = f"{config.confidence:.0%}"
    if overall.low > config.margin:
        decision.reasons.append(
            f"improvement {overall.mean:+.4f} ({level} CI {overall.low:+.4f}..{overall.high:+.4f}) clears the margin {config.margin:+.4f}"
        )
    else:
        decision.promote = False
        decision.reasons.append(
            f"improvement {overall.mean:+.4f} ({level} CI {overall.low:+.4f}..{overall.high:+.4f}) does not clear the margin {config.margin:+.4f}"
        )
    for dimension in ("agent", "ability"):
        values = sorted({str(by_model[candidate][i].get(dimension)) for i in shared})
        if dimension == "ability" and values == ["None"]:
            continue
        for value in values:
            mask = np.array([str(by_model[candidate][i].get(dimension)) == value for i in shared])
            interval = bootstrap_interval(diffs[mask], config.confidence, config.resamples, config.seed)
            decision.slices[f"{dimension}={value}"] = interval
            if interval.low < -config.slice_regression_limit and interval.high < 0:
                decision.promote = False
                decision.reasons.append(
                    f"slice {dimension}={value} regresses {interval.mean:+.4f} (CI {interval.low:+.4f}..{interval.high:+.4f}), "
                    f"beyond the limit {config.slice_regression_limit}"
                )
    _guardrails(decision, by_model, shared, candidate, production, config)
    return decision


_REFUSAL = ("i can't", "i cannot", "i'm sorry", "i am sorry", "unable to help", "i won't")


def _guardrails(
    decision: GateDecision,
    by_model: dict[str, dict[str, dict[str, Any]]],
    shared: list[str],
    candidate: str,
    production: str,
    config: GateConfig,
) -> None:
    """Tool-call validity, response length and refusal rate must not get worse beyond their limits."""

    def rate(model: str, key: str) -> float:
        return float(np.mean([float(bool(by_model[model][i][key])) for i in shared]))

    validity = {m: rate(m, "format_valid") for m in (candidate, production)}
    decision.guardrails["tool_call_validity_candidate"] = validity[candidate]
    decision.guardrails["tool_call_validity_production"] = validity[production]
    if validity[candidate] - validity[production] < config.min_tool_call_validity_delta:
        decision.promote = False
        decision.reasons.append(
            f"tool-call validity fell by {validity[production] - validity[candidate]:.1%} "
            f"(limit {-config.min_tool_call_validity_delta:.1%})"
        )
    if "response_chars" in by_model[candidate][shared[0]]:
        length = {
            m: float(np.mean([by_model[m][i]["response_chars"] for i in shared]))
            for m in (candidate, production)
        }
        ratio = length[candidate] / max(length[production], 1.0)
        decision.guardrails["response_length_ratio"] = ratio
        if ratio > config.max_response_length_ratio:
            decision.promote = False
            decision.reasons.append(
                f"responses grew {ratio:.2f}x longer (limit {config.max_response_length_ratio}x)"
            )
    if "response" in by_model[candidate][shared[0]]:
        refusals = {
            m: float(
                np.mean(
                    [any(r in (by_model[m][i]["response"] or "").lower() for r in _REFUSAL) for i in shared]
                )
            )
            for m in (candidate, production)
        }
        decision.guardrails["refusal_rate_candidate"] = refusals[candidate]
        decision.guardrails["refusal_rate_production"] = refusals[production]
        if refusals[candidate] - refusals[production] > config.max_refusal_rate_delta:
            decision.promote = False
            decision.reasons.append(
                f"refusal rate rose from {refusals[production]:.1%} to {refusals[candidate]:.1%} "
                f"(limit +{config.max_refusal_rate_delta:.1%})"
            )
