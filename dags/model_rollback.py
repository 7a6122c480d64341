"""### Model rollback

Move the `production` alias back to a model version that served before. **Manual only**: Trigger, fill
the form (target version and reason), run.

| stage | what it does | output (under `storage.root`) |
|---|---|---|
| `validate_request` | target is `previous` or a version in the registry; a reason is given | log |
| `rollback_production` | compare-and-swap of `production` to the target, which must have been production before | `registry/aliases/production/rev-*.json`, `registry/aliases/previous/`; link *Registry entry* |

The move and its reason are kept in the alias history (and, in prod, mirrored to the SageMaker Model
Registry's approval status). Consumers of the `continuous_learning.production_model` Asset are triggered.
Handbook: `docs/operations.md`, "Rollback".
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param
from continuous_learning.airflow.assets import PRODUCTION_MODEL
from continuous_learning.airflow.links import RegistryEntryLink
from continuous_learning.airflow.notifications import on_task_failure
from continuous_learning.airflow.promotion import RollbackModelOperator
from continuous_learning.airflow.validation import ValidateRequestOperator

with DAG(
    dag_id="model_rollback",
    description="Move production back to an earlier model version, with a reason",
    schedule=None,
    start_date=datetime(2026, 11, 1),
    catchup=False,
    tags=["continuous-learning", "registry"],
    doc_md=__doc__,
    default_args={"on_failure_callback": on_task_failure},
    params={
        "target_version": Param(
            "previous",
            type="string",
            pattern=r"^(previous|v[0-9]+)$",
            section="Rollback",
            title="Target version",
            description="A version such as v3 that was production before, or 'previous' (the one before the "
            "current production).",
        ),
        "reason": Param(
            type="string",
            minLength=5,
            maxLength=500,
            section="Rollback",
            title="Reason",
            description="Why (at least 5 characters); kept in the production alias history.",
        ),
    },
):
    validate = ValidateRequestOperator(
        task_id="validate_request",
        kind="rollback",
        doc_md="Checks the target version exists in the registry (or is `previous`) and a reason is given; "
        "fails at once naming the field.",
    )
    rollback = RollbackModelOperator(
        task_id="rollback_production",
        doc_md="Moves `production` back to the target by compare-and-swap; the target must have been production "
        "before. Output: a new `registry/aliases/production/rev-*.json` with the reason.",
        target_version="{{ params.target_version }}",
        reason="{{ params.reason }}",
        outlets=[PRODUCTION_MODEL],
    )
    rollback.operator_extra_links = (RegistryEntryLink(),)
    validate >> rollback
