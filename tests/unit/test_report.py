from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.evaluation.gate import GateConfig, decide
from continuous_learning.evaluation.report import build_report


def test_report_has_plots_decision_and_json(tmp_path) -> None:
    rows = []
    for i in range(40):
        for model, reward in (("production", 0.4), ("candidate", 0.6 + (i % 3) * 0.01)):
            rows.append({"interaction_id": f"i{i}", "agent": "a" if i % 2 else "b", "ability": "tool_use",
                         "model": model, "reward": reward, "format_valid": True, "response_chars": 80,
                         "response": "<tool_call>{}</tool_call>"})  # fmt: skip
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    scores = f"file://{tmp_path}/scores.parquet"
    storage.write_bytes(scores, sink.getvalue())
    decision = decide(scores, GateConfig())
    assert decision.promote and {"agent=a", "agent=b", "ability=tool_use"} <= set(decision.slices)
    assert decision.guardrails["response_length_ratio"] == 1.0
    history = [{"step": s, "reward": 0.3 + s / 100, "loss": 0.1, "kl": 0.01} for s in range(1, 6)]
    uris = build_report(
        f"file://{tmp_path}/run",
        dataset_manifest={"dataset_id": "d1", "counts": {"train": 10}},
        train_result={"steps": 5, "history": history, "metrics": {"reward_last": 0.35}},
        eval_result={
            "scores_uri": scores,
            "prompts": 40,
            "mean_reward": {"candidate": 0.61, "production": 0.4},
        },
        decision=decision.as_dict(),
        candidate_version="v2",
        production_version="v1",
    )
    page = storage.read_bytes(uris["html"]).decode()
    assert "Gate: PROMOTE candidate v2" in page
    assert page.count("data:image/png;base64,") == 3  # curves, distributions, slice deltas
    document = storage.read_json(uris["json"])
    assert document["evaluation"]["prompts"] == 40 and document["decision"]["promote"] is True


def test_guardrails_block_longer_and_refusing_candidates(tmp_path) -> None:
    rows = []
    for i in range(40):
        rows.append({"interaction_id": f"i{i}", "agent": "a", "model": "production", "reward": 0.4,
                     "format_valid": True, "response_chars": 50, "response": "ok"})  # fmt: skip
        rows.append({"interaction_id": f"i{i}", "agent": "a", "model": "candidate", "reward": 0.9,
                     "format_valid": True, "response_chars": 200, "response": "I'm sorry, I cannot"})  # fmt: skip
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    storage.write_bytes(f"file://{tmp_path}/s.parquet", sink.getvalue())
    decision = decide(f"file://{tmp_path}/s.parquet", GateConfig())
    assert not decision.promote
    assert any("responses grew 4.00x longer" in r for r in decision.reasons)
    assert any("refusal rate rose" in r for r in decision.reasons)
