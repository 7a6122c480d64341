"""Checkpoints of a VeRL run in storage: every save uploaded and committed (the tracker written last),
older ones pruned, the last committed one restored for ``resume_mode=auto``.

Layout under ``<output_uri>/checkpoints/``: ``global_step_N/`` and ``latest_checkpointed_iteration.txt``
(the commit marker).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from continuous_learning import storage

log = logging.getLogger(__name__)

UPLOAD_MANIFEST = "_cl_upload.json"
TRACKER = "latest_checkpointed_iteration.txt"
STEP_DIR = re.compile(r"^global_step_(\d+)$")


try:  # the image has VeRL; the dev venv composes VeRL's config without importing it
    from verl.trainer.ppo.checkpoint_callback import CheckpointCallback as _CallbackBase
except ImportError:  # pragma: no cover - depends on the environment
    _CallbackBase = object


def _steps(names: Sequence[str]) -> list[int]:
    return sorted(int(m.group(1)) for n in names if (m := STEP_DIR.match(n)))


def write_upload_manifest(checkpoint_dir: Path, checkpoints_uri: str, keep: int) -> None:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"checkpoints_uri": checkpoints_uri, "keep": keep}
    (checkpoint_dir / UPLOAD_MANIFEST).write_text(json.dumps(manifest))


def upload_checkpoint(step_dir: Path, checkpoints_uri: str, global_step: int, keep: int) -> str:
    """Upload ``global_step_N/``, then commit it by writing the tracker; prune older uploads."""
    target = storage.join(checkpoints_uri, f"global_step_{global_step}")
    storage.store_for(target).delete_prefix(target + "/")  # a re-save of the same step replaces it
    storage.upload_dir(step_dir, target)
    storage.write_bytes(storage.join(checkpoints_uri, TRACKER), str(global_step).encode())
    uploaded = _steps(
        sorted(
            {
                o.uri.removeprefix(checkpoints_uri.rstrip("/") + "/").split("/", 1)[0]
                for o in storage.list_objects(checkpoints_uri.rstrip("/") + "/")
            }
        )
    )
    for old in [s for s in uploaded if s < global_step][: max(len(uploaded) - keep, 0)]:
        prefix = storage.join(checkpoints_uri, f"global_step_{old}") + "/"
        storage.store_for(prefix).delete_prefix(prefix)
    log.info("checkpoint global_step_%d uploaded to %s", global_step, target)
    return target


class UploadCheckpointCallback(_CallbackBase):  # type: ignore[misc,valid-type]
    """VeRL ``trainer.checkpoint_callback_class``: runs on the driver after every checkpoint save and
    uploads it to storage (where to: ``_cl_upload.json`` next to the checkpoints, written by :func:`train`).
    An exception here aborts training, on purpose: a checkpoint that did not reach storage is not durable."""

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def on_save(
        self,
        trainer: Any = None,
        global_step: int = 0,
        checkpoint_dir: str = "",
        async_save: bool = False,
        **kwargs: Any,
    ) -> None:
        step_dir = Path(checkpoint_dir)
        manifest = json.loads((step_dir.parent / UPLOAD_MANIFEST).read_text())
        if async_save:
            log.warning("async checkpoint save: step %d uploaded before its shards are final", global_step)
        upload_checkpoint(step_dir, manifest["checkpoints_uri"], global_step, int(manifest.get("keep", 2)))


def restore_checkpoint(checkpoints_uri: str, local_dir: Path) -> int | None:
    """Put the last committed checkpoint from storage into ``local_dir`` for ``resume_mode=auto``.

    Returns its step, or None when nothing was committed. A local copy at the same or a later step
    (a restarted job on the same shared file system) is kept as it is.
    """
    tracker_uri = storage.join(checkpoints_uri, TRACKER)
    if not storage.exists(tracker_uri):
        return None
    step = int(storage.read_bytes(tracker_uri).decode().strip())
    local_tracker = local_dir / TRACKER
    if local_tracker.exists() and (local_dir / f"global_step_{step}").is_dir():
        local_step = int(local_tracker.read_text().strip() or 0)
        if local_step >= step:
            return local_step
    step_dir = local_dir / f"global_step_{step}"
    if step_dir.exists():
        shutil.rmtree(step_dir)
    storage.download_dir(storage.join(checkpoints_uri, f"global_step_{step}") + "/", step_dir)
    local_tracker.write_text(str(step))
    log.info("restored checkpoint global_step_%d from %s", step, checkpoints_uri)
    return step


def latest_local_step(local_dir: Path) -> int | None:
    tracker = local_dir / TRACKER
    if tracker.exists():
        return int(tracker.read_text().strip())
    steps = _steps([p.name for p in local_dir.iterdir()]) if local_dir.is_dir() else []
    return steps[-1] if steps else None


def upload_latest_checkpoint(local_dir: Path, checkpoints_uri: str, keep: int) -> int | None:
    """Upload the last committed local checkpoint unless storage already has it (trainers without a
    checkpoint callback: VeRL's SFT trainer); returns its step."""
    step = latest_local_step(local_dir)
    if step is None or not (local_dir / f"global_step_{step}").is_dir():
        return None
    tracker_uri = storage.join(checkpoints_uri, TRACKER)
    if storage.exists(tracker_uri) and int(storage.read_bytes(tracker_uri).decode().strip() or 0) >= step:
        return step
    upload_checkpoint(local_dir / f"global_step_{step}", checkpoints_uri, step, keep)
    return step
