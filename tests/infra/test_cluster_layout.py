"""The Ray cluster's layout against the infrastructure: the head fits the EKS system node group that
Terraform provisions, and job drivers land on the GPU workers (the chart's reference manifests)."""

from __future__ import annotations

import json
import shlex
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import INFRA, REPO
from tests.infra.helpers import TF, blocks, docs, hcl, render

#: Instance types a system node group may use: (vCPUs, memory GiB, max pods with the VPC CNI's default
#: ENI/IP limits). From the EC2 instance-type documentation and EKS's eni-max-pods.txt.
INSTANCE_TYPES = {
    "m7i.large": (2, 8, 29),
    "m7i.xlarge": (4, 16, 58),
    "m7i.2xlarge": (8, 32, 58),
    "m7i.4xlarge": (16, 64, 234),
    "m6i.xlarge": (4, 16, 58),
    "m6i.2xlarge": (8, 32, 58),
    "m5.xlarge": (4, 16, 58),
    "m5.2xlarge": (8, 32, 58),
}
#: What the kubelet reports as memory capacity: the nominal size less the kernel's and firmware's share.
MEMORY_CAPACITY_SHARE = Decimal("0.95")
#: Requests of what runs on every system node besides the head: the DaemonSets (aws-node, kube-proxy,
#: eks-pod-identity-agent, the FSx CSI node plugin), one CoreDNS replica and the KubeRay operator (its
#: requests come from its values file below).
DAEMONSETS_CPU_M, DAEMONSETS_MEMORY_MI = 250, 512
COREDNS_CPU_M, COREDNS_MEMORY_MI = 100, 70


def allocatable(instance_type: str) -> tuple[int, int]:
    """(millicores, MiB) the kubelet of an EKS AL2023 node offers pods: capacity less kube-reserved (CPU: 6%
    of the first core, 1% of the second, 0.5% of cores 3-4, 0.25% beyond; memory: 255 MiB + 11 MiB per
    pod) and the 100 MiB hard-eviction threshold."""
    cpus, memory_gib, max_pods = INSTANCE_TYPES[instance_type]
    cores = [60, 10, 5, 5] + [2.5] * max(0, cpus - 4)
    cpu_m = cpus * 1000 - int(sum(cores[:cpus]))
    memory_mi = int(memory_gib * 1024 * MEMORY_CAPACITY_SHARE) - (255 + 11 * max_pods) - 100
    return cpu_m, memory_mi


def quantity(value: Any) -> Decimal:
    text = str(value)
    units = {"m": Decimal("0.001"), "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
             "Ti": Decimal(2**40), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9)}  # fmt: skip
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * units[suffix]
    return Decimal(text)


def system_instance_types() -> list[str]:
    """The system node group's instance types: what envs/prod passes to the eks module, else its default."""
    eks_default = blocks(hcl(TF / "modules" / "eks"), "variable")["system_node_instance_types"]["default"]
    env = hcl(TF / "envs" / "prod")
    passed = blocks(env, "module")["eks"].get("system_node_instance_types")
    if passed is None:
        return list(eks_default)
    name = str(passed).removeprefix("${var.").removesuffix("}")
    return list(blocks(env, "variable")[name]["default"])


def head_sizes() -> dict[str, tuple[str, str]]:
    from continuous_learning.config import KubeRaySettings

    defaults = KubeRaySettings()
    prod = tomllib.loads(
        (REPO / "plugins" / "continuous_learning" / "environments" / "prod.toml").read_text()
    )
    chart = yaml.safe_load((INFRA / "helm" / "continuous-learning" / "values.yaml").read_text())
    return {
        "KubeRaySettings defaults": (defaults.head_cpu, defaults.head_memory),
        "prod.toml": (prod["kuberay"]["head_cpu"], prod["kuberay"]["head_memory"]),
        "chart values": (chart["rayCluster"]["head"]["cpu"], chart["rayCluster"]["head"]["memory"]),
    }


def head_fits(instance_type: str, cpu: str, memory: str) -> bool:
    operator = yaml.safe_load((INFRA / "helm" / "values" / "kuberay-operator.yaml").read_text())
    requests = operator["resources"]["requests"]
    free_cpu_m, free_memory_mi = allocatable(instance_type)
    free_cpu_m -= DAEMONSETS_CPU_M + COREDNS_CPU_M + int(quantity(requests["cpu"]) * 1000)
    free_memory_mi -= DAEMONSETS_MEMORY_MI + COREDNS_MEMORY_MI + int(quantity(requests["memory"]) / 2**20)
    return quantity(cpu) * 1000 <= free_cpu_m and quantity(memory) / 2**20 <= free_memory_mi


def test_allocatable_matches_eks_for_a_known_node() -> None:
    cpu_m, memory_mi = allocatable("m7i.xlarge")
    assert cpu_m == 3920  # what EKS reports for a 4-vCPU node
    assert 14_000 < memory_mi < 15_000  # EKS reports about 14.5-15 GiB allocatable for 16 GiB


@pytest.mark.parametrize("source", ["KubeRaySettings defaults", "prod.toml", "chart values"])
def test_ray_head_fits_a_system_node(source: str) -> None:
    types = system_instance_types()
    assert types and all(t in INSTANCE_TYPES for t in types), f"add {types} to INSTANCE_TYPES"
    cpu, memory = head_sizes()[source]
    for instance_type in types:  # a managed node group may launch any of its types
        assert head_fits(instance_type, cpu, memory), (
            f"{source}: a head of {cpu} CPU / {memory} does not fit a {instance_type} system node "
            f"(allocatable {allocatable(instance_type)} m/MiB, less the system pods)"
        )


def test_the_head_that_was_shipped_would_not_have_fit() -> None:
    assert not head_fits("m7i.xlarge", "8", "32Gi")


def _offers(group: dict[str, Any]) -> dict[str, float]:
    params = group.get("rayStartParams") or {}
    offered = {"GPU": float(params.get("num-gpus", 0)), "CPU": float(params.get("num-cpus", 1))}
    if params.get("resources"):
        offered.update(json.loads(shlex.split(params["resources"])[0]))
    return offered


@pytest.mark.parametrize(
    "variant", [[], ["--set", "rayJob.ephemeralCluster=true", "--set", "rayCluster.enabled=false"]]
)
def test_chart_rayjob_driver_runs_on_a_gpu_worker_not_the_head(variant: list[str], tmp_path: Path) -> None:
    rendered = docs(render(*variant))
    job = next(d for d in rendered if d["kind"] == "RayJob")
    cluster = (
        job["spec"].get("rayClusterSpec") or next(d for d in rendered if d["kind"] == "RayCluster")["spec"]
    )
    need = json.loads(job["spec"]["entrypointResources"])
    head, workers = cluster["headGroupSpec"], cluster["workerGroupSpecs"]
    assert _offers(head)["CPU"] == 0 and _offers(head)["GPU"] == 0
    assert not all(_offers(head).get(k, 0) >= v for k, v in need.items())
    assert all(
        all(_offers(w).get(k, 0) >= v for k, v in need.items()) and _offers(w)["GPU"] > 0 for w in workers
    )
