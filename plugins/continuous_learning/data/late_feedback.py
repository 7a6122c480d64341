"""Which ingested days received feedback since they were last ingested.

A day's curated manifest records the feedback files it read (``dt=day .. dt=day+horizon``); a file
that appeared or changed since then means the day's reward references may be stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta

from continuous_learning import storage
from continuous_learning.contracts import partition_uri


@dataclass
class StaleDay:
    day: date
    new_files: list[str] = field(default_factory=list)


def days_with_new_feedback(
    data_uri: str, feedback_uri: str, today: date, lookback_days: int, horizon_days: int = 7
) -> list[StaleDay]:
    """Ingested days in ``[today - lookback, today)`` whose feedback inputs changed since their ingest."""
    stale = []
    for offset in range(lookback_days, 0, -1):
        day = today - timedelta(days=offset)
        files = storage.partition_files(partition_uri(data_uri, "curated", day))
        if "manifest.json" not in files:
            continue  # never ingested: the daily schedule or catch-up owns it
        manifest = json.loads(storage.read_bytes(files["manifest.json"]))
        seen = {(f["uri"], f["size"]) for f in manifest.get("feedback_inputs", [])}
        horizon = manifest.get("feedback_horizon_days", horizon_days)
        current = []
        for extra in range(horizon + 1):
            prefix = storage.join(feedback_uri, f"dt={(day + timedelta(days=extra)).isoformat()}")
            current += [(o.uri, o.size) for o in storage.list_objects(prefix)]
        new = sorted(uri for uri, size in set(current) - seen)
        if new:
            stale.append(StaleDay(day, new))
    return stale
