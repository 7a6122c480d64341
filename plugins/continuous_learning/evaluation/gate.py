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
        rows = table.select(["interaction_id", "agent", "model", "reward", "format_valid"]).to_pylist()
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
    agents = sorted({by_model[candidate][i]["agent"] for i in shared})
    for agent in agents:
        mask = np.array([by_model[candidate][i]["agent"] == agent for i in shared])
        interval = bootstrap_interval(diffs[mask], config.confidence, config.resamples, config.seed)
        decision.slices[f"agent={agent}"] = interval
        if interval.low < -config.slice_regression_limit and interval.high < 0:
            decision.promote = False
            decision.reasons.append(
                f"slice agent={agent} regresses {interval.mean:+.4f} (CI {interval.low:+.4f}..{interval.high:+.4f}), "
                f"beyond the limit {config.slice_regression_limit}"
            )
    validity = {
        m: float(np.mean([by_model[m][i]["format_valid"] for i in shared])) for m in (candidate, production)
    }
    delta = validity[candidate] - validity[production]
    decision.guardrails = {
        "tool_call_validity_candidate": validity[candidate],
        "tool_call_validity_production": validity[production],
    }
    if delta < config.min_tool_call_validity_delta:
        decision.promote = False
        decision.reasons.append(
            f"tool-call validity fell by {-delta:.1%} (limit {-config.min_tool_call_validity_delta:.1%})"
        )
    return decision
