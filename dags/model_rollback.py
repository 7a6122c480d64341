"""Rollback: move the `production` alias back to a model version that served before.

Manual only. The target must exist and have been production before; the move and its reason are kept
in the alias history (and, in prod, mirrored to the SageMaker Model Registry's approval status).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, Param
from continuous_learning.airflow.promotion import RollbackModelOperator

PRODUCTION_MODEL = Asset(name="continuous_learning.production_model")

with DAG(
    dag_id="model_rollback",
    description="Move production back to an earlier model version, with a reason",
    schedule=None,
    start_date=datetime(2026, 11, 1),
    catchup=False,
    tags=["continuous-learning", "registry"],
    doc_md=__doc__,
    params={
        "target_version": Param(
            "previous",
            type="string",
            pattern=r"^(previous|v[0-9]+)$",
            title="Target version",
            description="A version such as v3 that was production before, or 'previous'.",
        ),
        "reason": Param(type="string", minLength=5, title="Reason", description="Why; kept in the history."),
    },
):
    RollbackModelOperator(
        task_id="rollback_production",
        target_version="{{ params.target_version }}",
        reason="{{ params.reason }}",
        outlets=[PRODUCTION_MODEL],
    )
