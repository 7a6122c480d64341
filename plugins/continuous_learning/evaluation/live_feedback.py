"""The production model's live feedback, per model version and day, from curated data (no Airflow).

The serving side stamps the registry version that answered (``v3``) into each record's ``model_version``
(docs/input-contract.md); ingest keeps it in the curated row, with the record's feedback joined (inline and
late, deduplicated). From a window of curated days this module counts, per version and day: interactions,
thumbs up and down (the events of type ``thumbs``; ratings are not thumbs), and interactions with a
correction. :func:`check_drop` then compares the production version with the one it replaced: a sustained
drop of the thumbs-up rate after the promotion is a reason to roll back.

A day's counts grow while its late feedback arrives (``ingest.feedback_horizon_days``): the gate reads the
partitions as they are when it runs, and a reprocessed day (late_feedback_reprocess) counts again next time.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any, Literal

from continuous_learning.config import MonitoringSettings
from continuous_learning.data.ingest import UNSTAMPED, read_curated
from pydantic import BaseModel, ConfigDict, computed_field


class FeedbackCounts(BaseModel):
    """Counts of one model version over one day (``day``) or pooled over several (``day`` None)."""

    model_config = ConfigDict(frozen=True)
    model_version: str
    day: date | None = None
    interactions: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    corrected: int = 0  # interactions with at least one correction

    @computed_field  # type: ignore[prop-decorator]
    @property
    def thumbs(self) -> int:
        return self.thumbs_up + self.thumbs_down

    @computed_field  # type: ignore[prop-decorator]
    @property
    def thumbs_up_rate(self) -> float | None:
        return self.thumbs_up / self.thumbs if self.thumbs else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def corrections_per_100(self) -> float | None:
        return 100 * self.corrected / self.interactions if self.interactions else None


def pooled(counts: Iterable[FeedbackCounts], model_version: str) -> FeedbackCounts:
    """The sum of ``counts`` (all of ``model_version``), as one row without a day."""
    total = FeedbackCounts(model_version=model_version)
    for c in counts:
        total = total.model_copy(
            update={
                "interactions": total.interactions + c.interactions,
                "thumbs_up": total.thumbs_up + c.thumbs_up,
                "thumbs_down": total.thumbs_down + c.thumbs_down,
                "corrected": total.corrected + c.corrected,
            }
        )
    return total


def feedback_by_version(data_uri: str, days: Iterable[date]) -> list[FeedbackCounts]:
    """Counts per (day, model version) of the curated partitions of ``days`` (days never ingested are
    skipped), ordered by day then version; records without a version count under ``UNSTAMPED``."""
    rows: list[FeedbackCounts] = []
    for day in sorted(days):
        table = read_curated(data_uri, day)
        if table is None:
            continue
        counts: dict[str, list[int]] = {}  # version -> [interactions, up, down, corrected]
        columns = (table.column(n).to_pylist() for n in ("model_version", "feedback_json", "correction_json"))
        for version, feedback_json, correction_json in zip(*columns, strict=True):
            entry = counts.setdefault(version if version is not None else UNSTAMPED, [0, 0, 0, 0])
            entry[0] += 1
            for event in json.loads(feedback_json or "[]"):
                if event.get("type") == "thumbs":
                    entry[1 if event.get("value") == 1 else 2] += 1
            entry[3] += correction_json is not None
        rows += [
            FeedbackCounts(
                model_version=version,
                day=day,
                interactions=n,
                thumbs_up=up,
                thumbs_down=down,
                corrected=fixed,
            )
            for version, (n, up, down, fixed) in sorted(counts.items())
        ]
    return rows


class FeedbackDrop(BaseModel):
    """The production version's thumbs-up rate stayed below the previous version's on every day checked."""

    model_config = ConfigDict(frozen=True)
    version: str
    previous_version: str
    days: list[date]
    rates: list[float]  # the production version's thumbs-up rate on each of ``days``
    baseline_rate: float  # the previous version's, pooled
    max_drop: float  # the setting: a day counts when its rate is below baseline_rate - max_drop


class LiveFeedback(BaseModel):
    """The gate's view of production's live feedback: every version's counts in the window, production's
    and the previous version's pooled, and the verdict of :func:`check_drop`."""

    model_config = ConfigDict(frozen=True)
    start: date
    end: date
    production_version: str | None
    previous_version: str | None
    promoted_on: date | None
    rows: list[FeedbackCounts]
    production: FeedbackCounts | None  # pooled over the window's days since the promotion
    previous: FeedbackCounts | None  # pooled over the window
    verdict: Literal["drop", "ok", "not_enough_data", "no_previous_version"]
    reason: str
    drop: FeedbackDrop | None = None


