"""Model registry in storage: versions with their lineage, and aliases moved by compare-and-swap.

Layout under the registry URI::

    versions/<version>.json              one document per model version (never rewritten)
    aliases/<alias>/rev-<000001>.json    one document per move of an alias; the highest wins

Creating a version or an alias revision uses a conditional write (``put_if_absent``: O_EXCL on
``file://``, ``If-None-Match: *`` on S3), so two runs promoting at once cannot both win.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from continuous_learning import storage
from pydantic import BaseModel, ConfigDict

ALIASES = ("production", "previous", "candidate")


class RegistryError(RuntimeError):
    """A version or alias does not exist, or an alias move lost a race."""


class ModelVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    model_uri: str
    created_at: datetime
    run_id: str
    parent_version: str | None
    dataset_id: str | None
    metrics: dict[str, float] = {}
    lineage: dict[str, Any] = {}


class AliasRevision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str
    revision: int
    version: str
    previous_version: str | None
    moved_at: datetime
    reason: str
    run_id: str | None


class ModelRegistry:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")

    def _version_uri(self, version: str) -> str:
        return storage.join(self.uri, "versions", f"{version}.json")

    def versions(self) -> list[ModelVersion]:
        found = []
        for obj in storage.list_objects(storage.join(self.uri, "versions")):
            if obj.uri.endswith(".json"):
                found.append(ModelVersion.model_validate_json(storage.read_bytes(obj.uri)))
        return sorted(found, key=lambda v: _version_number(v.version))

    def get(self, version: str) -> ModelVersion:
        uri = self._version_uri(version)
        if not storage.exists(uri):
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise RegistryError(f"model version {version!r} does not exist (known: {known})")
        return ModelVersion.model_validate_json(storage.read_bytes(uri))

    def register(
        self,
        model_uri: str,
        run_id: str,
        parent_version: str | None,
        dataset_id: str | None,
        metrics: dict[str, float] | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Create the next version number (``v0``, ``v1``, ...) for ``model_uri``; idempotent per run_id."""
        existing = [v for v in self.versions() if v.run_id == run_id and v.model_uri == model_uri]
        if existing:
            return existing[0]
        number = max((_version_number(v.version) for v in self.versions()), default=-1) + 1
        while True:
            version = ModelVersion(
                version=f"v{number}",
                model_uri=model_uri,
                created_at=datetime.now(UTC),
                run_id=run_id,
                parent_version=parent_version,
                dataset_id=dataset_id,
                metrics=metrics or {},
                lineage=lineage or {},
            )
            data = version.model_dump_json(indent=2).encode()
            if storage.store_for(self.uri).put_if_absent(self._version_uri(version.version), data):
                return version
            number += 1

    def _revisions(self, alias: str) -> list[str]:
        return sorted(
            o.uri
            for o in storage.list_objects(storage.join(self.uri, "aliases", alias))
            if o.uri.endswith(".json")
        )

    def alias(self, alias: str) -> AliasRevision | None:
        revisions = self._revisions(alias)
        if not revisions:
            return None
        return AliasRevision.model_validate_json(storage.read_bytes(revisions[-1]))

    def history(self, alias: str) -> list[AliasRevision]:
        return [AliasRevision.model_validate_json(storage.read_bytes(u)) for u in self._revisions(alias)]

    def move_alias(
        self,
        alias: str,
        version: str,
        reason: str,
        run_id: str | None = None,
        expected_revision: int | None = None,
    ) -> AliasRevision:
        """Point ``alias`` at ``version``. With ``expected_revision``, fail unless the alias is still there."""
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; allowed: {', '.join(ALIASES)}")
        self.get(version)
        current = self.alias(alias)
        current_revision = current.revision if current else 0
        if expected_revision is not None and expected_revision != current_revision:
            raise RegistryError(
                f"alias {alias!r} moved concurrently: expected revision {expected_revision}, found {current_revision} "
                f"(now {current.version if current else None}); not moved to {version}"
            )
        revision = AliasRevision(
            alias=alias,
            revision=current_revision + 1,
            version=version,
            previous_version=current.version if current else None,
            moved_at=datetime.now(UTC),
            reason=reason,
            run_id=run_id,
        )
        uri = storage.join(self.uri, "aliases", alias, f"rev-{revision.revision:06d}.json")
        if not storage.store_for(uri).put_if_absent(uri, revision.model_dump_json(indent=2).encode()):
            winner = self.alias(alias)
            raise RegistryError(
                f"alias {alias!r} was moved by another run at the same time (to "
                f"{winner.version if winner else '?'}); {version} was not promoted"
            )
        return revision

    def promote(
        self, version: str, reason: str, run_id: str | None, expected_revision: int | None
    ) -> AliasRevision:
        """Make ``version`` production; the old production becomes ``previous``."""
        old = self.alias("production")
        moved = self.move_alias("production", version, reason, run_id, expected_revision)
        if old is not None and old.version != version:
            self.move_alias("previous", old.version, f"replaced by {version}", run_id)
        return moved

    def rollback(self, target: str, reason: str, run_id: str | None = None) -> AliasRevision:
        """Point ``production`` back at ``target`` (a version, or ``previous``), which must have been
        production before. Nothing changes when the target is unknown or never served."""
        if not reason.strip():
            raise RegistryError("a rollback needs a reason")
        current = self.alias("production")
        if current is None:
            raise RegistryError("there is no production model to roll back")
        if target == "previous":
            previous = self.alias("previous")
            if previous is None:
                raise RegistryError("there is no previous production model to roll back to")
            target = previous.version
        self.get(target)
        served = {r.version for r in self.history("production")}
        if target not in served:
            raise RegistryError(
                f"version {target!r} was never production (production history: {', '.join(sorted(served))}); "
                "rollback only restores a model that served before"
            )
        if target == current.version:
            raise RegistryError(f"{target} is already production; nothing to roll back")
        return self.promote(target, f"rollback: {reason}", run_id, expected_revision=current.revision)

    def moved_by(self, run_id: str, alias: str = "production") -> AliasRevision | None:
        """The alias's current revision when ``run_id`` made it (a retry finds its own earlier move)."""
        current = self.alias(alias)
        return current if current is not None and current.run_id == run_id else None

    def promote_or_resume(
        self, version: str, reason: str, run_id: str, expected_revision: int | None
    ) -> tuple[AliasRevision, bool]:
        """:meth:`promote`, unless this run already moved ``production`` to ``version`` (an earlier try
        that failed after the move): then its revision, with ``previous`` completed if that write was
        lost. Returns the revision and whether it was resumed."""
        mine = next(
            (r for r in reversed(self.history("production")) if r.run_id == run_id and r.version == version
             and (expected_revision is None or r.revision == expected_revision + 1)),
            None,
        )  # fmt: skip
        if mine is None:
            return self.promote(version, reason, run_id, expected_revision), False
        previous = self.alias("previous")
        if (
            mine.previous_version
            and mine.previous_version != version
            and (previous is None or previous.version != mine.previous_version)
        ):
            self.move_alias("previous", mine.previous_version, f"replaced by {version}", run_id)
        return mine, True

    def summary(self) -> dict[str, Any]:
        return {
            "versions": [v.version for v in self.versions()],
            "aliases": {a: (r.version if (r := self.alias(a)) else None) for a in ALIASES},
        }


def _version_number(version: str) -> int:
    match = re.fullmatch(r"v(\d+)", version)
    return int(match.group(1)) if match else -1
