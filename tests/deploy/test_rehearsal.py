"""The rehearsal: production on one machine, deployed the way a user deploys it (issue 14, item 3).

- PostgreSQL from Debian's package as Airflow's metadata database (tests/deploy/postgres.py);
- the package's wheel in a clean venv with the PostgreSQL driver and provider; the DAGs it ships, as they are,
  in the deployment's dags folder; Airflow's scheduler, dag-processor, triggerer and api-server as separate
  processes, LocalExecutor (tests/deploy/deployment.py);
- the shipped prod settings as a user's file (``CL_SETTINGS_FILE``) against moto (S3 storage, HyperPod, the
  SageMaker Model Registry) and the Kubernetes emulator playing the KubeRay controller (tests/kuberay);
- the user's own base model (a small Hugging Face folder on S3), imported as v0 on the first run;
- the trainer's jobs (import-model, train, evaluate) in the trainer image's environment: its lock alone,
  installed in .tools/image-lock, and the project's wheel (tests/deploy/conftest.py).

The scheduler makes the runs: ``interaction_ingest`` for yesterday (the day before is backfilled through the
REST API, so that the DAG's catchup starts there, not at its start_date), then ``continuous_training``'s
time-table run. Its deferrable waits are served by the triggerer, the RayJob driver logs end up in the task
logs, and the run report is linked from the gate task.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO
from tests.deploy.deployment import DEPLOY_EXTRAS
from tests.deploy.rehearsal import Prod
from tests.kuberay.rbac import denied

pytestmark = pytest.mark.integration
TRAINING_TASKS = ("create_ray_cluster", "ensure_base_model", "train_candidate", "evaluate", "gate",
                  "delete_ray_cluster")  # fmt: skip


def test_scheduled_ingest_and_training_end_to_end(prod: Prod) -> None:
    airflow = prod.airflow
    rehearsal = prod.rehearse()
    for run_id, run in rehearsal["ingest"].items():
        assert run["state"] == "success", (run, rehearsal["ingest_states"][run_id])
    assert sorted(r["run_type"] for r in rehearsal["ingest"].values()) == ["backfill", "scheduled"]

    finished = rehearsal["run"]
    run_id = finished["dag_run_id"]
    assert finished["run_type"] == "scheduled", finished
    states = airflow.task_states("continuous_training", run_id)
    assert finished["state"] == "success", states
    for task in TRAINING_TASKS:
        assert states[task] == "success", (task, states)

    # the waits were deferrals served by the triggerer: its lines (and the RayJob driver's) are in the task logs
    tis = airflow.task_instances("continuous_training", run_id)
    logs = {task: airflow.task_log("continuous_training", run_id, task, tis[task]["try_number"])
            for task in ("create_ray_cluster", "ensure_base_model", "train_candidate", "evaluate")}  # fmt: skip
    for task, log in logs.items():
        assert f"trigger continuous_training/{run_id}/{task}/-1/1 " in log, f"{task}: no trigger in its log"
    driver = [line for line in logs["train_candidate"].splitlines() if "[ray job " in line]
    assert driver, logs["train_candidate"][-3000:]
    assert any('"steps":3' in line.replace(" ", "") for line in driver), driver[-20:]  # the trainer's result
    # the report: linked from the gate task, and there in S3
    links = airflow.ok("GET", f"/dags/continuous_training/dagRuns/{run_id}/taskInstances/gate/links")
    report = links["extra_links"].get("Run report")
    assert report and prod.s3_key_exists(report), links

    # nothing left behind: no RayCluster or RayJob, HyperPod back at its baseline, one RayJob per job
    state = prod.kube.state()
    assert state["rayclusters"] == [] and state["rayjobs"] == {}, state
    assert state["creates"] == {"rayclusters": 1, "rayjobs": 3}, state  # import-model, train, evaluate
    # each job ran on a pod of the trainer image, in the environment installed from the image's lock alone
    assert sorted(set(state["environments"].values())) == [prod.trainer_image], state["environments"]
    assert len(state["environments"]) == 3, state["environments"]
    assert prod.capacity()[1] == rehearsal["baseline"][1] == 0
    assert denied(prod.kube.calls()) == [], "the shipped Role does not allow a call the operators made"


def test_the_deployment_venv_holds_the_runtime_lock_and_nothing_else(deploy_venv: Path) -> None:
    """The wheel resolved against requirements.txt alone: every package at its locked version, no dev lock."""
    listed = subprocess.run(
        [str(deploy_venv / "bin" / "python"), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed)}
    lock = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[canonicalize_name(name)] = version
    extras = {canonicalize_name(Requirement(r).name) for r in DEPLOY_EXTRAS} | {"psycopg-binary"}
    ours = {"continuous-learning", "pip", "setuptools"}
    assert {n: v for n, v in installed.items() if n not in extras | ours} == lock
