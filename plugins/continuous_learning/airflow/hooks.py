"""Hooks: each owns its connection and its clients; operators and triggers never build clients.

- :class:`SageMakerHyperPodHook`: the SageMaker API (HyperPod clusters) through the Amazon
  provider's AWS connection, with the HyperPod waiters of ``compute/waiters/sagemaker.json``.
- :class:`KubeRayHook`: a Kubernetes client for the HyperPod cluster's EKS cluster (the Amazon
  provider's EKS token mechanism), or for an explicit Kubernetes connection (in-cluster too).
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from continuous_learning.compute import hyperpod
from continuous_learning.compute.kuberay import KubeRayClient

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.sdk import BaseHook


class SageMakerHyperPodHook(AwsBaseHook):
    """Interact with SageMaker HyperPod clusters: describe, list nodes, scale an instance group.

    Additional arguments (such as ``aws_conn_id``) are passed to
    :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "sagemaker"
        super().__init__(*args, **kwargs)

    @property
    def waiter_path(self) -> os.PathLike[str] | None:
        return hyperpod.WAITERS_PATH

    def describe_cluster(self, cluster_name: str) -> dict[str, Any]:
        return dict(self.conn.describe_cluster(ClusterName=cluster_name))

    def list_cluster_nodes(
        self, cluster_name: str, instance_group: str | None = None
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"ClusterName": cluster_name}
        if instance_group:
            kwargs["InstanceGroupNameContains"] = instance_group
        nodes: list[dict[str, Any]] = []
        while True:
            page = self.conn.list_cluster_nodes(**kwargs)
            nodes.extend(page.get("ClusterNodeSummaries", []))
            if not page.get("NextToken"):
                return nodes
            kwargs["NextToken"] = page["NextToken"]

    def set_instance_count(self, cluster_name: str, instance_group: str, count: int) -> None:
        describe = self.describe_cluster(cluster_name)
        self.log.info(
            "HyperPod %s: setting instance group %s to %d nodes", cluster_name, instance_group, count
        )
        self.conn.update_cluster(**hyperpod.update_request(describe, instance_group, count))

    def wait_for_capacity(
        self, cluster_name: str, instance_group: str, delay_s: float, max_attempts: int
    ) -> None:
        """Blocking wait with the same waiter models as :class:`HyperPodCapacityTrigger`."""
        from botocore.exceptions import WaiterError

        for name in (hyperpod.AT_TARGET_WAITER, hyperpod.NODES_RUNNING_WAITER):
            try:
                self.get_waiter(name).wait(
                    **hyperpod.waiter_args(name, cluster_name, instance_group),
                    WaiterConfig={"Delay": delay_s, "MaxAttempts": max_attempts},
                )
            except WaiterError:
                self.check_nodes_healthy(cluster_name, instance_group)  # the clearer error, when it applies
                raise
        self.check_nodes_healthy(cluster_name, instance_group)

    def check_nodes_healthy(self, cluster_name: str, instance_group: str) -> None:
        bad = hyperpod.unhealthy_nodes(self.list_cluster_nodes(cluster_name, instance_group), instance_group)
        if bad:
            raise hyperpod.CapacityError(
                f"HyperPod {cluster_name}/{instance_group}: {len(bad)} node(s) not healthy: {', '.join(bad)}. "
                "Check the nodes' health (HyperPod replaces failed nodes when auto-recovery is on) and retry."
            )


class KubeRayHook(BaseHook):
    """Kubernetes API access for KubeRay objects.

    :param kubernetes_conn_id: an explicit Kubernetes connection (``in_cluster`` in its extras for
        in-cluster config). When set, it wins.
    :param eks_cluster_name: else, the EKS cluster (name or ARN) reached with the Amazon provider's
        EKS token mechanism through ``aws_conn_id``.
    :param aws_conn_id: AWS connection for the EKS token.
    :param region_name: AWS region (default: the connection's).
    :param retries: how often a 409/429/5xx answer is retried.
    """

    conn_name_attr = "kubernetes_conn_id"
    hook_name = "KubeRay"

    def __init__(
        self,
        kubernetes_conn_id: str | None = None,
        eks_cluster_name: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        retries: int = 5,
    ) -> None:
        super().__init__()
        if not kubernetes_conn_id and not eks_cluster_name:
            raise ValueError("KubeRayHook needs kubernetes_conn_id or eks_cluster_name")
        self.kubernetes_conn_id = kubernetes_conn_id
        self.eks_cluster_name = eks_cluster_name.split("/")[-1] if eks_cluster_name else None
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.retries = retries

    def get_conn(self) -> Any:
        """A ``kubernetes.client.ApiClient``."""
        if self.kubernetes_conn_id:
            from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

            return KubernetesHook(conn_id=self.kubernetes_conn_id).get_conn()
        return self._eks_api_client()

    def _eks_api_client(self) -> Any:
        from kubernetes import client, config

        from airflow.providers.amazon.aws.hooks.eks import EksHook

        assert self.eks_cluster_name is not None
        eks = EksHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        configuration = client.Configuration()
        with eks.generate_config_file_with_credentials(self.eks_cluster_name, None) as (kubeconfig, _):
            # Runs the token exec plugin now; the token is valid ~14 minutes, so clients are short-lived.
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return client.ApiClient(configuration)

    @cached_property
    def api_client(self) -> Any:
        return self.get_conn()

    def kuberay(self) -> KubeRayClient:
        from kubernetes import client

        return KubeRayClient(
            client.CustomObjectsApi(self.api_client), client.CoreV1Api(self.api_client), retries=self.retries
        )
