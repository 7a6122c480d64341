"""Ray jobs through Ray's job submission API: submit once, re-attach on retry, stream logs.

The submission id derives from the caller's identity (DAG, run, task), so a retry or a crashed
worker finds the job already running and waits for it instead of submitting a second one. A new
job is submitted only after the previous attempt ended in failure.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class RayJobError(RuntimeError):
    """The job failed, was stopped, or did not finish in time."""


@dataclass(frozen=True)
class JobOutcome:
    submission_id: str
    status: str
    attached: bool
    logs_tail: str


def submission_base(*parts: str) -> str:
    """A stable, Ray-safe submission id prefix from e.g. (dag_id, run_id, task_id)."""
    raw = "--".join(parts)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw)[:180]


class RayJobRunner:
    """Runs entrypoints as Ray jobs on one cluster, addressed by its dashboard (job API) URL."""

    def __init__(self, address: str, client: Any = None) -> None:
        if client is None:
            from ray.job_submission import JobSubmissionClient

            client = JobSubmissionClient(address)
        self.address = address
        self.client = client

    def _attempts(self, base: str) -> list[tuple[int, str]]:
        found = []
        for job in self.client.list_jobs():
            sid = getattr(job, "submission_id", None) or ""
            match = re.fullmatch(re.escape(base) + r"-a(\d+)", sid)
            if match:
                found.append((int(match.group(1)), str(job.status)))
        return sorted(found)

    def submit_or_attach(
        self, base: str, entrypoint: str, env: dict[str, str] | None = None
    ) -> tuple[str, bool]:
        """The running or succeeded attempt of ``base``, else a new submission. Returns (id, attached)."""
        attempts = self._attempts(base)
        if attempts:
            number, status = attempts[-1]
            status = status.rsplit(".", 1)[-1]
            if status not in ("FAILED", "STOPPED"):
                log.info("re-attaching to Ray job %s-a%d (%s)", base, number, status)
                return f"{base}-a{number}", True
        number = attempts[-1][0] + 1 if attempts else 1
        submission_id = f"{base}-a{number}"
        self.client.submit_job(
            entrypoint=entrypoint,
            submission_id=submission_id,
            runtime_env={"env_vars": env or {}},
        )
        log.info("submitted Ray job %s: %s", submission_id, entrypoint)
        return submission_id, False

    def wait(
        self,
        submission_id: str,
        timeout_s: float,
        poll_s: float = 1.0,
        on_log: Callable[[str], None] | None = None,
    ) -> str:
        """Poll until the job is terminal, forwarding new log lines; returns the final status."""
        deadline = time.monotonic() + timeout_s
        printed = 0
        while True:
            status = str(self.client.get_job_status(submission_id)).rsplit(".", 1)[-1]
            logs = self.client.get_job_logs(submission_id)
            if on_log is not None and len(logs) > printed:
                for line in logs[printed:].splitlines():
                    on_log(line)
                printed = len(logs)
            if status in TERMINAL:
                return status
            if time.monotonic() > deadline:
                self.stop(submission_id)
                raise RayJobError(
                    f"Ray job {submission_id} still {status} after {timeout_s:.0f} s; stopped it"
                )
            time.sleep(poll_s)

    def stop(self, submission_id: str) -> None:
        try:
            self.client.stop_job(submission_id)
            log.info("stop requested for Ray job %s", submission_id)
        except RuntimeError as exc:  # already finished
            log.info("Ray job %s not stopped: %s", submission_id, exc)

    def run(
        self,
        base: str,
        entrypoint: str,
        env: dict[str, str] | None,
        timeout_s: float,
        on_log: Callable[[str], None] | None = None,
    ) -> JobOutcome:
        submission_id, attached = self.submit_or_attach(base, entrypoint, env)
        status = self.wait(submission_id, timeout_s, on_log=on_log)
        tail = self.client.get_job_logs(submission_id)[-4000:]
        if status != "SUCCEEDED":
            raise RayJobError(f"Ray job {submission_id} ended {status}. Last log lines:\n{tail}")
        return JobOutcome(submission_id, status, attached, tail)
