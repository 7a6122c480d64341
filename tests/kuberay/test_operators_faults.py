"""The HyperPod/KubeRay operators against real servers: moto (HyperPod), kmock (Kubernetes + KubeRay), Ray.

Each test ends with the teardown operator and asserts that no RayCluster remains in the emulator and
that the HyperPod instance group is back to its count before the run.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from continuous_learning.airflow.ray_cluster import CreateRayClusterOperator, DeleteRayClusterOperator
from continuous_learning.airflow.ray_job import BaseRayJobOperator

from tests.kuberay.conftest import create_hyperpod, group_counts
from tests.kuberay.helpers import context, defer_once, first_event, run_operator

pytestmark = pytest.mark.integration


class ScriptJobOperator(BaseRayJobOperator):
    """A Ray job operator whose entrypoint is a test script (the trainer's CLI is tested elsewhere)."""

    def __init__(self, *, script: str, spec_uri: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = script
        self.spec_uri = spec_uri

    def entrypoint(self) -> str:
        return self.script

    def execute(self, context: Context) -> Any:
        from continuous_learning.airflow.context import task_settings

        return self.run_job(context, task_settings(context), "test", self.spec_uri)

    def job_succeeded(self, context: Context) -> dict[str, Any]:
        return {"done": True, "job": self._external}


@pytest.fixture
def prod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kube: Any, aws: Any) -> dict[str, Any]:
    cluster = create_hyperpod(aws, count=0)
    for key, value in {
        "CL_ENV": "prod", "CL_STORAGE__ROOT": f"file://{tmp_path / 'store'}",
        "CL_HYPERPOD__CLUSTER_NAME": cluster, "CL_HYPERPOD__POLL_INTERVAL_S": "1",
        "CL_KUBERAY__WORKER_NODES": "2", "CL_KUBERAY__POLL_INTERVAL_S": "0.3",
        "CL_COMPUTE__CLUSTER_STARTUP_TIMEOUT_S": "30", "CL_KUBERAY__JOB_STARTUP_TIMEOUT_S": "30",
        "CL_COMPUTE__JOB_TIMEOUT_S": "60",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"resources": {"nnodes": 1, "n_gpus_per_node": 0, "cpu_threads": 2}}))
    return {"cluster": cluster, "sagemaker": aws, "kube": kube, "spec_uri": f"file://{spec}", "tmp": tmp_path}


def _teardown_and_check(env: dict[str, Any], ctx: dict[str, Any], doc: dict[str, Any] | None) -> None:
    DeleteRayClusterOperator(task_id="delete_ray_cluster", cluster=doc).execute(ctx)
    assert env["kube"].state()["rayclusters"] == []
    assert group_counts(env["sagemaker"], env["cluster"])[1] == 0, "capacity was not released"


def _ray_job_status(ray_head: Any, submission_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(ray_head.dashboard_url).get_job_status(submission_id)).rsplit(".", 1)[-1]


def test_create_scales_up_waits_ready_and_teardown_releases(prod: dict[str, Any]) -> None:
    ctx = context()
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster", deferrable=True), ctx)
    assert doc["backend"] == "kuberay" and doc["nnodes"] == 2
    assert doc["capacity"]["action"] == "scale" and doc["capacity"]["original_count"] == 0
    assert group_counts(prod["sagemaker"], prod["cluster"]) == (2, 2)
    assert prod["kube"].state()["rayclusters"] == [doc["name"]]
    # a retry of the create re-attaches to the same cluster, and finds the capacity in place
    again = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster", deferrable=True), ctx)
    assert again["name"] == doc["name"] and prod["kube"].state()["creates"]["rayclusters"] == 1
    _teardown_and_check(prod, ctx, doc)
    _teardown_and_check(prod, ctx, doc)  # idempotent


