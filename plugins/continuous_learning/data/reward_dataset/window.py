"""A training dataset: the union of the reward partitions of a lookback window, deduplicated by
``interaction_id``, in train/validation/test files, with a manifest of its inputs."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.contracts import partition_uri
from continuous_learning.data.reward_dataset.schema import SPLITS, VERL_SCHEMA


@dataclass
class TrainingDataset:
    dataset_id: str
    uri: str
    counts: dict[str, int]
    manifest: dict[str, Any]

    def split_uri(self, split: str) -> str:
        return storage.join(self.uri, f"{split}.parquet")


# Arrow bytes of reward rows one bucket of a window holds at most: a bucket is also never larger than the
# window's largest day, so a window of any length peaks at about the memory of its largest day; windows
# under the floor are one bucket.
WINDOW_BUCKET_BYTES = 128 * 1024 * 1024
_WINDOW_BUCKET_FLOOR = 16 * 1024 * 1024
_WINDOW_BATCH_ROWS = 16_384
_SAMPLES_PER_BUCKET = 256  # ids sampled per bucket to place the buckets' boundaries
_SEQ = "__seq"  # position of a row in the window (day, then row): the later copy of an id wins


def _arrow_bytes(path: Path) -> int:
    """Estimated Arrow size of a reward file's rows, from its first batch. Not the parquet sizes: repeated
    prompts are dictionary-encoded there and take many times more room in memory."""
    file = pq.ParquetFile(path)
    if not file.metadata.num_rows:
        return 0
    first = next(file.iter_batches(batch_size=4096))
    return first.nbytes * file.metadata.num_rows // max(1, first.num_rows)


def _bucket_boundaries(paths: list[Path], buckets: int) -> list[str]:
    """Ids cutting the window into ``buckets`` ranges of about the same number of rows.

    Reads one day's ids at a time and keeps an evenly spaced sample of each day's sorted ids, every sample
    standing for the same number of rows, so the sample's quantiles are the window's (up to one stride).
    """
    if buckets <= 1:
        return []
    total = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
    stride = max(1, total // (buckets * _SAMPLES_PER_BUCKET))
    samples: list[pa.Array] = []
    for path in paths:
        ids = pq.read_table(path, columns=["extra_info.interaction_id"]).column(0).combine_chunks()
        ordered = ids.take(pc.sort_indices(ids))
        samples.append(ordered.take(pa.array(range(stride // 2, len(ordered), stride), pa.int64())))
    sample = pa.concat_arrays(samples)
    sample = sample.take(pc.sort_indices(sample)).to_pylist()
    if not sample:
        return []
    cuts = sorted({sample[len(sample) * j // buckets] for j in range(1, buckets)})
    return [cut for cut in cuts if cut != sample[0]]  # a cut at the smallest id would leave bucket 0 empty


def _bucket_of(ids: pa.Array, boundaries: list[str]) -> pa.Array:
    """For each id, how many boundaries are <= it: its bucket. Byte order, as the final sort's."""
    bucket = pa.array([0] * len(ids), pa.int32())
    for cut in boundaries:
        bucket = pc.add(bucket, pc.cast(pc.greater_equal(ids, cut), pa.int32()))
    return bucket


def _with_index(table: pa.Table, start: int) -> pa.Table:
    """``table`` with ``extra_info.index`` numbered from ``start``, in its order."""
    info = table.column("extra_info").combine_chunks()
    fields = list(VERL_SCHEMA.field("extra_info").type)
    arrays = [
        pa.array(range(start, start + len(info)), pa.int64()) if f.name == "index" else info.field(f.name)
        for f in fields
    ]
    column = pa.StructArray.from_arrays(arrays, fields=fields, mask=None)
    return table.set_column(
        table.schema.get_field_index("extra_info"), VERL_SCHEMA.field("extra_info"), column
    )


def _latest_sorted(table: pa.Table) -> pa.Table:
    """One row per interaction id (the one with the highest ``_SEQ``), sorted by id."""
    ids = table.column("extra_info").combine_chunks().field("interaction_id")
    keyed = pa.table({"id": ids, "seq": table.column(_SEQ)})
    order = pc.sort_indices(keyed, sort_keys=[("id", "ascending"), ("seq", "descending")])
    table = table.take(order)
    ids = ids.take(order)
    if len(ids) > 1:
        first = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        keep = pa.concat_arrays([pa.array([True]), pc.fill_null(first, True)])
        table = table.filter(keep)
    return table.drop_columns([_SEQ])


