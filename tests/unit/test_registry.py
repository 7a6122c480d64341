from __future__ import annotations

import pytest
from continuous_learning.registry import ModelRegistry, RegistryError

from tests.unit.helpers import race_for_production


def test_register_promote_and_history(tmp_path) -> None:
    registry = ModelRegistry(f"file://{tmp_path}")
    v0 = registry.register("file:///m/0", "run-0", None, "ds0")
    v1 = registry.register("file:///m/1", "run-1", "v0", "ds1", metrics={"reward_last": 0.5})
    assert (v0.version, v1.version) == ("v0", "v1")
    assert registry.register("file:///m/1", "run-1", "v0", "ds1").version == "v1"  # idempotent per run
    registry.promote("v0", "bootstrap", "run-0", expected_revision=0)
    registry.promote("v1", "gate passed", "run-1", expected_revision=1)
    assert registry.summary()["aliases"] == {"production": "v1", "previous": "v0", "candidate": None}
    assert [r.version for r in registry.history("production")] == ["v0", "v1"]


def test_stale_expected_revision_is_refused(tmp_path) -> None:
    registry = ModelRegistry(f"file://{tmp_path}")
    for i in range(3):
        registry.register(f"file:///m/{i}", f"run-{i}", None, None)
    registry.promote("v0", "bootstrap", None, expected_revision=0)
    registry.promote("v1", "first", None, expected_revision=1)
    with pytest.raises(RegistryError, match="moved concurrently"):
        registry.promote("v2", "stale", None, expected_revision=1)
    assert registry.alias("production").version == "v1"


def test_two_concurrent_promotions_exactly_one_wins(tmp_path) -> None:
    registry = ModelRegistry(f"file://{tmp_path}")
    for i in range(3):
        registry.register(f"file:///m/{i}", f"run-{i}", None, None)
    registry.promote("v0", "bootstrap", None, expected_revision=0)

    outcomes = race_for_production(f"file://{tmp_path}")
    assert sorted(o[:4] for o in outcomes) == ["lost", "won"]
    assert registry.alias("production").revision == 2


def test_unknown_version_and_alias_are_clear_errors(tmp_path) -> None:
    registry = ModelRegistry(f"file://{tmp_path}")
    with pytest.raises(RegistryError, match="model version 'v9' does not exist"):
        registry.get("v9")
    registry.register("file:///m/0", "run-0", None, None)
    with pytest.raises(RegistryError, match="unknown alias 'staging'"):
        registry.move_alias("staging", "v0", "x")


def test_rollback_restores_a_former_production_version_only(tmp_path) -> None:
    registry = ModelRegistry(f"file://{tmp_path}")
    for i in range(4):
        registry.register(f"file:///m/{i}", f"run-{i}", None, None)
    registry.promote("v0", "bootstrap", None, expected_revision=0)
    registry.promote("v1", "gate", None, expected_revision=1)
    registry.promote("v2", "gate", None, expected_revision=2)
    with pytest.raises(RegistryError, match="'v3' was never production"):
        registry.rollback("v3", "bad model")
    with pytest.raises(RegistryError, match="'v9' does not exist"):
        registry.rollback("v9", "bad model")
    assert registry.alias("production").version == "v2"  # nothing changed
    moved = registry.rollback("previous", "regression in shop agent", "manual-1")
    assert (moved.version, moved.previous_version) == ("v1", "v2")
    assert moved.reason == "rollback: regression in shop agent"
    assert registry.rollback("v0", "further back").version == "v0"
    assert [r.version for r in registry.history("production")] == ["v0", "v1", "v2", "v1", "v0"]
