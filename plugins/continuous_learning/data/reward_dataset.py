"""Reward datasets in VeRL's parquet format, from curated partitions.

A day's reward partition holds the RL prompts that day's interactions give; a training dataset
is the union of the reward partitions of a lookback window, deduplicated by ``interaction_id``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from continuous_learning import storage

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")

_FUNCTION = pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())])
_TOOL_CALL = pa.struct(
    [pa.field("id", pa.string()), pa.field("type", pa.string()), pa.field("function", _FUNCTION)]
)
MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("tool_calls", pa.list_(_TOOL_CALL)),
        pa.field("tool_call_id", pa.string()),
    ]
)
VERL_SCHEMA = pa.schema(
    [
        pa.field("data_source", pa.string(), nullable=False),
        pa.field("prompt", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("ability", pa.string(), nullable=False),
        pa.field(
            "reward_model",
            pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())]),
            nullable=False,
        ),
        pa.field(
            "extra_info",
            pa.struct(
                [
                    pa.field("interaction_id", pa.string()),
                    pa.field("agent", pa.string()),
                    pa.field("day", pa.string()),
                    pa.field("split", pa.string()),
                    pa.field("index", pa.int64()),
                    pa.field("feedback_score", pa.float64()),
                    pa.field("reference_source", pa.string()),
                    pa.field("tools_json", pa.string()),
                ]
            ),
            nullable=False,
        ),
    ]
)


def split_of(interaction_id: str, validation_share: float, test_share: float) -> str:
    """Deterministic split by hash: stable across days, runs and machines."""
    bucket = int.from_bytes(hashlib.sha256(interaction_id.encode()).digest()[:8], "big") / 2**64
    if bucket < test_share:
        return "test"
    if bucket < test_share + validation_share:
        return "validation"
    return "train"


def _reference_of(message: dict[str, Any]) -> dict[str, Any]:
    calls = [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for c in message.get("tool_calls") or []
    ]
    return {"content": message.get("content"), "tool_calls": calls}


@dataclass
class DayDatasetReport:
    day: str
    curated_rows: int = 0
    prompts: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    by_agent: dict[str, int] = field(default_factory=dict)
    uri: str | None = None


def rows_from_curated(
    table: pa.Table, day: date, validation_share: float, test_share: float
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The reward rows of curated rows, as dictionaries (``VERL_SCHEMA``); see :func:`prompts_from_curated`."""
    prompts, skipped = prompts_from_curated(table, day, validation_share, test_share)
    return prompts.to_pylist(), skipped


# The curated columns a reward row is made from.
CURATED_INPUTS = [
    "interaction_id",
    "agent",
    "messages_json",
    "feedback_score",
    "correction_json",
    "tools_json",
]
_NO_SIGNAL = "no correction and no positive feedback"
_NEGATIVE = "negative feedback without correction"
# PII redaction works on the text of tool-call arguments; where a match takes part of a JSON escape
# (an email right after \u00e9, say) the stored arguments are no longer JSON and give no reference.
_UNUSABLE = "tool-call arguments that are not JSON"


def _skipped(score: pa.Array, kept: pa.Array) -> Counter[str]:
    """Counts of the rows without a reference, by reason, in order of each reason's first row."""
    skipped = pc.invert(kept)
    no_signal = pc.and_(skipped, pc.or_(pc.is_null(score), pc.fill_null(pc.equal(score, 0), False)))
    negative = pc.and_(skipped, pc.invert(no_signal))
    found = []
    for reason, mask in ((_NO_SIGNAL, no_signal), (_NEGATIVE, negative)):
        rows = pc.indices_nonzero(mask)
        if len(rows):
            found.append((rows[0].as_py(), reason, len(rows)))
    return Counter({reason: count for _, reason, count in sorted(found)})


def _reference_row(messages_json: str, correction_json: str | None) -> tuple[Any, ...]:
    """(prompt messages, reference, source, negatives) of one interaction with a reference."""
    messages = msgspec.json.decode(messages_json)  # strings only: the same objects json.loads gives
    final = messages[-1]
    negatives: list[dict[str, Any]] = []
    if correction_json is not None:
        correction = msgspec.json.decode(correction_json)
        if isinstance(correction, str):  # a correction given as text: the reply the agent should have sent
            correction = {"content": correction}
        reference = _reference_of(correction | {"role": "assistant"})
        source = "correction"
        negatives.append(_reference_of(final))  # the user corrected what the agent said
    else:
        reference, source = _reference_of(final), "positive_feedback"
    if negatives and negatives[0] == reference:
        negatives = []
    return messages[:-1], reference, source, negatives


