"""The run report reads the curves of whichever engine ran (VeRL's metric names from a real VeRL run's
``file`` logger: tests/unit/fixtures/verl-day1-metrics.jsonl, the first 3 steps of
benchmarks/gpu/logs/2026-12-03-loop/day1-metrics.jsonl, an H200 run) and shows its sections as tables."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from continuous_learning.evaluation.report import curve_keys
from continuous_learning_trainer.verl_engine.run import read_history

from tests.unit.helpers import FIXTURE, report


def test_verl_metrics_file_draws_its_curves(tmp_path: Path) -> None:
    history = read_history(FIXTURE)
    assert [h["step"] for h in history] == [1.0, 2.0, 3.0]
    assert curve_keys(history) == [
        ("reward", "critic/rewards/mean"), ("KL", "actor/ppo_kl"), ("loss", "actor/pg_loss"),
        ("entropy", "actor/entropy"), ("response length", "response_length/mean"), ("step time (s)", "timing_s/step"),
    ]  # fmt: skip
    page = report(tmp_path, history)
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
    assert "training_curves" in report(tmp_path, history)


def test_sections_are_tables_not_json(tmp_path: Path) -> None:
    page = report(tmp_path, read_history(FIXTURE))
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
