"""One day end to end: its raw files chosen (markers skipped, stray and empty files quarantined), the
stages planned and run, the counts balanced, then the quarantine and the curated partition published."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.ingest.executors import (
    PARALLEL_MIN_BYTES,
    plan_shards,
    run_stages_local,
    run_stages_ray,
)
from continuous_learning.data.ingest.publish import curated_prefix, publish_curated, publish_quarantine
from continuous_learning.data.ingest.reading import CHUNK_BYTES, RAW_SUFFIXES, day_prefix, plan_chunks
from continuous_learning.data.ingest.reduce import ShardResult
from continuous_learning.data.ingest.report import UNSTAMPED, IngestError, IngestReport
from continuous_learning.data.ingest.spill import quarantine_row
from continuous_learning.data.ingest.stage import FeedbackStage, FileStage, stage_feedback

log = logging.getLogger(__name__)


def _raw_inputs(
    objects: list[storage.ObjectInfo], report: IngestReport
) -> tuple[list[storage.ObjectInfo], list[dict[str, Any]]]:
    """The day's raw files to read, and quarantine rows for the files skipped (counted in ``report``)."""
    file_quarantine: list[dict[str, Any]] = []
    raw_files: list[str] = []
    for obj in objects:
        name = storage.basename(obj.uri)
        if name.startswith(("_", ".")) and obj.size == 0:
            continue  # markers such as _SUCCESS
        if not name.endswith(RAW_SUFFIXES):
            file_quarantine.append(
                quarantine_row(obj.uri, None, "file", "stray file: not .jsonl or .jsonl.gz", None)
            )
            report.skipped_files += 1
        elif obj.size == 0:
            file_quarantine.append(quarantine_row(obj.uri, None, "file", "empty file", None))
            report.skipped_files += 1
        else:
            raw_files.append(obj.uri)
    report.files = len(raw_files)
    return [o for o in objects if o.uri in raw_files], file_quarantine


def _model_versions(curated_path: Path) -> dict[str, int]:
    """Accepted interactions by ``model_version`` (sorted by version; ``UNSTAMPED`` for none)."""
    column = pq.read_table(curated_path, columns=["model_version"]).column("model_version")
    counts = pc.value_counts(pc.fill_null(column, UNSTAMPED)).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


def _tally(
    report: IngestReport,
    file_quarantine: list[dict[str, Any]],
    feedback: FeedbackStage,
    stages: list[FileStage],
    results: list[ShardResult],
    curated_path: Path,
) -> None:
    """The stages' counts into ``report``, in the order the rows were found (the order of equal counts in
    ``quarantine_reasons``); raises if they do not balance."""
    quarantines = [feedback.quarantine, *(s.quarantine for s in stages), *(r.quarantine for r in results)]
    reasons: Counter[str] = Counter(q["reason"].split(":")[0] for q in file_quarantine)
    redactions: Counter[str] = Counter()
    for stage in stages:
        report.read += stage.read
        report.blank_lines += stage.blank_lines
    for result in results:
        report.duplicates += result.duplicates
        report.conflicts += result.conflicts
        report.feedback_joined += result.feedback_joined
        report.feedback_unmatched += result.unmatched.count
        redactions.update(result.redactions)
    for part in quarantines:
        report.quarantined += part.records
        reasons.update(part.reasons)
    report.accepted = pq.ParquetFile(curated_path).metadata.num_rows
    report.model_versions = _model_versions(curated_path)
    report.redactions = dict(sorted(redactions.items()))
    report.quarantine_reasons = dict(reasons.most_common())
    if report.read != report.accepted + report.duplicates + report.quarantined:
        raise AssertionError(f"accounting broken for {report.day}: {report.as_dict()}")


def ingest_day(
    day: date,
    raw_uri: str,
    out_uri: str,
    feedback_uri: str | None = None,
    max_record_bytes: int = 1_000_000,
    max_quarantine_share: float = 1.0,
    feedback_horizon_days: int = 7,
    executor: str = "local",
    shards: int | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> IngestReport:
    """Validate, deduplicate, join feedback, redact and publish one day's curated partition.

    The output does not depend on ``executor``, ``workers`` or ``chunk_bytes``; it does on ``shards``
    (the curated rows are ordered by shard, then ``interaction_id``), which defaults to the day's size
    divided by ``SHARD_TARGET_BYTES``.
    """
    report = IngestReport(day=day.isoformat())
    objects = storage.list_objects(day_prefix(raw_uri, day))
    raw_objects, file_quarantine = _raw_inputs(objects, report)
    report.shards = shards or plan_shards(raw_objects)
    if workers is None:  # processes pay off only for large days
        large = sum(o.size for o in raw_objects) > PARALLEL_MIN_BYTES
        workers = min(os.cpu_count() or 1, 4) if large else 1

    with tempfile.TemporaryDirectory(prefix="cl-ingest-") as tmp:
        spill = str(Path(tmp) / "spill")
        Path(spill).mkdir()
        feedback = stage_feedback(feedback_uri, day, feedback_horizon_days, report.shards, spill)
        report.feedback_read = feedback.read
        report.feedback_quarantined = feedback.quarantine.count
        chunks = plan_chunks(raw_objects, chunk_bytes)
        curated_path = Path(tmp) / "interactions.parquet"
        if executor == "ray":
            stages, results = run_stages_ray(
                chunks, report.shards, spill, max_record_bytes, feedback, curated_path, ray_address
            )
        else:
            sizes = {o.uri: o.size for o in raw_objects}
            stages, results = run_stages_local(
                chunks, sizes, report.shards, spill, max_record_bytes, feedback, curated_path, workers
            )
        _tally(report, file_quarantine, feedback, stages, results, curated_path)

        report.quarantine_uri = publish_quarantine(
            Path(tmp), out_uri, day, file_quarantine, feedback, stages, results
        )
        share = report.quarantined / report.read if report.read else 0.0
        if share > max_quarantine_share:
            raise IngestError(
                f"{day}: {report.quarantined} of {report.read} records quarantined ({share:.1%}), above the "
                f"configured limit of {max_quarantine_share:.1%}; see {report.quarantine_uri}. Top reasons: "
                f"{report.quarantine_reasons}"
            )
        report.curated_uri = curated_prefix(out_uri, day)
        publish_curated(Path(tmp), report, curated_path, objects, feedback, feedback_horizon_days)
    log.info("ingested %s: %s", day, json.dumps(report.as_dict()))
    return report
