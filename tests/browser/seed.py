"""Seed storage for a dry run: one day of logs through ingest, and a registered production model."""

from __future__ import annotations

from datetime import date

from continuous_learning import storage
from continuous_learning.config import load_settings
from continuous_learning.data.ingest import ingest_day
from continuous_learning.data.reward_dataset import build_day_partition
from continuous_learning.data.synthetic import generate_logs
from continuous_learning.registry import ModelRegistry


def seed(root: str, day: date, records: int = 120, register_production: bool = True) -> dict[str, int]:
    """Generate ``records`` interactions for ``day`` under ``root``, ingest them, build the reward
    partition, and (``register_production``) register a stand-in ``v0`` as production (a dry run never
    loads it; a real training run needs the real one, which its first run bootstraps)."""
    settings = load_settings(overrides={"storage.root": root})
    s = settings.storage
    generate_logs(root, day, 1, records, seed=21)
    report = ingest_day(
        day,
        raw_uri=s.raw_uri,
        out_uri=s.data_uri,
        feedback_uri=s.feedback_uri,
        max_record_bytes=settings.ingest.max_record_bytes,
        max_quarantine_share=settings.ingest.max_quarantine_share,
    )
    partition = build_day_partition(
        s.data_uri, day, settings.dataset.validation_share, settings.dataset.test_share
    )
    if not register_production:
        return {"accepted": report.accepted, "prompts": partition.prompts}
    registry = ModelRegistry(s.registry_uri)
    version = registry.register(
        storage.join(root, "models", "v0"), "seed", None, None, lineage={"kind": "seed"}
    )
    registry.promote(version.version, "seed: stand-in production model for the browser test", "seed", 0)
    return {"accepted": report.accepted, "prompts": partition.prompts}
