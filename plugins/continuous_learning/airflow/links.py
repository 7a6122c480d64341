"""Extra links shown on task instances in the Airflow UI (the "Links" of a task).

Airflow 3 computes each link when the task finishes and keeps the URL in XCom; the UI shows it as a
button on the task instance. ``RunReportLink`` (the HTML run report) lives in :mod:`.promotion`.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom


def _return_value(ti_key: Any) -> Any:
    return XCom.get_value(key="return_value", ti_key=ti_key)


def browsable(uri: str) -> str:
    """An ``s3://`` URI as its S3 console page; other URIs unchanged."""
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"
    return uri


class RayDashboardLink(BaseOperatorLink):
    """The Ray dashboard of the run's cluster (the create task's XCom holds ``dashboard_url``).

    Local Ray only: a KubeRay head's dashboard is reached through ``kubectl port-forward`` (see the
    handbook), so the link is empty there.
    """

    name = "Ray dashboard"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        document = _return_value(ti_key)
        if isinstance(document, dict):
            return str(document.get("dashboard_url") or "")
        return ""


class RegistryEntryLink(BaseOperatorLink):
    """The model registry's document of the version this task produced or promoted."""

    name = "Registry entry"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        document = _return_value(ti_key)
        version = document.get("version") if isinstance(document, dict) else None
        if not version:
            return ""
        from continuous_learning.config import load_settings

        registry = load_settings().storage.registry_uri
        return browsable(f"{registry}/versions/{version}.json")