def test_job_fails_then_succeeds_on_retry(prod: dict[str, Any], ray_head: Any) -> None:
    ctx = context()
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster"), ctx)
    marker = prod["tmp"] / "attempts"
    script = (f"python -c \"import pathlib,sys; p=pathlib.Path('{marker}'); n=len(p.read_text()) if p.exists() else 0; "
              f"p.write_text('x'*(n+1)); print('attempt', n+1); sys.exit(1 if n == 0 else 0)\"")  # fmt: skip
    op = ScriptJobOperator(task_id="train", cluster=doc, script=script, spec_uri=prod["spec_uri"])
    with pytest.raises(AirflowException, match="ended failed"):
        run_operator(op, ctx)
    retry = ScriptJobOperator(task_id="train", cluster=doc, script=script, spec_uri=prod["spec_uri"])
    result = run_operator(retry, ctx)
    assert result["done"] and result["job"]["name"].endswith("-a2")
    assert marker.read_text() == "xx"
    # the job operator leaves the spec as written (the training task writes the cluster's resources into it
    # once: test_pipeline_prod)
    spec = json.loads(Path(prod["spec_uri"].removeprefix("file://")).read_text())
    assert spec["resources"] == {"nnodes": 1, "n_gpus_per_node": 0, "cpu_threads": 2}
    _teardown_and_check(prod, ctx, doc)


def test_worker_dies_during_wait_and_retry_reattaches(prod: dict[str, Any], ray_head: Any) -> None:
    ctx = context()
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster"), ctx)
    marker = prod["tmp"] / "runs"
    script = f"python -c \"import time; open('{marker}', 'a').write('x'); time.sleep(3); print('done')\""
    first = ScriptJobOperator(task_id="train", cluster=doc, script=script, spec_uri=prod["spec_uri"])
    deferred = defer_once(first, ctx)  # the worker "dies" here: the deferral is never resumed
    name = deferred.trigger.name
    retry = ScriptJobOperator(task_id="train", cluster=doc, script=script, spec_uri=prod["spec_uri"])
    result = run_operator(retry, ctx)
    assert result["job"]["name"] == name
    assert prod["kube"].state()["creates"]["rayjobs"] == 1, "a second RayJob was submitted"
    assert marker.read_text() == "x", "the entrypoint ran more than once"
    assert _ray_job_status(ray_head, result["job"]["submission_id"]) == "SUCCEEDED"
    _teardown_and_check(prod, ctx, doc)


def test_user_kills_the_task_and_the_job_stops(prod: dict[str, Any], ray_head: Any) -> None:
    ctx = context()
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster"), ctx)
    op = ScriptJobOperator(task_id="train", cluster=doc, script="python -c \"import time; time.sleep(120)\"",
                           spec_uri=prod["spec_uri"])  # fmt: skip
    deferred = defer_once(op, ctx)
    submission_id = deferred.trigger.submission_id
    deadline = time.monotonic() + 30
    while _ray_status_or_none(ray_head, submission_id) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.3)
    asyncio.run(deferred.trigger.on_kill())  # the triggerer's side of a user kill
    op.on_kill()  # and the worker's side: idempotent
    deadline = time.monotonic() + 20
    while _ray_job_status(ray_head, submission_id) != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _ray_job_status(ray_head, submission_id) == "STOPPED"
    assert prod["kube"].state()["rayjobs"] == {}
    _teardown_and_check(prod, ctx, doc)


def _ray_status_or_none(ray_head: Any, submission_id: str) -> str | None:
    try:
        return _ray_job_status(ray_head, submission_id)
    except Exception:
        return None


