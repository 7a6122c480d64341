"""Dataset stage: the training window's reward partitions assembled into one dataset (or a skip)."""

from __future__ import annotations

from typing import Any

from continuous_learning.airflow.context import task_settings, window_end

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException


class AssembleTrainingDatasetOperator(BaseOperator):
    """Union the reward partitions of the lookback window; skip the run when it is too small."""

    ui_color = "#fdf3e8"

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning import storage
        from continuous_learning.training import NotEnoughData, assemble_training_dataset

        settings = task_settings(context)
        end = window_end(context)
        try:
            ref = assemble_training_dataset(settings, end)
        except NotEnoughData as exc:
            raise AirflowSkipException(f"skipping training: {exc}") from None
        manifest = storage.read_json(ref.manifest_uri)
        self.log.info(
            "dataset %s: %s rows by split, window ending %s", ref.dataset_id, manifest["counts"], end
        )
        return {**ref.model_dump(), "counts": manifest["counts"], "window_end": end.isoformat()}
