from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tracking.server import mlflow_server


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MLflow server per test module (start-up takes seconds); tests use their own experiments."""
    folder: Path = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(folder) as url:
        yield url


@pytest.fixture
def dags(airflow_db: str) -> Any:
    """The repository's DAGs (as tests/integration/test_pipeline_local.py loads them)."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag
