"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from continuous_learning.registry import ModelRegistry


@pytest.fixture
def registry(storage_root: str) -> ModelRegistry:
    """A registry with v0 (production) and v1 (its child), in the test's storage root."""
    registry = ModelRegistry(f"{storage_root}/registry")
    for n in range(2):
        registry.register(f"{storage_root}/models/v{n}", "seed", None if n == 0 else "v0", None)
    registry.promote("v0", "seed", "seed", expected_revision=0)
    return registry
