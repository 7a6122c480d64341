"""Human approval before promotion, through a real scheduler (`airflow standalone`) and its REST API.

`continuous_training` runs for real (local Ray head, CPU trainer with tiny settings) with
`CL_PROMOTION__REQUIRE_APPROVAL=true` and a gate margin of -2 (so the gate always says promote). Each run
parks `approve_promotion` in `awaiting_input`; the test reads the request (subject, body with candidate vs
production and the report link) and answers it with `PATCH .../hitlDetails`, as an approver's script would:

1. Approve (with a comment): `promote` moves production to the candidate; the alias history names the
   approver and the comment.
2. Reject (with a comment): `promote` skips saying who rejected and why; production is unchanged.
3. No answer within the run's `approval_timeout_hours` (36 s here): the scheduler ends the wait,
   `approve_promotion` fails saying so, `promote` does not run; production is unchanged. Clearing
   `approve_promotion` (and downstream) asks again; an approval then promotes that candidate.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psutil
import pytest
from continuous_learning.registry import ModelRegistry
from continuous_learning.training import safe_run_id

from tests.browser.seed import seed
from tests.browser.standalone import Standalone, airflow_standalone
from tests.conftest import REPO

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 10)
DAG_ID = "continuous_training"
TASK = "approve_promotion"
TINY = {
    "CL_ENV": "local",
    "CL_DATASET__MIN_TRAIN_ROWS": "16",
    "CL_COMPUTE__LOCAL_RAY_NUM_CPUS": "1",
    "CL_TRAINER__MAX_STEPS": "2",
    "CL_TRAINER__WARM_START_STEPS": "10",
    "CL_TRAINER__PROMPTS_PER_STEP": "4",
    "CL_TRAINER__SAMPLES_PER_PROMPT": "2",
    "CL_TRAINER__MAX_COMPLETION_TOKENS": "24",
    "CL_EVALUATION__MAX_PROMPTS": "16",
    "CL_EVALUATION__BOOTSTRAP_RESAMPLES": "200",
    # The gate promotes whenever it can compare (the lower CI bound is always above -2): this test is about
    # what happens after the gate, not about whether 2 training steps help.
    "CL_EVALUATION__MARGIN": "-2",
    "CL_PROMOTION__REQUIRE_APPROVAL": "true",
}
HITL = f"/dags/{DAG_ID}/dagRuns/{{run}}/taskInstances/{TASK}/-1/hitlDetails"


def _ray_heads(root: str) -> dict[int, int]:
    """pid -> process group of the Ray processes that this test's runs started (their storage root)."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        if not any("/tmp/clray-" in part for part in proc.info["cmdline"] or []):
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("CL_STORAGE__ROOT") == root:
                found[proc.pid] = os.getpgid(proc.pid)
    return found


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Standalone, str]]:
    tmp = tmp_path_factory.mktemp("approval")
    root = f"file://{tmp / 'store'}"
    counts = seed(root, DAY, records=160, register_production=False)  # v0 is bootstrapped by the run
    assert counts["prompts"] > 16, counts
    dags = tmp / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / f"{DAG_ID}.py", dags)
    home = tmp / "airflow-home"
    home.mkdir()
    try:
        with airflow_standalone(home, dags, {**TINY, "CL_STORAGE__ROOT": root}) as server:
            server.wait_for(
                lambda: server.api("GET", f"/dags/{DAG_ID}")[0] == 200, 90, "the DAG to be parsed"
            )
            status, body = server.api("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
            assert status == 200, body
            yield server, root
    finally:
        # Each run's teardown task stops its Ray head; a test that stopped Airflow mid-run may leave one.
        left = _ray_heads(root)
        for group in set(left.values()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        _, alive = psutil.wait_procs([psutil.Process(p) for p in left if psutil.pid_exists(p)], timeout=30)
        for group in {left[p.pid] for p in alive}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    assert left == {}, f"Ray processes outlived their teardown task (stopped now): {left}"


def _registry(root: str) -> ModelRegistry:
    return ModelRegistry(f"{root}/registry")


def _trigger_and_wait_for_request(
    server: Standalone, conf: dict[str, Any]
) -> tuple[str, dict[str, Any], int]:
    """Trigger a run; wait until approve_promotion waits for a person; return the run id, the request and
    the scheduler log's size before the run."""
    since = _log_size(server)
    status, run = server.api(
        "POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"window_end": str(DAY), **conf}}
    )
    assert status == 200, run
    run_id = run["dag_run_id"]

    def waiting() -> bool:
        states = server.task_states(DAG_ID, run_id)
        assert "failed" not in states.values() and "upstream_failed" not in states.values(), states
        return states.get(TASK) == "awaiting_input"

    server.wait_for(waiting, 420, f"{TASK} of {run_id} to wait for input")
    status, request = server.api("GET", HITL.format(run=run_id))
    assert status == 200, request
    return run_id, request, since


def _log_size(server: Standalone) -> int:
    return len(server.log.read_bytes())


def _answer(server: Standalone, run_id: str, option: str, comment: str, since: int) -> dict[str, Any]:
    # Airflow 3.3.2 race, seen here: an answer that arrives before the scheduler has processed the parked
    # worker's exit (0.8 s to 5.5 s after the request appeared, in these runs) resumes the task first; the
    # scheduler then takes that exit for the resumed try's and marks the task failed ("finished with state
    # success, but the task instance's state attribute is queued"): fail closed, nothing promoted. A person
    # reading the request is slower than that; this script waits for the parked worker's exit in the
    # scheduler's log (written after ``since``, a log size taken before the request could exist), then for
    # a few scheduler loops.
    status, ti = server.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}")
    assert status == 200, ti

    def parked_worker_exited() -> bool:
        new = server.log.read_bytes()[since:].decode(errors="replace")
        return any(
            "final_state=awaiting_input" in line and f"workload_id={ti['id']}" in line
            for line in new.splitlines()
        )

    server.wait_for(parked_worker_exited, 60, "the parked worker to exit")
    time.sleep(3)
    status, body = server.api(
        "PATCH", HITL.format(run=run_id), {"chosen_options": [option], "params_input": {"comment": comment}}
    )
    assert status == 200, body
    return dict(body)


def _approval_record(root: str, run_id: str) -> dict[str, Any]:
    path = Path(root.removeprefix("file://")) / "runs" / safe_run_id(f"{DAG_ID}__{run_id}") / "approval.json"
    return dict(json.loads(path.read_text()))


def test_approve_promotes_and_reject_keeps_production(airflow: tuple[Standalone, str]) -> None:
    server, root = airflow
    started = time.monotonic()

    # 1. Approve.
    run_id, request, since = _trigger_and_wait_for_request(server, {})
    waited = time.monotonic() - started
    registry = _registry(root)
    assert registry.alias("production").version == "v0"  # type: ignore[union-attr]
    candidate = registry.alias("candidate").version  # type: ignore[union-attr]
    assert candidate == "v1"
    assert request["options"] == ["Approve", "Reject"] and not request["response_received"]
    assert request["subject"] == "Promote v1 to production (now v0)?"
    body = request["body"]
    assert "| mean reward |" in body and "candidate v1" in body and "production v0" in body, body
    assert "report.html" in body and "Gate: **PROMOTE**" in body, body
    assert set(request["params"]) == {"comment"}, request[
        "params"
    ]  # only the approver's field, no DAG Params
    # Listed among the open requests (what the UI's Required actions page shows).
    status, pending = server.api("GET", "/dags/~/dagRuns/~/hitlDetails?response_received=false")
    assert status == 200 and [d["task_instance"]["dag_run_id"] for d in pending["hitl_details"]] == [run_id]

    answer = _answer(server, run_id, "Approve", "numbers look right; ship it", since)
    assert answer["responded_by"]["name"] == "admin"
    run = server.wait_run_finished(DAG_ID, run_id, 180)
    states = server.task_states(DAG_ID, run_id)
    print(f"approved run: waited for input after {waited:.0f}s, done after {time.monotonic() - started:.0f}s")
    assert run["state"] == "success", states
    assert states[TASK] == "success" and states["promote"] == "success", states
    production = registry.alias("production")
    assert production is not None and production.version == "v1"
    assert "approved by admin" in production.reason and "ship it" in production.reason, production.reason
    record = _approval_record(root, run_id)
    assert record["approved"] is True and record["responded_by"]["name"] == "admin"
    assert record["comment"] == "numbers look right; ship it"

    # 2. Reject: the next run trains v2 from v1; the approver says no.
    second = time.monotonic()
    run_id, request, since = _trigger_and_wait_for_request(server, {})
    assert request["subject"] == "Promote v2 to production (now v1)?"
    _answer(server, run_id, "Reject", "regressions on calendar prompts", since)
    run = server.wait_run_finished(DAG_ID, run_id, 180)
    states = server.task_states(DAG_ID, run_id)
    print(f"rejected run: done after {time.monotonic() - second:.0f}s")
    assert run["state"] == "success", states
    assert states[TASK] == "success" and states["promote"] == "skipped", states
    assert registry.alias("production").version == "v1"  # type: ignore[union-attr]
    assert [r.version for r in registry.history("production")] == ["v0", "v1"]
    record = _approval_record(root, run_id)
    assert record["approved"] is False and record["candidate"] == "v2"
    assert (
        record["responded_by"]["name"] == "admin" and record["comment"] == "regressions on calendar prompts"
    )
    promote_log = server.task_log(DAG_ID, run_id, "promote")
    assert "v2 rejected by admin" in promote_log and "regressions on calendar prompts" in promote_log, (
        promote_log[-2000:]
    )


def test_no_answer_in_time_fails_closed(airflow: tuple[Standalone, str]) -> None:
    server, root = airflow
    registry = _registry(root)
    before = [r.version for r in registry.history("production")]
    started = time.monotonic()
    run_id, request, _ = _trigger_and_wait_for_request(server, {"approval_timeout_hours": 0.01})  # 36 s
    assert "(0.01 h)" in request["body"], request["body"]
    run = server.wait_run_finished(DAG_ID, run_id, 150)
    states = server.task_states(DAG_ID, run_id)
    print(f"timed-out run: done after {time.monotonic() - started:.0f}s")
    assert run["state"] == "failed", states
    assert states[TASK] == "failed" and states["promote"] == "upstream_failed", states
    assert states["delete_ray_cluster"] == "success", states
    assert [r.version for r in registry.history("production")] == before
    record = _approval_record(root, run_id)
    assert record["timed_out"] is True and record["approved"] is False
    log = server.task_log(DAG_ID, run_id, TASK)
    assert "no answer to the approval request within 0.01 h" in log and "NOT promoted" in log, log[-2000:]

    # The handbook's way to promote that candidate after all: clear approve_promotion with its downstream
    # task; it asks again (new timeout); an approval then promotes it, production not having moved since.
    since = _log_size(server)
    status, cleared = server.api(
        "POST",
        f"/dags/{DAG_ID}/clearTaskInstances",
        {"dry_run": False, "dag_run_id": run_id, "task_ids": [TASK], "include_downstream": True,
         "only_failed": False},
    )  # fmt: skip
    assert status == 200, cleared
    assert {ti["task_id"] for ti in cleared["task_instances"]} == {TASK, "promote"}, cleared
    server.wait_for(
        lambda: server.task_states(DAG_ID, run_id).get(TASK) == "awaiting_input", 60, "the request again"
    )
    candidate = record["candidate"]
    _answer(server, run_id, "Approve", "late, but approved", since)
    run = server.wait_run_finished(DAG_ID, run_id, 180)
    states = server.task_states(DAG_ID, run_id)
    print(f"timed-out run cleared and approved: done after {time.monotonic() - started:.0f}s")
    assert run["state"] == "success" and states["promote"] == "success", states
    assert registry.alias("production").version == candidate  # type: ignore[union-attr]
    assert _approval_record(root, run_id)["comment"] == "late, but approved"
