"""Live feedback of the production model, at the gate: computed from curated data (the library's
``evaluation.live_feedback``), shown beside the offline score, and alerted on when it drops after a
promotion (the alert carries the rollback link)."""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from continuous_learning.config import Settings
    from continuous_learning.evaluation.live_feedback import LiveFeedback

log = logging.getLogger(__name__)


def production_live_feedback(settings: Settings, end: date) -> LiveFeedback | None:
    """Production's live feedback over the window ending ``end``, with the version it replaced (the
    registry's production alias and its ``previous_version``); None when monitoring is off or no model is
    in production yet."""
    from continuous_learning.evaluation.live_feedback import live_feedback
    from continuous_learning.registry import ModelRegistry

    if not settings.monitoring.enabled:
        return None
    production = ModelRegistry(settings.storage.registry_uri).alias("production")
    if production is None:
        return None
    return live_feedback(
        settings.storage.data_uri, end, production.version, production.previous_version, settings.monitoring
    )


def check_live_feedback(context: Any, settings: Settings, end: date) -> dict[str, Any] | None:
    """Compute production's live feedback; on a sustained drop, send the alert with the rollback link.

    Returns the live-feedback document (JSON) with ``alerted`` and, on a drop, ``rollback_url``; None
    when there is nothing to show. Never raises: live feedback must not fail the gate."""
    from continuous_learning.airflow.links import rollback_url
    from continuous_learning.airflow.notifications import notify_feedback_drop

    try:
        live = production_live_feedback(settings, end)
    except Exception:
        log.exception("live feedback: not computed")
        return None
    if live is None:
        return None
    document: dict[str, Any] = {**live.model_dump(mode="json"), "alerted": False}
    log.info("live feedback of %s: %s (%s)", live.production_version, live.verdict, live.reason)
    if live.drop is not None:
        url = rollback_url()
        document["rollback_url"] = url
        document["alerted"] = notify_feedback_drop(context, live.drop.version, live.drop.previous_version, live.reason, url)  # fmt: skip
    return document
