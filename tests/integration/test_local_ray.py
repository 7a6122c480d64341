"""A real local Ray head on loopback: jobs submit once, re-attach, retry after failure; stop by pgid."""

from __future__ import annotations

import os

import psutil
import pytest
from continuous_learning.compute.local_ray import start_local_head, stop_local_head
from continuous_learning.compute.ray_jobs import RayJobError, RayJobRunner

pytestmark = pytest.mark.integration


def test_jobs_reattach_and_retry_and_head_stops_by_its_own_pids(tmp_path) -> None:
    head = start_local_head(num_cpus=1)
    try:
        assert head.dashboard_url.startswith("http://127.0.0.1:")
        members = [p for p in psutil.process_iter() if _pgid(p.pid) == head.pgid]
        assert len(members) >= 3  # ray start, gcs, raylet, ...
        runner = RayJobRunner(head.dashboard_url)
        marker = tmp_path / "runs.txt"
        entry = f"python -c \"open('{marker}', 'a').write('x')\""
        first = runner.run("test--job", entry, {}, timeout_s=120)
        again = runner.run("test--job", entry, {}, timeout_s=120)
        assert (first.submission_id, first.attached) == ("test--job-a1", False)
        assert (again.submission_id, again.attached) == ("test--job-a1", True)
        assert marker.read_text() == "x"  # re-attaching did not run the job a second time

        with pytest.raises(RayJobError, match="ended FAILED"):
            runner.run("test--flaky", "python -c 'import sys; sys.exit(3)'", {}, timeout_s=120)
        retried = runner.run("test--flaky", "python -c 'print(1)'", {}, timeout_s=120)
        assert retried.submission_id == "test--flaky-a2"  # a new attempt only after a failure

        with pytest.raises(RayJobError, match="stopped it"):
            runner.run("test--slow", "python -c 'import time; time.sleep(60)'", {}, timeout_s=3)
    finally:
        stopped = stop_local_head(head, grace_s=8)
    assert stopped > 0
    assert not [p for p in psutil.process_iter() if _pgid(p.pid) == head.pgid]
    assert not os.path.exists(head.temp_dir)
    assert stop_local_head(head) == 0  # idempotent


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
