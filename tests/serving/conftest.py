"""Real servers on loopback for the serving hand-off, each stopped by its own process id:
``moto_serving.py`` (moto: SageMaker, CloudWatch, plus UpdateEndpoint) and ``k8s_emulator.py`` (kmock
with Deployments); an AWS and a Kubernetes connection pointing at them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.kuberay.conftest import KubeEmulator
from tests.servers import free_port, stop_process_group, wait_http

HERE = Path(__file__).parent
SERVING_RBAC = REPO / "infra" / "k8s" / "serving.yaml"


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


@pytest.fixture(scope="session")
def serving_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = _spawn([str(HERE / "moto_serving.py"), "-H", "127.0.0.1", "-p", str(port)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


def update_requests(url: str) -> list[dict[str, Any]]:
    """The UpdateEndpoint requests moto received (the extension's record)."""
    with urllib.request.urlopen(f"{url}/moto-serving/requests", timeout=10) as answer:
        return list(json.loads(answer.read())["requests"])


@pytest.fixture
def aws_serving(serving_moto: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """AWS credentials and ``aws_default`` at moto (no botocore retries: an injected fault surfaces)."""
    urllib.request.urlopen(
        urllib.request.Request(f"{serving_moto}/moto-api/reset", method="POST"), timeout=10
    )
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": serving_moto,
                      "config_kwargs": {"retries": {"total_max_attempts": 1}}}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    return serving_moto


@pytest.fixture(scope="session")
def serving_kube_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    port = free_port()
    log = tmp_path_factory.mktemp("k8s") / "emulator.log"
    proc = _spawn([str(HERE / "k8s_emulator.py"), "--port", str(port)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/emulator/state", proc)
        yield KubeEmulator(f"http://127.0.0.1:{port}")
    finally:
        stop_process_group(proc)
        print(log.read_text()[-3000:])


@pytest.fixture
def serving_kube(
    serving_kube_server: KubeEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KubeEmulator]:
    """A clean emulator, a Kubernetes connection ``serving_test`` to it; afterwards every call the operators
    made must be allowed by the shipped serving Role (infra/k8s/serving.yaml)."""
    from tests.kuberay.rbac import allowed, describe, shipped_rules

    serving_kube_server.reset()
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": serving_kube_server.url}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}],
    }  # fmt: skip
    conn = {"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kubeconfig)}}
    monkeypatch.setenv("AIRFLOW_CONN_SERVING_TEST", json.dumps(conn))
    monkeypatch.setenv("CL_SERVING__KUBERNETES_CONN_ID", "serving_test")
    yield serving_kube_server
    rules = shipped_rules(SERVING_RBAC)
    refused = [describe(c) for c in serving_kube_server.calls() if not allowed(c, rules)]
    assert refused == [], f"the shipped serving Role does not allow: {refused}"
