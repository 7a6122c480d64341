"""A local Ray head's logs outlive it: a job's output is in storage after the head and its temp dir are
gone (the delete_ray_cluster task copies them into runs/<run>/logs/ray/ before it stops the head)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from continuous_learning import storage
from continuous_learning.compute.local_ray import keep_logs, start_local_head, stop_local_head
from continuous_learning.compute.ray_jobs import RayJobRunner

pytestmark = pytest.mark.integration


def test_job_output_is_kept_after_teardown(tmp_path: Path) -> None:
    head = start_local_head(num_cpus=1)
    try:
        RayJobRunner(head.dashboard_url).run(
            "logs--job", "python -c \"print('trainer says hello')\"", {}, timeout_s=120
        )
        kept = keep_logs(head, f"file://{tmp_path}/run/logs/ray", max_bytes=4096)
    finally:
        stop_local_head(head, grace_s=8)
    assert not os.path.exists(head.temp_dir)
    drivers = [u for u in kept if u.rsplit("/", 1)[-1].startswith("job-driver-logs--job")]
    assert drivers, kept
    assert "trainer says hello" in storage.read_bytes(drivers[0]).decode()
    assert any(u.endswith("/head.log") for u in kept)
    # a long log keeps its end, at most max_bytes
    assert all(len(storage.read_bytes(u)) <= 4096 for u in kept)
    assert all(Path(u.removeprefix("file://")).is_file() for u in kept)
