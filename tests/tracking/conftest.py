from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tracking.server import mlflow_server


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MLflow server per test module (start-up takes seconds); tests use their own experiments."""
    folder: Path = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(folder) as url:
        yield url
