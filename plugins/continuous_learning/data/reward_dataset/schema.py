"""The reward dataset's columns (VeRL's parquet format: ``data_source``, ``prompt``, ``ability``,
``reward_model``, ``extra_info``) and the deterministic train/validation/test split of an interaction."""

from __future__ import annotations

import hashlib

import pyarrow as pa

SPLITS = ("train", "validation", "test")

FUNCTION_TYPE = pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())])
TOOL_CALL_TYPE = pa.struct(
    [pa.field("id", pa.string()), pa.field("type", pa.string()), pa.field("function", FUNCTION_TYPE)]
)
MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("tool_calls", pa.list_(TOOL_CALL_TYPE)),
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
