"""Test set-up: a private Airflow home (SQLite) migrated once per session, before Airflow is imported."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import alert_topic, moto_server

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="cl-airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "CL_ENV": "local",
        "TOKENIZERS_PARALLELISM": "false",
        # Keep Ray drivers on loopback: without it ray.init resolves 127.0.0.1 to the external address.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
)
# The venv's bin (ray, airflow) must be on PATH for the subprocesses the pipeline starts.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def airflow_db() -> str:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


@pytest.fixture
def storage_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    root = f"file://{tmp_path / 'store'}"
    monkeypatch.setenv("CL_STORAGE__ROOT", root)
    return root


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Alerts on, to an SNS topic on a moto server with an SQS queue subscribed (tests/unit/test_live_feedback.py,
    tests/integration/test_live_feedback_dag.py; tests/unit/test_validation_alerts.py defines its own)."""
    with moto_server() as url, alert_topic(monkeypatch, url) as topic:
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
        yield topic
