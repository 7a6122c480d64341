"""Which production model ``deploy_production`` deploys: plain data in, plain data out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from continuous_learning.contracts import ProductionModelEvent

#: The serving container's environment variable with the registry version it serves (both targets), which
#: the serving side stamps into the logs it writes as ``model_version`` (docs/input-contract.md).
MODEL_VERSION_ENV = "CL_MODEL_VERSION"


@dataclass(frozen=True)
class Handoff:
    """``deploy`` the event, or ``skip`` saying why."""

    action: Literal["deploy", "skip"]
    message: str
    event: ProductionModelEvent | None = None


def choose(extras: Iterable[Mapping[str, Any]], production: ProductionModelEvent | None) -> Handoff:
    """The event to deploy, from the run's triggering events (their ``extra``) and the registry's
    current production (as an event).

    Several events in one run (the asset schedule coalesces them): the highest revision. An event whose
    revision is behind the alias (a newer promotion or rollback came after it) is superseded: the
    newer event has its own run. No event (a manual run): the current production.
    """
    events = [ProductionModelEvent.from_extra(e) for e in extras if e]
    if not events:
        if production is None:
            return Handoff("skip", "no production model yet: nothing to deploy")
        return Handoff(
            "deploy", f"manual run: deploying the current production {production.version}", production
        )
    newest = max(events, key=lambda e: e.revision)
    if production is not None and production.revision > newest.revision:
        return Handoff(
            "skip",
            f"{newest.version} (production revision {newest.revision}) was superseded by {production.version} "
            f"(revision {production.revision}); that move deploys it",
        )
    return Handoff("deploy", f"deploying {newest.version} (production revision {newest.revision})", newest)


def event_for(
    version: Any, revision: Any, sagemaker_model_package_arn: str | None = None
) -> ProductionModelEvent:
    """The event for a registry ``ModelVersion`` made production by the alias ``revision`` (an
    ``AliasRevision``): what ``promote`` and ``model_rollback`` put in the Asset event's extra."""
    lora = (version.lineage or {}).get("lora") or {}
    return ProductionModelEvent(
        version=version.version,
        model_uri=version.model_uri,
        revision=revision.revision,
        previous_version=revision.previous_version,
        reason=revision.reason[:500],
        run_id=revision.run_id,
        adapter_uri=lora.get("adapter_uri"),
        base_model_uri=(version.lineage or {}).get("base_model_uri") if lora else None,
        sagemaker_model_package_arn=sagemaker_model_package_arn,
    )
