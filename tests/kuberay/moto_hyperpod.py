"""moto server with the SageMaker HyperPod ``UpdateCluster`` call moto lacks (a small extension).

Run as ``python moto_hyperpod.py -H 127.0.0.1 -p PORT``. Scaling is gradual, like HyperPod's:
after ``update_cluster`` the group's ``TargetCount`` changes at once and each later
``describe_cluster`` moves ``CurrentCount`` one node closer, adding nodes ``Pending`` that turn
``Running`` on the next call. A cluster tagged ``emulator:new-node-status=<Status>`` adds its new
nodes with that status instead (e.g. ``Failure``), to test unhealthy nodes.
"""

from __future__ import annotations

import sys
from typing import Any

from moto.sagemaker.models import ClusterNode, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse


def _new_node_status(cluster: Any) -> str:
    for tag in cluster.tags or []:
        if tag.get("Key") == "emulator:new-node-status":
            return str(tag["Value"])
    return "Running"


def update_cluster(
    self: SageMakerModelBackend, cluster_name: str, instance_groups: list[dict[str, Any]]
) -> str:
    cluster = self.clusters[cluster_name.split("/")[-1]]
    for change in instance_groups:
        group = next(
            g for g in cluster.instance_groups if g["InstanceGroupName"] == change["InstanceGroupName"]
        )
        group["TargetCount"] = int(change["InstanceCount"])
    cluster.status = "Updating"
    return str(cluster.arn)


def _step(self: SageMakerModelBackend, cluster_name: str) -> None:
    cluster = self.clusters.get(cluster_name.split("/")[-1])
    if cluster is None:
        return
    for node in cluster.nodes.values():
        if node.status == "Pending":
            node.status = _new_node_status(cluster)
    for group in cluster.instance_groups:
        name = group["InstanceGroupName"]
        nodes = sorted(n for n, node in cluster.nodes.items() if node.instance_group_name == name)
        if group["CurrentCount"] < group["TargetCount"]:
            node_id = f"{name}-{len(nodes)}"
            node = ClusterNode(
                region_name=self.region_name, account_id=self.account_id, cluster_name=cluster.cluster_name,
                instance_group_name=name, instance_type=group["InstanceType"],
                life_cycle_config=group["LifeCycleConfig"], execution_role=group["ExecutionRole"],
                node_id=node_id, threads_per_core=group.get("ThreadsPerCore"),
            )  # fmt: skip
            node.status = "Pending"
            cluster.nodes[node_id] = node
            group["CurrentCount"] += 1
        elif group["CurrentCount"] > group["TargetCount"]:
            cluster.nodes.pop(nodes[-1], None)
            group["CurrentCount"] -= 1
    if all(g["CurrentCount"] == g["TargetCount"] for g in cluster.instance_groups):
        cluster.status = "InService"


_original_describe = SageMakerModelBackend.describe_cluster


def describe_cluster(self: SageMakerModelBackend, cluster_name: str) -> dict[str, Any]:
    _step(self, cluster_name)
    return _original_describe(self, cluster_name)


_original_list_nodes = SageMakerModelBackend.list_cluster_nodes


def list_cluster_nodes(self: SageMakerModelBackend, cluster_name: str, *args: Any, **kwargs: Any) -> Any:
    _step(self, cluster_name)
    return _original_list_nodes(self, cluster_name, *args, **kwargs)


def _update_cluster_response(self: SageMakerResponse) -> Any:
    from moto.core.responses import ActionResult

    arn = self.sagemaker_backend.update_cluster(
        cluster_name=self._get_param("ClusterName"), instance_groups=self._get_param("InstanceGroups")
    )
    return ActionResult({"ClusterArn": arn})


SageMakerModelBackend.update_cluster = update_cluster  # type: ignore[attr-defined]
SageMakerModelBackend.describe_cluster = describe_cluster  # type: ignore[method-assign]
SageMakerModelBackend.list_cluster_nodes = list_cluster_nodes  # type: ignore[method-assign]
SageMakerResponse.update_cluster = _update_cluster_response  # type: ignore[attr-defined]

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
