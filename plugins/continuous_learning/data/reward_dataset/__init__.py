"""Reward datasets in VeRL's parquet format, from curated partitions.

A day's reward partition holds the RL prompts that day's interactions give; a training dataset
is the union of the reward partitions of a lookback window, deduplicated by ``interaction_id``.

Modules: ``schema`` (the columns, the split of an interaction), ``rows`` (prompts and references of
curated rows), ``day`` (a day's reward partition), ``window`` (a training dataset from a window of days).
"""

from continuous_learning.data.reward_dataset.day import DayDatasetReport, build_day_partition
from continuous_learning.data.reward_dataset.rows import (
    CURATED_INPUTS,
    prompts_from_curated,
    rows_from_curated,
)
from continuous_learning.data.reward_dataset.schema import MESSAGE_TYPE, SPLITS, VERL_SCHEMA, split_of
from continuous_learning.data.reward_dataset.window import (
    WINDOW_BUCKET_BYTES,
    TrainingDataset,
    assemble_window,
)

__all__ = [
    "CURATED_INPUTS",
    "MESSAGE_TYPE",
    "SPLITS",
    "VERL_SCHEMA",
    "WINDOW_BUCKET_BYTES",
    "DayDatasetReport",
    "TrainingDataset",
    "assemble_window",
    "build_day_partition",
    "prompts_from_curated",
    "rows_from_curated",
    "split_of",
]
