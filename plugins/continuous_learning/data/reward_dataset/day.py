"""A day's reward partition, ``<data>/reward/dt=DAY/``, written from the day's curated partition."""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.contracts import partition_uri
from continuous_learning.data.reward_dataset.rows import CURATED_INPUTS, prompts_from_curated
from continuous_learning.data.reward_dataset.schema import VERL_SCHEMA

log = logging.getLogger(__name__)


@dataclass
class DayDatasetReport:
    day: str
    curated_rows: int = 0
    prompts: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    by_agent: dict[str, int] = field(default_factory=dict)
    uri: str | None = None


def build_day_partition(
    data_uri: str, day: date, validation_share: float, test_share: float, batch_rows: int = 20_000
) -> DayDatasetReport:
    """Write ``<data>/reward/dt=DAY/`` from the day's curated partition (empty if none).

    Streams the curated parquet in batches, so memory does not grow with the day's size.
    Rows keep the curated order (deterministic for identical input).
    """
    report = DayDatasetReport(day=day.isoformat())
    skipped: Counter[str] = Counter()
    by_split: Counter[str] = Counter()
    by_agent: Counter[str] = Counter()
    files = storage.partition_files(partition_uri(data_uri, "curated", day))
    with tempfile.TemporaryDirectory(prefix="cl-reward-") as tmp:
        out_path = Path(tmp) / "prompts.parquet"
        writer = pq.ParquetWriter(str(out_path), VERL_SCHEMA, compression="zstd")
        try:
            if "interactions.parquet" in files:
                curated_path = Path(tmp) / "curated.parquet"
                storage.store_for(data_uri).download_file(files["interactions.parquet"], curated_path)
                curated = pq.ParquetFile(curated_path)
                report.curated_rows = curated.metadata.num_rows
                # One row group per batch of curated rows: the batch size is part of the file's layout.
                for batch in curated.iter_batches(batch_size=batch_rows, columns=CURATED_INPUTS):
                    prompts, batch_skipped = prompts_from_curated(
                        pa.Table.from_batches([batch]), day, validation_share, test_share
                    )
                    skipped.update(batch_skipped)
                    extra_info = prompts.column("extra_info").combine_chunks()
                    by_split.update(extra_info.field("split").to_pylist())
                    by_agent.update(extra_info.field("agent").to_pylist())
                    report.prompts += prompts.num_rows
                    if prompts.num_rows:
                        writer.write_table(prompts)
        finally:
            writer.close()
        report.skipped = dict(skipped)
        report.by_split = dict(by_split)
        report.by_agent = dict(by_agent)
        prefix = partition_uri(data_uri, "reward", day)
        storage.commit_partition_files(
            prefix,
            {"prompts.parquet": out_path},
            {"day": report.day, "rows": report.prompts, "report": report.__dict__},
        )
    report.uri = prefix
    log.info("reward partition %s: %d prompts, skipped %s", day, report.prompts, report.skipped)
    return report
