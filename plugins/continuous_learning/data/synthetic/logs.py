"""Raw log files of a synthetic world, day by day, with duplicates, malformed lines and late feedback."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from continuous_learning import storage
from continuous_learning.data.synthetic.default_world import Serving, make_interaction, malformed_lines
from continuous_learning.data.synthetic.production_world import make_production_interaction

WORLDS = ("default", "production")


@dataclass
class GeneratedDay:
    day: date
    interactions: int = 0
    malformed: int = 0
    duplicates: int = 0
    late_feedback: int = 0
    files: list[str] = field(default_factory=list)


def generate_day(
    out_uri: str,
    day: date,
    interactions: int,
    seed: int,
    malformed_share: float = 0.02,
    start_index: int = 0,
    file_prefix: str = "part",
    world: str = "default",
    serving: Serving | None = None,
) -> tuple[GeneratedDay, dict[date, list[dict[str, Any]]]]:
    """Write one day of raw logs under ``<out>/raw/dt=DAY/``; return late feedback by arrival day.

    Large days can be written in chunks: each call with its own ``start_index`` and ``file_prefix``.
    ``world``: ``default`` (the demo's small, learnable world) or ``production`` (``production_world``).
    ``serving``: the model version the day's records carry (and, default world, its accuracy).
    """
    interaction = _world(world)
    seed_key = f"{seed}-{day.isoformat()}-{start_index}"
    rng = random.Random(seed_key if world == "default" else f"{seed_key}-{world}")
    summary = GeneratedDay(day)
    lines_by_file: list[list[str]] = [[], [], []]
    late_by_day: dict[date, list[dict[str, Any]]] = {}
    for index in range(start_index, start_index + interactions):
        record, late = interaction(rng, day, index, serving)
        target = lines_by_file[index % len(lines_by_file)]
        target.append(json.dumps(record))
        summary.interactions += 1
        if rng.random() < 0.01:  # an agent retry wrote the same record twice, in another file
            lines_by_file[(index + 1) % len(lines_by_file)].append(json.dumps(record))
            summary.duplicates += 1
        if rng.random() < malformed_share:
            bad = rng.choice(malformed_lines(rng, record))
            target.append(bad)
            summary.malformed += 1
        for event in late:
            arrival = datetime.fromisoformat(event["timestamp"]).date()
            late_by_day.setdefault(arrival, []).append(event)
    prefix = storage.join(out_uri, "raw", f"dt={day.isoformat()}")
    for number, lines in enumerate(lines_by_file):
        body = ("\n".join(lines) + "\n").encode()
        if number == 0:
            name, data = f"{file_prefix}-{number:04d}.jsonl.gz", gzip.compress(body, mtime=0)
        else:
            name, data = f"{file_prefix}-{number:04d}.jsonl", body
        uri = storage.join(prefix, name)
        storage.write_bytes(uri, data)
        summary.files.append(uri)
    return summary, late_by_day


def _world(world: str) -> Any:
    if world == "default":
        return make_interaction
    if world == "production":
        return make_production_interaction
    raise ValueError(f"unknown synthetic world {world!r}; known: {', '.join(WORLDS)}")


def generate_logs(
    out_uri: str,
    start: date,
    days: int,
    interactions_per_day: int,
    seed: int = 0,
    world: str = "default",
    serving: Mapping[date, Serving] | None = None,
) -> list[GeneratedDay]:
    """Raw logs for ``days`` days from ``start`` plus late feedback files under ``<out>/feedback/``.

    ``world``: ``default`` or ``production`` (:data:`WORLDS`). ``serving``: which model serves each day
    (days not in it: the world's own model)."""
    _world(world)  # an unknown world fails before anything is written
    summaries = []
    late_all: dict[date, list[dict[str, Any]]] = {}
    for offset in range(days):
        day = start + timedelta(days=offset)
        summary, late = generate_day(
            out_uri, day, interactions_per_day, seed, world=world, serving=(serving or {}).get(day)
        )
        summaries.append(summary)
        for arrival, events in late.items():
            late_all.setdefault(arrival, []).extend(events)
    by_summary = {s.day: s for s in summaries}
    for arrival, events in sorted(late_all.items()):
        uri = storage.join(out_uri, "feedback", f"dt={arrival.isoformat()}", "feedback.jsonl")
        body = "".join(json.dumps(e) + "\n" for e in sorted(events, key=lambda e: e["timestamp"]))
        storage.write_bytes(uri, body.encode())
        for event in events:
            origin = datetime.strptime(event["interaction_id"].split("-")[1], "%Y%m%d").date()
            if origin in by_summary:
                by_summary[origin].late_feedback += 1
    return summaries
