"""Helpers and constants shared by test modules (run requests and their Airflow context, the registry race, the
run report of a VeRL run, the live-feedback world); fixtures are in the conftest files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from continuous_learning import storage
from continuous_learning.data.ingest import ingest_day
from continuous_learning.data.synthetic import Serving, generate_logs
from continuous_learning.evaluation.report import build_report
from continuous_learning.registry import ModelRegistry, RegistryError

# -- run requests (tests/unit/test_validation.py, tests/unit/test_approval.py) ---------------------------

TODAY = date(2026, 11, 28)
DEFAULTS: dict[str, Any] = {
    "window_end": None,
    "lookback_days": None,
    "base_model_version": "production",
    "algorithm": None,
    "learning_rate": None,
    "max_steps": None,
    "samples_per_prompt": None,
    "dry_run": False,
    "skip_promotion": False,
    "force_promote": False,
    "force_promote_confirmation": None,
    "force_promote_reason": None,
}


class _TI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}
        self.task_id = "t"
        self.try_number = 1

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def airflow_context(**params: Any) -> dict[str, Any]:
    return {
        "params": {**DEFAULTS, **params},
        "ti": _TI(),
        "dag": SimpleNamespace(dag_id="continuous_training"),
        "run_id": "manual__test",
    }


# -- the registry (tests/unit/test_registry.py, tests/integration/test_registry_aws.py) ------------------


def race_for_production(root: str) -> list[str]:
    """Two registries on ``root`` move ``production`` (revision 1) to v1 and v2 at once, each from its own
    thread; each outcome is ``won`` or ``lost: <the error>``."""

    def attempt(version: str) -> str:
        try:
            ModelRegistry(root).move_alias("production", version, "race", None, expected_revision=1)
        except RegistryError as exc:
            return f"lost: {exc}"
        return "won"

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(attempt, ["v1", "v2"]))


# -- the run report (tests/unit/test_report_tables.py, tests/browser/test_report_page.py) ----------------

FIXTURE = Path(__file__).parent / "fixtures" / "verl-day1-metrics.jsonl"
DECISION: dict[str, Any] = {
    "promote": False,
    "reasons": ["the reward difference's CI [-0.02, 0.05] includes 0"],
    "overall": {"mean": 0.015, "low": -0.02, "high": 0.05, "n": 64},
    "slices": {"agent=billing": {"mean": -0.04, "low": -0.09, "high": -0.01, "n": 20},
               "agent=search": {"mean": 0.06, "low": 0.01, "high": 0.1, "n": 44}},
    "candidate_mean": 0.57, "production_mean": 0.555, "guardrails": {"response_length_ratio": 1.04},
}  # fmt: skip
MANIFEST = {
    "dataset_id": "2026-12-02-abc", "window": {"end": "2026-12-02", "lookback_days": 7},
    "counts": {"train": 120, "validation": 14, "test": 64},
    "counts_by_agent": {"train": {"billing": 40, "search": 80}, "validation": {"billing": 4, "search": 10},
                        "test": {"billing": 20, "search": 44}},
}  # fmt: skip


def report(tmp_path: Path, history: list[dict[str, float]]) -> str:
    uris = build_report(
        f"file://{tmp_path}/run",
        dataset_manifest=MANIFEST,
        train_result={"steps": len(history), "status": "succeeded", "history": history, "base_model_version": "v3",
                      "metrics": {"reward_first": 0.557, "reward_last": 0.534}, "versions": {"verl": "0.9.1"}},
        eval_result={"scores_uri": f"file://{tmp_path}/none.parquet", "prompts": 64,
                     "mean_reward": {"candidate": 0.57, "production": 0.555},
                     "tool_call_validity": {"candidate": 0.98, "production": 0.97},
                     "mean_response_chars": {"candidate": 240.0, "production": 231.0}},
        decision=DECISION, candidate_version="v4", production_version="v3",
    )  # fmt: skip
    return storage.read_bytes(uris["html"]).decode()


# -- live feedback (tests/unit/test_live_feedback.py, tests/integration/test_live_feedback_dag.py) -------
# (the `topic` fixture they share is in tests/conftest.py)

START = date(2026, 11, 1)
DAYS = 8  # v1 serves days 1-5, v2 days 6-8
PER_DAY = 240


def world(root: str, v2_accuracy: float | None) -> list[Any]:
    """The default world with v1 then v2 serving; v2 right ``v2_accuracy`` of the time (v1: 60%). Every
    day is ingested with its late feedback; the reports come back."""
    serving = {
        START + timedelta(days=n): Serving("v1") if n < 5 else Serving("v2", accuracy=v2_accuracy)
        for n in range(DAYS)
    }
    generate_logs(root, START, DAYS, PER_DAY, seed=11, serving=serving)
    return [
        ingest_day(START + timedelta(days=n), f"{root}/raw", f"{root}/data", f"{root}/feedback")
        for n in range(DAYS)
    ]


def promote(registry_uri: str, *versions: str) -> None:
    registry = ModelRegistry(registry_uri)
    for version in versions:
        registered = registry.register(f"file:///models/{version}", f"run-{version}", None, None)
        assert registered.version == version
        current = registry.alias("production")
        registry.promote(version, "test", f"run-{version}", current.revision if current else 0)