def check_drop(
    rows: list[FeedbackCounts],
    end: date,
    production: str,
    previous: str,
    promoted_on: date | None,
    settings: MonitoringSettings,
) -> tuple[Literal["drop", "ok", "not_enough_data"], str, FeedbackDrop | None]:
    """Whether ``production``'s thumbs-up rate dropped below ``previous``'s, sustained.

    The last ``sustained_days`` days up to ``end`` (none before the promotion) must each have enough of
    production's interactions and thumbs; the baseline is ``previous``'s rate pooled over ``rows`` with
    enough thumbs. A drop: on every one of those days production's rate is below the baseline by more than
    ``max_thumbs_up_drop``."""
    baseline = pooled((r for r in rows if r.model_version == previous), previous)
    if baseline.thumbs_up_rate is None or baseline.thumbs < settings.min_thumbs:
        why = f"{previous} has {baseline.thumbs} thumbs in the window (fewer than {settings.min_thumbs})"
        return "not_enough_data", why, None
    days = [end - timedelta(days=n) for n in reversed(range(settings.sustained_days))]
    if promoted_on is not None and days[0] < promoted_on:
        why = f"{production} was promoted on {promoted_on}: fewer than {settings.sustained_days} days of its feedback by {end}"
        return "not_enough_data", why, None
    by_day = {r.day: r for r in rows if r.model_version == production}
    rates: list[float] = []
    for day in days:
        row = by_day.get(day)
        if row is None or row.interactions < settings.min_interactions or row.thumbs < settings.min_thumbs:
            seen = f"{row.interactions} interactions, {row.thumbs} thumbs" if row else "no interactions"
            why = (
                f"{production} on {day}: {seen} (needs {settings.min_interactions} and {settings.min_thumbs})"
            )
            return "not_enough_data", why, None
        assert row.thumbs_up_rate is not None
        rates.append(row.thumbs_up_rate)
    limit = baseline.thumbs_up_rate - settings.max_thumbs_up_drop
    shown = ", ".join(f"{rate:.1%}" for rate in rates)
    if all(rate < limit for rate in rates):
        drop = FeedbackDrop(
            version=production, previous_version=previous, days=days, rates=rates,
            baseline_rate=baseline.thumbs_up_rate, max_drop=settings.max_thumbs_up_drop,
        )  # fmt: skip
        reason = (
            f"{production}'s thumbs-up rate was {shown} on the last {len(days)} days ({days[0]} to {days[-1]}), "
            f"below {previous}'s {baseline.thumbs_up_rate:.1%} by more than {settings.max_thumbs_up_drop:.0%}"
        )
        return "drop", reason, drop
    why = f"{production}'s thumbs-up rate {shown} against {previous}'s {baseline.thumbs_up_rate:.1%} (limit {limit:.1%})"
    return "ok", why, None


