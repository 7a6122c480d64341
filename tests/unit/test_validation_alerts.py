"""Alerts: the configured SNS notifier is called on a task failure and on a gate rejection (moto on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from continuous_learning.airflow import notifications

from tests.servers import alert_topic, moto_server


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def topic(moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An SNS topic with an SQS queue subscribed, alerts on, and the AWS connection at moto."""
    with alert_topic(monkeypatch, moto) as topic:
        yield topic


def _context() -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="continuous_training", run_id="manual__x", task_id="train_candidate", try_number=2
    )
    return {"ti": ti, "dag": SimpleNamespace(dag_id="continuous_training"), "run_id": "manual__x",
            "exception": RuntimeError("RayJob ended FAILED: OOM")}  # fmt: skip


def test_task_failure_publishes_to_the_configured_topic(topic: Any) -> None:
    notifications.on_task_failure(_context())
    [message] = topic.received()
    assert message["TopicArn"] == topic.arn
    assert message["Subject"] == "[continuous-learning] FAILED continuous_training.train_candidate"
    assert "RayJob ended FAILED: OOM" in message["Message"] and "try 2" in message["Message"]
    assert message["MessageAttributes"]["kind"]["Value"] == "failure"


def test_gate_rejection_publishes_with_reasons_and_report(topic: Any) -> None:
    assert notifications.notify_gate_rejection(_context(), "v4", "CI includes 0", "https://r/report.html")
    [message] = topic.received()
    assert message["Subject"].startswith("[continuous-learning] gate rejected v4")
    assert "CI includes 0" in message["Message"] and "https://r/report.html" in message["Message"]


def test_kinds_can_be_turned_off(topic: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CL_ALERTS__ON_GATE_REJECTION", "false")
    assert not notifications.notify_gate_rejection(_context(), "v4", "CI includes 0", None)
    assert topic.received() == []


def test_alerts_are_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    monkeypatch.setattr(
        "airflow.providers.amazon.aws.notifications.sns.SnsNotifier.notify",
        lambda self, ctx: called.append(self),
    )
    assert not notifications.send_alert("failure", "subject", "message")
    assert called == []


def test_a_broken_notifier_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CL_ALERTS__ENABLED", "true")
    monkeypatch.setenv("CL_ALERTS__SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:nowhere")

    def boom(self: Any, context: Any) -> None:
        raise RuntimeError("no route")

    monkeypatch.setattr("airflow.providers.amazon.aws.notifications.sns.SnsNotifier.notify", boom)
    assert not notifications.send_alert("failure", "subject", "message")


def test_a_bad_topic_arn_is_a_config_error_naming_the_key() -> None:
    from continuous_learning.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=r"alerts\.sns_topic_arn"):
        load_settings(overrides={"alerts.sns_topic_arn": "cl-alerts"})
