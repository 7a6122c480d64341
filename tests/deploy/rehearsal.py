"""Production on one machine: the deployment (tests/deploy/deployment.py) in ``prod`` mode against moto and the
Kubernetes emulator, with the settings a user writes (``CL_SETTINGS_FILE``), and what the tests check after a run."""

from __future__ import annotations

import json
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.deploy.deployment import Deployment
from tests.kuberay.conftest import group_counts
from tests.servers import kube_connection as emulator_connection

BUCKET = "cl-rehearsal"
ROOT = f"s3://{BUCKET}/prod"
KUBE_CONN_ID = "kuberay_rehearsal"

#: What a user changes in the shipped prod settings for this rehearsal (small data, the CPU trainer, fast polls).
OVERRIDES: dict[str, dict[str, Any]] = {
    "storage": {"root": ROOT},
    "ingest": {"max_quarantine_share": 0.5},
    "dataset": {"lookback_days": 3, "min_train_rows": 16, "validation_share": 0.1, "test_share": 0.2},
    "compute": {"job_timeout_s": 600, "cluster_startup_timeout_s": 120},
    "trainer": {"engine": "cpu", "threads": 1, "learning_rate": 2e-4, "max_steps": 3, "warm_start_steps": 15,
                "prompts_per_step": 4, "samples_per_prompt": 2, "max_completion_tokens": 24},
    "evaluation": {"max_prompts": 16, "bootstrap_resamples": 200},
    "model": {"base_uri": f"{ROOT}/models/agent-prod/"},
    "hyperpod": {"poll_interval_s": 1, "capacity_timeout_s": 120},
    "kuberay": {"worker_nodes": 2, "poll_interval_s": 0.5, "job_startup_timeout_s": 60,
                "kubernetes_conn_id": KUBE_CONN_ID},
}  # fmt: skip


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _toml(document: dict[str, Any], prefix: str = "") -> str:
    scalars = [f"{k} = {_toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    lines = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    for key, value in document.items():
        if isinstance(value, dict):
            lines += ["", _toml(value, f"{prefix}.{key}" if prefix else key)]
    return "\n".join(lines)


def shipped_prod_settings(venv: Path) -> Path:
    """``environments/prod.toml`` of the package installed in ``venv`` (what the deployment runs)."""
    (path,) = venv.glob("lib/python3*/site-packages/continuous_learning/environments/prod.toml")
    return path


def write_settings(path: Path, prod_toml: Path, hyperpod_cluster: str, **sections: dict[str, Any]) -> Path:
    """The shipped prod settings with :data:`OVERRIDES` (and ``sections``): a full file, as a user keeps one."""
    document = tomllib.loads(prod_toml.read_text())
    for section, values in {
        **OVERRIDES,
        "hyperpod": {**OVERRIDES["hyperpod"], "cluster_name": hyperpod_cluster},
    }.items():
        document[section].update(values)
    for section, values in sections.items():
        document[section].update(values)
    path.write_text(_toml(document) + "\n")
    tomllib.loads(path.read_text())  # the file we wrote reads back
    return path


def kube_connection(url: str) -> str:
    """An Airflow Kubernetes connection (AIRFLOW_CONN_...) to the emulator, as user ``airflow``."""
    return emulator_connection(url, user="airflow")


def aws_connection(moto_url: str) -> str:
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                       "extra": {"region_name": "us-east-1", "endpoint_url": moto_url}})  # fmt: skip


@dataclass
class Prod:
    airflow: Deployment
    sagemaker: Any
    s3: Any
    kube: Any  # tests.kuberay.conftest.KubeEmulator
    ray_dashboard: str
    hyperpod: str
    settings_file: Path
    prod_toml: Path
    trainer_image: str  # the image repository whose pods run in the image lock's environment
    rehearsal: dict[str, Any] = field(default_factory=dict)

    def configure(self, **sections: dict[str, Any]) -> None:
        """Rewrite the settings file; every task reads it when it runs (the next task sees the change)."""
        write_settings(self.settings_file, self.prod_toml, self.hyperpod, **sections)

    def rehearse(self) -> dict[str, Any]:
        """The scheduled runs (once per session): yesterday's ``interaction_ingest``, then the time-table
        run of ``continuous_training``. Returns what the test checks; the fault tests start from here."""
        if not self.rehearsal:
            self.rehearsal = _rehearse(self)
        return self.rehearsal

    def today(self) -> date:
        return datetime.now(UTC).date()

    def capacity(self) -> tuple[int, int]:
        return group_counts(self.sagemaker, self.hyperpod)

    def s3_key_exists(self, url: str) -> bool:
        key = urllib.parse.urlparse(url).path.lstrip("/")
        try:
            self.s3.head_object(Bucket=BUCKET, Key=key)
        except self.s3.exceptions.ClientError:
            return False
        return True

    def scheduled_run(self, dag_id: str, timeout_s: float, after: set[str] | None = None) -> dict[str, Any]:
        """The first run of ``dag_id`` the scheduler made (not a manual one) and not in ``after``."""

        def found() -> dict[str, Any] | None:
            for run in self.airflow.runs(dag_id):
                if run["run_type"] != "manual" and run["dag_run_id"] not in (after or set()):
                    return run
            return None

        return dict(self.airflow.wait_for(found, timeout_s, f"a scheduled {dag_id} run"))


