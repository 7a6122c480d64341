"""Triggers: the deferrable waits of the HyperPod/KubeRay operators.

The HyperPod wait evaluates the botocore waiter model in ``compute/waiters/sagemaker.json`` (the
same model the blocking wait uses). The KubeRay waits poll
the Kubernetes API with the synchronous client in a worker thread (``asyncio.to_thread``), so the
triggerer's event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from continuous_learning.airflow.hooks import KubeRayHook, SageMakerHyperPodHook
from continuous_learning.compute import hyperpod
from continuous_learning.compute.kuberay import RAYCLUSTERS, RAYJOBS, cluster_phase, job_phase

from airflow.triggers.base import BaseTrigger, TriggerEvent


class HyperPodCapacityTrigger(BaseTrigger):
    """Wait until a HyperPod instance group is at its target count, or its nodes are Running.

    It evaluates the same botocore waiter model as the blocking wait (``compute/waiters/sagemaker.json``),
    one attempt at a time in a worker thread, sleeping on the event loop in between. (The Amazon
    provider's ``AwsBaseWaiterTrigger`` does the same with aiobotocore, which this deployment does
    not install; its event shape is kept: ``{"status": "success"|"error", "message", "cluster_name"}``.)

    :param cluster_name: HyperPod cluster name or ARN.
    :param instance_group: the instance group.
    :param waiter_name: ``hyperpod_instance_groups_at_target`` or ``hyperpod_nodes_running``.
    :param waiter_delay: seconds between polls.
    :param waiter_max_attempts: polls before giving up.
    :param aws_conn_id: AWS connection.
    :param region_name: AWS region.
    """

    def __init__(
        self,
        *,
        cluster_name: str,
        instance_group: str,
        waiter_name: str = hyperpod.AT_TARGET_WAITER,
        waiter_delay: int = 30,
        waiter_max_attempts: int = 120,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
    ) -> None:
        super().__init__()
        self.cluster_name = cluster_name
        self.instance_group = instance_group
        self.waiter_name = waiter_name
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"cluster_name": self.cluster_name, "instance_group": self.instance_group,
             "waiter_name": self.waiter_name, "waiter_delay": self.waiter_delay,
             "waiter_max_attempts": self.waiter_max_attempts, "aws_conn_id": self.aws_conn_id,
             "region_name": self.region_name},
        )  # fmt: skip

    def _attempt(self, hook: SageMakerHyperPodHook) -> str:
        """One waiter evaluation: ``success``, ``retry`` or ``failure``."""
        from botocore.exceptions import WaiterError

        args = hyperpod.waiter_args(self.waiter_name, self.cluster_name, self.instance_group)
        try:
            hook.get_waiter(self.waiter_name).wait(**args, WaiterConfig={"Delay": 1, "MaxAttempts": 1})
        except WaiterError as exc:
            return "failure" if "terminal failure" in str(exc) else "retry"
        return "success"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = SageMakerHyperPodHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        for attempt in range(1, self.waiter_max_attempts + 1):
            try:
                outcome = await asyncio.to_thread(self._attempt, hook)
            except Exception as exc:
                yield TriggerEvent(
                    {"status": "error", "message": str(exc), "cluster_name": self.cluster_name}
                )
                return
            self.log.info("HyperPod %s/%s %s: %s (attempt %d)", self.cluster_name, self.instance_group,
                          self.waiter_name, outcome, attempt)  # fmt: skip
            if outcome == "success":
                yield TriggerEvent({"status": "success", "cluster_name": self.cluster_name})
                return
            if outcome == "failure":
                yield TriggerEvent({"status": "error", "cluster_name": self.cluster_name,
                                    "message": f"{self.waiter_name}: terminal failure state"})  # fmt: skip
                return
            await asyncio.sleep(self.waiter_delay)
        yield TriggerEvent({"status": "error", "cluster_name": self.cluster_name,
                            "message": f"{self.waiter_name}: not reached after {self.waiter_max_attempts} polls"})  # fmt: skip


class _KubeRayTrigger(BaseTrigger):
    def __init__(self, *, hook_kwargs: dict[str, Any], namespace: str, name: str, poll_s: float) -> None:
        super().__init__()
        self.hook_kwargs = hook_kwargs
        self.namespace = namespace
        self.name = name
        self.poll_s = poll_s

    def _client(self) -> Any:
        return KubeRayHook(**self.hook_kwargs).kuberay()

    async def _get(self, client: Any, plural: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(client.get, plural, self.namespace, self.name)


class RayClusterReadyTrigger(_KubeRayTrigger):
    """Fire when the RayCluster's ``.status.state`` is ``ready``; or ``failed``/``gone``/``timeout``.

    :param hook_kwargs: the ``KubeRayHook`` arguments (``ClusterRef.hook``, a ``KubeRayHookArgs``).
    :param namespace: the cluster's namespace.
    :param name: the RayCluster's name.
    :param deadline: epoch seconds after which the wait ends with ``timeout``.
    :param poll_s: seconds between polls.
    """

    def __init__(self, *, deadline: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"hook_kwargs": self.hook_kwargs, "namespace": self.namespace, "name": self.name,
             "poll_s": self.poll_s, "deadline": self.deadline},
        )  # fmt: skip

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await asyncio.to_thread(self._client)
        last = None
        while True:
            try:
                obj = await self._get(client, RAYCLUSTERS)
            except Exception as exc:
                yield TriggerEvent({"status": "error", "name": self.name, "message": str(exc)})
                return
            if obj is None:
                yield TriggerEvent({"status": "gone", "name": self.name, "message": "RayCluster was deleted"})
                return
            phase = cluster_phase(obj)
            state = (obj.get("status") or {}).get("state")
            if state != last:
                self.log.info("RayCluster %s/%s: state %s", self.namespace, self.name, state or "(none yet)")
                last = state
            if phase == "ready":
                yield TriggerEvent(
                    {"status": "ready", "name": self.name, "cluster_status": obj.get("status")}
                )
                return
            if phase == "failed":
                reason = (obj.get("status") or {}).get("reason")
                yield TriggerEvent({"status": "failed", "name": self.name, "message": str(reason)})
                return
            if time.time() > self.deadline:
                yield TriggerEvent({"status": "timeout", "name": self.name, "message": f"state {state}"})
                return
            await asyncio.sleep(self.poll_s)


class RayJobTrigger(_KubeRayTrigger):
    """Wait for a RayJob to finish, streaming its driver log into the task log.

    Two clocks: the job must start running before ``startup_deadline`` (epoch seconds), then finish
    within ``run_timeout_s`` of its start. Events: ``succeeded``, ``failed``, ``stopped``,
    ``startup_timeout``, ``run_timeout``, ``gone``, ``error``.

    :param hook_kwargs: the ``KubeRayHook`` arguments (``ClusterRef.hook``, a ``KubeRayHookArgs``).
    :param namespace: the RayJob's namespace.
    :param name: the RayJob's name.
    :param cluster_name: the RayCluster the job runs on (for the driver log), if known.
    :param submission_id: the Ray job submission id (``spec.jobId``).
    :param startup_deadline: epoch seconds.
    :param run_timeout_s: seconds from the job's start.
    :param poll_s: seconds between polls.
    """

    def __init__(
        self,
        *,
        cluster_name: str | None,
        submission_id: str,
        startup_deadline: float,
        run_timeout_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.submission_id = submission_id
        self.startup_deadline = startup_deadline
        self.run_timeout_s = run_timeout_s
        self._log_offset = 0  # characters of the driver log already printed

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"hook_kwargs": self.hook_kwargs, "namespace": self.namespace, "name": self.name,
             "poll_s": self.poll_s, "cluster_name": self.cluster_name, "submission_id": self.submission_id,
             "startup_deadline": self.startup_deadline, "run_timeout_s": self.run_timeout_s},
        )  # fmt: skip

    async def _stream_logs(self, client: Any, cluster: str | None) -> str:
        if not cluster:
            return ""
        try:
            logs: str = await asyncio.to_thread(client.job_logs, self.namespace, cluster, self.submission_id)
        except Exception as exc:  # the log is a convenience: never fail the wait for it
            self.log.debug("driver log not available yet: %s", exc)
            return ""
        if len(logs) > self._log_offset:
            for line in logs[self._log_offset :].splitlines():
                self.log.info("[ray job %s] %s", self.submission_id, line)
            self._log_offset = len(logs)
        return logs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await asyncio.to_thread(self._client)
        started: float | None = None
        last = None
        while True:
            try:
                obj = await self._get(client, RAYJOBS)
            except Exception as exc:
                yield self._event("error", str(exc))
                return
            if obj is None:
                yield self._event("gone", "the RayJob was deleted")
                return
            status = obj.get("status") or {}
            phase = job_phase(obj)
            cluster = self.cluster_name or status.get("rayClusterName")
            if (phase, status.get("jobDeploymentStatus")) != last:
                self.log.info("RayJob %s: job %s, deployment %s", self.name, status.get("jobStatus"),
                              status.get("jobDeploymentStatus"))  # fmt: skip
                last = (phase, status.get("jobDeploymentStatus"))
            logs = await self._stream_logs(client, cluster) if phase != "pending" else ""
            now = time.time()
            if phase in ("succeeded", "failed", "stopped"):
                yield self._event(phase, str(status.get("message") or ""), logs[-4000:])
                return
            if phase == "running" and started is None:
                started = now
            if started is None and now > self.startup_deadline:
                yield self._event("startup_timeout", "the job did not start before its startup deadline")
                return
            if started is not None and now - started > self.run_timeout_s:
                yield self._event(
                    "run_timeout", f"still running after {self.run_timeout_s:.0f} s", logs[-4000:]
                )
                return
            await asyncio.sleep(self.poll_s)

    def _event(self, status: str, message: str, logs_tail: str = "") -> TriggerEvent:
        return TriggerEvent(
            {"status": status, "name": self.name, "submission_id": self.submission_id, "message": message,
             "logs_tail": logs_tail},
        )  # fmt: skip

    async def on_kill(self) -> None:
        """The user killed the deferred task: delete the RayJob (KubeRay stops the Ray job)."""
        client = await asyncio.to_thread(self._client)
        deleted = await asyncio.to_thread(client.delete, RAYJOBS, self.namespace, self.name)
        self.log.info("RayJob %s %s on kill", self.name, "deleted" if deleted else "already gone")
