"""Ray cluster life cycle for a DAG run: create (a setup task) and delete (a teardown task).

The backend comes from ``compute.backend``: ``local_ray`` starts a head on loopback in its own
process group. The XCom document carries what the delete needs, so teardown works from any worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from continuous_learning.airflow.context import task_settings

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException


class CreateRayClusterOperator(BaseOperator):
    """Bring up the Ray cluster the run's jobs will use; returns its address document."""

    ui_color = "#fff1d6"

    def execute(self, context: Context) -> dict[str, Any]:
        settings = task_settings(context)
        if settings.compute.backend != "local_ray":
            raise AirflowFailException(
                f"compute.backend={settings.compute.backend!r} is not available in this release; use 'local_ray'"
            )
        from continuous_learning.compute.local_ray import start_local_head
        from continuous_learning.training import job_environment

        head = start_local_head(
            settings.compute.local_ray_num_cpus,
            startup_timeout_s=settings.compute.cluster_startup_timeout_s,
            env=job_environment(settings),
        )
        self.log.info("Ray cluster ready: dashboard %s", head.dashboard_url)
        return {"backend": "local_ray", **head.as_dict()}


class DeleteRayClusterOperator(BaseOperator):
    """Delete the run's Ray cluster, whatever happened before. Idempotent.

    :param cluster: the create task's XCom document (templated); nothing to do when it is empty.
    """

    template_fields: Sequence[str] = ("cluster",)
    ui_color = "#fff1d6"

    def __init__(self, *, cluster: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster

    def execute(self, context: Context) -> None:
        if not self.cluster:
            self.log.info("no cluster was created for this run: nothing to delete")
            return
        if self.cluster.get("backend") == "local_ray":
            from continuous_learning.compute.local_ray import LocalRayHead, stop_local_head

            stopped = stop_local_head(LocalRayHead.from_dict(self.cluster))
            self.log.info("local Ray head stopped (%d processes)", stopped)
            return
        raise AirflowFailException(f"unknown cluster backend in {self.cluster!r}")
