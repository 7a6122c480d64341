"""Ingest one day of raw interaction logs into a curated partition, streaming with bounded memory.

Two stages, each a plain function over files and Arrow batches:

1. :func:`stage_chunk` (``stage``) streams one raw file, or one piece of a large uncompressed file, line
   by line (``reading``): it validates each record (schema v1), quarantines what is bad, and turns each
   good record into its curated fields (``curate``: PII redacted, JSON encoded) at once, so no record is
   decoded twice. The rows are spilled, grouped by a hash of ``interaction_id`` into shards, to one Arrow
   IPC file per piece (``spill``);
2. :func:`reduce_shard` (``reduce``) deduplicates one shard (every copy of an id lands in the same shard)
   with Arrow compute, joins late feedback, and writes the shard's curated rows sorted by ``interaction_id``.

Memory is bounded by the piece and shard sizes, not the day's size: stages hold a fixed budget of rows
before writing them out, quarantined and unmatched records go to files, and the parent process keeps
only counts. Locally the stages run in a loop or in worker processes; with ``executor="ray"`` the same
functions run as Ray Data maps on a Ray cluster (``executors``). :func:`ingest_day` (``day``) plans and
runs a day, balances its counts (``report``) and commits its quarantine and curated partition
(``publish``). Every line read is accounted for: ``read == accepted + duplicates + quarantined``.
"""

from continuous_learning.data.ingest.curate import redact_messages
from continuous_learning.data.ingest.day import ingest_day
from continuous_learning.data.ingest.executors import PARALLEL_MIN_BYTES, SHARD_TARGET_BYTES, plan_shards
from continuous_learning.data.ingest.publish import read_curated
from continuous_learning.data.ingest.reading import (
    CHUNK_BYTES,
    RAW_SUFFIXES,
    Chunk,
    Line,
    StreamNote,
    gunzip_blocks,
    iter_lines,
    plan_chunks,
    split_lines,
)
from continuous_learning.data.ingest.reduce import ShardResult, reduce_shard, reread_lines
from continuous_learning.data.ingest.report import UNSTAMPED, IngestError, IngestReport
from continuous_learning.data.ingest.spill import QuarantineSummary, shard_of
from continuous_learning.data.ingest.stage import FeedbackStage, FileStage, stage_chunk, stage_feedback

# The names of these helpers before ingest became a package: tests import them so.
_gunzip_blocks = gunzip_blocks
_split_lines = split_lines
_reread_lines = reread_lines
_redact_messages = redact_messages

__all__ = [
    "CHUNK_BYTES",
    "PARALLEL_MIN_BYTES",
    "RAW_SUFFIXES",
    "SHARD_TARGET_BYTES",
    "UNSTAMPED",
    "Chunk",
    "FeedbackStage",
    "FileStage",
    "IngestError",
    "IngestReport",
    "Line",
    "QuarantineSummary",
    "ShardResult",
    "StreamNote",
    "gunzip_blocks",
    "ingest_day",
    "iter_lines",
    "plan_chunks",
    "plan_shards",
    "read_curated",
    "redact_messages",
    "reduce_shard",
    "reread_lines",
    "shard_of",
    "split_lines",
    "stage_chunk",
    "stage_feedback",
]
