"""### Continuous training

Train a candidate on recent agent experience; promote it **only if it is better** than production.

Runs daily at 06:00 UTC, or as soon as new reward partitions land (`interaction_ingest`,
`late_feedback_reprocess`). Manual runs: **Trigger** with the form below; sections *Data*, *Model and
training*, *Run mode*, *Promotion approval* and *Force promotion (guarded)*. Empty fields keep the
configured settings.

| stage | what it does | output (under `storage.root`) |
|---|---|---|
| `validate_request` | checks the request: bounds, known model version, force-promote confirmation | log; XCom: effective values |
| `assemble_dataset` | union of the window's reward partitions; skips the run when too small | `data/datasets/<id>/` + `manifest.json` |
| `create_ray_cluster` | setup: local Ray head, or KubeRay on HyperPod | XCom: cluster document; link *Ray dashboard* |
| `ensure_base_model` | production model (first run: imports `model.base_uri` as v0) | `registry/versions/v0.json` |
| `train_candidate` | Ray job: GRPO/PPO from the base model; registers the `candidate` | `runs/<run>/train/`; link *Registry entry* |
| `evaluate` | Ray job: candidate and base generate on held-out prompts, same rewards | `runs/<run>/eval/scores.parquet` |
| `gate` | paired bootstrap CI, per-agent slices, guardrails; writes the run report | `runs/<run>/gate.json`, report; link *Run report* |
| `approve_promotion` | only with `promotion.require_approval` (or the Param): a person approves or rejects; skipped otherwise | `runs/<run>/approval.json`; XCom: who, when, comment |
| `promote` | compare-and-swap of `production`, or a skip that says why | `registry/aliases/production/` |
| `delete_ray_cluster` | teardown: always runs, whatever failed above | |

**Dry run** stops after the specs (`runs/<run>/specs/`) and skips the rest with the reason.
**Approval** (off by default): answer in *Required actions* or on the `approve_promotion` task; no answer
within `approval_timeout_hours` means no promotion.
Why a run skipped: the skipped task's log, the `RUN NOTE:` line (also XCom `run_note`).
Handbook: `docs/operations.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param
from continuous_learning.airflow.approval import PromotionApprovalOperator
from continuous_learning.airflow.assets import PRODUCTION_MODEL, REWARD_PARTITIONS
from continuous_learning.airflow.dataset import AssembleTrainingDatasetOperator
from continuous_learning.airflow.evaluation import EvaluateCandidateOperator, EvaluationGateOperator
from continuous_learning.airflow.links import RayDashboardLink, RegistryEntryLink, RunReportLink
from continuous_learning.airflow.notifications import on_task_failure
from continuous_learning.airflow.promotion import PromoteModelOperator
from continuous_learning.airflow.ray_cluster import CreateRayClusterOperator, DeleteRayClusterOperator
from continuous_learning.airflow.training import EnsureBaseModelOperator, TrainCandidateOperator
from continuous_learning.airflow.validation import ValidateRequestOperator
from continuous_learning.promotion_policy import FORCE_PROMOTE_CONFIRMATION

DOCS = {
    "validate_request": "Checks the run request before anything starts: numbers in range, the base model "
    "version exists in the registry, force-promote has its typed confirmation and a reason, no contradictory "
    "switches. Fails at once (no retry) with a message naming the field. Output: the effective values (XCom).",
    "assemble_dataset": "Union of the reward partitions of the lookback window, deduplicated. Skips the whole "
    "run (with the row counts) when there is too little data. Output: `data/datasets/<id>/` and its "
    "`manifest.json` under `storage.root`.",
    "create_ray_cluster": "Setup task: a local Ray head (local) or a KubeRay RayCluster on HyperPod (prod, "
    "after HyperPod capacity). Output: the cluster document in XCom; the *Ray dashboard* link (local Ray).",
    "ensure_base_model": "Returns the base model (the `base_model_version` Param, default production). On "
    "the very first run, imports the configured `model.base_uri` (your production model) as v0, with its "
    "lineage (the local demo's default `builtin:tiny` builds a tiny model instead). Output: XCom with version, "
    "model URI, production revision, tool-call format.",
    "train_candidate": "Ray job: RL from the base model on the dataset; registers the new version and moves "
    "the `candidate` alias. Output: `runs/<run>/train/` (spec, result.json, model/); link *Registry entry*. "
    "Dry run: writes the train and eval specs, then skips with the reason.",
    "evaluate": "Ray job: candidate and base model generate on the held-out prompts and are scored with the "
    "same rewards. Output: `runs/<run>/eval/` (scores.parquet, result.json).",
    "gate": "Paired bootstrap confidence interval of the reward difference, per-agent slices and guardrails. "
    "Output: `runs/<run>/gate.json` and the HTML run report (link *Run report*).",
    "approve_promotion": "Only when approval is required (`promotion.require_approval`, or the run's "
    "`require_approval` Param) and something would be promoted: asks a person to approve the candidate "
    "(Human-in-the-loop: *Required actions* in the UI, or the task's page; REST: PATCH "
    "`.../taskInstances/approve_promotion/-1/hitlDetails`). The request shows candidate vs production and "
    "the run report. Skipped otherwise, without waiting. No answer within `approval_timeout_hours`: fails, "
    "nothing promoted. Output: `runs/<run>/approval.json`; XCom: the answer, who, when, comment.",
    "promote": "Moves `production` to the candidate by compare-and-swap when the gate said so (and, when "
    "approval is required, a person approved). A rejection by the gate or the approver skips this task with "
    "the reasons (a gate rejection sends the gate-rejection alert when alerts are on); force_promote "
    "overrides the gate with a recorded reason. Output: `registry/aliases/production/rev-*.json`.",
    "delete_ray_cluster": "Teardown task: deletes the run's Ray cluster (and returns HyperPod capacity) "
    "whatever failed before. If it failed itself, see docs/operations.md, 'A cluster is left behind'.",
}

with DAG(
    dag_id="continuous_training",
    description="Train a candidate on recent experience; promote it only if it is better",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=[REWARD_PARTITIONS]
    ),
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1), "on_failure_callback": on_task_failure},
    tags=["continuous-learning", "training"],
    doc_md=__doc__,
    params={
        # -- Data ------------------------------------------------------------------------------------
        "window_end": Param(
            None,
            type=["null", "string"],
            format="date",
            section="Data",
            title="Window end (YYYY-MM-DD)",
            description="Last day of the training window, a past day. Empty: the day before the run.",
        ),
        "lookback_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=90,
            section="Data",
            title="Lookback days",
            description="Days of reward data in the window (1-90). Empty: dataset.lookback_days (local 3, prod 7).",
        ),
        # -- Model and training ---------------------------------------------------------------------
        "base_model_version": Param(
            "production",
            type="string",
            pattern=r"^(production|v[0-9]+)$",
            section="Model and training",
            title="Base model version",
            description="Registry version to train from (e.g. v3), or 'production'. Must exist in the registry.",
        ),
        "algorithm": Param(
            None,
            type=["null", "string"],
            enum=[None, "grpo", "ppo", "sft"],
            # The form labels the empty choice with values_display["null"]; without it it reads "null".
            values_display={
                "null": "From settings (trainer.algorithm)",
                "grpo": "GRPO (group relative, no critic)",
                "ppo": "PPO (with critic)",
                "sft": "SFT on corrections and liked answers (gated like any candidate)",
            },
            section="Model and training",
            title="Algorithm",
            description="RL algorithm, or SFT on corrections and positively rated answers. Empty: "
            "trainer.algorithm (grpo).",
        ),
        "learning_rate": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            maximum=1,
            section="Model and training",
            title="Learning rate",
            description="Greater than 0, at most 1. Empty: trainer.learning_rate (local 2e-4, prod 1e-6).",
        ),
        "max_steps": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=100000,
            section="Model and training",
            title="Max steps",
            description="Optimizer steps (1-100000). Empty: trainer.max_steps.",
        ),
        "samples_per_prompt": Param(
            None,
            type=["null", "integer"],
            minimum=2,
            maximum=64,
            section="Model and training",
            title="Samples per prompt",
            description="Completions per prompt for the group baseline (2-64). Empty: trainer.samples_per_prompt.",
        ),
        # -- Run mode -------------------------------------------------------------------------------
        "dry_run": Param(
            False,
            type="boolean",
            section="Run mode",
            title="Dry run",
            description=(
                "Validate, assemble the dataset, bring the cluster up and down, ensure the base model and "
                "write the specs; skip training, evaluation, gate and promotion (the skip says why)."
            ),
        ),
        "skip_promotion": Param(
            False,
            type="boolean",
            section="Run mode",
            title="Skip promotion",
            description="Train and evaluate, but never move the production alias.",
        ),
        # -- Promotion approval ---------------------------------------------------------------------
        "require_approval": Param(
            False,
            type="boolean",
            section="Promotion approval",
            title="Require approval",
            description=(
                "On: a person must approve before this run's candidate goes to production (task "
                "approve_promotion). Off: as configured (promotion.require_approval, default off); a run "
                "cannot switch off a configured requirement."
            ),
        ),
        "approval_timeout_hours": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            maximum=168,
            section="Promotion approval",
            title="Approval timeout (hours)",
            description=(
                "How long to wait for an answer (at most 168). No answer in time: the candidate is not "
                "promoted. Empty: promotion.approval_timeout_hours (24)."
            ),
        ),
        # -- Force promotion (guarded) --------------------------------------------------------------
        "force_promote": Param(
            False,
            type="boolean",
            section="Force promotion (guarded)",
            title="Force promote",
            description=(
                "Promote the candidate even if the gate rejects it. Needs the confirmation and a reason; "
                "recorded in the production alias history. Not with dry run or skip promotion."
            ),
        ),
        "force_promote_confirmation": Param(
            None,
            type=["null", "string"],
            section="Force promotion (guarded)",
            title="Confirmation",
            description=f"Type {FORCE_PROMOTE_CONFIRMATION} to confirm a forced promotion.",
        ),
        "force_promote_reason": Param(
            None,
            type=["null", "string"],
            maxLength=500,
            section="Force promotion (guarded)",
            title="Reason for forcing",
            description="Why the gate is overruled (at least 10 characters); kept in the alias history.",
        ),
    },
):
    validate = ValidateRequestOperator(
        task_id="validate_request", kind="training", doc_md=DOCS["validate_request"]
    )
    dataset = AssembleTrainingDatasetOperator(task_id="assemble_dataset")
    cluster = CreateRayClusterOperator(task_id="create_ray_cluster")
    base = EnsureBaseModelOperator(
        task_id="ensure_base_model", cluster=cluster.output, dataset=dataset.output
    )
    candidate = TrainCandidateOperator(
        task_id="train_candidate", cluster=cluster.output, dataset=dataset.output, base=base.output
    )
    evaluation = EvaluateCandidateOperator(
        task_id="evaluate", cluster=cluster.output, dataset=dataset.output, base=base.output,
        candidate=candidate.output,
    )  # fmt: skip
    gate = EvaluationGateOperator(
        task_id="gate", evaluation=evaluation.output, dataset=dataset.output, candidate=candidate.output,
        base=base.output,
    )  # fmt: skip
    approval = PromotionApprovalOperator(
        task_id="approve_promotion", decision=gate.output, candidate=candidate.output, base=base.output,
    )  # fmt: skip
    # none_failed_min_one_success: promote also runs when approve_promotion skipped itself (approval off,
    # gate rejection); it checks the gate and the approval again. A failed approval (timeout) stops it.
    promote = PromoteModelOperator(
        task_id="promote", decision=gate.output, candidate=candidate.output, base=base.output,
        approval=approval.output, trigger_rule="none_failed_min_one_success", outlets=[PRODUCTION_MODEL],
    )  # fmt: skip
    teardown = DeleteRayClusterOperator(task_id="delete_ray_cluster", cluster=cluster.output)

    validate >> dataset >> cluster

    cluster.operator_extra_links = (RayDashboardLink(),)
    candidate.operator_extra_links = (RegistryEntryLink(),)
    promote.operator_extra_links = (RunReportLink(), RegistryEntryLink())
    approval.operator_extra_links = (RunReportLink(),)
    for task in (dataset, cluster, base, candidate, evaluation, gate, approval, promote, teardown):
        task.doc_md = DOCS[task.task_id]
    evaluation >> teardown
    cluster >> teardown.as_teardown(setups=cluster)
