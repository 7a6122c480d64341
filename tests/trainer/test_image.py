"""The trainer image's lock and Dockerfile, checked offline."""

from __future__ import annotations

import re
import subprocess
from collections import Counter

import pytest

from tests.trainer.helpers import REPO

IMAGE = REPO / "trainer" / "image"
DOCKERFILE = REPO / "trainer" / "Dockerfile"
HADOLINT = REPO / ".tools" / "bin" / "hadolint"
#: The direct pins and the versions docs/trainer-image.md documents.
DIRECT_PINS = {
    "torch": "2.11.0",
    "torchaudio": "2.11.0",
    "verl": "0.9.1",
    "sglang": "0.5.12",
    "sglang-kernel": "0.4.2.post2",
    "flashinfer-python": "0.6.11.post1",
    "flashinfer-cubin": "0.6.11.post1",
    "transformers": "5.9.0",
    "ray": "2.60.0",
}
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s\\;]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries() -> list[tuple[str, str, list[str]]]:
    """(name, version, hashes) per locked requirement."""
    entries: list[tuple[str, str, list[str]]] = []
    for line in (IMAGE / "requirements.lock").read_text().splitlines():
        if match := ENTRY.match(line):
            entries.append((normalise(match.group(1)), match.group(3), []))
        elif line.strip().startswith("--hash=sha256:"):
            assert entries, "hash before the first requirement"
            entries[-1][2].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return entries


def test_every_direct_pin_is_locked_at_its_documented_version() -> None:
    locked = {name: version for name, version, _ in lock_entries()}
    for name, version in DIRECT_PINS.items():
        assert locked.get(name) == version, f"{name}: locked {locked.get(name)}, documented {version}"
    assert locked["tokenizers"].startswith("0.22."), "transformers 5.9.0 needs tokenizers 0.22.x"
    docs = (REPO / "docs" / "trainer-image.md").read_text()
    for name, version in DIRECT_PINS.items():
        assert f"{name}=={version}" in docs or f"{name} {version}" in docs, f"{name} {version} not in docs"


def test_undeclared_verl_imports_are_locked() -> None:
    """VeRL 0.9.1's V1 trainer imports these without declaring them (its `verl-core` extra); the H200
    run failed on `No module named 'transfer_queue'` before they were pinned."""
    locked = {name for name, _, _ in lock_entries()}
    assert {"transferqueue", "cachetools", "nvtx"} <= locked


def test_direct_pins_match_requirements_in() -> None:
    pinned = {}
    for line in (IMAGE / "requirements.in").read_text().splitlines():
        if match := ENTRY.match(line.strip()):
            pinned[normalise(match.group(1))] = match.group(3)
    assert {k: v for k, v in pinned.items() if k in DIRECT_PINS} == DIRECT_PINS


def test_each_package_once_with_hashes() -> None:
    entries = lock_entries()
    assert len(entries) > 100
    counts = Counter(name for name, _, _ in entries)
    assert [name for name, n in counts.items() if n > 1] == []
    for name, _, hashes in entries:
        assert hashes, f"{name} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_lock_is_the_cuda13_build() -> None:
    names = {name for name, _, _ in lock_entries()}
    assert "nvidia-nccl-cu13" in names and "nvidia-cuda-runtime" in names
    assert not any(n.endswith("-cu12") for n in names), "a CUDA 12 wheel slipped into the CUDA 13 lock"


def test_transformers_override_is_explained() -> None:
    overrides = (IMAGE / "overrides.txt").read_text()
    assert re.search(r"^transformers==5\.9\.0$", overrides, re.M)
    assert "sglang 0.5.12 requires transformers==5.6.0" in overrides
    assert "verl 0.9.1 requires" in overrides and "!=5.6.0" in overrides
    assert "overrides.txt" in (IMAGE / "lock.sh").read_text()
    assert "override" in (REPO / "docs" / "trainer-image.md").read_text().lower()


def test_dockerfile_labels_match_the_lock() -> None:
    text = DOCKERFILE.read_text()
    locked = {name: version for name, version, _ in lock_entries()}
    for name in ("torch", "verl", "sglang", "sglang-kernel", "transformers", "ray"):
        assert f'ai.continuous-learning.{name}="{locked[name]}"' in text
    assert f'ai.continuous-learning.flashinfer="{locked["flashinfer-python"]}"' in text
    assert "--require-hashes" in text and "requirements.lock" in text
    assert re.search(r"^USER \$\{TRAINER_UID\}$", text, re.M), "the image runs as a non-root user"
    assert "aws-efa-installer" in text and "aws-ofi-nccl" in text
    assert "NCCL_NVLS_ENABLE=0" in text


@pytest.mark.skipif(not HADOLINT.exists(), reason="run `make trainer-tools` (hadolint under .tools/)")
def test_hadolint_clean() -> None:
    out = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
