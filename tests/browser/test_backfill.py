"""Backfill after late feedback, through a real scheduler (`airflow standalone`) and its REST API (the
same backfill as `airflow backfill create ... --reprocess-behavior completed`): it rewrites the days with the feedback that
arrived since, and backfill runs announce no reward data, so no training run per day is started."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from continuous_learning import storage
from continuous_learning.data.synthetic import generate_logs

from tests.browser.standalone import airflow_standalone
from tests.conftest import REPO

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 18)
DAG_ID = "interaction_ingest"


def _feedback_joined(root: str, day: date) -> int | None:
    files = storage.partition_files(storage.join(root, "data", "curated", f"dt={day}"))
    if "manifest.json" not in files:
        return None
    return int(json.loads(storage.read_bytes(files["manifest.json"]))["report"]["feedback_joined"])


def test_backfill_rewrites_days_with_late_feedback_and_announces_nothing(tmp_path: Path) -> None:
    root = f"file://{tmp_path / 'store'}"
    generate_logs(root, DAY, 2, 60, seed=31)
    feedback = tmp_path / "store" / "feedback"
    later = tmp_path / "later-feedback"
    later.mkdir()
    for folder in feedback.glob("dt=*"):
        if folder.name > f"dt={DAY}":
            folder.rename(later / folder.name)  # corrections that arrive after the first ingest
    dags = tmp_path / "dags"
    dags.mkdir()
    # The scheduler runs backfills of unpaused DAGs only; no catch-up here, so unpausing adds at most the
    # latest interval's scheduled run, which the event check below tells apart by its run id.
    source = (REPO / "dags" / f"{DAG_ID}.py").read_text()
    assert "catchup=True" in source
    (dags / f"{DAG_ID}.py").write_text(source.replace("catchup=True", "catchup=False"))
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {"CL_STORAGE__ROOT": root}
    with airflow_standalone(home, dags, env) as server:
        server.wait_for(lambda: server.api("GET", f"/dags/{DAG_ID}")[0] == 200, 90, "the DAG to be parsed")
        status, body = server.api("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
        assert status == 200, body

        def create_backfill(reprocess: str = "none") -> None:
            # The same backfill `airflow backfill create --dag-id ... --reprocess-behavior ...` creates, through
            # the API server (the CLI writing to SQLite beside a running scheduler can hit "database is locked").
            body = {"dag_id": DAG_ID, "from_date": f"{DAY}T00:00:00Z", "to_date": f"{DAY + timedelta(days=1)}T00:00:00Z",
                    "reprocess_behavior": reprocess, "max_active_runs": 2, "run_backwards": False, "dag_run_conf": {}}  # fmt: skip
            # Airflow answers 503 "Database is locked" while the scheduler holds SQLite's write lock: a
            # transient answer of SQLite (not of the backfill), asked again until the lock is free
            for _ in range(30):
                status, answer = server.api("POST", "/backfills", body)
                # 503: SQLite's lock; 409: the first backfill not yet marked complete by the scheduler
                if status not in (409, 503):
                    break
                time.sleep(2)
            assert status == 200, answer

        def runs_succeeded() -> bool:
            status, body = server.api("GET", f"/dags/{DAG_ID}/dagRuns?run_type=backfill")
            runs = body.get("dag_runs", []) if status == 200 else []
            return len(runs) == 2 and all(r["state"] == "success" for r in runs)

        create_backfill()
        server.wait_for(lambda: runs_succeeded() and _feedback_joined(root, DAY + timedelta(days=1)) is not None,
                        240, "the first backfill")  # fmt: skip
        before = _feedback_joined(root, DAY)
        assert before is not None

        def backfills_completed() -> bool:
            status, body = server.api("GET", f"/backfills?dag_id={DAG_ID}")
            return status == 200 and all(b.get("completed_at") for b in body.get("backfills", []))

        server.wait_for(backfills_completed, 120, "the first backfill to be marked completed")
        for folder in later.iterdir():
            folder.rename(feedback / folder.name)  # the late corrections land
        create_backfill("completed")
        server.wait_for(lambda: (_feedback_joined(root, DAY) or 0) > before and runs_succeeded(), 240,
                        "the backfill to rewrite the day with the late feedback")  # fmt: skip

        status, runs = server.api("GET", f"/dags/{DAG_ID}/dagRuns?run_type=backfill")
        backfill_run_ids = {r["dag_run_id"] for r in runs["dag_runs"]}
        status, events = server.api("GET", f"/assets/events?source_dag_id={DAG_ID}")
        assert status == 200, events
        announced = [e for e in events["asset_events"] if e.get("source_run_id") in backfill_run_ids]
        assert announced == [], "backfill runs must not announce reward data"
        for run in runs["dag_runs"]:
            _, tis = server.api("GET", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances")
            states = {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}
            assert states == {"ingest_day": "success", "build_reward_partition": "success",
                              "announce_reward_data": "skipped"}, states  # fmt: skip
