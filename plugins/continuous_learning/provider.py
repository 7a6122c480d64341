"""The Airflow provider registration of the ``continuous-learning`` distribution, and where its DAGs are.

Airflow finds :func:`get_provider_info` through the ``apache_airflow_provider`` entry point
(``pyproject.toml``): ``airflow providers list`` shows the package, and its hooks, extra links and
triggers are known to the api-server and the triggerer without a plugins folder.

The DAG files ship inside the package as ``continuous_learning/dags/*.py`` (the repository's ``dags/``).
A deployment either points Airflow at them, ``AIRFLOW__CORE__DAGS_FOLDER="$(python -c 'import
continuous_learning.provider as p; print(p.dags_folder())')"``, or copies them into its own dags folder
(MWAA's S3 ``dags/``, a git-sync repository): ``cp "$(python -c '...')"/*.py <dags folder>/``. The DAG files
import only ``continuous_learning``, so they work from either place.

Nothing here runs on import, and nothing is imported but the standard library: Airflow calls
:func:`get_provider_info` in every process that lists providers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The distribution's version (``pyproject.toml`` reads it from here).
VERSION = "0.1.0"
PACKAGE_NAME = "continuous-learning"
INTEGRATION = "Continuous Learning"
HYPERPOD = "Amazon SageMaker HyperPod"
KUBERAY = "KubeRay"


def get_provider_info() -> dict[str, Any]:
    """The provider's metadata, in the shape of ``airflow/provider_info.schema.json``.

    No ``connection-types``: the hooks use the Amazon provider's ``aws`` connection and the cncf.kubernetes
    provider's ``kubernetes`` connection (or the EKS token), not a connection type of their own.
    """
    return {
        "package-name": PACKAGE_NAME,
        "name": INTEGRATION,
        "description": (
            "Scheduled continuous learning of AI agents: interaction logs and feedback to a reward dataset, "
            "RL training (VeRL/SGLang on KubeRay and SageMaker HyperPod, or a local Ray head), evaluation "
            "against production, a statistical gate and promotion.\n"
        ),
        "versions": [VERSION],
        "integrations": [
            {"integration-name": INTEGRATION, "tags": ["ml"]},
            {
                "integration-name": HYPERPOD,
                "external-doc-url": "https://aws.amazon.com/sagemaker/ai/hyperpod/",
                "tags": ["aws"],
            },
            {
                "integration-name": KUBERAY,
                "external-doc-url": "https://docs.ray.io/en/latest/cluster/kubernetes/",
            },
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "continuous_learning.airflow.approval",
                    "continuous_learning.airflow.dataset",
                    "continuous_learning.airflow.evaluation",
                    "continuous_learning.airflow.ingest",
                    "continuous_learning.airflow.late_feedback",
                    "continuous_learning.airflow.promotion",
                    "continuous_learning.airflow.serving",
                    "continuous_learning.airflow.training",
                    "continuous_learning.airflow.validation",
                ],
            },
            {
                "integration-name": KUBERAY,
                "python-modules": [
                    "continuous_learning.airflow.ray_cluster",
                    "continuous_learning.airflow.ray_job",
                ],
            },
            {"integration-name": HYPERPOD, "python-modules": ["continuous_learning.airflow.capacity"]},
        ],
        "hooks": [
            {"integration-name": HYPERPOD, "python-modules": ["continuous_learning.airflow.hooks"]},
            {"integration-name": KUBERAY, "python-modules": ["continuous_learning.airflow.hooks"]},
            {
                "integration-name": INTEGRATION,
                "python-modules": ["continuous_learning.airflow.serving_hooks"],
            },
        ],
        "triggers": [
            {"integration-name": HYPERPOD, "python-modules": ["continuous_learning.airflow.triggers"]},
            {"integration-name": KUBERAY, "python-modules": ["continuous_learning.airflow.triggers"]},
            {
                "integration-name": INTEGRATION,
                "python-modules": ["continuous_learning.airflow.serving_hooks"],
            },
        ],
        "extra-links": [
            "continuous_learning.airflow.links.RayDashboardLink",
            "continuous_learning.airflow.links.RegistryEntryLink",
            "continuous_learning.airflow.links.RunReportLink",
        ],
    }


def dags_folder() -> Path:
    """The folder of the shipped DAG files: ``continuous_learning/dags`` of the installed package, or the
    repository's ``dags/`` in a checkout (an editable install maps one onto the other)."""
    shipped = Path(__file__).parent / "dags"
    if shipped.is_dir():
        return shipped
    checkout = Path(__file__).resolve().parents[2] / "dags"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"no DAG files beside {Path(__file__).parent}: is {PACKAGE_NAME} installed?")
