"""The same ingest functions as Ray Data maps on a real local Ray head: identical output."""

from __future__ import annotations

from datetime import date

import pytest
from continuous_learning import storage
from continuous_learning.compute.local_ray import start_local_head, stop_local_head
from continuous_learning.data.ingest import ingest_day
from continuous_learning.data.synthetic import generate_logs

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 16)


def test_ray_data_executor_matches_local_and_process_executors(tmp_path) -> None:
    root = f"file://{tmp_path}"
    generate_logs(root, DAY, 1, 400, seed=17)
    local = ingest_day(DAY, f"{root}/raw", f"{root}/local", f"{root}/feedback", shards=3)
    processes = ingest_day(DAY, f"{root}/raw", f"{root}/procs", f"{root}/feedback", shards=3, workers=2)
    head = start_local_head(num_cpus=2)
    try:
        import ray

        ray.init(address=head.gcs_address, log_to_driver=False)
        try:
            distributed = ingest_day(
                DAY, f"{root}/raw", f"{root}/ray", f"{root}/feedback", shards=3, executor="ray"
            )
        finally:
            ray.shutdown()
    finally:
        stop_local_head(head, grace_s=8)
    for report in (processes, distributed):
        for key in ("read", "accepted", "duplicates", "quarantined", "redactions", "feedback_joined"):
            assert getattr(report, key) == getattr(local, key), key

    def curated_bytes(out: str) -> bytes:
        return storage.read_bytes(storage.partition_files(f"{out}/curated/dt={DAY}")["interactions.parquet"])

    assert curated_bytes(f"{root}/local") == curated_bytes(f"{root}/procs") == curated_bytes(f"{root}/ray")
