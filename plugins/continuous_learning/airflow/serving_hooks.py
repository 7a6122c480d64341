"""Hooks and triggers of the serving hand-off: each hook owns its connection and clients.

- :class:`SageMakerEndpointHook`: the Amazon provider's ``SageMakerHook`` with idempotent Model and
  EndpointConfig creation, the endpoint's description, and the CloudWatch alarms of the canary.
- :class:`ServingKubernetesHook`: the Kubernetes API (apps/v1 Deployments, pods' proxy) through the
  same connection rules as ``KubeRayHook`` (an explicit connection, or the EKS cluster's token).
- :class:`SageMakerEndpointTrigger` / :class:`DeploymentRolloutTrigger`: the deferrable waits; each
  polls with the synchronous client in a worker thread (``poll_once``, also the blocking wait's step).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from functools import cached_property
from typing import Any

from continuous_learning.airflow.hooks import KubeRayHook

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.triggers.base import BaseTrigger, TriggerEvent


def _missing(exc: Exception) -> bool:
    error = getattr(exc, "response", {}).get("Error", {})
    return (
        error.get("Code") in ("ValidationException", "ResourceNotFound")
        and "find" in str(error.get("Message", "")).lower()
    )


class SageMakerEndpointHook(SageMakerHook):
    """SageMaker endpoints and the CloudWatch alarms that guard them (same AWS connection)."""

    @cached_property
    def cloudwatch(self) -> Any:
        return AwsBaseHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, client_type="cloudwatch"
        ).conn

    def describe_endpoint_or_none(self, name: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(self.conn.describe_endpoint(EndpointName=name))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def ensure_model(self, request: dict[str, Any]) -> bool:
        """Create the Model unless a try before this one did; True when created now."""
        from botocore.exceptions import ClientError

        try:
            self.conn.describe_model(ModelName=request["ModelName"])
            return False
        except ClientError as exc:
            if not _missing(exc):
                raise
        self.conn.create_model(**request)
        return True

    def ensure_endpoint_config(self, request: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.conn.describe_endpoint_config(EndpointConfigName=request["EndpointConfigName"])
            return False
        except ClientError as exc:
            if not _missing(exc):
                raise
        self.conn.create_endpoint_config(**request)
        return True

    def alarms(self, names: Sequence[str]) -> list[dict[str, Any]]:
        if not names:
            return []
        found: list[dict[str, Any]] = []
        for start in range(0, len(names), 100):
            page = self.cloudwatch.describe_alarms(AlarmNames=list(names[start : start + 100]))
            found += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
        return found

    def wait_in_service(self, name: str, delay_s: float, max_attempts: int) -> None:
        self.conn.get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig={"Delay": delay_s, "MaxAttempts": max_attempts}
        )


class ServingKubernetesHook(KubeRayHook):
    """The Kubernetes API for the serving Deployment (apps/v1) and its pods."""

    hook_name = "Serving Kubernetes"

    def apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api_client)

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            answer = self.apps().read_namespaced_deployment(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        import json

        return dict(json.loads(answer.data))

    def apply_deployment(self, manifest: dict[str, Any], current: dict[str, Any] | None) -> None:
        """Create the Deployment, or make ``current`` into ``manifest`` with one JSON merge patch."""
        from continuous_learning.serving.sglang import apply_patch

        meta = manifest["metadata"]
        if current is None:
            self.apps().create_namespaced_deployment(meta["namespace"], manifest)
            return
        self.apps().patch_namespaced_deployment(meta["name"], meta["namespace"], apply_patch(current, manifest),
                                                _content_type="application/merge-patch+json")  # fmt: skip

    def ready_pods(self, namespace: str, selector: dict[str, str]) -> list[str]:
        label = ",".join(f"{k}={v}" for k, v in selector.items())
        pods = self.core().list_namespaced_pod(namespace, label_selector=label).items
        return sorted(
            p.metadata.name for p in pods
            if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        )  # fmt: skip

    def post_to_pod(self, namespace: str, pod: str, port: int, path: str, body: dict[str, Any]) -> Any:
        """POST JSON to a pod's port through the API server's proxy (``pods/proxy``); the decoded answer."""
        import json

        answer = self.api_client.call_api(
            f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{path}", "POST",
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
        )  # fmt: skip
        return json.loads(answer.data or b"null")


class PollingTrigger(BaseTrigger):
    """A wait that polls the synchronous ``poll_once`` in a worker thread every ``poll_s`` seconds until it
    answers; an exception ends the wait as ``timeout`` with its message (the operator re-reads the state)."""

    poll_s: float

    def poll_once(self) -> dict[str, Any] | None:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                answer = await asyncio.to_thread(self.poll_once)
            except Exception as exc:
                yield TriggerEvent({"status": "timeout", "message": f"{type(exc).__name__}: {exc}"})
                return
            if answer is not None:
                yield TriggerEvent(answer)
                return
            await asyncio.sleep(self.poll_s)


class SageMakerEndpointTrigger(PollingTrigger):
    """Wait until the endpoint leaves its transitional states and ``bake_until`` (epoch s) has passed;
    at once when it fails or one of ``alarms`` is in ALARM. Events: ``settled``, ``alarm``, ``timeout``,
    ``error`` (the operator decides from a fresh description what they mean)."""

    def __init__(self, *, endpoint_name: str, alarms: list[str], bake_until: float, deadline: float,
                 poll_s: float, aws_conn_id: str | None, region_name: str | None,
                 carry: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.carry = carry or {}
        self.endpoint_name, self.alarms, self.bake_until = endpoint_name, alarms, bake_until
        self.deadline, self.poll_s = deadline, poll_s
        self.aws_conn_id, self.region_name = aws_conn_id, region_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"endpoint_name": self.endpoint_name, "alarms": self.alarms, "bake_until": self.bake_until,
                 "deadline": self.deadline, "poll_s": self.poll_s, "aws_conn_id": self.aws_conn_id,
                 "region_name": self.region_name, "carry": self.carry})  # fmt: skip

    def poll_once(self) -> dict[str, Any] | None:
        """One look; the event (with ``carry``: the operator's state, handed back) or None."""
        answer = self._look()
        return None if answer is None else {**answer, "carry": self.carry}

    def _look(self) -> dict[str, Any] | None:
        from continuous_learning.serving import sagemaker

        hook = SageMakerEndpointHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        endpoint = hook.describe_endpoint_or_none(self.endpoint_name) or {}
        status = str(endpoint.get("EndpointStatus"))
        firing = sagemaker.firing(hook.alarms(self.alarms), self.alarms)
        if firing:
            return {"status": "alarm", "alarms": firing, "endpoint_status": status}
        settled = not (status in sagemaker.TRANSITIONAL or status.startswith("UpdateRollback"))
        if settled and (status == "Failed" or time.time() >= self.bake_until):
            return {"status": "settled", "endpoint_status": status}
        if time.time() > self.deadline:
            return {"status": "timeout", "message": f"endpoint {self.endpoint_name} still {status}"}
        return None


class DeploymentRolloutTrigger(PollingTrigger):
    """Wait for a Deployment's rollout: ``ready``, ``failed`` (progress deadline exceeded), ``gone`` or
    ``timeout`` (``deadline``, epoch s)."""

    def __init__(self, *, hook_kwargs: dict[str, Any], namespace: str, name: str, deadline: float,
                 poll_s: float) -> None:  # fmt: skip
        super().__init__()
        self.hook_kwargs, self.namespace, self.name = hook_kwargs, namespace, name
        self.deadline, self.poll_s = deadline, poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"hook_kwargs": self.hook_kwargs, "namespace": self.namespace, "name": self.name,
                 "deadline": self.deadline, "poll_s": self.poll_s})  # fmt: skip

    def poll_once(self) -> dict[str, Any] | None:
        from continuous_learning.serving.sglang import rollout_phase

        deployment = ServingKubernetesHook(**self.hook_kwargs).get_deployment(self.namespace, self.name)
        if deployment is None:
            return {"status": "gone"}
        phase = rollout_phase(deployment)
        if phase != "progressing":
            return {"status": phase}
        if time.time() > self.deadline:
            return {"status": "timeout"}
        return None
