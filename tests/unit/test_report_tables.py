"""The run report reads the curves of whichever engine ran (VeRL's metric names from a real VeRL run's
``file`` logger: tests/unit/fixtures/verl-day1-metrics.jsonl, the first 3 steps of
benchmarks/gpu/logs/2026-12-03-loop/day1-metrics.jsonl, an H200 run) and shows its sections as tables."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

from continuous_learning import storage
from continuous_learning.evaluation.report import build_report, curve_keys
from continuous_learning_trainer.verl_engine.run import read_history

FIXTURE = Path(__file__).parent / "fixtures" / "verl-day1-metrics.jsonl"
DECISION: dict[str, Any] = {
    "promote": False,
    "reasons": ["the reward difference's CI [-0.02, 0.05] includes 0"],
    "overall": {"mean": 0.015, "low": -0.02, "high": 0.05, "n": 64},
    "slices": {"agent=billing": {"mean": -0.04, "low": -0.09, "high": -0.01, "n": 20},
               "agent=search": {"mean": 0.06, "low": 0.01, "high": 0.1, "n": 44}},
    "candidate_mean": 0.57, "production_mean": 0.555, "guardrails": {"response_length_ratio": 1.04},
}  # fmt: skip
MANIFEST = {
    "dataset_id": "2026-12-02-abc", "window": {"end": "2026-12-02", "lookback_days": 7},
    "counts": {"train": 120, "validation": 14, "test": 64},
    "counts_by_agent": {"train": {"billing": 40, "search": 80}, "validation": {"billing": 4, "search": 10},
                        "test": {"billing": 20, "search": 44}},
}  # fmt: skip


def _report(tmp_path: Path, history: list[dict[str, float]]) -> str:
    uris = build_report(
        f"file://{tmp_path}/run",
        dataset_manifest=MANIFEST,
        train_result={"steps": len(history), "status": "succeeded", "history": history, "base_model_version": "v3",
                      "metrics": {"reward_first": 0.557, "reward_last": 0.534}, "versions": {"verl": "0.9.1"}},
        eval_result={"scores_uri": f"file://{tmp_path}/none.parquet", "prompts": 64,
                     "mean_reward": {"candidate": 0.57, "production": 0.555},
                     "tool_call_validity": {"candidate": 0.98, "production": 0.97},
                     "mean_response_chars": {"candidate": 240.0, "production": 231.0}},
        decision=DECISION, candidate_version="v4", production_version="v3",
    )  # fmt: skip
    return storage.read_bytes(uris["html"]).decode()


def test_verl_metrics_file_draws_its_curves(tmp_path: Path) -> None:
    history = read_history(FIXTURE)
    assert [h["step"] for h in history] == [1.0, 2.0, 3.0]
    assert curve_keys(history) == [
        ("reward", "critic/rewards/mean"), ("KL", "actor/ppo_kl"), ("loss", "actor/pg_loss"),
        ("entropy", "actor/entropy"), ("response length", "response_length/mean"), ("step time (s)", "timing_s/step"),
    ]  # fmt: skip
    page = _report(tmp_path, history)
    [curves] = re.findall(r'alt="training_curves" src="data:image/png;base64,([^"]+)"', page)
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(curves)))
    assert image.width > 900 and image.height > 400  # 3 x 2 panels, not one
    assert "critic/rewards/mean, actor/ppo_kl, actor/pg_loss" in page


def test_trl_names_still_draw(tmp_path: Path) -> None:
    history = [
        {"step": s, "reward": 0.1 * s, "kl": 0.01, "loss": 0.2, "completions/mean_length": 20.0}
        for s in (1, 2)
    ]
    assert [t for t, _ in curve_keys(history)] == ["reward", "KL", "loss", "response length"]
    assert "training_curves" in _report(tmp_path, history)


def test_sections_are_tables_not_json(tmp_path: Path) -> None:
    page = _report(tmp_path, read_history(FIXTURE))
    assert "<pre>" not in page
    for section in ("decision", "dataset", "training", "evaluation"):
        body = page.split(f"<section id='{section}'>", 1)[1].split("</section>", 1)[0]
        assert "<table>" in body, section
    # a slice whose whole interval is below 0 is marked; one above 0 too
    assert re.search(r"<tr class='bad'><td>agent=billing</td>", page)
    assert re.search(r"<tr class='good'><td>agent=search</td>", page)
    assert (
        "<tr><td>billing</td><td class='num'>40</td><td class='num'>4</td><td class='num'>20</td></tr>"
        in page
    )
    assert (
        "<tr><td>candidate</td><td class='num'>0.57</td><td class='num'>0.98</td><td class='num'>240</td></tr>"
        in page
    )
    assert "Gate: REJECT candidate v4" in page