def assemble_window(
    data_uri: str,
    end: date,
    lookback_days: int,
    config: dict[str, Any] | None = None,
    bucket_bytes: int = WINDOW_BUCKET_BYTES,
) -> TrainingDataset:
    """Union the reward partitions of ``[end - lookback + 1, end]`` into train/validation/test files.

    The dataset id hashes the exact input partitions, so the same window gives the same dataset. Each
    interaction id appears once (the copy of the latest day wins), rows sorted by id in every split and
    ``extra_info.index`` numbered in that order.

    Memory stays flat in the window's length: the rows are spilled into buckets of id ranges (each about
    the size of the largest day and at most ``bucket_bytes`` of Arrow data, boundaries from a sample of
    the ids), and one bucket at a time is deduplicated, sorted and appended to the split files, one row
    group per bucket.
    """
    inputs = []
    with tempfile.TemporaryDirectory(prefix="cl-window-") as tmp:
        work = Path(tmp)
        paths: list[Path] = []
        for offset in range(lookback_days - 1, -1, -1):
            day = end - timedelta(days=offset)
            prefix = partition_uri(data_uri, "reward", day)
            pointer = storage.read_partition_pointer(prefix)
            if pointer is None:
                inputs.append({"day": day.isoformat(), "present": False})
                continue
            inputs.append(
                {
                    "day": day.isoformat(),
                    "present": True,
                    "run_id": pointer["run_id"],
                    "files": pointer["files"],
                }
            )
            path = work / f"day-{len(paths):04d}.parquet"
            storage.store_for(data_uri).download_file(
                storage.partition_files(prefix)["prompts.parquet"], path
            )
            paths.append(path)
        key = json.dumps({"inputs": inputs, "config": config or {}}, sort_keys=True)
        dataset_id = f"{end.isoformat()}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        uri = storage.join(data_uri, "datasets", dataset_id)

        sizes = [_arrow_bytes(path) for path in paths]
        target = max(min(bucket_bytes, max(sizes, default=0)), min(bucket_bytes, _WINDOW_BUCKET_FLOOR), 1)
        boundaries = _bucket_boundaries(paths, -(-sum(sizes) // target))
        spill_schema = VERL_SCHEMA.append(pa.field(_SEQ, pa.int64()))
        spills: dict[int, Any] = {}
        for position, path in enumerate(paths):
            row = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=_WINDOW_BATCH_ROWS):
                table = pa.Table.from_batches([batch]).cast(VERL_SCHEMA)
                seq = pa.array(range((position << 32) + row, (position << 32) + row + len(table)), pa.int64())
                row += len(table)
                table = table.append_column(_SEQ, seq)
                ids = table.column("extra_info").combine_chunks().field("interaction_id")
                bucket = _bucket_of(ids, boundaries)
                for number in pc.unique(bucket).to_pylist():
                    if number not in spills:
                        spills[number] = pa.ipc.new_file(
                            str(work / f"bucket-{number:05d}.arrow"), spill_schema
                        )
                    spills[number].write_table(table.filter(pc.equal(bucket, number)))
        for spill in spills.values():
            spill.close()

        counts = dict.fromkeys(SPLITS, 0)
        agents: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
        writers = {
            s: pq.ParquetWriter(str(work / f"{s}.parquet"), VERL_SCHEMA, compression="zstd") for s in SPLITS
        }
        try:
            for number in sorted(spills):
                with pa.memory_map(str(work / f"bucket-{number:05d}.arrow")) as source:
                    rows = _latest_sorted(pa.ipc.open_file(source).read_all())
                split = rows.column("extra_info").combine_chunks().field("split")
                for name in SPLITS:
                    part = rows.filter(pc.equal(split, name))
                    if not part.num_rows:
                        continue
                    part = _with_index(part, counts[name]).combine_chunks()
                    writers[name].write_table(part)
                    counts[name] += part.num_rows
                    agent = part.column("extra_info").combine_chunks().field("agent")
                    found = pc.value_counts(
                        agent
                    )  # in order of first appearance, as Counter(iterable) counts
                    agents[name].update(
                        dict(
                            zip(
                                found.field("values").to_pylist(),
                                found.field("counts").to_pylist(),
                                strict=True,
                            )
                        )
                    )
            for name in SPLITS:
                if not counts[name]:  # an empty split is a file with the schema and one empty row group
                    writers[name].write_table(VERL_SCHEMA.empty_table())
        finally:
            for writer in writers.values():
                writer.close()
        for name in SPLITS:
            storage.store_for(uri).upload_file(work / f"{name}.parquet", storage.join(uri, f"{name}.parquet"))
    manifest = {
        "kind": "training_dataset",
        "schema_version": 1,
        "dataset_id": dataset_id,
        "window": {"end": end.isoformat(), "lookback_days": lookback_days},
        "inputs": inputs,
        "counts": counts,
        "counts_by_agent": {s: dict(c) for s, c in agents.items()},
        "config": config or {},
        "files": {s: storage.join(uri, f"{s}.parquet") for s in SPLITS},
    }
    storage.write_json(storage.join(uri, "manifest.json"), manifest)
    return TrainingDataset(dataset_id, uri, counts, manifest)
