"""A real MLflow tracking server for tests: ``mlflow server`` from its own venv (.tools/mlflow-server,
``make tracking-tools``) on a free loopback port, SQLite backend and artifacts in a test folder; stopped
by its own process group (the server starts uvicorn and a job runner under it)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.servers import free_port, stop_process_group, wait_http

MLFLOW = REPO / ".tools" / "mlflow-server" / "bin" / "mlflow"
needs_mlflow_server = pytest.mark.skipif(
    not MLFLOW.exists(), reason="run `make tracking-tools` (the MLflow server's venv under .tools/)"
)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """Yields the server's URL; its database and artifacts live under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: 2 cores
    env.pop("MLFLOW_TRACKING_URI", None)
    with (folder / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", (folder / "artifacts").as_uri()],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, timeout_s=120)
        yield url
    finally:
        stop_process_group(proc)
