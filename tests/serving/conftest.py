"""Real servers on loopback for the serving hand-off, each stopped by its own process id:
``moto_serving.py`` (moto: SageMaker, CloudWatch, plus UpdateEndpoint) and ``k8s_emulator.py`` (kmock
with Deployments); an AWS and a Kubernetes connection pointing at them."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.kuberay.conftest import KubeEmulator, moto_script_server, script_server
from tests.servers import free_port, use_kube_emulator

HERE = Path(__file__).parent
SERVING_RBAC = REPO / "infra" / "k8s" / "serving.yaml"


@pytest.fixture(scope="session")
def serving_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_script_server(HERE / "moto_serving.py", tmp_path_factory) as url:
        yield url


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
    args = [str(HERE / "k8s_emulator.py"), "--port", str(port)]
    log = tmp_path_factory.mktemp("k8s") / "emulator.log"
    with script_server(args, port, "/emulator/state", log, show_log=True) as url:
        yield KubeEmulator(url)


@pytest.fixture
def serving_kube(
    serving_kube_server: KubeEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KubeEmulator]:
    """A clean emulator, a Kubernetes connection ``serving_test`` to it; afterwards every call the operators
    made must be allowed by the shipped serving Role (infra/k8s/serving.yaml)."""
    from tests.kuberay.rbac import allowed, describe, shipped_rules

    serving_kube_server.reset()
    use_kube_emulator(monkeypatch, serving_kube_server.url, "serving_test")
    monkeypatch.setenv("CL_SERVING__KUBERNETES_CONN_ID", "serving_test")
    yield serving_kube_server
    rules = shipped_rules(SERVING_RBAC)
    refused = [describe(c) for c in serving_kube_server.calls() if not allowed(c, rules)]
    assert refused == [], f"the shipped serving Role does not allow: {refused}"
