"""The Assets the DAGs share, declared once: the producer's outlet and the consumer's schedule name the same."""

from __future__ import annotations

from airflow.sdk import Asset

#: New reward partitions (interaction_ingest, late_feedback_reprocess) -> continuous_training.
REWARD_PARTITIONS = Asset(name="continuous_learning.reward_partitions")
#: A new production model (promote, rollback) -> deployment DAGs.
PRODUCTION_MODEL = Asset(name="continuous_learning.production_model")
