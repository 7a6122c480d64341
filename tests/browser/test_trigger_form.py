"""The trigger form of `continuous_training` in a real browser, against a real `airflow standalone`.

Seeds one day of data, starts Airflow (SQLite, parallelism 4) on a free loopback port with a private
AIRFLOW_HOME, fills the form in headless Chromium (Debian's, driven by Playwright), triggers a dry run,
and checks in the UI and through the REST API that it succeeded with the values typed. Then checks that
bad requests read well: a negative max_steps is refused by Param validation, an unknown base model
version fails `validate_request` with a message naming the field.

Screenshots: tests/browser/artifacts/ (gitignored), or $CL_BROWSER_ARTIFACTS.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import CHROMIUM, CHROMIUM_FLAGS
from tests.browser.seed import seed
from tests.browser.standalone import Standalone, airflow_standalone
from tests.conftest import REPO

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 10)
DAG_ID = "continuous_training"
TINY = {
    "CL_ENV": "local",
    "CL_DATASET__MIN_TRAIN_ROWS": "16",
    "CL_COMPUTE__LOCAL_RAY_NUM_CPUS": "1",
    "CL_TRAINER__MAX_STEPS": "3",
    "CL_TRAINER__WARM_START_STEPS": "15",
    "CL_TRAINER__PROMPTS_PER_STEP": "4",
    "CL_TRAINER__SAMPLES_PER_PROMPT": "2",
    "CL_TRAINER__MAX_COMPLETION_TOKENS": "24",
    "CL_EVALUATION__MAX_PROMPTS": "16",
    "CL_EVALUATION__BOOTSTRAP_RESAMPLES": "200",
}


@pytest.fixture(scope="module")
def artifacts() -> Path:
    path = Path(os.environ.get("CL_BROWSER_ARTIFACTS") or REPO / "tests" / "browser" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):
        old.unlink()
    print(f"\nbrowser test artifacts (screenshots): {path}")
    return path


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Standalone, str]]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser-tools` (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("browser")
    root = f"file://{tmp / 'store'}"
    counts = seed(root, DAY)
    assert counts["prompts"] > 16, counts
    dags = tmp / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / f"{DAG_ID}.py", dags)  # only this DAG: nothing else gets scheduled
    home = tmp / "airflow-home"
    home.mkdir()
    started = time.monotonic()
    with airflow_standalone(home, dags, {**TINY, "CL_STORAGE__ROOT": root}) as server:
        server.wait_for(lambda: server.api("GET", f"/dags/{DAG_ID}")[0] == 200, 90, "the DAG to be parsed")
        print(f"airflow standalone up in {time.monotonic() - started:.0f}s at {server.url}; log {server.log}")
        yield server, root


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def _login(page: Any, server: Standalone, path: str) -> None:
    page.goto(f"{server.url}{path}")
    page.wait_for_url("**/auth/login**", timeout=30_000)
    page.fill("input[name=username]", server.user)
    page.fill("input[name=password]", server.password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{path}", timeout=30_000)


def _open_section(page: Any, name: str) -> None:
    trigger = page.locator(f'button[data-part="item-trigger"][id$=":trigger:{name}"]')
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    page.wait_for_timeout(200)


def test_dry_run_from_the_trigger_form(
    airflow: tuple[Standalone, str], browser: Any, artifacts: Path
) -> None:
    server, root = airflow
    started = time.monotonic()
    page = browser.new_page()
    _login(page, server, f"/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    page.get_by_text(f"Trigger Dag - {DAG_ID}").wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "01-trigger-form.png"))

    _open_section(page, "Data")
    page.fill("#element_window_end", DAY.isoformat())
    page.get_by_label("Lookback days").fill("2")
    _open_section(page, "Model and training")
    page.fill("#element_base_model_version", "v0")
    page.get_by_label("Max steps").fill("5")
    page.get_by_label("Samples per prompt").fill("4")
    page.get_by_label("Learning rate").fill("0.0005")
    # The empty algorithm choice reads as the settings' default, not "null".
    page.get_by_text("From settings (trainer.algorithm)").first.wait_for(timeout=10_000)
    page.screenshot(path=str(artifacts / "02-model-and-training.png"))
    _open_section(page, "Run mode")
    page.locator('label[id="switch:element_dry_run"]').click()
    assert page.locator('input[name="element_dry_run"]').is_checked()
    page.screenshot(path=str(artifacts / "03-run-mode-dry-run.png"))
    _open_section(page, "Promotion approval")
    assert not page.locator('input[name="element_require_approval"]').is_checked()
    page.get_by_label("Approval timeout (hours)").wait_for(timeout=10_000)
    page.locator('[data-testid="trigger-dag-submit"]').click()

    # The run, through the REST API: created with the values typed in the form.
    def latest_manual() -> dict[str, Any] | None:
        status, body = server.api(
            "GET", f"/dags/{DAG_ID}/dagRuns?run_type=manual&order_by=-run_after&limit=1"
        )
        return body["dag_runs"][0] if status == 200 and body["dag_runs"] else None

    run = server.wait_for(latest_manual, 30, "the triggered run")
    run_id = run["dag_run_id"]
    conf = run["conf"]
    assert conf["dry_run"] is True
    assert conf["window_end"] == DAY.isoformat()
    assert conf["base_model_version"] == "v0"
    assert (conf["lookback_days"], conf["max_steps"], conf["samples_per_prompt"]) == (2, 5, 4)
    assert conf["learning_rate"] == pytest.approx(0.0005)
    assert conf["force_promote"] is False

    run = server.wait_run_finished(DAG_ID, run_id, 150)
    states = server.task_states(DAG_ID, run_id)
    print(f"dry run {run_id}: {run['state']} in {time.monotonic() - started:.0f}s; {states}")
    assert run["state"] == "success", (states, server.log_tail())
    for task in ("validate_request", "assemble_dataset", "create_ray_cluster", "ensure_base_model",
                 "delete_ray_cluster"):  # fmt: skip
        assert states[task] == "success", (task, states)
    for task in ("train_candidate", "evaluate", "gate", "approve_promotion", "promote"):
        assert states[task] == "skipped", (task, states)

    # The skip says why; the effective values reached the specs; the cluster's dashboard is linked.
    train_log = server.task_log(DAG_ID, run_id, "train_candidate")
    assert "DRY RUN" in train_log and "RUN NOTE" in train_log, train_log[-2000:]
    runs_dir = Path(root.removeprefix("file://")) / "runs"
    specs = {p.name for p in runs_dir.glob("*/specs/*")} or {p.name for p in runs_dir.rglob("*spec*.json")}
    assert specs, f"no specs under {runs_dir}"
    status, links = server.api(
        "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/create_ray_cluster/links"
    )
    assert status == 200, links
    assert str(links["extra_links"].get("Ray dashboard", "")).startswith("http://127.0.0.1:"), links
    validate_log = server.task_log(DAG_ID, run_id, "validate_request")
    assert "'max_steps': 5" in validate_log and "'samples_per_prompt': 4" in validate_log, validate_log[
        -2000:
    ]

    # The run in the UI: its page shows it succeeded.
    page.goto(f"{server.url}/dags/{DAG_ID}/runs/{run_id}")
    page.get_by_text(run_id).first.wait_for(timeout=30_000)
    page.get_by_text("Success", exact=False).first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "04-dry-run-succeeded.png"), full_page=True)
    page.goto(f"{server.url}/dags/{DAG_ID}/runs/{run_id}/tasks/train_candidate")
    page.get_by_text("train_candidate").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "05-train-candidate-skipped.png"), full_page=True)
    page.close()


def test_form_refuses_a_negative_max_steps(
    airflow: tuple[Standalone, str], browser: Any, artifacts: Path
) -> None:
    server, _ = airflow
    page = browser.new_page()
    page.goto(f"{server.url}/dags/{DAG_ID}")
    if "/auth/login" in page.url:
        _login(page, server, f"/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    page.get_by_text(f"Trigger Dag - {DAG_ID}").wait_for(timeout=30_000)
    _open_section(page, "Model and training")
    page.get_by_label("Max steps").fill("-3")
    page.get_by_label("Samples per prompt").click()  # leave the field
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "06-form-negative-max-steps.png"))
    # The form's number field keeps the Param's bounds: a negative value is clamped to the minimum.
    assert page.get_by_label("Max steps").input_value() == "1"
    page.close()

    # The same through the REST API: Airflow's Param validation refuses it, naming the field.
    status, body = server.api(
        "POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"max_steps": -3}}
    )
    assert status == 400, body
    assert "max_steps" in str(body), body


def test_unknown_base_model_version_fails_validate_request(airflow: tuple[Standalone, str]) -> None:
    server, _ = airflow
    status, run = server.api(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        {
            "logical_date": None,
            "conf": {"base_model_version": "v99", "dry_run": True, "window_end": DAY.isoformat()},
        },
    )
    assert status == 200, run
    run = server.wait_run_finished(DAG_ID, run["dag_run_id"], 90)
    states = server.task_states(DAG_ID, run["dag_run_id"])
    assert run["state"] == "failed", states
    assert states["validate_request"] == "failed" and states["assemble_dataset"] == "upstream_failed", states
    assert states["create_ray_cluster"] != "success", states
    log = server.task_log(DAG_ID, run["dag_run_id"], "validate_request")
    assert "base_model_version: v99 is not in the model registry (known: v0)" in log, log[-2000:]
