"""Onboarding: the user's model becomes a registry version (``v0`` on day 0), with its lineage.

Used by ``python -m continuous_learning register-model`` (in this process) and by the first training
run, whose ``ensure_base_model`` task runs the trainer's ``import-model`` command on the Ray cluster and
then registers its :class:`ImportResult` here.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from continuous_learning import storage
from continuous_learning.config import Settings
from continuous_learning.contracts import ImitationOptions, ImportResult, ImportSpec
from continuous_learning.registry import ModelRegistry, ModelVersion, RegistryError


class OnboardingError(RuntimeError):
    """The model could not be onboarded; the message says why."""


def import_spec(
    settings: Settings,
    run_id: str,
    output_uri: str,
    *,
    source_uri: str | None = None,
    imitation: ImitationOptions | None = None,
    **overrides: Any,
) -> ImportSpec:
    """The import of ``settings.model`` (or ``source_uri``), with explicit ``overrides`` (None: settings)."""
    m = settings.model
    source = source_uri or m.base_uri
    if source is None:
        raise OnboardingError(
            "model.base_uri is not set: point it at your production model (s3://..., file://..., a folder in "
            "Hugging Face format), or onboard one with `python -m continuous_learning register-model --uri ... "
            "--promote --reason ...`"
        )
    chosen = {k: v for k, v in overrides.items() if v is not None}
    return ImportSpec(
        run_id=run_id,
        source_uri=source,
        output_uri=output_uri,
        chat_template=chosen.get("chat_template", m.chat_template),
        tool_call_format=chosen.get("tool_call_format", m.tool_call_format),
        gguf_file=chosen.get("gguf_file", m.gguf_file),
        dtype=chosen.get("dtype", m.dtype),
        imitation=imitation,
        cpu_threads=settings.trainer.threads,
    )


def register_import(
    registry: ModelRegistry,
    result: ImportResult,
    run_id: str,
    *,
    dataset_id: str | None = None,
    spec_uri: str | None = None,
    promote_reason: str | None = None,
) -> tuple[ModelVersion, int | None]:
    """Register an imported model (idempotent per run); with ``promote_reason``, make it production.

    Returns the version and the production revision it got (None when not promoted)."""
    lineage: dict[str, Any] = {"kind": "import", **result.lineage.model_dump()}
    if spec_uri:
        lineage["import_spec"] = spec_uri
    version = registry.register(result.model_uri, run_id, None, dataset_id, lineage=lineage)
    if promote_reason is None:
        return version, None
    current = registry.alias("production")
    if current is not None and current.version == version.version:
        return version, current.revision
    try:
        moved = registry.promote(
            version.version, promote_reason, run_id, expected_revision=current.revision if current else 0
        )
    except RegistryError as exc:
        raise OnboardingError(str(exc)) from None
    return version, moved.revision


def _slug(uri: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", uri.rstrip("/").rsplit("/", 1)[-1].split(":")[-1])[:60] or "model"


def register_model(
    settings: Settings,
    uri: str,
    *,
    chat_template: str | None = None,
    tool_call_format: str | None = None,
    gguf_file: str | None = None,
    dtype: str | None = None,
    promote_reason: str | None = None,
) -> dict[str, Any]:
    """Import ``uri`` here (validate, fix, copy into storage) and register it; the CLI's document."""
    from continuous_learning.models.importing import ModelImportError, prepare_model, publish_model

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    run_id = f"register-model-{stamp}"
    output_uri = storage.join(settings.storage.uri("models"), f"{_slug(uri)}-{stamp}", "model")
    spec = import_spec(
        settings, run_id, output_uri, source_uri=uri, chat_template=chat_template,
        tool_call_format=tool_call_format, gguf_file=gguf_file, dtype=dtype,
    )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="cl-register-") as tmp:
            result = publish_model(prepare_model(spec, Path(tmp)), spec)
    except ModelImportError as exc:
        raise OnboardingError(str(exc)) from None
    registry = ModelRegistry(settings.storage.registry_uri)
    version, revision = register_import(registry, result, run_id, promote_reason=promote_reason)
    return {
        "version": version.version,
        "model_uri": version.model_uri,
        "production_revision": revision,
        "lineage": result.lineage.model_dump(),
    }