def live_feedback(
    data_uri: str,
    end: date,
    production_version: str | None,
    previous_version: str | None,
    settings: MonitoringSettings,
) -> LiveFeedback:
    """Production's live feedback over the ``lookback_days`` days ending ``end`` (the last curated day
    the gate sees), beside the version it replaced, with the verdict of :func:`check_drop`.

    The promotion's day is the first day of the window on which production's version answered (the logs'
    stamp, not the registry's clock: a model serves from its deployment on, and backfilled days keep
    their own dates)."""
    start = end - timedelta(days=settings.lookback_days - 1)
    rows = feedback_by_version(data_uri, (start + timedelta(days=n) for n in range(settings.lookback_days)))
    promoted_on = min((r.day for r in rows if r.model_version == production_version and r.day), default=None)
    production = previous = None
    if production_version is not None:
        since = [
            r
            for r in rows
            if r.model_version == production_version
            and (promoted_on is None or (r.day or end) >= promoted_on)
        ]
        production = pooled(since, production_version)
    if production_version is None or previous_version is None:
        verdict: Literal["drop", "ok", "not_enough_data", "no_previous_version"] = "no_previous_version"
        reason, drop = "no earlier production version to compare with", None
    else:
        previous = pooled((r for r in rows if r.model_version == previous_version), previous_version)
        verdict, reason, drop = check_drop(
            rows, end, production_version, previous_version, promoted_on, settings
        )
    return LiveFeedback(
        start=start, end=end, production_version=production_version, previous_version=previous_version,
        promoted_on=promoted_on, rows=rows, production=production, previous=previous, verdict=verdict,
        reason=reason, drop=drop,
    )  # fmt: skip


def _rate(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def render_section(live: LiveFeedback, offline_score: float | None) -> str:
    """The report's "Live feedback" section: production and previous version pooled (production beside
    its offline score), the verdict, then every version's counts per day."""

    def row(cells: Iterable[object]) -> str:
        return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"

    head = "<tr><th>model version</th><th>days</th><th>interactions</th><th>thumbs</th><th>thumbs-up rate</th><th>corrections per 100</th><th>offline mean reward</th></tr>"  # fmt: skip
    summary = []
    pairs = (("production", live.production, offline_score), ("previous", live.previous, None))
    for label, counts, score in pairs:
        if counts is not None:
            per_100 = "n/a" if counts.corrections_per_100 is None else f"{counts.corrections_per_100:.1f}"
            shown = "n/a" if score is None else f"{score:.3f}"
            cells = [f"{counts.model_version} ({label})", f"{live.start} to {live.end}", counts.interactions]
            summary.append(row([*cells, counts.thumbs, _rate(counts.thumbs_up_rate), per_100, shown]))
    daily = [
        row([r.day, r.model_version, r.interactions, r.thumbs, _rate(r.thumbs_up_rate),
             "n/a" if r.corrections_per_100 is None else f"{r.corrections_per_100:.1f}"])
        for r in live.rows
    ]  # fmt: skip
    verdict = "DROP: roll back?" if live.verdict == "drop" else live.verdict.replace("_", " ")
    return (
        "<h2>Live feedback</h2>"
        f"<p class='live-verdict'>{html.escape(verdict)}: {html.escape(live.reason)}</p>"
        f"<table class='live'>{head}{''.join(summary)}</table>"
        "<details><summary>per day and version</summary><table class='live-days'>"
        "<tr><th>day</th><th>model version</th><th>interactions</th><th>thumbs</th><th>thumbs-up rate</th>"
        f"<th>corrections per 100</th></tr>{''.join(daily)}</table></details>"
    )


def report_section(document: Mapping[str, Any] | None, eval_result: Mapping[str, Any] | None) -> str:
    """The run report's section from the gate's live-feedback document (JSON; "" without one), with the
    production model's offline score from this run's evaluation and, on a drop, the rollback link."""
    if not document:
        return ""
    live = LiveFeedback.model_validate({k: v for k, v in document.items() if k in LiveFeedback.model_fields})
    offline = ((eval_result or {}).get("mean_reward") or {}).get("production")
    page = render_section(live, offline)
    if url := document.get("rollback_url"):
        link = html.escape(str(url), quote=True)
        page += f"<p>Roll back: <a href='{link}'>{link}</a> (Trigger; target version 'previous')</p>"
    return page
