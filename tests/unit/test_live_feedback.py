"""Closing the loop (issue 18 item 2): logs stamped with the model version that served them go through the real
ingest; live feedback per version and day is counted from the curated partitions; a sustained drop after a
promotion raises an alert (SNS on a moto server) that offers the rollback."""

from __future__ import annotations

import gzip
import json
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from continuous_learning.config import MonitoringSettings, load_settings
from continuous_learning.evaluation.live_feedback import feedback_by_version, live_feedback, render_section

from tests.unit.helpers import DAYS, START, promote, world

SETTINGS = MonitoringSettings(min_interactions=100, min_thumbs=40, sustained_days=3, max_thumbs_up_drop=0.05)


def _expected_from_raw(root: Path) -> dict[tuple[date, str], tuple[int, int, int, int]]:
    """What the counts must be, read from the raw files and feedback files themselves: valid v1 records
    (schema_version 1, an agent, a string timestamp), first copy of each id; inline thumbs; interactions
    with a correction in any feedback file."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "raw").rglob("*.jsonl*")):
        text = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        for line in text.decode().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("schema_version") == 1 and record.get("agent") and isinstance(record.get("timestamp"), str):  # fmt: skip
                records.setdefault(record["interaction_id"], record)
    corrected = {
        event["interaction_id"]
        for path in (root / "feedback").rglob("*.jsonl")
        for event in map(json.loads, path.read_text().splitlines())
        if event["type"] == "correction"
    }
    expected: dict[tuple[date, str], list[int]] = {}
    for interaction_id, record in records.items():
        key = (date.fromisoformat(record["timestamp"][:10]), record["model_version"])
        counts = expected.setdefault(key, [0, 0, 0, 0])
        counts[0] += 1
        for event in record.get("feedback", []):
            if event["type"] == "thumbs":
                counts[1 if event["value"] == 1 else 2] += 1
        counts[3] += interaction_id in corrected
    return {k: (n, up, down, fixed) for k, (n, up, down, fixed) in expected.items()}


def test_model_versions_survive_ingest_and_feedback_is_counted_per_version_and_day(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    reports = world(root, v2_accuracy=0.3)
    assert [r.model_versions for r in reports] == [{"v1": r.accepted} for r in reports[:5]] + [
        {"v2": r.accepted} for r in reports[5:]
    ]
    rows = feedback_by_version(f"{root}/data", [START + timedelta(days=n) for n in range(DAYS)])
    got = {(r.day, r.model_version): (r.interactions, r.thumbs_up, r.thumbs_down, r.corrected) for r in rows}
    assert got == _expected_from_raw(tmp_path)
    for r in rows:
        assert r.thumbs == r.thumbs_up + r.thumbs_down
        assert r.thumbs_up_rate == pytest.approx(r.thumbs_up / r.thumbs)
        assert r.corrections_per_100 == pytest.approx(100 * r.corrected / r.interactions)

    live = live_feedback(f"{root}/data", START + timedelta(days=DAYS - 1), "v2", "v1", SETTINGS)
    assert live.verdict == "drop", live.reason
    assert live.promoted_on == START + timedelta(days=5)
    assert live.drop is not None and live.drop.days == [START + timedelta(days=n) for n in (5, 6, 7)]
    v1 = [r for r in rows if r.model_version == "v1"]
    baseline = sum(r.thumbs_up for r in v1) / sum(r.thumbs for r in v1)
    assert live.drop.baseline_rate == pytest.approx(baseline)
    assert all(rate < baseline - 0.05 for rate in live.drop.rates)
    assert live.production is not None and live.production.interactions == sum(
        r.accepted for r in reports[5:]
    )
    assert live.previous is not None and live.previous.interactions == sum(r.accepted for r in reports[:5])
    assert live.production.corrections_per_100 > live.previous.corrections_per_100  # type: ignore[operator]

    page = render_section(live, offline_score=0.71)
    assert "DROP: roll back?" in page and "v2 (production)" in page and "0.710" in page


def test_no_alert_without_a_drop_or_without_enough_days(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    world(root, v2_accuracy=None)  # v2 as good as v1
    end = START + timedelta(days=DAYS - 1)
    same = live_feedback(f"{root}/data", end, "v2", "v1", SETTINGS)
    assert same.verdict == "ok" and same.drop is None, same.reason
    early = live_feedback(f"{root}/data", end - timedelta(days=1), "v2", "v1", SETTINGS)  # 2 days of v2
    assert early.verdict == "not_enough_data" and "promoted on 2026-11-06" in early.reason
    strict = live_feedback(
        f"{root}/data", end, "v2", "v1", SETTINGS.model_copy(update={"min_interactions": 10_000})
    )
    assert strict.verdict == "not_enough_data"
    first = live_feedback(f"{root}/data", end, "v2", None, SETTINGS)
    assert first.verdict == "no_previous_version" and first.production is not None


def test_the_gate_alerts_on_a_drop_with_the_rollback_link(
    tmp_path: Path, storage_root: str, topic: Any
) -> None:
    """The gate's check: production v2 (replacing v1, from the registry) dropped: one SNS message naming both
    versions, the model_rollback page and the one-call rollback; the document says so."""
    from continuous_learning.airflow.monitoring import check_live_feedback

    settings = load_settings()
    world(storage_root, v2_accuracy=0.3)
    promote(settings.storage.registry_uri, "v0", "v1", "v2")
    context = {"ti": SimpleNamespace(dag_id="continuous_training", run_id="scheduled__2026-11-09", task_id="evaluation_gate", try_number=1),
               "run_id": "scheduled__2026-11-09"}  # fmt: skip
    document = check_live_feedback(context, settings, START + timedelta(days=DAYS - 1))
    assert document is not None and document["verdict"] == "drop" and document["alerted"] is True
    assert document["production_version"] == "v2" and document["previous_version"] == "v1"
    assert document["rollback_url"] == "http://airflow.example:8080/dags/model_rollback"
    [message] = topic.received()
    assert message["Subject"] == "[continuous-learning] feedback drop: roll v2 back to v1?"
    body = message["Message"]
    assert (
        "http://airflow.example:8080/dags/model_rollback -> Trigger (target version 'previous' = v1" in body
    )
    request = json.loads(body.split("POST http://airflow.example:8080/api/v2/dags/model_rollback/dagRuns ", 1)[1].splitlines()[0])  # fmt: skip
    assert request["conf"]["target_version"] == "v1" and "v2" in request["conf"]["reason"]

    # The run report shows it beside production's offline score, with the rollback link.
    from continuous_learning import storage
    from continuous_learning.evaluation.report import build_report

    evaluation = {"scores_uri": f"{storage_root}/none.parquet", "mean_reward": {"production": 0.42}}
    uris = build_report(f"{storage_root}/runs/r", dataset_manifest={}, train_result=None, eval_result=evaluation,
                        decision={"promote": False, "reasons": []}, candidate_version="v3",
                        production_version="v2", live_feedback=document)  # fmt: skip
    page = storage.read_bytes(uris["html"]).decode()
    assert "<h2>Live feedback</h2>" in page and "DROP: roll back?" in page
    assert (
        "<td>v2 (production)</td>" in page and "<td>0.420</td>" in page and "<td>v1 (previous)</td>" in page
    )
    assert "href='http://airflow.example:8080/dags/model_rollback'" in page
    assert storage.read_json(uris["json"])["live_feedback"]["drop"]["previous_version"] == "v1"

    # No drop (v2 as good as v1): the document, no message.
    world(storage_root, v2_accuracy=None)
    document = check_live_feedback(context, settings, START + timedelta(days=DAYS - 1))
    assert document is not None and document["verdict"] == "ok" and document["alerted"] is False
    assert topic.received() == []
