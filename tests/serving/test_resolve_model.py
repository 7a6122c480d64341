"""resolve_model reads the triggering Asset events as Airflow hands them to a task (the Task SDK's
TriggeringAssetEventsAccessor): the newest event deploys, a superseded one skips."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from continuous_learning import storage
from continuous_learning.registry import ModelRegistry
from continuous_learning.serving.handoff import event_for


def _accessor(extras: list[dict[str, Any]]) -> Any:
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
    from continuous_learning.airflow.assets import PRODUCTION_MODEL

    events = [
        AssetEventDagRunReferenceResult.model_validate({
            "asset": {"name": PRODUCTION_MODEL.name, "uri": PRODUCTION_MODEL.uri, "extra": {}},
            "extra": extra, "source_task_id": "promote", "source_dag_id": "continuous_training",
            "source_run_id": f"r{i}", "source_map_index": -1, "source_aliases": [], "timestamp": datetime.now(UTC),
        })
        for i, extra in enumerate(extras)
    ]  # fmt: skip
    return TriggeringAssetEventsAccessor.build(events)


def test_resolve_model_takes_the_newest_event_and_skips_a_superseded_one(storage_root: str) -> None:
    from airflow.sdk.exceptions import AirflowSkipException
    from continuous_learning.airflow.serving import ResolveProductionModelOperator

    registry = ModelRegistry(storage.join(storage_root, "registry"))
    for i in range(3):
        registry.register(f"s3://models/v{i}/", f"run-{i}", None, None)
    moves = [registry.promote(f"v{i}", "gate", f"run-{i}", expected_revision=i) for i in range(3)]
    extras = [event_for(registry.get(m.version), m).model_dump(mode="json") for m in moves]
    op = ResolveProductionModelOperator(task_id="resolve_model")

    chosen = op.execute({"params": {}, "triggering_asset_events": _accessor(extras[1:])})  # type: ignore[arg-type]
    assert (chosen["version"], chosen["revision"], chosen["model_uri"]) == ("v2", 3, "s3://models/v2/")
    with pytest.raises(AirflowSkipException, match="superseded by v2"):
        op.execute({"params": {}, "triggering_asset_events": _accessor(extras[:1])})  # type: ignore[arg-type]
    manual = op.execute({"params": {}, "triggering_asset_events": _accessor([])})  # type: ignore[arg-type]
    assert manual["version"] == "v2"
