"""### Deploy production

Hand the production model to serving, each time `promote` (continuous_training) or `model_rollback` moves
the `production` alias: scheduled on the `continuous_learning.production_model` Asset, whose events carry
the model (a `ProductionModelEvent`: version, model URI, registry revision, LoRA adapter). A manual run
deploys the current production again.

| stage | what it does | output |
|---|---|---|
| `resolve_model` | the newest triggering event (one behind the alias is superseded and skips), or the current production | XCom: the event |
| `deploy_sagemaker` | `serving.target = sagemaker`: Model + EndpointConfig for the version, endpoint created or updated blue/green with a canary, rolled back on CloudWatch alarms | the endpoint serves the version |
| `deploy_sglang` | `serving.target = sglang`: the SGLang Deployment rolled to the new weights (ready before traffic moves, rolled back when it never gets ready), or a LoRA adapter loaded without a restart | the Deployment serves the version |

The target that `serving.target` does not pick skips (`none`: both skip). Handbook: `docs/operations.md`,
"Serving hand-off".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG
from continuous_learning.airflow.assets import PRODUCTION_MODEL
from continuous_learning.airflow.notifications import on_task_failure
from continuous_learning.airflow.serving import (
    DeploySageMakerEndpointOperator,
    DeploySGLangOperator,
    ResolveProductionModelOperator,
)

with DAG(
    dag_id="deploy_production",
    description="Deploy the production model to serving (SageMaker endpoint or SGLang on EKS)",
    schedule=[PRODUCTION_MODEL],
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    tags=["continuous-learning", "serving"],
    doc_md=__doc__,
    default_args={"on_failure_callback": on_task_failure, "retries": 2, "retry_delay": timedelta(minutes=1)},
):
    resolve = ResolveProductionModelOperator(
        task_id="resolve_model",
        doc_md="The production model to deploy, from the triggering Asset events (newest revision) or, on a "
        "manual run, the registry's production alias. Skips when superseded.",
    )
    sagemaker = DeploySageMakerEndpointOperator(
        task_id="deploy_sagemaker",
        model=resolve.output,
        doc_md="SageMaker endpoint: blue/green canary with auto-rollback on CloudWatch alarms; skips unless "
        "serving.target = sagemaker.",
    )
    sglang = DeploySGLangOperator(
        task_id="deploy_sglang",
        model=resolve.output,
        doc_md="SGLang Deployment on EKS: rolling update checked ready, rolled back when not; LoRA hot load; "
        "skips unless serving.target = sglang.",
    )
    resolve >> [sagemaker, sglang]
