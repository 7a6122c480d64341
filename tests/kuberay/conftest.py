"""Real servers on loopback for the KubeRay/HyperPod tests, each stopped by its own process id.

- a local Ray head (its own process group, :func:`start_local_head` / :func:`stop_local_head`);
- ``emulator.py``: kmock's Kubernetes API with a scripted KubeRay controller on that head;
- ``moto_hyperpod.py``: moto server (SageMaker HyperPod, EKS, S3) plus ``UpdateCluster``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.compute.local_ray import LocalRayHead, start_local_head, stop_local_head

from tests.conftest import REPO
from tests.servers import free_port, stop_process_group, use_kube_emulator, wait_http

HERE = Path(__file__).parent
NAMESPACE = "continuous-learning"
#: KubeRay's own CRDs (v1.7.0) where CI provides them, beside the clone; absent on a fresh clone.
SHARED_CRDS = REPO.parent / "shared" / "kuberay-crds"
CRDS_SKIP_REASON = (
    f"KubeRay's CRDs not provided (CL_KUBERAY_CRDS unset, no {SHARED_CRDS}): the check against KubeRay's own "
    "CRD schema is skipped; the built-in schema and rules (compute/crd_schemas) ran"
)


@pytest.fixture(autouse=True)
def kuberay_crds(monkeypatch: pytest.MonkeyPatch) -> Path | None:
    """KubeRay's CRDs for every test here: ``CL_KUBERAY_CRDS`` if set, else ``../shared/kuberay-crds`` when
    present (set as ``CL_KUBERAY_CRDS``, so the operators validate against them too); else ``None``."""
    if os.environ.get("CL_KUBERAY_CRDS"):
        return Path(os.environ["CL_KUBERAY_CRDS"])
    if (SHARED_CRDS / "ray.io_rayclusters.yaml").is_file():
        monkeypatch.setenv("CL_KUBERAY_CRDS", str(SHARED_CRDS))
        return SHARED_CRDS
    return None


@pytest.fixture
def real_crds(kuberay_crds: Path | None) -> Path:
    """KubeRay's CRDs, or a skip that says what was skipped."""
    if kuberay_crds is None:
        pytest.skip(CRDS_SKIP_REASON)
    return kuberay_crds


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


@contextmanager
def script_server(args: list[str], port: int, ready: str, log: Path, show_log: bool = False) -> Iterator[str]:
    """One of the tests' server scripts (``args``: the script and its options; it listens on loopback
    ``port``, its output goes to ``log``): yields its URL once the path ``ready`` answers; afterwards stops
    its process group and, with ``show_log``, prints the log's tail (what the emulator saw)."""
    proc = _spawn(args, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}{ready}", proc)
        yield url
    finally:
        stop_process_group(proc)
        if show_log:
            print(log.read_text()[-3000:])


@contextmanager
def moto_script_server(script: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server with one of the tests' extensions (``script``) on a free loopback port; yields its URL."""
    port = free_port()
    args = [str(script), "-H", "127.0.0.1", "-p", str(port)]
    with script_server(args, port, "/moto-api/", tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(scope="session")
def ray_head() -> Iterator[LocalRayHead]:
    head = start_local_head(num_cpus=2)
    try:
        yield head
    finally:
        stop_local_head(head, grace_s=8)


class KubeEmulator:
    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, what: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/emulator/{what}",
            data=json.dumps(data or {}).encode() if data is not None else None,
            headers={"Content-Type": "application/json"},
            method="POST" if data is not None else "GET",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.loads(answer.read()))

    def state(self) -> dict[str, Any]:
        return self._call("state")

    def reset(self) -> None:
        self._call("reset", {})

    def inject(self, method: str, plural: str, status: int, times: int = 1) -> None:
        self._call(
            "faults", {"faults": [{"method": method, "plural": plural, "status": status, "times": times}]}
        )

    def configure(self, **settings: Any) -> None:
        self._call("settings", settings)

    def reset_faults(self) -> None:
        self._call("faults", {"clear": True})

    def calls(self) -> list[dict[str, Any]]:
        """Every Kubernetes API call made since the last reset, as RBAC sees it (see emulator.rbac_call)."""
        return list(self._call("calls")["calls"])


@pytest.fixture(scope="session")
def kube_server(ray_head: LocalRayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    port = free_port()
    args = [str(HERE / "emulator.py"), "--port", str(port), "--ray-address", ray_head.dashboard_url]
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with script_server(args, port, "/emulator/state", log, show_log=True) as url:
        yield KubeEmulator(url)


@pytest.fixture
def kube(kube_server: KubeEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeEmulator]:
    """A clean emulator and a Kubernetes connection ``kuberay_test`` to it.

    Afterwards, every Kubernetes API call the test's operators made must be allowed by the shipped Role
    (infra/k8s/continuous-learning.yaml): a call that a real API server would answer 403 fails the test.
    """
    from tests.kuberay.rbac import denied

    kube_server.reset()
    use_kube_emulator(monkeypatch, kube_server.url, "kuberay_test")
    monkeypatch.setenv("CL_KUBERAY__KUBERNETES_CONN_ID", "kuberay_test")
    yield kube_server
    refused = denied(kube_server.calls())
    assert refused == [], f"the shipped Role does not allow: {refused}"


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_script_server(HERE / "moto_hyperpod.py", tmp_path_factory) as url:
        yield url


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """AWS credentials and ``aws_default`` pointing at the moto server; a boto3 SageMaker client."""
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": moto_url}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    return boto3.client("sagemaker", endpoint_url=moto_url, region_name="us-east-1")


def create_hyperpod(client: Any, count: int = 0, node_status: str = "Running", **group: Any) -> str:
    name = f"hp-{uuid.uuid4().hex[:8]}"
    client.create_cluster(
        ClusterName=name,
        InstanceGroups=[
            {
                "InstanceGroupName": "gpu-workers",
                "InstanceType": "ml.p5.48xlarge",
                "InstanceCount": count,
                "LifeCycleConfig": {
                    "SourceS3Uri": "s3://sagemaker-lifecycle/scripts",
                    "OnCreate": "on_create.sh",
                },
                "ExecutionRole": "arn:aws:iam::123456789012:role/hyperpod",
                "ThreadsPerCore": 1,
                **group,
            },
        ],
        VpcConfig={"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
        Tags=[{"Key": "emulator:new-node-status", "Value": node_status}],
    )
    return name


def group_counts(client: Any, name: str) -> tuple[int, int]:
    group = client.describe_cluster(ClusterName=name)["InstanceGroups"][0]
    return int(group["CurrentCount"]), int(group["TargetCount"])