def _prompt_array(prompts: list[list[dict[str, Any]]]) -> pa.Array:
    """``list<MESSAGE_TYPE>`` of the prompts' messages, built from flat columns (no per-value inference)."""
    message_offsets, roles, contents, call_ids_of_tool = [0], [], [], []
    call_offsets, calls_missing, ids, kinds, names, arguments = [0], [], [], [], [], []
    for prompt in prompts:
        for message in prompt:
            roles.append(message["role"])
            contents.append(message.get("content"))
            call_ids_of_tool.append(message.get("tool_call_id"))
            calls = message.get("tool_calls")
            calls_missing.append(calls is None)
            for call in calls or []:
                ids.append(call["id"])
                kinds.append(call["type"])
                names.append(call["function"]["name"])
                arguments.append(call["function"]["arguments"])
            call_offsets.append(len(ids))
        message_offsets.append(len(roles))
    function = pa.StructArray.from_arrays(
        [pa.array(names, pa.string()), pa.array(arguments, pa.string())], fields=list(_FUNCTION)
    )
    call = pa.StructArray.from_arrays(
        [pa.array(ids, pa.string()), pa.array(kinds, pa.string()), function], fields=list(_TOOL_CALL)
    )
    tool_calls = pa.ListArray.from_arrays(
        pa.array(call_offsets, pa.int32()), call, mask=pa.array(calls_missing, pa.bool_())
    )
    message = pa.StructArray.from_arrays(
        [
            pa.array(roles, pa.string()),
            pa.array(contents, pa.string()),
            tool_calls,
            pa.array(call_ids_of_tool, pa.string()),
        ],
        fields=list(MESSAGE_TYPE),
    )
    return pa.ListArray.from_arrays(pa.array(message_offsets, pa.int32()), message)


def prompts_from_curated(
    table: pa.Table, day: date, validation_share: float, test_share: float
) -> tuple[pa.Table, Counter[str]]:
    """The reward rows (``VERL_SCHEMA``) of curated rows, in their order, and the skipped rows by reason.

    A row needs a reference: the user's correction (the agent's answer becomes a negative reference),
    or the agent's answer when the feedback was positive.
    """
    score = table.column("feedback_score").combine_chunks()
    kept = pc.or_(pc.is_valid(table.column("correction_json")), pc.fill_null(pc.greater(score, 0), False))
    skipped = _skipped(score, kept)
    rows = table.select(CURATED_INPUTS).filter(kept)
    ids, agents, messages_json, scores, corrections, tools = (
        rows.column(c).to_pylist() for c in CURATED_INPUTS
    )
    prompts, splits, sources, ground_truths, abilities = [], [], [], [], []
    unusable: list[int] = []
    for index, (key, messages, correction) in enumerate(zip(ids, messages_json, corrections, strict=True)):
        try:
            prompt, reference, source, negatives = _reference_row(messages, correction)
        except json.JSONDecodeError:  # text redaction can break arguments: see docs of _UNUSABLE
            unusable.append(index)
            continue
        prompts.append(prompt)
        sources.append(source)
        abilities.append("tool_use" if reference["tool_calls"] else "chat")
        ground_truths.append(json.dumps({**reference, "negatives": negatives}, sort_keys=True))
        splits.append(split_of(key, validation_share, test_share))
    if unusable:
        skipped[_UNUSABLE] += len(unusable)
        drop = set(unusable)
        ids, agents, scores, tools = (
            [v for i, v in enumerate(c) if i not in drop] for c in (ids, agents, scores, tools)
        )
    count = len(ids)
    extra_info = pa.StructArray.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(agents, pa.string()),
            pa.array([day.isoformat()] * count, pa.string()),
            pa.array(splits, pa.string()),
            pa.array([0] * count, pa.int64()),
            pa.array(scores, pa.float64()),
            pa.array(sources, pa.string()),
            pa.array(tools, pa.string()),
        ],
        fields=list(VERL_SCHEMA.field("extra_info").type),
    )
    reward_model = pa.StructArray.from_arrays(
        [pa.array(["rule"] * count, pa.string()), pa.array(ground_truths, pa.string())],
        fields=list(VERL_SCHEMA.field("reward_model").type),
    )
    prompts_table = pa.Table.from_arrays(
        [
            pa.array([f"agent/{agent}" for agent in agents], pa.string()),
            _prompt_array(prompts),
            pa.array(abilities, pa.string()),
            reward_model,
            extra_info,
        ],
        schema=VERL_SCHEMA,
    )
    return prompts_table, skipped


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
    files = storage.partition_files(storage.join(data_uri, "curated", f"dt={day.isoformat()}"))
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
        prefix = storage.join(data_uri, "reward", f"dt={day.isoformat()}")
        storage.commit_partition_files(
            prefix,
            {"prompts.parquet": out_path},
            {"day": report.day, "rows": report.prompts, "report": report.__dict__},
        )
    report.uri = prefix
    log.info("reward partition %s: %d prompts, skipped %s", day, report.prompts, report.skipped)
    return report


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
            prefix = storage.join(data_uri, "reward", f"dt={day.isoformat()}")
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
