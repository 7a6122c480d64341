"""Serving hand-off operators (``deploy_production``): resolve the production model from the Asset
event, then deploy it to the target ``serving.target`` picks; the other target's task skips.

Decisions and renderings live in ``continuous_learning.serving``; the hooks and triggers in
``serving_hooks``; here they are carried out. Every step is idempotent: a retry of a deployment already
done finds it done, a half-done one continues (names and pod templates carry the version and revision).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from continuous_learning.airflow.context import task_settings

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException


class ResolveProductionModelOperator(BaseOperator):
    """The production model to deploy: from the triggering Asset events' extra (the newest revision; one
    behind the registry's alias is superseded and skips), or the registry's current production on a
    manual run. Returns a ``ProductionModelEvent`` document."""

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.airflow.assets import PRODUCTION_MODEL
        from continuous_learning.registry import ModelRegistry
        from continuous_learning.serving.handoff import choose, event_for

        settings = task_settings(context)
        registry = ModelRegistry(settings.storage.registry_uri)
        alias = registry.alias("production")
        current = event_for(registry.get(alias.version), alias) if alias else None
        triggering = context.get("triggering_asset_events") or {}
        extras = [dict(e.extra or {}) for e in triggering.get(PRODUCTION_MODEL, [])] if triggering else []
        answer = choose(extras, current)
        self.log.info("%s", answer.message)
        if answer.action == "skip" or answer.event is None:
            raise AirflowSkipException(answer.message)
        return answer.event.model_dump(mode="json")


class _DeployOperator(BaseOperator):
    template_fields: Sequence[str] = ("model",)
    target = ""

    def __init__(self, *, model: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def _start(self, context: Context) -> tuple[Any, Any]:
        from continuous_learning.contracts import ContractError, ProductionModelEvent

        settings = task_settings(context)
        if settings.serving.target != self.target:
            raise AirflowSkipException(f"serving.target is {settings.serving.target!r}, not {self.target!r}")
        try:
            return settings, ProductionModelEvent.from_extra(self.model)
        except ContractError as exc:
            raise AirflowFailException(str(exc)) from None

    def _await(self, context: Context, trigger: Any, deferrable: bool, poll_s: float) -> dict[str, Any]:
        """The trigger's answer, in the triggerer (deferred) or polled in this worker; execute_complete
        decides from it either way."""
        if deferrable:
            self.defer(trigger=trigger, method_name="execute_complete")
        while (answer := trigger.poll_once()) is None:
            time.sleep(poll_s)
        return self.execute_complete(context, answer)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """After the wait: each target decides from a fresh look at what it deployed."""
        raise NotImplementedError


class DeploySageMakerEndpointOperator(_DeployOperator):
    """Deploy the production model to a SageMaker real-time endpoint (``serving.target = sagemaker``).

    Creates the Model and EndpointConfig named for the version and revision (found on a retry), then
    creates the endpoint, or updates it blue/green with a canary and auto-rollback on
    ``serving.sagemaker.alarms``; waits (deferrable) for the endpoint and the bake time. An alarm in
    ALARM after the shift rolls the endpoint back to the config it replaced; SageMaker rolling it back
    itself fails the task too. Neither is retried: the canary said no.

    :param model: the ``ProductionModelEvent`` document (templated), from ``resolve_model``.
    """

    target = "sagemaker"

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.airflow.serving_hooks import SageMakerEndpointHook
        from continuous_learning.serving import sagemaker

        settings, event = self._start(context)
        conf = settings.serving.sagemaker
        hook = SageMakerEndpointHook(
            aws_conn_id=settings.serving.aws_conn_id, region_name=settings.serving.region_name
        )
        missing = sorted(set(conf.alarms) - {a["AlarmName"] for a in hook.alarms(conf.alarms)})
        if missing:
            raise AirflowFailException(
                f"serving.sagemaker.alarms: no such CloudWatch alarm: {', '.join(missing)}"
            )
        from botocore.exceptions import ClientError

        try:
            hook.ensure_model(sagemaker.create_model_request(conf, event))
            hook.ensure_endpoint_config(sagemaker.endpoint_config_request(conf, event))
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        except ClientError as exc:  # a request SageMaker refuses (settings): retrying sends the same
            if exc.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            raise AirflowFailException(f"SageMaker refused the deployment's request: {exc}") from None
        return self._advance(context, updated=False, previous=None, baked=False)

    def _advance(self, context: Context, updated: bool, previous: str | None, baked: bool) -> dict[str, Any]:
        from continuous_learning.airflow.serving_hooks import SageMakerEndpointHook
        from continuous_learning.serving import sagemaker

        settings, event = self._start(context)
        conf = settings.serving.sagemaker
        hook = SageMakerEndpointHook(
            aws_conn_id=settings.serving.aws_conn_id, region_name=settings.serving.region_name
        )
        name, target = conf.endpoint_name, sagemaker.resource_name(conf.endpoint_name, event)
        endpoint = hook.describe_endpoint_or_none(name)
        step = sagemaker.next_step(endpoint, target, updated)
        self.log.info("endpoint %s -> %s: %s", name, target, step)
        if step == "create":
            hook.conn.create_endpoint(
                EndpointName=name, EndpointConfigName=target, Tags=sagemaker.tags(event)
            )
            return self._wait(context, settings, True, None)
        if step == "update":
            assert endpoint is not None
            previous = str(endpoint["EndpointConfigName"])
            hook.conn.update_endpoint(EndpointName=name, EndpointConfigName=target,
                                      DeploymentConfig=sagemaker.deployment_config(conf))  # fmt: skip
            return self._wait(context, settings, True, previous)
        if step == "wait":
            current = (endpoint or {}).get("EndpointConfigName")
            return self._wait(context, settings, True, previous or (current if current != target else None))
        if step == "failed":
            raise AirflowFailException(f"endpoint {name} failed: {(endpoint or {}).get('FailureReason')}")
        if step == "rolled_back":
            raise AirflowFailException(
                f"SageMaker rolled endpoint {name} back to {(endpoint or {}).get('EndpointConfigName')} during the "
                f"shift to {target} (an alarm or failed health checks): {(endpoint or {}).get('FailureReason')}"
            )
        firing = sagemaker.firing(hook.alarms(conf.alarms), conf.alarms)
        if firing:
            self._roll_back(hook, conf, name, previous, firing)
        if conf.bake_s and not baked:
            return self._wait(context, settings, updated, previous, bake_s=conf.bake_s)
        self.log.info("endpoint %s serves %s (%s)", name, event.version, target)
        return {
            "target": "sagemaker",
            "endpoint_name": name,
            "endpoint_config": target,
            **event.model_dump(mode="json"),
        }

    def _roll_back(self, hook: Any, conf: Any, name: str, previous: str | None, firing: list[str]) -> None:
        if previous is None:
            raise AirflowFailException(
                f"alarms in ALARM on {name} ({', '.join(firing)}); no earlier config to go back to"
            )
        hook.conn.update_endpoint(EndpointName=name, EndpointConfigName=previous, DeploymentConfig={
            "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}}})  # fmt: skip
        hook.wait_in_service(name, conf.poll_interval_s, int(conf.wait_timeout_s / conf.poll_interval_s) + 1)
        raise AirflowFailException(
            f"canary failed: {', '.join(firing)} in ALARM after the shift; endpoint {name} rolled back to {previous}"
        )

    def _wait(
        self, context: Context, settings: Any, updated: bool, previous: str | None, bake_s: int = 0
    ) -> Any:
        from continuous_learning.airflow.serving_hooks import SageMakerEndpointTrigger

        conf = settings.serving.sagemaker
        carry = {"updated": updated, "previous": previous, "baked": bake_s > 0}
        trigger = SageMakerEndpointTrigger(
            carry=carry,
            endpoint_name=conf.endpoint_name, alarms=list(conf.alarms), bake_until=time.time() + bake_s,
            deadline=time.time() + conf.wait_timeout_s, poll_s=conf.poll_interval_s,
            aws_conn_id=settings.serving.aws_conn_id, region_name=settings.serving.region_name,
        )  # fmt: skip
        return self._await(context, trigger, settings.serving.deferrable, conf.poll_interval_s)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """After the wait: decide again from a fresh description (``event['carry']``: what this try did)."""
        if event.get("status") == "timeout":
            raise RuntimeError(f"endpoint wait: {event.get('message')}")  # retried: the next try continues
        carry = event.get("carry") or {}
        return self._advance(
            context, bool(carry.get("updated")), carry.get("previous"), bool(carry.get("baked"))
        )


class DeploySGLangOperator(_DeployOperator):
    """Roll the SGLang Deployment on the EKS cluster to the production model (``serving.target = sglang``).

    Creates or replaces the Deployment (rolling update, ``maxUnavailable 0``: new pods take traffic only
    once ready) and waits (deferrable) for the rollout; a rollout that fails its progress deadline is
    rolled back to the pod template it replaced, and the task fails. A LoRA version on the served base
    is loaded into the running pods (``/load_lora_adapter``) instead, no restart. A retry of a revision
    already applied waits for it; one already served is a no-op.

    :param model: the ``ProductionModelEvent`` document (templated), from ``resolve_model``.
    """

    target = "sglang"

    def _hook_kwargs(self, settings: Any) -> dict[str, Any]:
        serving = settings.serving
        cluster = serving.eks_cluster_name or settings.kuberay.eks_cluster_name
        return {"kubernetes_conn_id": serving.kubernetes_conn_id or settings.kuberay.kubernetes_conn_id,
                "eks_cluster_name": cluster, "aws_conn_id": serving.aws_conn_id, "region_name": serving.region_name}  # fmt: skip

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.airflow.serving_hooks import ServingKubernetesHook
        from continuous_learning.serving import sglang

        settings, event = self._start(context)
        conf = settings.serving.sglang
        hook = ServingKubernetesHook(**self._hook_kwargs(settings))
        current = hook.get_deployment(conf.namespace, conf.deployment_name)
        try:
            plan = sglang.plan(current, event, conf)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("Deployment %s/%s: %s", conf.namespace, conf.deployment_name, plan.reason)
        if plan.action == "noop":
            return self._result(conf, event, "noop")
        if plan.action == "load_lora":
            assert plan.lora_request is not None
            selector = {"app.kubernetes.io/instance": conf.deployment_name}
            pods = hook.ready_pods(conf.namespace, selector)
            for pod in pods:  # SGLang answers an adapter already loaded with an error: a retry reloads
                hook.post_to_pod(conf.namespace, pod, conf.port, "load_lora_adapter", plan.lora_request)
            hook.apps().patch_namespaced_deployment(conf.deployment_name, conf.namespace, {"metadata": {
                "annotations": {sglang.LORA_VERSION: f"{event.version}@{event.revision}"}}})  # fmt: skip
            self.log.info("adapter %s loaded into %d pod(s): %s", event.version, len(pods), ", ".join(pods))
            return self._result(conf, event, "load_lora")
        if plan.manifest is not None:
            hook.apply_deployment(plan.manifest, current)
        trigger = sglang_trigger(self._hook_kwargs(settings), conf)
        return self._await(context, trigger, settings.serving.deferrable, conf.poll_interval_s)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from continuous_learning.airflow.serving_hooks import ServingKubernetesHook
        from continuous_learning.serving import sglang

        settings, model = self._start(context)
        conf = settings.serving.sglang
        status = event.get("status")
        if status == "ready":
            return self._result(conf, model, "rolled")
        if status == "timeout":
            raise RuntimeError(
                f"rollout of {conf.deployment_name} still progressing: {event.get('message', '')}"
            )
        hook = ServingKubernetesHook(**self._hook_kwargs(settings))
        current = hook.get_deployment(conf.namespace, conf.deployment_name)
        previous = sglang.rollback_template(current) if current else None
        if current is None or previous is None:
            raise AirflowFailException(
                f"rollout of {model.version} {status}; no earlier pod template to roll back to"
            )
        desired = json.loads(json.dumps(current))
        desired["spec"]["template"] = previous
        desired["metadata"]["annotations"].pop(sglang.PREVIOUS_TEMPLATE, None)
        hook.apply_deployment(desired, current)
        raise AirflowFailException(
            f"rollout of {model.version} (revision {model.revision}) did not become ready ({status}): rolled back "
            f"to {previous.get('metadata', {}).get('annotations', {}).get(sglang.VERSION)}"
        )

    @staticmethod
    def _result(conf: Any, event: Any, how: str) -> dict[str, Any]:
        return {"target": "sglang", "deployment": f"{conf.namespace}/{conf.deployment_name}", "how": how,
                **event.model_dump(mode="json")}  # fmt: skip


def sglang_trigger(hook_kwargs: dict[str, Any], conf: Any) -> Any:
    from continuous_learning.airflow.serving_hooks import DeploymentRolloutTrigger

    return DeploymentRolloutTrigger(hook_kwargs=hook_kwargs, namespace=conf.namespace, name=conf.deployment_name,
                                    deadline=time.time() + conf.wait_timeout_s, poll_s=conf.poll_interval_s)  # fmt: skip
