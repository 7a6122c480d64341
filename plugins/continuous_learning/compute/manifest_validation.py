"""Validation of rendered KubeRay manifests: the built-in schema and rules (compute/crd_schemas/), then
KubeRay's own CRDs where a folder of them is provided (``CL_KUBERAY_CRDS``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from continuous_learning.compute import crd_schemas
from continuous_learning.compute.kuberay_manifests import KubeRayError, ManifestInvalid

# Nothing outside the installed package is needed: the built-in layer ships in compute/crd_schemas/.
CRDS_ENV = "CL_KUBERAY_CRDS"


def crd_directory() -> Path | None:
    """KubeRay's own CRDs, where provided: the folder named by ``CL_KUBERAY_CRDS``; ``None`` when unset.

    The folder holds ``ray.io_rayclusters.yaml`` and ``ray.io_rayjobs.yaml`` as released in KubeRay's
    ``ray-operator/config/crd/bases/`` (the version the cluster runs). Set but without them is a
    misconfiguration: :class:`KubeRayError`, not a silent skip.
    """
    value = os.environ.get(CRDS_ENV, "").strip()
    if not value:
        return None
    directory = Path(value).expanduser()
    missing = [name for name in crd_schemas.CRD_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise KubeRayError(
            f"{CRDS_ENV}={value}: {' and '.join(missing)} not found there; point it at a folder with "
            "KubeRay's CRDs (ray-operator/config/crd/bases/ of the KubeRay release the cluster runs) or unset it"
        )
    return directory


def manifest_errors(manifest: dict[str, Any], directory: Path | None = None) -> list[str]:
    """Everything wrong with ``manifest``: by the built-in schema and rules, then by KubeRay's CRDs in
    ``directory`` (default :func:`crd_directory`; none there: the built-in layer only)."""
    errors = [f"{e} [built-in schema]" for e in crd_schemas.builtin_errors(manifest)]
    directory = directory or crd_directory()
    if directory is not None:
        errors += [f"{e} [KubeRay CRD]" for e in crd_schemas.crd_errors(manifest, directory)]
    return errors


def validate_manifest(manifest: dict[str, Any], directory: Path | None = None) -> None:
    """Raise :class:`ManifestInvalid` unless ``manifest`` passes :func:`manifest_errors`."""
    errors = manifest_errors(manifest, directory)
    if errors:
        name = (manifest.get("metadata") or {}).get("name", "?")
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ManifestInvalid(f"{manifest.get('kind', '?')} {name} is invalid: {'; '.join(errors[:5])}{more}")
