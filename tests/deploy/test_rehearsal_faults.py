"""Faults injected into the rehearsal's real processes (issue 14, item 5): Airflow's own scheduler, triggerer
and workers decide what happens next, not a test calling ``on_kill`` or ``execute_complete``.

Each test starts from the rehearsal's state (data ingested, a production model), triggers a
``continuous_training`` run as a user would (REST API), injects one fault, and waits for the run to end.
Afterwards, whatever the fault: at most one training job ran (Ray's own job list), no RayCluster or RayJob
is left, HyperPod's target count is back at its baseline (0), and the run's state says what happened.
The table of what happened is in docs/operations.md, "Faults".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.rehearsal import Prod, leftovers, ray_jobs, trigger_training, wait_training_job

pytestmark = pytest.mark.integration
NOTHING_LEFT = {"rayclusters": [], "rayjobs": [], "hyperpod_target": 0}
#: Long enough (tens of seconds on the CPU engine) for a fault to land while the training job runs.
LONG_TRAINING = {"max_steps": 40}


@pytest.fixture
def rehearsed(prod: Prod) -> Iterator[Prod]:
    assert prod.rehearse()["run"]["state"] == "success", "the rehearsal's own run failed: see its test"
    prod.configure()
    prod.kube.reset_faults()
    prod.airflow.ok("PATCH", "/dags/continuous_training", {"is_paused": False})
    yield prod
    prod.kube.reset_faults()
    prod.configure()
    for component in ("scheduler", "triggerer"):
        if component not in prod.airflow.procs:
            prod.airflow.start(component)  # a test that failed between a kill and the restart


def _finish(prod: Prod, run_id: str, timeout_s: float = 900) -> tuple[dict[str, Any], dict[str, Any]]:
    run = prod.airflow.wait_run("continuous_training", run_id, timeout_s)
    states = prod.airflow.task_states("continuous_training", run_id)
    # teardown done: the capacity is returned by delete_ray_cluster, then the nodes go (moto scales stepwise)
    prod.airflow.wait_for(lambda: leftovers(prod) == NOTHING_LEFT, 60, f"nothing left: {leftovers(prod)}")
    return run, states


def _one_training_job(prod: Prod, run_id: str) -> dict[str, Any]:
    jobs = ray_jobs(prod, run_id, "train_candidate")
    assert len(jobs) == 1, f"training jobs that ran: {jobs}"
    return jobs[0]


def test_task_marked_failed_through_the_api_stops_the_job_and_tears_down(rehearsed: Prod) -> None:
    prod = rehearsed
    run_id = trigger_training(prod, LONG_TRAINING)
    wait_training_job(prod, run_id, "deferred")
    prod.airflow.ok(
        "PATCH",
        f"/dags/continuous_training/dagRuns/{run_id}/taskInstances/train_candidate",
        {"new_state": "failed"},
    )
    run, states = _finish(prod, run_id)
    assert run["state"] == "failed", states
    assert states["train_candidate"] == "failed" and states["delete_ray_cluster"] == "success", states
    assert states["evaluate"] == "upstream_failed", states
    # the trigger's on_kill deleted the RayJob and KubeRay stopped the Ray job: the trainer got SIGTERM and
    # stops gracefully (latest checkpoint merged) within RAY_JOB_STOP_WAIT_TIME_S, so wait for the stop to end
    job = prod.airflow.wait_for(
        lambda: (j := _one_training_job(prod, run_id))["status"] != "RUNNING" and j, 300, "the job to stop"
    )
    assert job["status"] == "STOPPED", job


def test_triggerer_killed_during_the_wait_a_new_one_takes_over(rehearsed: Prod) -> None:
    prod = rehearsed
    run_id = trigger_training(prod, LONG_TRAINING)
    wait_training_job(prod, run_id, "deferred")
    prod.airflow.kill("triggerer")
    prod.airflow.start("triggerer")
    run, states = _finish(prod, run_id)
    assert run["state"] == "success", states
    assert _one_training_job(prod, run_id)["status"] == "SUCCEEDED"
    tries = prod.airflow.task_instances("continuous_training", run_id)["train_candidate"]["try_number"]
    assert tries == 1, "the wait moved to the new triggerer without a retry"


def test_scheduler_restarted_mid_run_the_run_goes_on(rehearsed: Prod) -> None:
    prod = rehearsed
    run_id = trigger_training(prod, LONG_TRAINING)
    wait_training_job(prod, run_id, "deferred")
    prod.airflow.kill("scheduler")  # its LocalExecutor workers with it
    prod.airflow.start("scheduler")
    run, states = _finish(prod, run_id)
    assert run["state"] == "success", states
    assert _one_training_job(prod, run_id)["status"] == "SUCCEEDED"


def test_worker_killed_during_the_training_job_the_retry_reattaches(rehearsed: Prod) -> None:
    prod = rehearsed
    # not deferrable: the task's own process waits for the job, so there is a worker to kill
    prod.configure(kuberay={"deferrable": False})
    run_id = trigger_training(prod, LONG_TRAINING)
    wait_training_job(prod, run_id, "running")
    ti_id = prod.airflow.task_instances("continuous_training", run_id)["train_candidate"]["id"]
    victims = prod.airflow.task_processes(ti_id)
    assert victims, "no process runs train_candidate"
    prod.airflow.kill_pids(victims)
    run, states = _finish(prod, run_id)
    assert run["state"] == "success", states
    ti = prod.airflow.task_instances("continuous_training", run_id)["train_candidate"]
    assert ti["try_number"] == 2, ti  # the first try died with its process; the retry re-attached
    assert _one_training_job(prod, run_id)["status"] == "SUCCEEDED"
    # the retry found the job through the task state (ResumableJobMixin): still running, or already done
    retry_log = prod.airflow.task_log("continuous_training", run_id, "train_candidate", 2)
    assert "Reconnecting to existing job" in retry_log or "Job already completed successfully" in retry_log, (
        retry_log[-3000:]
    )


def test_raycluster_creation_failing_after_the_scale_up_returns_the_capacity(rehearsed: Prod) -> None:
    prod = rehearsed
    prod.configure(kuberay={"api_retries": 1})
    prod.kube.inject("POST", "rayclusters", 500, times=100)  # every try of create_ray_cluster
    run_id = trigger_training(prod, {})
    run, states = _finish(prod, run_id)
    assert run["state"] == "failed", states
    # the setup failed, so Airflow skips its teardown (upstream_failed): the last try released the capacity itself
    assert states["create_ray_cluster"] == "failed" and states["delete_ray_cluster"] == "upstream_failed", (
        states
    )
    assert ray_jobs(prod, run_id, "train_candidate") == []
    log = prod.airflow.task_log("continuous_training", run_id, "create_ray_cluster", 2)
    assert "Kubernetes API answered 500" in log and "released the capacity" in log, log[-3000:]


def test_kubernetes_api_answering_409_429_5xx_is_retried(rehearsed: Prod) -> None:
    prod = rehearsed
    served_before = prod.kube.state()["faults_served"]  # counted over the session
    for method, plural, status, times in (("POST", "rayclusters", 503, 2), ("POST", "rayjobs", 429, 2),
                                          ("POST", "rayjobs", 409, 1), ("GET", "rayjobs", 500, 2)):  # fmt: skip
        prod.kube.inject(method, plural, status, times=times)
    run_id = trigger_training(prod, {})
    run, states = _finish(prod, run_id)
    assert run["state"] == "success", states
    assert prod.kube.state()["faults_served"] - served_before == 7
    assert _one_training_job(prod, run_id)["status"] == "SUCCEEDED"
    tis = prod.airflow.task_instances("continuous_training", run_id)
    # the client retries each call; a task whose calls still failed is retried once by Airflow, never more
    tries = {task: ti["try_number"] for task, ti in tis.items()}
    assert all(n <= 2 for n in tries.values()), tries
