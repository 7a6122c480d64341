from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.evaluation.gate import GateConfig, decide


def _scores(
    tmp_path, candidate_shift: float, n: int = 200, seed: int = 0, agent_shift: dict | None = None
) -> str:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        agent = ["a", "b"][i % 2]
        base = float(rng.uniform(0, 1))
        shift = (agent_shift or {}).get(agent, candidate_shift)
        rows.append(
            {
                "interaction_id": f"i{i}",
                "agent": agent,
                "model": "production",
                "reward": base,
                "format_valid": True,
            }
        )
        rows.append(
            {
                "interaction_id": f"i{i}",
                "agent": agent,
                "model": "candidate",
                "reward": base + shift + float(rng.normal(0, 0.05)),
                "format_valid": True,
            }
        )
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    uri = f"file://{tmp_path}/scores.parquet"
    storage.write_bytes(uri, sink.getvalue())
    return uri


def test_clearly_better_candidate_is_promoted(tmp_path) -> None:
    decision = decide(_scores(tmp_path, 0.1), GateConfig(margin=0.02))
    assert decision.promote
    assert decision.overall is not None and decision.overall.low > 0.02
    assert set(decision.slices) == {"agent=a", "agent=b"}


def test_worse_or_equal_candidate_is_rejected_with_reason(tmp_path) -> None:
    decision = decide(_scores(tmp_path, 0.0), GateConfig(margin=0.0))
    assert not decision.promote
    assert "does not clear the margin" in decision.reasons[0]


def test_slice_regression_blocks_promotion_even_when_overall_improves(tmp_path) -> None:
    decision = decide(
        _scores(tmp_path, 0.0, agent_shift={"a": 0.5, "b": -0.2}), GateConfig(slice_regression_limit=0.1)
    )
    assert not decision.promote
    assert any("slice agent=b regresses" in r for r in decision.reasons)


def test_decision_is_reproducible(tmp_path) -> None:
    uri = _scores(tmp_path, 0.03)
    assert decide(uri, GateConfig()).as_dict() == decide(uri, GateConfig()).as_dict()


def test_missing_or_corrupt_scores_fail_closed(tmp_path) -> None:
    missing = decide(f"file://{tmp_path}/nope.parquet", GateConfig())
    assert not missing.promote and "unreadable" in missing.reasons[0]
    storage.write_bytes(f"file://{tmp_path}/bad.parquet", b"not parquet")
    corrupt = decide(f"file://{tmp_path}/bad.parquet", GateConfig())
    assert not corrupt.promote and "unreadable" in corrupt.reasons[0]
