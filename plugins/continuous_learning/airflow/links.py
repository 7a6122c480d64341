"""Extra links shown on task instances in the Airflow UI (the "Links" of a task), and the URLs behind them.

Airflow 3 computes each link when the task finishes and keeps the URL in XCom; the UI shows it as a
button on the task instance. The run report's URL is computed here once (:func:`report_url`): the gate,
the approval and the promote task push it under :data:`REPORT_KEY`, and :class:`RunReportLink` shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

#: The XCom key of the run report's URL.
REPORT_KEY = "report_url"


def _return_value(ti_key: Any) -> Any:
    return XCom.get_value(key="return_value", ti_key=ti_key)


def browsable(uri: str) -> str:
    """An ``s3://`` URI as its S3 console page; other URIs unchanged."""
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"
    return uri


def report_url(decision: Mapping[str, Any] | None) -> str | None:
    """The run report of a gate document (``decision["report"]["html"]``) as a URL a browser opens: an
    ``s3://`` object as its virtual-hosted HTTPS URL (the HTML renders there), other URIs unchanged; None
    when the gate wrote no report."""
    uri = ((decision or {}).get("report") or {}).get("html")
    if not uri:
        return None
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return f"https://{bucket}.s3.amazonaws.com/{key}"
    return str(uri)


class RunReportLink(BaseOperatorLink):
    """Link from the task to the run's HTML report."""

    name = "Run report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return str(XCom.get_value(key=REPORT_KEY, ti_key=ti_key) or "")


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


#: The DAG that moves production back (dags/model_rollback.py).
ROLLBACK_DAG_ID = "model_rollback"


def rollback_url(base_url: str | None = None) -> str:
    """The ``model_rollback`` DAG's page: *Trigger* there opens its form with ``target_version`` set to
    ``previous`` (the form's default: the version production replaced), so a person gives a reason and
    runs it. Airflow 3.3's UI reads no form values from a URL (its router has no trigger route), so the
    link cannot carry them; :func:`rollback_request` is the same rollback as one REST call.

    ``base_url``: the UI's address; default ``[api] base_url`` of the Airflow configuration."""
    if base_url is None:
        from airflow.providers.common.compat.sdk import conf

        base_url = conf.get("api", "base_url", fallback=None) or ""
    return f"{base_url.rstrip('/')}/dags/{ROLLBACK_DAG_ID}"


def rollback_request(target_version: str, reason: str, base_url: str | None = None) -> dict[str, Any]:
    """The REST call that triggers ``model_rollback`` with ``target_version`` and ``reason`` filled in:
    ``POST {url}`` with ``json`` (Airflow's ``/api/v2`` needs a token: ``POST /auth/token``)."""
    page = rollback_url(base_url)
    root = page.removesuffix(f"/dags/{ROLLBACK_DAG_ID}")
    return {
        "url": f"{root}/api/v2/dags/{ROLLBACK_DAG_ID}/dagRuns",
        "json": {"logical_date": None, "conf": {"target_version": target_version, "reason": reason}},
    }