def test_cluster_never_ready_times_out_and_cleans_up(
    prod: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    prod["kube"].configure(never_ready=True)
    monkeypatch.setenv("CL_COMPUTE__CLUSTER_STARTUP_TIMEOUT_S", "2")
    ctx = context()
    with pytest.raises(AirflowException, match="not ready within 2 s"):
        run_operator(CreateRayClusterOperator(task_id="create_ray_cluster"), ctx)
    assert prod["kube"].state()["rayclusters"] == []
    assert group_counts(prod["sagemaker"], prod["cluster"])[1] == 0
    _teardown_and_check(prod, ctx, None)


def test_kubernetes_409_and_5xx_are_retried(prod: dict[str, Any]) -> None:
    kube = prod["kube"]
    kube.inject("POST", "rayclusters", 409)
    kube.inject("GET", "rayclusters", 503, times=2)
    kube.inject("POST", "rayclusters", 500)
    ctx = context()
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster"), ctx)
    assert kube.state()["faults_served"] == 4
    assert kube.state()["rayclusters"] == [doc["name"]]
    kube.inject("DELETE", "rayclusters", 502)
    _teardown_and_check(prod, ctx, doc)


def test_unhealthy_hyperpod_nodes_fail_clearly(prod: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = create_hyperpod(prod["sagemaker"], count=0, node_status="Failure")
    monkeypatch.setenv("CL_HYPERPOD__CLUSTER_NAME", cluster)
    prod["cluster"] = cluster
    ctx = context()
    with pytest.raises(AirflowFailException, match=r"node\(s\) not healthy: gpu-workers-0 \(Failure"):
        run_operator(CreateRayClusterOperator(task_id="create_ray_cluster"), ctx)
    assert prod["kube"].state()["rayclusters"] == []
    assert group_counts(prod["sagemaker"], cluster)[1] == 0, "capacity was not released"


def test_job_trigger_reports_startup_timeout(prod: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context()
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster"), ctx)
    prod["kube"].configure(never_ready=True)
    monkeypatch.setenv("CL_KUBERAY__JOB_STARTUP_TIMEOUT_S", "1")
    other = {**doc, "name": "missing-cluster"}  # a job whose cluster never comes up never starts
    op = ScriptJobOperator(task_id="evaluate", cluster=other, script="python -c 1", spec_uri=prod["spec_uri"])
    with pytest.raises(AirflowException, match="did not start in time"):
        run_operator(op, ctx)
    assert prod["kube"].state()["rayjobs"] == {}
    _teardown_and_check(prod, ctx, doc)


def test_trigger_events_are_plain_json(prod: dict[str, Any]) -> None:
    from continuous_learning.airflow.triggers import RayClusterReadyTrigger

    trigger = RayClusterReadyTrigger(hook_kwargs={"kubernetes_conn_id": "kuberay_test"},
                                     namespace="continuous-learning", name="nope", poll_s=0.1,
                                     deadline=time.time() + 1)  # fmt: skip
    path, kwargs = trigger.serialize()
    assert path.endswith("RayClusterReadyTrigger") and json.dumps(kwargs)
    assert asyncio.run(first_event(trigger))["status"] == "gone"


def test_create_killed_while_waiting_deletes_its_cluster_and_releases_capacity(prod: dict[str, Any]) -> None:
    prod["kube"].configure(never_ready=True)
    ctx = context()
    op = CreateRayClusterOperator(task_id="create_ray_cluster")
    defer_once(op, ctx)  # scaled up; the task waits (capacity first, then the cluster)
    assert group_counts(prod["sagemaker"], prod["cluster"])[1] > 0
    op.on_kill()  # the user kills the task: teardown will not run, since its setup failed
    assert prod["kube"].state()["rayclusters"] == []
    assert group_counts(prod["sagemaker"], prod["cluster"])[1] == 0, "capacity was not released"


# ------------------------------------------------------------------- RBAC: what the operators call, allowed


def test_operators_calls_are_all_allowed_by_the_shipped_role(
    prod: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole flow (capacity, cluster, a job whose log is streamed, teardown), recorded by the emulator."""
    from tests.kuberay.rbac import denied, describe, shipped_rules

    ctx = context()
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster", deferrable=True), ctx)
    script = (
        "python -c \"import time; print('step 1 of 2', flush=True); time.sleep(2); print('step 2 of 2')\""
    )
    op = ScriptJobOperator(
        task_id="train", cluster=doc, script=script, spec_uri=prod["spec_uri"], deferrable=True
    )
    result = run_operator(op, ctx)
    streamed = capsys.readouterr().out  # the triggers' task log (Airflow's structured logging)
    assert "[ray job" in streamed and "step 1 of 2" in streamed, "the driver log was not streamed"
    assert prod["kube"].state()["placements"] == {result["job"]["name"]: "gpu"}, "the driver ran off the GPUs"
    _teardown_and_check(prod, ctx, doc)

    calls = prod["kube"].calls()
    made = {describe(c) for c in calls}
    assert {
        "create rayclusters (ray.io) in namespace continuous-learning",
        "create rayjobs (ray.io) in namespace continuous-learning",
        "list rayjobs (ray.io) in namespace continuous-learning",
        "delete rayclusters (ray.io) in namespace continuous-learning",
        "get services/proxy (core) in namespace continuous-learning",
    } <= made, made
    assert denied(calls) == []
    # the Role as it was shipped before (no services/proxy): the log calls would have been refused
    before = [(ns, r) for ns, r in shipped_rules() if "services/proxy" not in r.get("resources", [])]
    assert denied(calls, before) == ["get services/proxy (core) in namespace continuous-learning"]


def test_a_forbidden_log_proxy_is_a_warning_naming_the_permission(
    prod: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ctx = context()
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster"), ctx)
    prod["kube"].inject("GET", "services", 403, times=1000)  # an API server whose Role lacks services/proxy
    script = "python -c \"import time; print('hello'); time.sleep(1.5)\""
    op = ScriptJobOperator(
        task_id="train", cluster=doc, script=script, spec_uri=prod["spec_uri"], deferrable=True
    )
    with caplog.at_level("WARNING", logger="continuous_learning.compute.kuberay"):
        assert run_operator(op, ctx)["done"]  # the job itself is not affected
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "services/proxy" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # once per wait, not once per poll
    assert "403" in warnings[0].getMessage() and "continuous-learning" in warnings[0].getMessage()
    prod["kube"].reset_faults()
    _teardown_and_check(prod, ctx, doc)


# ------------------------------------------------ capacity: the scale-up recorded where a retry finds it


def _record(ctx: dict[str, Any]) -> dict[str, Any] | None:
    from continuous_learning import storage
    from continuous_learning.airflow.capacity import capacity_record_uri
    from continuous_learning.config import load_settings

    uri = capacity_record_uri(load_settings(), ctx)  # type: ignore[arg-type]
    return storage.read_json(uri) if storage.exists(uri) else None


def _retry_of(ctx: dict[str, Any], try_number: int) -> dict[str, Any]:
    """The next try of the same task in the same run: Airflow clears its XComs."""
    return context(run_id=ctx["run_id"], try_number=try_number, max_tries=1)


def test_create_fails_after_scale_up_and_the_retry_and_teardown_use_the_record(
    prod: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CL_KUBERAY__API_RETRIES", "1")
    prod["kube"].inject("POST", "rayclusters", 500, times=2)  # both attempts of the client's create
    first = context(try_number=1, max_tries=1)
    with pytest.raises(Exception, match="500"):
        run_operator(CreateRayClusterOperator(task_id="create_ray_cluster", retries=1), first)
    assert group_counts(prod["sagemaker"], prod["cluster"]) == (2, 2), "the nodes stay for the retry"
    record = _record(first)
    assert record is not None and record["released_at"] is None
    assert (record["count_before"], record["target"]) == (0, 2)
    assert record["scaled_by"] == f"continuous_training/{first['run_id']}/create_ray_cluster try 1"

    retry = _retry_of(first, 2)
    doc = run_operator(CreateRayClusterOperator(task_id="create_ray_cluster", retries=1), retry)
    assert (
        doc["capacity"]["action"] == "none"
    )  # its own plan saw the nodes there: no scale-up, no XCom of one
    assert _record(retry) == record  # and the record of the first try's scale-up is kept as it was
    _teardown_and_check(prod, retry, doc)  # back to 0: from the record
    released = _record(retry)
    assert (
        released is not None and released["released_at"] and "delete_ray_cluster" in released["released_by"]
    )


def test_create_failing_on_its_last_try_releases_what_an_earlier_try_scaled(
    prod: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CL_KUBERAY__API_RETRIES", "1")
    prod["kube"].inject("POST", "rayclusters", 500, times=4)  # the first try and the retry both fail
    first = context(try_number=1, max_tries=1)
    with pytest.raises(Exception, match="500"):
        run_operator(CreateRayClusterOperator(task_id="create_ray_cluster", retries=1), first)
    assert group_counts(prod["sagemaker"], prod["cluster"])[1] == 2
    last = _retry_of(first, 2)
    with pytest.raises(Exception, match="500"):
        run_operator(CreateRayClusterOperator(task_id="create_ray_cluster", retries=1), last)
    # the teardown will not run (its setup failed): the last try gave the nodes back itself
    assert group_counts(prod["sagemaker"], prod["cluster"])[1] == 0, "GPU nodes left billed"
    assert prod["kube"].state()["rayclusters"] == []
    record = _record(last)
    assert record is not None and record["released_at"] and record["released_by"].endswith("try 2")


def test_teardown_without_the_create_document_still_releases_a_recorded_scale_up(
    prod: dict[str, Any],
) -> None:
    ctx = context()
    prod["kube"].configure(never_ready=True)
    op = CreateRayClusterOperator(task_id="create_ray_cluster")
    defer_once(op, ctx)  # scaled up and recorded; then the worker is lost (no on_kill, no XCom to read)
    assert group_counts(prod["sagemaker"], prod["cluster"])[1] == 2
    DeleteRayClusterOperator(task_id="delete_ray_cluster", cluster=None).execute(
        context(run_id=ctx["run_id"])
    )
    assert group_counts(prod["sagemaker"], prod["cluster"])[1] == 0