def day_start(day: date) -> str:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat().replace("+00:00", "Z")


def yesterday(today: date) -> date:
    return today - timedelta(days=1)


def _rehearse(prod: Prod) -> dict[str, Any]:
    from continuous_learning.data.synthetic import generate_logs

    airflow = prod.airflow
    today = prod.today()
    day1, day2 = today - timedelta(days=2), yesterday(today)
    generate_logs(ROOT, day1, 2, 160, seed=21)
    # History: the day before yesterday, backfilled while the DAG is paused, so that the scheduler's
    # next run is yesterday's (the DAG's catchup would start at its start_date, a month of empty days)
    airflow.ok("POST", "/backfills", {"dag_id": "interaction_ingest", "from_date": day_start(day1),
               "to_date": day_start(day1), "max_active_runs": 1, "reprocess_behavior": "none",
               "run_backwards": False, "dag_run_conf": {}})  # fmt: skip
    airflow.wait_for(
        lambda: (airflow.ok("GET", "/dags/interaction_ingest").get("next_dagrun_logical_date") or "").startswith(
            day2.isoformat()
        ),
        120, "the next interaction_ingest run to be yesterday's",
    )  # fmt: skip
    airflow.ok("PATCH", "/dags/interaction_ingest", {"is_paused": False})
    airflow.wait_for(
        lambda: len([r for r in airflow.runs("interaction_ingest") if r["state"] in ("success", "failed")]) >= 2,
        420, "both interaction_ingest runs",
    )  # fmt: skip
    airflow.ok("PATCH", "/dags/interaction_ingest", {"is_paused": True})
    ingest = {r["dag_run_id"]: r for r in airflow.runs("interaction_ingest")}
    ingest_states = {run_id: airflow.task_states("interaction_ingest", run_id) for run_id in ingest}
    # Training: unpaused once the data landed; the time table's run for this morning starts at once
    baseline = prod.capacity()
    creates_before = dict(prod.kube.state()["creates"])
    airflow.ok("PATCH", "/dags/continuous_training", {"is_paused": False})
    run = prod.scheduled_run("continuous_training", 120)
    finished = airflow.wait_run("continuous_training", run["dag_run_id"], 900)
    return {"ingest": ingest, "ingest_states": ingest_states, "run": finished, "baseline": baseline,
            "creates_before": creates_before}  # fmt: skip


# -- fault runs -------------------------------------------------------------------------------------


def trigger_training(prod: Prod, conf: dict[str, Any]) -> str:
    """A manual ``continuous_training`` run (as from the UI's Trigger form); its run id."""
    run = prod.airflow.ok("POST", "/dags/continuous_training/dagRuns", {"logical_date": None, "conf": conf})
    return str(run["dag_run_id"])


def ray_jobs(prod: Prod, run_id: str, task_id: str) -> list[dict[str, Any]]:
    """The Ray jobs that ran for one task of one run (what actually ran, whatever the RayJob objects say)."""
    from continuous_learning.compute.ray_jobs import submission_base
    from ray.job_submission import JobSubmissionClient

    base = submission_base("continuous_training", run_id, task_id)
    jobs = JobSubmissionClient(prod.ray_dashboard).list_jobs()
    return [
        {"submission_id": j.submission_id, "status": str(j.status).rsplit(".", 1)[-1]}
        for j in jobs
        if (j.submission_id or "").startswith(base)
    ]


def wait_training_job(prod: Prod, run_id: str, ti_state: str, timeout_s: float = 300) -> dict[str, Any]:
    """Until the train_candidate Ray job runs and the task instance is in ``ti_state``."""

    def running() -> dict[str, Any] | None:
        jobs = [j for j in ray_jobs(prod, run_id, "train_candidate") if j["status"] == "RUNNING"]
        state = prod.airflow.task_states("continuous_training", run_id).get("train_candidate")
        return jobs[0] if jobs and state == ti_state else None

    return dict(prod.airflow.wait_for(running, timeout_s, f"the training job to run ({ti_state})", every_s=1))


def leftovers(prod: Prod) -> dict[str, Any]:
    """What a fault may leave behind: RayClusters, RayJobs, HyperPod capacity above its baseline (0)."""
    state = prod.kube.state()
    return {"rayclusters": state["rayclusters"], "rayjobs": sorted(state["rayjobs"]),
            "hyperpod_target": prod.capacity()[1]}  # fmt: skip
