"""continuous_learning.tracking against a real MLflow server on loopback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from continuous_learning import storage
from continuous_learning.config import TrackingSettings
from continuous_learning.contracts import RunSpec
from continuous_learning.tracking import Tracker, TrackingError, record_gate, record_training, tracker

from tests.tracking.server import needs_mlflow_server
from tests.trainer.helpers import run_spec

pytestmark = needs_mlflow_server
RUN_ID = "scheduled__2026-12-03T06:00:00+00:00"


def _settings(url: str) -> TrackingSettings:
    return TrackingSettings(enabled=True, tracking_uri=url, experiment=f"exp-{uuid.uuid4().hex[:8]}")


def _spec(settings: TrackingSettings, airflow_run_id: str = RUN_ID) -> RunSpec:
    found = tracker(settings)
    assert found is not None
    ref = found.ref(found.start_run(airflow_run_id, {"cl.env": "local"}))
    return run_spec(tracking=ref.model_dump(), engine="cpu")


def test_off_makes_no_tracker() -> None:
    assert tracker(TrackingSettings()) is None
    assert tracker(TrackingSettings(enabled=False, tracking_uri="http://127.0.0.1:9")) is None


def test_a_retry_finds_its_run_and_params_are_logged_once(mlflow_url: str) -> None:
    settings = _settings(mlflow_url)
    found = tracker(settings)
    assert found is not None
    first = found.start_run(RUN_ID)
    assert found.start_run(RUN_ID) == first  # the retry's task attaches to the same run
    assert found.start_run("manual__other") != first
    found.log_params(first, {"cl.hp.learning_rate": "0.001"})
    found.log_params(first, {"cl.hp.learning_rate": "0.001", "cl.engine": "cpu"})  # no error: only new ones
    params = found.client.get_run(first).data.params
    assert params == {"cl.hp.learning_rate": "0.001", "cl.engine": "cpu"}
    assert found.client.get_run(first).data.tags["cl.run_id"] == RUN_ID


def test_training_gate_and_report_land_on_the_run(mlflow_url: str, tmp_path: Path) -> None:
    settings = _settings(mlflow_url)
    spec = _spec(settings)
    assert spec.tracking is not None
    run = spec.tracking.run_id
    history = [{"step": s, "reward": 0.1 * s, "loss": 1.0 / s} for s in (1, 2, 3)]
    # the engine's logger sent nothing: the result's history is logged, step by step
    assert record_training(settings, spec, {"reward_last": 0.3}, history, version="v4", status="succeeded")
    client = Tracker(mlflow_url, settings.experiment).client
    assert [(m.step, m.value) for m in client.get_metric_history(run, "reward")] == [
        (1, 0.1),
        (2, 0.2),
        (3, 0.30000000000000004),
    ]
    # a second time (a retried task): the history is there, nothing is logged again
    assert not record_training(
        settings, spec, {"reward_last": 0.3}, history, version="v4", status="succeeded"
    )
    assert len(client.get_metric_history(run, "reward")) == 3
    decision = {"promote": True, "reasons": ["candidate better"], "overall": {"mean": 0.2, "low": 0.05, "high": 0.3, "n": 40},
                "slices": {"agent=a": {"mean": 0.1, "low": -0.1, "high": 0.2, "n": 20}}, "guardrails": {"response_length_ratio": 1.1},
                "candidate_mean": 0.6, "production_mean": 0.4}  # fmt: skip
    html = f"file://{tmp_path}/report/report.html"
    storage.write_bytes(html, b"<html>report</html>")
    storage.write_json(f"file://{tmp_path}/report/report.json", {"ok": True})
    url = record_gate(
        settings, spec, decision, {"html": html, "json": f"file://{tmp_path}/report/report.json"}
    )
    assert url is not None and url.startswith(mlflow_url) and url.endswith(run)
    data = client.get_run(run)
    assert data.info.status == "FINISHED"
    assert data.data.metrics["gate.delta.low"] == 0.05 and data.data.metrics["gate.delta.high"] == 0.3
    assert data.data.metrics["gate.slice.agent_a.low"] == -0.1 and data.data.metrics["gate.promote"] == 1.0
    assert data.data.tags["cl.gate"] == "promote" and data.data.tags["cl.candidate_version"] == "v4"
    assert data.data.metrics["result.reward_last"] == 0.3
    artifacts = {a.path for a in client.list_artifacts(run, "report")} | {
        a.path for a in client.list_artifacts(run, "gate")
    }
    assert artifacts == {"report/report.html", "report/report.json", "gate/decision.json"}
    local = client.download_artifacts(run, "report/report.html", str(tmp_path / "down"))
    assert Path(local).read_bytes() == b"<html>report</html>"


def test_an_unreachable_server_fails_with_the_address() -> None:
    settings = TrackingSettings(enabled=True, tracking_uri="http://127.0.0.1:9", request_timeout_s=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        found = tracker(settings)
        assert found is not None
        with pytest.raises(TrackingError, match=r"127\.0\.0\.1:9"):
            found.start_run(RUN_ID)
