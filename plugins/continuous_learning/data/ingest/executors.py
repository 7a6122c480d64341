"""Where the two stages run: inline, in worker processes, or as Ray Data maps on a Ray cluster. The same
functions run in each, and the shards' tables are appended in shard order, so the output is the same."""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.ingest.reading import Chunk
from continuous_learning.data.ingest.reduce import ShardResult, reduce_shard
from continuous_learning.data.ingest.stage import FeedbackStage, FileStage, line_offsets, stage_chunk
from continuous_learning.data.schema import CURATED_SCHEMA

log = logging.getLogger(__name__)
SHARD_TARGET_BYTES = 96 * 1024 * 1024  # uncompressed input per shard; bounds peak memory
PARALLEL_MIN_BYTES = 256 * 1024 * 1024
_GZIP_RATIO = 6  # planning estimate of compressed -> raw size


def plan_shards(objects: list[storage.ObjectInfo]) -> int:
    """The day's planned raw size divided by ``SHARD_TARGET_BYTES`` (at least one shard)."""
    raw_bytes = sum(o.size * (_GZIP_RATIO if o.uri.endswith(".gz") else 1) for o in objects)
    return max(1, math.ceil(raw_bytes / SHARD_TARGET_BYTES))


def _planned_bytes(chunk: Chunk, sizes: dict[str, int]) -> int:
    if chunk.end is not None:
        return chunk.end - chunk.start
    return sizes[chunk.uri] * (_GZIP_RATIO if chunk.uri.endswith(".gz") else 1)


def _reduce_args(
    shard: int,
    shards: int,
    chunks: list[Chunk],
    stages: list[FileStage],
    feedback: FeedbackStage,
    out_dir: str,
) -> tuple[Any, ...]:
    raw_parts = [st.spill_file for st in stages if st.spill_file]
    fb_parts = [feedback.spill_file] if feedback.spill_file else []
    return shard, shards, raw_parts, fb_parts, chunks, line_offsets(stages), out_dir


def _append_table(writer: pq.ParquetWriter, result: ShardResult) -> None:
    with pa.memory_map(result.table_file) as source:
        writer.write_table(ipc.open_file(source).read_all())
    Path(result.table_file).unlink()


def run_stages_local(
    chunks: list[Chunk],
    sizes: dict[str, int],
    shards: int,
    spill: str,
    max_record_bytes: int,
    feedback: FeedbackStage,
    out_path: Path,
    workers: int = 1,
) -> tuple[list[FileStage], list[ShardResult]]:
    """Both stages on this machine: inline, or in ``workers`` processes (spawned: safe inside Airflow tasks)."""
    writer = pq.ParquetWriter(str(out_path), CURATED_SCHEMA, compression="zstd", store_schema=True)
    results = []
    started = time.monotonic()
    try:
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                # Largest first, so that a big gzip file does not start last and run alone.
                by_size = sorted(chunks, key=lambda c: -_planned_bytes(c, sizes))
                staging: dict[int, Future[FileStage]] = {
                    c.index: pool.submit(stage_chunk, c, shards, spill, max_record_bytes) for c in by_size
                }
                stages = [staging[c.index].result() for c in chunks]
                log.info("staged %d chunks in %.1f s", len(chunks), time.monotonic() - started)
                futures = [
                    pool.submit(reduce_shard, *_reduce_args(s, shards, chunks, stages, feedback, spill))
                    for s in range(shards)
                ]
                for future in futures:  # in shard order: the output's row order is deterministic
                    result = future.result()
                    _append_table(writer, result)
                    results.append(result)
                log.info("reduced %d shards in %.1f s", shards, time.monotonic() - started)
        else:
            stages = [stage_chunk(c, shards, spill, max_record_bytes) for c in chunks]
            for shard in range(shards):
                result = reduce_shard(*_reduce_args(shard, shards, chunks, stages, feedback, spill))
                _append_table(writer, result)
                results.append(result)
    finally:
        writer.close()
    return stages, results


def run_stages_ray(
    chunks: list[Chunk],
    shards: int,
    spill: str,
    max_record_bytes: int,
    feedback: FeedbackStage,
    out_path: Path,
    ray_address: str | None = None,
) -> tuple[list[FileStage], list[ShardResult]]:
    """Both stages as Ray Data maps (the same functions). ``spill`` must be visible to every node:
    a local path on a one-node cluster, a shared file system (FSx for Lustre) on HyperPod."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address or "auto", log_to_driver=False)

    def stage_row(item: dict[str, Any]) -> dict[str, Any]:
        chunk = Chunk(item["uri"], item["index"], item["start"], item["end"])
        return {"stage": stage_chunk(chunk, shards, spill, max_record_bytes)}

    items = [{"uri": c.uri, "index": c.index, "start": c.start, "end": c.end} for c in chunks]
    staged = ray.data.from_items(items).map(stage_row)
    stages = sorted((r["stage"] for r in staged.take_all()), key=lambda s: s.chunk)

    def reduce_row(item: dict[str, Any]) -> dict[str, Any]:
        return {"result": reduce_shard(*_reduce_args(item["shard"], shards, chunks, stages, feedback, spill))}

    reduced = ray.data.from_items([{"shard": s} for s in range(shards)]).map(reduce_row)
    results = sorted((r["result"] for r in reduced.take_all()), key=lambda r: r.shard)
    writer = pq.ParquetWriter(str(out_path), CURATED_SCHEMA, compression="zstd", store_schema=True)
    try:
        for result in results:
            _append_table(writer, result)
    finally:
        writer.close()
    return stages, results
