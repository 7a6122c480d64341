"""What ingesting a day reports, and the error that stops it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The ``model_versions`` key of records that carry no ``model_version``.
UNSTAMPED = "(none)"


class IngestError(RuntimeError):
    """The day cannot be ingested (for example: too large a share of bad records)."""


@dataclass
class IngestReport:
    day: str
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    conflicts: int = 0
    blank_lines: int = 0
    files: int = 0
    skipped_files: int = 0
    shards: int = 0
    feedback_read: int = 0
    feedback_joined: int = 0
    feedback_quarantined: int = 0
    feedback_unmatched: int = 0
    redactions: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    # accepted interactions by the ``model_version`` that served them (``UNSTAMPED``: none given)
    model_versions: dict[str, int] = field(default_factory=dict)
    curated_uri: str | None = None
    quarantine_uri: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
